"""Jobs from literals: the manifest, the attempts `desired` gives a Job, and `jobs.next_runs` / `jobs.job_run`
on one look at a node. The real-Podman run is in tests/test_e2e.py (test_a_job_...)."""

from __future__ import annotations

import textwrap
from dataclasses import replace

from gitops_agent.config import NodeConfig
from gitops_agent.desired import L_TEMPLATE_HASH, WorkloadSpec, compile_node
from gitops_agent.errors import RevisionRejected
from gitops_agent.jobs import DEADLINE, Batch, Book, RunRecord, job_book, job_run, next_runs, wake_times
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.plan import plan

A = NodeConfig("a")

JOB = textwrap.dedent("""\
    apiVersion: batch/v1
    kind: Job
    metadata: {name: migrate}
    spec:
      completions: 2
      parallelism: 1
      backoffLimit: 1
      template:
        spec:
          restartPolicy: Never
          containers: [{name: migrate, image: localhost/tool:1, command: [sh, -c, "exit 0"]}]
""")


def spec(text: str = JOB) -> WorkloadSpec:
    rev = parse([SourceFile("job.yaml", text.encode())], "main@sha1:" + "a" * 40, nodes=(A,))
    (w,) = compile_node(rev, A, (A,)).workloads
    return w


def pod(w: WorkloadSpec, i: int, state: str = "exited", code: int = 0, thash: str = "") -> LivePod:
    p = w.pods[i]
    return LivePod(p.name, "id", "Exited" if state == "exited" else "Running",
                   {**p.labels, L_TEMPLATE_HASH: thash or w.template_hash},
                   (LiveContainer(p.containers[0].name, "c", "img", state, "", exit_code=code),))


def test_a_job_has_one_pod_name_per_attempt_and_podman_never_restarts_them() -> None:
    w = spec()
    assert len(w.pods) == 3 and w.completions == 2 and w.parallelism == 1  # 2 completions + backoffLimit 1
    assert {p.restart_policy for p in w.pods} == {"no"}
    assert len(spec(JOB.replace("restartPolicy: Never", "restartPolicy: OnFailure")).pods) == 3


def test_a_job_runs_its_attempts_one_by_one_until_its_completions_exit_zero_then_never_again() -> None:
    w = spec()
    assert next_runs(w, []) == ((w.pods[0],), ())
    assert next_runs(w, [pod(w, 0, "running")]) == ((), ())  # parallelism 1: one at a time
    assert next_runs(w, [pod(w, 0)]) == ((w.pods[1],), ())
    done = [pod(w, 0), pod(w, 1)]
    assert job_run(w, done).phase == "Complete" and next_runs(w, done) == ((), ())
    node = LiveState("a", pods={p.name: p for p in done})
    assert [a.op for a in plan(compile_node(parse([SourceFile("job.yaml", JOB.encode())], "main@sha1:" + "a" * 40,
                                                       nodes=(A,)), A, (A,)), node).actions
            if a.op.endswith("-pod")] == []


def test_a_failing_job_retries_up_to_its_backoff_limit_and_is_failed_with_the_exit_code() -> None:
    w = spec()
    once = [pod(w, 0, code=3)]
    assert next_runs(w, once) == ((w.pods[1],), ())  # 1 failure <= backoffLimit 1: retried
    twice = [pod(w, 0, code=3), pod(w, 1, code=3)]
    run = job_run(w, twice)
    assert (run.phase, run.failed, run.exit_codes) == ("Failed", 2, (3, 3)) and next_runs(w, twice) == ((), ())


def test_a_changed_job_is_a_new_run_and_its_old_pods_go() -> None:
    w = spec()
    old = pod(w, 0, thash="older")
    assert next_runs(w, [old]) == ((w.pods[1],), (old.name,))  # pods[0] is taken by the old pod's name


def test_job_fields_that_are_not_mapped_are_errors() -> None:
    try:
        spec(JOB.replace("backoffLimit: 1", "backoffLimit: 1\n  suspend: true"))
    except RevisionRejected as e:
        assert [str(p) for p in e.problems] == [
            "job.yaml:8: Job/migrate: spec.suspend: field 'suspend' is not supported by gitops-agent (found true): "
            "remove it: a Job in Git runs; remove the Job from Git to stop it"]
    else:
        raise AssertionError("suspend was accepted")


def started(w: WorkloadSpec, i: int, at: int, state: str = "running", code: int = 0) -> LivePod:
    p = pod(w, i, state, code)
    return replace(p, containers=tuple(replace(c, started_at=at) for c in p.containers))


def test_a_run_past_its_active_deadline_is_failed_with_deadline_exceeded_and_its_active_pods_go() -> None:
    """activeDeadlineSeconds counts from the run's first pod start; past it, its active pods are removed, it is
    Failed (DeadlineExceeded) in its record, and no further attempt is made."""
    w = spec(JOB.replace("backoffLimit: 1", "backoffLimit: 1\n  activeDeadlineSeconds: 30"))
    assert w.active_deadline == 30
    running = [started(w, 0, at=1000)]
    assert next_runs(w, running, None, now=1029) == ((), ())  # within the deadline: it runs on
    book = job_book(w, running, None, now=1030)
    (record,) = book.runs
    assert (record.phase, record.reason, record.started, record.finished) == ("Failed", DEADLINE, 1000, 1030)
    assert next_runs(w, running, record, now=1030) == ((), (running[0].name,))
    gone = job_run(w, [], record, now=1031)
    assert (gone.phase, gone.reason) == ("Failed", DEADLINE) and next_runs(w, [], record, now=1031) == ((), ())
    assert wake_times(w, running, Book((RunRecord(w.template_hash, started=1000),))) == [1030]


def test_a_finished_run_loses_its_pods_after_its_ttl_and_its_record_keeps_it_from_running_again() -> None:
    """ttlSecondsAfterFinished removes a finished run's pods; the run's record in the store (not the pods) is
    what keeps the Job from running again, with its counts."""
    w = spec(JOB.replace("backoffLimit: 1", "backoffLimit: 1\n  ttlSecondsAfterFinished: 60"))
    done = [started(w, 0, 1000, "exited"), started(w, 1, 1010, "exited")]
    book = job_book(w, done, None, now=1100)
    (record,) = book.runs
    assert (record.phase, record.finished, record.succeeded) == ("Complete", 1100, 2)
    assert next_runs(w, done, record, now=1159) == ((), ())
    assert next_runs(w, done, record, now=1160) == ((), tuple(sorted(p.name for p in done)))
    assert job_book(w, [], book, now=1200) == book  # the pods are gone: the record stays
    assert next_runs(w, [], record, now=1200) == ((), ()) and job_run(w, [], record).phase == "Complete"
    assert wake_times(w, done, book) == [1160] and wake_times(w, [], book) == []
    node = LiveState("a")
    p = plan(compile_node(parse([SourceFile("job.yaml", JOB.encode())], "main@sha1:" + "a" * 40, nodes=(A,)),
                          A, (A,)), node, batch=Batch(1200, {w.ref: book}))
    assert [a.op for a in p.actions if a.op.endswith("-pod")] == []
    fresh = plan(compile_node(parse([SourceFile("job.yaml", JOB.encode())], "main@sha1:" + "a" * 40, nodes=(A,)),
                              A, (A,)), node)
    assert [a.op for a in fresh.actions if a.op.endswith("-pod")] == ["run-pod"]  # no record: it would run


def test_a_changed_job_drops_the_record_of_its_old_template() -> None:
    w = spec()
    old = Book((RunRecord("older", phase="Complete", finished=5),))
    assert job_book(w, [], old, now=10) == Book()  # nothing of the new template ran yet: a new run
    assert BookJson(job_book(w, [pod(w, 0)], old, now=10)) == [w.template_hash]


def BookJson(book: Book) -> list[str]:
    return [r.run for r in Book.from_json(book.to_json()).runs]
