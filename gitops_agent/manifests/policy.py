"""Step 6 of `manifests.parse`: the agent config's `policy:` and `limits:`.

`check_policy`: the privileged features (privileged containers, host namespaces, added capabilities, hostPath
volumes, writable cgroups) a workload may use. `check_capacity`: `desired`'s placement arithmetic against `limits:`
(pods per node, containers per pod, replicas per revision, requests against node capacity), before any pod is built.
Both return their problems, each at the document at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from .. import desired, model
from ..config import NodeConfig
from ..errors import Problem
from .document import Document, Problems, every_container, is_under, pod_spec_path


def _check_spread_keys(workloads: list[tuple[Document, model.Workload]], nodes: tuple[NodeConfig, ...]
                       ) -> list[Problem]:
    """A topologySpreadConstraint's key other than kubernetes.io/hostname is a label some node declares."""
    found = Problems()
    for doc, workload in workloads:
        for i, spread in enumerate(workload.template.topology_spread):
            if spread.key != desired.HOSTNAME_LABEL and not any(spread.key in node.labels for node in nodes):
                found.add(doc, pod_spec_path(workload) + ("topologySpreadConstraints", i, "topologyKey"),
                          f"no node of the agent config declares label {spread.key!r}: declare it in nodes[].labels "
                          f"(the value: that node's {spread.key.rsplit('/', 1)[-1]}), or spread over "
                          f"{desired.HOSTNAME_LABEL}")
    return found


def _warn_unplaced_storage_requests(workloads: list[tuple[Document, model.Workload]],
                                    nodes: tuple[NodeConfig, ...]) -> None:
    """A request of ephemeral-storage only places pods (as in Kubernetes, where no request is enforced): with no
    node declaring capacity.ephemeral-storage it does nothing, which a warning says."""
    if any(node.ephemeral_bytes is not None for node in nodes):
        return
    for doc, workload in workloads:
        for group, i, container in every_container(workload.template):
            if container.ephemeral_request is not None:
                doc.warn(pod_spec_path(workload) + (group, i, "resources", "requests", "ephemeral-storage"),
                         "has no effect here: no node of the agent config declares capacity.ephemeral-storage, "
                         "against which it would place the pod (Podman enforces no size on a container's storage)")


def check_capacity(
    workloads: list[tuple[Document, model.Workload]], nodes: tuple[NodeConfig, ...], limits: model.NodeLimits
) -> list[Problem]:
    """The revision stays within the config's `limits:`, counted from placement alone (no pod is built), and
    spreads only over node labels the config's nodes declare."""
    found = Problems()
    found.extend(_check_spread_keys(workloads, nodes))
    _warn_unplaced_storage_requests(workloads, nodes)
    for doc, workload in workloads:
        if len(workload.template.containers) > limits.max_containers_per_pod:
            found.add(doc, pod_spec_path(workload) + ("containers",),
                           f"{len(workload.template.containers)} containers in one pod; "
                           f"limits.maxContainersPerPod is {limits.max_containers_per_pod}")
    if not workloads:
        return found
    per_node = {node.name: [(desired.replicas_on(w, node, nodes), doc) for doc, w in workloads] for node in nodes}
    total = sum(count for counts in per_node.values() for count, _ in counts)

    def largest(counts: Iterable[tuple[int, Document]]) -> Document:
        return max(counts, key=lambda item: item[0])[1]

    def report(doc: Document, message: str) -> None:
        found.add(doc, ("spec", "replicas") if doc.kind == "Deployment" else (), message)

    if total > limits.max_replicas_per_revision:
        summed = [(sum(counts[i][0] for counts in per_node.values()), doc) for i, (doc, _) in enumerate(workloads)]
        report(largest(summed), f"the revision would run {total} pods over all nodes; "
                                f"limits.maxReplicasPerRevision is {limits.max_replicas_per_revision}")
    full = sorted(((sum(c for c, _ in counts), name) for name, counts in per_node.items()
                   if sum(c for c, _ in counts) > limits.max_pods_per_node), reverse=True)
    if full:
        shown = ", ".join(f"{name} {count}" for count, name in full[:3])
        shown += f" and {len(full) - 3} more" if len(full) > 3 else ""
        report(largest(per_node[full[0][1]]), f"{len(full)} node(s) would run more than limits.maxPodsPerNode "
                                              f"({limits.max_pods_per_node}) pods: {shown}")
    for node in nodes:
        placed = [(count, doc, w) for (count, doc), (_, w) in zip(per_node[node.name], workloads)]
        found.extend(_check_requests(node, placed))
        if node.address is None:
            found.extend(_check_host_ip(node, placed))
    return found


def _check_host_ip(node: NodeConfig, placed: list[tuple[int, Document, model.Workload]]) -> list[Problem]:
    """status.hostIP (and a hostNetwork pod's status.podIP) is the node's `address` in the agent config."""
    found = Problems()
    for count, doc, workload in placed:
        for group, i, container in every_container(workload.template) if count else ():
            for j, env in enumerate(container.env):
                if env.field_path == "status.hostIP" or (env.field_path == "status.podIP"
                                                         and workload.template.host_network):
                    path = pod_spec_path(workload) + (group, i, "env", j, "valueFrom", "fieldRef", "fieldPath")
                    found.add(doc, path, f"{env.field_path} is the node's address, and node {node.name} has none "
                                         "in the agent config: set its nodes[].address")
    return found


def _check_requests(node: NodeConfig, placed: list[tuple[int, Document, model.Workload]]) -> list[Problem]:
    """The pods placed on a node that declares a capacity request no more than it (Kubernetes' scheduler
    would leave them pending; here the revision is rejected, naming the node)."""
    found = Problems()
    shows: tuple[tuple[str, int | None, Callable[[int], str]], ...] = (
        ("cpu", node.cpu_millis, lambda m: f"{m}m"), ("memory", node.memory_bytes, lambda b: f"{b} bytes"),
        ("ephemeral-storage", node.ephemeral_bytes, lambda b: f"{b} bytes"))
    for resource, capacity, show in shows:
        if capacity is None:
            continue
        asks = [(count * desired.pod_request(w.template, resource), doc, w)
                for count, doc, w in placed if count]
        total = sum(amount for amount, _, _ in asks)
        if total <= capacity:
            continue
        amount, doc, w = max(asks, key=lambda item: item[0])
        found.add(doc, pod_spec_path(w) + ("containers",),
                  f"the pods placed on node {node.name} request {show(total)} of {resource} in all, more than its "
                  f"capacity.{resource} ({show(capacity)}); {w.ref.kind}/{w.ref.name} requests {show(amount)} there")
    return found


def check_node_names(workloads: list[tuple[Document, model.Workload]], nodes: tuple[NodeConfig, ...]
                     ) -> list[Problem]:
    """A pod's nodeName is the name of a node of the agent config (checked only with a config: without one,
    `validate` places every workload on one node)."""
    found = Problems()
    names = sorted(node.name for node in nodes)
    for doc, workload in workloads:
        name = workload.template.node_name
        if name is not None and name not in names:
            found.add(doc, pod_spec_path(workload) + ("nodeName",),
                      f"node {name!r} is not in the agent config (its nodes: {', '.join(names)}); name one of them, "
                      "or remove nodeName to let gitops-agent place the pod")
    return found


def check_policy(doc: Document, workload: model.Workload, policy: model.Policy) -> list[Problem]:
    """Every privileged feature the pod asks for is allowed by the agent's policy, reported at its field."""
    found = Problems()
    prefix = pod_spec_path(workload)
    template = workload.template
    for used, allowed, key, what in (
        (template.host_network, policy.allow_host_network, "hostNetwork", "the host network"),
        (template.host_pid, policy.allow_host_pid, "hostPID", "the host PID namespace"),
        (template.host_ipc, policy.allow_host_ipc, "hostIPC", "the host IPC namespace"),
    ):
        if used and not allowed:
            setting = f"policy.allow{key[0].upper()}{key[1:]}"
            found.add(doc, prefix + (key,), f"{what} is not allowed by the agent policy ({setting})")
    allowed_caps = set(policy.allowed_capabilities)
    shown_caps = ", ".join(policy.allowed_capabilities) or "none"
    for group, i, container in every_container(template):
        context = prefix + (group, i, "securityContext")
        _check_container_switches(doc, context, container, policy, found)
        _check_unconfined(doc, prefix, (group, i), container, policy, found)
        if "*" in allowed_caps:
            continue
        for j, cap in enumerate(container.cap_add):
            if cap not in allowed_caps:
                found.add(doc, context + ("capabilities", "add", j),
                               f"capability {cap} is not in policy.allowedCapabilities (allowed: {shown_caps})")
    rules = policy.allowed_host_paths
    shown_paths = ", ".join(map(str, rules)) or "none"
    for i, volume in enumerate(template.volumes):
        if volume.kind != "hostPath":
            continue
        matching = [rule for rule in rules if is_under(volume.source, rule.path_prefix)]
        if not matching:
            found.add(doc, prefix + ("volumes", i, "hostPath", "path"),
                           f"hostPath {volume.source} is outside policy.allowedHostPaths (allowed: {shown_paths})")
            continue
        if any(not rule.read_only for rule in matching):
            continue
        for group, c, container in every_container(template):
            for j, mount in enumerate(container.volume_mounts):
                if mount.name == volume.name and not mount.read_only:
                    found.add(doc,
                        prefix + (group, c, "volumeMounts", j),
                        "a writable hostPath mount needs an allowedHostPaths entry without readOnly "
                        f"({volume.source} matches only {', '.join(map(str, matching))}); "
                        "set readOnly: true on the mount",
                    )
    return [replace(problem, policy=True) for problem in found]  # a refusal by policy, told apart in alerts


def _check_container_switches(doc: Document, context: tuple[str | int, ...], container: model.Container,
                              policy: model.Policy, found: Problems) -> None:
    """A privileged container needs policy.allowPrivileged, writable cgroups policy.allowWritableCgroups; each
    refusal at its field of the container's securityContext (`context`)."""
    if container.privileged and not policy.allow_privileged:
        found.add(doc, context + ("privileged",),
                  "privileged containers are not allowed by the agent policy (policy.allowPrivileged)")
    if container.cgroup_writable and not policy.allow_writable_cgroups:
        found.add(doc, context + ("cgroupOptions", "mountMode"),
                  "writable cgroups (mountMode ReadWrite) are not allowed by the agent policy "
                  "(policy.allowWritableCgroups: on a cgroup v1 node a root process in the container could "
                  "change its own limits); remove cgroupOptions for the default ReadOnly")


def _check_unconfined(doc: Document, prefix: tuple[str | int, ...], at_container: tuple[str, int],
                      container: model.Container, policy: model.Policy, found: Problems) -> None:
    """A seccomp or AppArmor profile Unconfined needs policy.allowUnconfined, reported where it is written (the
    container's field, else the pod's, else the annotation)."""
    for key, profile, what in (("seccompProfile", container.seccomp, "seccomp"),
                               ("appArmorProfile", container.apparmor, "AppArmor")):
        if profile.type != "Unconfined" or policy.allow_unconfined:
            continue
        at = next((path for path in ((*prefix, *at_container, "securityContext", key, "type"),
                                     (*prefix, "securityContext", key, "type")) if path in doc.lines),
                  (*prefix[:-1], "metadata", "annotations"))
        found.add(doc, at, f"{what} profile Unconfined (no {what} confinement) is not allowed by the agent policy "
                           "(policy.allowUnconfined; Pod Security's baseline level forbids it too): use "
                           "RuntimeDefault or a Localhost profile")
