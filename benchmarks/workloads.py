"""The six workloads of issue 5. Each takes a `Bench` and returns table rows.

Every figure is a median over `Bench.runs` runs unless a row says otherwise;
both sides of a comparison run in the same invocation, on the same private
Podman node, interleaved run by run (the order rotates), so the ratios are what
matters, not the absolute seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ._env import (
    HTTPD,
    WEB1,
    WEB2,
    Bench,
    GitRemote,
    Row,
    agent_config,
    api_calls,
    deployment,
    dump_all,
    fmt_s,
    load_agent,
    median,
    running_app_containers,
    spread,
)
from podman_env import PodmanService, run_each

PY = sys.executable


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def _gitops_agent_argv() -> list[str]:
    script = Path(sys.executable).parent / "gitops-agent"
    return [str(script)] if script.exists() else [PY, "-m", "gitops_agent"]


def _expect(out: Any, *results: str) -> None:
    if out.result not in results:
        raise RuntimeError(f"agent sync gave {out.result!r} (wanted {'/'.join(results)}): {out.error}")


# --- 1. cold apply ----------------------------------------------------------------------------


def cold_apply(b: Bench) -> list[Row]:
    sizes = [5] if b.quick else [10, 50]
    [svc] = b.nodes(1, "cold")
    rows: list[Row] = []
    try:
        # untimed warm-up: Podman 4.3 builds its pause image on the first pod; both the agent's
        # pods (API) and kube play's need it, the podman-run loop does not
        svc.podman("pod", "create", "--name", "warmup")
        svc.podman("pod", "rm", "-f", "warmup")
        for n in sizes:
            rows += _cold_apply_size(b, svc, n)
    finally:
        b.release([svc])
    b.notes.append(
        "cold-apply: the same YAML file (N Deployments of 1 replica: `podman kube play` runs one pod per "
        "Deployment whatever `replicas` says) is fed to the agent (via a file:// Git remote) and to "
        "`podman kube play`; the floor is a loop of `podman run -d` of the same image and command (containers "
        "only, no pods). Images are preloaded (imagePullPolicy IfNotPresent). The agent's time is a cold "
        "`Agent()` + `sync()` in-process (fresh state dir: Git fetch, parse, plan, create, and waiting until every "
        "container runs); kube play and `podman run -d` do not wait for readiness (they return once the "
        "containers are started). The node is emptied between runs (not timed); the side order rotates per run."
    )
    return rows


def _cold_apply_size(b: Bench, svc: PodmanService, n: int) -> list[Row]:
    remote = GitRemote(b.tmp(f"cold{n}-git"))
    text = dump_all([deployment(f"web{i}", WEB1) for i in range(n)])
    yaml_file = remote.write("pods.yaml", text)  # the very file kube play gets
    remote.commit_and_push(f"{n} pods")
    times: dict[str, list[float]] = {"agent": [], "kube": [], "run": []}
    calls: list[int] = []

    def agent_side() -> None:
        cfg = agent_config(b.tmp(f"cold{n}-cfg") / "agent.yaml", remote.url, [svc], b.tmp(f"cold{n}-state"))
        t0 = time.perf_counter()
        agent = load_agent(cfg)
        try:
            out = agent.sync()
            times["agent"].append(time.perf_counter() - t0)
            _expect(out, "applied")
            calls.append(api_calls(agent))
        finally:
            agent.close()

    def kube_side() -> None:
        t0 = time.perf_counter()
        svc.podman("kube", "play", str(yaml_file))
        times["kube"].append(time.perf_counter() - t0)

    def run_side() -> None:
        t0 = time.perf_counter()
        for i in range(n):
            svc.podman("run", "-d", "--name", f"web{i}", "--stop-timeout", "1", WEB1, *HTTPD)
        times["run"].append(time.perf_counter() - t0)

    sides: list[tuple[str, Callable[[], None]]] = [("agent", agent_side), ("kube", kube_side), ("run", run_side)]
    for r in range(b.runs):
        k = r % len(sides)
        for name, fn in sides[k:] + sides[:k]:
            fn()
            running = running_app_containers(svc)
            if running != n:
                raise RuntimeError(f"cold-apply {name}: {running} of {n} containers running after it returned")
            svc.reset()
    a, kp, rl = (median(times[s]) for s in ("agent", "kube", "run"))
    b.extra[f"cold-apply-{n}"] = {**times, "calls": calls}
    return [
        Row("cold-apply", f"N={n}: agent sync (waits until running)", f"{fmt_s(a)} ({int(median(calls))} API calls)"),
        Row("cold-apply", f"N={n}: podman kube play", fmt_s(kp)),
        Row("cold-apply", f"N={n}: podman run -d loop (floor)", fmt_s(rl)),
        Row("cold-apply", f"N={n}: agent / kube play", f"{a / kp:.2f}×", "≤ 0.80×", _verdict(a / kp <= 0.8)),
        Row("cold-apply", f"N={n}: agent / podman run loop", f"{a / rl:.2f}×", "≤ 1.20×", _verdict(a / rl <= 1.2)),
    ]


# --- 2. no-op sync --------------------------------------------------------------------------------


def noop(b: Bench) -> list[Row]:
    small, big = (5, 20) if b.quick else (20, 200)
    [svc] = b.nodes(1, "noop")
    remote = GitRemote(b.tmp("noop-git"))
    cfg = agent_config(b.tmp("noop-cfg") / "agent.yaml", remote.url, [svc], b.tmp("noop-state"))
    rows: list[Row] = []
    per: dict[int, dict[str, Any]] = {}
    agent = None
    try:
        for n in (small, big):
            remote.write("apps/idle.yaml", dump_all([deployment("idle", WEB1, n)]))
            remote.commit_and_push(f"idle x{n}")
            if agent is None:
                agent = load_agent(cfg)
            t0 = time.perf_counter()
            _expect(agent.sync(), "applied")
            setup = time.perf_counter() - t0
            if running_app_containers(svc) != n:
                raise RuntimeError(f"noop: {n} containers expected")
            times, calls, reads, writes = [], [], [], []
            for _ in range(max(b.runs, 3)):
                r0 = sum(x.reads for x in agent.nodes.values())
                w0 = sum(x.writes for x in agent.nodes.values())
                t0 = time.perf_counter()
                out = agent.sync()
                times.append(time.perf_counter() - t0)
                _expect(out, "in-sync")
                reads.append(sum(x.reads for x in agent.nodes.values()) - r0)
                writes.append(sum(x.writes for x in agent.nodes.values()) - w0)
                calls.append(reads[-1] + writes[-1])
            # where the time goes: the Git poll and the node read, alone
            git_t, read_t = [], []
            node = next(iter(agent.nodes.values()))
            for _ in range(max(b.runs, 3)):
                t0 = time.perf_counter()
                agent.git.remote_head()
                git_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                node.read()
                read_t.append(time.perf_counter() - t0)
            # and each of the node read's list calls on its own (the same requests Node.read makes)
            from gitops_agent.podman import _MANAGED_FILTER

            calls_t: dict[str, list[float]] = {}
            for _ in range(max(b.runs, 3)):
                for label, path, params in (
                    ("pods", "/pods/json", {"filters": _MANAGED_FILTER}),
                    ("containers", "/containers/json", {"all": "true", "filters": _MANAGED_FILTER}),
                    ("networks+volumes+secrets+images", None, None),
                ):
                    t0 = time.perf_counter()
                    if path:
                        node._call("GET", path, label, params=params)
                    else:
                        node._call("GET", "/networks/json", "n", params={"filters": _MANAGED_FILTER})
                        node._call("GET", "/volumes/json", "v", params={"filters": _MANAGED_FILTER})
                        node._call("GET", "/secrets/json", "s")
                        node._call("GET", "/images/json", "i")
                    calls_t.setdefault(label, []).append(time.perf_counter() - t0)
            per[n] = {"times": times, "calls": calls, "reads": reads, "writes": writes, "setup": setup,
                      "git": git_t, "read": read_t, "per_call": calls_t}
        # the same no-op as a one-shot CLI (cron style): interpreter start + imports + the pass
        cli_t = []
        for _ in range(min(b.runs, 3)):
            t0 = time.perf_counter()
            cp = subprocess.run([*_gitops_agent_argv(), "sync", "--config", str(cfg)], capture_output=True, text=True,
                                timeout=300)
            cli_t.append(time.perf_counter() - t0)
            if cp.returncode != 0:
                raise RuntimeError(f"gitops-agent sync exited {cp.returncode}: {cp.stderr.strip()[-500:]}")
    finally:
        if agent is not None:
            agent.close()
        b.release([svc])
    b.extra["noop"] = {**{str(k): v for k, v in per.items()}, "cli": cli_t}
    for n in (small, big):
        p = per[n]
        ok = median(p["times"]) <= 0.2
        rows.append(Row("noop", f"no-op sync, {n} containers (2nd+ pass of a running agent)",
                        f"{fmt_s(median(p['times']))}, {int(median(p['calls']))} API calls "
                        f"({int(median(p['reads']))} reads, {int(median(p['writes']))} writes)",
                        "≤ 200 ms" if n == big else "—", _verdict(ok) if n == big else "—"))
    same = set(per[small]["calls"]) == set(per[big]["calls"]) and len(set(per[big]["calls"])) == 1
    rows.append(Row("noop", f"API calls per no-op sync: {small} vs {big} containers (1 node)",
                    f"{int(median(per[small]['calls']))} vs {int(median(per[big]['calls']))}",
                    "constant per node", _verdict(same)))
    rows.append(Row("noop", f"  of which `git ls-remote` / node read ({big} containers)",
                    f"{fmt_s(median(per[big]['git']))} / {fmt_s(median(per[big]['read']))}"))
    for n in (small, big):
        pc = per[n]["per_call"]
        rows.append(Row("noop", f"  node read by list call, {n} containers",
                        ", ".join(f"{k} {fmt_s(median(v))}" for k, v in pc.items())))
    rows.append(Row("noop", f"no-op `gitops-agent sync` CLI, {big} containers (process start included)", fmt_s(median(cli_t))))
    b.notes.append(
        f"noop: one node; one Deployment scaled to {small} then {big} replicas (one container per pod, plus the "
        f"infra container Podman adds). API calls are counted by the agent's own `Node.reads`/`Node.writes` around "
        f"each `sync()` of the same in-process Agent; setup (creating the pods) took {fmt_s(per[small]['setup'])} and "
        f"{fmt_s(per[big]['setup'])} ({big - small} more pods) and is not part of the figure."
    )
    return rows


# --- 3. rollout across 3 nodes -----------------------------------------------------------------------


def rollout(b: Bench) -> list[Row]:
    per_node = 1 if b.quick else 5
    fleet = b.nodes(3, "fl")
    # --quick (the CI smoke) leaves the probe out: removing a pod that ran probes costs ~3 s on Podman 4.3
    readiness = None if b.quick else {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    fwd: list[float] = []
    back: list[float] = []
    first: list[float] = []
    fast: list[bool] = []
    floor_fwd: list[float] = []
    floor_back: list[float] = []
    try:
        for r in range(b.runs):
            run_each(PodmanService.reset, fleet)
            f, bk = _podman_floor(fleet, per_node)
            floor_fwd.append(f)
            floor_back.append(bk)
            run_each(PodmanService.reset, fleet)
            remote = GitRemote(b.tmp(f"roll{r}-git"))
            cfg = agent_config(b.tmp(f"roll{r}-cfg") / "agent.yaml", remote.url, fleet, b.tmp(f"roll{r}-state"),
                               source_path="apps")

            def push(image: str, msg: str) -> str:
                remote.write("apps/web.yaml", dump_all([deployment("web", image, 3 * per_node, readiness=readiness,
                                                                   rolling=True)]))
                return remote.commit_and_push(msg)

            agent = load_agent(cfg)
            try:
                push(WEB1, "v1")
                t0 = time.perf_counter()
                _expect(agent.sync(), "applied")
                first.append(time.perf_counter() - t0)
                sha = push(WEB2, "v2")
                t0 = time.perf_counter()
                _expect(agent.sync(), "applied")
                fwd.append(time.perf_counter() - t0)
                remote.revert(sha)
                t0 = time.perf_counter()
                out = agent.sync()
                back.append(time.perf_counter() - t0)
                _expect(out, "applied")
                fast.append(bool(out.rollout and out.rollout.fast))
            finally:
                agent.close()
            for svc in fleet:
                if running_app_containers(svc) != per_node:
                    raise RuntimeError(f"rollout: node {svc.name} does not run {per_node} containers after the revert")
    finally:
        b.release(fleet)
    b.extra["rollout"] = {"first": first, "forward": fwd, "revert": back, "fast": fast,
                          "floor-forward": floor_fwd, "floor-revert": floor_back}
    b.notes.append(
        f"rollout: 3 nodes (each a private Podman service in its own network and mount namespace, as the test "
        f"fleet), one Deployment of {3 * per_node} replicas ({per_node} per node), "
        + ("no readiness probe (--quick)" if readiness is None else "httpGet readiness probe (periodSeconds 1, run by "
           "the agent from outside the container, in the pod's network namespace)") + ", "
        f"maxSurge 1 / maxUnavailable 0, stop timeout 1 s, default rollout "
        f"knobs (one node at a time, canary first). Each run starts from empty nodes and a fresh agent state; the "
        f"initial apply of v1 took {spread(first)}. The `git revert` is fast-tracked (every node at once) "
        f"{'in every run' if all(fast) else 'NOT in every run'}. The Podman floor is the same pod replacements by a "
        f"plain script of podman CLI calls on each node (its own service), one pod at a time, node after node in the "
        f"rollout's order: `pod create` + `create --pod` + `pod start` of the new pod, then `pod stop -t 1` and "
        f"`pod rm` of the old one; it waits for nothing. Its revert is the same replacements back to WEB1 (no "
        f"fast track). Each run does the floor first on emptied nodes, then the agent; ratios are per run's medians."
    )
    ff, fb = median(floor_fwd), median(floor_back)
    return [
        Row("rollout", f"image WEB1→WEB2, 3 nodes × {per_node} replicas (one `sync`)", fmt_s(median(fwd))),
        Row("rollout", "`git revert` back to WEB1 (one `sync`, fast-tracked)", fmt_s(median(back))),
        Row("rollout", f"Podman floor: the same {3 * per_node} replacements by a podman CLI script", fmt_s(ff)),
        Row("rollout", "Podman floor: the replacements back to WEB1", fmt_s(fb)),
        Row("rollout", "agent rollout / Podman floor", f"{median(fwd) / ff:.2f}×", "≤ 1.0×",
            _verdict(median(fwd) <= ff)),
        Row("rollout", "agent revert / Podman floor (revert)", f"{median(back) / fb:.2f}×", "≤ 0.5×",
            _verdict(median(back) <= 0.5 * fb)),
    ]


def _podman_floor(fleet: list[PodmanService], per_node: int) -> tuple[float, float]:
    """The rollout's pod replacements done by a plain podman CLI script: (forward seconds, back seconds).
    The starting pods (WEB1) are made first, untimed."""
    def make(svc: PodmanService, name: str, image: str) -> None:
        svc.podman("pod", "create", "--name", name)
        svc.podman("create", "--pod", name, "--name", f"{name}-web", "--stop-timeout", "1", image, *HTTPD)
        svc.podman("pod", "start", name)

    def replace(svc: PodmanService, old: str, new: str, image: str) -> None:
        make(svc, new, image)
        svc.podman("pod", "stop", "-t", "1", old)
        svc.podman("pod", "rm", old)

    run_each(lambda svc: [make(svc, f"floor-a{i}", WEB1) for i in range(per_node)], fleet)
    t0 = time.perf_counter()
    for svc in fleet:
        for i in range(per_node):
            replace(svc, f"floor-a{i}", f"floor-b{i}", WEB2)
    forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    for svc in fleet:
        for i in range(per_node):
            replace(svc, f"floor-b{i}", f"floor-a{i}", WEB1)
    return forward, time.perf_counter() - t0


# --- 4. validate ------------------------------------------------------------------------------------


def write_manifests(root: Path, count: int) -> None:
    """`count` manifests, one per file, in groups of four: a ConfigMap, a Secret, a Deployment
    using both (env from configMapKeyRef/secretKeyRef) and a Service selecting it."""
    for i in range(count):
        k, kind = divmod(i, 4)
        folder = root / f"group-{k // 25:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if kind == 0:
            doc: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{k}"},
                                   "data": {"GREETING": f"hello {k}", "index.html": f"<h1>{k}</h1>"}}
        elif kind == 1:
            doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"sec-{k}"}, "stringData": {"token": f"t-{k}"}}
        elif kind == 2:
            doc = deployment(f"app-{k}", WEB1, 2, readiness={"httpGet": {"path": "/", "port": 8080}})
            c = doc["spec"]["template"]["spec"]["containers"][0]
            c["ports"] = [{"containerPort": 8080}]
            c["env"] = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": f"cfg-{k}", "key": "GREETING"}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": f"sec-{k}", "key": "token"}}}]
            c["resources"] = {"limits": {"cpu": "250m", "memory": "64Mi"}}
        else:
            doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"app-{k}"},
                   "spec": {"selector": {"app": f"app-{k}"}, "ports": [{"port": 8080}]}}
        (folder / f"{k:04d}-{doc['kind'].lower()}.yaml").write_text(dump_all([doc]))


def _validate_config(root: Path, count: int) -> Path:
    """An agent config for the validate workload: its 1,000 manifests place 500 pods on one node, over the
    default `limits.maxPodsPerNode` (110), so the limit is raised (the check itself still runs)."""
    path = root / "agent.yaml"
    config = {"source": {"url": str(root)}, "limits": {"maxPodsPerNode": max(110, count)}}
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def validate(b: Bench) -> list[Row]:
    from gitops_agent import config as config_mod
    from gitops_agent.manifests import load_directory, parse, schema

    from . import validate_floor

    count = 100 if b.quick else 1000
    d = b.tmp("validate") / "manifests"
    write_manifests(d, count)
    cfg_path = _validate_config(b.tmp("validate-cfg"), count)
    limits = config_mod.load(str(cfg_path)).limits
    empty = b.tmp("validate-empty")
    compiled = {f"{kind.lower()}.json": v for kind, v in schema.kind_validators().items()}  # $refs inlined
    validate_floor.check(d)  # every side warm: schemas compiled, files in the page cache
    parse(load_directory(d), str(d), node_limits=limits)
    inproc: list[float] = []
    floor: list[float] = []
    floor_compiled: list[float] = []
    for _ in range(max(b.runs, 3)):  # interleaved, so that the machine's load hits every side alike
        t0 = time.perf_counter()
        rev = parse(load_directory(d), str(d), node_limits=limits)
        inproc.append(time.perf_counter() - t0)
        floor.append(validate_floor.seconds(d))
        floor_compiled.append(validate_floor.seconds(d, compiled))
    if len(rev.objects) != count:
        raise RuntimeError(f"validate: {len(rev.objects)} objects parsed, {count} expected")
    sub: list[float] = []
    base: list[float] = []
    for _ in range(b.runs):
        for target, into in ((d, sub), (empty, base)):
            t0 = time.perf_counter()
            cp = subprocess.run([*_gitops_agent_argv(), "validate", str(target), "--config", str(cfg_path)],
                                capture_output=True, text=True, timeout=300)
            into.append(time.perf_counter() - t0)
            if cp.returncode != 0 or "valid:" not in cp.stdout:
                raise RuntimeError(f"gitops-agent validate exited {cp.returncode}: {cp.stderr.strip()[-500:]}")
    ratio = median(inproc) / median(floor)
    b.extra["validate"] = {"in_process": inproc, "floor": floor, "floor_compiled": floor_compiled, "subprocess": sub,
                           "empty_dir": base}
    b.notes.append(
        f"validate: {count} manifests, one per file in {count // 100} folders: ConfigMap, Secret, Deployment "
        "(2 replicas, env from both, readiness probe, limits) and Service, repeated; an agent config raises "
        "`limits.maxPodsPerNode` to fit them on one node. In-process is `manifests.parse(load_directory(DIR))` "
        "(schemas already compiled by earlier calls in the process); the floor is `benchmarks/validate_floor.py` "
        "(libyaml's `CSafeLoader` + jsonschema with the project's schemas, nothing else), interleaved with it in "
        "the same process (and once more with the agent's compiled schemas, `$ref`s inlined, to show the parser's "
        "own overhead apart from that); the subprocess is the `gitops-agent validate DIR` command, whose fixed cost "
        "(interpreter, imports, an empty directory) is shown on its own row."
    )
    full = count >= 1000
    return [
        Row("validate", f"{count} manifests, in-process parse(load_directory())", fmt_s(median(inproc)),
            "≤ 1 s" if full else "—", _verdict(median(inproc) <= 1) if full else "—"),
        Row("validate", "  floor: libyaml + jsonschema, same files and schemas (validate_floor.py)",
            fmt_s(median(floor))),
        Row("validate", "  in-process / floor", f"{ratio:.2f}×", "≤ 1.2×" if full else "—",
            _verdict(ratio <= 1.2) if full else "—"),
        Row("validate", "  in-process / the floor with the agent's compiled schemas",
            f"{median(inproc) / median(floor_compiled):.2f}×"),
        Row("validate", f"{count} manifests, `gitops-agent validate DIR` subprocess", fmt_s(median(sub)),
            "≤ 1 s" if full else "—", _verdict(median(sub) <= 1) if full else "—"),
        Row("validate", "  `gitops-agent validate` of an empty dir (fixed cost)", fmt_s(median(base))),
    ]


# --- 5. memory and idle CPU of `gitops-agent run` ------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime (fields 14, 15)


def _sync_events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "sync":
                out.append(rec)
    return out


def memory(b: Bench) -> list[Row]:
    pods = 5 if b.quick else 20
    idle_window = 3.0 if b.quick else 10.0
    [svc] = b.nodes(1, "mem")
    remote = GitRemote(b.tmp("mem-git"))
    remote.write("README.md", "no manifests yet\n")
    remote.commit_and_push("empty")
    cfg = agent_config(b.tmp("mem-cfg") / "agent.yaml", remote.url, [svc], b.tmp("mem-state"), interval="1h")
    log = b.tmp("mem-log") / "agent.log"
    proc = None
    try:
        with log.open("w") as fh:
            proc = subprocess.Popen([PY, "-m", "gitops_agent", "run", "--config", str(cfg), "--log-format", "json"],
                                    stdout=fh, stderr=subprocess.STDOUT, cwd=b.workdir)
        pid = proc.pid

        def wait_syncs(k: int, sample: list[int] | None = None, timeout: float = 180) -> None:
            deadline = time.monotonic() + timeout
            while len(_sync_events(log)) < k:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gitops-agent run: no sync #{k}:\n{log.read_text()[-2000:]}")
                if sample is not None:
                    sample.append(_status_kb(pid, "VmRSS"))
                time.sleep(0.02)

        wait_syncs(1)  # the start-up pass (an empty revision)
        time.sleep(1.0)
        rss_start = _status_kb(pid, "VmRSS")
        hwm_start = _status_kb(pid, "VmHWM")
        remote.write("apps/web.yaml", dump_all([deployment("web", WEB1, pods)]))
        remote.commit_and_push(f"{pods} pods")  # the watcher on the local repository starts a pass
        samples: list[int] = []
        wait_syncs(2, samples)
        ev = _sync_events(log)[-1]
        if ev.get("result") != "applied":
            raise RuntimeError(f"gitops-agent run: sync gave {ev}")
        hwm = _status_kb(pid, "VmHWM")
        time.sleep(1.0)
        rss_after = _status_kb(pid, "VmRSS")
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(idle_window)
        cpu1, t1 = _cpu_seconds(pid), time.monotonic()
        threads = _status_kb(pid, "Threads")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        if rc != 0:
            raise RuntimeError(f"gitops-agent run exited {rc} after SIGTERM")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        b.release([svc])
    idle_cpu = cpu1 - cpu0
    pct = 100 * idle_cpu / (t1 - t0)
    mb = lambda kb: kb / 1024  # noqa: E731
    b.extra["memory"] = {"rss_start_kb": rss_start, "hwm_start_kb": hwm_start, "rss_peak_sampled_kb": max(samples or [0]),
                         "hwm_kb": hwm, "rss_after_kb": rss_after, "idle_cpu_s": idle_cpu, "window_s": t1 - t0,
                         "threads": threads}
    b.notes.append(
        f"memory: one `gitops-agent run` process (interval 1h, watching its local repository, log to a file), "
        f"one run. RSS is VmRSS from /proc/PID/status: after the start-up pass over an empty commit, sampled every "
        f"20 ms during the pass that applies a commit of {pods} pods (the peak; VmHWM agrees), and 1 s after it. "
        f"Idle CPU is utime+stime from /proc/PID/stat over {idle_window:g} s with no poll due ({threads} threads). "
        f"\"Near zero\" is read as ≤ 1 % of one core."
    )
    return [
        Row("memory", "RSS idle after start (start-up pass done)", f"{mb(rss_start):.1f} MB", "≤ 60 MB", _verdict(mb(rss_start) <= 60)),
        Row("memory", f"RSS peak during a sync applying {pods} pods", f"{mb(max(samples or [0])):.1f} MB (VmHWM {mb(hwm):.1f} MB)"),
        Row("memory", "RSS idle after that sync", f"{mb(rss_after):.1f} MB", "≤ 60 MB", _verdict(mb(rss_after) <= 60)),
        Row("memory", f"CPU while idle between polls ({t1 - t0:.0f} s)", f"{idle_cpu:.2f} s ({pct:.2f} % of a core)",
            "near zero (≤ 1 %)", _verdict(pct <= 1.0)),
    ]


# --- 6. poll of an unchanged remote ---------------------------------------------------------------------


class CountingProxy:
    """A TCP relay on 127.0.0.1 in front of `git daemon` that keeps every byte each
    connection carried, both ways (so we can count them and look for pack data)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[dict[str, bytearray]] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            rec = {"up": bytearray(), "down": bytearray()}
            with self._lock:
                self.conns.append(rec)
            for src, dst, buf in ((client, upstream, rec["up"]), (upstream, client, rec["down"])):
                t = threading.Thread(target=self._pump, args=(src, dst, buf), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def settle(self) -> None:
        for t in list(self._threads):
            t.join(timeout=10)

    def since(self, k: int) -> list[dict[str, bytearray]]:
        self.settle()
        with self._lock:
            return self.conns[k:]

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traffic(conns: list[dict[str, bytearray]]) -> tuple[int, int, bool]:
    up = sum(len(c["up"]) for c in conns)
    down = sum(len(c["down"]) for c in conns)
    pack = any(b"PACK" in c["down"] or b"command=fetch" in c["up"] for c in conns)
    return up, down, pack


def poll(b: Bench) -> list[Row]:
    base = b.tmp("poll-git")
    remote = GitRemote(base)
    remote.write("apps/web.yaml", dump_all([deployment("web", WEB1, 1)]))
    remote.commit_and_push("one pod")
    [svc] = b.nodes(1, "poll")
    port = _free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
                               f"--base-path={base}", "--export-all", str(base)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    proxy = None
    agent = None
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("git daemon did not start")
                time.sleep(0.05)
        proxy = CountingProxy(port)
        url = f"git://127.0.0.1:{proxy.port}/remote.git"
        cfg = agent_config(b.tmp("poll-cfg") / "agent.yaml", url, [svc], b.tmp("poll-state"), source_path="apps")
        agent = load_agent(cfg)
        k = len(proxy.conns)
        _expect(agent.sync(), "applied")
        first = _traffic(proxy.since(k))
        polls, sync_t, lsr_t = [], [], []
        for _ in range(max(b.runs, 3)):
            k = len(proxy.conns)
            t0 = time.perf_counter()
            out = agent.sync()
            sync_t.append(time.perf_counter() - t0)
            _expect(out, "in-sync")
            polls.append(_traffic(proxy.since(k)))
        for _ in range(max(b.runs, 3)):
            t0 = time.perf_counter()
            agent.git.remote_head()
            lsr_t.append(time.perf_counter() - t0)
    finally:
        if agent is not None:
            agent.close()
        if proxy is not None:
            proxy.close()
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        b.release([svc])
    up = int(median([p[0] for p in polls]))
    down = int(median([p[1] for p in polls]))
    no_pack = not any(p[2] for p in polls)
    b.extra["poll"] = {"first": first, "polls": polls, "sync_s": sync_t, "ls_remote_s": lsr_t}
    b.notes.append(
        "poll: the remote is served by `git daemon` on 127.0.0.1 behind a byte-counting TCP relay (git:// protocol v2), "
        "so every byte of every Git connection the agent opens is seen. \"Pack data\" = a `PACK` stream from the server "
        "or a `command=fetch` request from the client. A poll is a whole `sync()` pass of a running agent on an "
        "unchanged remote (Git poll + node read); the first sync, which does fetch, is shown for comparison."
    )
    return [
        Row("poll", "unchanged remote: bytes per poll (sent / received)",
            f"{up} B / {down} B, {'no pack data' if no_pack else 'PACK DATA SEEN'}", "no pack data", _verdict(no_pack)),
        Row("poll", "unchanged remote: `git ls-remote` alone / whole sync pass", f"{fmt_s(median(lsr_t))} / {fmt_s(median(sync_t))}"),
        Row("poll", "  for comparison, the first sync (fetch of 1 commit)",
            f"{first[0]} B / {first[1]} B, {'pack data' if first[2] else 'no pack data?'}"),
    ]


from .informer import informer  # noqa: E402 - it reuses this module's helpers

WORKLOADS: dict[str, Callable[[Bench], list[Row]]] = {
    "cold-apply": cold_apply,
    "noop": noop,
    "rollout": rollout,
    "validate": validate,
    "memory": memory,
    "poll": poll,
    "informer": informer,  # issue 14: the event-driven copy of the live state (benchmarks/informer.py)
}
