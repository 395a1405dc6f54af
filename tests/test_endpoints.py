"""Service endpoints follow readiness: the pure decisions of `gitops_agent.endpoints`, from literals."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gitops_agent.desired import ContainerSpec, PodSpec
from gitops_agent.endpoints import (
    STORE_KEY, Connect, Disconnect, PodNetwork, Recorder, Track, creation_aliases, decide, first_track, observe,
    pod_ready, service_aliases, serving_aliases, unready, with_ready,
)
from gitops_agent.model import ObjectRef, Probe

PROBE = Probe(action="httpGet", port=8080, period_seconds=2, success_threshold=2, failure_threshold=3)


def test_an_unready_pod_keeps_only_its_own_names_and_a_ready_one_all() -> None:
    """Service names leave; a StatefulSet pod's `<pod>.<service>` stays (it has a dot, a Service name never)."""
    spec = ("db", "db-0.db", "web")
    assert service_aliases(spec) == {"db", "web"}
    assert serving_aliases(spec, service_aliases(spec), ready=False) == {"db-0.db"}
    assert serving_aliases(spec, service_aliases(spec), ready=True) == {"db", "db-0.db", "web"}
    assert serving_aliases(("web",), ("web",), ready=False) == frozenset()


def test_thresholds_decide_the_verdict_and_a_result_in_between_keeps_it() -> None:
    """successThreshold successes in a row make a container ready, failureThreshold failures unready; fewer keep
    the verdict it had (None before the first one); each run is due periodSeconds later."""
    t = Track(started_at=100, next_run=0.0)
    t = observe(t, PROBE, 0, 10.0)
    assert (t.ready, t.successes, t.next_run) == (None, 1, 12.0)
    t = observe(t, PROBE, 0, 12.0)
    assert t.ready is True
    t = observe(observe(t, PROBE, 1, 14.0), PROBE, None, 16.0)  # a timeout is a failure
    assert (t.ready, t.failures) == (True, 2)
    t = observe(t, PROBE, 0, 18.0)  # a success resets the failures
    assert (t.ready, t.failures) == (True, 0)
    for now in (20.0, 22.0, 24.0):
        t = observe(t, PROBE, 1, now)
    assert (t.ready, t.failures) == (False, 3)
    t = observe(t, PROBE, 0, 26.0)
    assert t.ready is False  # one success of two
    assert observe(t, PROBE, 0, 28.0).ready is True


def test_the_first_run_waits_out_the_initial_delay_from_the_container_start() -> None:
    probe = Probe(action="tcpSocket", port=1, initial_delay_seconds=5)
    assert first_track(1000, probe, now=50.0, wall=1002.0).next_run == 53.0
    assert first_track(1000, probe, now=50.0, wall=1100.0).next_run == 50.0  # long since started
    assert first_track(1000, probe, now=50.0, wall=900.0).next_run == 55.0  # a wall-clock step: at most the delay


def test_a_pod_is_unready_if_one_container_is_and_unknown_until_each_is_judged() -> None:
    assert pod_ready([True, True]) is True
    assert pod_ready([True, None]) is None
    assert pod_ready([None, False]) is False
    assert pod_ready([]) is True


def _net(aliases: set[str], connected: bool = True) -> PodNetwork:
    return PodNetwork("web-1_ns", "infra1", "gitops-ns", connected, "10.0.0.5", frozenset(aliases))


def test_the_decision_moves_a_pod_only_when_its_aliases_differ_from_its_verdict() -> None:
    """Podman's own alias (the short id) is not compared; an unready pod is disconnected and connected again with
    its non-Service names; no verdict moves nothing; a pod left off its network is connected."""
    spec = ("db", "db-0.db")
    on = _net({"db", "db-0.db", "0123456789ab"})
    assert decide(on, spec, None) == ()
    assert decide(on, spec, True) == ()
    assert decide(on, spec, False) == (Disconnect("web-1_ns", "gitops-ns"),
                                       Connect("web-1_ns", "gitops-ns", ("db-0.db",)))
    off = _net({"db-0.db", "0123456789ab"})
    assert decide(off, spec, False) == ()
    assert decide(off, spec, True) == (Disconnect("web-1_ns", "gitops-ns"),
                                       Connect("web-1_ns", "gitops-ns", ("db", "db-0.db")))
    gone = _net(set(), connected=False)
    assert decide(gone, ("web",), False) == (Connect("web-1_ns", "gitops-ns", ()),)
    assert decide(gone, ("web",), None) == ()


def test_the_store_record_says_which_pods_are_unready_per_node() -> None:
    record = {"n1": {"a": {"ready": False}, "b": {"ready": True}}, "n2": {"c": {"ready": False}}}
    assert unready(record, "n1") == {"a"}
    assert unready(record, "n3") == frozenset()
    assert unready(None, "n1") == frozenset()


def test_the_network_events_of_a_move_mark_the_copy_stale_and_start_no_pass() -> None:
    """Podman 4.3's events for `network disconnect`/`connect` (as seen on the test machine): the monitor's own move
    (inside the own-write window of that network) only marks the copy stale; the same event with no write of the
    agent behind it is a hand change, drift (that pass then keeps an unready pod out: test_drift_pure); a container
    that is no pod's infra container is ignored."""
    from gitops_agent.informer import Known, classify

    known = Known(networks=frozenset({"gitops-ns"}), infra=frozenset({"f6ca"}))
    for action in ("disconnect", "connect"):
        event = {"Type": "network", "Action": action, "Actor": {"ID": "f6ca", "Attributes": {
            "container": "f6cacac7e40a", "name": "gitops-ns"}}}
        assert classify(event, known, lambda name: name == "gitops-ns") == "changed"
        assert classify(event, known, lambda name: False) == "drift"
        assert classify(event, Known(networks=frozenset({"gitops-ns"})), lambda name: False) == "ignore"


def _pod(aliases: tuple[str, ...], readiness: Probe | None = PROBE, network: str = "gitops-ns") -> PodSpec:
    c = ContainerSpec(
        name="db-0-db", image="img", pull_policy="IfNotPresent", entrypoint=(), command=(), env={}, secret_env={},
        secret_mounts=(), volumes=(), working_dir=None, health_cmd=None, health_interval=0, health_timeout=0,
        health_retries=0, health_start_period=0, cpu_millis=None, memory_bytes=None, labels={}, readiness=readiness)
    return PodSpec("db-0", ObjectRef("StatefulSet", "ns", "db"), "abc", network, aliases, (), "always", 1, (c,), {})


def test_a_new_pod_with_a_readiness_probe_is_created_without_its_service_names() -> None:
    """Only its own names until it first passes readiness (the gate or the monitor adds the rest); a pod without a
    readinessProbe, or not behind a Service, is created with every name (Kubernetes counts it ready at once)."""
    assert creation_aliases(_pod(("db", "db-0.db", "web"))) == ("db-0.db",)
    assert creation_aliases(_pod(("web",))) == ()
    assert creation_aliases(_pod(("web", "db-0.db"), readiness=None)) == ("web", "db-0.db")
    assert creation_aliases(_pod(("db-0.db",))) == ("db-0.db",)  # behind no Service: nothing to hold back
    sidecar = replace(_pod(("web",), readiness=None).containers[0], name="side", readiness=PROBE)
    two = replace(_pod(("web",), readiness=None), containers=(_pod(("web",), None).containers[0], sidecar))
    assert creation_aliases(two) == ()  # one container with a readinessProbe is enough


def test_the_gate_records_a_new_pod_ready_once_and_keeps_the_other_records() -> None:
    """`with_ready` adds the pod to the store's value as the monitor records it; the gate's `Recorder` writes it
    and emits `endpoint.ready`, and does neither when the store already says ready or the pod is not watched."""
    before = {"n1": {"a": {"ready": False, "since": 1.0, "services": ["web"]}}, "n2": {}}
    after = with_ready(before, "n1", "db-0", {"web", "db"}, 5.0)
    assert after == {"n1": {"a": {"ready": False, "since": 1.0, "services": ["web"]},
                            "db-0": {"ready": True, "since": 5.0, "services": ["db", "web"]}}, "n2": {}}
    assert "db-0" not in before["n1"]  # the value read is not changed in place
    store: dict[str, Any] = {STORE_KEY: before}
    logged: list[tuple[str, dict[str, Any]]] = []
    record = Recorder(store.get, store.__setitem__, "n1", lambda event, **f: logged.append((event, f)), lambda: 5.0)
    record(_pod(("db", "db-0.db", "web")))
    assert store[STORE_KEY] == after
    assert [(e, f["pod"], f["services"]) for e, f in logged] == [("endpoint.ready", "db-0", "db,web")]
    record(_pod(("db", "db-0.db", "web")))  # already ready: the monitor saw it first, or a second look
    record(_pod(("web",), readiness=None))  # not watched: it was in DNS from its creation
    assert store[STORE_KEY] == after and len(logged) == 1
