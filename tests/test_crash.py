"""Crash safety on real Podman and real Git (issue 4, "Crash safety").

The kill-point harness runs `sync` through the test entry point
`tests/crash_entry.py k` (it installs a `Node.on_write` callback, the write
hook of `gitops_agent/podman.py`, that SIGKILLs the process right after its
k-th Podman write, then runs the CLI) for every k in 1..W, W being the writes of an uninterrupted run, then
restarts the agent (a clean `sync`, and a second one) and checks:
converged (every node runs exactly the desired pods of the target template,
all running; no foreign template; no duplicates), no orphaned pods or
containers, the volume's data intact, the state store consistent (`status`
Ready on the head revision, `history` readable, rollout complete).

The sync scenario also runs with the kills between STORE writes (`store-writes`): `tests/crash_entry.py
store:k` SIGKILLs right after the k-th rollout checkpoint or pass commit (`History.on_store_write`); by
default a checkpoint mid-step, the last checkpoint and the commit, all of them with GITOPS_CRASH_FULL=1.

Two scenarios:
- `sync`: one node, R0 (namespace A, PVC A/data holding a file, a "writer"
  Deployment) → R1 (adds namespace B, PVC B/cache, a Secret, a 2-replica
  Deployment mounting A/data and reading the Secret; removes the writer);
- `rollout`: the 3-node fleet, a 3-replica Deployment (one pod per node,
  maxSurge 1 / maxUnavailable 0, readiness exec `true`) WEB1 → WEB2.

Between kill points the start state is put back cheaply: the pods the killed
run and its recovery made are removed through the API, the start revision's
pods are created again from its compiled specs (the very calls the agent
makes), and the state directory is restored from a snapshot taken right after
the start revision was applied.

By default a representative subset runs (`kill_points`): the first and the last
write, and a kill after every KIND of write the scenario makes (create network,
volume, secret, pod, container; start, stop, remove ...; read from the
uninterrupted run), each kind on another node in turn, so that every node is
killed mid-step (the sync: 9 of 11; the 3-node rollout: 6 of 15; a rollout point
costs a whole rollout, ~16 s here, and CI must stay well under 20 min).
GITOPS_CRASH_FULL=1 runs all of them (RELIABILITY.md has the full run).
The counts are printed (`-s`) and kept as test properties (junit XML).

The other faults: the node's Podman service restarted mid-rollout; the state
store deleted, then overwritten with garbage; the state directory's disk full
(a tiny tmpfs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.cli import main as cli_main
from gitops_agent.desired import compile_node
from gitops_agent.errors import NodeError
from gitops_agent.history import History
from gitops_agent.plan import plan
from gitops_agent.status import status
from podman_env import HTTPD, WEB1, WEB2

REPO_ROOT = Path(__file__).resolve().parent.parent
NS_A = f"ca{os.getpid()}"
NS_B = f"cb{os.getpid()}"
NS_R = f"cr{os.getpid()}"
TOKEN = f"precious-{os.getpid()}"
FULL = os.environ.get("GITOPS_CRASH_FULL") == "1"
ONLY = [int(k) for k in os.environ.get("GITOPS_CRASH_POINTS", "").split(",") if k.strip()]


# --- manifests -----------------------------------------------------------------------


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pvc(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}}


def deployment(ns: str, name: str, image: str, replicas: int, command: list[str], *, volumes: dict[str, str] | None = None,
               env: list[dict[str, Any]] | None = None, readiness: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "command": command}
    if env:
        container["env"] = env
    if volumes:
        container["volumeMounts"] = [{"name": claim, "mountPath": path} for claim, path in volumes.items()]
    if readiness:
        container["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": 1, "containers": [container]}
    if volumes:
        pod["volumes"] = [{"name": claim, "persistentVolumeClaim": {"claimName": claim}} for claim in volumes]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 60, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


def sync_r0() -> list[dict[str, Any]]:
    # the TERM trap: the pruned writer stops at once instead of after its grace period (see podman_env.HTTPD)
    script = f"[ -f /data/keep.txt ] || echo {TOKEN} > /data/keep.txt; trap 'exit 0' TERM; sleep 3600 & wait"
    writer = deployment(NS_A, "writer", WEB1, 1, ["sh", "-c", script], volumes={"data": "/data"})
    return [namespace(NS_A), pvc(NS_A, "data"), writer]


def sync_r1() -> list[dict[str, Any]]:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": NS_A},
              "stringData": {"token": "s3cr3t-value"}}
    web = deployment(NS_A, "web", WEB1, 2, HTTPD, volumes={"data": "/data"},
                     env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}])
    return [namespace(NS_A), pvc(NS_A, "data"), namespace(NS_B), pvc(NS_B, "cache"), secret, web]


def rollout_rev(image: str, gen: int = 0) -> list[dict[str, Any]]:
    web = deployment(NS_R, "web", image, 3, HTTPD, readiness=True)
    if gen:
        web["spec"]["template"]["metadata"]["labels"]["gen"] = str(gen)
    return [namespace(NS_R), web]


def push(repo: Any, message: str, docs: list[dict[str, Any]]) -> str:
    repo.write("apps/all.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    return repo.commit_and_push(message)


def write_config(path: Path, repo: Any, nodes: list[tuple[str, Any]], state: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "path": "apps", "interval": "2s"},
        "nodes": [{"name": name, "url": svc.url} for name, svc in nodes],
        "stateDir": str(state),
        "readyTimeout": "60s",
    }))
    return path


# --- driving the agent ------------------------------------------------------------------------


def agent_of(cfg: Path, log: Callable[..., None] | None = None) -> Agent:
    return Agent(config_mod.load(str(cfg)), log or (lambda *a, **k: None))


def sync_in_process(cfg: Path, log: Callable[..., None] | None = None,
                    writes: list[tuple[str, str]] | None = None,
                    store_writes: list[tuple[str, str]] | None = None) -> tuple[Any, int]:
    """One pass in this process; (outcome, Podman writes that changed a node). `writes`, if given,
    receives (node, kind of write) for each of them, in order (see `write_kind`); `store_writes`
    ("store", "commit" | "checkpoint") for each store write the crash entry point can kill after."""
    agent = agent_of(cfg, log)
    if writes is not None:
        for node in agent.nodes.values():
            node._call = _recording(node, writes)  # type: ignore[method-assign]
    if store_writes is not None:
        History.on_store_write = lambda kind: store_writes.append(("store", kind))
    try:
        out = agent.sync()
        return out, sum(n.changes for n in agent.nodes.values())
    finally:
        History.on_store_write = None
        agent.close()


def write_kind(method: str, path: str) -> str:
    """A Podman API write without the object's name: "POST /pods/*/start", "POST /pods/create"."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[1] != "create":
        parts[1] = "*"
    return f"{method} /{'/'.join(parts)}"


def _recording(node: Any, writes: list[tuple[str, str]]) -> Callable[..., Any]:
    """`node._call`, also appending (node, kind) for each call that counted as a change of the node."""
    call = node._call

    def recorded(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        before = node.changes
        result = call(method, path, *args, **kwargs)
        if node.changes > before:
            writes.append((node.name, write_kind(method, path)))
        return result
    return recorded


CRASH_ENTRY = Path(__file__).resolve().parent / "crash_entry.py"


def cli(*args: str, kill_after: int | str = 0, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python -m gitops_agent ARGS`; with `kill_after` k, the test entry point that SIGKILLs after the k-th write
    (k: a Podman write; "store:k": a store commit or checkpoint)."""
    entry = [str(CRASH_ENTRY), str(kill_after)] if kill_after else ["-m", "gitops_agent"]
    return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=timeout)


def cli_in_process(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli_main(list(args))
    return code, buf.getvalue()


# --- checks ---------------------------------------------------------------------------------------


def podman_json(svc: Any, *args: str) -> list[dict[str, Any]]:
    return json.loads(svc.podman(*args, "--format", "json").stdout or "[]")


def check_converged(cfg: Path, nodes: list[tuple[str, Any]], head: str, where: str) -> None:
    """Every node runs exactly the desired pods of the head's templates, all running; nothing else."""
    agent = agent_of(cfg)
    try:
        rev = agent.revision(head)
        for cfg_node in agent.cfg.nodes:
            svc = dict(nodes)[cfg_node.name]
            node = agent.nodes[cfg_node.name]
            desired = compile_node(rev, cfg_node, agent.cfg.nodes)
            live = node.read()
            p = plan(desired, live, agent.cfg.prune, agent.history.inventory())
            assert p.in_sync, f"{where}: node {cfg_node.name} not converged: {[str(a) for a in p.actions]}"
            want_pods = {pod.name: pod for w in desired.workloads for pod in w.pods}
            hashes = {w.template_hash for w in desired.workloads}
            assert set(live.pods) == set(want_pods), f"{where}: {cfg_node.name} pods {sorted(live.pods)} != {sorted(want_pods)}"
            for pod in live.pods.values():
                assert pod.template_hash in hashes, f"{where}: foreign template on {pod.name}"
                assert pod.status == "Running" and pod.ready, f"{where}: pod {pod.name} is {pod.status}"
                assert len(pod.containers) == len(want_pods[pod.name].containers)
            # Podman's own view: no orphaned or duplicated container, infra ones included
            ctrs = podman_json(svc, "ps", "-a")
            pods = {p["Id"]: p["Name"] for p in podman_json(svc, "pod", "ps")}
            expected = sum(len(pod.containers) + 1 for pod in want_pods.values())
            assert len(ctrs) == expected, f"{where}: {cfg_node.name} has {len(ctrs)} containers, want {expected}: " + \
                ", ".join(f"{c['Names'][0]}({pods.get(c.get('Pod', ''))},{c['State']})" for c in ctrs)
            for c in ctrs:
                pod_name = pods.get(c.get("Pod") or "")
                assert pod_name in want_pods, f"{where}: orphaned container {c['Names'][0]} (pod {pod_name!r})"
                assert c["State"] == "running", f"{where}: container {c['Names'][0]} is {c['State']}"
                thash = (c.get("Labels") or {}).get("io.gitops-agent.template-hash")
                assert thash is None or thash in hashes, f"{where}: container {c['Names'][0]} has foreign template {thash}"
            assert sorted(pods.values()) == sorted(want_pods)
            assert {s.name for s in desired.secrets} <= live.secrets and {n.name for n in desired.networks} <= set(live.networks)
    finally:
        agent.close()


def check_state(cfg: Path, head_id: str, where: str, rollout: bool = True) -> None:
    """`status` Ready on the head revision (its rollout complete), `history` readable."""
    agent = agent_of(cfg)
    try:
        st = status(agent)
        assert st["condition"] == "Ready", f"{where}: status {st['condition']}: {st['message']}"
        assert st["appliedRevision"] == head_id, f"{where}: applied {st['appliedRevision']} != {head_id}"
        if rollout:
            assert st["rollout"] and st["rollout"]["phase"] == "complete", f"{where}: rollout {st['rollout']}"
        assert all(n["reachable"] for n in st["nodes"])
    finally:
        agent.close()
    code, out = cli_in_process("history", "--config", str(cfg), "-o", "json")
    assert code == 0, f"{where}: history exit {code}"
    hist = json.loads(out)
    assert hist["syncs"] and hist["syncs"][0]["result"] in ("applied", "in-sync")


def volume_info(svc: Any, name: str) -> dict[str, Any]:
    (info,) = podman_json(svc, "volume", "inspect", name)
    return info


# --- the harness --------------------------------------------------------------------------------


def kill_points(writes: list[tuple[str, str]], full: bool = False, only: tuple[int, ...] = ()) -> list[int]:
    """Which writes (1-based) to kill after, given the uninterrupted run's (node, kind) writes.

    Every one with `full`; just `only` (GITOPS_CRASH_POINTS=3,7: to reproduce one kill point);
    else the first, the last, and one write of every kind: the i-th kind (in order of first
    appearance) on the i-th node in turn (nodes in order of first write) when that node makes
    one, else its first occurrence. So every kind of write is interrupted once and, with as many
    kinds as nodes or more, every node is interrupted in the middle of its step."""
    w = len(writes)
    if only:
        return [k for k in only if 1 <= k <= w]
    if full:
        return list(range(1, w + 1))
    kinds = list(dict.fromkeys(kind for _, kind in writes))
    nodes = list(dict.fromkeys(node for node, _ in writes))
    points = {1, w}
    for i, kind in enumerate(kinds):
        at = [k for k, (node, kd) in enumerate(writes, 1) if kd == kind]
        on_turn = [k for k in at if writes[k - 1][0] == nodes[i % len(nodes)]]
        points.add((on_turn or at)[0])
    return sorted(points)


def test_kill_points_interrupt_every_kind_of_write_on_every_node() -> None:
    """The default subset: first, last, and each kind of write once, the kinds spread over the nodes in turn."""
    step = ["POST /pods/create", "POST /containers/create", "POST /pods/*/start", "POST /pods/*/stop", "DELETE /pods/*"]
    rollout = [(node, kind) for node in ("n1", "n2", "n3") for kind in step]
    # n1: create pod, stop; n2: create container, remove; n3: start
    assert kill_points(rollout) == [1, 4, 7, 10, 13, 15]
    assert kill_points(rollout, full=True) == list(range(1, 16))
    assert kill_points(rollout, only=(7, 99)) == [7]
    one_node = [("local", k) for k in ("POST /networks/create", "POST /pods/create", "POST /containers/create",
                                       "POST /pods/*/start", "POST /pods/create", "POST /containers/create",
                                       "POST /pods/*/start", "DELETE /pods/*")]
    assert kill_points(one_node) == [1, 2, 3, 4, 8]  # the second pod's writes are kinds already interrupted
    assert write_kind("POST", "/pods/web-abc/start") == "POST /pods/*/start"
    assert write_kind("POST", "/secrets/create") == "POST /secrets/create"
    assert write_kind("DELETE", "/volumes/v") == "DELETE /volumes/*"


def run_kill_points(name: str, cfg: Path, nodes: list[tuple[str, Any]], prepare: Callable[[], tuple[str, Callable[[str], None]]],
                    record_property: Callable[[str, Any], None], store: bool = False) -> dict[str, Any]:
    """`prepare()` puts the start state in place and returns the head commit and an extra check.
    With `store`, the kills follow store writes (each rollout checkpoint, the pass's commit), not Podman writes."""
    t0 = time.monotonic()
    head, extra_check = prepare()
    recorded: list[tuple[str, str]] = []
    if store:  # the uninterrupted run: which store writes a kill can follow
        out, _ = sync_in_process(cfg, store_writes=recorded)
        w = len(recorded)
        assert {kind for _, kind in recorded} == {"checkpoint", "commit"}, recorded
        assert recorded[-1] == ("store", "commit") and [k for _, k in recorded].count("commit") == 1, recorded
    else:  # the uninterrupted run: which writes a kill can follow
        out, w = sync_in_process(cfg, writes=recorded)
        assert w > 5, f"{name}: only {w} writes"
        assert len(recorded) == w, f"{name}: recorded {len(recorded)} writes of {w}"
    assert out.result == "applied", out.error
    check_converged(cfg, nodes, head, f"{name}: uninterrupted")
    extra_check(f"{name}: uninterrupted")
    points = kill_points(recorded, FULL, tuple(ONLY))
    if store and not (FULL or ONLY):  # a checkpoint mid-step, the last checkpoint (rollout complete), the commit
        points = sorted({max(1, w // 2), max(1, w - 1), w})
    per_point = []
    for k in points:
        where = f"{name}: kill after write {k}/{w}"
        marks = [time.monotonic()]
        head, extra_check = prepare()
        head_id = f"main@sha1:{head}"
        marks.append(time.monotonic())
        killed = cli("sync", "--config", str(cfg), kill_after=f"store:{k}" if store else k)
        assert killed.returncode == -signal.SIGKILL, f"{where}: not killed (exit {killed.returncode}): {killed.stderr[-2000:]}"
        marks.append(time.monotonic())
        again = cli("sync", "--config", str(cfg))
        assert again.returncode == 0, f"{where}: restart failed (exit {again.returncode}):\n{again.stderr[-3000:]}"
        assert head_id in again.stdout and ("applied" in again.stdout or "in sync" in again.stdout), again.stdout
        marks.append(time.monotonic())
        second, writes = sync_in_process(cfg)
        assert second.result == "in-sync" and second.actions == 0 and writes == 0, f"{where}: second sync {second.result}: {second.error}"
        marks.append(time.monotonic())
        check_converged(cfg, nodes, head, where)
        extra_check(where)
        check_state(cfg, head_id, where)
        marks.append(time.monotonic())
        # seconds: reset, killed run, restart, second sync, checks
        per_point.append([round(b - a, 2) for a, b in zip(marks, marks[1:])])
    report = {"scenario": name, "writes": w, "kill_points": len(points), "full": len(points) == w, "points": points,
              "kinds": [f"{k}: {node} {kind}" for k, (node, kind) in enumerate(recorded, 1) if k in points],
              "seconds": round(time.monotonic() - t0, 1), "seconds_per_point": per_point}
    print(f"\ncrash harness {name}: W={w} writes, {len(points)} kill point(s) tried "
          f"({'all' if len(points) == w else 'subset; GITOPS_CRASH_FULL=1 runs all ' + str(w)}), {report['seconds']} s; "
          f"after {report['kinds']}; per point [reset, killed, restart, second, checks]: {per_point}")
    record_property(f"crash_{name}", json.dumps(report))
    if ONLY:
        assert points
    elif FULL:
        assert len(points) == w
    elif store:
        assert {recorded[k - 1][1] for k in points} == {"checkpoint", "commit"} and points[-1] == w
    else:  # every kind of write was interrupted once, and every node
        assert {recorded[k - 1][1] for k in points} == {kind for _, kind in recorded}
        assert points[0] == 1 and points[-1] == w
        assert {recorded[k - 1][0] for k in points} == {node for node, _ in recorded}
    return report


def snapshot(state: Path, to: Path) -> None:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(state, to, symlinks=True)


def restore(snap: Path, state: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(snap, state, symlinks=True)


def recreate(cfg: Path, sha: str, keep: Callable[[str], bool] = lambda _: False) -> None:
    """Remove every managed pod and object of the later revision through the API, then create the
    pods of revision `sha` exactly as the agent does (same specs, names and labels)."""
    agent = agent_of(cfg)
    try:
        rev = agent.revision(sha)

        def one(cfg_node: Any) -> None:
            node = agent.nodes[cfg_node.name]
            desired = compile_node(rev, cfg_node, agent.cfg.nodes)
            live = node.read()
            specs = [pod for w in desired.workloads for pod in w.pods]

            def drop(names: Any) -> None:  # force-removed at once: no stop, no grace period
                for pod in names:
                    try:
                        node._call("POST", f"/pods/{pod}/kill", f"kill pod {pod}", params={"signal": "SIGKILL"}, ok404=True)
                    except NodeError:
                        pass  # not running
                    node._call("DELETE", f"/pods/{pod}", f"remove pod {pod}", params={"force": "true"}, ok404=True)

            # the start pods are made anew; the others go only after them, so the namespace network
            # never loses its last container (tearing down its DNS costs seconds per node)
            drop(p.name for p in specs if p.name in live.pods)
            for pod in specs:
                node.create_pod(pod)
            drop(p for p in live.pods if p not in {s.name for s in specs})
            for s in live.secrets - {s.name for s in desired.secrets}:
                node.remove_secret(s)
            for v in set(live.volumes) - {v.name for v in desired.volumes}:
                node.remove_volume(v)
            for n in set(live.networks) - {n.name for n in desired.networks}:
                node.remove_network(n)

        with ThreadPoolExecutor(max_workers=len(agent.cfg.nodes)) as pool:
            list(pool.map(one, agent.cfg.nodes))
    finally:
        agent.close()


# --- kill points: sync ------------------------------------------------------------------------------


@pytest.mark.parametrize("between", ["podman-writes", "store-writes"])
def test_kill_9_after_every_write_of_a_sync(clean_podman: Any, git_remote: Any, tmp_path: Path, record_property: Any,
                                            between: str) -> None:
    svc, repo = clean_podman, git_remote
    nodes = [("local", svc)]
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.yaml", repo, nodes, state)
    r0 = push(repo, "r0: namespace, data volume, writer", sync_r0())
    out, _ = sync_in_process(cfg)
    assert out.result == "applied", out.error
    vol = volume_info(svc, f"gitops-{NS_A}_data")
    data = Path(vol["Mountpoint"]) / "keep.txt"
    deadline = time.monotonic() + 20
    while not data.exists():
        assert time.monotonic() < deadline, "the writer never wrote its file"
        time.sleep(0.1)
    assert data.read_text().strip() == TOKEN
    snap = tmp_path / "state-r0"
    snapshot(state, snap)
    r1 = push(repo, "r1: second namespace, cache volume, secret, web x2; writer gone", sync_r1())

    def volume_intact(where: str) -> None:
        now = volume_info(svc, f"gitops-{NS_A}_data")
        assert now["CreatedAt"] == vol["CreatedAt"] and now["Mountpoint"] == vol["Mountpoint"], f"{where}: volume re-created"
        assert data.read_text().strip() == TOKEN, f"{where}: volume data lost"
        web = [c["Names"][0] for c in podman_json(svc, "ps", "--filter", "label=io.gitops-agent.name=web") if not c.get("IsInfra")]
        assert len(web) == 2
        assert svc.podman("exec", web[0], "cat", "/data/keep.txt").stdout.strip() == TOKEN, f"{where}: not mounted"

    def prepare() -> tuple[str, Callable[[str], None]]:
        """Back to R0 applied: R1's objects removed, the writer made again, the state directory restored."""
        recreate(cfg, r0)
        restore(snap, state)
        return r1, volume_intact

    run_kill_points("sync" if between == "podman-writes" else "sync-store", cfg, nodes, prepare, record_property,
                    store=between == "store-writes")


# --- kill points: rollout ---------------------------------------------------------------------------


def test_kill_9_after_every_write_of_a_fleet_rollout(clean_fleet: list[Any], git_remote: Any, tmp_path: Path,
                                                      record_property: Any) -> None:
    repo = git_remote
    nodes = [(f"n{i + 1}", svc) for i, svc in enumerate(clean_fleet)]
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.yaml", repo, nodes, state)
    r1 = push(repo, "web on WEB1", rollout_rev(WEB1))
    out, _ = sync_in_process(cfg)
    assert out.result == "applied", out.error
    gen = [0, WEB1]

    def on_image(image: str) -> Callable[[str], None]:
        def check(where: str) -> None:
            for name, svc in nodes:
                images = {c["Image"] for c in podman_json(svc, "ps", "--filter", "label=io.gitops-agent.managed=true")
                          if not c.get("IsInfra")}
                assert images == {image}, f"{where}: {name} runs {images}, want {image}"
        return check

    def prepare() -> tuple[str, Callable[[str], None]]:
        """No reset needed: the fleet runs the last target, so each kill point rolls out a new
        commit changing the image again (WEB1 → WEB2, then WEB2 → WEB1, ...), each with a new
        template (a `gen` label), never a fast-tracked revert: the same 15 writes every time."""
        gen[0] += 1
        gen[1] = WEB2 if gen[1] == WEB1 else WEB1
        return push(repo, f"gen {gen[0]}: web on {gen[1]}", rollout_rev(gen[1], gen[0])), on_image(gen[1])

    run_kill_points("rollout", cfg, nodes, prepare, record_property)
    assert r1


# --- the node's Podman service restarted mid-rollout ----------------------------------------------------


def test_podman_service_restarted_in_the_middle_of_a_rollout(clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> None:
    repo = git_remote
    nodes = [(f"n{i + 1}", svc) for i, svc in enumerate(clean_fleet)]
    cfg = write_config(tmp_path / "agent.yaml", repo, nodes, tmp_path / "state")
    push(repo, "web on WEB1", rollout_rev(WEB1))
    assert sync_in_process(cfg)[0].result == "applied"
    r2 = push(repo, "web on WEB2", rollout_rev(WEB2))
    restarted = threading.Event()
    events: list[tuple[str, dict[str, Any]]] = []

    def bounce(svc: Any) -> None:
        svc.stop()
        time.sleep(1.0)
        svc.start()
        restarted.set()

    def log(event: str, level: str = "info", **fields: Any) -> None:
        events.append((event, fields))
        if event == "rollout.create" and fields.get("node") == "n2" and not restarted.is_set() and not any(
                e == "bounce" for e, _ in events):
            events.append(("bounce", {}))
            threading.Thread(target=bounce, args=(clean_fleet[1],), daemon=True).start()

    first, _ = sync_in_process(cfg, log)
    assert restarted.wait(30)
    assert any(e == "bounce" for e, _ in events), "the rollout never reached n2"
    # A node that stops answering during its own step fails the step: the nodes the rollout reached
    # are rolled back. The cause is the node, not the revision, so the revision is tried again on the
    # next pass (no need for Git to move): once the service is back the fleet converges on the head.
    outcomes = [first.result]
    out = first
    for _ in range(3):
        if out.ok:
            break
        out, _ = sync_in_process(cfg)
        outcomes.append(out.result)
    assert out.result in ("applied", "in-sync"), (outcomes, out.error)
    check_converged(cfg, nodes, r2, f"service restart (passes: {outcomes})")
    check_state(cfg, f"main@sha1:{r2}", "service restart")
    print(f"\nservice restart mid-rollout: passes {outcomes}")


# --- the state store deleted, then corrupted ----------------------------------------------------------------


def test_state_store_deleted_then_corrupted_is_rebuilt_from_labels(clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> None:
    repo = git_remote
    nodes = [(f"n{i + 1}", svc) for i, svc in enumerate(clean_fleet)]
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.yaml", repo, nodes, state)
    push(repo, "web on WEB1", rollout_rev(WEB1))
    assert sync_in_process(cfg)[0].result == "applied"
    r2 = push(repo, "web on WEB2", rollout_rev(WEB2))
    assert sync_in_process(cfg)[0].result == "applied"
    head_id = f"main@sha1:{r2}"

    def container_ids() -> list[dict[str, str]]:
        return [{c["Names"][0]: c["Id"] for c in podman_json(svc, "ps", "-a")} for _, svc in nodes]

    before = container_ids()

    for fault in ("deleted", "corrupted"):
        db = state / "state.db"
        if fault == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        else:
            garbage = os.urandom(64 * 1024)
            db.write_bytes(garbage)
        # read-only commands do not crash on it either
        st = cli("status", "--config", str(cfg), "-o", "json")
        assert st.returncode == 0, st.stderr
        run = cli("sync", "--config", str(cfg))
        assert run.returncode == 0, f"{fault}: {run.stderr}"
        assert "in sync" in run.stdout and head_id in run.stdout, run.stdout
        assert "state.rebuilt" in run.stderr and "lost:" in run.stderr and "sync history" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
        assert container_ids() == before, f"{fault}: running pods were touched"
        if fault == "corrupted":
            aside = list(state.glob("state.db.corrupt-*"))
            assert len(aside) == 1 and aside[0].read_bytes() == garbage, aside
            assert "was corrupt and was moved aside" in run.stderr
        check_converged(cfg, nodes, r2, fault)
        check_state(cfg, head_id, fault, rollout=False)  # the rollout record is one of the things lost
        agent = agent_of(cfg)
        try:
            st2 = status(agent)
            reset = st2["stateStore"]["reset"]
            assert reset["cause"] == ("missing" if fault == "deleted" else "corrupt")
            assert reset["rebuilt"]["appliedRevision"] == head_id, reset
            # owner labels: the Deployment's pods, the namespace networks (the agent always makes "default")
            assert reset["rebuilt"]["objects"] == sorted([f"Deployment/{NS_R}/web", f"Namespace/{NS_R}/{NS_R}", "Namespace/default/default"])
            assert any("workload revision numbers" in w and "rebuilt from the labels" in w for w in st2["warnings"])
            assert agent.history.inventory() is not None and len(agent.history.syncs()) == 1
        finally:
            agent.close()
        table = cli("status", "--config", str(cfg))
        assert table.returncode == 0 and "Warning:" in table.stdout and "lost:" in table.stdout, table.stdout
        assert cli("history", "--config", str(cfg)).returncode == 0
    # a new commit after all that rolls out normally (revision numbers start again)
    r3 = push(repo, "web on WEB1 again", rollout_rev(WEB1))
    out, _ = sync_in_process(cfg)
    assert out.result == "applied", out.error
    check_converged(cfg, nodes, r3, "after rebuild")


# --- the state directory's disk full --------------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True)
    if cp.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (root needed): {cp.stderr}", pytrace=False)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    try:
        with open(filler, "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 65536)
    except OSError:
        pass
    return filler


def test_state_directory_disk_full_fails_clearly_then_recovers(clean_podman: Any, git_remote: Any, tmp_path: Path,
                                                                tiny_tmpfs: Path) -> None:
    svc, repo = clean_podman, git_remote
    nodes = [("local", svc)]
    cfg = write_config(tmp_path / "agent.yaml", repo, nodes, tiny_tmpfs / "state")
    r1 = push(repo, "r1", [namespace(NS_A), deployment(NS_A, "web", WEB1, 1, HTTPD)])
    assert sync_in_process(cfg)[0].result == "applied"
    ids = {c["Id"] for c in podman_json(svc, "ps", "-a")}
    r2 = push(repo, "r2", [namespace(NS_A), deployment(NS_A, "web", WEB2, 1, HTTPD)])
    filler = fill(tiny_tmpfs)

    run = cli("sync", "--config", str(cfg))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "no space left in the state directory" in run.stderr, run.stderr
    assert {c["Id"] for c in podman_json(svc, "ps", "-a")} == ids  # nothing was changed on the node
    st = cli("status", "--config", str(cfg), "-o", "json")
    assert st.returncode == 0, st.stderr
    got = json.loads(st.stdout)
    assert got["condition"] == "Stalled" and "is full" in got["message"] and got["stateStore"]["problem"]

    # the daemon does not crash-loop: it logs, backs off, and recovers once space is freed
    proc = subprocess.Popen([sys.executable, "-m", "gitops_agent", "run", "--config", str(cfg)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("backoff" in ln for ln in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        assert proc.poll() is None
        assert any("no space left in the state directory" in ln for ln in lines), "".join(lines)
        filler.unlink()
        deadline = time.monotonic() + 60
        while not any(" sync " in ln and "result=applied" in ln for ln in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not any("Traceback" in ln for ln in lines), "".join(lines)
    check_converged(cfg, nodes, r2, "disk full, then freed")
    check_state(cfg, f"main@sha1:{r2}", "disk full, then freed")
    assert r1 != r2
