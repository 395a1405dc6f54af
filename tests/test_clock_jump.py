"""A wall-clock step of one hour, forward and backward, in the middle of a real rollout on real Podman
(`tests/clock_entry.py` steps `time.time` of the agent process as NTP would; the monotonic clock runs on)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.status import status
from podman_env import HTTPD, WEB1, WEB2

ENTRY = Path(__file__).resolve().parent / "clock_entry.py"
REPO_ROOT = ENTRY.parent.parent
NS = "clockjump"
HOUR = 3600
DEADLINE = 20  # progressDeadlineSeconds: a wall-clock deadline would fail at once after the forward step


def revision(image: str) -> str:
    pod = {"terminationGracePeriodSeconds": 1, "containers": [{
        "name": "web", "image": image, "command": HTTPD,
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}
    web = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
           "spec": {"replicas": 1, "minReadySeconds": 2, "progressDeadlineSeconds": DEADLINE,
                    "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod}}}
    return yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, web])


Run = tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], float]


def roll_with_a_step(cfg: Path, offset: Path, jump: int) -> Run:
    """`sync` through the fake-time hook; the wall clock steps by `jump` s once the node step has begun."""
    offset.write_text("0")
    t0 = time.monotonic()
    argv = [sys.executable, str(ENTRY), str(offset), "sync", "--config", str(cfg), "--log-format", "json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    events, lines = [], []
    assert proc.stderr is not None
    for line in proc.stderr:  # the agent's event lines, as they come
        lines.append(line)
        event = json.loads(line) if line.startswith("{") else {}
        events.append(event)
        if event.get("event") == "rollout.node":
            offset.write_text(str(jump))
    out, _ = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(lines)), events, time.monotonic() - t0


def test_a_one_hour_clock_step_mid_rollout_neither_fails_nor_stretches_it(clean_podman: Any, git_remote: Any,
                                                                           tmp_path: Path) -> None:
    svc, repo = clean_podman, git_remote
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": repo.url, "path": "apps"},
                                   "nodes": [{"name": "local", "url": svc.url}],
                                   "stateDir": str(tmp_path / "state"), "readyTimeout": "60s"}))
    repo.write("apps/all.yaml", revision(WEB1))
    repo.commit_and_push("web 1")
    agent = Agent(config_mod.load(str(cfg)), lambda *a, **k: None)
    try:
        first = agent.sync()
        assert first.result == "applied", first.error
    finally:
        agent.close()
    for jump, image in ((+HOUR, WEB2), (-HOUR, WEB1)):
        repo.write("apps/all.yaml", revision(image))
        head = repo.commit_and_push(f"web on {image}")
        run, events, took = roll_with_a_step(cfg, tmp_path / "offset", jump)
        names = [e.get("event") for e in events]
        assert run.returncode == 0, f"jump {jump:+d}: {run.stderr[-3000:]}"
        assert "applied" in run.stdout and head in run.stdout, run.stdout
        assert "rollout.node" in names and "rollout.node.failed" not in names, names
        (end,) = [e for e in events if e.get("event") == "rollout.end"]
        assert end["phase"] == "complete" and end["reason"] == "RolloutComplete"
        (done,) = [e for e in events if e.get("event") == "rollout.node.done"]
        # not stretched: the step took less than its own progress deadline, nowhere near the hour (monotonic)
        assert done["seconds"] < DEADLINE and took < DEADLINE + 30, (jump, done, took)
        (sync,) = [e for e in events if e.get("event") == "sync"]
        assert sync["seconds"] < DEADLINE + 30 and sync["reason"] == "Applied"
        running = json.loads(svc.podman("ps", "--format", "json").stdout or "[]")
        images = {c["Image"] for c in running if not c.get("IsInfra")}
        assert images == {image}
    agent = Agent(config_mod.load(str(cfg)), lambda *a, **k: None)
    try:
        st = status(agent)
        assert st["condition"] == "Ready" and st["reason"] == "Applied", st["message"]
    finally:
        agent.close()
