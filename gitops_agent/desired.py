"""PURE: a validated Revision → the Podman objects one node should have.

Sits between `manifests` (Kubernetes-shaped model) and `plan` (diff against
live). Decides names, labels, template hashes and placement. No I/O, no clock,
no Podman: every function here is unit-tested from literals.

Naming on a node. Podman names are node-global, Kubernetes names are per
namespace, so every name must be injective over the full identity. The parts
are joined with `_`, which Kubernetes' name grammar (DNS labels and
subdomains) forbids in namespaces, object names and container names, so the
parts can always be told apart again:
- network  `gitops-<namespace>`
- volume   `gitops-<namespace>_<claim>` (in older agents: `gitops-<namespace>-<claim>`,
           which two namespaces could share; such a volume is kept, see `claim_volume`)
- emptyDir `<pod>_emptydir_<volume>` (two `_`: never a claim's volume), labelled with its pod
- secret   `gitops-<namespace>_<kind>_<name>_<key>-<hash>`, the hash over the
           full identity and the value (Podman secrets are immutable: a new value
           is a new secret); the readable part is cut at 53 characters so the
           name fits Podman's limit of 64; past that only the hash keeps names apart
- pod      Deployment/DaemonSet: `<name>-<template hash>-<suffix>` (the template
           hash covers the namespace; two replicas whose suffixes meet: the later
           one draws again, so no replica's name depends on a later one); Pod: `<name>` in namespace `default` (unless
           it has that Deployment shape), else `<name>_<namespace>`
- container `<pod>_<container>` (in older agents `<pod>-<container>`: such containers
           are still recognised, see `legacy_container_name`)
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from . import forwarder, liveness
from .config import NodeConfig
from .pullauth import SECRET_KEYS, DOCKERCONFIGJSON, Credential, parse
from .model import (
    Claim,
    ConfigData,
    Container,
    CronSchedule,
    DNSConfig,
    DownwardFile,
    EnvVar,
    JobPolicy,
    KeyToPath,
    NEVER_ROLLS,
    Namespace,
    NodeRollout,
    ObjectRef,
    PodResources,
    PodTemplate,
    Probe,
    Requirement,
    ResourceFieldRef,
    Resources,
    Revision,
    SecurityProfile,
    Service,
    StorageClass,
    Taint,
    Toleration,
    Volume,
    VolumeMount,
    Workload,
)

if TYPE_CHECKING:  # live imports this module's names
    from .live import LivePod

LABEL_PREFIX = "io.gitops-agent"
MANAGED = f"{LABEL_PREFIX}.managed"
PRE_STOP = f"{LABEL_PREFIX}.pre-stop"  # a container's preStop hook, JSON {"command": [...], "timeout": seconds}
L_NAMESPACE = f"{LABEL_PREFIX}.namespace"
L_KIND = f"{LABEL_PREFIX}.kind"
L_NAME = f"{LABEL_PREFIX}.name"
L_REVISION = f"{LABEL_PREFIX}.revision"
L_TEMPLATE_HASH = f"{LABEL_PREFIX}.template-hash"
L_EMPTY_DIR_OF = f"{LABEL_PREFIX}.emptydir-of"  # on an emptyDir volume: the pod it lives and dies with
L_SIZE_LIMIT = f"{LABEL_PREFIX}.size-limit"  # on a disk emptyDir volume: its sizeLimit in bytes (`eviction`)
L_VOLUME = f"{LABEL_PREFIX}.volume"  # on such a volume: its name in the pod spec
L_CONTAINER = f"{LABEL_PREFIX}.container"  # the container's name in the manifest
L_INIT = f"{LABEL_PREFIX}.init"  # "true" on an init container (it exits once done: not an app container)
L_SIDECAR = f"{LABEL_PREFIX}.sidecar"  # on a sidecar (an init container with restartPolicy Always): its position
SECRET_PREFIX = "gitops-"
BATCH = ("Job", "CronJob")  # kinds whose pods run to completion (gitops_agent/jobs)
JOB_INDEX = "batch.kubernetes.io/job-completion-index"  # an Indexed Job's pod: its index (annotation, label)
RUN_PLACEHOLDER = "{run}"  # in a CronJob's compiled pod names: replaced by each run's id (cronjobs.run_pods)
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    namespace: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    claim: ObjectRef
    labels: Mapping[str, str]
    storage_class: StorageClass = StorageClass()  # made with its driver and options; never changed afterwards


@dataclass(frozen=True)
class EmptyDirSpec:
    """An emptyDir volume: a Podman volume of one pod, created with it and removed with it (never a claim's data).
    `medium` "Memory" makes it a tmpfs of at most `size_limit` bytes; `mode` is its top directory's (None:
    Podman's, 1777 for a tmpfs)."""

    name: str
    medium: str
    size_limit: int | None
    mode: int | None = None


@dataclass(frozen=True)
class SecretSpec:
    """A Podman secret holding one key of a ConfigMap or Secret, or one file of a pod's downwardAPI volume
    (`source` its workload, `key` `VOLUME/PATH`). `data` is never printed."""

    name: str
    source: ObjectRef
    key: str
    data: bytes = field(repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretMount:
    secret: str
    target: str
    mode: int


@dataclass(frozen=True)
class VolumeBind:
    """A named volume mounted at `target`: whole, or its directory `sub_path` (a bind mount of that directory of
    the volume's Mountpoint on the node: Podman 4.3 has no subpath option for a named volume)."""

    volume: str
    target: str
    read_only: bool
    sub_path: str = ""


@dataclass(frozen=True)
class HostMount:
    """A hostPath volume: `source` on the node bind-mounted at `target`."""

    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ImageMount:
    """An image volume: the files of image `source` mounted read-only at `target` (pulled with `pull_policy`)."""

    source: str
    target: str
    pull_policy: str


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # Podman container name
    image: str
    pull_policy: str
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    env: Mapping[str, str]  # plain values (never from a Secret)
    secret_env: Mapping[str, str]  # VAR → Podman secret name
    secret_mounts: tuple[SecretMount, ...]
    volumes: tuple[VolumeBind, ...]
    working_dir: str | None
    health_cmd: tuple[str, ...] | None
    health_interval: int
    health_timeout: int
    health_retries: int
    health_start_period: int
    cpu_millis: int | None
    memory_bytes: int | None
    labels: Mapping[str, str]
    cpu_shares: int | None = None  # requests.cpu, as the kubelet weighs it
    memory_reservation: int | None = None  # requests.memory: a soft limit (memory.low / soft_limit_in_bytes)
    readiness: Probe | None = None  # run by the agent while it waits for the pod
    startup: Probe | None = None  # run by the agent; liveness waits for it (start period)
    liveness: Probe | None = None  # run by Podman's healthcheck (health_cmd); kept for `status` and `probes`
    host_mounts: tuple[HostMount, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()  # Podman's names: CAP_NET_ADMIN, or ALL
    cap_drop: tuple[str, ...] = ()
    read_only_root_fs: bool = False
    user: str | None = None  # "uid" or "uid:gid"
    no_new_privileges: bool = False
    cgroup_writable: bool = False  # /sys/fs/cgroup read-write (cgroupOptions.mountMode ReadWrite)
    groups: tuple[str, ...] = ()  # supplementary group ids of the process (supplementalGroups)
    # Host namespaces are set on each container: Podman 4.3 ignores a pod's pidns/ipcns for its containers.
    host_pid: bool = False
    host_ipc: bool = False
    host_uts: bool = False  # with the host network, as Kubernetes does: the node's hostname
    post_start: tuple[str, ...] = ()  # lifecycle.postStart, the command run in the container once it started
    non_root_image: bool = False  # runAsNonRoot without runAsUser: the image's own user must not be root
    fs_group: int | None = None  # the group given the top directory (or subPath) of each read-write volume (fsGroup)
    # env set to the pod's address on its network when the pod is made (fieldRef status.podIP): not in `env`,
    # so a pod re-made with a new address is no drift
    pod_ip_env: tuple[str, ...] = ()
    # env in `env` that reads the node's allocatable amount (a resourceFieldRef of an unset limit): fixed when the
    # container is made, as in Kubernetes, so a later change of the node's amount is no drift (only its presence is)
    node_env: tuple[str, ...] = ()
    stdin: bool = False  # Podman's stdin_open
    tty: bool = False  # Podman's terminal
    seccomp: str = ""  # Podman's seccomp profile: "" its default, "unconfined", or the file on the node (Localhost)
    apparmor: str = ""  # Podman's AppArmor profile: "" its default, "unconfined", or the name of one the node loaded
    image_mounts: tuple[ImageMount, ...] = ()  # image volumes, read-only (Podman's image_volumes)


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str  # "tcp" | "udp"


@dataclass(frozen=True)
class PodDNS:
    """A pod's /etc/resolv.conf as Podman writes it from its pod create options (`--dns`, `--dns-search`,
    `--dns-option`). `network_first`: the pod network's DNS server (aardvark-dns, on the network's gateway) comes
    before `servers`, as the cluster DNS server comes first with Kubernetes' ClusterFirst."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # "name" or "name:value"
    network_first: bool = False


@dataclass(frozen=True)
class PodSpec:
    name: str
    owner: ObjectRef
    template_hash: str
    network: str
    aliases: tuple[str, ...]  # Service names that select this pod (DNS on the namespace network)
    ports: tuple[PortMapping, ...]
    restart_policy: str  # Podman's: "always" | "on-failure" | "no"
    stop_timeout: int
    containers: tuple[ContainerSpec, ...]
    labels: Mapping[str, str]
    min_ready_seconds: int = 0  # the pod counts as available once ready this long
    progress_deadline_seconds: int = 600
    host_network: bool = False
    """hostNetwork: the pod shares the node's network namespace. It is not on the namespace
    network (`network` is ""), has no DNS aliases (manifests rejects a Service selecting it)
    and no port mappings: its containerPorts are bound on the node directly."""
    redactions: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)
    """(text to hide, what to show instead) for the value of every Secret key the pod uses
    (env and mounted files): probe output passes through `redact` before it is kept."""
    pull_credentials: tuple[Credential, ...] = field(default=(), compare=False, repr=False)
    """From the pod's imagePullSecrets, in their order: used for its images' pulls only, never printed."""
    empty_dirs: tuple[EmptyDirSpec, ...] = ()  # created before the containers, removed with the pod
    init_containers: tuple[ContainerSpec, ...] = ()  # run in order, each to completion (a sidecar: started)
    # pod-level resources, the pod's cgroup (its containers' parent): as a container's, None for unset
    cpu_millis: int | None = None
    memory_bytes: int | None = None
    pids_limit: int | None = None
    cpu_shares: int | None = None
    memory_reservation: int | None = None
    hosts: tuple[str, ...] = ()  # hostAliases as Podman's --add-host entries, "hostname:ip"
    share_pid: bool = False  # shareProcessNamespace: the pod shares one PID namespace
    own_userns: bool = False  # hostUsers: false: the pod gets a user namespace of its own (--userns=auto)
    dns: PodDNS | None = None
    """The pod's own resolver settings (dnsPolicy None, or ClusterFirst with a dnsConfig); None: the network's."""

    def every_container(self) -> tuple[ContainerSpec, ...]:
        """The init containers, then the app containers: every image the pod needs."""
        return (*self.init_containers, *self.containers)

    @property
    def sidecars(self) -> tuple[ContainerSpec, ...]:
        """The init containers with restartPolicy Always, in their order: they run for the pod's life."""
        return tuple(c for c in self.init_containers if is_sidecar(c))

    def running_containers(self) -> tuple[ContainerSpec, ...]:
        """The sidecars, then the app containers: the containers that run for the pod's life (probed, compared)."""
        return (*self.sidecars, *self.containers)

    def map_containers(self, change: Callable[[ContainerSpec], ContainerSpec]) -> "PodSpec":
        """This pod with `change` applied to each of its containers, init containers included."""
        return replace(self, containers=tuple(map(change, self.containers)),
                       init_containers=tuple(map(change, self.init_containers)))


def is_sidecar(c: ContainerSpec) -> bool:
    return L_SIDECAR in c.labels


def container_restart_policy(pod: PodSpec, c: ContainerSpec) -> str:
    """Podman's restart policy of container `c`: a sidecar's is always (Kubernetes restarts it whatever the pod's
    restartPolicy), an app container's the pod's."""
    return "always" if is_sidecar(c) else pod.restart_policy


@dataclass(frozen=True)
class WorkloadSpec:
    """One Deployment, DaemonSet or Pod as it should be on this node: `replicas` pods of one template."""

    ref: ObjectRef
    template_hash: str
    replicas: int
    strategy: str
    max_surge: int
    max_unavailable: int
    pods: tuple[PodSpec, ...]
    images: tuple[tuple[str, str], ...]  # (image, pull policy) of every container
    min_ready_seconds: int = 0
    progress_deadline_seconds: int = 600
    node_rollout: NodeRollout = NodeRollout()
    ordered: bool = False  # a StatefulSet's OrderedReady: pod i+1 made once pod i is available, surplus in reverse
    partition: int = 0  # a StatefulSet's RollingUpdate replaces ordinals >= partition only
    completions: int = 0  # a Job's: its pods are the attempts, completions + backoffLimit of them (gitops_agent/jobs)
    parallelism: int = 1
    active_deadline: int | None = None  # a Job's activeDeadlineSeconds
    ttl: int | None = None  # a Job's ttlSecondsAfterFinished
    cron: CronSchedule | None = None  # a CronJob's: `pods` are the attempts of run RUN_PLACEHOLDER (cronjobs.run_pods)
    backoff_limit: int = 0  # a Job's (its pods are completions + backoffLimit attempts, or, Indexed, per index)
    job: JobPolicy = JobPolicy()  # a Job's completionMode and failure/success rules (gitops_agent/jobs)


def ordinal(pod: str) -> int:
    """A StatefulSet pod's ordinal: `db-2` and `db-2_ns` are 2."""
    tail = pod.split(SEP, 1)[0].rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def held(w: WorkloadSpec, pods: Iterable[LivePod]) -> tuple[LivePod, ...]:
    """A StatefulSet's live pods of an older template that stay as they are: below its partition, or every one
    under OnDelete (replaced only when removed by hand, as in Kubernetes). Nothing for other kinds."""
    if w.ref.kind != "StatefulSet":
        return ()
    names = {p.name for p in w.pods}
    return tuple(p for p in pods if p.name in names and p.template_hash != w.template_hash
                 and (w.strategy == "OnDelete" or ordinal(p.name) < w.partition))


@dataclass(frozen=True)
class NodeDesired:
    node: str
    revision: str
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    secrets: tuple[SecretSpec, ...]
    workloads: tuple[WorkloadSpec, ...]
    inventory: tuple[ObjectRef, ...]  # every object of the revision, for prune and status


# --- hashing --------------------------------------------------------------------


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=_jsonable).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


def safe_encode(hexdigest: str, length: int) -> str:
    """Kubernetes-style short hash: consonants and digits, so it never spells a word."""
    n = int(hexdigest, 16)
    out = []
    for _ in range(length):
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(out)


def template_hash(
    workload: Workload, configs: Mapping[tuple[str, str], ConfigData], services: Iterable[Service]
) -> str:
    """Hash of everything that, when changed, needs new pods.

    Covers the namespace, the pod template, the content of every ConfigMap and
    Secret it uses (so changing a ConfigMap rolls its pods), and the Services
    that select it (Podman cannot add a DNS alias or a published port to a
    running pod, so a Service change rolls the pods it selects). Replicas and
    strategy are not in it: scaling is not a new revision.
    """
    used = sorted(_config_refs(workload))
    content = {
        f"{kind}/{name}": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(configs[(kind, name)].data.items())}
        for kind, name in used
        if (kind, name) in configs
    }
    svc = sorted(
        (s.ref.name, s.type, [asdict(p) for p in s.ports]) for s in services if _selects(s, workload)
    )
    hashed: dict[str, Any] = {"ns": workload.ref.namespace, "template": _hashed_template(workload),
                              "config": content, "services": svc}
    if workload.job_policy.indexed:  # an Indexed Job's pods differ (their index): a new run, never NonIndexed's
        hashed["indexed"] = True
    return safe_encode(_digest(hashed), 10)


# Fields added to the model after template hashes were first used on nodes, with their defaults.
# At their default they are left out of the hash, so that upgrading the agent does not replace
# every pod; set to anything else, they are hashed like every other field.
_ADDED_TEMPLATE_FIELDS: dict[str, Any] = {
    "host_network": False, "host_pid": False, "host_ipc": False,
    "node_affinity": (), "preferred_affinity": (), "one_per_node": False, "tolerations": (), "fs_group": None,
    "init_containers": (), "topology_spread": (), "service_account_name": "",
    "pod_resources": None, "host_aliases": (), "share_process_namespace": False, "host_users": True,
    "node_name": None,
    "dns_policy": "ClusterFirst", "dns_config": {"nameservers": (), "searches": (), "options": ()},
}
_ADDED_CONTAINER_FIELDS: dict[str, Any] = {
    "privileged": False, "cap_add": (), "cap_drop": (), "read_only_root_fs": False,
    "run_as_user": None, "run_as_group": None, "allow_privilege_escalation": True,
    "requests": {"cpu_millis": None, "memory_bytes": None}, "supplemental_groups": (),
    "post_start": None, "pre_stop": None, "run_as_non_root": False, "ephemeral_request": None, "sidecar": False,
    "stdin": False, "tty": False,
    "seccomp": {"type": "RuntimeDefault", "localhost": ""}, "apparmor": {"type": "RuntimeDefault", "localhost": ""},
    "cgroup_writable": False,
}
_ADDED_PROBE_FIELDS: dict[str, Any] = {"service": ""}
_ADDED_VOLUME_FIELDS: dict[str, Any] = {"host_path_type": "", "medium": "", "size_limit": None, "sources": (),
                                        "files": (), "pull_policy": "", "dir_mode": None}
_ADDED_MOUNT_FIELDS: dict[str, Any] = {"sub_path": ""}
_ADDED_ENV_FIELDS: dict[str, Any] = {"field_path": None, "resource": None}


def _hashed_template(workload: Workload) -> dict[str, Any]:
    """asdict(template) without the added fields that hold their defaults."""

    def trim(fields: dict[str, Any], added: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if k not in added or v != added[k]}

    template = trim(asdict(workload.template), _ADDED_TEMPLATE_FIELDS)
    del template["image_pull_secrets"]  # credentials are not the pod: new ones apply to the next pull, no new pods
    for group in ("init_containers", "containers"):
        if group not in template:
            continue
        template[group] = [trim(c, _ADDED_CONTAINER_FIELDS) for c in template[group]]
        for c in template[group]:
            c["env"] = [trim(e, _ADDED_ENV_FIELDS) for e in c["env"]]
            c["volume_mounts"] = [trim(m, _ADDED_MOUNT_FIELDS) for m in c["volume_mounts"]]
            for kind in ("liveness_probe", "readiness_probe", "startup_probe"):
                if c.get(kind):
                    c[kind] = trim(c[kind], _ADDED_PROBE_FIELDS)
    template["volumes"] = [trim(v, _ADDED_VOLUME_FIELDS) for v in template["volumes"]]
    for v in template["volumes"]:  # a projected volume's sources were hashed whole before `files` came
        if "sources" in v:
            v["sources"] = [trim(source, {"files": (), "pull_policy": "", "dir_mode": None}) for source in v["sources"]]
        for source in (v, *v.get("sources", ())):  # an item's own mode came after the items
            source["items"] = [trim(item, {"mode": None}) for item in source["items"]]
    return template


def _config_refs(workload: Workload) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for c in (*workload.template.init_containers, *workload.template.containers):
        for e in c.env:
            if e.ref is not None:
                refs.add((e.ref.kind, e.ref.name))
        for f in c.env_from:
            refs.add((f.kind, f.name))
    for v in (s for volume in workload.template.volumes for s in (*volume.sources, volume)):
        if v.kind == "configMap":
            refs.add(("ConfigMap", v.source))
        elif v.kind == "secret":
            refs.add(("Secret", v.source))
    return refs


_selects = forwarder.selects


def as_seen_by_pods(services: Iterable[Service], workloads: Iterable[Workload]) -> list[Service]:
    """The Services as the pods they select see them: one served by a forwarder (`forwarder.forwarded`) is, for
    its pods, a ClusterIP Service of the same ports (they publish nothing; a change of its node ports replaces the
    forwarder, not them), so a change of path (scale 1 -> 3) rolls the pods once."""
    workloads = tuple(workloads)
    return [replace(s, type="ClusterIP", ports=tuple(replace(p, node_port=None) for p in s.ports))
            if forwarder.forwarded(s, workloads) else s for s in services]


# --- names ------------------------------------------------------------------------


SEP = "_"  # joins the parts of a name: no namespace, object or container name can hold it
_SECRET_HASH = 10
_SECRET_READABLE = 64 - 1 - _SECRET_HASH  # Podman 4.3 refuses secret names over 64 characters
_DEPLOYMENT_SHAPE = re.compile(f"-[{_ALPHABET}]{{10}}-[{_ALPHABET}]{{5}}$")


def network_name(namespace: str) -> str:
    return f"gitops-{namespace}"


def volume_name(namespace: str, claim: str) -> str:
    return f"gitops-{namespace}{SEP}{claim}"


def ordinal_claim(statefulset: str, template: str, index: int) -> str:
    """The claim of a StatefulSet's ordinal for one of its volumeClaimTemplates: Kubernetes' PVC name."""
    return f"{template}-{statefulset}-{index}"


def ordinal_volumes(w: Workload, count: int, commit: str) -> tuple[VolumeSpec, ...]:
    """The volumes of a StatefulSet's `count` ordinals on a node, owned by the StatefulSet (never pruned while it
    is declared: scaling down keeps them, and scaling up again finds each ordinal's data)."""
    classes = dict(w.claim_classes)
    return tuple(
        VolumeSpec(volume_name(w.ref.namespace, claim), ObjectRef("PersistentVolumeClaim", w.ref.namespace, claim),
                   owner_labels(w.ref, commit), classes.get(v.name, StorageClass()))
        for i in range(count) for v in w.template.volumes if v.kind == "claimTemplate"
        for claim in (ordinal_claim(w.ref.name, v.name, i),)
    )


def empty_dir_name(pod: str, volume: str) -> str:
    """The Podman volume of emptyDir `volume` of `pod` (no claim's volume name starts with a pod's name)."""
    return f"{pod}{SEP}emptydir{SEP}{volume}"


def legacy_volume_name(namespace: str, claim: str) -> str:
    """The name older agents (dash-joined names) gave a claim's volume (not injective: `a-b`/`c` = `a`/`b-c`)."""
    return f"gitops-{namespace}-{claim}"


def claim_volume(claim: ObjectRef, live: Mapping[str, Mapping[str, str]]) -> str:
    """The volume that holds `claim`'s data on a node whose managed volumes (name → labels)
    are `live`: the current name; else a volume under the old name whose ownership labels
    say it is this claim's (its data carries over: never a fresh empty volume, never a
    delete); else the current name, to be created."""
    name = volume_name(claim.namespace, claim.name)
    if name in live:
        return name
    old = legacy_volume_name(claim.namespace, claim.name)
    labels = live.get(old)
    if labels is not None and (labels.get(L_KIND), labels.get(L_NAMESPACE), labels.get(L_NAME)) == (
            claim.kind, claim.namespace, claim.name):
        return old
    return name


def secret_name(source: ObjectRef, key: str, data: bytes) -> str:
    identity = "\0".join((source.namespace, source.kind, source.name, key)).encode()
    h = safe_encode(hashlib.sha256(identity + b"\0\0" + data).hexdigest(), _SECRET_HASH)
    readable = SEP.join((f"{SECRET_PREFIX}{source.namespace}", source.kind.lower(), source.name, key))
    readable = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in readable)[:_SECRET_READABLE]
    return f"{readable}-{h}"


def legacy_secret_name(source: ObjectRef, key: str, data: bytes) -> str:
    """What older agents (dash-joined names) named a key's secret: the hash left out kind and name."""
    h = safe_encode(hashlib.sha256(source.namespace.encode() + b"\0" + key.encode() + b"\0" + data).hexdigest(), 8)
    readable = f"{SECRET_PREFIX}{source.namespace}-{source.kind.lower()}-{source.name}-{key}"
    readable = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in readable)[:200]
    return f"{readable}-{h}"


def legacy_secret_names(revision: Revision) -> frozenset[str]:
    """The secrets an older agent made for `revision`: on upgrade, the ones of the applied revision
    are taken into the secret inventory (their names embed a hash of the value, so only something
    that knew each value made them, and the old agent used them as its own either way)."""
    return frozenset(legacy_secret_name(o.ref, k, v) for o in revision.objects if isinstance(o, ConfigData)
                     for k, v in o.data.items())


def pod_names(workload: Workload, thash: str, count: int) -> list[str]:
    """Stable names: the same template and replica index always give the same pod name."""
    if workload.ref.kind == "Pod":
        name, ns = workload.ref.name, workload.ref.namespace
        plain = ns == "default" and not _DEPLOYMENT_SHAPE.search(name)
        return [name if plain else f"{name}{SEP}{ns}"][:count]
    if workload.ref.kind == "CronJob":  # `<name>-<run>-<attempt>`: a run's names (cronjobs.run_pods)
        ns = workload.ref.namespace
        return [f"{workload.ref.name}-{RUN_PLACEHOLDER}-{i}" + ("" if ns == "default" else f"{SEP}{ns}")
                for i in range(count)]
    if workload.ref.kind == "Job" and workload.job_policy.indexed:
        return indexed_pod_names(workload, thash, count)
    if workload.ref.kind == "StatefulSet":  # `<name>-<ordinal>`, whatever the template
        ns = workload.ref.namespace
        return [f"{workload.ref.name}-{i}" + ("" if ns == "default" else f"{SEP}{ns}") for i in range(count)]
    names: list[str] = []
    taken: set[str] = set()
    for i in range(count):
        seed, attempt = f"{thash}/{i}", 0
        while True:  # two replicas whose 5-character suffixes meet: the later one draws again
            name = f"{workload.ref.name}-{thash}-{safe_encode(hashlib.sha256(seed.encode()).hexdigest(), 5)}"
            if name not in taken:
                break
            attempt += 1
            seed = f"{thash}/{i}/{attempt}"
        names.append(name)
        taken.add(name)
    return names


def index_attempts(workload: Workload) -> int:
    """An Indexed Job's pod names per index: backoffLimitPerIndex (else backoffLimit) + 1."""
    limit = workload.job_policy.backoff_limit_per_index
    return (workload.backoff_limit if limit is None else limit) + 1


def indexed_pod_names(workload: Workload, thash: str, count: int) -> list[str]:
    """An Indexed Job's pods, index by index, as Kubernetes names them: `<job>-<index>-<5 characters>`, the
    same for the same template, index and attempt."""
    attempts = index_attempts(workload)
    names: list[str] = []
    for k in range(count):
        seed, draw = f"{thash}/{k // attempts}/{k % attempts}", 0
        while True:
            name = f"{workload.ref.name}-{k // attempts}-{safe_encode(hashlib.sha256(seed.encode()).hexdigest(), 5)}"
            if name not in names:
                break
            draw += 1
            seed = f"{thash}/{k // attempts}/{k % attempts}/{draw}"
        names.append(name)
    return names


def with_index(workload: Workload, attempt: int) -> Workload:
    """An Indexed Job's template for its `attempt`-th pod name (of index attempt // index_attempts): the annotation
    and label batch.kubernetes.io/job-completion-index, and, in every container that does not set it,
    JOB_COMPLETION_INDEX from that annotation (as Kubernetes adds them). Any other workload as it is."""
    if not workload.job_policy.indexed:
        return workload
    t, index = workload.template, attempt // index_attempts(workload)
    var = EnvVar("JOB_COMPLETION_INDEX", field_path=f"metadata.annotations['{JOB_INDEX}']")

    def indexed(c: Container) -> Container:
        return c if any(e.name == var.name for e in c.env) else replace(c, env=(*c.env, var))

    return replace(workload, template=replace(
        t, annotations={**t.annotations, JOB_INDEX: str(index)}, labels={**t.labels, JOB_INDEX: str(index)},
        containers=tuple(map(indexed, t.containers)), init_containers=tuple(map(indexed, t.init_containers))))


def container_name(pod: str, container: str) -> str:
    return f"{pod}{SEP}{container}"


def legacy_container_name(pod: str, container: str) -> str:
    """What older agents (dash-joined names) named a container: pods created then keep it (no replacement)."""
    return f"{pod}-{container}"


def owner_labels(ref: ObjectRef, commit: str, thash: str = "") -> dict[str, str]:
    labels = {MANAGED: "true", L_NAMESPACE: ref.namespace, L_KIND: ref.kind, L_NAME: ref.name, L_REVISION: commit}
    if thash:
        labels[L_TEMPLATE_HASH] = thash
    return labels


# --- placement --------------------------------------------------------------------


def node_matches(node: NodeConfig, selector: Mapping[str, str]) -> bool:
    return all(node.labels.get(k) == v for k, v in selector.items())


HOSTNAME_LABEL = "kubernetes.io/hostname"


def node_labels(node: NodeConfig) -> dict[str, str]:
    """The labels affinity sees: the config's, kubernetes.io/hostname as the node's name unless the config sets it,
    and the node's name as metadata.name (matchFields)."""
    return {HOSTNAME_LABEL: node.name, **node.labels, "metadata.name": node.name}


def requirement_met(req: Requirement, labels: Mapping[str, str]) -> bool:
    """Kubernetes' nodeSelectorRequirement; Gt/Lt compare integers, a non-integer label value meets neither."""
    value = labels.get(req.key)
    if req.operator == "In":
        return value in req.values
    if req.operator == "NotIn":
        return value not in req.values
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    if value is None or not re.fullmatch(r"-?[0-9]+", value):
        return False
    return int(value) > int(req.values[0]) if req.operator == "Gt" else int(value) < int(req.values[0])


NUMERIC_TAINT_VALUE = r"[1-9][0-9]{0,18}"  # what Gt / Lt compare: a positive 64-bit integer, no leading zero


def term_met(term: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    """All requirements of a term; an empty term matches no node, as in Kubernetes."""
    return bool(term) and all(requirement_met(r, labels) for r in term)


def tolerated(taint: Taint, tolerations: Iterable[Toleration]) -> bool:
    return any(
        (t.key == taint.key or (t.key == "" and t.operator == "Exists"))
        and _value_tolerated(t, taint.value)
        and t.effect in ("", taint.effect)
        for t in tolerations
    )


def _value_tolerated(t: Toleration, value: str) -> bool:
    """Equal: the same value; Exists: any; Gt / Lt (Kubernetes 1.35): the taint's value, a positive integer without
    leading zeros, above / below the toleration's (a taint value that is not one is tolerated by neither)."""
    if t.operator in ("Exists", "Equal"):
        return t.operator == "Exists" or t.value == value
    if not re.fullmatch(NUMERIC_TAINT_VALUE, value):
        return False
    return int(value) > int(t.value) if t.operator == "Gt" else int(value) < int(t.value)


def eligible(workload: Workload, node: NodeConfig) -> bool:
    """The node satisfies the workload's nodeSelector and required nodeAffinity, and its pods tolerate every
    NoSchedule / NoExecute taint of the node; with a nodeName it is that node, and NoSchedule taints do not count
    (as in Kubernetes: the pod skips the scheduler, and the kubelet admits it unless it does not tolerate a NoExecute
    taint)."""
    t = workload.template
    labels = node_labels(node)
    counted = ("NoExecute",) if t.node_name is not None else ("NoSchedule", "NoExecute")
    return (
        node_matches(node, t.node_selector)
        and (not t.node_affinity or any(term_met(term, labels) for term in t.node_affinity))
        and all(tolerated(taint, t.tolerations) for taint in node.taints if taint.effect in counted)
        and all(c.key in labels for c in t.topology_spread if c.required)  # DoNotSchedule: a node of the topology
        and t.node_name in (None, node.name)
    )


def preference(workload: Workload, node: NodeConfig) -> int:
    """The node's score as a tie-breaker of the spread: the weights of the preferred nodeAffinity terms it meets,
    less 100 per untolerated PreferNoSchedule taint."""
    labels = node_labels(node)
    t = workload.template
    score = sum(weight for weight, term in t.preferred_affinity if term_met(term, labels))
    return score - 100 * sum(
        1 for taint in node.taints if taint.effect == "PreferNoSchedule" and not tolerated(taint, t.tolerations)
    )


def matching_nodes(workload: Workload, nodes: Iterable[NodeConfig]) -> list[str]:
    """Names of the nodes the workload may run on (`eligible`), the preferred first (`preference`), then in
    name order: a pure function of the config and the template, so placement never reshuffles by itself."""
    ranked = sorted((-preference(workload, n), n.name) for n in nodes if eligible(workload, n))
    return [name for _, name in ranked]


def unplaced(rev: Revision, nodes: Iterable[NodeConfig]) -> list[str]:
    """Workloads whose nodeSelector, affinity and tolerations match no configured node, or with more replicas
    than nodes under a podAntiAffinity: a clear status, not a crash."""
    nodes = tuple(nodes)
    warnings = []
    for w in (o for o in rev.objects if isinstance(o, Workload)):
        matching = matching_nodes(w, nodes)
        if w.ref.kind == "Deployment" and w.template.one_per_node and 0 < len(matching) < w.replicas:
            warnings.append(f"{w.ref}: podAntiAffinity allows one pod per node and {len(matching)} node(s) "
                            f"match; {w.replicas - len(matching)} of {w.replicas} replica(s) not placed")
        if matching or ((w.ref.kind == "Deployment" or w.ref.kind in NEVER_ROLLS) and w.replicas == 0):
            continue
        selector = ", ".join(f"{k}={v}" for k, v in sorted(w.template.node_selector.items()))
        what = f"{w.replicas} replica(s) not placed" if w.ref.kind != "DaemonSet" else "runs nowhere"
        if w.template.node_name is not None:
            warnings.append(f"{w.ref}: its nodeName {w.template.node_name} is no node of the config that matches its "
                            f"nodeSelector, nodeAffinity and tolerations; {what}")
        elif w.template.node_affinity or w.template.tolerations or any(n.taints for n in nodes):
            warnings.append(f"{w.ref}: no node matches its nodeSelector, nodeAffinity and tolerations; {what}")
        else:
            warnings.append(f"{w.ref}: no node matches nodeSelector {selector}; {what}")
    return warnings


def replicas_on(workload: Workload, node: NodeConfig, nodes: tuple[NodeConfig, ...]) -> int:
    """Pods of `workload` on `node`. A DaemonSet runs one on every matching
    node. A Deployment spreads `replicas` evenly over the matching nodes, the
    preferred first, then in node-name order, the first nodes taking the
    remainder (with podAntiAffinity: one per node at most): deterministic, so an
    unchanged Deployment is never reshuffled between syncs."""
    matching = matching_nodes(workload, nodes)
    if node.name not in matching:
        return 0
    if workload.ref.kind == "DaemonSet":
        return 1
    if workload.ref.kind == "StatefulSet":  # every ordinal on the first matching node, where its data is
        return workload.replicas if matching.index(node.name) == 0 else 0
    if workload.ref.kind in BATCH:  # a pod name for every attempt it (each run) may make, on the first matching node
        if workload.job_policy.indexed:
            return workload.completions * index_attempts(workload) if matching.index(node.name) == 0 else 0
        return workload.completions + workload.backoff_limit if matching.index(node.name) == 0 else 0
    zone = next((c for c in workload.template.topology_spread if c.key != HOSTNAME_LABEL), None)
    if zone is not None:
        return spread_over(workload, zone.key, [n for name in matching for n in nodes if n.name == name])[node.name]
    if workload.template.one_per_node:
        return 1 if matching.index(node.name) < workload.replicas else 0
    base, extra = divmod(workload.replicas, len(matching))
    return base + (1 if matching.index(node.name) < extra else 0)


def spread_over(workload: Workload, key: str, ranked: list[NodeConfig]) -> dict[str, int]:
    """Replicas per node under a topologySpreadConstraint over node label `key` (`ranked`: the matching nodes,
    the preferred first): each replica goes to the value of the label with the fewest so far (ties: the value
    of the better-ranked node first), there to its node with the fewest (ties: by rank), so values and the nodes
    of each value differ by at most one (a skew of 1). Nodes without the label (ScheduleAnyway only: DoNotSchedule
    leaves them unmatched) take replicas only when no labelled node may (podAntiAffinity: one pod per node)."""
    cap = 1 if workload.template.one_per_node else workload.replicas
    counts = {n.name: 0 for n in ranked}
    domains: dict[str, list[str]] = {}
    for n in ranked:
        if key in n.labels:
            domains.setdefault(n.labels[key], []).append(n.name)
    unlabelled = [n.name for n in ranked if key not in n.labels]
    for _ in range(workload.replicas):
        open_domains = [names for names in domains.values() if any(counts[x] < cap for x in names)]
        if open_domains:
            names = min(open_domains, key=lambda d: sum(counts[x] for x in d))  # min keeps the first of ties
        else:
            names = unlabelled
        free = [x for x in names if counts[x] < cap]
        if not free:
            break  # not placed: `unplaced` says so
        counts[min(free, key=lambda x: counts[x])] += 1
    return counts


# --- rolling-update numbers ---------------------------------------------------------


def resolve_surge(value: int | str, replicas: int, round_up: bool) -> int:
    """Kubernetes' intstr rounding: maxSurge rounds up, maxUnavailable rounds down."""
    if isinstance(value, int):
        return value
    pct = int(str(value).rstrip("%"))
    scaled = pct * replicas
    return -(-scaled // 100) if round_up else scaled // 100


# --- the compilation ------------------------------------------------------------------


def compile_node(revision: Revision, node: NodeConfig, nodes: tuple[NodeConfig, ...],
                 reported: Resources | None = None) -> NodeDesired:
    """Everything node `node` should run for `revision` (its per-node variant, if it has one). `reported`: the
    amounts the node's Podman reports (`podman.Node.read_amounts`), needed when `needs_amounts` says so, or
    `ENV_UNUSED` for a caller that uses no container's env or files."""
    revision = revision.variants.get(node.name, revision)
    allocatable = node_allocatable(revision, node, reported)
    objs = revision.objects
    commit = revision.commit
    configs = {(o.ref.kind, o.ref.name, o.ref.namespace): o for o in objs if isinstance(o, ConfigData)}
    every = [o for o in objs if isinstance(o, Workload)]
    services = as_seen_by_pods((o for o in objs if isinstance(o, Service)), every)
    volumes = tuple(
        VolumeSpec(volume_name(o.ref.namespace, o.ref.name), o.ref, owner_labels(o.ref, commit),
                   o.storage_class or StorageClass())
        for o in objs if isinstance(o, Claim)
    )
    secrets: dict[str, SecretSpec] = {}
    workloads: list[WorkloadSpec] = []
    for w in every:
        ns_configs = {(k, n): c for (k, n, ns), c in configs.items() if ns == w.ref.namespace}
        thash = template_hash(w, ns_configs, services)
        count = replicas_on(w, node, nodes)
        volumes += ordinal_volumes(w, count, commit)
        selecting = [s for s in services if _selects(s, w)]
        pods = tuple(
            _pod(with_index(w, k), name, thash, commit, ns_configs, selecting, secrets, node, allocatable)
            for k, name in enumerate(pod_names(w, thash, count))
        )
        workloads.append(
            WorkloadSpec(
                ref=w.ref,
                template_hash=thash,
                replicas=count,
                strategy=w.strategy,
                max_surge=resolve_surge(w.rolling_update.max_surge, count, round_up=True),
                max_unavailable=resolve_surge(w.rolling_update.max_unavailable, count, round_up=False),
                pods=pods,
                images=_images(w),
                min_ready_seconds=w.min_ready_seconds, progress_deadline_seconds=w.progress_deadline_seconds,
                node_rollout=w.node_rollout,
                ordered=w.pod_management == "OrderedReady" and w.ref.kind == "StatefulSet",
                partition=w.partition,
                completions=w.completions if w.ref.kind in BATCH else 0, parallelism=w.parallelism, job=w.job_policy,
                active_deadline=w.active_deadline_seconds, ttl=w.ttl_seconds_after_finished, cron=w.cron,
                backoff_limit=w.backoff_limit if w.ref.kind in BATCH else 0,
            )
        )
    return NodeDesired(
        node=node.name,
        revision=revision.id,
        networks=_networks(revision),
        volumes=volumes,
        secrets=tuple(sorted(secrets.values(), key=lambda s: s.name)),
        workloads=(*workloads, *forwarders(revision, node, nodes)),
        inventory=tuple(o.ref for o in objs),
    )


def _networks(revision: Revision) -> tuple[NetworkSpec, ...]:
    """One network per namespace of `revision`, "default" included."""
    namespaces = {"default"} | {o.ref.name for o in revision.objects if isinstance(o, Namespace)}
    return tuple(NetworkSpec(network_name(ns), ns, owner_labels(ObjectRef("Namespace", ns, ns), revision.commit))
                 for ns in sorted(namespaces))


def _pod(
    w: Workload,
    name: str,
    thash: str,
    commit: str,
    configs: Mapping[tuple[str, str], ConfigData],
    services: list[Service],
    secrets: dict[str, SecretSpec],
    node: NodeConfig,
    allocatable: Resources,
) -> PodSpec:
    t = w.template
    labels = {**t.labels, **owner_labels(w.ref, commit, thash)}
    ports: list[PortMapping] = []
    for c in () if t.host_network else (*(s for s in t.init_containers if s.sidecar), *t.containers):
        for p in c.ports:
            if p.host_port:
                ports.append(PortMapping(p.host_port, p.container_port, p.protocol.lower()))
    for s in () if t.host_network else services:
        for host_port, sp in s.published():
            target = _target_port(sp.target_port, sp.port, t.containers)
            ports.append(PortMapping(host_port, target, sp.protocol.lower()))
    containers = tuple(_container(w, name, c, commit, thash, configs, secrets, (node, allocatable))
                       for c in t.containers)
    inits = tuple(_container(w, name, c, commit, thash, configs, secrets, (node, allocatable))
                  for c in t.init_containers)
    inits = tuple(replace(c, labels={**c.labels, **({L_SIDECAR: str(i)} if m.sidecar else {L_INIT: "true"})})
                  for i, (c, m) in enumerate(zip(inits, t.init_containers)))
    used = {n for c in (*inits, *containers) for n in (*c.secret_env.values(), *(m.secret for m in c.secret_mounts))}
    hidden = [secrets[n] for n in sorted(used) if secrets[n].source.kind == "Secret"]
    return PodSpec(
        name=name,
        owner=w.ref,
        template_hash=thash,
        network="" if t.host_network else network_name(w.ref.namespace),
        aliases=() if t.host_network else tuple(sorted(s.ref.name for s in services)) + _pod_dns(w, name),
        ports=tuple(ports),
        # a Job's retries are new pods (gitops_agent/jobs), so Podman never restarts one of its containers
        restart_policy="no" if w.ref.kind in BATCH else
        {"Always": "always", "OnFailure": "on-failure", "Never": "no"}[t.restart_policy],
        stop_timeout=t.termination_grace_period_seconds,
        containers=containers,
        labels=labels,
        min_ready_seconds=w.min_ready_seconds,
        progress_deadline_seconds=w.progress_deadline_seconds,
        host_network=t.host_network,
        redactions=redactions((f"[Secret {h.source.name} key {h.key}]", h.data) for h in hidden),
        pull_credentials=pull_credentials(w, configs),
        empty_dirs=tuple(EmptyDirSpec(empty_dir_name(name, v.name), v.medium, v.size_limit, v.dir_mode)
                         for v in t.volumes if v.kind == "emptyDir"),
        init_containers=inits,
        **_pod_level(t),
        dns=pod_dns(t),
    )


def forwarders(revision: Revision, node: NodeConfig, nodes: tuple[NodeConfig, ...]) -> list[WorkloadSpec]:
    """The Service forwarders node `node` runs (`gitops_agent/forwarder.py`): one per forwarded Service that has
    pods on this node, after every workload (a change of path: the pods stop publishing before it binds)."""
    every = [o for o in revision.objects if isinstance(o, Workload)]
    out = []
    for s in (o for o in revision.objects if isinstance(o, Service)):
        selected = [w for w in every if forwarder.selects(s, w) and not w.template.host_network]
        if forwarder.forwarded(s, every) and any(replicas_on(w, node, nodes) for w in selected):
            out.append(forwarder_spec(s, selected, revision.forwarder_image or forwarder.DEFAULT_IMAGE,
                                      revision.commit))
    return out


def forwarder_spec(s: Service, selected: list[Workload], image: str, commit: str) -> WorkloadSpec:
    """Service `s`'s forwarder pod: one socat container per published port, listening on the node port and
    connecting to the Service's name at the port its pods serve. Its template hash covers the image and the
    ports only: it is replaced when they change, never by its pods' rollouts (it is no alias of the Service)."""
    containers = selected[0].template.containers if selected else ()
    routes = [(host_port, sp, _target_port(sp.target_port, sp.port, containers)) for host_port, sp in s.published()]
    thash = safe_encode(_digest({"image": image, "ns": s.ref.namespace, "service": s.ref.name,
                                 "routes": [(h, sp.protocol, t) for h, sp, t in routes]}), 10)
    name = forwarder.pod_name(s)
    labels = owner_labels(s.ref, commit, thash)
    pod = PodSpec(
        name=name, owner=s.ref, template_hash=thash, network=network_name(s.ref.namespace), aliases=(),
        ports=tuple(PortMapping(h, h, sp.protocol.lower()) for h, sp, _ in routes),
        restart_policy="always", stop_timeout=1, labels=labels,
        containers=tuple(
            _forwarder_container(container_name(name, forwarder.container_suffix(h, sp.protocol)), image,
                                 forwarder.socat_args(s, h, sp, t), labels)
            for h, sp, t in routes),
    )
    return WorkloadSpec(ref=s.ref, template_hash=thash, replicas=1, strategy="Recreate", max_surge=0,
                        max_unavailable=1, pods=(pod,), images=((image, "IfNotPresent"),))


def _forwarder_container(name: str, image: str, args: tuple[str, ...], labels: Mapping[str, str]) -> ContainerSpec:
    return ContainerSpec(
        name=name, image=image, pull_policy="IfNotPresent", entrypoint=("socat",), command=args, env={},
        secret_env={}, secret_mounts=(), volumes=(), working_dir=None, health_cmd=None, health_interval=0,
        health_timeout=0, health_retries=0, health_start_period=0, cpu_millis=None, memory_bytes=None,
        labels={**labels, L_CONTAINER: name.rsplit(SEP, 1)[-1]}, cap_add=("CAP_NET_BIND_SERVICE",), cap_drop=("ALL",),
        no_new_privileges=True,
    )


def _pod_level(t: PodTemplate) -> dict[str, Any]:
    """The PodSpec fields of pod-level resources (the pod's cgroup), hostAliases, shareProcessNamespace and
    hostUsers."""
    fields: dict[str, Any] = {
        "hosts": tuple(f"{name}:{alias.ip}" for alias in t.host_aliases for name in alias.hostnames),
        "share_pid": t.share_process_namespace,
        "own_userns": not t.host_users,
    }
    if t.pod_resources is not None:
        requests = pod_requests(t.pod_resources)
        fields.update(cpu_millis=t.pod_resources.limits.cpu_millis, memory_bytes=t.pod_resources.limits.memory_bytes,
                      pids_limit=t.pod_resources.pids, cpu_shares=cpu_shares(requests.cpu_millis),
                      memory_reservation=requests.memory_bytes)
    return fields




# Podman's search domain of a network with DNS (aardvark-dns): the network's own, before a ClusterFirst pod's.
PODMAN_DNS_SEARCH = "dns.podman"
NODE_RESOLV_CONF = "/etc/resolv.conf"  # dnsPolicy Default: the node's, mounted read-only in each container


def pod_dns(t: PodTemplate) -> PodDNS | None:
    """The resolver settings of a pod of template `t`: dnsPolicy None's dnsConfig as it is; ClusterFirst's after
    the network's (its server and search domain first, as Kubernetes merges them); None for the network's own
    (ClusterFirst without dnsConfig) or the node's (Default, hostNetwork)."""
    config = t.dns_config
    options = tuple(name if value is None else f"{name}:{value}" for name, value in config.options)
    if t.host_network or t.dns_policy == "Default":
        return None
    if t.dns_policy == "None":
        # no searches: "." (Podman's "none"), else Podman writes the node's search domains
        return PodDNS(config.nameservers, config.searches or (".",), options)
    if config == DNSConfig():
        return None
    # Podman drops the network's search domain once servers or searches are given: it goes first again; with
    # options only, Podman keeps its own (the network's and the node's), as the kubelet keeps the node's
    given = config.searches or config.nameservers
    searches = tuple(dict.fromkeys((PODMAN_DNS_SEARCH, *config.searches))) if given else ()
    return PodDNS(config.nameservers, searches, options, network_first=bool(config.nameservers))


def _pod_dns(w: Workload, pod: str) -> tuple[str, ...]:
    """A StatefulSet pod's own DNS name through its governing Service: `<pod>.<serviceName>`."""
    return (f"{pod.split(SEP, 1)[0]}.{w.service_name}",) if w.service_name else ()


# --- redaction ------------------------------------------------------------------------

MIN_REDACTED = 4  # shorter values are not searched for: they would blank out ordinary text
OUTPUT_LIMIT = 400  # characters of probe output kept (the end, where the error usually is)


def redactions(values: Iterable[tuple[str, bytes]]) -> tuple[tuple[str, str], ...]:
    """(text, placeholder) pairs for Secret values, longest first: the whole value, the value
    without its trailing newline (a mounted file printed by `cat`), and each of its lines."""
    pairs: dict[str, str] = {}
    for label, data in values:
        text = data.decode("utf-8", "replace")
        for part in (text, text.rstrip("\r\n"), *text.splitlines()):
            part = part.strip("\r\n")
            if len(part) >= MIN_REDACTED:
                pairs.setdefault(part, label)
    return tuple(sorted(pairs.items(), key=lambda kv: (-len(kv[0]), kv[0])))


def redact(text: str, pairs: Iterable[tuple[str, str]], limit: int = OUTPUT_LIMIT) -> str:
    """`text` with every Secret value replaced by its placeholder, then cut to its last
    `limit` characters (cut after redacting, so no part of a value survives the cut)."""
    for value, label in pairs:
        if value in text:
            text = text.replace(value, label)
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def pull_credentials(w: Workload, configs: Mapping[tuple[str, str], ConfigData]) -> tuple[Credential, ...]:
    """The registry credentials of the workload's imagePullSecrets (validated by `manifests`)."""
    creds: list[Credential] = []
    for name in w.template.image_pull_secrets:
        secret = configs.get(("Secret", name))
        if secret is None or secret.type not in SECRET_KEYS:
            continue
        data = secret.data[SECRET_KEYS[secret.type]]
        creds += parse(data, secret.type == DOCKERCONFIGJSON, f"Secret {secret.ref.namespace}/{name}")
    return tuple(creds)


def _target_port(target: int | str | None, port: int, containers: tuple[Container, ...]) -> int:
    if target is None:
        return port
    if isinstance(target, int):
        return target
    for c in containers:
        for p in c.ports:
            if p.name == target:
                return p.container_port
    return port  # manifests rejects unknown port names; unreachable for a validated revision


def _secret(
    configs: Mapping[tuple[str, str], ConfigData], kind: str, name: str, key: str, secrets: dict[str, SecretSpec]
) -> str | None:
    cfg = configs.get((kind, name))
    if cfg is None or key not in cfg.data:
        return None  # optional reference to something absent
    sname = secret_name(cfg.ref, key, cfg.data[key])
    secrets.setdefault(sname, SecretSpec(sname, cfg.ref, key, cfg.data[key], owner_labels(cfg.ref, "")))
    return sname


def _container_env(
    w: Workload,
    pod: str,
    c: Container,
    configs: Mapping[tuple[str, str], ConfigData],
    secrets: dict[str, SecretSpec],
    on: tuple[NodeConfig, Resources],
    thash: str = "",
) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """The container's plain environment, its Secret-backed variables (name -> Podman secret) and the variables
    that get the pod's address (status.podIP on the namespace network: known once the pod's infra container
    runs, `podman.Node.create_pod`), in Kubernetes order: envFrom first, then env (env wins on conflicts).
    Registers each Secret it uses in `secrets`. `on`: the node and its allocatable amounts."""
    node, allocatable = on
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    pod_ip: dict[str, None] = {}  # ordered set

    def put(var: str, kind: str, name: str, key: str) -> None:
        cfg = configs.get((kind, name))
        if cfg is None or key not in cfg.data:
            return
        if kind == "ConfigMap" or not cfg.data[key]:  # an empty Secret value: plain env, Podman stores no 0 bytes
            env[var] = cfg.data[key].decode("utf-8", errors="replace")
            secret_env.pop(var, None)
        else:
            sname = _secret(configs, kind, name, key, secrets)
            assert sname is not None
            secret_env[var] = sname
            env.pop(var, None)
        pod_ip.pop(var, None)

    def plain(var: str, value: str) -> None:
        env[var] = value
        secret_env.pop(var, None)
        pod_ip.pop(var, None)

    for f in c.env_from:
        cfg = configs.get((f.kind, f.name))
        for key in sorted(cfg.data) if cfg else ():
            put(f.prefix + key, f.kind, f.name, key)
    by_name = {other.name: other for other in (*w.template.init_containers, *w.template.containers)}
    for e in c.env:
        if e.ref is not None:
            put(e.name, e.ref.kind, e.ref.name, e.ref.key)
        elif e.field_path in POD_IP_FIELDS and not w.template.host_network:
            env.pop(e.name, None)
            secret_env.pop(e.name, None)
            pod_ip[e.name] = None
        elif e.field_path is not None:
            plain(e.name, field_value(e.field_path, pod, w, node, thash))
        elif e.resource is not None:
            plain(e.name, resource_value(by_name[e.resource.container], e.resource, w.template.pod_resources,
                                         allocatable))
        else:
            plain(e.name, e.value or "")
    return env, secret_env, tuple(pod_ip)


def _node_env(w: Workload, c: Container) -> tuple[str, ...]:
    """The variables of `c`'s env whose value is the node's allocatable amount: the last env entry of that name
    (env comes after envFrom and wins) is a resourceFieldRef of a limit neither its container nor its pod sets."""
    by_name = {other.name: other for other in (*w.template.init_containers, *w.template.containers)}
    last = {e.name: e for e in c.env}
    return tuple(name for name, e in last.items()
                 if e.ref is None and e.field_path is None and e.resource is not None
                 and e.resource.resource.startswith("limits.")
                 and resource_amount(by_name[e.resource.container], e.resource, w.template.pod_resources) is None)


def _container_mounts(
    w: Workload,
    pod: str,
    c: Container,
    configs: Mapping[tuple[str, str], ConfigData],
    secrets: dict[str, SecretSpec],
    thash: str = "",
    allocatable: Resources = Resources(),
) -> tuple[list[SecretMount], list[VolumeBind], list[HostMount]]:
    """The container's volume mounts as Podman sees them: Secret/ConfigMap files (as Podman secrets, registered
    in `secrets`), named-volume binds (persistentVolumeClaim, emptyDir) and host paths. `allocatable`: the
    node's, for a downwardAPI file of a limit nobody sets."""
    mounts: list[SecretMount] = []
    binds: list[VolumeBind] = []
    host_mounts: list[HostMount] = []
    volumes = {v.name: v for v in w.template.volumes}
    for m in c.volume_mounts:
        v = volumes[m.name]
        if v.kind == "hostPath":
            source = f"{v.source.rstrip('/')}/{m.sub_path}" if m.sub_path else v.source
            host_mounts.append(HostMount(source, m.mount_path, m.read_only))
            continue
        if v.kind == "persistentVolumeClaim":
            binds.append(VolumeBind(volume_name(w.ref.namespace, v.source), m.mount_path, m.read_only or v.read_only,
                                    m.sub_path))
            continue
        if v.kind == "emptyDir":
            binds.append(VolumeBind(empty_dir_name(pod, v.name), m.mount_path, m.read_only, m.sub_path))
            continue
        if v.kind == "image":  # `image_mounts`
            continue
        if v.kind == "claimTemplate":
            claim = ordinal_claim(w.ref.name, v.name, ordinal(pod))
            binds.append(VolumeBind(volume_name(w.ref.namespace, claim), m.mount_path, m.read_only, m.sub_path))
            continue
        mounts.extend(_file_mounts(v, m, configs, secrets, lambda f: downward_content(f, pod, w, thash, allocatable),
                                   w.ref))
    return mounts, binds, host_mounts


def _file_mounts(
    v: Volume, m: VolumeMount, configs: Mapping[tuple[str, str], ConfigData], secrets: dict[str, SecretSpec],
    downward: Callable[[DownwardFile], bytes], owner: ObjectRef,
) -> Iterator[SecretMount]:
    """The files of a configMap, secret, downwardAPI or projected volume (its sources merged into one directory,
    in order) as Podman secrets under the mount path; with a subPath, the one file or the directory of files it
    names, at the mount path itself. A downwardAPI file's content is `downward`'s, its secret `owner`'s."""
    base = m.mount_path.rstrip("/")

    def target(path: str) -> str | None:
        rel = "/".join(part for part in path.split("/") if part not in ("", "."))
        if m.sub_path and rel != m.sub_path and not rel.startswith(m.sub_path + "/"):
            return None
        return (f"{base}{rel.removeprefix(m.sub_path)}" if m.sub_path else f"{base}/{rel}") or "/"

    for source in v.sources or (v,):
        if source.kind == "downwardAPI":
            for f in source.files:
                where = target(f.path)
                if where is not None:
                    dname = _downward_secret(owner, f"{v.name}/{f.path}", downward(f), secrets)
                    yield SecretMount(dname, where, source.default_mode if f.mode is None else f.mode)
            continue
        kind = "ConfigMap" if source.kind == "configMap" else "Secret"
        cfg = configs.get((kind, source.source))
        if cfg is None:
            continue  # optional and absent: Kubernetes mounts an empty directory; Podman needs no mount
        items = source.items or tuple(KeyToPath(k, k) for k in sorted(cfg.data))
        for item in items:
            at = target(item.path)
            sname = _secret(configs, kind, source.source, item.key, secrets) if at is not None else None
            if sname is not None and at is not None:
                yield SecretMount(sname, at, source.default_mode if item.mode is None else item.mode)


def _downward_secret(owner: ObjectRef, key: str, data: bytes, secrets: dict[str, SecretSpec]) -> str:
    """The Podman secret of one downwardAPI file (`key` VOLUME/PATH) of a pod of workload `owner`."""
    sname = secret_name(owner, key, data)
    secrets.setdefault(sname, SecretSpec(sname, owner, key, data, owner_labels(owner, "")))
    return sname


def _health_start_period(c: Container) -> int:
    """The liveness healthcheck's start period. Podman 4.3 has no startup healthcheck: liveness waits out the
    startup probe."""
    probe = c.liveness_probe
    start_period = probe.initial_delay_seconds if probe else 0
    if probe and c.startup_probe:
        s = c.startup_probe
        start_period = max(start_period, s.initial_delay_seconds + s.period_seconds * s.failure_threshold)
    return start_period


def _user(c: Container) -> str | None:
    """Podman's --user: uid, or uid:gid; None for the image's user."""
    if c.run_as_user is None:
        return None
    return str(c.run_as_user) if c.run_as_group is None else f"{c.run_as_user}:{c.run_as_group}"


def _groups(w: Workload, c: Container) -> tuple[str, ...]:
    """Podman's --group-add: the pod's fsGroup, then the container's supplementalGroups, without repeats."""
    fs_group = () if w.template.fs_group is None else (w.template.fs_group,)
    return tuple(dict.fromkeys(str(gid) for gid in (*fs_group, *c.supplemental_groups)))


def _container(
    w: Workload,
    pod: str,
    c: Container,
    commit: str,
    thash: str,
    configs: Mapping[tuple[str, str], ConfigData],
    secrets: dict[str, SecretSpec],
    on: tuple[NodeConfig, Resources],
) -> ContainerSpec:
    """Container `c` of pod `pod` as Podman creates it, `on` its node (with its allocatable amounts)."""
    env, secret_env, pod_ip_env = _container_env(w, pod, c, configs, secrets, on, thash)
    mounts, binds, host_mounts = _container_mounts(w, pod, c, configs, secrets, thash, on[1])
    probe, agent_liveness = _liveness(c, w.template)
    return ContainerSpec(
        name=container_name(pod, c.name),
        image=c.image,
        pull_policy=c.image_pull_policy,
        entrypoint=c.command,
        command=c.args,
        env=env,
        secret_env=secret_env,
        pod_ip_env=pod_ip_env,
        node_env=_node_env(w, c),
        secret_mounts=tuple(mounts),
        volumes=tuple(binds),
        working_dir=c.working_dir,
        **_health(probe, c),
        cpu_millis=c.resources.cpu_millis,
        memory_bytes=c.resources.memory_bytes,
        cpu_shares=cpu_shares(effective_requests(c).cpu_millis),
        memory_reservation=effective_requests(c).memory_bytes,
        labels={**owner_labels(w.ref, commit, thash), L_CONTAINER: c.name,
                **_pre_stop_label(c, w.template.termination_grace_period_seconds), **agent_liveness},
        readiness=c.readiness_probe,
        startup=c.startup_probe,
        liveness=probe,
        host_mounts=tuple(host_mounts) + _resolv_conf_mount(w.template),
        privileged=c.privileged,
        cap_add=tuple(dict.fromkeys(_podman_cap(name) for name in c.cap_add)),
        cap_drop=tuple(dict.fromkeys(_podman_cap(name) for name in c.cap_drop)),
        read_only_root_fs=c.read_only_root_fs,
        user=_user(c),
        no_new_privileges=not c.allow_privilege_escalation,
        cgroup_writable=c.cgroup_writable,
        groups=_groups(w, c),
        host_pid=w.template.host_pid,
        host_ipc=w.template.host_ipc,
        host_uts=w.template.host_network,
        post_start=hook_command(c.post_start, w.template.termination_grace_period_seconds),
        non_root_image=c.run_as_non_root and c.run_as_user is None,
        fs_group=w.template.fs_group if any(not b.read_only for b in binds) else None,
        stdin=c.stdin,
        tty=c.tty,
        seccomp=_seccomp(c.seccomp, on[0]),
        apparmor={"RuntimeDefault": "", "Unconfined": "unconfined"}.get(c.apparmor.type, c.apparmor.localhost),
        image_mounts=image_mounts(w, c),
    )


def _health(probe: Probe | None, c: Container) -> dict[str, Any]:
    """The ContainerSpec fields of Podman's healthcheck: the liveness probe the container runs itself."""
    return {"health_cmd": probe_command(probe) if probe else None,
            "health_interval": probe.period_seconds if probe else 0,
            "health_timeout": probe.timeout_seconds if probe else 0,
            "health_retries": probe.failure_threshold if probe else 0,
            "health_start_period": _health_start_period(c)}


def _resolv_conf_mount(t: PodTemplate) -> tuple[HostMount, ...]:
    """dnsPolicy Default: the node's /etc/resolv.conf, read-only (a hostNetwork pod has the node's already)."""
    return (HostMount(NODE_RESOLV_CONF, NODE_RESOLV_CONF, True),) if t.dns_policy == "Default" and not t.host_network \
        else ()


def _images(w: Workload) -> tuple[tuple[str, str], ...]:
    """(image, pull policy) of every container and of every image volume they mount."""
    containers = (*w.template.init_containers, *w.template.containers)
    return tuple(sorted({(c.image, c.image_pull_policy) for c in containers}
                        | {(m.source, m.pull_policy) for c in containers for m in image_mounts(w, c)}))


def image_mounts(w: Workload, c: Container) -> tuple[ImageMount, ...]:
    """The container's mounts of image volumes: read-only, as Kubernetes mounts them (a subPath was refused)."""
    volumes = {v.name: v for v in w.template.volumes if v.kind == "image"}
    return tuple(ImageMount(volumes[m.name].source, m.mount_path, volumes[m.name].pull_policy)
                 for m in c.volume_mounts if m.name in volumes)


def _seccomp(profile: SecurityProfile, node: NodeConfig) -> str:
    """Podman's seccomp profile: its default, unconfined, or `<seccompProfileRoot>/<localhostProfile>` on the node
    (the kubelet's path; the file is read by Podman on the node)."""
    if profile.type == "Localhost":
        return posixpath.join(node.seccomp_profile_root, profile.localhost)
    return "unconfined" if profile.type == "Unconfined" else ""


def _liveness(c: Container, t: PodTemplate) -> tuple[Probe | None, dict[str, str]]:
    """A container's liveness probe for Podman's healthcheck, or None for a grpc one, which `liveness` runs from
    outside: that one is carried by a label instead (returned second)."""
    probe = c.liveness_probe
    if probe is not None and probe.action == "grpc":
        restart = t.restart_policy != "Never"
        return None, liveness.label(probe, _health_start_period(c), t.termination_grace_period_seconds, restart)
    return probe, {}


def hook_command(hook: Probe | None, grace: int) -> tuple[str, ...]:
    """The command a lifecycle hook runs in its container: exec as is, httpGet by the probe's script, with the
    grace period (at least 1 s) as its timeout; () for no hook."""
    if hook is None:
        return ()
    return probe_command(replace(hook, timeout_seconds=max(1, grace)))


def _pre_stop_label(c: Container, grace: int) -> dict[str, str]:
    """The preStop hook, kept on the container itself: the pod may be stopped by an agent whose revision no
    longer has its template."""
    if c.pre_stop is None:
        return {}
    return {PRE_STOP: json.dumps({"command": list(hook_command(c.pre_stop, grace)), "timeout": grace})}


def resource_amount(c: Container, ref: ResourceFieldRef, pod: PodResources | None = None) -> int | None:
    """The limit or (effective) request that `ref` names, in millicores or bytes; None if unset. A limit the
    container does not set is the pod-level one (`pod`), as in Kubernetes."""
    limit = ref.resource.startswith("limits.")
    amounts = c.resources if limit else effective_requests(c)
    found = amounts.cpu_millis if ref.resource.endswith(".cpu") else amounts.memory_bytes
    if found is None and limit and pod is not None:
        return pod.limits.cpu_millis if ref.resource.endswith(".cpu") else pod.limits.memory_bytes
    return found


POD_IP_FIELDS = ("status.podIP", "status.podIPs")  # one address: Podman gives a pod one on its network


def field_value(field_path: str, pod: str, w: Workload, node: NodeConfig, thash: str = "") -> str:
    """A fieldRef's value for pod `pod` (of template hash `thash`) of `w` on `node`, for a path `manifests`
    accepted; status.podIP only with hostNetwork, where it is the node's address, as status.hostIP is (on the
    namespace network the pod's address is read when it is created: `ContainerSpec.pod_ip_env`)."""
    if field_path == "metadata.name":
        return pod
    if field_path == "metadata.namespace":
        return w.ref.namespace
    if field_path == "metadata.uid":
        return pod_uid(w.ref.namespace, pod, thash)
    if field_path == "spec.nodeName":
        return node.name
    if field_path == "spec.serviceAccountName":
        return w.template.service_account_name or "default"
    if field_path in ("status.hostIP", "status.hostIPs", *POD_IP_FIELDS):
        return node.address or ""
    meta, _, key = field_path.partition("['")
    source = w.template.labels if meta == "metadata.labels" else w.template.annotations
    return source.get(key.removesuffix("']"), "")


_UID_NAMESPACE = uuid.UUID("6f1b8a5e-2c1d-5b7a-9a43-0d5c1e0a9f18")  # gitops-agent's own namespace of pod UIDs


def pod_uid(namespace: str, pod: str, thash: str) -> str:
    """A pod's metadata.uid: a UUID (version 5) of its namespace, name and template hash. Kubernetes' is random
    per pod; this one is the same for the same pod (so a sync is no change) and new with each new template."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{namespace}/{pod}/{thash}"))


def resource_value(c: Container, ref: ResourceFieldRef, pod: PodResources | None = None,
                   allocatable: Resources = Resources()) -> str:
    """A resourceFieldRef's value: the amount in units of its divisor, rounded up as the kubelet does (an unset
    request is 0; an unset limit the pod-level one, `pod`, else the node's `allocatable` amount)."""
    amount = resource_amount(c, ref, pod)
    if amount is None and ref.resource.startswith("limits."):
        amount = allocatable.cpu_millis if ref.resource.endswith(".cpu") else allocatable.memory_bytes
    return str(-(-(amount or 0) // ref.divisor))


ENV_UNUSED = Resources(0, 0)
"""`compile_node`'s `reported` for a caller that uses no container's env or files (template hashes, images,
volumes, Jobs' books): a limit nobody sets reads 0 there, a value that is never applied nor compared."""


def unset_limits(revision: Revision, node: NodeConfig) -> frozenset[str]:
    """The limits ("cpu", "memory") that some resourceFieldRef of node `node`'s variant of `revision` reads and
    that neither its container, nor its pod, nor the node's declared capacity (`capacity:`) sets: those are
    the amounts the node's Podman reports (`podman.Node.read_amounts`)."""
    revision = revision.variants.get(node.name, revision)
    out = set()
    for w in (o for o in revision.objects if isinstance(o, Workload)):
        by_name = {c.name: c for c in (*w.template.init_containers, *w.template.containers)}
        files = (f.resource for v in w.template.volumes for s in (v, *v.sources) for f in s.files)
        envs = (e.resource for c in by_name.values() for e in c.env)
        for ref in (r for r in (*files, *envs) if r is not None and r.resource.startswith("limits.")):
            if ref.container in by_name and resource_amount(by_name[ref.container], ref, w.template.pod_resources) \
                    is None:
                out.add(ref.resource.removeprefix("limits."))
    declared = {"cpu": node.cpu_millis, "memory": node.memory_bytes}
    return frozenset(r for r in out if declared[r] is None)


def needs_amounts(revision: Revision, node: NodeConfig) -> bool:
    """Whether `compile_node` of `revision` for `node` needs the amounts the node's Podman reports."""
    return bool(unset_limits(revision, node))


def node_allocatable(revision: Revision, node: NodeConfig, reported: Resources | None) -> Resources:
    """The node's allocatable amounts, as an unset limit reads them: its declared capacity when the agent config
    gives one, else what its Podman reports (`reported`). ValueError when `revision` needs a reported amount
    and `reported` is None (the caller should have read it: `needs_amounts`)."""
    missing = unset_limits(revision, node) if reported is None else frozenset()
    if missing:
        raise ValueError(f"node {node.name}: compiling needs the amounts its Podman reports "
                         f"(limits.{', limits.'.join(sorted(missing))}): pass `reported`")
    reported = reported or Resources()
    return Resources(reported.cpu_millis if node.cpu_millis is None else node.cpu_millis,
                     reported.memory_bytes if node.memory_bytes is None else node.memory_bytes)


def downward_content(f: DownwardFile, pod: str, w: Workload, thash: str,
                     allocatable: Resources = Resources()) -> bytes:
    """The content of one downwardAPI file, in Kubernetes' formats: a field's value as is; all labels or
    annotations as `key="value"` lines sorted by key (values quoted as Go's %q does), without a final newline."""
    if f.resource is not None:
        by_name = {c.name: c for c in (*w.template.init_containers, *w.template.containers)}
        return resource_value(by_name[f.resource.container], f.resource, w.template.pod_resources,
                              allocatable).encode()
    path = f.field_path or ""
    if path in ("metadata.labels", "metadata.annotations"):
        items = w.template.labels if path == "metadata.labels" else w.template.annotations
        return "\n".join(f"{k}={go_quote(v)}" for k, v in sorted(items.items())).encode()
    if path == "metadata.name":
        return pod.encode()
    if path == "metadata.namespace":
        return w.ref.namespace.encode()
    if path == "metadata.uid":
        return pod_uid(w.ref.namespace, pod, thash).encode()
    meta, _, key = path.partition("['")
    items = w.template.labels if meta == "metadata.labels" else w.template.annotations
    return items.get(key.removesuffix("']"), "").encode()


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """`text` as Go's strconv.Quote (fmt's %q) writes it: printable characters as they are, the usual escapes,
    other control characters as \\xNN, other unprintable ones as \\uNNNN or \\UNNNNNNNN."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def effective_requests(c: Container) -> Resources:
    """A container's requests; a resource with a limit and no request requests its limit (Kubernetes' default)."""
    return _defaulted(c.requests, c.resources)


def pod_requests(resources: PodResources) -> Resources:
    """A pod's pod-level requests, each defaulted to its pod-level limit as a container's is."""
    return _defaulted(resources.requests, resources.limits)


def _defaulted(requests: Resources, limits: Resources) -> Resources:
    return Resources(
        cpu_millis=requests.cpu_millis if requests.cpu_millis is not None else limits.cpu_millis,
        memory_bytes=requests.memory_bytes if requests.memory_bytes is not None else limits.memory_bytes,
    )


def pod_request(t: PodTemplate, resource: str) -> int:
    """What one pod requests of `resource` ("cpu", "memory" or "ephemeral-storage") as Kubernetes' scheduler
    counts it: its pod-level request when it has one, else what its containers request (`containers_request`)."""
    if t.pod_resources is not None and resource != "ephemeral-storage":
        requests = pod_requests(t.pod_resources)
        own = requests.cpu_millis if resource == "cpu" else requests.memory_bytes
        if own is not None:
            return own
    return containers_request(t, resource)


def containers_request(t: PodTemplate, resource: str) -> int:
    """What the containers request of `resource`, as Kubernetes' scheduler counts it: the app containers' and
    sidecars' sum, or, when larger, an init container's request plus the sidecars started before it (init
    containers run one at a time, before the app containers; sidecars keep running)."""
    steps, sidecars = [], 0
    for c in t.init_containers:
        if c.sidecar:
            sidecars += _request(c, resource)
        steps.append(sidecars if c.sidecar else sidecars + _request(c, resource))
    return max(sum(_request(c, resource) for c in t.containers) + sidecars, max(steps, default=0))


def _request(container: Container, resource: str) -> int:
    if resource == "ephemeral-storage":
        return container.ephemeral_request or 0
    requests = effective_requests(container)
    return (requests.cpu_millis if resource == "cpu" else requests.memory_bytes) or 0


def cpu_shares(millis: int | None) -> int | None:
    """The kubelet's CPU shares for a CPU request: millicores x 1024 / 1000, at least 2 (the kernel's minimum)."""
    return None if millis is None else max(2, millis * 1024 // 1000)


def _podman_cap(name: str) -> str:
    """Kubernetes' NET_ADMIN → Podman's CAP_NET_ADMIN; ALL stays ALL."""
    return name if name == "ALL" else f"CAP_{name}"


# --- probes -------------------------------------------------------------------------

NO_TOOL_EXIT = 98  # the probe shell found no tool to run an httpGet/tcpSocket probe with
NO_SUCH_EXECUTABLE_EXIT = 97  # Node.exec: the image has no such executable (no /bin/sh, a typo in exec.command)


def probe_command(probe: Probe) -> tuple[str, ...]:
    """The command that runs `probe` inside the container.

    Used for every `exec` probe, for liveness (Podman's healthcheck runs in the
    container), and as the fallback for httpGet/tcpSocket readiness and startup
    probes on nodes whose pod addresses the agent cannot reach (tcp://; see
    `probes.probe_way`; elsewhere the agent probes from outside, `netprobe`).
    `exec` runs its command as is; `httpGet` and `tcpSocket` run a small POSIX
    shell script that uses curl, wget or nc, whichever the image has (busybox's
    nc is enough for HTTP and TCP; HTTPS needs curl or wget; nc is bounded by
    `timeoutSeconds` only when the image has `timeout`). With none of them it
    exits 98 and says so; an image without /bin/sh cannot run it at all.

    URL fidelity (the in-container script): the path reaches the server as
    written, up to a `#` (a fragment is never sent, as with Kubernetes' prober
    and every browser). curl runs with `-g` (no `{}`/`[]` globbing: one
    request, to the declared path); nc sends the request line as written;
    busybox wget sends it as written too, GNU wget percent-encodes `{ } | ^`
    and the like (the same resource to a server that decodes the path). A
    `Host` header of the probe's own replaces the default one.
    """
    if probe.action == "exec":
        return probe.command
    if probe.action == "grpc":  # no shell tool speaks gRPC: only the agent, from outside the container, can
        return ("/bin/sh", "-c", "echo 'grpc probe: runs only from outside the container, and this node's transport "
                "cannot reach its pods (tcp://)' >&2; exit " + str(NO_TOOL_EXIT))
    host = probe.host or "127.0.0.1"
    t = str(probe.timeout_seconds)
    if probe.action == "tcpSocket":
        script = (
            # connected: nc exits 0 when the server closes, or is stopped by `timeout` after the connect bound
            f"{_BOUNDED}if command -v nc >/dev/null 2>&1; then "
            f"bounded {probe.timeout_seconds + 1} nc -w {t} {_sh(host)} "
            f"{probe.port} </dev/null >/dev/null; rc=$?; [ $rc -eq 0 ] || [ $rc -ge 124 ]; "
            f"else echo 'tcpSocket probe: the image has no nc' >&2; exit {NO_TOOL_EXIT}; fi"
        )
        return ("/bin/sh", "-c", script)
    return ("/bin/sh", "-c", _http_get_script(probe, host, t))


def _http_get_script(probe: Probe, host: str, t: str) -> str:
    """`probe_command`'s shell script for an httpGet probe of `host`, `t` its timeout in seconds."""
    scheme = probe.scheme.lower()
    target = probe.path.split("#", 1)[0] or "/"
    url = f"{scheme}://{host}:{probe.port}{target}"
    curl_h = "".join(f" -H {_sh(f'{k}: {v}')}" for k, v in probe.headers)
    wget_h = "".join(f" --header {_sh(f'{k}: {v}')}" for k, v in probe.headers)
    crlf = "\\r\\n"  # printf turns these into CR LF

    def lit(text: str) -> str:  # printf must print the manifest's text as is
        return text.replace("\\", "\\\\").replace("%", "%%")

    own_host = any(k.lower() == "host" for k, _ in probe.headers)
    lines = [
        f"GET {target} HTTP/1.0", *([] if own_host else [f"Host: {host}"]), *(f"{k}: {v}" for k, v in probe.headers)
    ]
    request = "".join(lit(line) + crlf for line in lines) + crlf
    nc = (
        f"printf {_sh(request)} | bounded {t} nc -w {t} {_sh(host)} {probe.port} "
        "| grep -q '^HTTP/1\\.[01] [23][0-9][0-9]'"
    )
    tools = "curl, wget" + ("" if scheme == "https" else " or nc")
    return (
        f"{_BOUNDED}if command -v curl >/dev/null 2>&1; then curl -fsSkg -o /dev/null -m {t}{curl_h} {_sh(url)}; "
        + (f"elif command -v nc >/dev/null 2>&1; then {nc}; " if scheme == "http" else "")
        + "elif command -v wget >/dev/null 2>&1; then "
        + f"wget -q -O /dev/null -T {t} --no-check-certificate{wget_h} {_sh(url)}; "
        + f"else echo 'httpGet probe: the image has no {tools}' >&2; exit {NO_TOOL_EXIT}; fi"
    )


# busybox's `nc -w` bounds the connect only: a server that accepts and never answers would hang the probe
# (and Podman 4.3 does not stop a healthcheck at its timeout). `timeout`, when the image has it, bounds it all.
_BOUNDED = ('bounded() { t=$1; shift; if command -v timeout >/dev/null 2>&1; then timeout "$t" "$@"; '
            'else "$@"; fi; }; ')


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
