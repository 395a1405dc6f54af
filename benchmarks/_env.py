"""Shared plumbing: paths, private Podman nodes, Git remotes, agent configs, machine info."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:  # podman_env and gitrepo live with the tests
    sys.path.insert(0, str(TESTS))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gitrepo import GitRemote, git  # noqa: E402
from podman_env import (
    pid_alive,  # noqa: E402
    WEB1,
    WEB2,
    NodeNamespace,
    PodmanService,
    missing_tools,
    run_each,
    start_node,
    stop_node,
)

__all__ = [
    "HTTPD", "ROOT", "WEB1", "WEB2", "Bench", "GitRemote", "Row", "git", "median", "machine_info",
    "agent_config", "deployment", "running_app_containers", "timed",
]

HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]
#: ``ip netns`` names of benchmark nodes: gatb<pid>-<tag>
_BENCH_NS = re.compile(r"^gatb(\d+)-")


@dataclass
class Row:
    """One line of the results table."""

    workload: str
    measure: str
    value: str
    target: str = "—"
    status: str = "—"  # met | not met | — (no target) | error


@dataclass
class Bench:
    """What a workload gets: the options, a scratch directory, and node bookkeeping
    (every node started through it is stopped and its namespaces deleted at the end)."""

    runs: int
    quick: bool
    workdir: Path
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # raw figures, for the report
    _nodes: list[tuple[NodeNamespace, PodmanService]] = field(default_factory=list)
    _seq: int = 0

    def tmp(self, name: str) -> Path:
        self._seq += 1
        p = self.workdir / f"{self._seq:02d}-{name}"
        p.mkdir(parents=True)
        return p

    def nodes(self, count: int, tag: str) -> list[PodmanService]:
        """``count`` private Podman services, each in its own network + mount namespace,
        WEB1 and WEB2 imported (in parallel)."""
        base = len(self._nodes)
        names = [(f"gatb{os.getpid()}-{tag}{i}", f"{tag}{i}") for i in range(1, count + 1)]
        started: list[tuple[NodeNamespace, PodmanService]] = []
        errors: list[BaseException] = []

        def one(netns: str, name: str) -> None:
            try:
                started.append(start_node(netns, name))
            except BaseException as e:  # noqa: BLE001 - re-raised below after cleanup
                errors.append(e)

        run_each(one, names)
        self._nodes.extend(started)
        if errors:
            raise errors[0]
        by_name = {svc.name: svc for _, svc in self._nodes[base:]}
        return [by_name[name] for _, name in names]

    def release(self, services: Sequence[PodmanService]) -> None:
        """Stop these nodes now (instead of at the end)."""
        keep, drop = [], []
        for ns, svc in self._nodes:
            (drop if svc in services else keep).append((ns, svc))
        self._nodes = keep
        if drop:
            run_each(stop_node, drop)

    def close(self) -> None:
        nodes, self._nodes = self._nodes, []
        if nodes:
            try:
                run_each(stop_node, nodes)
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                print(f"benchmarks: cleanup error: {e}", file=sys.stderr)


def remove_stale_namespaces() -> None:
    """``ip netns del`` benchmark namespaces left by harness runs that died (SIGKILL)."""
    if shutil.which("ip") is None:
        return
    cp = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in cp.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _BENCH_NS.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)




def preflight() -> list[str]:
    """Tools the harness needs but cannot find."""
    return missing_tools() + [t for t in ("ip", "nsenter", "unshare") if shutil.which(t) is None]


@contextmanager
def bench_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gatb-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- measuring -----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextmanager
def timed(into: list[float]) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    into.append(time.perf_counter() - t0)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def spread(values: Sequence[float]) -> str:
    """`median (min–max, n runs)` for notes."""
    if len(values) <= 1:
        return fmt_s(values[0]) if values else "n/a"
    return f"{fmt_s(median(values))} (min {fmt_s(min(values))}, max {fmt_s(max(values))}, {len(values)} runs)"


# --- manifests and agent configs ---------------------------------------------------------------


def deployment(name: str, image: str, replicas: int = 1, *, namespace: str | None = None,
               readiness: dict[str, Any] | None = None, rolling: bool = False) -> dict[str, Any]:
    """A Deployment of busybox httpd, imagePullPolicy IfNotPresent, stop timeout 1 s."""
    container: dict[str, Any] = {"name": "web", "image": image, "imagePullPolicy": "IfNotPresent", "command": HTTPD}
    if readiness:
        container["readinessProbe"] = readiness
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}},
    }
    if rolling:
        spec["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        spec["progressDeadlineSeconds"] = 120
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def dump_all(docs: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def agent_config(path: Path, source: str, services: Sequence[PodmanService], state_dir: Path, *,
                 interval: str = "30s", source_path: str = "") -> Path:
    """Write an agent config: `source`, one node per service (named after it)."""
    src: dict[str, Any] = {"url": source, "interval": interval}
    if source_path:
        src["path"] = source_path
    path.write_text(yaml.safe_dump({
        "source": src,
        "nodes": [{"name": svc.name, "url": svc.url} for svc in services],
        "stateDir": str(state_dir),
        "readyTimeout": "120s",
    }))
    return path


def load_agent(cfg_path: Path) -> Any:
    from gitops_agent import config as config_mod
    from gitops_agent.agent import Agent
    from gitops_agent.log import discard

    return Agent(config_mod.load(str(cfg_path)), discard)


def api_calls(agent: Any) -> int:
    return sum(n.reads + n.writes for n in agent.nodes.values())


def running_app_containers(svc: PodmanService) -> int:
    import json

    out = svc.podman("ps", "--filter", "status=running", "--format", "json").stdout
    return sum(1 for c in json.loads(out or "[]") if not c.get("IsInfra"))


# --- machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass

    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    head = out("git", "rev-parse", "--short=12", "HEAD").strip()
    dirty = sorted(line[3:] for line in out("git", "status", "--porcelain", "--", "gitops_agent").splitlines() if line.strip())
    code = head + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "kernel": platform.release(),
        "podman": out("podman", "--version").strip().removeprefix("podman version "),
        "python": platform.python_version(),
        "git": out("git", "--version").strip().removeprefix("git version "),
        "code": code,
    }
