"""One workload's rolling update on one node: the PURE `next_move`, and `update`, the small loop that
polls the node and carries the moves out.

Sits under `apply` (which runs a plan's `RollingUpdate` action with `update`) and above `podman`
(the node) and `probes` (the `Gate` that judges new pods). `next_move(workload, live pods, verdicts)`
is a function of what one poll of the node saw: no Podman, no clock (the progress deadline comes in
as `overdue`), tested from literals. Moves:

- `Rebuild`: a new pod left half-built (an agent killed mid-create) is removed, to be made again;
- `Start`: a new pod created but never started is started;
- `Surge` / `Remove` / `Replace`: Kubernetes' RollingUpdate step (at most `replicas + maxSurge` pods,
  at least `replicas - maxUnavailable` available), or Recreate (every old pod first);
- `Wait`: nothing may move until a new pod is available; `Fail`: a new pod failed (crash, probe) or the
  progress deadline passed; `Done`: only new pods, all available.

The loop never decides: it reads the node, asks `next_move`, executes, and polls again. It touches only
pods of the workload (the owner labels), never another object.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence, Union, assert_never

from .desired import PodSpec, WorkloadSpec, held, ordinal
from .errors import Interrupted
from .live import LivePod
from .log import Log
from .podman import Node
from .probes import Gate, PodVerdict, RolloutFailed, overdue

POLL = 0.25  # seconds between two looks at the node while nothing may move
CREATE_PARALLEL = 4  # pods created at once on one node: bounded, an edge box has few cores


# --- the moves -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rebuild:
    """New pods with fewer containers than their spec (an agent killed mid-create): removed, made again."""

    pods: tuple[str, ...]


@dataclass(frozen=True)
class Start:
    """New pods created but never started (the agent was killed between create and start)."""

    pods: tuple[str, ...]


@dataclass(frozen=True)
class Surge:
    """New pods to create: room under maxSurge (or Recreate's empty node), nothing to remove yet."""

    create: tuple[PodSpec, ...]

    @property
    def remove(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class Remove:
    """Old pods to remove (not-ready ones first: they serve nothing); no room to create yet."""

    pods: tuple[str, ...]

    @property
    def remove(self) -> tuple[str, ...]:
        return self.pods

    @property
    def create(self) -> tuple[PodSpec, ...]:
        return ()


@dataclass(frozen=True)
class Replace:
    """One step doing both: the old pods `remove` go first, then the new pods `create` are made."""

    remove: tuple[str, ...]
    create: tuple[PodSpec, ...]


@dataclass(frozen=True)
class Wait:
    """Nothing may move: a new pod (`pod`, if any) is not available yet."""

    pod: str = ""


@dataclass(frozen=True)
class Fail:
    """The rolling update fails: a new pod crashed or failed its probe, or the deadline passed."""

    message: str
    pod: str = ""
    probe: str = ""  # "readiness" | "startup" | "liveness" | "crash" | "deadline" | "" (the update as a whole)
    output: str = ""


@dataclass(frozen=True)
class Done:
    """Only pods of the new template remain, every one available."""


Move = Union[Rebuild, Start, Surge, Remove, Replace, Wait, Fail, Done]


# --- the pure decision ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Split:
    """The workload's live pods on the node, by what they are to the rolling update."""

    old: tuple[LivePod, ...]  # another template (or a name the template no longer has): to replace
    new: tuple[LivePod, ...]  # the workload's own pods
    broken: tuple[LivePod, ...]  # new ones missing containers
    unstarted: tuple[LivePod, ...]  # new ones never started
    held: tuple[LivePod, ...] = ()  # a StatefulSet's older-template pods left as they are (`desired.held`)

    @property
    def repairs_due(self) -> bool:
        return bool(self.broken or self.unstarted)


def split(w: WorkloadSpec, pods: Sequence[LivePod]) -> Split:
    specs = {p.name: p for p in w.pods}
    new = tuple(p for p in pods if p.name in specs and p.template_hash == w.template_hash)
    kept = held(w, pods)
    return Split(
        old=tuple(p for p in pods if (p.template_hash != w.template_hash or p.name not in specs) and p not in kept),
        new=new,
        broken=tuple(p for p in new if len(p.containers) < len(specs[p.name].running_containers())),
        unstarted=tuple(p for p in new if all(c.state in ("created", "configured") for c in p.containers)),
        held=kept,
    )


def next_move(w: WorkloadSpec, pods: Sequence[LivePod], verdicts: Mapping[str, PodVerdict],
              overdue: bool = False) -> Move:
    """The next move of `w`'s rolling update, from one look at the node: its live `pods` (the
    workload's, sorted by name), the Gate's `verdicts` on the new ones (a pod without one is not
    available), and whether the progress deadline has passed (`overdue`)."""
    specs = {p.name: p for p in w.pods}
    s = split(w, pods)
    if s.broken:
        if overdue:
            return _late(specs[s.broken[0].name], s.broken[0])
        return Rebuild(tuple(p.name for p in s.broken))
    if s.unstarted:
        return Start(tuple(p.name for p in s.unstarted))
    for p in s.new:
        v = verdicts.get(p.name)
        if v is not None and v.failed:
            return Fail(v.failed, p.name, v.probe, v.output)
    available = [p for p in s.new if _available(verdicts, p)]
    if not s.old and len(available) + len(s.held) == len(w.pods):
        return Done()
    move = _ordinal_step(w, s, {p.name for p in available}) if w.ref.kind == "StatefulSet" else \
        _step(w, s, len(available))
    if move is not None:
        return move
    waiting = next((p for p in s.new if not _available(verdicts, p)), None)
    if waiting is not None:
        return _late(specs[waiting.name], waiting) if overdue else Wait(waiting.name)
    if overdue:
        return Fail(f"{w.ref}: rollout to template {w.template_hash} did not finish by the progress deadline")
    return Wait()


def _available(verdicts: Mapping[str, PodVerdict], pod: LivePod) -> bool:
    v = verdicts.get(pod.name)
    return v is not None and v.available


def _step(w: WorkloadSpec, s: Split, available: int) -> Surge | Remove | Replace | None:
    """What the strategy allows now (Recreate: every old pod, then every new one), or None."""
    wanted = len(w.pods)
    if w.strategy == "Recreate":
        create_n, remove_n = (0, len(s.old)) if s.old else (wanted - len(s.new), 0)
    else:
        step = rolling_step(wanted, w.max_surge, w.max_unavailable, old_total=len(s.old),
                            old_ready=sum(p.ready for p in s.old), new_total=len(s.new), new_ready=available)
        create_n, remove_n = step.create, step.remove
    have = {p.name for p in s.new}
    create = tuple(spec for spec in w.pods if spec.name not in have)[:create_n]
    remove = tuple(p.name for p in sorted(s.old, key=lambda p: (p.ready, p.name))[:remove_n])
    if create and remove:
        return Replace(remove, create)
    if create:
        return Surge(create)
    if remove:
        return Remove(remove)
    return None


def _ordinal_step(w: WorkloadSpec, s: Split, available: set[str]) -> Surge | Remove | Replace | None:
    """A StatefulSet's next step, or None: surplus ordinals removed highest first (one at a time under
    OrderedReady), then missing ordinals made (lowest first, each once every pod below it is available, under
    OrderedReady; all at once under Parallel), then one outdated ordinal replaced in place, highest first, once
    every other pod is available."""
    names = [spec.name for spec in w.pods]
    up = available | {p.name for p in s.held if p.ready}
    surplus = sorted((p.name for p in s.old if p.name not in names), key=ordinal, reverse=True)
    if surplus:
        return Remove(tuple(surplus[:1] if w.ordered else surplus))
    live = {p.name for p in (*s.old, *s.new, *s.held)}
    missing = [spec for spec in w.pods if spec.name not in live]
    if missing and not w.ordered:
        return Surge(tuple(missing))
    if missing:
        below = names[: names.index(missing[0].name)]
        return Surge(tuple(missing[:1])) if all(n in up for n in below) else None
    outdated = sorted((p.name for p in s.old), key=ordinal, reverse=True)
    if outdated and all(n in up for n in names if n not in outdated):
        return Replace(tuple(outdated[:1]), tuple(spec for spec in w.pods if spec.name == outdated[0]))
    return None


def _late(spec: PodSpec, pod: LivePod) -> Fail:
    v = overdue(spec, pod)
    return Fail(v.failed, spec.name, v.probe, v.output)


def progress(w: WorkloadSpec, pods: Sequence[LivePod], verdicts: Mapping[str, PodVerdict]) -> tuple[int, int, int]:
    """For the live view: (updated, ready, desired) pods of `w` on this node."""
    new = split(w, pods).new
    return len(new), sum(_available(verdicts, p) for p in new), len(w.pods)


# --- the loop ------------------------------------------------------------------------------------


def update(node: Node, w: WorkloadSpec, gate: Gate, log: Log, stop: threading.Event | None = None) -> None:
    """Replace `w`'s pods of older templates on `node` with its own, move by move (`next_move`), until
    Done; RolloutFailed on Fail; Interrupted between two moves once `stop` is set (the next pass
    resumes from what the node then shows)."""
    shown = (-1, -1, -1)
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted(f"rollout of {w.ref} on node {node.name} stopped between steps; the next pass resumes it")
        pods = sorted((p for p in node.read_pods().values() if p.owner == w.ref), key=lambda p: p.name)
        s = split(w, pods)
        verdicts = {} if s.repairs_due else judge(gate, w, s.new)
        move = next_move(w, pods, verdicts, gate.overdue())
        counts = progress(w, pods, verdicts)
        judged = not s.repairs_due and not any(v.failed for v in verdicts.values())
        if judged and counts != shown:  # updated/ready against desired on this node, for the live view
            shown = counts
            log("rollout.progress", node=node.name, workload=str(w.ref),
                updated=counts[0], ready=counts[1], desired=counts[2])
        if execute(node, w, move, log):
            return


def judge(gate: Gate, w: WorkloadSpec, new: Sequence[LivePod]) -> dict[str, PodVerdict]:
    """The Gate's verdict on each new pod, in order, up to the first that failed."""
    specs = {p.name: p for p in w.pods}
    verdicts: dict[str, PodVerdict] = {}
    for pod in new:
        v = verdicts[pod.name] = gate.verdict(specs[pod.name], pod)
        if v.failed:
            break
    return verdicts


def execute(node: Node, w: WorkloadSpec, move: Move, log: Log) -> bool:
    """Carry out one move; True once the update is done. Removals go with each pod's own
    terminationGracePeriodSeconds; a half-built pod goes at once."""
    ref = str(w.ref)
    match move:
        case Rebuild(pods=names):
            for name in names:
                log("rollout.rebuild", node=node.name, workload=ref, pod=name)
                node.remove_pod(name, 0)
            time.sleep(POLL)
        case Start(pods=names):
            specs = {p.name: p for p in w.pods}
            for name in names:
                log("rollout.start-pod", node=node.name, workload=ref, pod=name, reason="created but never started")
                node.start_pod(name, specs[name])
        case Surge() | Remove() | Replace():
            for name in move.remove:
                log("rollout.remove", node=node.name, workload=ref, pod=name)
                node.remove_pod(name)
            for spec in move.create:
                log("rollout.create", node=node.name, workload=ref, pod=spec.name)
            create_pods(node, list(move.create))
        case Wait():
            time.sleep(POLL)
        case Fail(message=message, pod=pod, probe=probe, output=output):
            raise RolloutFailed(node.name, message, pod=pod, probe=probe, output=output)
        case Done():
            log("rollout.done", node=node.name, workload=ref, template=w.template_hash, replicas=len(w.pods))
            return True
        case _:
            assert_never(move)
    return False


def create_pods(node: Node, specs: list[PodSpec]) -> None:
    """Create pods, CREATE_PARALLEL at a time (Podman's API serves them concurrently);
    every creation is tried, then the first error is raised."""
    if len(specs) <= 1:
        for spec in specs:
            node.create_pod(spec)
        return
    with ThreadPoolExecutor(max_workers=min(CREATE_PARALLEL, len(specs))) as pool:
        futures = [pool.submit(node.create_pod, spec) for spec in specs]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise errors[0]
