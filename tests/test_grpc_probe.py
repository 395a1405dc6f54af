"""`grpc_probe.check` against a real gRPC health server (grpcio's own grpc.health.v1 servicer) on loopback,
over a socket the test connects itself (as the per-node dialer will), and the protobuf framing from literals."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gitops_agent.grpc_probe import check, request_message, response_status


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
