"""The HorizontalPodAutoscalers' daemon job: measures the targets' pods and records their replicas for the pass.

Runs beside the pass like `liveness.Monitor`: `Scaler.tick` is called every `autoscaling.metricPeriod` seconds
(config; Kubernetes' `--horizontal-pod-autoscaler-sync-period` is 15 s). Each round reads every node's managed
pods and Podman's stats of the running containers of each autoscaler's target (one call per node), turns two
readings of a container's CPU time into millicores, lets `hpa.decide` (pure) choose the replicas, and records the
result in the state store (`hpa.STORE_KEY`: it survives a restart). When a target's replicas change it wakes a
pass, which runs them (`hpa.scaled`, read in `Agent.revision`): the pass still does all the writes.

The revision it works from is handed in after each pass (`use`: the applied revision); a node that does not answer
is skipped for the round (the pass reports it). Must not create or remove pods itself, and must not read a
container that is not managed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from . import hpa
from .errors import AgentError, NodeError
from .log import Log
from .model import ObjectRef, Revision, Workload

if TYPE_CHECKING:
    from .history import History
    from .live import LivePod


class StatsNode(Protocol):
    """What the job needs of a node (`podman.Node`)."""

    name: str

    def read_pods(self) -> dict[str, LivePod]: ...

    def container_stats(self, containers: list[str]) -> dict[str, tuple[int, int, int]]: ...


class Scaler:
    """Measures the autoscaled workloads' pods and records each autoscaler's decision (`hpa.Record`)."""

    RETRY = 5.0  # seconds: a recorded change no good pass has run yet wakes a pass again (a wake can be missed)

    def __init__(self, nodes: Mapping[str, StatsNode], history: History, log: Log, wake: Callable[[], None],
                 clock: Callable[[], float] = time.time) -> None:
        self._nodes, self._history, self._log, self._wake, self._clock = nodes, history, log, wake, clock
        self._revision: Revision | None = None
        self._last: dict[str, tuple[int, int]] = {}  # container ID -> (CPU ns, node clock ns) of its last reading
        self._down: set[str] = set()  # nodes whose last read failed (logged once)
        self._woken = 0.0  # when this job last woke a pass

    def use(self, revision: Revision | None) -> None:
        """The revision the nodes run now (after each pass)."""
        self._revision = revision

    def tick(self) -> None:
        """One round: measure, decide, record; wake a pass when a target's replicas changed."""
        revision = self._revision
        targets = hpa.targets(revision) if revision is not None else []
        if not targets:
            self._last.clear()
            return
        usages = self._measure({w.ref: w for _, w in targets})
        before = hpa.records(self._history.get(hpa.STORE_KEY))
        now = self._clock()
        after = {str(spec.ref): hpa.decide(spec, before.get(str(spec.ref)), w.replicas, usages.get(w.ref, []), now)
                 for spec, w in targets}
        try:
            self._history.put(hpa.STORE_KEY, {key: record.to_json() for key, record in after.items()})
        except AgentError as e:  # the store refuses writes (disk full): the pass reports it; try again next round
            self._log("autoscaler.unrecorded", level="error", error=str(e))
            return
        changed = [(spec, after[str(spec.ref)]) for spec, w in targets
                   if after[str(spec.ref)].desired != _replicas(before.get(str(spec.ref)), w)]
        for spec, record in changed:
            held = {} if record.held is None else {"wanted": record.held}  # a rate policy paces the step
            self._log("autoscaler.scaled", autoscaler=str(spec.ref), target=str(spec.target),
                      replicas=record.desired, metrics=_metrics(record), **held)
        ran = self._history.get(hpa.APPLIED_KEY) or {}
        pending = any(after[str(spec.ref)].desired != ran.get(str(w.ref), w.replicas) for spec, w in targets)
        if changed or (pending and now - self._woken >= self.RETRY):
            self._woken = now
            self._wake()

    def _measure(self, workloads: Mapping[ObjectRef, Workload]) -> dict[ObjectRef, list[hpa.Usage]]:
        """Each target's pods that have two readings of every running container, over every node."""
        usages: dict[ObjectRef, list[hpa.Usage]] = {}
        seen: set[str] = set()
        for node in self._nodes.values():
            try:
                pods = [p for p in node.read_pods().values() if p.owner in workloads and p.status == "Running"]
                ids = [c.id for p in pods for c in p.containers if c.running]
                stats = node.container_stats(ids)
            except NodeError as e:
                if node.name not in self._down:
                    self._down.add(node.name)
                    self._log("autoscaler.unavailable", level="warning", node=node.name, error=e.reason)
                continue
            self._down.discard(node.name)
            seen.update(stats)
            for pod in pods:
                owner = pod.owner
                assert owner is not None
                usage = self._usage(pod, workloads[owner], stats)
                if usage is not None:
                    usages.setdefault(owner, []).append(usage)
        self._last = {cid: last for cid, last in self._last.items() if cid in seen}
        return usages

    def _usage(self, pod: LivePod, workload: Workload, stats: Mapping[str, tuple[int, int, int]]
               ) -> hpa.Usage | None:
        """The pod's use since its last reading; None when a container has no earlier reading (just started)."""
        cpu, memory, complete = 0.0, 0, True
        for c in pod.containers:
            if c.id not in stats:
                complete = False
                continue
            used, at, rss = stats[c.id]
            last = self._last.get(c.id)
            self._last[c.id] = (used, at)
            if last is None or at <= last[1] or used < last[0]:
                complete = False
                continue
            cpu += (used - last[0]) / (at - last[1]) * 1000
            memory += rss
        if not complete or not pod.containers:
            return None
        limits = [c.resources for c in workload.template.containers]
        return hpa.Usage(pod.name, cpu, memory, sum(r.cpu_millis or 0 for r in limits),
                         sum(r.memory_bytes or 0 for r in limits))


def _replicas(record: hpa.Record | None, workload: Workload) -> int:
    """The replicas the pass runs now: the record's, else the revision's (Git's, clamped by `hpa.scaled`)."""
    return record.desired if record is not None else workload.replicas


def _metrics(record: hpa.Record) -> str:
    return ", ".join(f"{r.resource} {r.utilization}%/{r.target}% over {r.pods} pod(s)" for r in record.readings)

