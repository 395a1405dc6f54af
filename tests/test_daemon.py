"""`gitops-agent run` as a real process: watches a local repository, syncs a commit
within seconds (not at the next 10-minute poll), and exits cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gitrepo import git
from podman_env import WEB1

POD = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: solo
  labels: {{app: solo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {WEB1}
      command: ["sleep", "1000"]
"""


def managed(svc: Any) -> list[dict[str, Any]]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return [c for c in json.loads(out or "[]") if not c.get("IsInfra")]


def test_run_syncs_a_local_commit_quickly_and_stops_on_sigterm(clean_podman: Any, tmp_path: Path) -> None:
    """A commit in a watched local repository is applied long before the poll interval; SIGTERM exits 0."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "README.md").write_text("empty for now\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "init", cwd=repo)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": str(repo), "interval": "10m"},
        "nodes": [{"name": "local", "url": clean_podman.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }))
    log = (tmp_path / "agent.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "gitops_agent", "run", "--config", str(cfg), "--log-format", "json"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and '"event": "sync"' not in Path(log.name).read_text():
            time.sleep(0.2)
        assert '"event": "sync"' in Path(log.name).read_text(), Path(log.name).read_text()
        assert managed(clean_podman) == []

        (repo / "pod.yaml").write_text(POD)
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", "add solo", cwd=repo)
        committed = time.monotonic()
        while time.monotonic() - committed < 20 and not managed(clean_podman):
            time.sleep(0.2)
        took = time.monotonic() - committed
        pods = managed(clean_podman)
        assert [c["Labels"]["io.gitops-agent.name"] for c in pods] == ["solo"], Path(log.name).read_text()
        assert took < 15  # the poll interval is 10 minutes: only the watcher explains this

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lines = [json.loads(line) for line in Path(log.name).read_text().splitlines() if line.startswith("{")]
        events = [entry["event"] for entry in lines]
        assert "watch" in events and events[-1] == "stopped"
        assert any(e["event"] == "sync" and e["result"] == "applied" for e in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_a_reconcile_request_during_a_pass_runs_another_pass_right_after_it() -> None:
    """`gitops-agent reconcile` while a pass runs is not lost: the scheduler would skip a second instance of the
    running job, and the pass's own next-interval job would replace it; the daemon runs a pass right after instead.
    (Scheduler started paused: nothing runs, the job it would run next is read from it.)"""
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from gitops_agent.daemon import Daemon

    class Agent:
        cfg = SimpleNamespace(source=SimpleNamespace(interval=3600.0))
        nodes: dict[str, object] = {}

        def __init__(self) -> None:
            self.daemon: Daemon | None = None

        def batch_due(self) -> None:  # no Job or CronJob to wake for
            return None

        def polled_at(self) -> float | None:
            return None

        def sync(self, poll: bool = True) -> object:
            assert self.daemon is not None
            self.daemon.wake()  # the request arrives mid-pass
            return SimpleNamespace(ok=True, waiting=False, result="in-sync", target="r", head="r", error="")

    agent = Agent()
    daemon = Daemon(agent, lambda *a, **k: None)  # type: ignore[arg-type]
    daemon.informers = {"started": None}  # type: ignore[dict-item]  # no watch: nothing to start after the pass
    agent.daemon = daemon
    daemon.scheduler.start(paused=True)
    try:
        daemon._pass()
        run_at = daemon.scheduler.get_job("sync").next_run_time.replace(tzinfo=None)
        assert run_at - datetime.now() < timedelta(seconds=5), run_at  # not the one-hour interval
        daemon.schedule(3600)
        daemon.wake()  # outside a pass: at once
        run_at = daemon.scheduler.get_job("sync").next_run_time.replace(tzinfo=None)
        assert run_at - datetime.now() < timedelta(seconds=5), run_at
    finally:
        daemon.scheduler.shutdown(wait=False)
