"""gRPC liveness probes run by the agent (`liveness`): the pure "restart now?" decision from literals, and the
monitor restarting a real Podman container whose real gRPC health server stops serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gitops_agent import desired, liveness
from gitops_agent.agent import Agent
from gitops_agent.config import NodeConfig, from_mapping
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import Probe
from podman_env import WEB1

PROBE = Probe(action="grpc", port=9000, period_seconds=5, failure_threshold=3)


def test_failures_in_a_row_restart_and_a_success_resets_the_count() -> None:
    """failureThreshold failures in a row (a timeout counts as one) restart the container; a success between
    them starts the count again, as the kubelet does; each result schedules the next run a period later."""
    track = liveness.first_track(started_at=100, start_period=7)
    assert track.next_run == 107.0 and track.failures == 0
    track, restart = liveness.decide(track, PROBE, 1, 107.0)
    assert (track.failures, restart, track.next_run) == (1, False, 112.0)
    track, restart = liveness.decide(track, PROBE, None, 112.0)
    assert (track.failures, restart) == (2, False)
    track, restart = liveness.decide(track, PROBE, 0, 117.0)
    assert (track.failures, restart) == (0, False)
    for now in (122.0, 127.0):
        track, restart = liveness.decide(track, PROBE, 1, now)
        assert not restart
    track, restart = liveness.decide(track, PROBE, 1, 132.0)
    assert restart and track.failures == 0


def test_the_label_carries_the_probe_and_only_a_grpc_one() -> None:
    """`desired` puts a gRPC liveness probe on its container as a label the monitor reads back; other probes get
    none (they are Podman's healthcheck); an unreadable label is no probe."""
    labels = liveness.label(Probe(action="grpc", port=50051, service="shop", period_seconds=2, timeout_seconds=3,
                                  failure_threshold=4), start_period=15, grace=30)
    probe, start, grace = liveness.from_label(labels) or (None, 0, 0)
    assert probe == Probe(action="grpc", port=50051, service="shop", period_seconds=2, timeout_seconds=3,
                          failure_threshold=4)
    assert (start, grace) == (15, 30)
    assert liveness.restarts(labels) and not liveness.restarts(liveness.label(Probe(action="grpc", port=1), 0, 0,
                                                                                 restart=False))
    assert liveness.label(Probe(action="httpGet", port=80), 0, 30) == {}
    assert liveness.from_label({liveness.LABEL: "{not json"}) is None
    assert liveness.from_label({}) is None


def test_a_grpc_liveness_probe_is_accepted_and_is_no_healthcheck() -> None:
    """validate accepts livenessProbe.grpc; the container gets no Podman healthcheck (no shell tool speaks gRPC)
    but the label, with the startup probe's time added to its start period as for a healthcheck."""
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "g"}, "spec": {"containers": [
        {"name": "c", "image": "img", "ports": [{"name": "grpc", "containerPort": 9000}],
         "livenessProbe": {"grpc": {"port": 9000}, "initialDelaySeconds": 5, "failureThreshold": 2},
         "startupProbe": {"grpc": {"port": 9000}, "periodSeconds": 2, "failureThreshold": 10}}]}}
    rev = parse([SourceFile("g.yaml", yaml.safe_dump(doc).encode())])
    (w,) = [o for o in rev.objects if hasattr(o, "template")]
    assert w.template.containers[0].liveness_probe == Probe(action="grpc", port=9000, initial_delay_seconds=5,
                                                            failure_threshold=2)
    node = desired.compile_node(rev, NodeConfig("local"), (NodeConfig("local"),))
    (cs,) = node.workloads[0].pods[0].containers
    assert cs.health_cmd is None and cs.liveness is None
    assert liveness.from_label(cs.labels) == (Probe(action="grpc", port=9000, failure_threshold=2), max(5, 2 * 10), 30)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, health.HealthServicer]]:
    """A real gRPC server with the standard health service on a free loopback port."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield port, servicer
    srv.stop(0)


def _started(agent: Agent) -> tuple[str, int]:
    (pod,) = agent.nodes["n"].read_pods().values()
    (c,) = pod.containers
    assert c.running, c.state
    return c.id, c.started_at


def test_the_monitor_restarts_a_real_container_whose_grpc_health_stops_serving(
        server: tuple[int, health.HealthServicer], clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    """A hostNetwork pod shares the node's network namespace, where this test's real gRPC health server listens;
    the agent's monitor probes it from outside the container through the node's dialer. While SERVING nothing
    happens; once NOT_SERVING, failureThreshold (2) failures in a row restart the same container (a new start
    time in Podman), and the failures and the restart are logged with the probe's answer."""
    port, servicer = server
    pod = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "live"}, "spec": {
        "hostNetwork": True, "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "c", "image": WEB1, "command": ["sleep", "3600"],
                        "livenessProbe": {"grpc": {"port": port}, "periodSeconds": 1, "failureThreshold": 2}}]}})
    cfg = from_mapping({"source": {"url": git_remote.url}, "nodes": [{"name": "n", "url": clean_podman.url}],
                        "stateDir": str(tmp_path / "state"), "policy": {"allowHostNetwork": True}})
    git_remote.write("live.yaml", pod)
    git_remote.commit_and_push("grpc liveness")
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    events: list[tuple[str, dict[str, Any]]] = []
    agent = Agent(cfg)
    try:
        out = agent.sync()
        assert out.result == "applied", out.error
        cid, started = _started(agent)
        inspected = agent.nodes["n"].inspect_container(cid) or {}
        assert not (inspected.get("Config") or {}).get("Healthcheck")  # no Podman healthcheck for it
        monitor = liveness.Monitor(agent.nodes, lambda event, level="info", **f: events.append((event, f)))
        for _ in range(3):
            monitor.tick()
            time.sleep(1.05)
        assert monitor.restarts == 0 and not events, events
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        deadline = time.monotonic() + 15
        while monitor.restarts == 0 and time.monotonic() < deadline:
            monitor.tick()
            time.sleep(0.5)
        assert monitor.restarts == 1, events
        new_id, new_start = _started(agent)
        assert new_id == cid and new_start > started
        names = [e for e, _ in events]
        assert names == ["liveness.failed", "liveness.failed", "liveness.restart"], events
        assert events[-1][1]["output"] == f"grpc 127.0.0.1:{port}: status NOT_SERVING"
    finally:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        agent.close()


def test_the_daemon_runs_the_monitor(server: tuple[int, health.HealthServicer], clean_podman: Any,
                                     git_remote: Any, tmp_path: Path) -> None:
    """`gitops-agent run` probes gRPC liveness on its own: once the health server stops serving, the daemon
    logs `liveness.restart` and Podman shows the container started again."""
    import json
    import signal
    import subprocess
    import sys

    from gitops_agent.podman import Node

    port, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    git_remote.write("live.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d"},
        "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 0, "containers": [
            {"name": "c", "image": WEB1, "command": ["sleep", "3600"],
             "livenessProbe": {"grpc": {"port": port}, "periodSeconds": 1, "failureThreshold": 1}}]}}))
    git_remote.commit_and_push("grpc liveness")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": git_remote.url, "interval": "1h"},
                                   "nodes": [{"name": "n", "url": clean_podman.url}],
                                   "stateDir": str(tmp_path / "state"), "policy": {"allowHostNetwork": True}}))
    log = tmp_path / "agent.log"
    node = Node("n", clean_podman.url)
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gitops_agent", "run", "-c", str(cfg), "--log-format", "json"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        def events() -> list[str]:
            return [json.loads(line)["event"] for line in log.read_text().splitlines() if line.startswith("{")]

        def running() -> list[int]:
            return [c.started_at for p in node.read_pods().values() for c in p.containers if c.running]

        deadline = time.monotonic() + 60
        while not running() and time.monotonic() < deadline:
            time.sleep(0.5)
        (started,) = running()
        time.sleep(2.5)  # a few probes while SERVING
        assert "liveness.restart" not in events()
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        deadline = time.monotonic() + 20
        while "liveness.restart" not in events() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "liveness.restart" in events(), log.read_text()[-2000:]
        deadline = time.monotonic() + 10
        while running() == [started] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert running() and running()[0] > started
    finally:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        node.close()


def test_a_node_that_does_not_answer_is_logged_once_and_read_again_later(tmp_path: Path) -> None:
    """A node whose Podman socket is gone (a real Node on a missing socket): one `liveness.unavailable` however
    many ticks, and with no gRPC liveness probe seen, the next read only IDLE_READ seconds later."""
    from gitops_agent.podman import Node

    now = [1000.0]
    events: list[str] = []
    node = Node("gone", f"unix://{tmp_path / 'missing.sock'}", timeout=2)
    try:
        monitor = liveness.Monitor({"gone": node}, lambda event, level="info", **f: events.append(event),
                                   clock=lambda: now[0])
        monitor.tick()
        reads = node.reads
        monitor.tick()  # within IDLE_READ: no read at all
        assert node.reads == reads
        for _ in range(3):
            now[0] += liveness.IDLE_READ
            monitor.tick()
        assert node.reads > reads and events == ["liveness.unavailable"]
    finally:
        node.close()


def test_with_restart_policy_never_a_failed_probe_stops_the_container(
        server: tuple[int, health.HealthServicer], clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    """As the kubelet does for restartPolicy Never: the container is stopped after failureThreshold failures and
    stays stopped (`liveness.stop`), it is not restarted."""
    port, servicer = server
    git_remote.write("never.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "n1"},
        "spec": {"hostNetwork": True, "terminationGracePeriodSeconds": 0, "restartPolicy": "Never", "containers": [
            {"name": "c", "image": WEB1, "command": ["sleep", "3600"],
             "livenessProbe": {"grpc": {"port": port, "service": "never"}, "periodSeconds": 1,
                               "failureThreshold": 1}}]}}))
    git_remote.commit_and_push("grpc liveness, restartPolicy Never")
    cfg = from_mapping({"source": {"url": git_remote.url}, "nodes": [{"name": "n", "url": clean_podman.url}],
                        "stateDir": str(tmp_path / "state"), "policy": {"allowHostNetwork": True}})
    servicer.set("never", health_pb2.HealthCheckResponse.SERVING)
    events: list[str] = []
    agent = Agent(cfg)
    try:
        assert agent.sync().result == "applied"
        monitor = liveness.Monitor(agent.nodes, lambda event, level="info", **f: events.append(event))
        servicer.set("never", health_pb2.HealthCheckResponse.NOT_SERVING)
        deadline = time.monotonic() + 15
        while monitor.restarts == 0 and time.monotonic() < deadline:
            monitor.tick()
            time.sleep(0.5)
        assert events == ["liveness.failed", "liveness.stop"]
        (pod,) = agent.nodes["n"].read_pods().values()
        assert [c.state for c in pod.containers] == ["exited"]
    finally:
        agent.close()
