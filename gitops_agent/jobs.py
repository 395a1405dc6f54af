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
An Indexed Job (`completionMode: Indexed`) has pod names per index (`desired.with_index`): each index runs until
one of its pods succeeds, retried until backoffLimit (all indexes together) or backoffLimitPerIndex (a failed
index; more than maxFailedIndexes of them fail the Job). A failed pod meets the first podFailurePolicy rule
that matches its exit codes: FailJob (Failed, PodFailurePolicy), FailIndex, Ignore (not counted: the pod is
removed and run again) or Count; a successPolicy rule met completes the run (SuccessCriteriaMet). A run that ends
so, or past its deadline, has its active pods removed.

No Podman, no clock: `now` (wall seconds) is given; tested from literals (tests/test_jobs.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .desired import JOB_INDEX, L_CONTAINER, L_SIDECAR, LABEL_PREFIX, PodSpec, WorkloadSpec
from .live import LiveContainer, LivePod
from .model import ObjectRef

L_RUN = f"{LABEL_PREFIX}.job-run"  # on a CronJob run's pods: the run's id (its scheduled time in minutes)
COMPLETE, FAILED = "Complete", "Failed"
BACKOFF, DEADLINE = "BackoffLimitExceeded", "DeadlineExceeded"
POLICY, MAX_FAILED, FAILED_INDEXES = "PodFailurePolicy", "MaxFailedIndexesExceeded", "FailedIndexes"
SUCCESS_MET = "SuccessCriteriaMet"  # a Complete run's reason when a successPolicy rule was met
STOPS = (DEADLINE, POLICY, MAX_FAILED, SUCCESS_MET)  # a run that ends so has its active pods removed


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
    completed_indexes: str = ""  # an Indexed Job's, as Kubernetes writes them: "0-2,4"
    failed_indexes: str = ""

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
    reason: str = ""  # BackoffLimitExceeded | DeadlineExceeded | PodFailurePolicy | ... when Failed
    recorded: str = ""  # the phase its record keeps ("" while it runs)
    decided: str = ""  # the phase its policies decided (`verdict`), "" while they decide nothing
    completed_indexes: str = ""  # an Indexed Job's succeeded indexes ("0-2,4"), and its failed ones
    failed_indexes: str = ""

    @property
    def phase(self) -> str:
        """Complete, Failed (more than backoffLimit pods failed, or past its deadline), Running or Pending."""
        if self.recorded or self.decided:
            return self.recorded or self.decided
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


def index_of(pod: LivePod | PodSpec) -> int:
    """An Indexed Job's pod's index (its batch.kubernetes.io/job-completion-index label); -1 for other pods."""
    value = pod.labels.get(JOB_INDEX, "")
    return int(value) if value.isdigit() else -1


def index_ranges(indexes: Iterable[int]) -> str:
    """PURE: indexes as Kubernetes' completedIndexes writes them: [0, 1, 2, 4] -> "0-2,4"."""
    parts: list[list[int]] = []
    for i in sorted(set(indexes)):
        if parts and parts[-1][1] == i - 1:
            parts[-1][1] = i
        else:
            parts.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def failure_action(w: WorkloadSpec, pod: LivePod) -> str:
    """The action of the first podFailurePolicy rule the failed `pod` meets (Count if none): an onExitCodes rule
    is met by a container (the rule's `containerName`, else any) that exited non-zero In (NotIn) its values."""
    for rule in w.job.pod_failure_rules:
        codes = rule.exit_codes
        if codes is None:  # onPodConditions: no pod condition is ever set on a node here
            continue
        for c in app_containers(pod):  # a sidecar's exit code (SIGTERM when stopped) never meets a rule
            if codes.container is not None and c.labels.get(L_CONTAINER, c.name) != codes.container:
                continue
            if c.exit_code and (c.exit_code in codes.values) == (codes.operator == "In"):
                return rule.action
    return "Count"


@dataclass(frozen=True)
class Tally:
    """A run's finished pods as its policies read them."""

    succeeded: int  # pods exited 0 (Indexed: indexes with one)
    counted: tuple[LivePod, ...]  # the failed pods that count (no Ignore rule met)
    ignored: tuple[str, ...]  # the failed pods an Ignore rule met: removed, their names run again
    completed: frozenset[int] = frozenset()  # Indexed: the indexes that succeeded, and those that failed
    lost: frozenset[int] = frozenset()
    fail_job: bool = False  # a counted pod met a FailJob rule


def tally(w: WorkloadSpec, own: Sequence[LivePod]) -> Tally:
    """The run's `own` pods counted: successes, failures by podFailurePolicy, an Indexed Job's indexes."""
    failed = [p for p in own if finished(p) and not succeeded(p)]
    actions = {p.name: failure_action(w, p) for p in failed}
    counted = tuple(p for p in failed if actions[p.name] != "Ignore")
    ignored = tuple(p.name for p in failed if actions[p.name] == "Ignore")
    fail_job = any(actions[p.name] == "FailJob" for p in counted)
    if not w.job.indexed:
        return Tally(sum(succeeded(p) for p in own), counted, ignored, fail_job=fail_job)
    done = frozenset(index_of(p) for p in own if succeeded(p))
    fails = Counter(index_of(p) for p in counted)
    limit = w.job.backoff_limit_per_index
    lost = frozenset(index_of(p) for p in counted if index_of(p) not in done and (
        actions[p.name] == "FailIndex" or (limit is not None and fails[index_of(p)] > limit)))
    return Tally(len(done), counted, ignored, done, lost, fail_job)


def verdict(w: WorkloadSpec, t: Tally) -> tuple[str, str]:
    """(phase, reason) the run's policies decide from `t`, ("", "") while it goes on: a FailJob rule met, a
    successPolicy rule met, more failed indexes than maxFailedIndexes, every index done, too many failures."""
    if t.fail_job:
        return FAILED, POLICY
    for rule in w.job.success_rules:
        counted = t.completed if rule.indexes is None else t.completed & rule.indexes
        if len(counted) >= (rule.count if rule.count is not None else len(rule.indexes or ())):
            return COMPLETE, SUCCESS_MET
    if w.job.max_failed_indexes is not None and len(t.lost) > w.job.max_failed_indexes:
        return FAILED, MAX_FAILED
    if t.succeeded + len(t.lost) >= w.completions:
        return (FAILED, FAILED_INDEXES) if t.lost else (COMPLETE, "")
    if len(t.counted) > backoff_limit(w):
        return FAILED, BACKOFF
    return "", ""


def backoff_limit(w: WorkloadSpec) -> int:
    """Failures the run may have: a NonIndexed Job's are its attempts beyond completions."""
    return w.backoff_limit if w.job.indexed else len(w.pods) - w.completions


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
        return JobRun(record.succeeded, record.failed, 0, w.completions, backoff_limit(w),
                      record.exit_codes, record.reason, record.phase, completed_indexes=record.completed_indexes,
                      failed_indexes=record.failed_indexes)
    t = tally(w, own)
    decided, why = verdict(w, t)
    active = sum(not finished(p) for p in own)
    start = started(own, record)
    late = bool(w.active_deadline and start and active and now - start >= w.active_deadline and not decided)
    reason = record.reason if record is not None and record.phase else DEADLINE if late else why
    run = JobRun(
        succeeded=t.succeeded, failed=len(t.counted), active=active,
        completions=w.completions, backoff_limit=backoff_limit(w),
        exit_codes=tuple(next(c.exit_code for c in app_containers(p) if c.exit_code) for p in t.counted
                         if any(c.exit_code for c in app_containers(p))),
        reason=reason, recorded=record.phase if record is not None else "", decided=decided,
        completed_indexes=index_ranges(t.completed), failed_indexes=index_ranges(t.lost),
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
    return replace(record, phase=run.phase, reason=run.reason if run.phase == FAILED or run.reason == SUCCESS_MET
                   else "", finished=now, succeeded=run.succeeded, failed=run.failed, exit_codes=run.exit_codes,
                   completed_indexes=run.completed_indexes, failed_indexes=run.failed_indexes)


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
    every pod of a run finished `ttlSecondsAfterFinished` ago. An Indexed Job: the next unused attempt of each
    index neither done nor running, lowest first. A failed pod an Ignore rule met: removed (its name runs again)."""
    run = job_run(w, pods, record, now)
    own = own_pods(w, pods)
    stale = sorted(p.name for p in pods if p not in own)
    if run.phase in (COMPLETE, FAILED):
        if expired(w, record, now):
            return (), tuple(sorted(stale + [p.name for p in own]))
        late = [p.name for p in own if not finished(p)] if run.reason in STOPS else []
        return (), tuple(sorted(stale + late))
    t = tally(w, own)
    used = {p.name for p in pods}
    gone = tuple(sorted(stale + list(t.ignored)))
    if w.job.indexed:
        busy = {index_of(p) for p in own if not finished(p)}
        return _index_starts(w, t.completed | t.lost | busy, used, w.parallelism - run.active), gone
    free = [spec for spec in w.pods if spec.name not in used]
    count = min(w.parallelism - run.active, w.completions - run.succeeded - run.active)
    return tuple(free[: max(0, count)]), gone


def _index_starts(w: WorkloadSpec, resolved: set[int] | frozenset[int], used: set[str],
                  room: int) -> tuple[PodSpec, ...]:
    """Up to `room` attempts: the first unused one of each index not `resolved` (done, failed or running)."""
    starts: list[PodSpec] = []
    taken = set(resolved)
    for spec in w.pods:
        if len(starts) >= room:
            break
        if index_of(spec) not in taken and spec.name not in used:
            starts.append(spec)
            taken.add(index_of(spec))
    return tuple(starts)


def wake_times(w: WorkloadSpec, pods: Sequence[LivePod], book: Book) -> list[float]:
    """When a run of `w` needs a pass without anything else changing: its deadline, its pods' expiry."""
    times: list[float] = []
    for r in book.runs:
        if not r.phase and w.active_deadline and r.started:
            times.append(r.started + w.active_deadline)
        elif r.phase and w.ttl is not None and pods:
            times.append(r.finished + w.ttl)
    return times
