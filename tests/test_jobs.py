"""Jobs from literals: the manifest, the attempts `desired` gives a Job, and `jobs.next_runs` / `jobs.job_run`
on one look at a node. The real-Podman run is in tests/test_e2e.py (test_a_job_...)."""

from __future__ import annotations

import textwrap

from gitops_agent.config import NodeConfig
from gitops_agent.desired import L_TEMPLATE_HASH, WorkloadSpec, compile_node
from gitops_agent.errors import RevisionRejected
from gitops_agent.jobs import job_run, next_runs
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
        spec(JOB.replace("backoffLimit: 1", "backoffLimit: 1\n  activeDeadlineSeconds: 30"))
    except RevisionRejected as e:
        assert [str(p) for p in e.problems] == [
            "job.yaml:8: Job/migrate: spec.activeDeadlineSeconds: field 'activeDeadlineSeconds' is not supported by "
            "gitops-agent (found 30): remove it: not supported yet (a Job's pods run until they exit; set a timeout "
            "in the container's command instead)"]
    else:
        raise AssertionError("activeDeadlineSeconds was accepted")
