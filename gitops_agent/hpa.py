"""PURE: the HorizontalPodAutoscaler's decisions, with Kubernetes' algorithm (autoscaling/v2).

Sits between `autoscaler` (the daemon job that reads Podman's stats of the target's pods and records the result in
the state store) and the pass (`agent`), which reads the record through `scaled`: the target's replicas then come
from the autoscaler instead of Git, where Git's replicas is only the starting point. No Podman, no clock, no store:
every input is a value (the time `now` included), so each rule is tested from literals (tests/test_hpa.py).

The algorithm, as the kube-controller-manager's:
- utilisation = the pods' summed usage / their containers' summed limits (Kubernetes divides by requests; here
  the limit is what Podman enforces), in percent;
- desired = ceil(pods * utilisation / target), unchanged while utilisation / target is within the 10 % tolerance;
  several metrics: the largest desired;
- stabilisation: the recommendation kept is at least the smallest of those of the last scaleUp window
  (default 0 s: scale up at once) and at most the largest of those of the last scaleDown window (default 300 s),
  so one low reading does not remove pods;
- rate-limited by each direction's policies (`behavior.scaleUp/scaleDown.policies`, Kubernetes' defaults without
  them: up 4 pods or 100 % per 15 s, down 100 % per 15 s): from the replicas at the start of each policy's period
  (the current ones less the scale events of that period: `Record.events`), a Pods policy allows +/- value, a
  Percent one ceil(start * (1 + value/100)) up and int(start * (1 - value/100)) down; selectPolicy Max (default)
  takes the policy allowing the largest change, Min the smallest, Disabled none
  (`calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`);
- clamped to [minReplicas, maxReplicas].

Must not do I/O or read the environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .config import NodeConfig
from .desired import replicas_on
from .model import Autoscaler, ObjectRef, Revision, ScalingRate, Workload

TOLERANCE = 0.1  # Kubernetes' --horizontal-pod-autoscaler-tolerance default
STORE_KEY = "autoscalers"  # the state-store key of the records (`Record.to_json`), by autoscaler ref


@dataclass(frozen=True)
class Usage:
    """What one pod of the target uses now (CPU in millicores, memory in bytes), and its containers' limits."""

    pod: str
    cpu_millis: float
    memory_bytes: int
    cpu_limit_millis: int
    memory_limit_bytes: int


@dataclass(frozen=True)
class Reading:
    """One metric's value over the pods measured: utilisation in percent of the limits, against its target."""

    resource: str  # "cpu" | "memory"
    utilization: int
    target: int
    pods: int


@dataclass(frozen=True)
class Record:
    """What the autoscaler last decided for one target, kept in the state store (survives a restart): the
    replicas the pass uses, the recommendations of the longest window (time, replicas), what it measured, the
    scale events of the longest rate period (time, replicas added: negative when removed) and, when a rate policy
    held the replicas back, the stabilised recommendation it held back from (`held`)."""

    target: ObjectRef
    desired: int
    recommendations: tuple[tuple[float, int], ...] = ()
    readings: tuple[Reading, ...] = ()
    at: float = 0.0
    events: tuple[tuple[float, int], ...] = ()
    held: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": [self.target.kind, self.target.namespace, self.target.name], "desired": self.desired,
                "recommendations": [list(r) for r in self.recommendations], "at": self.at,
                "readings": [[r.resource, r.utilization, r.target, r.pods] for r in self.readings],
                "events": [list(e) for e in self.events], "held": self.held}

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Record:
        """A record as `to_json` wrote it; one written before the rate policies (no events) reads with none."""
        held = raw.get("held")
        return Record(ObjectRef(*raw["target"]), int(raw["desired"]),
                      tuple((float(t), int(n)) for t, n in raw.get("recommendations", ())),
                      tuple(Reading(str(r), int(u), int(t), int(p)) for r, u, t, p in raw.get("readings", ())),
                      float(raw.get("at", 0.0)), tuple((float(t), int(n)) for t, n in raw.get("events", ())),
                      None if held is None else int(held))


def records(raw: Mapping[str, Any] | None) -> dict[str, Record]:
    """The store's records by autoscaler ref (`str(ObjectRef)`); an unreadable one is left out (Git's replicas)."""
    found: dict[str, Record] = {}
    for key, value in (raw or {}).items():
        try:
            found[key] = Record.from_json(value)
        except (KeyError, TypeError, ValueError):
            continue
    return found


def utilization(usages: Iterable[Usage], resource: str) -> tuple[int, int] | None:
    """(percent of the limits used, pods measured) for `resource` over the pods; None without a pod measured
    (or without limits, which the manifests' checks rule out)."""
    measured = list(usages)
    if resource == "cpu":
        used, limit = sum(u.cpu_millis for u in measured), sum(u.cpu_limit_millis for u in measured)
    else:
        used, limit = float(sum(u.memory_bytes for u in measured)), sum(u.memory_limit_bytes for u in measured)
    if not measured or limit <= 0:
        return None
    return round(100 * used / limit), len(measured)


def recommend(current: int, reading: Reading) -> int:
    """Kubernetes' replica count for one metric: `current` within the tolerance, else ceil(pods * ratio)."""
    ratio = reading.utilization / reading.target
    if abs(ratio - 1.0) <= TOLERANCE:
        return current
    return math.ceil(reading.pods * ratio)


def stabilised(recommendations: Iterable[tuple[float, int]], proposal: int, current: int, now: float,
               up_window: int, down_window: int) -> int:
    """The replicas to run now (Kubernetes' `stabilizeRecommendationWithBehaviors`): at least the smallest
    recommendation of the last `up_window` seconds, at most the largest of the last `down_window`, else `current`."""
    up = down = proposal
    for at, replicas in recommendations:
        if at > now - up_window:
            up = min(up, replicas)
        if at > now - down_window:
            down = max(down, replicas)
    return min(max(current, up), down)


def clamp(spec: Autoscaler, replicas: int) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, replicas))


def period_start(current: int, events: Iterable[tuple[float, int]], period: int, now: float) -> int:
    """The replicas at the start of the last `period` seconds: `current` less the changes since (Kubernetes'
    `currentReplicas - replicasAddedInCurrentPeriod + replicasDeletedInCurrentPeriod`)."""
    return current - sum(change for at, change in events if at > now - period)


def scale_up_limit(rate: ScalingRate, current: int, events: Iterable[tuple[float, int]], now: float) -> int:
    """The most replicas `rate` allows now (`calculateScaleUpLimitWithScalingRules`): per policy, Pods adds value
    to its period's start, Percent multiplies it by 1 + value/100 rounded up; Max takes the largest, Min the
    smallest; Disabled, or a limit below `current`, allows no scale-up."""
    if rate.select == "Disabled":
        return current
    seen = list(events)
    limits = [start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
              for p in rate.policies for start in [period_start(current, seen, p.period, now)]]
    return max(current, min(limits) if rate.select == "Min" else max(limits))


def scale_down_limit(rate: ScalingRate, current: int, events: Iterable[tuple[float, int]], now: float) -> int:
    """The fewest replicas `rate` allows now (`calculateScaleDownLimitWithBehaviors`): per policy, Pods takes
    value from its period's start, Percent multiplies it by 1 - value/100 truncated (as Go's int32 conversion);
    Max takes the largest change (the fewest replicas), Min the smallest; Disabled, or a limit above `current`,
    allows no scale-down."""
    if rate.select == "Disabled":
        return current
    seen = list(events)
    limits = [start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
              for p in rate.policies for start in [period_start(current, seen, p.period, now)]]
    return min(current, max(limits) if rate.select == "Min" else min(limits))


def rate_limited(spec: Autoscaler, events: Iterable[tuple[float, int]], desired: int, current: int,
                 now: float) -> int:
    """`desired` within what the direction's rate policies allow now (`convertDesiredReplicasWithBehaviorRate`)."""
    if desired > current:
        return min(desired, scale_up_limit(spec.scale_up_rate, current, events, now))
    if desired < current:
        return max(desired, scale_down_limit(spec.scale_down_rate, current, events, now))
    return desired


def longest_period(spec: Autoscaler) -> int:
    """How long a scale event counts for a rate policy: the longest period of either direction."""
    return max((p.period for p in spec.scale_up_rate.policies + spec.scale_down_rate.policies), default=0)


def decide(spec: Autoscaler, before: Record | None, git_replicas: int, usages: Iterable[Usage], now: float) -> Record:
    """One round for `spec`: the new record from the last one (None: Git's replicas is the starting point), the
    target pods' usage and the time. Without a measured pod, the replicas stay (clamped), as in Kubernetes. Each
    change of the replicas is a scale event the rate policies count (a clamp into new bounds too)."""
    current = clamp(spec, before.desired if before is not None else git_replicas)
    events = tuple(e for e in (before.events if before is not None else ()) if e[0] > now - longest_period(spec))
    if before is not None and current != before.desired:
        events += ((now, current - before.desired),)
    measured = list(usages)
    readings = []
    for metric in spec.metrics:
        found = utilization(measured, metric.resource)
        if found is not None:
            readings.append(Reading(metric.resource, found[0], metric.average_utilization, found[1]))
    history = before.recommendations if before is not None else ()
    if not readings:
        return Record(spec.target, current, history, (), now, events)
    proposal = clamp(spec, max(recommend(current, r) for r in readings))
    wanted = clamp(spec, stabilised(history, proposal, current, now, spec.scale_up_window, spec.scale_down_window))
    desired = rate_limited(spec, events, wanted, current, now)
    keep = max(spec.scale_up_window, spec.scale_down_window)
    kept = tuple((at, n) for at, n in history if at > now - keep) + ((now, proposal),)
    if desired != current:
        events += ((now, desired - current),)
    return Record(spec.target, desired, kept, tuple(readings), now, events, wanted if wanted != desired else None)


def scaled(revision: Revision, raw: Mapping[str, Any] | None) -> Revision:
    """`revision` with each autoscaled workload's replicas as its autoscaler recorded them (`raw`: the store's
    STORE_KEY value), clamped to the autoscaler's bounds; Git's replicas (clamped) where nothing is recorded yet.
    The revision stays the same revision: same id, digest and template hashes (replicas is not in the hash)."""
    found = records(raw)
    wanted = {a.target: a for a in revision.objects if isinstance(a, Autoscaler)}
    if not wanted:
        return revision

    def one(rev: Revision) -> Revision:
        objects = tuple(_scaled(o, wanted, found) if isinstance(o, Workload) else o for o in rev.objects)
        return replace(rev, objects=objects)

    return replace(one(revision), variants={name: one(v) for name, v in revision.variants.items()})


def _scaled(w: Workload, wanted: Mapping[ObjectRef, Autoscaler], found: Mapping[str, Record]) -> Workload:
    spec = wanted.get(w.ref)
    if spec is None:
        return w
    record = found.get(str(spec.ref))
    replicas = record.desired if record is not None and record.target == w.ref else w.replicas
    return replace(w, replicas=clamp(spec, replicas))


def targets(revision: Revision) -> list[tuple[Autoscaler, Workload]]:
    """Each autoscaler of `revision` with its target workload (the manifests' checks guarantee it is there)."""
    workloads = {o.ref: o for o in revision.objects if isinstance(o, Workload)}
    return [(a, workloads[a.target]) for a in revision.objects
            if isinstance(a, Autoscaler) and a.target in workloads]


def shown(record: Record | None, spec: Autoscaler, current: int) -> str:
    """One line for `status`: current/desired replicas (bounds), each metric against its target, and the
    replicas a rate policy holds back from when one does."""
    desired = record.desired if record is not None else clamp(spec, current)
    metrics = ", ".join(f"{r.resource} {r.utilization}%/{r.target}%" for r in record.readings) \
        if record is not None and record.readings else \
        ", ".join(f"{m.resource} -/{m.average_utilization}%" for m in spec.metrics)
    held = ""
    if record is not None and record.held is not None:
        way = "scaleUp" if record.held > record.desired else "scaleDown"
        held = f"; {record.held} wanted, held at {record.desired} by the {way} rate policies"
    return (f"{spec.ref.name} -> {spec.target.kind}/{spec.target.name}: {current}/{desired} replicas "
            f"(min {spec.min_replicas}, max {spec.max_replicas}); {metrics}{held}")


APPLIED_KEY = "autoscaled"  # the state-store key of the replicas the last good pass ran, by workload ref


def applied(revision: Revision) -> dict[str, int]:
    """The autoscaled workloads' replicas in `revision` (as `scaled` gave them): what a good pass ran."""
    return {str(w.ref): w.replicas for _, w in targets(revision)}


def moves(revision: Revision, before: Mapping[str, int] | None, node: NodeConfig, nodes: tuple[NodeConfig, ...]
          ) -> int:
    """The pods node `node` gains or loses because an autoscaler changed its target's replicas since the last good
    pass (`before`: `applied` then): actions of a pass that are scaling, not drift repair."""
    count = 0
    for _, w in targets(revision):
        was = (before or {}).get(str(w.ref))
        if was is not None and was != w.replicas:
            count += abs(replicas_on(w, node, nodes) - replicas_on(replace(w, replicas=was), node, nodes))
    return count
