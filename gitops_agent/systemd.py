"""sd_notify(3) without a dependency: one datagram to $NOTIFY_SOCKET.

systemd sets NOTIFY_SOCKET for a Type=notify service (a path, or an abstract
socket name starting with '@') and WATCHDOG_USEC (with WATCHDOG_PID) when the
unit has WatchdogSec=. Outside systemd neither is set and every call here is a
no-op, so `gitops-agent run` behaves the same in a terminal.
"""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send "KEY=value" lines (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1) to systemd.
    True when sent; False when not under systemd or the send failed (never raises:
    a lost notification must not stop the agent)."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr or not fields:
        return False
    if addr.startswith("@"):  # abstract namespace: a leading NUL byte
        addr = "\0" + addr[1:]
    message = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message, addr)
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when systemd does not watch this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):  # meant for another process (e.g. a parent shell)
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1e6 if value > 0 else None
