"""Maintenance windows on real Git and real Podman: a closed window holds a new revision while
drift of the running one is repaired; when the window opens, the revision rolls out.

The window is a deny window over the current minute (cron has minute resolution): it ends a few
seconds after the held pass, so the test waits only those seconds."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent.history import History
from gitops_agent.web import page
from test_e2e import Cli, app_containers, pod_hashes
from podman_env import WEB1, WEB2

NS = f"win{os.getpid()}"


def deployment(image: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: ["sleep", "1000"]
"""


def write_config(path: Path, source: dict[str, Any], node_url: str, state: Path, open_in: float) -> float:
    """The agent config with a deny window over the current UTC minute, ending `open_in` seconds from now;
    returns that end (epoch seconds)."""
    now = datetime.now(timezone.utc)
    start = now.replace(second=0, microsecond=0)
    end = now.timestamp() + open_in
    path.write_text(yaml.safe_dump({
        "source": source, "nodes": [{"name": "local", "url": node_url}], "stateDir": str(state),
        "readyTimeout": "30s",
        "schedule": {"timeZone": "UTC", "deny": [
            {"cron": f"{start.minute} {start.hour} {start.day} {start.month} *",
             "duration": f"{int(end - start.timestamp()) + 1}s"}]},
    }))
    return end


def test_a_closed_window_holds_a_new_revision_while_drift_is_repaired_then_it_rolls(
        clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc, repo = clean_podman, git_remote
    cfg, state = tmp_path / "agent.yaml", tmp_path / "state"
    source = {"url": repo.url, "branch": "main", "path": "apps", "interval": "5s"}
    cli = Cli(capsys, cfg)
    write_config(cfg, source, svc.url, state, 120)
    repo.write("apps/ns.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n")
    repo.write("apps/web.yaml", deployment(WEB1))
    repo.commit_and_push("web v1")

    # the window is closed: a plain sync holds even the first revision; break-glass rolls it out
    code, out, err = cli("sync")
    assert code == 1 and "waiting for window" in err and "--ignore-window" in err, (out, err)
    assert app_containers(svc) == {}
    code, out, err = cli("sync", "--ignore-window")
    assert code == 0, err
    v1 = pod_hashes(svc)
    assert len(v1) == 1
    h = History(state)
    try:
        assert h.rollouts(1)[0]["ignored_window"] == ["local"]  # the override is in the history
    finally:
        h.close()
    code, out, err = cli("history")
    assert code == 0 and "git --ignore-window" in out, out

    repo.write("apps/web.yaml", deployment(WEB2))
    c2 = repo.commit_and_push("web v2")
    (name,) = app_containers(svc)
    svc.podman("rm", "-f", name)  # drift: the running revision's container is gone
    opens = write_config(cfg, source, svc.url, state, 8)
    code, out, err = cli("sync")
    assert code == 1 and "waiting for window" in err, (out, err)
    assert pod_hashes(svc) == v1  # drift repaired with the running revision; v2 not started
    code, out, err = cli("status", "-o", "json")
    st = json.loads(out)
    assert st["reason"] == "WaitingForWindow" and "waiting for window (opens" in st["message"], st["message"]
    (held,) = st["rollout"]["nodes"]
    assert held["status"] == "window" and held["window"].startswith("waiting for window (opens "), held
    assert f"<b>local</b>: {held['window']}" in page(st, [], [], time.time(), time.time())  # the status page
    code, out, err = cli("status")
    assert code == 0 and f"local        window             {held['window'][:30]}" in out, out

    time.sleep(max(0.0, opens - time.time()) + 1)
    code, out, err = cli("sync")
    assert code == 0, err
    assert f"main@sha1:{c2}" in out
    v2 = pod_hashes(svc)
    assert len(v2) == 1 and v2 != v1
    images = {c["Image"] for c in app_containers(svc).values()}
    assert images == {WEB2}
