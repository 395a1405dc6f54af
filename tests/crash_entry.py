"""The crash-safety harness's agent entry point (test only): `python tests/crash_entry.py K <gitops-agent args>`.

Runs `gitops_agent.cli.main` with the given arguments after installing a `Node.on_write` callback that sends
this process SIGKILL right after its K-th state-changing Podman write, summed over every node (K=0: never).
With `store:K` instead, the callback is `History.on_store_write`: SIGKILL right after the K-th store write of
the pass (each rollout checkpoint and the pass's one commit); with `commit:K`, right after the K-th commit only
(checkpoints not counted): between the pass's state change, with the alerts it raised, and their delivery.
`tests/test_crash.py` runs it instead of `gitops-agent`, so production code carries no fault-injection switch.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

from gitops_agent.cli import main
from gitops_agent.history import History
from gitops_agent.podman import Node


def _killer(k: int, only: str = "") -> Callable[..., None]:
    """A callback that SIGKILLs this process on its k-th call (with `only`: its k-th call with that argument)."""
    lock = threading.Lock()  # pods are created (and rollouts checkpointed) from a few threads at once
    count = 0

    def hook(*args: str) -> None:
        nonlocal count
        if only and args[:1] != (only,):
            return
        with lock:
            count += 1
            if count >= k:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def kill_after(k: int) -> None:
    """Install the callback on every Node of this process: SIGKILL after the k-th write (k <= 0: none)."""
    if k > 0:
        Node.on_write = _killer(k)


def kill_after_store(k: int, only: str = "") -> None:
    """SIGKILL right after the k-th store commit or checkpoint (only="commit": the k-th commit; k <= 0: none)."""
    if k > 0:
        History.on_store_write = _killer(k, only)


if __name__ == "__main__":
    point = sys.argv[1]
    if point.startswith("store:"):
        kill_after_store(int(point[len("store:"):]))
    elif point.startswith("commit:"):
        kill_after_store(int(point[len("commit:"):]), "commit")
    else:
        kill_after(int(point))
    sys.exit(main(sys.argv[2:]))
