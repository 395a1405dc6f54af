"""The crash-safety harness's agent entry point (test only): `python tests/crash_entry.py K <gitops-agent args>`.

Runs `gitops_agent.cli.main` with the given arguments after installing a `Node.on_write` callback that sends
this process SIGKILL right after its K-th state-changing Podman write, summed over every node (K=0: never).
`tests/test_crash.py` runs it instead of `gitops-agent`, so production code carries no fault-injection switch.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from gitops_agent.cli import main
from gitops_agent.podman import Node


def kill_after(k: int) -> None:
    """Install the callback on every Node of this process: SIGKILL after the k-th write (k <= 0: none)."""
    if k <= 0:
        return
    lock = threading.Lock()  # pods are created from a few threads at once
    count = 0

    def on_write(node: str, what: str) -> None:
        nonlocal count
        with lock:
            count += 1
            if count >= k:
                os.kill(os.getpid(), signal.SIGKILL)

    Node.on_write = on_write


if __name__ == "__main__":
    kill_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
