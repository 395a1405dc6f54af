"""`grpc_probe.check` against a real gRPC health server (grpcio's own grpc.health.v1 servicer) on loopback,
over a socket the test connects itself (as the per-node dialer will), and the protobuf framing from literals."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import yaml

from gitops_agent.agent import Agent
from gitops_agent.config import from_mapping
from gitops_agent.errors import RevisionRejected
from gitops_agent.grpc_probe import check, request_message, response_status
from gitops_agent.manifests import SourceFile, parse
from podman_env import WEB1


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, health.HealthServicer]]:
    """A gRPC server on a free loopback port with the standard health service."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("shop.Cart", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield port, servicer
    srv.stop(0)


def probe(port: int, service: str = "", timeout: float = 2.0) -> tuple[int | None, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        return check(sock, service, timeout)


def test_serving_not_serving_and_unknown_services(server: tuple[int, health.HealthServicer]) -> None:
    """SERVING is success (0); any other status, or a service the server does not know, is a failure (1)."""
    port, servicer = server
    assert probe(port) == (0, "SERVING")
    assert probe(port, "shop.Cart") == (1, "status NOT_SERVING")
    code, output = probe(port, "nope")
    assert code == 1 and output.startswith("gRPC status 5")  # NOT_FOUND
    servicer.set("shop.Cart", health_pb2.HealthCheckResponse.SERVING)
    assert probe(port, "shop.Cart") == (0, "SERVING")


def test_a_server_that_does_not_answer_times_out_and_one_that_closes_fails() -> None:
    """A listener that never answers gives None (timed out); one that closes at once gives 1."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as sock:
            assert check(sock, timeout=0.3) == (None, "timed out after 0.3s")
            peer, _ = silent.accept()
            peer.close()
            code, _ = check(sock, timeout=0.3)
            assert code == 1


def test_health_messages_are_framed_as_grpc_protobuf() -> None:
    """The request matches grpcio's own encoding; responses are decoded field by field."""
    for service in ("", "shop.Cart", "x" * 200):
        encoded = health_pb2.HealthCheckRequest(service=service).SerializeToString()
        assert request_message(service) == b"\x00" + len(encoded).to_bytes(4, "big") + encoded
    for status in (0, 1, 2, 3):
        body = health_pb2.HealthCheckResponse(status=status).SerializeToString()
        assert response_status(b"\x00" + len(body).to_bytes(4, "big") + body) == status
    assert response_status(b"\x01\x00\x00\x00\x00") is None  # compressed: not asked for
    assert response_status(b"\x00\x00\x00\x00\x02\x08") is None  # truncated


def test_grpc_readiness_gates_a_rollout_on_real_podman(server: tuple[int, health.HealthServicer], clean_podman: Any,
                                                       git_remote: Any, tmp_path: Path) -> None:
    """A grpc readinessProbe runs from outside the container, through the node's dialer (a socket made in the
    pod's network namespace): a hostNetwork pod shares the node's, where this test's health server listens.
    NOT_SERVING fails the rollout with the status; SERVING lets the same pod become ready."""
    port, servicer = server

    def pod(service: str) -> str:
        return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "g"}, "spec": {
            "hostNetwork": True, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": WEB1, "command": ["sleep", "3600"],
                            "readinessProbe": {"grpc": {"port": port, "service": service}, "periodSeconds": 1,
                                               "failureThreshold": 2}}]}})

    cfg = from_mapping({"source": {"url": git_remote.url}, "nodes": [{"name": "n", "url": clean_podman.url}],
                        "stateDir": str(tmp_path / "state"), "policy": {"allowHostNetwork": True}})
    servicer.set("shop.Cart", health_pb2.HealthCheckResponse.NOT_SERVING)
    git_remote.write("g.yaml", pod("shop.Cart"))
    git_remote.commit_and_push("grpc readiness, not serving")
    agent = Agent(cfg)
    try:
        out = agent.sync()
        assert out.result == "failed", out.error
        assert "readiness probe failed 2 time(s) in a row" in out.error and "status NOT_SERVING" in out.error
        assert f"grpc 127.0.0.1:{port}" in out.error
        servicer.set("shop.Cart", health_pb2.HealthCheckResponse.SERVING)
        git_remote.write("g.yaml", pod("shop.Cart").replace("periodSeconds: 1", "periodSeconds: 2"))
        git_remote.commit_and_push("grpc readiness, serving")
        out = agent.sync()
        assert out.result == "applied", out.error
    finally:
        agent.close()
    st = status_of_objects(cfg)
    assert {"container": "c", "probe": "readiness", "action": "grpc",
            "runs": "by the agent, from outside the container"} in st


def status_of_objects(cfg: Any) -> list[dict[str, Any]]:
    from gitops_agent.status import status

    agent = Agent(cfg)
    try:
        return [p for o in status(agent)["objects"] for p in o.get("probes", [])]
    finally:
        agent.close()
