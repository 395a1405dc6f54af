"""The daemon's local control socket: `gitops-agent reconcile` wakes a running `run` for an immediate pass.

A Unix socket `<stateDir>/control.sock`, mode 0600 in the 0700 state directory: only its owner (the
agent's user, root on an edge host) can connect, and no network port is opened for it. One request per
connection, one line each way: `reconcile` -> `ok ...`. Must not run a pass itself (the daemon does,
on its own thread) nor read anything from the client but that one line.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Callable

from .errors import AgentError

NAME = "control.sock"


class ControlSocket:
    """Listens on `<state_dir>/control.sock`; calls `on_reconcile()` for each `reconcile` request."""

    def __init__(self, state_dir: Path, on_reconcile: Callable[[], None]) -> None:
        self.path = state_dir / NAME
        self.on_reconcile = on_reconcile
        if self.path.is_socket():
            self.path.unlink()  # left by an agent that was killed: nobody answers on it
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: never, even for a moment, open to others
        try:
            self._sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._sock.listen(4)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(64).decode("ascii", "replace").strip()
                    if line == "reconcile":
                        self.on_reconcile()
                        conn.sendall(b"ok: a pass starts now\n")
                    else:
                        conn.sendall(b"error: unknown request (known: reconcile)\n")
                except OSError:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)
        try:
            self.path.unlink()
        except OSError:
            pass


def request(state_dir: Path, what: str = "reconcile", timeout: float = 5.0) -> str:
    """Send one request to the daemon of `state_dir`; its answer line. AgentError when no daemon answers."""
    path = state_dir / NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(what.encode() + b"\n")
            answer = s.recv(256).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        raise AgentError(f"no running agent: {path} does not exist (is `gitops-agent run` running with this "
                         "stateDir?)") from None
    except OSError as e:
        raise AgentError(f"no running agent answers on {path}: {e.strerror or e}") from None
    if not answer.startswith("ok"):
        raise AgentError(f"the agent refused the request: {answer or 'no answer'}")
    return answer
