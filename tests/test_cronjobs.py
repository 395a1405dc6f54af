"""CronJobs from literals, with an injected clock (`now`, wall seconds): when Kubernetes' controller would make a
run (`cronjobs.due`, `cronjobs.advance`), the runs' pods (`cronjobs.run_pods`) and the plan. The real-Podman run
is tests/test_cronjob_e2e.py."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from gitops_agent.config import NodeConfig
from gitops_agent.cronjobs import advance, due, run_id, run_pods
from gitops_agent.desired import L_TEMPLATE_HASH, WorkloadSpec, compile_node, pod_uid
from gitops_agent.errors import RevisionRejected
from gitops_agent.jobs import L_RUN, Batch, Book, RunRecord
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import CronSchedule
from gitops_agent.plan import plan

A = NodeConfig("a")
CRON = textwrap.dedent("""\
    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: backup}
    spec:
      schedule: "*/5 * * * *"
      concurrencyPolicy: Forbid
      jobTemplate:
        spec:
          backoffLimit: 1
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: b
                image: localhost/tool:1
                env:
                  - {name: ME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
                  - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
""")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


T0 = at("2026-12-01T10:00:00")  # a scheduled time of */5


def spec(text: str = CRON) -> WorkloadSpec:
    rev = parse([SourceFile("cron.yaml", text.encode())], "main@sha1:" + "a" * 40, nodes=(A,))
    (w,) = compile_node(rev, A, (A,)).workloads
    return w


def run_pod(w: WorkloadSpec, run: str, state: str = "running", code: int = 0, attempt: int = 0) -> LivePod:
    p = run_pods(w, run)[attempt]
    return LivePod(p.name, "id", "Running", {**p.labels, L_TEMPLATE_HASH: w.template_hash},
                   (LiveContainer(p.containers[0].name, "c", "img", state, "", exit_code=code),))


def test_a_run_is_due_at_each_scheduled_time_after_the_cronjob_was_first_seen() -> None:
    cron = CronSchedule("*/5 * * * *")
    assert due(cron, since=T0 - 10, last=0, now=T0 - 1) == due(cron, T0 - 10, 0, T0 - 1)
    assert due(cron, T0 - 10, 0, T0 - 1).time is None and due(cron, T0 - 10, 0, T0 - 1).next == T0
    assert (due(cron, T0 - 10, 0, T0).time, due(cron, T0 - 10, 0, T0).missed) == (T0, 1)
    assert due(cron, T0 - 10, last=T0, now=T0 + 299).time is None  # that one ran: nothing new before 10:05


def test_runs_missed_while_the_agent_was_down_give_one_catch_up_run_within_the_starting_deadline() -> None:
    """Down for an hour: one run, at the most recent missed time; with startingDeadlineSeconds, only if that
    time is less than that long ago; none once past it."""
    cron = CronSchedule("*/5 * * * *")
    late = due(cron, 0, last=T0, now=T0 + 3600 + 30)
    assert (late.time, late.missed, late.next) == (T0 + 3600, 12, T0 + 3900)
    w = replace(spec(), cron=replace(spec().cron, concurrency_policy="Allow"))  # type: ignore[arg-type]
    book = advance(w, [], Book(since=T0 - 60, last=T0), now=T0 + 3630)
    assert [r.scheduled for r in book.runs] == [T0 + 3600] and book.last == T0 + 3600
    tight = replace(w, cron=replace(w.cron, starting_deadline_seconds=60))  # type: ignore[arg-type]
    assert [r.run for r in advance(tight, [], Book(since=T0, last=T0), now=T0 + 3630).runs] == [run_id(T0 + 3600)]
    missed = advance(tight, [], Book(since=T0, last=T0), now=T0 + 3600 + 61)
    assert missed.runs == () and missed.last == T0  # past its deadline: no run


def test_more_than_100_missed_times_is_kubernetes_warning_and_the_most_recent_still_runs() -> None:
    w = replace(spec(), cron=CronSchedule("* * * * *"))
    book = advance(w, [], Book(since=T0, last=T0), now=T0 + 200 * 60 + 5)
    assert book.note == ("too many missed start times: 200. Set or decrease .spec.startingDeadlineSeconds or check "
                         "clock skew")
    assert [r.scheduled for r in book.runs] == [T0 + 200 * 60]


def test_forbid_skips_a_run_while_one_is_active_and_runs_the_due_time_once_it_ended() -> None:
    w = spec()
    book = advance(w, [], Book(since=T0 - 10), now=T0)
    (first,) = book.runs
    active = [run_pod(w, first.run)]
    later = advance(w, active, book, now=T0 + 300)
    assert [r.run for r in later.runs] == [first.run] and later.last == T0
    assert later.note == (f"skipped the run of Tue, 01 Dec 2026 10:05:00 +0000: run {first.run} is still active "
                          "(concurrencyPolicy Forbid)")
    ended = advance(w, [run_pod(w, first.run, "exited")], later, now=T0 + 320)
    assert [r.run for r in ended.runs] == [first.run, run_id(T0 + 300)]
    assert ended.runs[0].phase == "Complete"
    deadline = replace(w, cron=replace(w.cron, starting_deadline_seconds=10))  # type: ignore[arg-type]
    assert [r.run for r in advance(deadline, [run_pod(w, first.run, "exited")], later, now=T0 + 320).runs] == \
        [first.run]  # with startingDeadlineSeconds 10 the 10:05 run is too late by then


def test_allow_runs_concurrently_and_replace_removes_the_active_run() -> None:
    allow = replace(spec(), cron=replace(spec().cron, concurrency_policy="Allow"))  # type: ignore[arg-type]
    book = advance(allow, [], Book(since=T0 - 10), now=T0)
    active = [run_pod(allow, book.runs[0].run)]
    assert len(advance(allow, active, book, now=T0 + 300).runs) == 2
    repl = replace(allow, cron=replace(allow.cron, concurrency_policy="Replace"))  # type: ignore[arg-type]
    replaced = advance(repl, active, book, now=T0 + 300)
    assert [r.run for r in replaced.runs] == [run_id(T0 + 300)]
    p = plan(compile_node(parse([SourceFile("c.yaml", CRON.replace("Forbid", "Replace").encode())],
                                "main@sha1:" + "a" * 40, nodes=(A,)), A, (A,)),
             LiveState("a", pods={a.name: a for a in active}, networks={"gitops-default": {}}),
             batch=Batch(T0 + 300, {repl.ref: replaced}))
    assert [(a.op, a.target) for a in p.actions] == [("run-pod", f"backup-{run_id(T0 + 300)}-0"),
                                                     ("remove-pod", active[0].name)]
    assert "replaced (concurrencyPolicy Replace)" in p.actions[1].reason


def test_suspend_makes_no_run_and_the_history_limits_keep_the_newest_finished_runs() -> None:
    w = spec()
    suspended = replace(w, cron=replace(w.cron, suspend=True))  # type: ignore[arg-type]
    assert advance(suspended, [], Book(since=T0 - 10), now=T0 + 900).runs == ()
    runs = tuple(RunRecord(run_id(T0 + 300 * i), scheduled=T0 + 300 * i, phase="Complete" if i % 2 else "Failed",
                           finished=T0 + 300 * i + 5) for i in range(8))
    kept = advance(w, [], Book(runs, since=T0 - 10, last=T0 + 2100), now=T0 + 2110)
    assert [r.scheduled for r in kept.runs] == [T0 + 300 * i for i in (3, 5, 6, 7)]  # 3 Complete, 1 Failed


def test_a_time_zone_reads_the_schedule_as_wall_clock_time_there() -> None:
    cron = CronSchedule("0 2 * * *", time_zone="Europe/Berlin")
    assert due(cron, since=at("2026-12-01T00:00:00"), last=0, now=at("2026-12-01T00:30:00")).next == \
        at("2026-12-01T01:00:00")  # 02:00 in Berlin in winter (UTC+1)
    assert due(CronSchedule("@hourly"), since=T0, last=0, now=T0 + 1).next == T0 + 3600


def test_a_run_has_its_own_pod_names_labels_and_metadata_name() -> None:
    w = spec()
    assert [p.name for p in w.pods] == ["backup-{run}-0", "backup-{run}-1"]
    (first, retry) = run_pods(w, "29412345")
    assert (first.name, retry.name) == ("backup-29412345-0", "backup-29412345-1")
    assert first.containers[0].name == "backup-29412345-0_b" and first.containers[0].env["ME"] == first.name
    assert first.containers[0].env["UID"] == pod_uid("default", first.name, w.template_hash)  # each run's own
    assert first.labels[L_RUN] == "29412345" and first.restart_policy == "no"


def test_the_first_run_of_a_plan_is_its_first_attempt_and_finished_runs_not_kept_go() -> None:
    w = spec()
    book = advance(w, [], Book(since=T0 - 10), now=T0)
    old = run_pod(w, "1", "exited")  # a run the book no longer keeps (history limit)
    desired = compile_node(parse([SourceFile("c.yaml", CRON.encode())], "main@sha1:" + "a" * 40, nodes=(A,)), A,
                           (A,))
    p = plan(desired, LiveState("a", pods={old.name: old}, networks={"gitops-default": {}}),
             batch=Batch(T0, {w.ref: book}))
    assert [(a.op, a.target) for a in p.actions] == [("run-pod", f"backup-{run_id(T0)}-0"),
                                                     ("remove-pod", old.name)]
    assert p.actions[0].reason == f"CronJob/default/backup run {run_id(T0)}: attempt 1 of at most 2"


@pytest.mark.parametrize("change, message", [
    ('"*/5 * * * *"', "cron.yaml:5: CronJob/backup: spec.schedule: 'every day' is not a cron schedule (five fields: "
     "minute hour day-of-month month day-of-week, e.g. '0 2 * * *', or @hourly, @daily, @weekly, @monthly, @yearly)"),
])
def test_a_bad_schedule_is_an_error_at_its_line(change: str, message: str) -> None:
    with pytest.raises(RevisionRejected) as e:
        spec(CRON.replace(change, '"every day"'))
    assert [str(p) for p in e.value.problems] == [message]


def test_a_schedule_that_matches_no_date_is_an_error() -> None:
    with pytest.raises(RevisionRejected) as e:
        spec(CRON.replace('"*/5 * * * *"', '"0 0 31 2 *"'))
    assert [str(p) for p in e.value.problems] == [
        "cron.yaml:5: CronJob/backup: spec.schedule: '0 0 31 2 *' matches no date (a day that its months do not "
        "have)"]


def test_a_time_zone_in_the_schedule_or_an_unknown_zone_is_an_error() -> None:
    with pytest.raises(RevisionRejected) as e:
        spec(CRON.replace('"*/5 * * * *"', '"CRON_TZ=UTC */5 * * * *"\n  timeZone: Mars/Olympus'))
    assert [str(p) for p in e.value.problems] == [
        "cron.yaml:5: CronJob/backup: spec.schedule: a time zone in the schedule is not supported (as in "
        "Kubernetes): set spec.timeZone instead",
        "cron.yaml:6: CronJob/backup: spec.timeZone: unknown time zone 'Mars/Olympus' (an IANA name such as "
        "Europe/Berlin or UTC)"]


def test_the_daemon_wakes_for_the_next_run_not_only_at_the_poll_interval() -> None:
    """After a pass, a scheduler job `batch` wakes the daemon when a Job or CronJob next needs a pass
    (`Agent.batch_due`), although the poll interval is an hour. (Scheduler started paused: nothing runs.)"""
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from gitops_agent.daemon import Daemon

    class Agent:
        cfg = SimpleNamespace(source=SimpleNamespace(interval=3600.0))
        nodes: dict[str, object] = {}

        def batch_due(self) -> float:
            return 42.0

        def polled_at(self) -> float | None:
            return None

        def sync(self, poll: bool = True) -> object:
            return SimpleNamespace(ok=True, waiting=False, result="in-sync", target="r", head="r", error="")

    daemon = Daemon(Agent(), lambda *a, **k: None)  # type: ignore[arg-type]
    daemon.informers = {"started": None}  # type: ignore[dict-item]  # no watch: nothing to start after the pass
    daemon.scheduler.start(paused=True)
    try:
        daemon._pass()
        run_at = daemon.scheduler.get_job("batch").next_run_time.replace(tzinfo=None)
        assert timedelta(seconds=40) < run_at - datetime.now() <= timedelta(seconds=43), run_at
        assert daemon.scheduler.get_job("sync").next_run_time.replace(tzinfo=None) - datetime.now() > \
            timedelta(minutes=50)  # the poll interval is unchanged
    finally:
        daemon.scheduler.shutdown(wait=False)
