"""httpGet/tcpSocket probes from outside the container (netprobe over a dialer), against real HTTP(S)
servers on loopback; the dialer is `dial.RemoteDialer` over `socket.create_connection` (what an SSH
transport's `open_tcp` would be), so the pod's "address" is 127.0.0.1."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from gitops_agent import netprobe
from gitops_agent.dial import RemoteDialer, Sandbox
from gitops_agent.model import Probe


class Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str]]] = {}
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        status, headers = self.routes.get(self.path, (404, {}))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def serve(tls: ssl.SSLContext | None = None) -> tuple[http.server.ThreadingHTTPServer, int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


@pytest.fixture
def web() -> Iterator[int]:
    Handler.routes, Handler.seen = {}, []
    srv, port = serve()
    yield port
    srv.shutdown()
    srv.server_close()


class Wrapped:
    """A stream that is not a socket (as an SSH channel is): recv/sendall/close only."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def dialer(wrap: bool = False) -> RemoteDialer:
    def open_tcp(host: str, port: int, timeout: float) -> Any:
        sock = socket.create_connection((host, port), timeout)
        return Wrapped(sock) if wrap else sock
    return RemoteDialer(lambda pod: Sandbox(0, "127.0.0.1"), open_tcp)


def http_probe(port: int, path: str = "/", **kw: Any) -> Probe:
    return Probe("httpGet", port=port, path=path, **kw)


def test_status_200_to_399_is_success_and_other_statuses_fail_with_the_status(web: int) -> None:
    """Success is 200-399 (a 3xx without Location is not followed), anything else fails naming the status."""
    Handler.routes = {"/ok": (200, {}), "/nc": (304, {}), "/bad": (500, {})}
    assert netprobe.check(dialer(), "p", http_probe(web, "/ok")) == (0, f"GET http://127.0.0.1:{web}/ok: HTTP 200")
    assert netprobe.check(dialer(), "p", http_probe(web, "/nc"))[0] == 0
    code, out = netprobe.check(dialer(), "p", http_probe(web, "/bad"))
    assert code == 1 and out == f"GET http://127.0.0.1:{web}/bad: HTTP 500 (success is 200-399)"


def test_headers_host_override_and_kubelet_defaults_are_sent(web: int) -> None:
    """httpHeaders are sent, a Host header replaces the Host, User-Agent and Accept default as the kubelet's."""
    Handler.routes = {"/h": (200, {})}
    probe = http_probe(web, "/h", headers=(("Host", "app.example"), ("X-Probe", "yes")))
    assert netprobe.check(dialer(), "p", probe)[0] == 0
    seen = Handler.seen[-1]
    assert seen["host"] == "app.example" and seen["x-probe"] == "yes"
    assert seen["user-agent"] == netprobe.USER_AGENT and seen["accept"] == "*/*"
    assert netprobe.check(dialer(), "p", http_probe(web, "/h", headers=(("User-Agent", "mine"),)))[0] == 0
    assert Handler.seen[-1]["user-agent"] == "mine" and Handler.seen[-1]["host"] == f"127.0.0.1:{web}"


def test_redirects_followed_on_the_same_host_and_not_to_another_host(web: int) -> None:
    """Same host name (another port too) is followed; another host ends the probe as a success with a warning;
    a redirect loop fails after 10 redirects, as the kubelet does."""
    other, other_port = serve()
    try:
        Handler.routes = {
            "/a": (302, {"Location": "/b"}),
            "/b": (301, {"Location": f"http://127.0.0.1:{other_port}/c"}),
            "/c": (500, {}),
            "/away": (302, {"Location": f"http://localhost:{web}/c"}),
            "/loop": (302, {"Location": "/loop"}),
        }
        code, out = netprobe.check(dialer(), "p", http_probe(web, "/a"))
        assert code == 1 and out == f"GET http://127.0.0.1:{other_port}/c: HTTP 500 (success is 200-399)"
        assert [s["path"] for s in Handler.seen] == ["/a", "/b", "/c"]
        code, out = netprobe.check(dialer(), "p", http_probe(web, "/away"))
        assert code == 0 and "probe terminated redirects" in out and "localhost" in out
        assert Handler.seen[-1]["path"] == "/away"  # not followed
        code, out = netprobe.check(dialer(), "p", http_probe(web, "/loop"))
        assert code == 1 and out.endswith("stopped after 10 redirects")
        assert sum(s["path"] == "/loop" for s in Handler.seen) == 11
    finally:
        other.shutdown()
        other.server_close()


def test_https_is_not_verified_and_works_over_a_stream_that_is_not_a_socket(tmp_path: Path) -> None:
    """scheme HTTPS against a self-signed certificate succeeds (no verification, as the kubelet), also over
    a bridged channel (what an SSH transport gives)."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=test"], check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    Handler.routes, Handler.seen = {"/s": (200, {})}, []
    srv, port = serve(ctx)
    try:
        for wrap in (False, True):
            assert netprobe.check(dialer(wrap), "p", http_probe(port, "/s", scheme="HTTPS")) == (
                0, f"GET https://127.0.0.1:{port}/s: HTTP 200")
        code, out = netprobe.check(dialer(), "p", http_probe(port, "/s"))  # plain HTTP to a TLS port
        assert code == 1 and out.startswith(f"GET http://127.0.0.1:{port}/s: ")
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_hung_server_times_out_and_tcp_socket_reports_open_or_refused() -> None:
    """A server that accepts but never answers is a timeout (None) within timeoutSeconds; tcpSocket succeeds
    on an open port and fails naming the refusal on a closed one."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    port = hung.getsockname()[1]
    try:
        code, out = netprobe.check(dialer(), "p", http_probe(port, "/", timeout_seconds=1))
        assert code is None and out == f"GET http://127.0.0.1:{port}/: no answer within 1s"
        opened = (0, f"tcp 127.0.0.1:{port}: connection opened")
        assert netprobe.check(dialer(), "p", Probe("tcpSocket", port=port)) == opened
    finally:
        hung.close()
    code, out = netprobe.check(dialer(), "p", Probe("tcpSocket", port=port))
    assert code == 1 and out == f"dial tcp 127.0.0.1:{port}: connection refused"


def test_netns_dialer_reports_a_gone_pod_and_connects_inside_a_live_namespace() -> None:
    """NetnsDialer makes its socket in /proc/<pid>/ns/net: with this process's own pid that is our namespace
    (a real setns round trip); a pid that does not exist, or whose cgroup does not name the pod's infra container
    (a socket forwarded from another machine), is a DialError with the reason, never a traceback."""
    import os

    from gitops_agent.dial import DialError, NetnsDialer
    srv, port = serve()
    try:
        Handler.routes = {"/": (200, {})}
        d = NetnsDialer(lambda pod: Sandbox(os.getpid(), "127.0.0.1"))
        assert netprobe.check(d, "p", http_probe(port)) == (0, f"GET http://127.0.0.1:{port}/: HTTP 200")
        gone = NetnsDialer(lambda pod: Sandbox(2 ** 22 + 1, "10.0.0.9"))
        with pytest.raises(DialError, match=r"pod p's infra process \(pid 4194305\) is not on the agent's host"):
            gone.dial("p", "10.0.0.9", 80, 1)
        assert netprobe.check(gone, "p", Probe("tcpSocket", port=80))[0] == 1
        elsewhere = NetnsDialer(lambda pod: Sandbox(os.getpid(), "127.0.0.1", "f" * 64))  # not our cgroup
        code, out = netprobe.check(elsewhere, "p", http_probe(port))
        assert code == 1 and f"pod p's infra process (pid {os.getpid()}) is not on the agent's host" in out
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_transport_decides_the_dialer() -> None:
    """unix:// (the agent is on the node's host) probes from the pod's namespace; tcp:// and ssh:// have no
    dialer (in-container fallback) until their transport provides one."""
    from gitops_agent.dial import NetnsDialer
    from gitops_agent.podman import Node

    assert isinstance(Node("a", "unix:///run/podman/podman.sock").dialer, NetnsDialer)
    assert isinstance(Node("b", "http+unix:///run/podman/podman.sock").dialer, NetnsDialer)
    assert Node("c", "tcp://127.0.0.1:1").dialer is None
