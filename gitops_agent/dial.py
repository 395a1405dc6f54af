"""Dialers: how the agent opens a TCP stream to a pod's address, as seen from the pod's node.

Sits under `netprobe` (httpGet/tcpSocket probes run from outside the container,
as the kubelet does) and beside `podman` (which tells a dialer where a pod's
network lives: `Sandbox`). One dialer per node, chosen by its transport:

- `NetnsDialer` (unix:// nodes: the agent runs on the node's host). A short
  thread enters the pod's network namespace (`/proc/<infra pid>/ns/net`, with
  setns(2)), creates the socket there and switches back; the socket stays in the
  pod's namespace, so it reaches the pod's own address (and 127.0.0.1 of the
  pod) even when the node's Podman service runs in a network or mount namespace
  of its own (it only needs the host's /proc and CAP_SYS_ADMIN, i.e. root).
- `RemoteDialer`: any node where something on the node can open the connection
  for the agent, given as an `open_tcp(host, port, timeout)` callable (an SSH
  transport's direct-tcpip channel). The pod's address is the pod's IP on its
  Podman network, which the node reaches. A channel that is not a real socket
  is `bridge`d to one, so TLS and http.client work over it.
- None (tcp:// nodes; ssh:// until its transport provides `open_tcp`): the agent
  cannot reach the pod, and httpGet/tcpSocket probes fall back to a script run
  inside the container (`desired.probe_command`).

Every failure is a `DialError` with a sentence (never a traceback). Must not
speak HTTP (that is `netprobe`) or decide what a probe result means (`probes`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .errors import NodeError

_CLONE_NEWNET = 0x40000000
_CACHE_LIMIT = 256  # pods whose sandbox a NetnsDialer remembers


@dataclass(frozen=True)
class Sandbox:
    """Where a pod's network lives on its node: the infra container's host PID and the pod's IP
    ("" on the host network, where the pod's own address is the node's 127.0.0.1); `container` is the
    infra container's ID, which its process's cgroup names (checked, so that a node whose Podman socket
    is forwarded from another machine never makes the agent enter an unrelated local process)."""

    pid: int
    ip: str
    container: str = ""


class DialError(Exception):
    """The connection could not be opened (refused, no such pod): a failed probe run."""


class DialTimeout(DialError):
    """Nothing answered within the probe's timeout."""


class Dialer(Protocol):
    """Opens a connected TCP stream socket to `host`:`port` as seen from pod `pod`'s node;
    `address(pod)` is the pod's own address (a probe without `host`). `mode` names the way, for `status`."""

    mode: str

    def address(self, pod: str) -> str: ...

    def dial(self, pod: str, host: str, port: int, timeout: float) -> socket.socket: ...


SandboxOf = Callable[[str], Sandbox]  # pod name -> its sandbox (Node.pod_sandbox); raises DialError


class NetnsDialer:
    """Connects from inside the pod's network namespace (the agent is on the node's host)."""

    mode = "agent (pod network namespace)"

    def __init__(self, sandbox_of: SandboxOf) -> None:
        self._sandbox_of = sandbox_of
        self._cache: dict[str, Sandbox] = {}
        self._lock = threading.Lock()

    def _sandbox(self, pod: str) -> Sandbox:
        with self._lock:
            box = self._cache.get(pod)
        if box is None or not _is_its_process(box):  # gone, or its pid reused by another process
            box = self._sandbox_of(pod)
            if not _is_its_process(box):
                raise DialError(f"pod {pod}'s infra process (pid {box.pid}) is not on the agent's host (it ended, or "
                                "this node's Podman socket is forwarded from another machine: probing from outside "
                                "needs the agent on the node's host)")
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:  # a long-running agent sees many pods come and go
                    self._cache.clear()
                self._cache[pod] = box
        return box

    def address(self, pod: str) -> str:
        return self._sandbox(pod).ip or "127.0.0.1"

    def dial(self, pod: str, host: str, port: int, timeout: float) -> socket.socket:
        try:
            sock = socket_in_netns(self._sandbox(pod).pid)
        except DialError:
            self.forget(pod)  # a restarted pod has a new infra process
            raise
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
        except OSError as e:
            sock.close()
            raise _describe(e, host, port, timeout) from e
        return sock

    def forget(self, pod: str) -> None:
        with self._lock:
            self._cache.pop(pod, None)


class RemoteDialer:
    """Connects through the node (an SSH transport's `open_tcp`) to the pod's IP."""

    mode = "agent (through the node's transport)"

    def __init__(self, sandbox_of: SandboxOf, open_tcp: Callable[[str, int, float], Any]) -> None:
        self._sandbox_of = sandbox_of
        self._open_tcp = open_tcp

    def address(self, pod: str) -> str:
        return self._sandbox_of(pod).ip or "127.0.0.1"

    def dial(self, pod: str, host: str, port: int, timeout: float) -> socket.socket:
        try:
            stream = self._open_tcp(host, port, timeout)
        except NodeError:
            # the transport itself failed (SSH connection lost, forwarding refused): the node's fault, not the pod's
            raise
        except Exception as e:
            raise _describe(e, host, port, timeout) from e
        if isinstance(stream, socket.socket):
            stream.settimeout(timeout)
            return stream
        return bridge(stream, timeout)


def _is_its_process(box: Sandbox) -> bool:
    """True when process `box.pid` on this host is the infra container's (its cgroup names the container)."""
    try:
        with open(f"/proc/{box.pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return box.container in f.read()
    except OSError:
        return False


def socket_in_netns(pid: int) -> socket.socket:
    """A TCP socket created in the network namespace of process `pid` (the calling thread's own
    namespace is never changed: a helper thread switches and switches back)."""
    result: list[Any] = []

    def enter_and_create() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        except OSError as e:
            result.append(DialError(f"cannot open this process's network namespace: {e.strerror}"))
            return
        try:
            try:
                target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            except OSError as e:
                result.append(DialError(f"the pod's network namespace (/proc/{pid}/ns/net) is gone: {e.strerror}"))
                return
            try:
                _setns(target, f"cannot enter the pod's network namespace (/proc/{pid}/ns/net)")
            finally:
                os.close(target)
            try:
                result.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            finally:
                _setns(own, "cannot return to the agent's network namespace")
        except DialError as e:
            result.append(e)
        finally:
            os.close(own)

    t = threading.Thread(target=enter_and_create, name=f"netns-{pid}", daemon=True)
    t.start()
    t.join()
    sock = next((r for r in result if isinstance(r, socket.socket)), None)
    error = next((r for r in result if isinstance(r, DialError)), None)
    if error is not None:
        if sock is not None:
            sock.close()
        raise error
    assert sock is not None
    return sock


_libc: Any = None


def _setns(fd: int, what: str) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        hint = " (the agent must run as root)" if code == errno.EPERM else ""
        raise DialError(f"{what}: {os.strerror(code)}{hint}")


def bridge(stream: Any, timeout: float) -> socket.socket:
    """A real socket whose peer end is pumped to and from `stream` (anything with recv, sendall
    and close, e.g. an SSH channel), so `ssl` and `http.client` can use it."""
    ours, theirs = socket.socketpair()
    ours.settimeout(timeout)

    def pump(read: Callable[[int], bytes], write: Callable[[bytes], Any], done: Callable[[], None]) -> None:
        try:
            while True:
                data = read(65536)
                if not data:
                    break
                write(data)
        except OSError:
            pass
        finally:
            done()

    def close_both() -> None:
        for closer in (stream.close, theirs.close):
            try:
                closer()
            except OSError:
                pass

    threading.Thread(target=pump, args=(theirs.recv, stream.sendall, close_both), daemon=True).start()
    threading.Thread(target=pump, args=(stream.recv, theirs.sendall, close_both), daemon=True).start()
    return ours


def _describe(e: BaseException, host: str, port: int, timeout: float) -> DialError:
    if isinstance(e, DialError):
        return e
    if isinstance(e, (socket.timeout, TimeoutError)):
        return DialTimeout(f"dial tcp {host}:{port}: no answer within {timeout:g}s")
    if isinstance(e, OSError) and e.strerror:
        return DialError(f"dial tcp {host}:{port}: {e.strerror.lower()}")
    return DialError(f"dial tcp {host}:{port}: {e}")
