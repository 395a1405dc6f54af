"""Unattended on real Podman (the three-node `fleet`) and real Git: `gitops-agent run` as a process, alerting a
real local webhook receiver (HMAC checked), serving /metrics (parsed with prometheus_client.parser), the
health endpoints and the status page (rendered by a real headless Chromium), woken by `gitops-agent reconcile`;
and, with the receiver down for a whole rollout and the agent killed -9 once, every alert arrives later.

A Secret with a distinctive value is mounted in every pod and printed by the failing readiness probe: it must
appear in no alert, metric, page, /status answer or log line.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gitops_agent import informer
from gitops_agent.control import request
from gitops_agent.notify import verify
from podman_env import WEB1, WEB2
from test_alerts import Receiver, free_port, wait_for
from test_fleet import NAMES, app_containers, image_of, push, workload
from test_git_faults import GitServer

SECRET_VALUE = "Zebra-Quokka-7731-do-not-leak"
HMAC_KEY = b"e2e-hmac-key"
REPO_ROOT = Path(__file__).resolve().parent.parent
CRASH_ENTRY = Path(__file__).resolve().parent / "crash_entry.py"
BAD_READINESS = {"exec": {"command": ["sh", "-c", "echo token=$TOKEN; cat /www/ready-flag"]},
                 "periodSeconds": 1, "failureThreshold": 2}


def secret() -> dict[str, Any]:
    from test_fleet import NS

    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": NS},
            "data": {"token": base64.b64encode(SECRET_VALUE.encode()).decode()}}


def web(image: str, replicas: int = 1, readiness: dict[str, Any] | None = None) -> dict[str, Any]:
    w = workload("web", image, replicas=replicas, readiness=readiness)
    w["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    return w


def config(tmp_path: Path, url: str, fleet: list[Any], hook: str, listen: str) -> Path:
    (tmp_path / "hmac.key").write_bytes(HMAC_KEY + b"\n")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": url, "path": "apps", "interval": "1h"},
        "nodes": [{"name": n, "url": svc.url} for n, svc in zip(NAMES, fleet)],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "60s",
        "notify": {"sinks": [{"name": "ops", "webhook": hook, "secretFile": "hmac.key"}], "retryMax": "1s"},
        "metrics": {"listen": listen},
    }))
    return cfg


class Daemon:
    """`gitops-agent run` (through tests/crash_entry.py: SIGKILL after the k-th Podman write when k > 0)."""

    def __init__(self, cfg: Path, log: Path, kill_after: int | str = 0) -> None:
        self.log = log
        self.out = log.open("a")
        self.proc = subprocess.Popen([sys.executable, str(CRASH_ENTRY), str(kill_after), "run", "-c", str(cfg),
                                      "--log-format", "json"], stdout=self.out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def saw(self, event: str, **fields: Any) -> dict[str, Any] | None:
        return next((e for e in self.events() if e["event"] == event
                     and all(e.get(k) == v for k, v in fields.items())), None)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.out.close()
        return code


def created(svc: Any, image: str) -> float:
    """When the first container of `image` on the node was created (Podman's time, to the nanosecond)."""
    names = [n for n, c in app_containers(svc).items() if c["Image"] == image]
    [inspected] = json.loads(svc.podman("inspect", "--format", "json", names[0]).stdout)
    stamp = inspected["Created"]  # 2026-12-02T01:02:03.123456789Z or with a +00:00 offset
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp.replace("Z", "+00:00"))).timestamp()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(get(base + "/metrics")[1]) for s in f.samples}


def signed(receiver: Receiver) -> list[dict[str, Any]]:
    """Every body the receiver got, each checked against its X-Signature."""
    for headers, body in receiver.received:
        assert verify(HMAC_KEY, body, headers["x-signature"]), headers
    return receiver.bodies()


def chromium(url: str, png: Path) -> str:
    """The DOM Chromium built for `url`, and a screenshot of it at a phone's width (390 px)."""
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: run .ci/setup"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={png.parent / 'chromium'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=60).stdout
    subprocess.run([browser, *flags, f"--screenshot={png}", "--window-size=390,844", url],
                   capture_output=True, timeout=60)
    return dom


def test_a_daemon_alerts_serves_metrics_and_its_page_and_reconciles_now(clean_fleet: list[Any], git_remote: Any,
                                                                         tmp_path: Path) -> None:
    """Canary failure -> exactly rollout.started, rollout.failed, rollout.rolled-back, signed; metrics move;
    `reconcile` starts a pass at once under a one-hour interval; Chromium sees the failed rollout."""
    fleet = clean_fleet
    push(git_remote, "v1", secret(), web(WEB1))
    git = GitServer(git_remote.bare.parent)  # git://: a remote the daemon's file watcher cannot see
    receiver = Receiver()
    listen = f"127.0.0.1:{free_port()}"
    base = f"http://{listen}"
    cfg = config(tmp_path, git.url(), fleet, receiver.url, listen)
    daemon = Daemon(cfg, tmp_path / "agent.log")
    try:
        assert wait_for(lambda: [b for b in receiver.bodies() if b["kind"] == "revision.applied"], 60), daemon.events()
        assert wait_for(lambda: get(base + "/readyz")[0] == 200, 10), get(base + "/readyz")
        assert get(base + "/healthz")[0] == 200
        before = scrape(base)
        def on(node: str) -> tuple[tuple[str, str], ...]:
            return (("kind", "Deployment"), ("name", "web"), ("namespace", web(WEB1)["metadata"]["namespace"]),
                    ("node", node))

        ready = "gitops_agent_workload_ready_pods"
        assert [before[(ready, on(n))] for n in NAMES] == [1, 0, 0]  # one replica: placed on n1
        assert before[("gitops_agent_rollout_phase", (("phase", "complete"),))] == 1

        c2 = push(git_remote, "v2: two replicas", secret(), web(WEB2, replicas=2))
        asked = time.time()
        reconcile = subprocess.run([sys.executable, "-m", "gitops_agent", "reconcile", "-c", str(cfg)],
                                   capture_output=True, text=True, cwd=REPO_ROOT, timeout=30)
        assert reconcile.returncode == 0 and reconcile.stdout.startswith("ok"), reconcile
        assert wait_for(lambda: WEB2 in image_of(fleet[0]), 10)  # the interval is one hour: only the wake explains it
        cli_took = created(fleet[0], WEB2) - asked  # Podman's own clock: the new pod's container was made
        print(f"reconcile command to n1's new container: {cli_took:.2f} s")
        assert wait_for(lambda: daemon.saw("rollout.end", revision=f"main@sha1:{c2}", phase="complete"), 60)
        assert wait_for(lambda: [scrape(base)[(ready, on(n))] for n in NAMES] == [1, 1, 0], 10), scrape(base)
        assert scrape(base)[("gitops_agent_workload_desired_pods", on("n2"))] == 1
        [victim] = app_containers(fleet[1])  # a change by hand on n2: its pod's container removed
        # past the window in which events about an object the agent just wrote count as its own (README, "Live
        # state from Podman's events": a hand change that close to the agent's write is taken for the agent's)
        time.sleep(informer.EXPECTED_FOR + 0.5)
        fleet[1].podman("rm", "-f", victim)
        request(tmp_path / "state")
        drift = wait_for(lambda: [b for b in receiver.bodies() if b["kind"] == "drift.repaired"], 30)
        assert drift and drift[0]["node"] == "n2" and drift[0]["revision"] == f"main@sha1:{c2}", drift
        assert wait_for(lambda: scrape(base).get(("gitops_agent_drift_repairs_total", (("node", "n2"),))) == 1, 10)
        first = len(receiver.received)

        c3 = push(git_remote, "v3: readiness never passes", secret(), web(WEB1, replicas=2, readiness=BAD_READINESS))
        asked = time.time()
        request(tmp_path / "state")  # what `reconcile` sends, without the command's own start-up (about 1 s here)
        assert wait_for(lambda: WEB1 in image_of(fleet[0]), 10)  # the new (failing) template, beside the old pod
        took = created(fleet[0], WEB1) - asked
        assert took < 2, f"reconcile: n1 ran the new commit {took:.2f} s after the request"
        assert wait_for(lambda: any(b["kind"] == "rollout.rolled-back" for b in receiver.bodies()), 90), daemon.events()
        assert wait_for(lambda: get(base + "/readyz")[0] == 503, 10)
        time.sleep(1)  # nothing else is sent for this failure
        alerts = signed(receiver)[first:]
        assert [(a["kind"], a["reason"], a["node"]) for a in alerts] == [
            ("rollout.started", "RolloutStarted", ""),
            ("rollout.failed", "ReadinessProbeFailed", "n1"),
            ("rollout.rolled-back", "RolledBack", ""),
        ], alerts
        assert {a["revision"] for a in alerts} == {f"main@sha1:{c3}"}
        assert alerts[1]["details"]["probe"] == "readiness" and "ready-flag" in alerts[1]["details"]["output"]

        after = scrape(base)
        assert after[("gitops_agent_rollout_phase", (("phase", "rolled-back"),))] == 1
        assert after[("gitops_agent_rollout_phase", (("phase", "complete"),))] == 0
        assert after[("gitops_agent_sync_total", (("result", "failed"),))] >= 1
        assert after[("gitops_agent_sync_total", (("result", "applied"),))] > before[("gitops_agent_sync_total",
                                                                                       (("result", "applied"),))]
        assert after[("gitops_agent_sync_duration_seconds_count", ())] >= 3
        assert after[("gitops_agent_notifications_pending", ())] == 0
        assert all(after[("gitops_agent_node_reachable", (("node", n),))] == 1 for n in NAMES)

        png = tmp_path / "page.png"
        dom = chromium(base + "/", png)
        assert "Stalled" in dom and "rolled-back" in dom and "Last failure" in dom and "readiness" in dom, dom
        assert f"main@sha1:{c3}" in dom and "Deployment/" in dom
        header = png.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", header[16:20])[0] == 390
        assert png.stat().st_size > 5000  # a rendered page, not a blank image

        status = get(base + "/status")[1]
        assert json.loads(status)["failedRevision"]["node"] == "n1"
        for text in [*(b.decode() for _, b in receiver.received), status, get(base + "/metrics")[1], dom,
                     daemon.log.read_text()]:
            assert SECRET_VALUE not in text
        assert "token=[Secret" in alerts[1]["details"]["output"]  # the probe printed it: redacted
    finally:
        code = daemon.stop()
        receiver.close()
        git.close()
    assert code == 0


def test_alerts_of_a_rollout_the_receiver_missed_and_a_kill_9_cut_short_all_arrive(
        clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> None:
    """Receiver down for the whole rollout, the agent SIGKILLed in the middle of it, started again and
    SIGKILLed right after the pass's commit (the rollout's outcome recorded, its alerts not yet delivered):
    the alerts are in the store with the state change they report, and once the receiver is back every
    alert written before the kills and after them arrives, signed, the rollout's completion once."""
    push(git_remote, "v1", secret(), web(WEB1))
    port = free_port()
    cfg = config(tmp_path, git_remote.url, clean_fleet, f"http://127.0.0.1:{port}/hook", "")
    killed = Daemon(cfg, tmp_path / "agent.log", kill_after=4)  # mid-rollout, in n1's step
    assert killed.proc.wait(timeout=60) == -signal.SIGKILL
    killed.out.close()
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        before = {row[0]: json.loads(row[1])["kind"] for row in db.execute("SELECT id, body FROM notify_outbox")}
    assert "rollout.started" in before.values(), before

    committed = Daemon(cfg, tmp_path / "agent.log", kill_after="commit:1")  # right after the pass's commit
    assert committed.proc.wait(timeout=90) == -signal.SIGKILL
    committed.out.close()
    assert committed.saw("rollout.end", phase="complete"), committed.events()
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        applied = db.execute("SELECT value FROM state WHERE key = 'applied_revision'").fetchone()
        pending = {row[0]: json.loads(row[1])["kind"] for row in db.execute("SELECT id, body FROM notify_outbox")}
    assert applied is not None, "the pass's commit recorded the applied revision"
    assert set(before) <= set(pending) and "revision.applied" in pending.values(), pending
    before = pending

    daemon = Daemon(cfg, tmp_path / "agent.log")
    try:
        assert wait_for(lambda: daemon.saw("notify.failed"), 30), "the receiver was down: delivery was tried"
        receiver = Receiver(port)
        try:
            assert wait_for(lambda: {b["kind"] for b in receiver.bodies()} >= {"revision.applied"}, 15)
            time.sleep(0.5)
            bodies = signed(receiver)
        finally:
            receiver.close()
    finally:
        assert daemon.stop() == 0
    got = {b["id"] for b in bodies}
    assert set(before) <= got, "an alert written before the kill was lost"
    assert [b["kind"] for b in bodies].count("revision.applied") == 1
    assert all(SECRET_VALUE not in json.dumps(b) for b in bodies)
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        assert db.execute("SELECT COUNT(*) FROM notify_outbox").fetchone() == (0,)
    assert [image_of(svc) for svc in clean_fleet] == [{WEB1}, set(), set()]  # one replica, on n1
