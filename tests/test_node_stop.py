"""Real Podman: the agent's stop calls honour the timeout they ask for, even for a process that ignores SIGTERM.

libpod 4.3.1 reads a container stop's timeout from `timeout` (the Docker API's `t` is ignored), and takes a pod
stop's `t=0` for "each container's own grace period": a forced removal (a half-built pod, a rebuild) of a pod whose
grace period is long waited that long. Each container here runs `sleep` as its PID 1, which ignores SIGTERM, and has
a grace period (stop timeout) of 300 s, far longer than the 60 s the agent's call waits for Podman's answer: had
the timeout asked for been ignored, the call would fail with a timeout.
"""

from __future__ import annotations

from typing import Any

from podman_env import WEB1

from gitops_agent.podman import Node


def test_a_forced_removal_and_a_container_stop_do_not_wait_for_the_grace_period(clean_podman: Any) -> None:
    svc = clean_podman
    for pod in ("forced", "stopped"):
        svc.podman("pod", "create", "--name", pod)
        svc.podman("run", "-d", "--pod", pod, "--name", f"{pod}-main", "--stop-timeout", "300", WEB1, "sleep", "1000")
    node = Node("n", svc.url)
    try:
        node.remove_pod("forced", 0)
        assert svc.podman("pod", "exists", "forced", check=False).returncode == 1
        node.stop_container("stopped-main", 1)
        state = svc.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "stopped-main").stdout
        assert state.split() == ["exited", "137"]  # SIGKILL after the 1 s asked for
        svc.podman("pod", "create", "--name", "created")  # made, never started (a half-built pod): nothing to kill
        svc.podman("create", "--pod", "created", "--name", "created-main", WEB1, "sleep", "1000")
        node.remove_pod("created", 0)
        assert svc.podman("pod", "exists", "created", check=False).returncode == 1
        node.remove_pod("gone", 0)  # not there at all: nothing to do, no error
    finally:
        node.close()
