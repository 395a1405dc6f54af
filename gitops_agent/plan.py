"""PURE: plan(desired, live) → the ordered actions that make a node match Git.

Sits between `desired`/`live` (inputs) and `apply` (executes). No Podman, no
Git, no clock. An empty plan means the node is in sync and `apply` makes no
write call. Order: networks, volumes, secrets, pods (create, repair, roll,
scale), then deletions in reverse (pods, secrets, volumes, networks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Mapping

from .config import PruneConfig
from .desired import (
    L_KIND,
    L_NAME,
    L_NAMESPACE,
    NetworkSpec,
    NodeDesired,
    PodSpec,
    SecretSpec,
    VolumeSpec,
    WorkloadSpec,
    claim_volume,
)
from .errors import PruneRefused
from .live import LivePod, LiveState
from .model import ObjectRef

Op = Literal[
    "create-network",
    "create-volume",
    "create-secret",
    "create-pod",
    "replace-pod",
    "start-pod",
    "rollout",
    "remove-pod",
    "remove-secret",
    "remove-volume",
    "remove-network",
]


@dataclass(frozen=True)
class Action:
    op: Op
    target: str  # the Podman object's name (for "rollout": the workload, Kind/namespace/name)
    reason: str
    owner: ObjectRef | None = None
    network: NetworkSpec | None = None
    volume: VolumeSpec | None = None
    secret: SecretSpec | None = None
    pod: PodSpec | None = None
    workload: WorkloadSpec | None = None
    old_pods: tuple[str, ...] = ()  # rollout: live pods of other templates, to be replaced

    def __str__(self) -> str:
        return f"{self.op} {self.target}: {self.reason}"


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
) -> Plan:
    """The actions that bring `live` to `desired`, each with the reason it is needed.

    `inventory` is what this agent applied before (from its history). Prune
    removes a managed object only when its owner is in that inventory; without
    one (a fresh or lost state directory) the ownership labels alone decide.
    `secrets` is this node's secret inventory (the names the agent recorded
    before creating them): a secret is removed only when it is in it or
    carries the agent's mark (`owned_secrets`); any other `gitops-*` secret is
    left alone and listed in `unknown_secrets`.
    """
    desired = adopt_volumes(desired, live.volumes)
    acts: list[Action] = []
    for net in desired.networks:
        if net.name not in live.networks:
            acts.append(Action("create-network", net.name, f"network for namespace {net.namespace}", network=net))
    for vol in desired.volumes:
        if vol.name not in live.volumes:
            acts.append(Action("create-volume", vol.name, f"storage for {vol.claim}", owner=vol.claim, volume=vol))
    for sec in desired.secrets:
        if sec.name not in live.secrets:
            acts.append(Action("create-secret", sec.name, f"key {sec.key} of {sec.source}", owner=sec.source, secret=sec))

    for w in desired.workloads:
        acts.extend(_workload(w, live.pods_of(w.ref)))

    known = set(inventory) if inventory is not None else None
    wanted = {w.ref for w in desired.workloads}
    removals: list[Action] = []
    untracked: list[str] = []
    if prune.enabled:
        for pod in sorted(live.pods.values(), key=lambda p: p.name):
            owner = pod.owner
            if owner in wanted:
                continue
            if known is not None and owner not in known:
                untracked.append(pod.name)
                continue
            removals.append(Action("remove-pod", pod.name, f"{owner or 'owner unknown'} is no longer in Git", owner=owner))
        if removals and not desired.inventory and not prune.allow_empty:
            raise PruneRefused(
                f"node {desired.node}: revision {desired.revision} would delete every managed pod "
                f"({len(removals)}); set prune.allowEmpty: true if that is really wanted"
            )
        # while a pod an older agent made runs, it may use any old-named secret: none is removed yet
        upgrading = any(p.from_older_agent for p in live.pods.values())
        for name in () if upgrading else sorted(owned_secrets(live, secrets) - {s.name for s in desired.secrets}):
            removals.append(Action("remove-secret", name, "no longer referenced"))
    orphans: list[str] = []
    keep_volumes = {v.name for v in desired.volumes}
    for name in sorted(set(live.volumes) - keep_volumes):
        if prune.enabled and prune.delete_volumes:
            removals.append(Action("remove-volume", name, "claim removed from Git and prune.deleteVolumes is on"))
        else:
            orphans.append(name)
    if prune.enabled:
        keep_nets = {n.name for n in desired.networks}
        for name in sorted(set(live.networks) - keep_nets):
            labels = live.networks[name]
            owner = ObjectRef(labels.get(L_KIND, ""), labels.get(L_NAMESPACE, ""), labels.get(L_NAME, ""))
            if known is not None and owner not in known:
                continue  # a managed network this agent never applied: not ours to remove
            removals.append(Action("remove-network", name, "namespace removed from Git"))
    return Plan(desired.node, tuple(acts + removals), tuple(orphans), tuple(untracked),
                tuple(sorted(unknown_secrets(desired, live, secrets))))


def owned_secrets(live: LiveState, recorded: Iterable[str]) -> frozenset[str]:
    """The live secrets the agent made: in its inventory (`recorded`), or proven by the mark
    it puts in each secret's driver options (what survives a lost state store)."""
    return live.secrets & (frozenset(recorded) | live.marked_secrets)


def unknown_secrets(desired: NodeDesired, live: LiveState, recorded: Iterable[str]) -> set[str]:
    """`gitops-*` secrets that are not desired and that the agent cannot prove it made: a hand-made
    `gitops-admin-key`, or one an older agent (dash-joined names) made (no mark, no record). Never removed."""
    return set(live.secrets - {s.name for s in desired.secrets} - owned_secrets(live, recorded))


def _replication(w: WorkloadSpec, pods: list[LivePod]) -> list[Action]:
    """A ReplicationController never rolls: its running pods of older templates are kept and counted; only
    scaling acts. Missing pods are made from the current template, surplus pods go older templates first."""
    current = {p.name: p for p in w.pods}
    kept = sorted(pods, key=lambda p: (p.template_hash == w.template_hash, p.name), reverse=True)[: w.replicas]
    acts = _workload(replace(w, pods=tuple(spec for spec in w.pods if spec.name in {p.name for p in kept})),
                     [p for p in kept if p.name in current])
    free = [spec for spec in w.pods if spec.name not in {p.name for p in pods}]
    acts += [Action("create-pod", spec.name, f"{w.ref} wants {w.replicas} replica(s) here", owner=w.ref, pod=spec)
             for spec in free[: w.replicas - len(kept)]]
    return acts + [Action("remove-pod", p.name, f"{w.ref} scaled to {w.replicas} here", owner=w.ref)
                   for p in pods if p not in kept]


def _workload(w: WorkloadSpec, pods: list[LivePod]) -> list[Action]:
    if w.ref.kind == "ReplicationController" and any(p.template_hash != w.template_hash for p in pods):
        return _replication(w, pods)
    desired_names = {p.name for p in w.pods}
    old = [p for p in pods if p.template_hash != w.template_hash]
    if old:
        new_count = sum(1 for p in pods if p.name in desired_names)
        return [
            Action(
                "rollout",
                str(w.ref),
                f"template {old[0].template_hash or '?'} → {w.template_hash}: "
                f"{len(w.pods) - new_count} new pod(s), {len(old)} old pod(s) to replace ({w.strategy})",
                owner=w.ref,
                workload=w,
                old_pods=tuple(p.name for p in old),
            )
        ]
    acts: list[Action] = []
    live_by_name = {p.name: p for p in pods}
    for spec in w.pods:
        pod = live_by_name.get(spec.name)
        if pod is None:
            acts.append(Action("create-pod", spec.name, f"{w.ref} wants {w.replicas} replica(s) here", owner=w.ref, pod=spec))
            continue
        missing = [c.name for c in spec.containers if pod.container_for(c.name) is None]
        if missing:
            acts.append(Action("replace-pod", spec.name, f"container {', '.join(missing)} removed by hand", owner=w.ref, pod=spec))
        elif spec.restart_policy == "always" and any(not c.running for c in pod.containers):
            stopped = [c.name for c in pod.containers if not c.running]
            acts.append(Action("start-pod", spec.name, f"container {', '.join(stopped)} stopped", owner=w.ref, pod=spec))
    gone = [Action("remove-pod", pod.name, f"{w.ref} scaled to {w.replicas} here", owner=w.ref)
            for pod in pods if pod.name not in desired_names]
    if w.ref.kind == "Pod":  # a Pod renamed by an upgrade: one instance at a time (its hostPorts, its name)
        return gone + acts
    return acts + gone


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


@dataclass(frozen=True)
class Step:
    """One move of a rolling update: how many new pods to create, old pods to remove."""

    create: int
    remove: int


def rolling_step(
    replicas: int,
    max_surge: int,
    max_unavailable: int,
    old_total: int,
    old_ready: int,
    new_total: int,
    new_ready: int,
) -> Step:
    """Kubernetes' RollingUpdate arithmetic for one node.

    Never more than `replicas + max_surge` pods, never fewer than
    `replicas - max_unavailable` ready ones; old pods that are not ready do not
    count as available and may always go. When both knobs are 0 Kubernetes
    rejects the Deployment; here max_unavailable is taken as 1 so it still moves.
    """
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    create = max(0, min(replicas - new_total, replicas + max_surge - (old_total + new_total)))
    min_available = replicas - max_unavailable
    removable = max(0, old_ready + new_ready - min_available) + (old_total - old_ready)
    return Step(create=create, remove=min(old_total, removable))
