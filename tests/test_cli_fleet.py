"""The operator's commands on the three-node test fleet (real Podman, real Git): the live
rollout view read off a real terminal (tmux), `logs` across nodes surviving a node's Podman
being stopped, `describe`, and completion of object names in a real bash."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from podman_env import WEB1, WEB2
from test_fleet import NS, app_containers, push, sync, workload, write_config

AGENT = [sys.executable, "-m", "gitops_agent"]
PHASES = "waiting|pulling|updating|ready|failed|rolling back|rolled back|deferred"
ROW = re.compile(rf"^\s*(n\d)( \(canary\))?\s+({PHASES})\b")


def agent(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args, "-c", str(cfg)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> tuple[list[Any], Any, Path]:
    return clean_fleet, git_remote, write_config(tmp_path, git_remote, clean_fleet)


class Terminal:
    """A command on a tmux pane of its own (own server socket), read as the screen shows it."""

    def __init__(self, argv: list[str], name: str = "sync") -> None:
        self.sock = f"gat-live-{name}-{os.getpid()}"
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        cmd = " ".join(f"'{a}'" for a in argv) + "; echo EXIT=$?; sleep 120"
        subprocess.run(["tmux", "-L", self.sock, "new-session", "-d", "-s", "t", "-x", "200", "-y", "60", cmd],
                       env=env, check=True, timeout=30)

    def screen(self, history: bool = False) -> str:
        args = ["-S", "-"] if history else []
        return subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-p", "-t", "t", *args],
                              capture_output=True, text=True, timeout=30).stdout

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=30)
        Path(f"/tmp/tmux-{os.getuid()}/{self.sock}").unlink(missing_ok=True)  # the server leaves its socket file


def rows(screen: str) -> dict[str, tuple[str, bool]]:
    """node → (phase, canary) of the live table on the screen (its last drawing)."""
    out: dict[str, tuple[str, bool]] = {}
    for line in screen.splitlines():
        m = ROW.match(line)
        if m:
            out[m.group(1)] = (m.group(3), bool(m.group(2)))
    return out


def watch(term: Terminal, timeout: float = 120, then: Any = None) -> tuple[list[dict[str, tuple[str, bool]]], str]:
    """Screens until the command exits: the rows of each, and the whole text at the end.
    `then()` is called once, when the first rows are on the screen."""
    seen: list[dict[str, tuple[str, bool]]] = []
    until = time.time() + timeout
    while time.time() < until:
        screen = term.screen()
        if rows(screen):
            seen.append(rows(screen))
            if then is not None and len(seen) == 1:
                then()
        if "EXIT=" in screen:
            return seen, term.screen(history=True)
        time.sleep(0.1)
    raise AssertionError(f"sync did not finish on the terminal:\n{term.screen(history=True)}")


def test_live_view_on_a_terminal_during_a_real_three_node_rollout(env: tuple[list[Any], Any, Path]) -> None:
    """Every node row appears in order, the canary is ready before the second node starts,
    a failed canary shows its probe output."""
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1))
    assert sync(cfg).result == "applied"

    push(repo, "v2", workload("web", WEB2, min_ready=1))
    term = Terminal([*AGENT, "sync", "-c", str(cfg)])
    watcher: list[Terminal] = []  # `status --watch` in a terminal of its own, started once the rollout is under way
    try:
        seen, text = watch(term, then=lambda: watcher.append(Terminal([*AGENT, "status", "--watch", "-c", str(cfg)],
                                                                      "watch")))
        w_seen, w_text = watch(watcher[0])
    finally:
        term.close()
        for t in watcher:
            t.close()
    assert "EXIT=0" in text and ": applied" in text, text
    assert all(list(s) == ["n1", "n2", "n3"] for s in seen), seen  # every row, in rollout order, on every screen
    assert all(s["n1"][1] and not s["n2"][1] and not s["n3"][1] for s in seen)  # the canary is marked
    assert any(s["n1"][0] == "updating" and s["n2"][0] == "waiting" for s in seen), seen
    for s in seen:  # the second node never starts before the canary is ready
        if s["n2"][0] != "waiting":
            assert s["n1"][0] == "ready", seen
    assert seen[-1] == {"n1": ("ready", True), "n2": ("ready", False), "n3": ("ready", False)}
    assert "1/1/1" in text and "rollout.node.done" in text  # pod counts in the table, log lines above it
    # status --watch, another process, drew the same rows from the agent's event journal and exited 0
    assert "EXIT=0" in w_text and w_seen[-1] == seen[-1], (w_seen[-3:], w_text)
    assert all(list(s) == ["n1", "n2", "n3"] for s in w_seen)

    bad = {"exec": {"command": ["cat", "/www/ready-flag"]}, "periodSeconds": 1, "failureThreshold": 2}
    push(repo, "v3: readiness never passes", workload("web", WEB1, readiness=bad))
    term = Terminal([*AGENT, "sync", "-c", str(cfg)])
    try:
        seen, text = watch(term)
    finally:
        term.close()
    assert "EXIT=1" in text
    assert any(s["n1"][0] == "failed" for s in seen) or "failed" in text
    assert seen[-1] == {"n1": ("rolled back", True), "n2": ("waiting", False), "n3": ("waiting", False)}, seen
    final = text[text.rindex("rollout "):]  # the last drawing of the table
    assert "└ readiness probe:" in final and "No such file" in final, final


def ticker(name: str = "ticker", word: str = "tick") -> dict[str, Any]:
    loop = f"i=0; while true; do i=$((i+1)); echo {word} $i; sleep 0.5; done"
    pod = {"terminationGracePeriodSeconds": 1,
           "containers": [{"name": "main", "image": WEB1, "command": ["sh", "-c", loop]}]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


class Lines:
    """A process's stdout and stderr lines as they come, with their arrival time."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.out: list[tuple[float, str]] = []
        self.err: list[tuple[float, str]] = []
        for stream, into in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream: Any, into: list[tuple[float, str]]) -> None:
        for line in stream:
            into.append((time.time(), line.rstrip("\n")))

    def wait(self, what: str, test: Any, timeout: float = 30) -> None:
        until = time.time() + timeout
        while not test():
            if time.time() > until:
                raise AssertionError(f"timed out waiting for {what}:\nout={self.out[-10:]}\nerr={self.err}")
            time.sleep(0.1)

    def nodes_after(self, t: float) -> set[str]:
        return {line[1:3] for when, line in self.out if when > t and line.startswith("[n")}


def test_logs_describe_and_completion_across_the_fleet(env: tuple[list[Any], Any, Path]) -> None:
    """logs reads every node with prefixes and --follow survives n3's Podman being stopped;
    describe and completion name the object."""
    fleet, repo, cfg = env
    push(repo, "ticker", ticker())
    assert sync(cfg).result == "applied"
    ref = f"Deployment/{NS}/ticker"
    time.sleep(1.5)

    cp = agent(cfg, "logs", ref, "--tail", "2")
    assert cp.returncode == 0, cp.stderr
    prefixes = [line.split(" ", 1)[0] for line in cp.stdout.splitlines()]
    assert {p[1:3] for p in prefixes} == {"n1", "n2", "n3"}
    assert all(re.fullmatch(r"\[n\d/ticker-[a-z0-9-]+/main\]", p) for p in prefixes), prefixes
    assert all(prefixes.count(p) <= 2 for p in prefixes) and all(" tick " in ln for ln in cp.stdout.splitlines())
    cp = agent(cfg, "logs", ref, "--container", "nope")
    assert cp.returncode == 1 and "no container of" in cp.stderr and "Traceback" not in cp.stderr
    cp = agent(cfg, "logs", ref, "--previous")
    assert cp.returncode == 0 and cp.stdout == "" and cp.stderr.count("no earlier run kept") == 3, cp.stderr
    (c1,) = app_containers(fleet[0])  # restarted on n1 only: its earlier run is the one before the restart
    time.sleep(1.1)  # a second boundary: Podman's log times and StartedAt are compared in seconds
    fleet[0].podman("restart", "-t", "0", c1)
    time.sleep(1.5)
    cp = agent(cfg, "logs", ref, "--previous")
    assert cp.returncode == 0 and cp.stderr.count("no earlier run kept") == 2, cp.stderr
    earlier = cp.stdout.splitlines()
    assert earlier and all(ln.startswith("[n1/ticker-") and " tick " in ln for ln in earlier), cp.stdout
    full = [ln for ln in agent(cfg, "logs", ref).stdout.splitlines() if ln.startswith("[n1/")]
    assert full[:len(earlier)] == earlier  # the run before the restart: the start of the log kept by Podman
    assert any(ln.endswith(" tick 1") for ln in full[len(earlier):])  # then the new run, counting from 1 again
    assert agent(cfg, "logs", ref, "--previous", "--tail", "2").stdout.splitlines() == earlier[-2:]

    proc = subprocess.Popen([*AGENT, "logs", ref, "--follow", "--tail", "1", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = Lines(proc)
    try:
        lines.wait("a line from every node", lambda: lines.nodes_after(0) == {"n1", "n2", "n3"})
        fleet[2].stop()
        stopped = time.time()
        lines.wait("n3 reported", lambda: any("node n3: dropped out" in ln for _, ln in lines.err))
        lines.wait("n1 and n2 go on", lambda: {"n1", "n2"} <= lines.nodes_after(stopped + 1))
        assert proc.poll() is None  # not fatal
        fleet[2].start()
        lines.wait("n3 back", lambda: any("node n3: back" in ln for _, ln in lines.err))
        back = max(t for t, ln in lines.err if "node n3: back" in ln)
        lines.wait("n3 followed again", lambda: "n3" in lines.nodes_after(back))
        push(repo, "tock", ticker(word="tock"))  # a rollout replaces every pod: the new ones are followed too
        assert sync(cfg).result == "applied"
        lines.wait("the new pods", lambda: {ln[1:3] for _, ln in lines.out if " tock " in ln} == {"n1", "n2", "n3"})
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        fleet[2].start()
    assert proc.returncode == 130 and not any("Traceback" in ln for _, ln in lines.err), lines.err

    cp = agent(cfg, "describe", ref)
    assert cp.returncode == 0, cp.stderr
    for n in ("n1", "n2", "n3"):
        assert f"Node {n}: Ready, 1/1 ready, template " in cp.stdout
    assert f"main: {WEB1}, running" in cp.stdout and "Rolled" in cp.stdout
    assert "revision 2: template" in cp.stdout and "revision 1: template" in cp.stdout
    data = yaml.safe_load(agent(cfg, "describe", ref, "-o", "yaml").stdout)
    assert [o["node"] for o in data["nodes"]] == ["n1", "n2", "n3"] and data["events"][0]["reason"] == "Rolled"
    cp = agent(cfg, "diff", "-o", "json")
    assert cp.returncode == 0 and [n["inSync"] for n in json.loads(cp.stdout)["nodes"].values()] == [True] * 3
    cp = agent(cfg, "status", "-o", "wide")
    assert cp.returncode == 0 and "PODS" in cp.stdout
    row = rf"^n1 +Deployment +{NS} +ticker +Ready +1/1 ready, .* ticker-[a-z0-9-]+$"
    assert re.search(row, cp.stdout, re.M), cp.stdout
    assert yaml.safe_load(agent(cfg, "history", "-o", "yaml").stdout)["syncs"][0]["result"] == "applied"
    cp = agent(cfg, "describe", f"Deployment/{NS}/nope")
    assert cp.returncode == 1 and "is not in the applied revision" in cp.stderr and "Traceback" not in cp.stderr

    script = subprocess.run([*AGENT, "completion", "bash"], capture_output=True, text=True, check=True).stdout
    (Path(cfg).parent / "complete.bash").write_text(script)
    probe = (f'source "{Path(cfg).parent / "complete.bash"}"; COMP_WORDS=(gitops-agent describe -c "{cfg}" Dep); '
             'COMP_CWORD=4; _gitops_agent; printf "%s\\n" "${COMPREPLY[@]}"; '
             'COMP_WORDS=(gitops-agent sta); COMP_CWORD=1; _gitops_agent; printf "%s\\n" "${COMPREPLY[@]}"; '
             'COMP_WORDS=(gitops-agent status -o ""); COMP_CWORD=3; _gitops_agent; printf "%s\\n" "${COMPREPLY[@]}"')
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    cp = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PATH": path})
    want = [f"Deployment/{NS}/ticker", "status", "table", "wide", "json", "yaml"]
    assert cp.stdout.split() == want, (cp.stdout, cp.stderr)
    assert shutil.which("gitops-agent", path=path)
