"""httpGet probe fidelity: the exact script `desired.probe_command` builds, run with each
real tool it may pick (curl, busybox nc, busybox wget, GNU wget) against a real server
in this test that records every request. Every character of the path and headers must
reach the server as written (a fragment is never sent), in exactly one request.

The script runs on the host under busybox `sh` with a PATH holding only the tool under
test, as it would in an image that has only that tool: no container is needed to see
what each tool puts on the wire, and the test takes well under a second per tool.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest

from gitops_agent.desired import probe_command
from gitops_agent.model import Probe

PATH = "/a{b,c}[1-3]/%20x%2F?q=[1]&r={a,b}%25#frag"
SENT = "/a{b,c}[1-3]/%20x%2F?q=[1]&r={a,b}%25"  # everything up to the fragment
HEADERS = (("X-Probe", "{a,b}[1-2] %41&?#"), ("Host", "svc.local"))


class Recorder:
    """A loopback HTTP server that records each request's head and answers 200."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.requests.append(data)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def _tool_dir(tmp_path: Path, tool: str) -> Path:
    """A bin directory with a sh and grep plus only `tool`. busybox's sh runs its own applets
    before PATH, so the GNU tools are run under the host's dash."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox is missing: run bash .ci/setup"
    bin_dir = tmp_path / f"bin-{tool}"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(busybox if tool in ("nc", "bbwget") else "/bin/sh")
    (bin_dir / "grep").symlink_to(busybox)
    if tool in ("nc", "bbwget"):
        (bin_dir / ("wget" if tool == "bbwget" else "nc")).symlink_to(busybox)
    else:
        real = shutil.which(tool)
        assert real, f"{tool} is missing: run bash .ci/setup"
        (bin_dir / tool).symlink_to(real)
    return bin_dir


@pytest.mark.parametrize("tool", ["curl", "nc", "bbwget", "wget"])
def test_the_path_and_headers_reach_the_server_as_written_in_one_request(tool: str, tmp_path: Path) -> None:
    server = Recorder()
    try:
        probe = Probe("httpGet", port=server.port, path=PATH, headers=HEADERS, timeout_seconds=3)
        argv = probe_command(probe)
        bin_dir = _tool_dir(tmp_path, tool)
        run = subprocess.run([str(bin_dir / "sh"), *argv[1:]], env={"PATH": str(bin_dir)}, capture_output=True,
                             timeout=15, text=True)
        assert run.returncode == 0, run.stderr
    finally:
        server.close()
    assert len(server.requests) == 1, server.requests  # no globbing: one request, to the declared path
    head = server.requests[0].decode("latin-1").split("\r\n")
    method, target, version = head[0].split(" ")
    assert method == "GET" and version.startswith("HTTP/1.")
    if tool == "wget":  # GNU wget percent-encodes unsafe characters: the same resource to a decoding server
        assert target != SENT and unquote(target) == unquote(SENT)
    else:
        assert target == SENT
    headers = [line for line in head[1:] if line]
    assert "X-Probe: {a,b}[1-2] %41&?#" in headers
    assert [h for h in headers if h.lower().startswith("host:")] == ["Host: svc.local"]


def test_the_script_uses_curl_without_globbing() -> None:
    script = probe_command(Probe("httpGet", port=80, path="/x{a,b}"))[2]
    assert "curl -fsSkg " in script and "'http://127.0.0.1:80/x{a,b}'" in script
    assert os.path.basename(probe_command(Probe("httpGet", port=80, path="/#only"))[0]) == "sh"
    assert "'http://127.0.0.1:80/'" in probe_command(Probe("httpGet", port=80, path="/#only"))[2]
