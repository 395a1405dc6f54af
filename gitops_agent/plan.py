"""PURE: plan(desired, live) → the ordered actions that make a node match Git.

Sits between `desired`/`live` (inputs) and `apply` (executes). No Podman, no
Git, no clock. An empty plan means the node is in sync and `apply` makes no
write call. Order: networks, volumes, secrets, pods (create, repair, roll,
scale), then deletions in reverse (pods, secrets, volumes, networks).

An `Action` is one of eleven frozen dataclasses, each carrying exactly its
payload (the spec to create, or the name to remove) and the `reason` it is
needed; `op`, `target` and `reason` are what `diff` and the `action` log event
show. A workload whose template changed is one `RollingUpdate`: how it moves is
`rolling.next_move`'s decision, taken while it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import ClassVar, Iterable, Literal, Mapping, Union

from .config import PruneConfig
from .desired import (
    L_CONTAINER,
    L_KIND,
    L_NAME,
    L_NAMESPACE,
    L_REVISION,
    L_SIDECAR,
    ContainerSpec,
    ImageMount,
    NetworkSpec,
    NodeDesired,
    PodSpec,
    SecretSpec,
    VolumeSpec,
    WorkloadSpec,
    claim_volume,
    container_restart_policy,
    held,
    BATCH,
)
from .errors import PruneRefused
from .cronjobs import pods_of_run, run_pods
from .jobs import (DEADLINE, L_RUN, MAX_FAILED, POLICY, SUCCESS_MET, Batch, RunRecord, app_containers, expired,
                   finished, index_of, next_runs, own_pods, sidecars_running, tally)
from .live import ContainerProps, LivePod, LiveState, env_digest
from .endpoints import service_aliases, serving_aliases, watched
from .model import NEVER_ROLLS, ObjectRef
from .pullauth import repository

Op = Literal[
    "create-network",
    "create-volume",
    "create-secret",
    "create-pod",
    "replace-pod",
    "start-pod",
    "run-pod",
    "stop-sidecars",
    "rollout",
    "remove-pod",
    "remove-secret",
    "remove-volume",
    "remove-network",
    "reconnect-pod",
    "unpause-pod",
    "recreate-secret",
    "volume-lost",
]


class _Shown:
    """What every action shows (`diff`, the `action` log event): its op, the Podman object it acts on
    (`target`) and why it is needed (`reason`)."""

    op: ClassVar[Op]
    reason: str

    @property
    def target(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.op} {self.target}: {self.reason}"


@dataclass(frozen=True)
class CreateNetwork(_Shown):
    network: NetworkSpec
    reason: str
    op: ClassVar[Op] = "create-network"

    @property
    def target(self) -> str:
        return self.network.name


@dataclass(frozen=True)
class CreateVolume(_Shown):
    volume: VolumeSpec
    reason: str
    op: ClassVar[Op] = "create-volume"

    @property
    def target(self) -> str:
        return self.volume.name


@dataclass(frozen=True)
class CreateSecret(_Shown):
    secret: SecretSpec
    reason: str
    op: ClassVar[Op] = "create-secret"

    @property
    def target(self) -> str:
        return self.secret.name


@dataclass(frozen=True)
class CreatePod(_Shown):
    pod: PodSpec
    reason: str
    op: ClassVar[Op] = "create-pod"

    @property
    def target(self) -> str:
        return self.pod.name


@dataclass(frozen=True)
class ReplacePod(_Shown):
    """Drift: a container of the pod was removed by hand; the pod is removed and made again."""

    pod: PodSpec
    reason: str
    op: ClassVar[Op] = "replace-pod"

    @property
    def target(self) -> str:
        return self.pod.name


@dataclass(frozen=True)
class ReconnectPod(_Shown):
    """Drift: the pod's infra container left its namespace network, or is on it with other aliases, or was
    connected to another network by hand: each listed network is left (`disconnect`), and the namespace
    network joined again with `aliases` (`expected_aliases`). The containers keep running."""

    pod: PodSpec
    infra: str  # the infra container's id
    aliases: frozenset[str]
    disconnect: tuple[str, ...]
    reason: str
    op: ClassVar[Op] = "reconnect-pod"

    @property
    def target(self) -> str:
        return self.pod.name


@dataclass(frozen=True)
class UnpausePod(_Shown):
    """Drift: a container of the pod was paused by hand (`podman pause`); the pod is unpaused."""

    pod: PodSpec
    reason: str
    op: ClassVar[Op] = "unpause-pod"

    @property
    def target(self) -> str:
        return self.pod.name


@dataclass(frozen=True)
class RecreateSecret(_Shown):
    """Drift: a secret the agent made was removed and made again under its name by hand (its content
    cannot be read back): it is made again from Git, and its consumers are replaced (`ReplacePod`)."""

    secret: SecretSpec
    reason: str
    op: ClassVar[Op] = "recreate-secret"

    @property
    def target(self) -> str:
        return self.secret.name


@dataclass(frozen=True)
class VolumeLost(_Shown):
    """Data loss: a claim's volume was removed (or removed and made again, empty) under pods that use it.
    Never repaired: `apply` reports it loudly (event `volume.lost`, an alert) and the pods that used it
    are left as they are until a person removes them (`podman pod rm -f`), which accepts the loss."""

    name: str
    pods: tuple[str, ...]
    reason: str
    op: ClassVar[Op] = "volume-lost"

    @property
    def target(self) -> str:
        return self.name


@dataclass(frozen=True)
class RunPod(_Shown):
    """A Job's attempt (`jobs.next_runs`): the pod is made and started, and not waited for; it runs to its end."""

    pod: PodSpec
    reason: str
    op: ClassVar[Op] = "run-pod"

    @property
    def target(self) -> str:
        return self.pod.name

    @property
    def pod_owner(self) -> str:
        return self.pod.owner.kind


@dataclass(frozen=True)
class StopSidecars(_Shown):
    """A Job's pod whose app containers have all exited: its sidecars, still running, are stopped (the last one
    first), as the kubelet stops them; they never keep a Job running nor fail it (`jobs.finished`)."""

    name: str
    owner: ObjectRef
    stop_timeout: int
    reason: str
    op: ClassVar[Op] = "stop-sidecars"

    @property
    def target(self) -> str:
        return self.name


@dataclass(frozen=True)
class StartPod(_Shown):
    """Drift: a container of a pod that should always run was stopped; the pod is started."""

    pod: PodSpec
    reason: str
    op: ClassVar[Op] = "start-pod"

    @property
    def target(self) -> str:
        return self.pod.name


@dataclass(frozen=True)
class RollingUpdate(_Shown):
    """A workload's pods of older templates (`old_pods`) replaced by `workload`'s on this node, step by
    step (`rolling.update`). Shown as op "rollout" (the name `diff` has always printed)."""

    workload: WorkloadSpec
    old_pods: tuple[str, ...]
    reason: str
    op: ClassVar[Op] = "rollout"

    @property
    def target(self) -> str:
        return str(self.workload.ref)


@dataclass(frozen=True)
class RemovePod(_Shown):
    name: str
    owner: ObjectRef | None
    reason: str
    op: ClassVar[Op] = "remove-pod"

    @property
    def target(self) -> str:
        return self.name

    @property
    def pod_owner(self) -> str:
        return self.owner.kind if self.owner else ""


@dataclass(frozen=True)
class RemoveSecret(_Shown):
    name: str
    reason: str
    op: ClassVar[Op] = "remove-secret"

    @property
    def target(self) -> str:
        return self.name


@dataclass(frozen=True)
class RemoveVolume(_Shown):
    name: str
    reason: str
    op: ClassVar[Op] = "remove-volume"

    @property
    def target(self) -> str:
        return self.name


@dataclass(frozen=True)
class RemoveNetwork(_Shown):
    name: str
    reason: str
    op: ClassVar[Op] = "remove-network"

    @property
    def target(self) -> str:
        return self.name


Action = Union[CreateNetwork, CreateVolume, CreateSecret, CreatePod, ReplacePod, StartPod, RunPod, StopSidecars,
               RollingUpdate,
               RemovePod, RemoveSecret, RemoveVolume, RemoveNetwork, ReconnectPod, UnpausePod, RecreateSecret,
               VolumeLost]
"""One step of a plan: each kind carries exactly its payload and the reason it is needed."""


@dataclass(frozen=True)
class Plan:
    node: str
    actions: tuple[Action, ...]
    orphaned_volumes: tuple[str, ...] = ()  # PVC data kept although its claim left Git
    untracked: tuple[str, ...] = field(default_factory=tuple)  # managed pods outside the inventory: left alone
    unknown_secrets: tuple[str, ...] = ()  # `gitops-*` secrets the agent cannot prove it made: left alone

    @property
    def in_sync(self) -> bool:
        return not self.actions


def plan(
    desired: NodeDesired,
    live: LiveState,
    prune: PruneConfig = PruneConfig(),
    inventory: Iterable[ObjectRef] | None = None,
    secrets: Iterable[str] = (),
    batch: Batch = Batch(),
    readiness: Mapping[str, bool] | None = None,
) -> Plan:
    """The actions that bring `live` to `desired`, each with the reason it is needed.

    `inventory` is what this agent applied before (from its history). Prune
    removes a managed object only when its owner is in that inventory; without
    one (a fresh or lost state directory) the ownership labels alone decide.
    `secrets` is this node's secret inventory (the names the agent recorded
    before creating them): a secret is removed only when it is in it or
    carries the agent's mark (`owned_secrets`); any other `gitops-*` secret is
    left alone and listed in `unknown_secrets`. `batch` is the wall clock and the store's record of each
    Job and CronJob (`jobs.Batch`): what they ran, so a finished run is not run again. `readiness`: the readiness
    verdicts of the node's pods (`endpoints.verdicts`): drift repair keeps a pod out of its Services' DNS names until
    it is ready, and never puts an unready one back.
    """
    desired = adopt_volumes(desired, live.volumes)
    known = set(inventory) if inventory is not None else None
    drift = Drift(recreated_secrets(desired, live), lost_volumes(desired, live), dict(readiness or {}))
    acts = _creations(desired, live, drift)
    for w in desired.workloads:
        acts.extend(_job(w, live.pods_of(w.ref), batch) if w.ref.kind in BATCH
                    else _workload(w, live.pods_of(w.ref), drift))
    removals: list[Action] = []
    untracked: list[str] = []
    if prune.enabled:
        pods, untracked = _prune_pods(desired, live, known, prune)
        removals += pods
        removals += _prune_secrets(desired, live, secrets)
    leaving = {a.name for a in removals if isinstance(a, RemovePod)}
    volumes, orphans = _prune_volumes(desired, live, prune, bound_volumes(live, leaving))
    removals += volumes
    if prune.enabled:
        removals += _prune_networks(desired, live, known)
    # a Service forwarder that goes (its Service back on the direct path) frees its node port before the pod takes it
    first = [a for a in removals if isinstance(a, RemovePod) and a.pod_owner == "Service"]
    return Plan(desired.node, tuple(first + acts + [a for a in removals if a not in first]), tuple(orphans),
                tuple(untracked),
                tuple(sorted(unknown_secrets(desired, live, secrets))))


def _creations(desired: NodeDesired, live: LiveState, drift: Drift) -> list[Action]:
    """Networks, volumes and secrets the node lacks, in that order (pods need them); secrets re-made by
    hand made again from Git; lost volumes reported (and not made again under their pods)."""
    acts: list[Action] = [CreateNetwork(net, f"network for namespace {net.namespace}")
                          for net in desired.networks if net.name not in live.networks]
    acts += [VolumeLost(name, pods, f"{why}: its data is gone; the pods that used it are left as they are "
                        f"(remove them with `podman pod rm -f {' '.join(pods)}` to start again empty)")
             for name, (pods, why) in sorted(drift.lost_volumes.items())]
    acts += [CreateVolume(vol, f"storage for {vol.claim}") for vol in desired.volumes
             if vol.name not in live.volumes and vol.name not in drift.lost_volumes]
    acts += [CreateSecret(sec, f"key {sec.key} of {sec.source}")
             for sec in desired.secrets if sec.name not in live.secrets]
    acts += [RecreateSecret(sec, f"key {sec.key} of {sec.source}: {drift.secrets[sec.name]}")
             for sec in desired.secrets if sec.name in drift.secrets and sec.name in live.secrets]
    return acts


def _prune_pods(desired: NodeDesired, live: LiveState, known: set[ObjectRef] | None,
                prune: PruneConfig) -> tuple[list[Action], list[str]]:
    """Managed pods whose owner left Git (removed), and those whose owner this agent never applied
    (untracked: left alone). PruneRefused when the revision would remove every managed pod."""
    wanted = {w.ref for w in desired.workloads}
    removals: list[Action] = []
    untracked: list[str] = []
    for pod in sorted(live.pods.values(), key=lambda p: p.name):
        owner = pod.owner
        if owner in wanted:
            continue
        if known is not None and owner not in known:
            untracked.append(pod.name)
            continue
        removals.append(RemovePod(pod.name, owner, f"{owner or 'owner unknown'} is no longer in Git"))
    if removals and not desired.inventory and not prune.allow_empty:
        raise PruneRefused(
            f"node {desired.node}: revision {desired.revision} would delete every managed pod "
            f"({len(removals)}); set prune.allowEmpty: true if that is really wanted"
        )
    return removals, untracked


def _prune_secrets(desired: NodeDesired, live: LiveState, recorded: Iterable[str]) -> list[Action]:
    """The agent's secrets no longer desired. While a pod an older agent made runs, it may use any
    old-named secret: none is removed yet."""
    if any(p.from_older_agent for p in live.pods.values()):
        return []
    gone = owned_secrets(live, recorded) - {s.name for s in desired.secrets}
    return [RemoveSecret(name, "no longer referenced") for name in sorted(gone)]


def _prune_volumes(desired: NodeDesired, live: LiveState, prune: PruneConfig,
                   bound: frozenset[str] = frozenset()) -> tuple[list[Action], list[str]]:
    """Volumes whose claim left Git: removed only with prune.deleteVolumes, else kept and listed orphaned; one a
    live container that stays mounts (`bound`) is kept too."""
    removals: list[Action] = []
    orphans: list[str] = []
    for name in sorted(set(live.volumes) - {v.name for v in desired.volumes}):
        labels = live.volumes[name]
        if labels.get(L_KIND) == "StatefulSet" and \
                ObjectRef("StatefulSet", labels.get(L_NAMESPACE, ""), labels.get(L_NAME, "")) in desired.inventory:
            continue  # an ordinal scaled away: its data waits for it, as Kubernetes keeps the PVC
        if prune.enabled and prune.delete_volumes and name not in bound:
            removals.append(RemoveVolume(name, "claim removed from Git and prune.deleteVolumes is on"))
        else:
            orphans.append(name)
    return removals, orphans


def bound_volumes(live: LiveState, leaving: Iterable[str] = ()) -> frozenset[str]:
    """PURE. The volumes the inspected containers of live pods mount, whole or a subPath (a bind mount of its
    directory, which Podman does not count as a use: it would remove the volume under them); the pods in
    `leaving` (removed before the volumes) left out."""
    gone = set(leaving)
    return frozenset(name for pod in live.pods.values() if pod.name not in gone
                     for c in (pod.infra, *pod.containers) if c is not None and c.props is not None
                     for name in (*c.props.volumes.values(), *(v for v, _ in c.props.sub_path_binds.values())))


def _prune_networks(desired: NodeDesired, live: LiveState, known: set[ObjectRef] | None) -> list[Action]:
    """Networks of namespaces that left Git; a managed network this agent never applied is not ours to remove."""
    removals: list[Action] = []
    for name in sorted(set(live.networks) - {n.name for n in desired.networks}):
        labels = live.networks[name]
        owner = ObjectRef(labels.get(L_KIND, ""), labels.get(L_NAMESPACE, ""), labels.get(L_NAME, ""))
        if known is None or owner in known:
            removals.append(RemoveNetwork(name, "namespace removed from Git"))
    return removals


def owned_secrets(live: LiveState, recorded: Iterable[str]) -> frozenset[str]:
    """The live secrets the agent made: in its inventory (`recorded`), or proven by the mark
    it puts in each secret's driver options (what survives a lost state store)."""
    return live.secrets & (frozenset(recorded) | live.marked_secrets)


def unknown_secrets(desired: NodeDesired, live: LiveState, recorded: Iterable[str]) -> set[str]:
    """`gitops-*` secrets that are not desired and that the agent cannot prove it made: a hand-made
    `gitops-admin-key`, or one an older agent (dash-joined names) made (no mark, no record). Never removed."""
    return set(live.secrets - {s.name for s in desired.secrets} - owned_secrets(live, recorded))


def _replication(w: WorkloadSpec, pods: list[LivePod], drift: Drift) -> list[Action]:
    """A ReplicationController (or ReplicaSet) never rolls: its running pods of older templates are kept and
    counted; only scaling acts. Missing pods are made from the current template, surplus pods go older templates
    first."""
    current = {p.name: p for p in w.pods}
    kept = sorted(pods, key=lambda p: (p.template_hash == w.template_hash, p.name), reverse=True)[: w.replicas]
    acts = _workload(replace(w, pods=tuple(spec for spec in w.pods if spec.name in {p.name for p in kept})),
                     [p for p in kept if p.name in current], drift)
    free = [spec for spec in w.pods if spec.name not in {p.name for p in pods}]
    acts += [CreatePod(spec, f"{w.ref} wants {w.replicas} replica(s) here") for spec in free[: w.replicas - len(kept)]]
    return acts + [RemovePod(p.name, w.ref, f"{w.ref} scaled to {w.replicas} here") for p in pods if p not in kept]


def _workload(w: WorkloadSpec, pods: list[LivePod], drift: Drift | None = None) -> list[Action]:
    """One workload on this node: a rolling update when pods of another template run, else creations,
    drift repairs and scale-down."""
    drift = drift or Drift()
    if w.ref.kind in NEVER_ROLLS and any(p.template_hash != w.template_hash for p in pods):
        return _replication(w, pods, drift)
    if w.ref.kind == "StatefulSet":
        return _stateful(w, pods, drift)
    old = [p for p in pods if p.template_hash != w.template_hash]
    if old:
        return [_rolling(w, pods, old)]
    desired_names = {p.name for p in w.pods}
    acts = _repairs(w, {p.name: p for p in pods}, drift)
    gone: list[Action] = [RemovePod(pod.name, w.ref, f"{w.ref} scaled to {w.replicas} here")
                          for pod in pods if pod.name not in desired_names]
    if w.ref.kind == "Pod":  # a Pod renamed by an upgrade: one instance at a time (its hostPorts, its name)
        return gone + acts
    return acts + gone


def _job(w: WorkloadSpec, pods: list[LivePod], batch: Batch) -> list[Action]:
    """A Job's next attempts (`jobs.next_runs`) and the pods it no longer needs; a CronJob's, run by run (the
    runs its store record keeps, `cronjobs.advance`), and the finished pods of runs it no longer keeps."""
    book = batch.books.get(w.ref)
    if w.cron is None:
        return _run(w, pods, book.run(w.template_hash) if book else None, batch.now, str(w.ref))
    acts: list[Action] = []
    for r in book.runs if book else ():
        acts += _run(replace(w, pods=run_pods(w, r.run)), pods_of_run(pods, r.run), r, batch.now,
                     f"{w.ref} run {r.run}")
    kept = {r.run for r in book.runs} if book else set()
    replaced = w.cron.concurrency_policy == "Replace"
    return acts + [RemovePod(p.name, w.ref, f"{w.ref}: run {p.labels.get(L_RUN, '?')} is "
                                            + ("replaced (concurrencyPolicy Replace)" if not finished(p) else
                                               "beyond the history limits"))
                   for p in pods if p.labels.get(L_RUN) not in kept and (replaced or finished(p))]


def _run(w: WorkloadSpec, pods: list[LivePod], record: RunRecord | None, now: float, what: str) -> list[Action]:
    """One run's next attempts, and the removal of its pods that must go, each with why."""
    start, gone = next_runs(w, pods, record, now)
    runs: list[Action] = [RunPod(spec, f"{what}: {_attempt(w, spec)}") for spec in start]
    ignored = set(tally(w, own_pods(w, pods)).ignored)
    if expired(w, record, now):
        why = f"{what} finished {w.ttl} s ago (ttlSecondsAfterFinished); its record stays"
    elif record is not None and record.reason == DEADLINE:
        why = f"{what} is past its activeDeadlineSeconds ({w.active_deadline} s): Failed, DeadlineExceeded"
    elif record is not None and record.reason in _STOPPED:
        why = f"{what} {_STOPPED[record.reason]}: its active pods are removed"
    else:
        why = f"{what} changed: its new template is a new run"
    stops: list[Action] = [StopSidecars(p.name, w.ref, w.pods[0].stop_timeout if w.pods else 30,
                                        f"{what}: pod {p.name}'s app containers exited, its sidecars still run")
                           for p in pods if finished(p) and sidecars_running(p) and p.name not in gone]
    rerun = f"{what}: the pod failed with an exit code a podFailurePolicy Ignore rule matches: not counted, run again"
    return runs + stops + [RemovePod(name, w.ref, rerun if name in ignored else why) for name in gone]


_STOPPED = {POLICY: "failed by its podFailurePolicy (FailJob)", SUCCESS_MET: "met its successPolicy: Complete",
            MAX_FAILED: "has more failed indexes than maxFailedIndexes: Failed"}


def _attempt(w: WorkloadSpec, spec: PodSpec) -> str:
    """Which attempt `spec` is: of the Job's (an Indexed Job's: of its index's)."""
    if not w.job.indexed:
        return f"attempt {w.pods.index(spec) + 1} of at most {len(w.pods)}"
    of_index = [p.name for p in w.pods if index_of(p) == index_of(spec)]
    return f"index {index_of(spec)}, attempt {of_index.index(spec.name) + 1} of at most {len(of_index)}"


def _stateful(w: WorkloadSpec, pods: list[LivePod], drift: Drift) -> list[Action]:
    """A StatefulSet: ordinals of an older template (at or above the partition) and surplus ordinals go through
    `rolling.update` (highest ordinal first, one at a time), and so do missing ordinals under OrderedReady (each
    made once those below it are available). Held pods (below the partition; any under OnDelete) stay as they are."""
    kept = {p.name for p in held(w, pods)}
    names = {s.name for s in w.pods}
    old = [p for p in pods if p.name not in kept and (p.template_hash != w.template_hash or p.name not in names)]
    missing = names - {p.name for p in pods}
    if old or (missing and w.ordered):
        policy = "OrderedReady" if w.ordered else "Parallel"
        return [RollingUpdate(w, tuple(p.name for p in old), f"{len(missing)} ordinal(s) to create, {len(old)} to "
                              f"replace or remove, highest ordinal first ({policy})")]
    return _repairs(replace(w, pods=tuple(s for s in w.pods if s.name not in kept)),
                    {p.name: p for p in pods if p.name not in kept}, drift)


def _rolling(w: WorkloadSpec, pods: list[LivePod], old: list[LivePod]) -> RollingUpdate:
    new_count = sum(1 for p in pods if p.name in {s.name for s in w.pods})
    return RollingUpdate(
        w, tuple(p.name for p in old),
        f"template {old[0].template_hash or '?'} → {w.template_hash}: "
        f"{len(w.pods) - new_count} new pod(s), {len(old)} old pod(s) to replace ({w.strategy})",
    )


def _wanted(w: WorkloadSpec) -> str:
    """Why a missing pod of `w` is made; a Service's pod is its forwarder (gitops_agent/forwarder.py)."""
    if w.ref.kind == "Service":
        ports = ", ".join(f"{m.host_port}/{m.protocol.upper()}" for pod in w.pods[:1] for m in pod.ports)
        return f"forwarder of {w.ref}: node port {ports} to its pods"
    return f"{w.ref} wants {w.replicas} replica(s) here"


def _repairs(w: WorkloadSpec, live_by_name: Mapping[str, LivePod], drift: Drift) -> list[Action]:
    """Each of `w`'s pods that is missing (created), lost a container by hand (replaced), differs from its
    spec in a property the agent set (`drifted`: replaced; its network only: reconnected), was paused
    (unpaused) or stopped while it should always run (started). A pod whose volume was lost is left alone."""
    held = {p for pods, _ in drift.lost_volumes.values() for p in pods}
    acts: list[Action] = []
    for spec in w.pods:
        pod = live_by_name.get(spec.name)
        if pod is None:
            acts.append(CreatePod(spec, _wanted(w)))
            continue
        if spec.name in held:
            continue
        missing = [c.name for c in spec.running_containers() if pod.container_for(c.name) is None]
        changed = drifted(spec, pod) + [f"secret {s} {drift.secrets[s].partition(' (')[0]}"
                                        for s in sorted(uses_secrets(spec)) if s in drift.secrets]
        network = network_drift(spec, pod, drift.readiness)
        if missing:
            acts.append(ReplacePod(spec, f"container {', '.join(missing)} removed by hand"))
        elif changed:
            acts.append(ReplacePod(spec, "; ".join(changed)))
        elif network is not None and any(c.pod_ip_env for c in spec.every_container()):
            # connected again, it would get another address than the one its env holds (status.podIP)
            acts.append(ReplacePod(spec, f"{network.reason} (its address is in its env: made again)"))
        elif network is not None:
            acts.append(network)
        elif any(c.paused for c in pod.containers):
            acts.append(UnpausePod(spec, f"container {', '.join(c.name for c in pod.containers if c.paused)} paused"))
        elif (sidecars := _sidecar_repair(w, spec, pod)) is not None:
            acts.append(sidecars)
        elif spec.restart_policy == "always" and any(not c.running for c in pod.containers):
            stopped = [c.name for c in pod.containers if not c.running]
            acts.append(StartPod(spec, f"container {', '.join(stopped)} stopped"))
    return acts


def _sidecar_repair(w: WorkloadSpec, spec: PodSpec, pod: LivePod) -> Action | None:
    """PURE. A pod with sidecars whose restartPolicy is not Always: once its app containers are done (exited, and
    not to be restarted by Podman), the sidecars still running are stopped, as the kubelet stops them; while they
    run, a sidecar stopped by hand is started again (Podman restarts one that exits by itself)."""
    if not spec.sidecars or spec.restart_policy == "always":
        return None
    apps = app_containers(pod)
    done = bool(apps) and all(c.state in ("exited", "stopped") and (spec.restart_policy == "no" or c.exit_code == 0)
                              for c in apps)
    if done and sidecars_running(pod):
        return StopSidecars(spec.name, w.ref, spec.stop_timeout, "its app containers are done: its sidecars stop")
    stopped = [c.name for c in pod.containers if L_SIDECAR in c.labels and not c.running]
    if not done and stopped:
        return StartPod(spec, f"sidecar {', '.join(stopped)} stopped")
    return None


@dataclass(frozen=True)
class Drift:
    """What a node's objects outside its pods say about the pods: secrets re-made by hand (name → why) and
    lost volumes (name → (the pods that used it, why))."""

    secrets: Mapping[str, str] = field(default_factory=dict)
    lost_volumes: Mapping[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    readiness: Mapping[str, bool] = field(default_factory=dict)  # pod → ready, as the readiness monitor judged it


def expected_aliases(spec: PodSpec, live_pod: LivePod, readiness: Mapping[str, bool] | None = None) -> frozenset[str]:
    """PURE. The DNS aliases pod `spec` must have on its namespace network now: the one place that says it
    (drift repair compares the infra container's live aliases with this, nothing else does). A pod the readiness
    monitor watches (endpoints.watched) has its Service names only once judged ready (`readiness`, pod → ready);
    one with no verdict yet is expected with only its own names (`aliases_match` then accepts either)."""
    if not watched(spec):
        return frozenset(spec.aliases)
    ready = (readiness or {}).get(spec.name, False)
    return serving_aliases(spec.aliases, service_aliases(spec.aliases), ready=ready)


def aliases_match(spec: PodSpec, have: frozenset[str], want: frozenset[str],
                  readiness: Mapping[str, bool] | None = None) -> bool:
    """PURE. Whether live aliases `have` are what `expected_aliases` said (`want`). A watched pod with no readiness
    verdict yet (new, or made before the monitor) may hold its Service names or not: the gate or the monitor
    decides; only its own names are compared then."""
    if have == want:
        return True
    if not watched(spec) or spec.name in (readiness or {}):
        return False
    services = service_aliases(spec.aliases)
    return have <= frozenset(spec.aliases) and have - services == want - services


def network_drift(spec: PodSpec, pod: LivePod, readiness: Mapping[str, bool] | None = None) -> ReconnectPod | None:
    """The pod's network membership against its spec (the infra container's inspect): None when it is on its
    namespace network with `expected_aliases` and on no other network, or when that was not read."""
    props = pod.infra.props if pod.infra is not None else None
    if spec.host_network or props is None or pod.infra is None:
        return None
    want = expected_aliases(spec, pod, readiness)
    other = tuple(sorted(n for n in props.networks if n != spec.network))
    have = props.networks.get(spec.network)
    why = [f"network {n} connected by hand" for n in other]
    if have is None:
        why.insert(0, f"network {spec.network} disconnected")
    elif not aliases_match(spec, have, want, readiness):
        why.insert(0, f"network {spec.network} aliases {_names(have)} instead of {_names(want)}")
        other = (spec.network, *other)
    if not why:
        return None
    return ReconnectPod(spec, pod.infra.id, want, other, "; ".join(why))


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "(none)"


def drifted(spec: PodSpec, pod: LivePod) -> list[str]:
    """PURE. The properties the agent set that differ live, one phrase per property naming it (and never a
    value: an environment variable is compared by digest). Only containers whose inspect was read count."""
    out: list[str] = []
    if pod.ports is not None and not spec.host_network:
        want = frozenset((p.host_port, p.container_port, p.protocol) for p in spec.ports)
        if want != pod.ports:
            out.append("published ports changed by hand")
    for c in spec.running_containers():
        live = pod.container_for(c.name)
        if live is not None and live.props is not None:
            changed = container_drift(spec, c, live.props)
            if changed:
                out.append(f"container {c.labels.get(L_CONTAINER, c.name)}: {', '.join(changed)} changed by hand")
    return out


def container_drift(pod: PodSpec, c: ContainerSpec, live: ContainerProps) -> list[str]:
    """PURE. The names of `c`'s properties whose live value (`live`) is not what the agent set."""
    out = [f"env {k}" for k, v in sorted(c.env.items()) if k not in c.node_env and live.env.get(k) != env_digest(v)]
    out += [f"env {k}" for k in sorted((*c.secret_env, *c.pod_ip_env, *c.node_env)) if k not in live.env]
    out += [f"label {k}" for k, v in sorted(c.labels.items()) if k != L_REVISION and live.labels.get(k) != v]
    out += [f"mount {b.target}" for b in c.volumes if not b.sub_path and live.volumes.get(b.target) != b.volume]
    out += [f"mount {b.target}" for b in c.volumes
            if b.sub_path and live.sub_path_binds.get(b.target) != (b.volume, b.sub_path)]
    out += [f"mount {t}" for t in sorted({m.target for m in c.image_mounts} | set(live.image_mounts))
            if not _image_mount_matches(c.image_mounts, t, live.image_mounts.get(t))]
    checks = (
        ("command", not c.command or tuple(c.command) == live.command),
        ("entrypoint", not c.entrypoint or " ".join(c.entrypoint) == live.entrypoint),
        ("image", image_matches(c.image, live)),
        ("restart policy", container_restart_policy(pod, c) == (live.restart_policy or "no")),
        ("memory limit", (c.memory_bytes or 0) == live.memory),
        ("memory request", (c.memory_reservation or 0) == live.memory_reservation),
        ("cpu limit", (c.cpu_millis or 0) * 100 == live.cpu_quota),
        ("cpu request", (c.cpu_shares or 0) == live.cpu_shares),
        ("privileged", c.privileged == live.privileged),
        ("readOnlyRootFilesystem", c.read_only_root_fs == live.read_only_root_fs),
        ("capabilities", c.privileged or _caps_ok(c, live.caps)),
        ("user", c.user is None or c.user == live.user),
        ("allowPrivilegeEscalation", c.no_new_privileges == live.no_new_privileges),
        ("supplementalGroups", not c.groups or set(c.groups) <= set(live.groups)),
        ("seccompProfile", c.seccomp == live.seccomp),
        # Podman's default AppArmor profile, where AppArmor is enabled, may be named there: only a set one is compared
        ("appArmorProfile", not c.apparmor or c.apparmor == live.apparmor),
    )
    return out + [name for name, ok in checks if not ok]


def _caps_ok(c: ContainerSpec, caps: frozenset[str]) -> bool:
    """Added capabilities are held and dropped ones are not (ALL is not checked: the runtime's set)."""
    added = {x for x in c.cap_add if x != "ALL"}
    dropped = {x for x in c.cap_drop if x != "ALL"}
    return added <= caps and not dropped & caps


def image_matches(image: str, live: ContainerProps) -> bool:
    """The container runs `image`: by its name, by a digest of its repository or by the ID `apply` pinned."""
    name = live.image_name
    return name in (image, live.image_id) or name.startswith(repository(image) + "@") or not name


def _image_mount_matches(mounts: Iterable[ImageMount], target: str, live: str | None) -> bool:
    """PURE. The image volume at `target` mounts the image wanted there (as `image_matches`: by name, by a digest
    of its repository, or by an image ID `apply` pinned); none wanted and none live matches too."""
    want = next((m.source for m in mounts if m.target == target), None)
    if want is None or live is None:
        return want == live
    return live == want or live.startswith(repository(want) + "@") or bool(re.fullmatch(r"[0-9a-f]{12,64}", live))


def uses_secrets(spec: PodSpec) -> frozenset[str]:
    """The Podman secrets a pod's containers use (environment and files)."""
    return frozenset(n for c in spec.every_container() for n in (*c.secret_env.values(),
                                                                 *(m.secret for m in c.secret_mounts)))


def recreated_secrets(desired: NodeDesired, live: LiveState) -> dict[str, str]:
    """PURE. Desired secrets made again by hand under their name (Podman 4.3 cannot show a secret's content):
    a consumer was created with another ID of it, or the secret is younger than a container using it (the
    agent makes a secret before the containers that use it). Name → why."""
    out: dict[str, str] = {}
    for w in desired.workloads:
        for spec in w.pods:
            pod = live.pods.get(spec.name)
            for c in spec.every_container() if pod is not None else ():
                found = pod.container_for(c.name) if pod is not None else None
                props = found.props if found is not None else None
                for name in (*c.secret_env.values(), *(m.secret for m in c.secret_mounts)):
                    if props is None or name in out:
                        continue
                    recorded = props.secrets.get(name)
                    if name not in live.secrets:  # made again below (CreateSecret); its consumers with it
                        out[name] = f"removed by hand under container {c.name}, which uses it"
                        continue
                    if recorded and recorded != live.secret_ids.get(name):
                        out[name] = f"re-created by hand (its ID is not the one container {c.name} was made with)"
                    elif props.created and live.secret_created.get(name, 0.0) > props.created:
                        out[name] = f"re-created by hand (it is younger than container {c.name}, which uses it)"
    return out


def lost_volumes(desired: NodeDesired, live: LiveState) -> dict[str, tuple[tuple[str, ...], str]]:
    """PURE. Claim volumes removed, or removed and made again, under live pods that use them: data loss.
    The agent makes a volume before the pods that use it, so a volume missing under such a pod, or younger
    than it, is not the one the pod was made with. Name → (the pods, why)."""
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    claims = {v.name for v in desired.volumes}
    for w in desired.workloads:
        for spec in w.pods:
            pod = live.pods.get(spec.name)
            made = _made_at(pod) if pod is not None else 0.0
            for name in sorted({b.volume for c in spec.containers for b in c.volumes} & claims):
                if not made:
                    continue
                if name not in live.volumes:
                    why = "removed by hand"
                elif live.volume_created.get(name, 0.0) > made:
                    why = "removed and made again by hand (it is younger than the pod using it)"
                else:
                    continue
                pods, _ = out.get(name, ((), ""))
                out[name] = ((*pods, spec.name), f"volume {name} {why}")
    return out


def _made_at(pod: LivePod) -> float:
    """When the pod's oldest inspected container (its infra container first) was made; 0.0 if none was read."""
    times = [c.props.created for c in (pod.infra, *pod.containers) if c is not None and c.props and c.props.created]
    return min(times, default=0.0)


def adopt_volumes(desired: NodeDesired, live_volumes: Mapping[str, Mapping[str, str]]) -> NodeDesired:
    """`desired` with each claim's volume named as it exists on the node (`claim_volume`):
    a volume made under the old dash-joined name keeps serving its claim, with its data."""
    rename = {v.name: claim_volume(v.claim, live_volumes) for v in desired.volumes}
    rename = {new: old for new, old in rename.items() if new != old}
    if not rename:
        return desired

    def pod(p: PodSpec) -> PodSpec:
        return p.map_containers(
            lambda c: replace(c, volumes=tuple(replace(b, volume=rename.get(b.volume, b.volume)) for b in c.volumes)))

    return replace(
        desired,
        volumes=tuple(replace(v, name=rename.get(v.name, v.name)) for v in desired.volumes),
        workloads=tuple(replace(w, pods=tuple(pod(p) for p in w.pods)) for w in desired.workloads),
    )
