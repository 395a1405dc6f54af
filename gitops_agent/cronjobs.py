"""CronJobs (batch/v1) on a node: the PURE decision of when a run is made, from the last scheduled time, the
clock and `startingDeadlineSeconds`, as Kubernetes' CronJob controller makes it.

Sits beside `jobs` (each run is a Job of the CronJob's template: `jobs.next_runs` starts and retries its pods)
and under `plan` (`runs` -> RunPod / RemovePod) and `fleet` (which persists `advance`'s `jobs.Book` before it
plans). The cron expression is read by `windows` (croniter's one owner), in the CronJob's `timeZone`.

Kubernetes' rules kept here (pkg/controller/cronjob):
- the due time is the most recent scheduled time after the last one a run was made for (or after the CronJob
  was first seen) and not after now; with `startingDeadlineSeconds`, nothing older than now minus it: runs
  missed while the agent was down give at most one catch-up run, and none once past the deadline;
- more than 100 missed times: Kubernetes' warning ("too many missed start times: N. Set or decrease
  .spec.startingDeadlineSeconds or check clock skew"), and the most recent one still runs;
- Forbid: a due run is not made while a run is active (the time stays due: once the active run ends, it runs if
  still within startingDeadlineSeconds); Replace: the active runs go (their pods removed), then the new run;
- `suspend`: no new run (active ones go on); the last `successfulJobsHistoryLimit` complete and
  `failedJobsHistoryLimit` failed runs are kept, older finished runs go with their pods.
No Podman, no clock: `now` is wall seconds given by the caller; tested from literals (tests/test_cronjobs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from . import windows
from .desired import RUN_PLACEHOLDER, PodSpec, WorkloadSpec, pod_uid
from .jobs import COMPLETE, FAILED, L_RUN, Book, RunRecord, settle
from .live import LivePod
from .model import CronSchedule

MAX_MISSED = 100  # Kubernetes' limit before its TooManyMissedTimes warning


@dataclass(frozen=True)
class Due:
    """The most recent unmet scheduled time (None: none yet), how many were missed, and the next one."""

    time: float | None
    missed: int
    next: float


def _next(cron: CronSchedule, after: float) -> float:
    moment = datetime.fromtimestamp(after, timezone.utc)
    return windows.cron_next(cron.schedule, cron.time_zone, moment).timestamp()


def due(cron: CronSchedule, since: float, last: float, now: float) -> Due:
    """Kubernetes' `mostRecentScheduleTime`: the latest scheduled time in (earliest, now], where earliest is the
    last scheduled time (or `since`), raised to now - startingDeadlineSeconds when that is later."""
    earliest = last or since
    if cron.starting_deadline_seconds is not None:
        earliest = max(earliest, now - cron.starting_deadline_seconds)
    t1 = _next(cron, earliest)
    if t1 > now:
        return Due(None, 0, t1)
    t, recent, missed = t1, t1, 0
    while t <= now and missed <= MAX_MISSED:
        recent, missed, t = t, missed + 1, _next(cron, t)
    if t <= now:  # more than 100: Kubernetes' estimate of the count, and the most recent time from close by
        interval = _next(cron, t1) - t1
        missed = int((now - t1) // interval) + 1
        t = _next(cron, max(t1, now - 2 * interval))
        while t <= now:
            recent, t = t, _next(cron, t)
    return Due(recent, missed, t)


def run_id(scheduled: float) -> str:
    """A run's id: its scheduled time in minutes since the epoch, as Kubernetes names a CronJob's Jobs."""
    return str(int(scheduled // 60))


def run_pods(w: WorkloadSpec, run: str) -> tuple[PodSpec, ...]:
    """The attempts of run `run`: the CronJob's compiled pods (named for RUN_PLACEHOLDER) renamed for it, with
    their containers, emptyDir volumes and `metadata.name` / `metadata.uid` variables, and labelled with the run."""
    def pod(p: PodSpec) -> PodSpec:
        old, new = p.name, p.name.replace(RUN_PLACEHOLDER, run)
        ns, thash = p.owner.namespace, p.template_hash
        renamed = {old: new, pod_uid(ns, old, thash): pod_uid(ns, new, thash)}

        def named(text: str) -> str:
            return new + text[len(old):] if text.startswith(old) else text

        spec = p.map_containers(lambda c: replace(
            c, name=named(c.name), volumes=tuple(replace(b, volume=named(b.volume)) for b in c.volumes),
            env={k: renamed.get(v, v) for k, v in c.env.items()}, labels={**c.labels, L_RUN: run}))
        return replace(spec, name=new, labels={**p.labels, L_RUN: run},
                       empty_dirs=tuple(replace(d, name=named(d.name)) for d in p.empty_dirs))

    return tuple(pod(p) for p in w.pods)


def pods_of_run(pods: Sequence[LivePod], run: str) -> list[LivePod]:
    return [p for p in pods if p.labels.get(L_RUN) == run]


def _start(cron: CronSchedule, book: Book, active: list[RunRecord], now: float) -> Book:
    """The run due now, if Kubernetes would make it: `book` with it (and without the runs it replaces)."""
    if cron.suspend:
        return replace(book, note="suspended: no new run")
    when = due(cron, book.since, book.last, now)
    warning = (f"too many missed start times: {when.missed}. Set or decrease .spec.startingDeadlineSeconds or "
               "check clock skew") if when.missed > MAX_MISSED else ""
    if when.time is None or when.time == book.last:
        return book
    shown = datetime.fromtimestamp(when.time, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")
    deadline = cron.starting_deadline_seconds
    if deadline is not None and when.time + deadline < now:
        return replace(book, note=f"Missed scheduled time to start a job: {shown}")
    if cron.concurrency_policy == "Forbid" and active:
        return replace(book, note=f"skipped the run of {shown}: run {active[0].run} is still active "
                                  "(concurrencyPolicy Forbid)")
    kept = [r for r in book.runs if r.phase or cron.concurrency_policy != "Replace"]
    return replace(book, runs=(*kept, RunRecord(run_id(when.time), scheduled=when.time)), last=when.time,
                   note=warning)


def _trim(cron: CronSchedule, runs: Sequence[RunRecord]) -> tuple[RunRecord, ...]:
    """The active runs and the newest finished ones within the history limits, in scheduled order."""
    done = sorted((r for r in runs if r.phase), key=lambda r: r.scheduled, reverse=True)
    keep = {r.run for r in [r for r in done if r.phase == COMPLETE][:cron.successful_jobs_history_limit]}
    keep |= {r.run for r in [r for r in done if r.phase == FAILED][:cron.failed_jobs_history_limit]}
    return tuple(sorted((r for r in runs if not r.phase or r.run in keep), key=lambda r: r.scheduled))


def advance(w: WorkloadSpec, pods: Sequence[LivePod], book: Book | None, now: float) -> Book:
    """The CronJob's book at `now`: its runs settled from their pods, the due run made (or why not, in `note`),
    finished runs beyond the history limits dropped (`plan` removes the pods of runs not in the book)."""
    assert w.cron is not None
    book = book or Book(since=now)
    runs = tuple(settle(w, pods_of_run(pods, r.run), r, now) for r in book.runs)
    book = _start(w.cron, replace(book, runs=runs), [r for r in runs if not r.phase], now)
    return replace(book, runs=_trim(w.cron, book.runs))


def wake_time(w: WorkloadSpec, book: Book, now: float) -> float | None:
    """The next scheduled time after `now` (None when suspended)."""
    if w.cron is None or w.cron.suspend:
        return None
    return _next(w.cron, max(now, book.last))
