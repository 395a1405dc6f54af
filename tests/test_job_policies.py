"""The rest of the Job API from literals: completionMode Indexed (a pod per index, JOB_COMPLETION_INDEX),
backoffLimitPerIndex and maxFailedIndexes, podFailurePolicy, successPolicy, and a template's metadata.name (a
no-op), through `manifests.parse`, `desired.compile_node` and the pure `jobs.next_runs` / `jobs.job_run`. The
real-Podman run is tests/test_e2e.py's test_an_indexed_job_...."""

from __future__ import annotations

import textwrap

import pytest

from gitops_agent.config import NodeConfig
from gitops_agent.desired import JOB_INDEX, L_TEMPLATE_HASH, WorkloadSpec, compile_node
from gitops_agent.errors import RevisionRejected
from gitops_agent.jobs import (BACKOFF, FAILED_INDEXES, MAX_FAILED, POLICY, SUCCESS_MET, RunRecord, index_of,
                               index_ranges, job_book, job_run, next_runs)
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.manifests.batch import indexes
from gitops_agent.plan import plan

A = NodeConfig("a")
REV = "main@sha1:" + "a" * 40

INDEXED = textwrap.dedent("""\
    apiVersion: batch/v1
    kind: Job
    metadata: {name: work}
    spec:
      completions: 3
      parallelism: 2
      completionMode: Indexed
      backoffLimit: 2
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: main
              image: localhost/tool:1
              env:
                - name: I
                  valueFrom: {fieldRef: {fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
""")


def revision(text: str) -> tuple[WorkloadSpec, tuple[str, ...]]:
    rev = parse([SourceFile("job.yaml", text.encode())], REV, nodes=(A,))
    (w,) = compile_node(rev, A, (A,)).workloads
    return w, rev.warnings


def spec(text: str = INDEXED, **fields: str) -> WorkloadSpec:
    """The Job of `text` with `spec` lines added (`fields`: key -> YAML value)."""
    extra = "".join(f"  {k}: {v}\n" for k, v in fields.items())
    return revision(text.replace("  template:\n", extra + "  template:\n", 1))[0]


def problems(text: str) -> list[str]:
    with pytest.raises(RevisionRejected) as e:
        parse([SourceFile("job.yaml", text.encode())], REV, nodes=(A,))
    return [p.message for p in e.value.problems]


def attempts(w: WorkloadSpec, index: int) -> list[str]:
    return [p.name for p in w.pods if index_of(p) == index]


def pod(w: WorkloadSpec, name: str, state: str = "exited", code: int = 0) -> LivePod:
    """Live pod `name` of `w`: its one container in `state`, exited with `code`."""
    (p,) = [p for p in w.pods if p.name == name]
    c = p.containers[0]
    return LivePod(p.name, "id", "Exited" if state == "exited" else "Running",
                   {**p.labels, L_TEMPLATE_HASH: w.template_hash},
                   (LiveContainer(c.name, "c", "img", state, "", labels=c.labels, exit_code=code),))


def test_an_indexed_job_has_attempts_per_index_with_its_index_in_env_annotation_and_label() -> None:
    """Each index 0..completions-1 has backoffLimit + 1 pod names `<job>-<index>-<hash>`; each pod has
    JOB_COMPLETION_INDEX and the index annotation (read by fieldRef) and label, as Kubernetes gives them."""
    w = spec()
    assert len(w.pods) == 9 and [len(attempts(w, i)) for i in range(3)] == [3, 3, 3]
    assert all(p.name.startswith(f"work-{index_of(p)}-") for p in w.pods)
    for p in w.pods:
        (c,) = p.containers
        assert c.env["JOB_COMPLETION_INDEX"] == c.env["I"] == str(index_of(p)) == p.labels[JOB_INDEX]
    assert len({p.name for p in w.pods}) == 9
    assert spec().template_hash == w.template_hash  # stable
    plain = revision(INDEXED.replace("  completionMode: Indexed\n", ""))[0]
    assert plain.template_hash != w.template_hash and "JOB_COMPLETION_INDEX" not in plain.pods[0].containers[0].env
    own = spec(INDEXED.replace("env:\n", "env:\n            - {name: JOB_COMPLETION_INDEX, value: mine}\n"))
    assert own.pods[4].containers[0].env["JOB_COMPLETION_INDEX"] == "mine"  # the container's own value wins


def test_an_indexed_job_runs_every_index_parallelism_at_a_time_retrying_a_failed_index() -> None:
    """Indexes start lowest first, at most `parallelism` at once; a failed index runs again (its next attempt),
    a done one never; the Job is Complete once every index succeeded, with completedIndexes 0-2."""
    w = spec()
    a0, a1, a2 = (attempts(w, i) for i in range(3))
    assert next_runs(w, []) == (tuple(p for p in w.pods if p.name in (a0[0], a1[0])), ())
    live = [pod(w, a0[0], code=1), pod(w, a1[0], "running")]
    start, _ = next_runs(w, live)
    assert [p.name for p in start] == [a0[1]]  # index 0 again (room for one: index 1 runs)
    live = [pod(w, a0[0], code=1), pod(w, a0[1]), pod(w, a1[0])]
    assert [p.name for p in next_runs(w, live)[0]] == [a2[0]]
    run = job_run(w, live)
    assert (run.phase, run.succeeded, run.failed, run.completed_indexes) == ("Pending", 2, 1, "0-1")
    done = live + [pod(w, a2[0])]
    run = job_run(w, done)
    assert (run.phase, run.reason, run.completed_indexes, run.failed_indexes) == ("Complete", "", "0-2", "")
    (record,) = job_book(w, done, None, now=50).runs
    assert (record.completed_indexes, record.succeeded) == ("0-2", 3)
    assert RunRecord.from_json(record.to_json()) == record
    assert job_run(w, [], record).completed_indexes == "0-2"  # its pods gone: the record shows them


def test_an_indexed_jobs_failures_count_together_against_backoff_limit() -> None:
    w = spec()
    a0, a1, _ = (attempts(w, i) for i in range(3))
    live = [pod(w, a0[0], code=1), pod(w, a0[1], code=1), pod(w, a1[0], code=1)]
    assert (job_run(w, live).phase, job_run(w, live).reason) == ("Failed", BACKOFF)  # 3 > backoffLimit 2


def test_backoff_limit_per_index_fails_an_index_and_max_failed_indexes_the_job() -> None:
    """backoffLimitPerIndex 1: an index failed twice is a failed index (not retried), the others run on; the Job
    ends Failed (FailedIndexes) once every index is done. More failed indexes than maxFailedIndexes: Failed at
    once (MaxFailedIndexesExceeded), its active pods removed."""
    w = spec(backoffLimitPerIndex="1")
    assert w.backoff_limit == 2 and len(w.pods) == 6  # backoffLimit as given; 2 attempts per index
    a0, a1, a2 = (attempts(w, i) for i in range(3))
    live = [pod(w, a0[0], code=1), pod(w, a0[1], code=1), pod(w, a1[0])]
    run = job_run(w, live)
    assert (run.phase, run.failed_indexes, run.completed_indexes) == ("Pending", "0", "1")
    assert [p.name for p in next_runs(w, live)[0]] == [a2[0]]
    run = job_run(w, live + [pod(w, a2[0])])
    assert (run.phase, run.reason, run.failed_indexes, run.completed_indexes) == ("Failed", FAILED_INDEXES, "0",
                                                                                 "1-2")
    unlimited = spec(INDEXED.replace("  backoffLimit: 2\n", ""), backoffLimitPerIndex="0")
    assert unlimited.backoff_limit == 2147483647 and len(unlimited.pods) == 3  # Kubernetes' default with it
    w = spec(backoffLimitPerIndex="0", maxFailedIndexes="0")
    a0, a1, _ = (attempts(w, i) for i in range(3))
    live = [pod(w, a0[0], code=1), pod(w, a1[0], "running")]
    run = job_run(w, live)
    assert (run.phase, run.reason) == ("Failed", MAX_FAILED)
    (record,) = job_book(w, live, None, now=5).runs
    assert next_runs(w, live, record, now=5) == ((), (a1[0],))  # its active pod goes


POLICY_RULES = """
    rules:
      - {action: FailJob, onExitCodes: {containerName: main, operator: In, values: [42]}}
      - {action: Ignore, onExitCodes: {operator: In, values: [7, 8]}}
      - {action: Count, onExitCodes: {operator: NotIn, values: [1]}}
      - {action: Ignore, onPodConditions: [{type: DisruptionTarget, status: "True"}]}"""


def test_pod_failure_policy_fail_job_ignore_and_count_rules_act_by_exit_code() -> None:
    """The first rule a failed pod's exit code meets decides: 42 fails the Job at once (PodFailurePolicy, its
    active pods removed); 7 is ignored (not counted; the pod is removed and its name runs again); others count
    against backoffLimit. The onPodConditions rule is kept with a warning: it never matches here."""
    text = INDEXED.replace("  completionMode: Indexed\n", "").replace("  template:\n", "  podFailurePolicy:"
                                                                       + POLICY_RULES + "\n  template:\n", 1)
    w, warnings = revision(text)
    assert len(warnings) == 1 and "onPodConditions: never matches here" in warnings[0]
    first, second, third = (p.name for p in w.pods[:3])
    ignored = [pod(w, first, code=7), pod(w, second, "running")]
    run = job_run(w, ignored)
    assert (run.failed, run.phase) == (0, "Running")
    assert next_runs(w, ignored) == ((w.pods[2],), (first,))  # the ignored one goes, another attempt starts
    node = LiveState("a", pods={p.name: p for p in ignored})
    (remove,) = [a for a in plan(compile_node(parse([SourceFile("job.yaml", text.encode())], REV, nodes=(A,)), A,
                                              (A,)), node).actions if a.op == "remove-pod"]
    assert "podFailurePolicy Ignore rule" in remove.reason
    assert next_runs(w, [pod(w, second, "running")]) == ((w.pods[0],), ())  # its name free again: run again
    counted = [pod(w, first, code=3), pod(w, second, "running")]
    assert job_run(w, counted).failed == 1 and next_runs(w, counted) == ((w.pods[2],), ())
    failing = [pod(w, first, code=42), pod(w, second, "running")]
    run = job_run(w, failing)
    assert (run.phase, run.reason, run.exit_codes) == ("Failed", POLICY, (42,))
    (record,) = job_book(w, failing, None, now=9).runs
    assert (record.phase, record.reason) == ("Failed", POLICY)
    assert next_runs(w, failing, record, now=9) == ((), (second,))
    assert job_run(w, [pod(w, third, code=1)] + counted[:1]).failed == 2  # NotIn [1] does not match 1: Count anyway


def test_an_exit_code_rule_with_a_container_name_looks_at_that_container_only() -> None:
    text = INDEXED.replace("  template:\n", "  podFailurePolicy:\n    rules: [{action: FailJob, onExitCodes: "
                           "{containerName: main, operator: NotIn, values: [1]}}]\n  template:\n", 1)
    w = revision(text)[0]
    name = w.pods[0].name
    assert job_run(w, [pod(w, name, code=2)]).reason == POLICY  # main exited 2, not in [1]
    assert job_run(w, [pod(w, name, code=1)]).phase == "Pending"  # 1: no rule, counted (1 <= backoffLimit 2)


def test_fail_index_fails_that_index_without_retry() -> None:
    w = spec(backoffLimitPerIndex="1", podFailurePolicy="{rules: [{action: FailIndex, onExitCodes: {operator: In, "
             "values: [42]}}]}")
    a0, a1, a2 = (attempts(w, i) for i in range(3))
    live = [pod(w, a0[0], code=42), pod(w, a1[0], code=1)]
    run = job_run(w, live)
    assert (run.failed_indexes, run.phase) == ("0", "Pending")
    assert [p.name for p in next_runs(w, live)[0]] == [a1[1], a2[0]]  # index 1 retried, index 0 not


def test_a_success_policy_completes_an_indexed_job_early_and_its_remaining_pods_go() -> None:
    """Rule `succeededIndexes: 0,2-3, succeededCount: 1` is met by index 2 alone: Complete (SuccessCriteriaMet),
    the still active pods removed; a rule with indexes only needs all of them."""
    text = INDEXED.replace("completions: 3", "completions: 5").replace("parallelism: 2", "parallelism: 5")
    w = spec(text, successPolicy="{rules: [{succeededIndexes: '0,2-3', succeededCount: 1}]}")
    first = {i: attempts(w, i)[0] for i in range(5)}
    live = [pod(w, first[1]), pod(w, first[4], code=1), pod(w, first[0], "running")]
    assert job_run(w, live).phase == "Running"  # index 1 is not one of the rule's
    live += [pod(w, first[2]), pod(w, first[3], "running")]
    run = job_run(w, live)
    assert (run.phase, run.reason, run.completed_indexes) == ("Complete", SUCCESS_MET, "1-2")
    (record,) = job_book(w, live, None, now=3).runs
    assert (record.phase, record.reason) == ("Complete", SUCCESS_MET)
    assert next_runs(w, live, record, now=3) == ((), tuple(sorted([first[0], first[3]])))
    w = spec(text, successPolicy="{rules: [{succeededIndexes: '3-4'}]}")
    live = [pod(w, attempts(w, 3)[0])]
    assert job_run(w, live).phase == "Pending"
    assert job_run(w, live + [pod(w, attempts(w, 4)[0])]).reason == SUCCESS_MET
    w = spec(text, successPolicy="{rules: [{succeededCount: 2}]}")
    assert job_run(w, [pod(w, attempts(w, 0)[0]), pod(w, attempts(w, 4)[0])]).reason == SUCCESS_MET


def test_a_job_templates_name_and_generate_name_are_ignored_with_one_warning_each() -> None:
    text = INDEXED.replace("  template:\n", "  template:\n    metadata: {name: x, generateName: y-}\n")
    w, warnings = revision(text)
    assert len(warnings) == 2 and all("has no effect, as in Kubernetes" in m for m in warnings)
    assert w.pods[0].name.startswith("work-0-")


def test_the_job_api_checks_kubernetes_makes_are_errors_that_say_what_to_do() -> None:
    def bad(**fields: str) -> list[str]:
        extra = "".join(f"  {k}: {v}\n" for k, v in fields.items())
        return problems(INDEXED.replace("  template:\n", extra + "  template:\n", 1))

    nonindexed = INDEXED.replace("  completionMode: Indexed\n", "")
    assert problems(nonindexed.replace("  template:\n", "  backoffLimitPerIndex: 1\n  template:\n")) == [
        "needs completionMode: Indexed"]
    assert bad(maxFailedIndexes="1") == ["needs backoffLimitPerIndex"]
    assert bad(backoffLimitPerIndex="1", maxFailedIndexes="4") == ["must be at most completions (3)"]
    assert bad(podFailurePolicy="{rules: [{action: FailIndex, onExitCodes: {operator: In, values: [1]}}]}") == [
        "FailIndex needs backoffLimitPerIndex (and completionMode: Indexed)"]
    assert bad(podFailurePolicy="{rules: [{action: Count, onExitCodes: {operator: In, values: [0, 1]}}]}") == [
        "must not contain 0 with operator In (0 is success)"]
    assert bad(podFailurePolicy="{rules: [{action: Count, onExitCodes: {containerName: other, operator: In, "
               "values: [1]}}]}") == ["no container 'other' in the pod template"]
    assert problems(INDEXED.replace("restartPolicy: Never", "restartPolicy: OnFailure").replace(
        "  template:\n", "  podFailurePolicy: {rules: [{action: Ignore, onExitCodes: {operator: In, values: [1]}}]}"
        "\n  template:\n")) == ["needs restartPolicy: Never in the pod template, as in Kubernetes"]
    assert bad(podFailurePolicy="{rules: [{action: Count}]}") == ["needs exactly one of onExitCodes, onPodConditions"]
    assert bad(successPolicy="{rules: [{succeededIndexes: '2,1'}]}") == [
        "must list indexes below completions (3) in increasing order, without overlaps"]
    assert bad(successPolicy="{rules: [{succeededIndexes: '0-3'}]}")[0].startswith("must list indexes below")
    assert bad(successPolicy="{rules: [{succeededIndexes: '0-1', succeededCount: 3}]}") == [
        "must be at most 2 (the indexes it counts)"]
    assert bad(successPolicy="{rules: [{succeededIndexes: 'a'}]}") == [
        "must be a list of indexes and ranges such as 0,2-3"]
    assert problems(nonindexed.replace("  template:\n", "  successPolicy: {rules: [{succeededCount: 1}]}\n"
                                       "  template:\n")) == ["needs completionMode: Indexed"]
    assert problems(INDEXED.replace("  completions: 3\n", "")) == [
        "is required with completionMode Indexed (the number of indexes)"]
    (many,) = problems(INDEXED.replace("completions: 3", "completions: 40"))  # every attempt of every index
    assert many.startswith("1 node(s) would run more than limits.maxPodsPerNode (110) pods: a 120")


def test_an_indexed_cronjob_run_is_an_error() -> None:
    cron = textwrap.dedent("""\
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: c}
        spec:
          schedule: "* * * * *"
          jobTemplate:
            spec:
              completions: 2
              completionMode: Indexed
              template:
                spec:
                  restartPolicy: Never
                  containers: [{name: main, image: localhost/tool:1}]
    """)
    assert problems(cron) == ["Indexed is mapped for a Job, not yet for a CronJob's runs: use a Job, or NonIndexed"]


def test_index_lists_read_and_write_as_kubernetes_does() -> None:
    assert indexes("0,2-3,7") == [0, 2, 3, 7]
    assert index_ranges([4, 0, 1, 2]) == "0-2,4" and index_ranges([]) == "" and index_ranges([3]) == "3"
