"""Real Podman and real Git: a CronJob fires on its schedule, `concurrencyPolicy: Forbid` skips an overlapping
run, a failed run's output is kept with its Secret value redacted, and `ttlSecondsAfterFinished` removes a
finished run's pods while its record keeps it from running again.

Kubernetes' schedules have five fields (minutes at best), so the schedule's clock is injected
(`Fleet.wall`, the Jobs' and CronJobs' clock): each pass is told the minute it runs at, while the pods run in
real time on a private Podman. The last test runs a real Daemon in real time: no pass driven by hand, only a
constant offset on that clock so the next minute is seconds away; its `batch` wake makes the run."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.cli import main
from gitops_agent.daemon import Daemon
from gitops_agent.status import status
from podman_env import WEB1

SECRET_VALUE = "s3cr3t-never-shown"
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60 + 60 * 60  # a whole minute, well after now: the test's own clock

TICK = f"""\
apiVersion: batch/v1
kind: CronJob
metadata: {{name: tick}}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 20
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
            - name: run
              image: {WEB1}
              command: ["sh", "-c", "echo tick; sleep 4"]
"""
FAIL = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{token: {SECRET_VALUE}}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: fail}}
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 300
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: {WEB1}
          command: ["sh", "-c", "echo token is $TOKEN; exit 4"]
          env: [{{name: TOKEN, valueFrom: {{secretKeyRef: {{name: creds, key: token}}}}}}]
"""


def containers(svc: Any) -> list[dict[str, Any]]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return sorted((c for c in json.loads(out or "[]") if not c.get("IsInfra")), key=lambda c: c["Names"][0])


def wait_exited(svc: Any, name: str, timeout: float = 20) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        found = [c for c in containers(svc) if c["Labels"].get("io.gitops-agent.name") == name]
        if found and all(c["State"] == "exited" for c in found):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name}: still running after {timeout} s")


def test_a_cronjob_fires_on_its_schedule_and_forbid_skips_an_overlapping_run(
        clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Minute 0: first seen, no run. Minute 1: a run (4 s long). Minute 2, while it runs: skipped (Forbid).
    Once it ended, 25 s after minute 2: past startingDeadlineSeconds, still no run. Minute 3: the next run."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "branch": "main", "path": "edge", "interval": "5s"},
        "nodes": [{"name": "local", "url": clean_podman.url}], "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s"}))
    git_remote.write("edge/tick.yaml", TICK)
    git_remote.write("edge/fail.yaml", FAIL)
    git_remote.commit_and_push("a cronjob and a failing job")
    events: list[str] = []
    agent = Agent(config_mod.load(str(cfg)), log=lambda event, level="info", **_: events.append(event))
    clock = [T0 + 5]
    agent.fleet.wall = lambda: clock[0]
    try:
        def sync(at: float) -> None:
            clock[0] = at
            out = agent.sync()
            assert out.ok, out.error

        def ticks() -> list[str]:
            return [c["Names"][0] for c in containers(clean_podman) if c["Labels"]["io.gitops-agent.name"] == "tick"]

        sync(T0 + 5)
        assert ticks() == []  # first seen at minute 0 + 5 s: nothing was due since
        assert agent.batch_due() == 55  # the daemon's wake: at minute 1
        sync(T0 + 60)
        first = f"tick-{int((T0 + 60) // 60)}-0"
        assert ticks() == [f"{first}_run"]
        sync(T0 + 120)  # minute 2 while the first run still runs
        assert ticks() == [f"{first}_run"]
        cron = next(o for o in status(agent)["objects"] if o["name"] == "tick")
        assert cron["state"] == "Active" and "(concurrencyPolicy Forbid)" in cron["cronJob"]["note"], cron
        wait_exited(clean_podman, "tick")
        wait_exited(clean_podman, "fail")
        sync(T0 + 145)  # the run ended; the minute-2 time is 25 s old, past startingDeadlineSeconds 20
        assert ticks() == [f"{first}_run"]
        sync(T0 + 180)
        assert ticks() == [f"{first}_run", f"tick-{int((T0 + 180) // 60)}-0_run"]
        wait_exited(clean_podman, "tick")
        sync(T0 + 185)
        objects = {o["name"]: o for o in status(agent)["objects"] if o["kind"] in ("CronJob", "Job")}
        runs = objects["tick"]["cronJob"]["runs"]
        assert [(r["run"], r["state"], r["exitCodes"]) for r in runs] == [
            (first.rsplit("-", 1)[0], "Complete", []), (f"tick-{int((T0 + 180) // 60)}", "Complete", [])]
        failed = objects["fail"]
        assert (failed["state"], failed["job"]["exitCodes"], failed["job"]["reason"]) == \
            ("Failed", [4], "BackoffLimitExceeded")
        assert "token is [Secret creds key token]" in failed["job"]["output"]
        assert SECRET_VALUE not in json.dumps(status(agent))
        assert "drift.repaired" not in events  # a scheduled run is not drift: no drift alert
        # the Job was seen failed at minute 1: past its ttlSecondsAfterFinished its pod goes, its record stays
        sync(T0 + 60 + 299)
        assert [c["State"] for c in containers(clean_podman) if c["Labels"]["io.gitops-agent.name"] == "fail"] == \
            ["exited"]
        sync(T0 + 60 + 300)
        assert [c for c in containers(clean_podman) if c["Labels"]["io.gitops-agent.name"] == "fail"] == []
        sync(T0 + 60 + 310)
        assert [c for c in containers(clean_podman) if c["Labels"]["io.gitops-agent.name"] == "fail"] == []
        failed = next(o for o in status(agent)["objects"] if o["name"] == "fail")
        assert (failed["state"], failed["job"]["exitCodes"]) == ("Failed", [4])
    finally:
        agent.close()
    capsys.readouterr()
    assert main(["history", "--config", str(cfg), "--output", "json"]) == 0
    shown = capsys.readouterr().out
    runs = {(r["object"], r["phase"]) for r in json.loads(shown)["jobRuns"]}
    # the last pass (minute 6 + 10 s) also started the minute-6 run
    assert runs == {("Job/default/fail", "Failed"), ("CronJob/default/tick", "Complete"),
                    ("CronJob/default/tick", "Active")}
    assert "token is [Secret creds key token]" in shown and SECRET_VALUE not in shown



NOW = f"""\
apiVersion: batch/v1
kind: CronJob
metadata: {{name: now}}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
            - name: run
              image: {WEB1}
              command: ["sh", "-c", "echo now; sleep 1"]
"""
AHEAD = 4.0  # real seconds from the daemon's start to the next minute on the agent's clock: its first pass ends before


def watched(daemon: Daemon, svc: Any, minute: float) -> dict[str, Any]:
    """Runs `daemon` in this (main) thread, for its signal handlers, until 8 s after `minute` (real time), while
    another thread looks, without acting: the scheduler's `batch` and `sync` jobs before the minute, when the
    CronJob's pod appears and exits, and what runs 8 s after the minute."""
    seen: dict[str, Any] = {}

    def job_at(job_id: str) -> float | None:
        job = daemon.scheduler.get_job(job_id)
        return None if job is None or job.next_run_time is None else float(job.next_run_time.timestamp())

    def runs() -> list[dict[str, Any]]:
        return [c for c in containers(svc) if c["Labels"].get("io.gitops-agent.name") == "now"]

    def look() -> None:
        try:
            while time.time() < minute - 0.5 and job_at("batch") is None:
                time.sleep(0.05)
            seen["before"] = (time.time(), job_at("batch"), job_at("sync"), [c["Names"][0] for c in runs()])
            while time.time() < minute + 10 and not runs():
                time.sleep(0.05)
            seen["appeared"] = time.time()
            while time.time() < minute + 10 and not (runs() and all(c["State"] == "exited" for c in runs())):
                time.sleep(0.1)
            seen["exited"] = [(c["Names"][0], c["State"], c["ExitCode"]) for c in runs()]
            time.sleep(max(0.0, minute + 8 - time.time()))  # well after the run: still no other one
            seen["after"] = (job_at("batch"), [c["Names"][0] for c in runs()])
        finally:
            daemon.stop.set()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    eyes = threading.Thread(target=look, daemon=True)
    eyes.start()
    try:
        assert daemon.run() == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        daemon.stop.set()
        eyes.join(timeout=30)
    return seen


def test_the_running_daemon_fires_a_cronjob_in_real_time_by_its_batch_wake(
        clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    """A real Daemon, no pass driven by hand and a poll interval of 5 minutes: the agent's clock is the real one
    plus a constant offset that puts the next minute AHEAD seconds away. The first pass sees the CronJob (no run)
    and schedules the `batch` wake at that minute; the wake's pass makes the run, whose pod runs to completion;
    then the next wake waits for the next minute, with no other run before it."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "branch": "main", "path": "edge", "interval": "300s"},
        "nodes": [{"name": "local", "url": clean_podman.url}], "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s"}))
    git_remote.write("edge/now.yaml", NOW)
    git_remote.commit_and_push("a cronjob every minute")
    agent = Agent(config_mod.load(str(cfg)), log=lambda *a, **k: None)
    minute = time.time() + AHEAD  # the real time of the next minute on the agent's clock
    offset = minute // 60 * 60 + 60 - minute
    agent.fleet.wall = lambda: time.time() + offset  # the only help: a constant offset
    passes: list[float] = []
    real_sync = agent.sync

    def sync(*args: Any, **kwargs: Any) -> Any:
        passes.append(time.time())
        return real_sync(*args, **kwargs)

    agent.sync = sync  # type: ignore[method-assign]  # only records when each pass starts
    seen = watched(Daemon(agent, lambda *a, **k: None), clean_podman, minute)
    print("passes, s after the minute:", [round(t - minute, 2) for t in passes],
          f"run's pod seen: {seen['appeared'] - minute:.2f} s after it")
    first, batch_at, sync_at, before = seen["before"]
    assert passes and passes[0] < minute - 0.5 and before == [], (passes, before)  # first seen: no run yet
    assert batch_at is not None and abs(batch_at - (minute + 0.5)) < 0.3, (batch_at - minute, seen)  # same clock
    assert sync_at is not None and sync_at - first > 200, sync_at - first  # the poll is minutes away
    assert len(passes) >= 2 and minute <= passes[1] < minute + 3, (passes, minute)  # the next pass: the wake's
    assert minute + 0.4 <= seen["appeared"] < minute + 4, (seen["appeared"] - minute, passes)
    run = f"now-{int((minute + offset) // 60)}-0_run"
    assert seen["exited"] == [(run, "exited", 0)], seen
    batch_at, after = seen["after"]
    assert after == [run], seen  # no other run before the next minute
    assert batch_at is not None and abs(batch_at - (minute + 60.5)) < 0.3, (batch_at - minute, seen)
    assert all(t < minute + 10 for t in passes) and len(passes) < 10, passes  # no busy loop of passes
