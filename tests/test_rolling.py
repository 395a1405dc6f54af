"""One workload's rolling update on one node, from literals: rolling.next_move and the RollingUpdate
arithmetic (rolling.rolling_step). No Podman, no clock: each test is one look at a node."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gitops_agent.config import NodeConfig
from gitops_agent.desired import L_TEMPLATE_HASH, PodSpec, WorkloadSpec, compile_node
from gitops_agent.live import LiveContainer, LivePod
from gitops_agent.model import Container, ObjectRef, Origin, PodTemplate, Revision, Workload
from gitops_agent.probes import PodVerdict
from gitops_agent.rolling import (Done, Fail, Rebuild, Remove, Replace, Start, Surge, Wait, next_move, progress,
                                  rolling_step)

NODE = NodeConfig("local")
OK = PodVerdict(True)
NOT_YET = PodVerdict(False)


def workload(replicas: int = 2, surge: int = 1, unavailable: int = 0, strategy: str = "RollingUpdate") -> WorkloadSpec:
    """A Deployment `web` of `replicas` pods on this one node, with its rolling-update knobs resolved."""
    w = Workload(ObjectRef("Deployment", "default", "web"), Origin("web.yaml", 1),
                 PodTemplate({"app": "web"}, (Container("httpd", "localhost/web:2", "IfNotPresent"),)),
                 replicas=replicas, selector={"app": "web"})
    rev = Revision("main@sha1:" + "a" * 40, "sha256:x", (w,))
    (spec,) = compile_node(rev, NODE, (NODE,)).workloads
    return replace(spec, strategy=strategy, max_surge=surge, max_unavailable=unavailable)


def old(n: int, ready: bool = True) -> LivePod:
    """Old pod number `n` (another template)."""
    state = "running" if ready else "exited"
    return LivePod(f"web-old-{n}", f"o{n}", "Running", {**_owner(), L_TEMPLATE_HASH: "old"},
                   (LiveContainer(f"web-old-{n}_httpd", f"oc{n}", "localhost/web:1", state, ""),))


def new(spec: PodSpec, state: str = "running", containers: int = 1) -> LivePod:
    """The live pod of `spec` (the new template), with `containers` of its containers made."""
    made = tuple(LiveContainer(c.name, f"c-{c.name}", c.image, state, "") for c in spec.containers[:containers])
    return LivePod(spec.name, "id-" + spec.name, "Running", dict(spec.labels), made)


def _owner() -> dict[str, str]:
    return {k: v for k, v in workload().pods[0].labels.items() if k != L_TEMPLATE_HASH}


def test_surge_creates_one_new_pod_before_removing_any() -> None:
    """maxSurge 1, maxUnavailable 0: the first move only creates, within replicas + 1 pods."""
    w = workload(replicas=2, surge=1, unavailable=0)
    assert next_move(w, [old(0), old(1)], {}) == Surge((w.pods[0],))


def test_a_new_pod_not_yet_ready_is_waited_for() -> None:
    """With the surge spent, nothing moves while the new pod is not available."""
    w = workload(replicas=2, surge=1, unavailable=0)
    p = new(w.pods[0])
    assert next_move(w, [old(0), old(1), p], {p.name: NOT_YET}) == Wait(p.name)
    assert next_move(w, [old(0), old(1), p], {}) == Wait(p.name)  # not judged yet: not available either


def test_a_new_pod_available_lets_one_old_pod_go() -> None:
    """Once the surged pod is available, one old pod may go (maxUnavailable 0 still holds)."""
    w = workload(replicas=2, surge=1, unavailable=0)
    p = new(w.pods[0])
    assert next_move(w, [old(0), old(1), p], {p.name: OK}) == Remove(("web-old-0",))


def test_without_surge_an_old_pod_goes_first() -> None:
    """maxSurge 0, maxUnavailable 1: remove first, then create into the freed place."""
    w = workload(replicas=2, surge=0, unavailable=1)
    assert next_move(w, [old(0), old(1)], {}) == Remove(("web-old-0",))
    assert next_move(w, [old(1)], {}) == Surge((w.pods[0],))


def test_both_knobs_zero_still_move_one_at_a_time() -> None:
    """maxSurge 0 and maxUnavailable 0 would never move: taken as maxUnavailable 1."""
    w = workload(replicas=2, surge=0, unavailable=0)
    assert next_move(w, [old(0), old(1)], {}) == Remove(("web-old-0",))


def test_surge_and_unavailable_together_replace_in_one_step() -> None:
    """maxSurge 1, maxUnavailable 1 of 3: one old pod goes and one new pod is made in the same move."""
    w = workload(replicas=3, surge=1, unavailable=1)
    assert next_move(w, [old(0), old(1), old(2)], {}) == Replace(("web-old-0",), (w.pods[0],))


def test_old_pods_that_are_not_ready_go_first_and_always_may() -> None:
    """A not-ready old pod serves nothing: it is removed first, even with maxUnavailable 0."""
    w = workload(replicas=2, surge=1, unavailable=0)
    p = new(w.pods[0])
    assert next_move(w, [old(0), old(1, ready=False), p], {p.name: NOT_YET}) == Remove(("web-old-1",))


def test_a_pod_failing_its_probe_fails_the_update_with_its_reason() -> None:
    """A failed verdict fails the update at once, with the probe and its (redacted) output."""
    w = workload()
    p = new(w.pods[0])
    failed = PodVerdict(False, f"{w.ref}: pod {p.name}: readiness probe failed 3 time(s) in a row (exit code 1)",
                        "readiness", "no")
    assert next_move(w, [old(0), old(1), p], {p.name: failed}) == Fail(failed.failed, p.name, "readiness", "no")


def test_the_last_old_pod_removed_then_done() -> None:
    """The last old pod goes once the new ones are available; then only new, available pods: done."""
    w = workload(replicas=2, surge=1, unavailable=0)
    a, b = new(w.pods[0]), new(w.pods[1])
    ready = {a.name: OK, b.name: OK}
    assert next_move(w, [old(1), a, b], ready) == Remove(("web-old-1",))
    assert next_move(w, [a, b], ready) == Done()
    assert next_move(w, [a, b], {a.name: OK, b.name: NOT_YET}) == Wait(b.name)


def test_recreate_removes_every_old_pod_then_creates_every_new_one() -> None:
    """Recreate: every old pod in one move, then every new pod not there yet."""
    w = workload(replicas=2, strategy="Recreate")
    assert next_move(w, [old(0), old(1)], {}) == Remove(("web-old-0", "web-old-1"))
    assert next_move(w, [], {}) == Surge(w.pods)
    a = new(w.pods[0])
    assert next_move(w, [a], {a.name: OK}) == Surge(w.pods[1:])


def test_scale_up_during_an_update_creates_within_the_surge() -> None:
    """3 replicas wanted, 1 old pod left from a 1-replica template: 3 new pods fit replicas + maxSurge."""
    w = workload(replicas=3, surge=1, unavailable=0)
    assert next_move(w, [old(0)], {}) == Surge(w.pods)


def test_scale_down_during_an_update_removes_surplus_old_pods() -> None:
    """1 replica wanted, 3 old pods ready: two may go at once (one stays available), nothing is created yet."""
    w = workload(replicas=1, surge=1, unavailable=0)
    assert next_move(w, [old(0), old(1), old(2)], {}) == Remove(("web-old-0", "web-old-1"))


def test_a_half_built_new_pod_is_rebuilt_and_an_unstarted_one_started() -> None:
    """An agent killed mid-create left a pod without its container, or one never started."""
    w = workload()
    half = new(w.pods[0], containers=0)
    assert next_move(w, [old(0), old(1), half], {}) == Rebuild((half.name,))
    created = new(w.pods[0], state="created")
    assert next_move(w, [old(0), old(1), created], {}) == Start((created.name,))


def test_past_the_deadline_a_waiting_or_half_built_pod_fails_the_update() -> None:
    """Overdue: the pod waited for (or one still half-built) fails with why it is not ready; done still wins."""
    w = workload(replicas=2, surge=1, unavailable=0)
    p = new(w.pods[0], state="exited")
    move = next_move(w, [old(0), old(1), p], {p.name: NOT_YET}, overdue=True)
    assert move == Fail(f"{w.ref}: pod {p.name} not ready by the progress deadline (container {p.containers[0].name} "
                        "is exited)", p.name, "deadline", f"container {p.containers[0].name} is exited")
    half = new(w.pods[0], containers=0)
    late = next_move(w, [old(0), old(1), half], {}, overdue=True)
    assert isinstance(late, Fail) and late.probe == "deadline" and late.pod == half.name
    a, b = new(w.pods[0]), new(w.pods[1])
    assert next_move(w, [a, b], {a.name: OK, b.name: OK}, overdue=True) == Done()  # done wins over late


def test_progress_counts_updated_ready_and_desired() -> None:
    """The live view's counts: new pods, those available, the replicas wanted on this node."""
    w = workload(replicas=2)
    a, b = new(w.pods[0]), new(w.pods[1])
    assert progress(w, [old(0), a, b], {a.name: OK, b.name: NOT_YET}) == (2, 1, 2)


@pytest.mark.parametrize(
    "replicas,surge,unavail,state,expected",
    [
        (2, 1, 0, (2, 2, 0, 0), (1, 0)),  # surge one new pod first, remove nothing yet
        (2, 1, 0, (2, 2, 1, 1), (0, 1)),  # new one ready: one old may go
        (2, 1, 0, (2, 2, 1, 0), (0, 0)),  # new one not ready: wait
        (4, 0, 1, (4, 4, 0, 0), (0, 1)),  # no surge: remove first
        (2, 0, 0, (2, 2, 0, 0), (0, 1)),  # both zero: still moves one at a time
        (2, 1, 0, (2, 0, 0, 0), (1, 2)),  # old pods not ready serve nothing: they may go
    ],
)
def test_rolling_step_follows_kubernetes_arithmetic(replicas: int, surge: int, unavail: int, state: tuple[int, int, int, int], expected: tuple[int, int]) -> None:
    """maxSurge bounds the total, maxUnavailable bounds how many ready pods may be missing."""
    s = rolling_step(replicas, surge, unavail, *state)
    assert (s.create, s.remove) == expected
