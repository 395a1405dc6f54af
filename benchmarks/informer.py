"""Workload `informer` (issue 14, first section): the daemon's event-driven copy of the live state.

Three rows, each against its floor measured in the same run:
- a no-op pass of a running agent over 200 managed containers on one node with the copy current (in-process
  `Agent` with `informer.watch`, as the daemon runs it): seconds and list calls per pass, against one
  `GET /containers/json` of those same containers (the cheapest read of them Podman offers), interleaved;
- drift repair latency: a `gitops-agent run` over 3 nodes (10-minute poll); an app container removed by hand
  (`podman rm -f`) until a container of that name runs again, 10 trials, median;
- that daemon idle with its watches open on 3 nodes: RSS and CPU over a window with no event and no poll due.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import yaml

from ._env import WEB1, Bench, GitRemote, Row, agent_config, deployment, dump_all, fmt_s, load_agent, median, spread
from podman_env import PodmanService

PY = sys.executable


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def informer(b: Bench) -> list[Row]:
    rows = _noop(b)
    rows += _drift_and_idle(b)
    return rows


def _steady(agent: Any, node: Any, tries: int = 10) -> None:
    """Passes until one makes no list call (the events of the apply's own writes have come in)."""
    for _ in range(tries):
        before = node.lists
        agent.sync()
        if node.lists == before:
            return
        time.sleep(0.5)
    raise RuntimeError("informer: the copy never became current")


def _noop(b: Bench) -> list[Row]:
    from gitops_agent import informer as inf

    n = 5 if b.quick else 200
    [svc] = b.nodes(1, "inf")
    remote = GitRemote(b.tmp("inf-git"))
    cfg = agent_config(b.tmp("inf-cfg") / "agent.yaml", remote.url, [svc], b.tmp("inf-state"))
    raw = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**raw, "limits": {"maxPodsPerNode": n + 10}}))  # the default is the kubelet's 110
    remote.write("apps/idle.yaml", dump_all([deployment("idle", WEB1, n)]))
    remote.commit_and_push(f"idle x{n}")
    agent = load_agent(cfg)
    watches: dict[str, Any] = {}
    try:
        out = agent.sync()
        if out.result != "applied":
            raise RuntimeError(f"informer: the apply gave {out.result}: {out.error}")
        node = agent.nodes[svc.name]
        watches = inf.watch(agent.nodes, 600.0, lambda _n: None, agent.log)
        deadline = time.monotonic() + 30
        while not watches[svc.name].trusted and time.monotonic() < deadline:
            time.sleep(0.05)
        _steady(agent, node)
        m = _noop_passes(agent, node, max(b.runs, 5))
    finally:
        inf.unwatch(agent.nodes, watches)
        agent.close()
        _release(b, [svc])
    return _noop_rows(b, n, m)


def _noop_passes(agent: Any, node: Any, runs: int) -> dict[str, list[float]]:
    """`runs` interleaved rounds of: the floor (one `GET /containers/json` of the managed containers), an interval
    pass (`sync()`: the Git poll + the node side), the Git poll alone, a pass started by drift (`sync(poll=False)`:
    the node side only); list calls and store rows changed per pass."""
    from gitops_agent.podman import _MANAGED_FILTER

    m: dict[str, list[float]] = {k: [] for k in ("floor", "passes", "poll", "drift", "lists", "rows")}
    for _ in range(runs):
        t0 = time.perf_counter()
        node._call("GET", "/containers/json", "floor", params={"all": "true", "filters": _MANAGED_FILTER})
        m["floor"].append(time.perf_counter() - t0)
        for key, poll in (("passes", True), ("drift", False)):
            lists, rows = node.lists, agent.history._db.total_changes
            t0 = time.perf_counter()
            out = agent.sync(poll=poll)
            m[key].append(time.perf_counter() - t0)
            m["lists"].append(node.lists - lists)
            m["rows"].append(agent.history._db.total_changes - rows)
            if out.result != "in-sync":
                raise RuntimeError(f"informer: no-op pass gave {out.result}")
        t0 = time.perf_counter()
        agent.git.remote_head()
        m["poll"].append(time.perf_counter() - t0)
    return m


def _noop_rows(b: Bench, n: int, m: dict[str, list[float]]) -> list[Row]:
    passes, floor, drift = median(m["passes"]), median(m["floor"]), median(m["drift"])
    ratio, lists = passes / floor, int(max(m["lists"]))
    b.extra["informer_noop"] = m
    b.notes.append(
        f"informer no-op: one node, one Deployment of {n} replicas; an in-process Agent with `informer.watch` (what "
        f"`gitops-agent run` does), after passes until the copy is current; each of {len(m['floor'])} rounds times "
        f"one `GET /containers/json?all=true` with the managed-label filter (the floor), one interval pass "
        f"(`sync()`: the Git poll, `git ls-remote` of a file:// remote, then the node side), one pass started by "
        f"drift (`sync(poll=False)`: no Git call while the last poll is younger than `source.interval`) and the "
        f"Git poll alone, interleaved. List calls are counted in `podman.Node` (`Node.lists`) and store writes as "
        f"SQLite's `total_changes` of the agent's connection, around each pass.")
    return [
        Row("informer", f"no-op pass, {n} containers, copy current (interval pass: Git poll + node side)",
            f"{spread(m['passes'])}, {lists} list calls, {int(max(m['rows']))} store rows written",
            "≤ 20 ms, 0 list calls", _verdict(passes <= 0.020 and lists == 0)),
        Row("informer", "  of which the Git poll (`git ls-remote`, measured alone)", fmt_s(median(m["poll"]))),
        Row("informer", "  no-op pass started by drift (no Git poll)", spread(m["drift"]), "≤ 20 ms",
            _verdict(drift <= 0.020)),
        Row("informer", f"  floor: one GET /containers/json of those {n} containers", fmt_s(floor)),
        Row("informer", "  no-op interval pass / floor", f"{ratio:.3f}×", "≤ 0.05×",
            _verdict(ratio <= 0.05 and lists == 0)),
        Row("informer", "  no-op drift pass / floor", f"{drift / floor:.3f}×", "≤ 0.05×", _verdict(drift / floor <= 0.05)),
    ]


def _release(b: Bench, nodes: list[PodmanService]) -> None:
    """Stop these nodes now; a slow cleanup (200 pods on a loaded machine) is left to `Bench.close`
    rather than losing the figures."""
    pairs = [(ns, svc) for ns, svc in b._nodes if svc in nodes]
    try:
        b.release(nodes)
    except subprocess.TimeoutExpired as e:
        b._nodes.extend(pairs)
        b.notes.append(f"informer: cleanup of {', '.join(n.name for n in nodes)} timed out ({e.timeout:g} s), "
                       "retried at the end")


def _app_container(svc: PodmanService) -> tuple[str, str]:
    out = svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    found = sorted((c["Names"][0], c["Id"]) for c in json.loads(out or "[]") if not c.get("IsInfra"))
    if not found:
        raise RuntimeError(f"informer: no app container on {svc.name}")
    return found[0]


def _running_id(client: Any, name: str) -> str:
    resp = client.api.get("/containers/json", params={"filters": json.dumps({"name": [f"^{name}$"]})})
    running = [c for c in resp.json() or [] if c.get("State") == "running"]
    return str(running[0]["Id"]) if running else ""


def _idle(pid: int, window: float) -> tuple[int, float, float, int]:
    """(VmRSS kB, CPU seconds, wall seconds, threads) of process `pid` over `window` seconds of idling."""
    from .workloads import _cpu_seconds, _status_kb

    rss = _status_kb(pid, "VmRSS")
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return rss, _cpu_seconds(pid) - cpu0, time.monotonic() - t0, _status_kb(pid, "Threads")


def _repair_time(svc: PodmanService, client: Any, log: Any) -> float:
    """Seconds from `podman rm -f` of an app container until one of that name runs again (a new ID)."""
    name, old = _app_container(svc)
    svc.podman("rm", "-f", "-t", "0", name)
    gone = time.monotonic()
    while time.monotonic() - gone < 60:
        now_id = _running_id(client, name)
        if now_id and now_id != old:
            return time.monotonic() - gone
        time.sleep(0.02)
    raise RuntimeError(f"informer: {name} not running again within 60 s:\n{log.read_text()[-2000:]}")


def _drift_and_idle(b: Bench) -> list[Row]:
    from .workloads import _sync_events

    trials = 1 if b.quick else 10  # --quick is the CI smoke: one trial, a short idle window
    idle_window = 2.0 if b.quick else 10.0
    fleet = b.nodes(3, "infd")
    remote = GitRemote(b.tmp("infd-git"))
    remote.write("apps/web.yaml", dump_all([deployment("web", WEB1, 6)]))
    remote.commit_and_push("web x6")
    cfg = agent_config(b.tmp("infd-cfg") / "agent.yaml", remote.url, fleet, b.tmp("infd-state"), interval="10m")
    log = b.tmp("infd-log") / "agent.log"
    proc = None
    client = fleet[0].client()
    took: list[float] = []
    try:
        with log.open("w") as fh:
            proc = subprocess.Popen([PY, "-m", "gitops_agent", "run", "--config", str(cfg), "--log-format", "json"],
                                    stdout=fh, stderr=subprocess.STDOUT, cwd=b.workdir)
        deadline = time.monotonic() + 180
        while not _sync_events(log) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if not _sync_events(log) or _sync_events(log)[0].get("result") != "applied":
            raise RuntimeError(f"informer: the daemon did not apply:\n{log.read_text()[-2000:]}")
        time.sleep(1.0 if b.quick else 3.0)  # the events of the apply have come in; the copies are current
        rss, cpu, window, threads = _idle(proc.pid, idle_window)
        for i in range(trials):
            if i:
                time.sleep(2.5)  # past the agent's own-write window (informer.EXPECTED_FOR)
            took.append(_repair_time(fleet[0], client, log))
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=60) != 0:
            raise RuntimeError("informer: gitops-agent run did not stop cleanly")
    finally:
        client.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        _release(b, fleet)
    pct = 100 * cpu / window
    b.extra["informer_drift"] = {"took": took, "rss_kb": rss, "idle_cpu_s": cpu, "threads": threads}
    b.notes.append(
        f"informer drift/idle: one `gitops-agent run` (10-minute poll) over 3 nodes, a Deployment of 6 replicas. "
        f"Idle: VmRSS and utime+stime of the process over {idle_window:g} s with its 3 event streams open and "
        f"nothing happening ({threads} threads). Drift: {trials} trials of `podman rm -f -t 0` of an app container "
        f"on node 1, timed from the CLI's return until `GET /containers/json` shows a container of that name "
        f"running with a new ID (polled every 20 ms); the floor is the 10-minute poll the repair no longer waits for.")
    return [
        Row("informer", f"drift repair: app container removed by hand → running again ({trials} trials)",
            f"{spread(took)}", "≤ 2 s median", _verdict(median(took) <= 2.0)),
        Row("informer", "idle RSS, watches on 3 nodes", f"{rss / 1024:.1f} MB", "≤ 60 MB",
            _verdict(rss / 1024 <= 60)),
        Row("informer", f"idle CPU, watches on 3 nodes ({window:.0f} s)", f"{cpu:.2f} s ({pct:.2f} % of a core)",
            "≤ 1 % of a core", _verdict(pct <= 1.0)),
    ]
