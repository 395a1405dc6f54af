"""Desired-state types: what a validated revision of the Git repository says.

Sits between `manifests` (which builds these from YAML) and `desired`/`plan`
(which turn them into Podman objects and actions). Pure data: frozen
dataclasses, no I/O, no Podman, no Git. Every field here is something the
agent honours; a Kubernetes field that has no home here is rejected by the
schemas, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .errors import quote_path

# kinds whose template change never replaces running pods (Kubernetes' ReplicationController and ReplicaSet)
NEVER_ROLLS = frozenset({"ReplicationController", "ReplicaSet"})
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class ObjectRef:
    """Identity of one Kubernetes object: `Kind/namespace/name`."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Origin:
    """Where an object was declared: repository-relative file and 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{quote_path(self.file)}:{self.line}"


# --- pod template -------------------------------------------------------------


@dataclass(frozen=True)
class KeyRef:
    """`configMapKeyRef` / `secretKeyRef`: one key of a ConfigMap or Secret."""

    kind: str  # "ConfigMap" | "Secret"
    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class ResourceFieldRef:
    """`resourceFieldRef`: a container's limit or request, in units of `divisor` (millicores or bytes)."""

    container: str
    resource: str  # "limits.cpu" | "limits.memory" | "requests.cpu" | "requests.memory"
    divisor: int = 1


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None  # literal value, or
    ref: KeyRef | None = None  # valueFrom configMapKeyRef / secretKeyRef, or
    field_path: str | None = None  # valueFrom.fieldRef ("metadata.name", "metadata.labels['app']", ...), or
    resource: ResourceFieldRef | None = None  # valueFrom.resourceFieldRef


@dataclass(frozen=True)
class EnvFrom:
    """`envFrom`: every key of a ConfigMap or Secret, optionally prefixed."""

    kind: str  # "ConfigMap" | "Secret"
    name: str
    prefix: str = ""
    optional: bool = False


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    host_port: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""  # a file or directory of the volume mounted alone at mount_path ("" the whole volume)


@dataclass(frozen=True)
class KeyToPath:
    """One key of a ConfigMap or Secret as a file at `path`, with its own mode (None: the volume's default mode)."""

    key: str
    path: str
    mode: int | None = None


@dataclass(frozen=True)
class DownwardFile:
    """One file of a `downwardAPI` volume: a pod field (`field_path`, as a fieldRef's) or a container's limit
    or request (`resource`), with its own mode (None: the volume's default mode)."""

    path: str
    field_path: str | None = None  # metadata.name | metadata.namespace | metadata.uid | metadata.labels[...] ...
    resource: ResourceFieldRef | None = None
    mode: int | None = None


@dataclass(frozen=True)
class Volume:
    """A pod volume: `configMap`, `secret`, `downwardAPI`, `projected`, `persistentVolumeClaim`, `hostPath` or
    `emptyDir`.

    For a `hostPath` volume `source` is the normalised absolute path on the
    node and `host_path_type` Kubernetes' `type` ("" when not given). For an
    `emptyDir` volume `source` is "", `medium` "" (node disk) or "Memory" (a
    tmpfs), `size_limit` its sizeLimit in bytes (None: no limit) and `dir_mode` its `mode`. A `projected`
    volume's `sources` are `configMap` and `secret` volumes merged into its one
    directory, each with the projected volume's `default_mode`; a `downwardAPI` volume (or source) has its
    `files`. An `image` volume's `source` is the image reference, mounted read-only, pulled with `pull_policy`."""

    name: str
    kind: str  # configMap | secret | downwardAPI | projected | persistentVolumeClaim | hostPath | emptyDir
    #            | claimTemplate | image
    source: str  # ConfigMap name, Secret name, claim name or host path
    items: tuple[KeyToPath, ...] = ()  # empty: every key, file named after the key
    default_mode: int = 0o644
    read_only: bool = False
    optional: bool = False
    host_path_type: str = ""  # hostPath: "" | "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice"
    medium: str = ""  # emptyDir: "" | "Memory"
    size_limit: int | None = None  # emptyDir: sizeLimit in bytes
    sources: tuple[Volume, ...] = ()  # projected: its configMap, secret and downwardAPI sources, in order
    files: tuple[DownwardFile, ...] = ()  # downwardAPI: its items
    pull_policy: str = ""  # image: "Always" | "IfNotPresent" | "Never", defaulted as Kubernetes does
    dir_mode: int | None = None  # emptyDir: the mode of its top directory (None: Podman's)


@dataclass(frozen=True)
class Probe:
    """A liveness, readiness or startup probe with Kubernetes' defaults.

    `action` is "exec" (run `command` in the container), "httpGet" (GET
    `scheme`://`host`:`port``path` with `headers`, success on 200-399) or
    "tcpSocket" (open a connection to `host`:`port`) or "grpc" (the gRPC health
    check of `service` on `port`, from outside the container). A named port is resolved
    to its containerPort by `manifests`, so `port` is always a number here.
    """

    action: str  # "exec" | "httpGet" | "tcpSocket" | "grpc"
    command: tuple[str, ...] = ()  # exec
    port: int = 0  # httpGet, tcpSocket
    path: str = "/"  # httpGet
    scheme: str = "HTTP"  # httpGet: "HTTP" | "HTTPS"
    host: str = ""  # httpGet/tcpSocket; "" is the pod itself (127.0.0.1)
    headers: tuple[tuple[str, str], ...] = ()  # httpGet
    service: str = ""  # grpc: the service name sent in the health check ("" is the server as a whole)
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class Resources:
    """`resources.limits` or `.requests`: CPU in millicores, memory in bytes (None: unlimited / no request)."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class PodResources:
    """Pod-level `spec.resources`: bounds and weights of the pod's cgroup, which holds all its containers."""

    limits: Resources = Resources()
    requests: Resources = Resources()  # as given; `desired.pod_requests` defaults each to its limit
    pids: int | None = None  # limits.pids: processes of the whole pod


@dataclass(frozen=True)
class HostAlias:
    """One `hostAliases` entry: an /etc/hosts line of `ip` for each of `hostnames`, in every container."""

    ip: str
    hostnames: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecurityProfile:
    """A securityContext's seccompProfile or appArmorProfile: `type` RuntimeDefault (Podman's default profile),
    Localhost (`localhost`: a seccomp file relative to the node's seccompProfileRoot, or the name of an AppArmor
    profile loaded on the node) or Unconfined (allowed by policy.allowUnconfined only)."""

    type: str = "RuntimeDefault"
    localhost: str = ""


@dataclass(frozen=True)
class DNSConfig:
    """A pod's dnsConfig: added to the network's resolver settings (dnsPolicy ClusterFirst) or the whole of them
    (dnsPolicy None). An option without a value has `None` (written `name`, not `name:`)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    image_pull_policy: str  # "Always" | "IfNotPresent" | "Never", defaulted as Kubernetes does
    command: tuple[str, ...] = ()  # replaces the image ENTRYPOINT
    args: tuple[str, ...] = ()  # replaces the image CMD
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    resources: Resources = Resources()  # limits
    requests: Resources = Resources()
    ephemeral_request: int | None = None  # requests.ephemeral-storage in bytes: placement only, as in Kubernetes
    volume_mounts: tuple[VolumeMount, ...] = ()
    working_dir: str | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    post_start: Probe | None = None  # lifecycle hooks: action "exec" or "httpGet", Probe's defaults for the rest
    pre_stop: Probe | None = None
    # securityContext; capability names without the CAP_ prefix ("NET_ADMIN", or "ALL")
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    read_only_root_fs: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None
    allow_privilege_escalation: bool = True  # False: no process can gain privileges (no_new_privs)
    supplemental_groups: tuple[int, ...] = ()  # the pod's securityContext.supplementalGroups
    run_as_non_root: bool = False  # the container's or the pod's runAsNonRoot
    sidecar: bool = False  # an init container with restartPolicy Always: started in its place, then kept running
    stdin: bool = False  # keep its standard input open (detached: nothing is attached to it)
    tty: bool = False  # give it a pseudo-terminal
    seccomp: SecurityProfile = SecurityProfile()  # the container's seccompProfile, else the pod's
    apparmor: SecurityProfile = SecurityProfile()  # the container's appArmorProfile, else annotation, else pod's
    cgroup_writable: bool = False  # cgroupOptions.mountMode ReadWrite: /sys/fs/cgroup read-write


@dataclass(frozen=True)
class Requirement:
    """A nodeSelectorRequirement: `key` (a node label, or metadata.name from matchFields) `operator` `values`."""

    key: str
    operator: str  # "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt"
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Toleration:
    key: str = ""  # "" with Exists: every taint
    operator: str = "Equal"  # "Equal" | "Exists" | "Gt" | "Lt" (the taint's integer value above / below `value`)
    value: str = ""
    effect: str = ""  # "" matches every effect


@dataclass(frozen=True)
class Taint:
    """A node taint from the agent config (`nodes[].taints`)."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"  # "NoSchedule" | "PreferNoSchedule" | "NoExecute"


@dataclass(frozen=True)
class TopologySpread:
    """A topologySpreadConstraint of the workload's own pods: over node label `key` (kubernetes.io/hostname: the
    node), `required` for DoNotSchedule (nodes without the label run none), not for ScheduleAnyway."""

    key: str
    max_skew: int = 1
    required: bool = True


@dataclass(frozen=True)
class PodTemplate:
    labels: Mapping[str, str]
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...] = ()
    restart_policy: str = "Always"  # "Always" | "OnFailure" | "Never"
    termination_grace_period_seconds: int = 30
    node_selector: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    image_pull_secrets: tuple[str, ...] = ()  # names of registry-credential Secrets in the pod's namespace
    # placement (affinity, tolerations): required terms are ORed, the requirements of a term ANDed
    node_affinity: tuple[tuple[Requirement, ...], ...] = ()
    preferred_affinity: tuple[tuple[int, tuple[Requirement, ...]], ...] = ()  # (weight, term)
    one_per_node: bool = False  # podAntiAffinity of the workload's own pods on kubernetes.io/hostname
    tolerations: tuple[Toleration, ...] = ()
    topology_spread: tuple[TopologySpread, ...] = ()  # topologySpreadConstraints
    fs_group: int | None = None  # securityContext.fsGroup: the group of the pod's PVC volumes, in every process
    init_containers: tuple[Container, ...] = ()  # run in order, each to completion (a sidecar: started), before
    # `containers` start
    # spec.serviceAccountName ("default" when unset) when a fieldRef reads it, else "": a no-op field that nothing
    # reads stays out of the template hash, so setting it (or upgrading the agent) replaces no pod
    service_account_name: str = ""
    pod_resources: PodResources | None = None  # pod-level spec.resources
    host_aliases: tuple[HostAlias, ...] = ()
    share_process_namespace: bool = False  # one PID namespace for the pod's containers
    host_users: bool = True  # False: the pod runs in a user namespace of its own
    node_name: str | None = None  # spec.nodeName: only that node of the agent config runs it
    dns_policy: str = "ClusterFirst"  # "ClusterFirst" | "Default" (the node's /etc/resolv.conf) | "None"
    dns_config: DNSConfig = DNSConfig()


# --- agent policy -------------------------------------------------------------


@dataclass(frozen=True)
class HostPathRule:
    """One `policy.allowedHostPaths` entry: host paths under `path_prefix`
    (whole path components: /var/log allows /var/log/app, not /var/logs)."""

    path_prefix: str
    read_only: bool = False
    """True: only read-only mounts of those paths are allowed."""

    def __str__(self) -> str:
        return f"{self.path_prefix} read-only" if self.read_only else self.path_prefix


@dataclass(frozen=True)
class Policy:
    """What a revision may ask of the node, from the agent config's `policy:`
    section (names as in Kubernetes' PodSecurityPolicy). The default denies
    everything: a workload using a denied feature makes the revision invalid.

    `allowed_capabilities` holds names without the CAP_ prefix; "*" allows any."""

    allow_privileged: bool = False
    allow_host_network: bool = False
    allow_host_pid: bool = False
    allow_host_ipc: bool = False
    allowed_capabilities: tuple[str, ...] = ()
    allowed_host_paths: tuple[HostPathRule, ...] = ()
    allow_unconfined: bool = False  # seccompProfile / appArmorProfile type Unconfined (Pod Security baseline: no)
    allow_writable_cgroups: bool = False  # securityContext.cgroupOptions.mountMode ReadWrite


@dataclass(frozen=True)
class NodeLimits:
    """The agent config's `limits:` section: how much one revision may ask for. A revision over a
    limit is rejected whole by `manifests.parse`, from placement arithmetic alone, before any pod
    spec is computed or anything is created."""

    max_pods_per_node: int = 110
    """Pods of all workloads on one node; 110 is the kubelet's default `maxPods`."""
    max_containers_per_pod: int = 20
    """Containers in one pod template (Kubernetes has no such limit; every container is a process tree
    and a Podman container to create, start and probe)."""
    max_replicas_per_revision: int = 10_000
    """Pods of the whole revision, summed over every node (a typo such as `replicas: 100000`)."""


# --- top-level kinds ----------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    ref: ObjectRef
    origin: Origin


@dataclass(frozen=True)
class ConfigData:
    """A ConfigMap or a Secret, values as bytes (Secret `data` base64-decoded,
    `stringData` merged over it). Secret values must never be printed."""

    ref: ObjectRef
    origin: Origin
    data: Mapping[str, bytes]
    type: str = "Opaque"  # a Secret's type: Opaque, kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg
    immutable: bool = False  # `immutable: true`: a later revision may not change its data (`manifests.immutable`)

    @property
    def is_secret(self) -> bool:
        return self.ref.kind == "Secret"


@dataclass(frozen=True)
class Claim:
    """A PersistentVolumeClaim: a named Podman volume whose data outlives pods."""

    ref: ObjectRef
    origin: Origin
    storage: str | None = None  # requests.storage, informational on Podman
    storage_class: StorageClass | None = None  # its storageClassName's, from the agent config; None: the default


@dataclass(frozen=True)
class StorageClass:
    """An entry of the agent config's `storageClasses:`: the Podman volume driver and options a claim of that
    class is created with (`podman volume create --driver D --opt K=V`)."""

    driver: str = "local"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RollingUpdate:
    """maxSurge / maxUnavailable exactly as written (int or "25%")."""

    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"


ROLLOUT_ANNOTATION_PREFIX = "rollout.gitops-agent.io/"


@dataclass(frozen=True)
class NodeRollout:
    """Node-level rollout knobs: annotations `rollout.gitops-agent.io/<knob>` on a
    Deployment or DaemonSet (Kubernetes has no fields for them, so the manifest
    stays valid Kubernetes).

    - `max-parallel-nodes` (int >= 1 or "N%" of the nodes the workload runs on,
      rounded down, at least 1): nodes updated at once. Default 1: the first
      node in the agent config is the canary.
    - `auto-rollback` ("true" | "false"): on failure, roll the nodes already
      touched back to the last stable revision. Default true; false only halts.
    - `unreachable-node-timeout` (seconds, int >= 0): how long the rollout waits
      for an unreachable node it has not updated yet before deferring it.
      Default 60.
    """

    max_parallel_nodes: int | str = 1
    auto_rollback: bool = True
    unreachable_node_timeout: int = 60


@dataclass(frozen=True)
class Workload:
    """A Deployment (`replicas` pods spread over the matching nodes), a
    DaemonSet (one pod on every matching node) or a bare Pod (one pod).

    For a DaemonSet `replicas` is unused and `rolling_update` holds its
    `updateStrategy.rollingUpdate` (defaults maxSurge 0, maxUnavailable 1).
    """

    ref: ObjectRef
    origin: Origin
    template: PodTemplate
    replicas: int = 1
    selector: Mapping[str, str] = field(default_factory=dict)  # matchLabels
    selector_expressions: tuple[Requirement, ...] = ()  # matchExpressions: In, NotIn, Exists, DoesNotExist
    strategy: str = "RollingUpdate"  # "RollingUpdate" | "Recreate"
    rolling_update: RollingUpdate = RollingUpdate()
    revision_history_limit: int = 10
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    min_ready_seconds: int = 0
    progress_deadline_seconds: int = 600
    node_rollout: NodeRollout = NodeRollout()
    # StatefulSet (gitops_agent/manifests/statefulset.py): its headless Service, OrderedReady or Parallel, and
    # the lowest ordinal a RollingUpdate replaces (strategy "OnDelete": none). Its volumeClaimTemplates are
    # template volumes of kind "claimTemplate", one Podman volume per ordinal.
    service_name: str = ""
    pod_management: str = "OrderedReady"
    partition: int = 0
    # StatefulSet: (volumeClaimTemplate name, its storageClassName's class) for those not of the default volume
    claim_classes: tuple[tuple[str, StorageClass], ...] = ()
    # Job (gitops_agent/manifests/batch.py, gitops_agent/jobs.py): pods to finish with exit 0, at once, failures
    completions: int = 1
    parallelism: int = 1
    backoff_limit: int = 6
    active_deadline_seconds: int | None = None  # a run still active this long after it started: Failed
    ttl_seconds_after_finished: int | None = None  # a finished run's pods removed this long after it finished
    cron: "CronSchedule | None" = None  # a CronJob's schedule: its runs are Jobs of this template (cronjobs.py)
    job_policy: "JobPolicy" = field(default_factory=lambda: JobPolicy())  # completionMode, the failure/success rules


@dataclass(frozen=True)
class ExitCodes:
    """A podFailurePolicy rule's `onExitCodes`: a failed pod's container (`container`, or any) that exited with a
    code `In` `values`, or (`NotIn`) with a non-zero code not in them."""

    operator: str  # In | NotIn
    values: frozenset[int]
    container: str | None = None


@dataclass(frozen=True)
class PodFailureRule:
    """One rule of a Job's podFailurePolicy; `exit_codes` None: an `onPodConditions` rule (never met on a node)."""

    action: str  # FailJob | FailIndex | Ignore | Count
    exit_codes: ExitCodes | None = None


@dataclass(frozen=True)
class SuccessRule:
    """One rule of an Indexed Job's successPolicy: met once `count` of `indexes` (None: of all) succeeded
    (`count` None: all of `indexes`)."""

    indexes: frozenset[int] | None = None
    count: int | None = None


@dataclass(frozen=True)
class JobPolicy:
    """A Job's completionMode and rules (gitops_agent/jobs.py decides with them)."""

    indexed: bool = False  # completionMode Indexed: pod i of 0..completions-1 has JOB_COMPLETION_INDEX=i
    backoff_limit_per_index: int | None = None  # Indexed: an index failed this often more is a failed index
    max_failed_indexes: int | None = None  # Indexed: more failed indexes than this: the Job failed
    pod_failure_rules: tuple[PodFailureRule, ...] = ()  # the first rule a failed pod meets decides
    success_rules: tuple[SuccessRule, ...] = ()  # Indexed: the first rule met completes the Job


@dataclass(frozen=True)
class CronSchedule:
    """A CronJob's (batch/v1) schedule and run policy; its jobTemplate is the rest of the `Workload`."""

    schedule: str  # five cron fields (or @hourly ...), wall-clock time in `time_zone`
    time_zone: str = "UTC"
    concurrency_policy: str = "Allow"  # Allow | Forbid | Replace
    starting_deadline_seconds: int | None = None
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 1
    suspend: bool = False


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str | None = None  # defaults to `port`; a name refers to a containerPort name
    protocol: str = "TCP"
    node_port: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class Service:
    ref: ObjectRef
    origin: Origin
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...] = ()
    type: str = "ClusterIP"  # "ClusterIP" | "NodePort" | "LoadBalancer"

    def published(self) -> tuple[tuple[int, ServicePort], ...]:
        """(port on the node, Service port) for each port the Service publishes on the node: a NodePort's
        nodePort (given or allocated), a LoadBalancer's own port (k3s's ServiceLB on a node without a cloud)."""
        if self.type == "NodePort":
            return tuple((p.node_port, p) for p in self.ports if p.node_port)
        if self.type == "LoadBalancer":
            return tuple((p.port, p) for p in self.ports)
        return ()


@dataclass(frozen=True)
class Metric:
    """An autoscaler's `Resource` metric: the pods' average use of `resource` as a percent of their limits."""

    resource: str  # "cpu" | "memory"
    average_utilization: int


@dataclass(frozen=True)
class ScalingPolicy:
    """One rate policy of an autoscaler's direction: at most `value` pods ("Pods") or `value` percent of the
    replicas at the period's start ("Percent") added or removed per `period` seconds."""

    type: str  # "Pods" | "Percent"
    value: int
    period: int


@dataclass(frozen=True)
class ScalingRate:
    """One direction's rate limit (`behavior.scaleUp`/`scaleDown` without the window): `select` "Max" takes the
    policy allowing the largest change, "Min" the smallest, "Disabled" allows none."""

    select: str
    policies: tuple[ScalingPolicy, ...]


# Kubernetes' defaults (GenerateHPAScaleUpRules / GenerateHPAScaleDownRules): up 4 pods or 100 % per 15 s,
# whichever is more; down 100 % per 15 s
SCALE_UP_RATE = ScalingRate("Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
SCALE_DOWN_RATE = ScalingRate("Max", (ScalingPolicy("Percent", 100, 15),))


@dataclass(frozen=True)
class Autoscaler:
    """A HorizontalPodAutoscaler (autoscaling/v2): scales `target` (a Deployment or StatefulSet of its namespace)
    between `min_replicas` and `max_replicas`; `hpa.py` holds the algorithm, the windows are in seconds, the
    rates are each direction's policies (Kubernetes' defaults where the manifest has none)."""

    ref: ObjectRef
    origin: Origin
    target: ObjectRef
    min_replicas: int
    max_replicas: int
    metrics: tuple[Metric, ...]
    scale_up_window: int = 0
    scale_down_window: int = 300
    scale_up_rate: ScalingRate = SCALE_UP_RATE
    scale_down_rate: ScalingRate = SCALE_DOWN_RATE


Object = Namespace | ConfigData | Claim | Workload | Service | Autoscaler


@dataclass(frozen=True)
class Revision:
    """One commit's worth of desired state.

    `id` is Flux's form `main@sha1:<40 hex>`; `digest` is a sha256 of the
    manifest bytes, so two commits with identical manifests compare equal.
    """

    id: str
    digest: str
    objects: tuple[Object, ...]
    # Accepted fields and kinds that have no effect on a node (README, "No-op fields and kinds"), one line each,
    # `FILE:LINE: Kind/name: path: message` like a problem: shown by `validate`, `diff` and `status`, never silent.
    warnings: tuple[str, ...] = ()
    # The node ports allocated to NodePort Service ports without a nodePort, (`namespace/name/port/protocol`, port)
    # sorted: the table to record and pass to the next `manifests.parse` (`node_ports=`) so that they stay.
    node_ports: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    # per-node variables (`substitute.py`): each node's own substituted revision, by node name; empty when
    # no object opts in. `desired.compile_node` compiles a node's variant, so template hashes are per node.
    variants: Mapping[str, "Revision"] = field(default_factory=dict, compare=False, repr=False)
    # the Service forwarder's image (the agent config's `serviceForwarder.image`; "": forwarder.DEFAULT_IMAGE)
    forwarder_image: str = ""

    @property
    def commit(self) -> str:
        return self.id.rsplit(":", 1)[-1]
