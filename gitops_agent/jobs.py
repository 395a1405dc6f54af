"""Jobs (batch/v1) on a node: the PURE decision of a Job's next runs from its live pods and its record, and its
result.

Sits under `plan` (which turns `next_runs` into RunPod and RemovePod actions) and over `desired` (a Job's
WorkloadSpec holds one PodSpec per attempt it may make: completions + backoffLimit of them) and `live`. The live
pods of the Job's current template show its run: exited 0 (succeeded), exited otherwise (failed), else active.
Once the run is finished (Complete, or Failed: more than backoffLimit failures, BackoffLimitExceeded, or still
active `activeDeadlineSeconds` after its first pod started, DeadlineExceeded) `settle` makes it a `RunRecord`,
which the state store keeps (`fleet` writes it, with the last output lines of the failed pods): so a finished
Job is not run again on later passes, also once `ttlSecondsAfterFinished` has removed its pods. A changed
template (a new template hash) is a new run. A CronJob's runs (`cronjobs`) are Jobs decided here too.

No Podman, no clock: `now` (wall seconds) is given; tested from literals (tests/test_jobs.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .desired import L_SIDECAR, LABEL_PREFIX, PodSpec, WorkloadSpec
from .live import LiveContainer, LivePod
from .model import ObjectRef

L_RUN = f"{LABEL_PREFIX}.job-run"  # on a CronJob run's pods: the run's id (its scheduled time in minutes)
COMPLETE, FAILED = "Complete", "Failed"
BACKOFF, DEADLINE = "BackoffLimitExceeded", "DeadlineExceeded"


@dataclass(frozen=True)
class RunRecord:
    """A run as the state store keeps it: a Job's (`run` is its template hash) or a CronJob's (its id)."""

    run: str
    scheduled: float = 0.0  # a CronJob run's scheduled time (wall seconds)
    started: float = 0.0  # its first pod's start, once one started
    phase: str = ""  # "" while it runs; Complete | Failed
    reason: str = ""  # of a Failed run: BackoffLimitExceeded | DeadlineExceeded
    finished: float = 0.0
    succeeded: int = 0
    failed: int = 0
    exit_codes: tuple[int, ...] = ()
    output: str = ""  # the last lines of its failed pods, Secret values redacted (written by `fleet`)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0, 0.0, ())}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "RunRecord":
        return cls(**{**raw, "exit_codes": tuple(raw.get("exit_codes", ()))})


@dataclass(frozen=True)
class Book:
    """What the state store keeps of one Job or CronJob on one node (`fleet` reads and writes it)."""

    runs: tuple[RunRecord, ...] = ()
    since: float = 0.0  # a CronJob: when the agent first saw it (Kubernetes' creationTimestamp: no run before)
    last: float = 0.0  # a CronJob: the last scheduled time a run was made for (Kubernetes' lastScheduleTime)
    note: str = ""  # a CronJob: why its last due run was not made (missed deadline, Forbid, too many missed)

    def to_json(self) -> dict[str, Any]:
        return {"runs": [r.to_json() for r in self.runs], "since": self.since, "last": self.last, "note": self.note}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Book":
        return cls(tuple(RunRecord.from_json(r) for r in raw.get("runs", ())), raw.get("since", 0.0),
                   raw.get("last", 0.0), raw.get("note", ""))

    def run(self, run: str) -> RunRecord | None:
        return next((r for r in self.runs if r.run == run), None)


@dataclass(frozen=True)
class Batch:
    """`plan`'s input for Jobs and CronJobs: the wall clock and the store's books, by owner."""

    now: float = 0.0
    books: Mapping[ObjectRef, Book] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRun:
    """A Job's run on a node, as its pods (and, once finished, its record) show it."""

    succeeded: int
    failed: int
    active: int
    completions: int
    backoff_limit: int
    exit_codes: tuple[int, ...] = ()  # of the failed pods' first failed container, in pod-name order
    reason: str = ""  # BackoffLimitExceeded | DeadlineExceeded when Failed
    recorded: str = ""  # the phase its record keeps ("" while it runs)

    @property
    def phase(self) -> str:
        """Complete, Failed (more than backoffLimit pods failed, or past its deadline), Running or Pending."""
        if self.recorded:
            return self.recorded
        if self.succeeded >= self.completions:
            return COMPLETE
        if self.failed > self.backoff_limit or self.reason == DEADLINE:
            return FAILED
        return "Running" if self.active else "Pending"


def app_containers(pod: LivePod) -> list[LiveContainer]:
    """The pod's containers but its sidecars: they alone say whether the pod finished and how (Kubernetes)."""
    return [c for c in pod.containers if L_SIDECAR not in c.labels]


def finished(pod: LivePod) -> bool:
    apps = app_containers(pod)
    return bool(apps) and all(c.state in ("exited", "stopped") for c in apps)


def succeeded(pod: LivePod) -> bool:
    return finished(pod) and all(c.exit_code == 0 for c in app_containers(pod))


def sidecars_running(pod: LivePod) -> bool:
    return any(c.running for c in pod.containers if L_SIDECAR in c.labels)


def own_pods(w: WorkloadSpec, pods: Sequence[LivePod]) -> list[LivePod]:
    """The pods of the run `w` describes: a Job's current template, or (a CronJob run) all of them."""
    return sorted((p for p in pods if w.cron is not None or p.template_hash == w.template_hash),
                  key=lambda p: p.name)


def started(pods: Sequence[LivePod], record: RunRecord | None = None) -> float:
    """When the run started: its record's time, else its pods' earliest container start (0: not yet)."""
    starts = [c.started_at for p in pods for c in p.containers if c.started_at]
    return (record.started if record and record.started else 0.0) or float(min(starts, default=0))


def job_run(w: WorkloadSpec, pods: Sequence[LivePod], record: RunRecord | None = None, now: float = 0.0) -> JobRun:
    """The run of `w` from its live `pods` (the Job's, any template) and its `record`, at wall time `now`."""
    own = own_pods(w, pods)
    if record is not None and record.phase and not own:  # its pods are gone (ttlSecondsAfterFinished, history)
        return JobRun(record.succeeded, record.failed, 0, w.completions, len(w.pods) - w.completions,
                      record.exit_codes, record.reason, record.phase)
    failed = [p for p in own if finished(p) and not succeeded(p)]
    active = sum(not finished(p) for p in own)
    start = started(own, record)
    late = bool(w.active_deadline and start and active and now - start >= w.active_deadline)
    reason = record.reason if record is not None and record.phase else DEADLINE if late else ""
    run = JobRun(
        succeeded=sum(succeeded(p) for p in own), failed=len(failed), active=active,
        completions=w.completions, backoff_limit=len(w.pods) - w.completions,
        exit_codes=tuple(next(c.exit_code for c in app_containers(p) if c.exit_code) for p in failed
                         if any(c.exit_code for c in app_containers(p))),
        reason=reason, recorded=record.phase if record is not None else "",
    )
    return run if run.phase != FAILED or run.reason else replace(run, reason=BACKOFF)


def settle(w: WorkloadSpec, pods: Sequence[LivePod], record: RunRecord, now: float) -> RunRecord:
    """`record` brought up to date with the run's pods at `now`: its start once a pod started, and, the first
    time the run is seen finished, its phase, reason, counts and exit codes (the output is `fleet`'s to add)."""
    own = own_pods(w, pods)
    record = replace(record, started=record.started or started(own))
    if record.phase:
        return record
    run = job_run(w, pods, record, now)
    if run.phase not in (COMPLETE, FAILED):
        return record
    return replace(record, phase=run.phase, reason=run.reason if run.phase == FAILED else "", finished=now,
                   succeeded=run.succeeded, failed=run.failed, exit_codes=run.exit_codes)


def job_book(w: WorkloadSpec, pods: Sequence[LivePod], book: Book | None, now: float) -> Book:
    """A Job's book at `now`: the record of its current template's run (another template's is dropped: a
    changed Job is a new run), settled; none while nothing of it runs or ran."""
    record = (book.run(w.template_hash) if book else None) or RunRecord(w.template_hash)
    if not own_pods(w, pods) and not record.phase:
        return Book()
    return Book((settle(w, pods, record, now),))


def expired(w: WorkloadSpec, record: RunRecord | None, now: float) -> bool:
    """The finished run's pods are due for removal (ttlSecondsAfterFinished)."""
    return bool(record and record.phase and w.ttl is not None and now >= record.finished + w.ttl)


def next_runs(w: WorkloadSpec, pods: Sequence[LivePod], record: RunRecord | None = None,
              now: float = 0.0) -> tuple[tuple[PodSpec, ...], tuple[str, ...]]:
    """(attempts to start now, pods to remove): the next unused attempts while the run is neither complete nor
    failed, never more than `parallelism` active nor more than the completions still missing; the pods of an
    older template (a Job's: the changed Job is a new run); a run past its deadline: its active pods; and
    every pod of a run finished `ttlSecondsAfterFinished` ago."""
    run = job_run(w, pods, record, now)
    own = own_pods(w, pods)
    stale = sorted(p.name for p in pods if p not in own)
    if run.phase in (COMPLETE, FAILED):
        if expired(w, record, now):
            return (), tuple(sorted(stale + [p.name for p in own]))
        late = [p.name for p in own if not finished(p)] if run.reason == DEADLINE else []
        return (), tuple(sorted(stale + late))
    used = {p.name for p in pods}
    free = [spec for spec in w.pods if spec.name not in used]
    count = min(w.parallelism - run.active, w.completions - run.succeeded - run.active)
    return tuple(free[: max(0, count)]), tuple(stale)


def wake_times(w: WorkloadSpec, pods: Sequence[LivePod], book: Book) -> list[float]:
    """When a run of `w` needs a pass without anything else changing: its deadline, its pods' expiry."""
    times: list[float] = []
    for r in book.runs:
        if not r.phase and w.active_deadline and r.started:
            times.append(r.started + w.active_deadline)
        elif r.phase and w.ttl is not None and pods:
            times.append(r.finished + w.ttl)
    return times
