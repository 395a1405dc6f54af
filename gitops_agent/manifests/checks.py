"""Step 5 of `manifests.parse`: the objects of a revision checked against each other and against what the
node would refuse.

Duplicates, undeclared namespaces, references between objects (ConfigMaps, Secrets, claims), Services and the
pods they select, host ports, node ports (allocated here, deterministically), Podman's name limits. The checks
return their problems (`Problems`, each at the document and path at fault) and leave the documents alone. It
must not read files or the agent config beyond the policy it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, replace

from .. import desired, forwarder, model, pullauth
from ..errors import Problem, quote_path
from .autoscaler import check_autoscalers
from .convert import VOLUME_SOURCES
from .document import (
    Document,
    JsonPath,
    Problems,
    every_container,
    is_zero,
    pod_spec_path,
    ref_field,
    short,
)
from .policy import check_policy

# --- across documents ---------------------------------------------------------


def check_revision(entries: list[tuple[Document, model.Object | None]], policy: model.Policy) -> list[Problem]:
    """Checks between objects and against the agent's policy: the problems, each at the document at fault."""
    found = Problems()
    declared: dict[model.ObjectRef, Document] = {}
    for doc, _ in entries:
        if not (doc.kind and doc.name):
            continue
        first = declared.setdefault(doc.ref, doc)
        if first is not doc:
            where = f"{quote_path(first.file)}:{first.lines[()]}"
            found.add(doc, ("metadata", "name"), f"duplicate object: {doc.ref} is also declared at {where}")
    found.extend(_check_pod_name_clashes(declared.values()))
    namespaces = {ref.name for ref in declared if ref.kind == "Namespace"}
    for doc, _ in entries:
        if doc.kind and doc.kind != "Namespace" and doc.namespace != model.DEFAULT_NAMESPACE \
                and doc.namespace not in namespaces:
            found.add(doc, ("metadata", "namespace"), f"namespace {doc.namespace!r} is not declared in the repository")

    config = {obj.ref: obj for _, obj in entries if isinstance(obj, model.ConfigData)}
    workloads = [(doc, obj) for doc, obj in entries if isinstance(obj, model.Workload)]
    services = [(doc, obj) for doc, obj in entries if isinstance(obj, model.Service)]
    claims = {obj.ref: obj for _, obj in entries if isinstance(obj, model.Claim)}
    for doc, workload in workloads:
        found.extend(_check_references(doc, workload, declared.keys(), config))
        found.extend(check_policy(doc, workload, policy))
        found.extend(_check_podman_secrets(doc, workload, config))
        found.extend(_check_sub_paths(doc, workload, config))
        found.extend(_check_volume_classes(doc, workload, claims))
    found.extend(_check_links_above_sub_paths(workloads))
    for doc, obj in entries:
        if isinstance(obj, model.Claim):
            found.extend(_check_name_length(doc, "volume", desired.volume_name(obj.ref.namespace, obj.ref.name)))
        elif isinstance(obj, model.Namespace):
            found.extend(_check_name_length(doc, "network", desired.network_name(obj.ref.name)))
    candidates = _by_label([workload for _, workload in workloads])
    for doc, service in services:
        found.extend(_check_service(doc, service, candidates))
    found.extend(_check_host_ports(workloads, services))
    found.extend(check_autoscalers(entries))
    return found


_NODE_PORTS = (30000, 32767)  # Kubernetes' default service-node-port-range


def node_port_key(service: model.ObjectRef, port: model.ServicePort) -> str:
    """The key of one allocated node port in the recorded table: `namespace/name/port/protocol`."""
    return f"{service.namespace}/{service.name}/{port.port}/{port.protocol}"


def allocate_node_ports(
    entries: list[tuple[Document, model.Object | None]], recorded: Mapping[str, int] | None = None
) -> list[tuple[Document, model.Object | None]]:
    """Each NodePort Service port without a nodePort gets one, as Kubernetes would allocate it, but
    deterministic: first the port `recorded` (the table of earlier revisions' allocations, `node_port_key` ->
    port) gives it, if still in range and free; else the port a hash of its key picks in 30000-32767, or the next
    free one after it (wrapping). A port is taken by a given nodePort, a LoadBalancer port, a hostPort or an
    earlier allocation; recorded ports are kept before any new one is made, so a Service keeps its port when
    another one added later hashes to it (an explicit nodePort still wins over a recorded allocation). Without
    a table, allocations are made in the order of the picked ports. The same revision and table always give
    the same ports; `allocated_node_ports` is the table to record after; `status` shows them."""
    low, high = _NODE_PORTS
    taken = {(port, p.protocol) for _, o in entries if isinstance(o, model.Service) for port, p in o.published()}
    taken |= {(port.host_port, port.protocol) for _, o in entries if isinstance(o, model.Workload)
              for c in o.template.containers for port in c.ports if port.host_port}
    wanted: list[tuple[int, str, model.Service, int, Document]] = []
    for doc, obj in entries:
        if isinstance(obj, model.Service) and obj.type == "NodePort":
            for i, port in enumerate(obj.ports):
                if port.node_port is None:
                    key = node_port_key(obj.ref, port)
                    pick = low + int(hashlib.sha256(key.encode()).hexdigest(), 16) % (high - low + 1)
                    wanted.append((pick, key, obj, i, doc))
    chosen: dict[tuple[model.ObjectRef, int], int] = {}
    table = recorded or {}
    for _, key, service, i, _ in sorted(wanted, key=lambda w: w[1]):  # recorded ones first, in key order
        old = table.get(key)
        if old is not None and low <= old <= high and (old, service.ports[i].protocol) not in taken:
            taken.add((old, service.ports[i].protocol))
            chosen[(service.ref, i)] = old
    for pick, _, service, i, doc in sorted(wanted, key=lambda w: (w[0], w[1])):
        if (service.ref, i) in chosen:
            continue
        protocol = service.ports[i].protocol
        free = next((low + (pick - low + step) % (high - low + 1) for step in range(high - low + 1)
                     if (low + (pick - low + step) % (high - low + 1), protocol) not in taken), None)
        if free is None:
            doc.report(("spec", "ports", i), f"no free node port is left in {low}-{high} for {protocol}")
            continue
        taken.add((free, protocol))
        chosen[(service.ref, i)] = free
    if not chosen:
        return entries
    return [(doc, replace(obj, ports=tuple(
                replace(p, node_port=chosen.get((obj.ref, i), p.node_port)) for i, p in enumerate(obj.ports))))
            if isinstance(obj, model.Service) else (doc, obj) for doc, obj in entries]


def allocated_node_ports(before: Iterable[model.Object | None], after: Iterable[model.Object | None]
                         ) -> dict[str, int]:
    """PURE: the table to record: every node port `allocate_node_ports` gave (ports of NodePort Services that
    had no nodePort in `before` and have one in `after`), by `node_port_key`."""
    unset = {(o.ref, i) for o in before if isinstance(o, model.Service) and o.type == "NodePort"
             for i, p in enumerate(o.ports) if p.node_port is None}
    return {node_port_key(o.ref, p): p.node_port for o in after if isinstance(o, model.Service)
            for i, p in enumerate(o.ports) if (o.ref, i) in unset and p.node_port is not None}


def _check_pod_name_clashes(docs: Iterable[Document]) -> list[Problem]:
    """A Deployment and a DaemonSet of one name and namespace would give their pods the same names."""
    found = Problems()
    owners: dict[tuple[str, str], Document] = {}
    for doc in docs:  # in file order
        if doc.kind not in ("Deployment", "DaemonSet"):
            continue
        first = owners.setdefault((doc.namespace, doc.name), doc)
        if first is not doc:
            where = f"{quote_path(first.file)}:{first.lines[()]}"
            found.add(doc,
                ("metadata", "name"),
                f"{first.kind} {doc.name!r} at {where} has the same name in namespace {doc.namespace!r}; "
                "pods are named after their workload, so rename one",
            )
    return found


# Longest name Podman 4.3 accepts, per object (measured): a volume is a directory `<name>` (NAME_MAX), a
# network a file `<name>.json`, a secret name is at most 64 characters. Pods and containers have none
# (334-character container names work; the pod's hostname is cut to 63 by `podman`).
PODMAN_NAME_LIMITS = {"volume": 255, "network": 250, "secret": 64}


def _check_name_length(
    doc: Document, what: str, name: str, path: JsonPath = ("metadata", "name"), subject: str = "its"
) -> list[Problem]:
    found = Problems()
    limit = PODMAN_NAME_LIMITS[what]
    if len(name) > limit:
        found.add(doc, path, f"{subject} Podman {what} would be named {short(name)} ({len(name)} characters), "
                             f"longer than Podman's limit of {limit}: use a shorter name")
    return found


def _check_secret_keys(doc: Document, source: model.ConfigData | None, path: JsonPath, keys: Iterable[str] | None,
                       use: str) -> list[Problem]:
    """The keys of `source` (all of them when `keys` is None) that become Podman secrets, used as `use` says."""
    found = Problems()
    if source is None:
        return found  # absent (optional, or reported by _check_references) or itself invalid
    kind, name = source.ref.kind, source.ref.name
    for key in sorted(source.data) if keys is None else keys:
        if key not in source.data:
            continue
        if not source.data[key]:
            if use == "mounted as a file":
                found.add(doc, path, f"{kind} {name!r} key {key!r} is empty and {use}: Podman keeps files as "
                                     "secrets, and Podman secrets cannot be empty; give the key a value or leave "
                                     "it out of items")
            continue  # in the environment: plain env
        sname = desired.secret_name(source.ref, key, source.data[key])
        found.extend(_check_name_length(doc, "secret", sname, path, f"{kind} {name!r} key {key!r} is {use}; its"))
    return found


def _check_podman_secrets(
    doc: Document, workload: model.Workload, config: Mapping[model.ObjectRef, model.ConfigData]
) -> list[Problem]:
    """Every key that becomes a Podman secret (a file of a mounted configMap/secret volume, a Secret's key
    in the environment) gets a name Podman accepts; a file is not empty, since Podman refuses a 0-byte
    secret (an empty Secret value in the environment is plain env: `desired` never stores it)."""
    found = Problems()
    prefix = pod_spec_path(workload)
    namespace = workload.ref.namespace

    def check(path: JsonPath, kind: str, name: str, keys: Iterable[str] | None, use: str) -> None:
        found.extend(_check_secret_keys(doc, config.get(model.ObjectRef(kind, namespace, name)), path, keys, use))

    mounted = {mount.name for _, _, container in every_container(workload.template)
               for mount in container.volume_mounts}
    for source, name_field, volume in file_sources(prefix, workload.template.volumes):
        if volume.name not in mounted:
            continue
        kind = VOLUME_SOURCES[volume.kind][1]
        if volume.items:
            for j, item in enumerate(volume.items):
                check(source + ("items", j, "key"), kind, volume.source, [item.key], "mounted as a file")
        else:
            check(source + (name_field,), kind, volume.source, None, "mounted as a file")
    for group, i, container in every_container(workload.template):
        for j, env in enumerate(container.env):
            if env.ref is not None and env.ref.kind == "Secret":
                path = prefix + (group, i, "env", j, "valueFrom", "secretKeyRef", "key")
                check(path, "Secret", env.ref.name, [env.ref.key], "in the environment")
        for j, env_from in enumerate(container.env_from):
            if env_from.kind == "Secret":
                path = prefix + (group, i, "envFrom", j, "secretRef", "name")
                check(path, "Secret", env_from.name, None, "in the environment")
    return found


def _check_references(
    doc: Document,
    workload: model.Workload,
    declared: Set[model.ObjectRef],
    config: Mapping[model.ObjectRef, model.ConfigData],
) -> list[Problem]:
    """ConfigMaps, Secrets, their keys and claims named by the pod exist in its namespace (unless optional)."""
    found = Problems()
    namespace = workload.ref.namespace

    def check(path: JsonPath, kind: str, name: str, keys: Iterable[tuple[JsonPath, str]] = ()) -> None:
        ref = model.ObjectRef(kind, namespace, name)
        if ref not in declared:
            found.add(doc, path, f"{kind} {name!r} does not exist in namespace {namespace!r}")
            return
        source = config.get(ref)  # None when that object is itself invalid: nothing more to check
        for key_path, key in keys:
            if source is not None and key not in source.data:
                found.add(doc, key_path, f"{kind} {name!r} has no key {key!r}")

    prefix = pod_spec_path(workload)
    for i, name in enumerate(workload.template.image_pull_secrets):
        path = prefix + ("imagePullSecrets", i, "name")
        check(path, "Secret", name)
        secret = config.get(model.ObjectRef("Secret", namespace, name))
        if secret is not None and secret.type not in pullauth.SECRET_KEYS:
            found.add(doc, path, f"Secret {name!r} is of type {secret.type}; imagePullSecrets need type "
                                 f"{pullauth.DOCKERCONFIGJSON} or {pullauth.DOCKERCFG}")
        elif secret is not None:
            _check_pull_credentials(found, doc, path, secret)
    for group, i, container in every_container(workload.template):
        for j, env in enumerate(container.env):
            if env.ref is not None and not env.ref.optional:
                selector = prefix + (group, i, "env", j, "valueFrom", ref_field(env.ref.kind, "KeyRef"))
                check(selector + ("name",), env.ref.kind, env.ref.name, [(selector + ("key",), env.ref.key)])
        for j, env_from in enumerate(container.env_from):
            if not env_from.optional:
                selector = prefix + (group, i, "envFrom", j, ref_field(env_from.kind, "Ref"))
                check(selector + ("name",), env_from.kind, env_from.name)
    _check_volume_references(prefix, workload.template.volumes, check)
    return found


def _check_pull_credentials(found: Problems, doc: Document, path: JsonPath, secret: model.ConfigData) -> None:
    """A Secret named by imagePullSecrets holds credentials Podman can send (`pullauth.parse`): a Secret of that
    type is valid without them, as in Kubernetes, but cannot pull. No message quotes a value."""
    key = pullauth.SECRET_KEYS[secret.type]
    data = secret.data.get(key)
    if data is None:  # the Secret's own problem (convert)
        return
    try:
        pullauth.parse(data, secret.type == pullauth.DOCKERCONFIGJSON, str(secret.ref))
    except ValueError as e:
        found.add(doc, path, f"Secret {secret.ref.name!r} cannot pull images: {key}: {e}")


def _check_volume_references(
    prefix: JsonPath, volumes: tuple[model.Volume, ...],
    check: Callable[[JsonPath, str, str, Iterable[tuple[JsonPath, str]]], None],
) -> None:
    """The claims and the (not optional) ConfigMaps and Secrets of the pod's volumes, checked by `check`."""
    for i, volume in enumerate(volumes):
        if volume.kind == "persistentVolumeClaim":
            check(prefix + ("volumes", i, volume.kind, "claimName"), "PersistentVolumeClaim", volume.source, ())
    for source, name_field, volume in file_sources(prefix, volumes):
        if not volume.optional:
            keys = [(source + ("items", j, "key"), item.key) for j, item in enumerate(volume.items)]
            check(source + (name_field,), VOLUME_SOURCES[volume.kind][1], volume.source, keys)


def file_sources(prefix: JsonPath, volumes: Iterable[model.Volume]) -> Iterator[tuple[JsonPath, str, model.Volume]]:
    """(manifest path, field naming the object, source) of every ConfigMap and Secret whose keys become files:
    configMap and secret volumes, and each source of a projected volume (named by `name` there)."""
    for i, volume in enumerate(volumes):
        if volume.kind in ("configMap", "secret"):
            yield prefix + ("volumes", i, volume.kind), VOLUME_SOURCES[volume.kind][0], volume
        for j, source in enumerate(volume.sources):
            if source.kind != "downwardAPI":  # its files name no object
                yield prefix + ("volumes", i, "projected", "sources", j, source.kind), "name", source


def volume_files(volume: model.Volume, config: Mapping[model.ObjectRef, model.ConfigData],
                 namespace: str) -> list[str] | None:
    """The relative paths of the files of a configMap, secret, downwardAPI or projected volume (None: not all
    known)."""
    files: list[str] = []
    for source in volume.sources or (volume,):
        if source.kind == "downwardAPI":
            files.extend(item.path for item in source.files)
            continue
        if source.items:
            files.extend(item.path for item in source.items)
            continue
        data = config.get(model.ObjectRef(VOLUME_SOURCES[source.kind][1], namespace, source.source))
        if data is None:
            return None
        files.extend(sorted(data.data))
    return ["/".join(part for part in f.split("/") if part not in ("", ".")) for f in files]


_FILE_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")


def _check_sub_paths(
    doc: Document, workload: model.Workload, config: Mapping[model.ObjectRef, model.ConfigData]
) -> list[Problem]:
    """A subPath into a configMap, secret, downwardAPI or projected volume names one of its files, or a directory
    of them."""
    found = Problems()
    volumes = {volume.name: volume for volume in workload.template.volumes}
    for group, i, container in every_container(workload.template):
        for j, mount in enumerate(container.volume_mounts):
            volume = volumes.get(mount.name)
            if not mount.sub_path or volume is None or volume.kind not in _FILE_VOLUMES:
                continue
            files = volume_files(volume, config, workload.ref.namespace)
            sub = mount.sub_path
            if files is not None and not any(f == sub or f.startswith(sub + "/") for f in files):
                shown = ", ".join(map(repr, files)) or "none"
                found.add(doc, pod_spec_path(workload) + (group, i, "volumeMounts", j, "subPath"),
                          f"volume {mount.name!r} has no file or directory {sub!r} (its files: {shown})")
    return found


_NEEDS_LOCAL = ("is not supported by gitops-agent on volume {name!r} (found {sub!r}): its storage class has driver "
               "{driver!r} and options {options}, so Podman has its files on the node only while a container mounts "
               "it whole, and a subPath of a named volume is a bind mount of its directory on the node (Podman 4.3 "
               "has no subpath mount option); mount the whole volume, or use a class of the local driver without "
               "options")


def _check_volume_classes(doc: Document, workload: model.Workload,
                          claims: Mapping[model.ObjectRef, model.Claim]) -> list[Problem]:
    """A subPath of a claim's volume (or a claim template's) needs a local volume without options: the directory
    bound is under its Mountpoint, which only such a volume has while no container mounts it."""
    found = Problems()
    classes = dict(workload.claim_classes)
    volumes = {volume.name: volume for volume in workload.template.volumes}
    for group, i, container in every_container(workload.template):
        for j, mount in enumerate(container.volume_mounts):
            volume = volumes.get(mount.name)
            if not mount.sub_path or volume is None:
                continue
            if volume.kind == "persistentVolumeClaim":
                claim = claims.get(model.ObjectRef("PersistentVolumeClaim", workload.ref.namespace, volume.source))
                chosen = claim.storage_class if claim is not None else None
            else:
                chosen = classes.get(volume.name) if volume.kind == "claimTemplate" else None
            if chosen is not None and (chosen.driver != "local" or chosen.options):
                options = ", ".join(sorted(chosen.options)) or "none"
                found.add(doc, pod_spec_path(workload) + (group, i, "volumeMounts", j, "subPath"),
                          _NEEDS_LOCAL.format(name=mount.name, sub=mount.sub_path, driver=chosen.driver,
                                              options=options))
    return found


@dataclass(frozen=True)
class _NamedMount:
    """One mount of a named Podman volume: where it is written, and the volume it mounts (`key`)."""

    doc: Document
    path: JsonPath  # its volumeMounts entry
    container: str
    key: tuple[str, ...]  # a claim (namespace, name) across workloads; a pod's own emptyDir or claim template
    sub_path: str
    writable: bool


def _named_mounts(doc: Document, workload: model.Workload) -> Iterator[_NamedMount]:
    """The workload's mounts of named volumes: claims, claim templates, emptyDirs on the node's disk."""
    volumes = {volume.name: volume for volume in workload.template.volumes}
    for group, i, container in every_container(workload.template):
        for j, mount in enumerate(container.volume_mounts):
            volume = volumes.get(mount.name)
            if volume is None or volume.kind not in ("persistentVolumeClaim", "claimTemplate", "emptyDir"):
                continue
            if volume.kind == "persistentVolumeClaim":
                key: tuple[str, ...] = ("claim", workload.ref.namespace, volume.source)
            else:
                key = ("pod", str(workload.ref), volume.name)
            yield _NamedMount(doc, pod_spec_path(workload) + (group, i, "volumeMounts", j), container.name, key,
                              mount.sub_path, not (mount.read_only or volume.read_only))


def _check_links_above_sub_paths(workloads: list[tuple[Document, model.Workload]]) -> list[Problem]:
    """No writable mount of the whole volume, or of a directory above a subPath, beside that subPath: a process
    there could put a symbolic link in its place, which the node would follow out of the volume when it binds the
    subPath's directory (Podman 4.3 has no subpath mount option; the kubelet opens the path safely instead)."""
    found = Problems()
    mounts = [m for doc, workload in workloads for m in _named_mounts(doc, workload)]
    for m in (m for m in mounts if m.sub_path):
        above = next((o for o in mounts if o.key == m.key and o.writable
                      and (not o.sub_path or m.sub_path.startswith(o.sub_path + "/"))), None)
        if above is None:
            continue
        what = f"at subPath {above.sub_path!r}" if above.sub_path else "whole"
        where = "" if above.doc is m.doc else f" of {above.doc.kind}/{above.doc.name}"
        found.add(m.doc, m.path + ("subPath",),
                  f"volume {m.key[-1]!r} is also mounted writable {what} by container {above.container!r}{where}: "
                  f"a process there could replace directory {m.sub_path!r} with a symbolic link, which the node "
                  "would follow out of the volume when it binds the subPath (Podman 4.3 mounts a subPath of a "
                  "named volume as a bind mount of its directory); make that mount readOnly: true, or give it a "
                  "subPath beside this one")
    return found


def _selects(service: model.Service, workload: model.Workload) -> bool:
    return workload.ref.namespace == service.ref.namespace and all(
        workload.template.labels.get(key) == value for key, value in service.selector.items()
    )


def _by_label(workloads: list[model.Workload]) -> dict[tuple[str, str, str], list[model.Workload]]:
    """(namespace, label key, value) -> the workloads whose pods carry that label, and (namespace, "", "") ->
    every workload of the namespace; each list in the given order. A Service's candidates, found without
    comparing every Service with every workload."""
    index: dict[tuple[str, str, str], list[model.Workload]] = {}
    for workload in workloads:
        namespace = workload.ref.namespace
        index.setdefault((namespace, "", ""), []).append(workload)
        for key, value in workload.template.labels.items():
            index.setdefault((namespace, key, value), []).append(workload)
    return index


def _check_service(
    doc: Document, service: model.Service, candidates: Mapping[tuple[str, str, str], list[model.Workload]]
) -> list[Problem]:
    """Named target ports exist in the selected pods; no Pod takes the name of the Service's forwarder."""
    found = Problems()
    first = next(iter(service.selector.items()), ("", ""))
    shortlist = candidates.get((service.ref.namespace, *first), [])
    selected = [workload for workload in shortlist if _selects(service, workload)]
    for workload in selected:
        if workload.template.host_network:
            found.add(doc,
                ("spec", "selector"),
                f"selects {workload.ref.kind}/{workload.ref.name}, which uses hostNetwork: its pods are not on the "
                "namespace network, so they get no Service name or node port; reach them at the node's address",
            )
    for i, port in enumerate(service.ports):
        if not isinstance(port.target_port, str):
            continue
        for workload in selected:
            names = {p.name for container in workload.template.containers for p in container.ports}
            if port.target_port not in names:
                owner = f"{workload.ref.kind}/{workload.ref.name}"
                message = f"targetPort {port.target_port!r} is not a container port name of {owner}"
                found.add(doc, ("spec", "ports", i, "targetPort"), message)
    # several pods, or pods that surge: the Service's forwarder owns its port(s) (gitops_agent/forwarder.py)
    every = candidates.get((service.ref.namespace, "", ""), [])
    clash = f"{forwarder.PREFIX}{service.ref.name}"
    if forwarder.forwarded(service, selected) and any(w.ref.kind == "Pod" and w.ref.name == clash for w in every):
        found.add(doc, ("metadata", "name"), f"its node port forwarder pod would be named {clash}, the name of "
                                             f"Pod/{clash}: rename one")
    return found


@dataclass(frozen=True)
class _HostPort:
    """A port bound on the node, by a container's hostPort or a Service's nodePort."""

    port: int
    protocol: str
    doc: Document
    path: JsonPath

    @property
    def where(self) -> str:
        return f"{self.doc.kind}/{self.doc.name} at {quote_path(self.doc.file)}:{self.doc.line_of(self.path)}"


def _check_host_ports(
    workloads: list[tuple[Document, model.Workload]], services: list[tuple[Document, model.Service]]
) -> list[Problem]:
    """All pods of a revision run on one node, so a (port, protocol) can be bound once."""
    found = Problems()
    claims: list[_HostPort] = []
    for doc, workload in workloads:
        prefix = pod_spec_path(workload)
        for i, container in enumerate(workload.template.containers):
            for j, port in enumerate(container.ports):
                if port.host_port is None:
                    continue
                path = prefix + ("containers", i, "ports", j, "hostPort")
                claim = _HostPort(port.host_port, port.protocol, doc, path)
                claims.append(claim)
                found.extend(_check_single_owner(claim, workload, f"hostPort {port.host_port}/{port.protocol}"))
    for doc, service in services:
        key = "nodePort" if service.type == "NodePort" else "port"
        for host_port, sport in service.published():
            i = service.ports.index(sport)
            path = ("spec", "ports", i, key) if key in doc.body["spec"]["ports"][i] else ("spec", "ports", i)
            claims.append(_HostPort(host_port, sport.protocol, doc, path))  # by its pod or its forwarder

    owners: dict[tuple[int, str], _HostPort] = {}
    for claim in sorted(claims, key=lambda c: (c.doc.file, c.doc.line_of(c.path))):
        first = owners.setdefault((claim.port, claim.protocol), claim)
        if first is not claim:
            found.add(claim.doc,
                claim.path, f"host port {claim.port}/{claim.protocol} is already used by {first.where}"
            )
    return found


def _check_single_owner(claim: _HostPort, workload: model.Workload, what: str) -> list[Problem]:
    """A workload binding a host port can run one pod at a time on the node."""
    found = Problems()
    if workload.replicas > 1:
        found.add(claim.doc,
            claim.path,
            f"{what}: {workload.replicas} replicas would run {workload.replicas} pods on one node, "
            "and only one of them can bind the port; use replicas: 1",
        )
    found.extend(_check_surge(claim, workload, what))
    return found


def _check_surge(claim: _HostPort, workload: model.Workload, what: str) -> list[Problem]:
    found = Problems()
    if workload.strategy == "RollingUpdate" and not is_zero(workload.rolling_update.max_surge):
        fix = "use maxSurge: 0" if workload.ref.kind == "DaemonSet" else "use strategy Recreate or maxSurge: 0"
        found.add(claim.doc,
            claim.path,
            f"{what}: a RollingUpdate with maxSurge {workload.rolling_update.max_surge} starts the new pod "
            f"while the old one still holds the port; {fix}",
        )
    return found
