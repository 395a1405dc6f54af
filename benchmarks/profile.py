"""`python -m benchmarks.profile [--pods 200] [--cold 50] [--syncs 20]`: where the time goes.

Profiles, on a private Podman node (never the host's):
- the no-op sync: `--syncs` passes of a running in-process agent over a node with `--pods`
  managed pods;
- the cold apply: one cold `Agent()` + `sync()` of `--cold` single-replica Deployments;
- with `--rollout`, only the rollout workload's forward rollout (3 nodes x 5 replicas, httpGet
  readiness, WEB1 -> WEB2): cProfile, plus wall time per Podman API call kind (every
  `Node._call`, whatever the thread), which is where a rollout waits.

Uses pyinstrument when installed (wall clock, so time spent waiting on Podman and Git
shows up; `pip install pyinstrument` into the venv, it is not a project dependency),
and cProfile in any case (top functions by own time and by cumulative time).
Both profile the calling thread only: work the agent hands to a thread pool shows up as
waiting in `concurrent.futures`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from typing import Any, Callable

from ._env import WEB1, WEB2, Bench, GitRemote, agent_config, bench_dir, deployment, dump_all, load_agent, preflight


def _profiled(title: str, fn: Callable[[], Any], top: int, prepare: Callable[[], Any] = lambda: None) -> None:
    """pyinstrument (when installed) and cProfile, each on its own run of `fn` (they cannot
    share a process's profile hook); `prepare()` runs, unprofiled, before each."""
    print(f"\n##### {title}\n", flush=True)
    try:
        from pyinstrument import Profiler
    except ImportError:
        Profiler = None  # type: ignore[assignment]
    if Profiler is not None:
        prepare()
        p = Profiler(interval=0.001)
        t0 = time.perf_counter()
        p.start()
        fn()
        p.stop()
        print(f"--- pyinstrument (wall {time.perf_counter() - t0:.3f} s)")
        print(p.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    prepare()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    fn()
    prof.disable()
    print(f"--- cProfile (wall {time.perf_counter() - t0:.3f} s)")
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key).print_stats(top)
        print(f"--- cProfile, top {top} by {key}")
        print("\n".join(line for line in s.getvalue().splitlines() if line.strip()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    ap.add_argument("--pods", type=int, default=200, help="managed pods on the node for the no-op sync")
    ap.add_argument("--syncs", type=int, default=20, help="no-op syncs profiled together")
    ap.add_argument("--cold", type=int, default=50, help="Deployments (1 replica) in the cold apply")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rollout", action="store_true", help="profile only a 3-node x 5-replica rollout")
    args = ap.parse_args(argv)
    if preflight():
        print("missing: " + ", ".join(preflight()), file=sys.stderr)
        return 2
    if args.rollout:
        return _rollout(args.top)
    with bench_dir() as d:
        b = Bench(runs=1, quick=False, workdir=d)
        try:
            [svc] = b.nodes(1, "prof")
            svc.podman("pod", "create", "--name", "warmup")
            svc.podman("pod", "rm", "-f", "warmup")
            # cold apply
            remote = GitRemote(b.tmp("cold-git"))
            remote.write("pods.yaml", dump_all([deployment(f"web{i}", WEB1) for i in range(args.cold)]))
            remote.commit_and_push("cold")
            cfg = agent_config(b.tmp("cold-cfg") / "agent.yaml", remote.url, [svc], b.tmp("cold-state"))

            def cold() -> None:
                agent = load_agent(cfg)
                try:
                    out = agent.sync()
                    assert out.result == "applied", out.error
                finally:
                    agent.close()

            _profiled(f"cold apply: Agent() + sync() of {args.cold} Deployments x 1 replica", cold, args.top, svc.reset)
            svc.reset()
            # no-op
            remote = GitRemote(b.tmp("noop-git"))
            remote.write("apps/idle.yaml", dump_all([deployment("idle", WEB1, args.pods)]))
            remote.commit_and_push("idle")
            cfg = agent_config(b.tmp("noop-cfg") / "agent.yaml", remote.url, [svc], b.tmp("noop-state"))
            agent = load_agent(cfg)
            try:
                assert agent.sync().result == "applied"
                assert agent.sync().result == "in-sync"

                def noop() -> None:
                    for _ in range(args.syncs):
                        out = agent.sync()
                        assert out.result == "in-sync", out.error

                _profiled(f"no-op sync x{args.syncs}, {args.pods} managed pods", noop, args.top)
            finally:
                agent.close()
        finally:
            b.close()
    return 0


def _rollout(top: int) -> int:
    """The rollout workload's WEB1 -> WEB2 rollout, profiled, with each Podman API call's wall time."""
    import re
    import threading
    from collections import defaultdict

    from gitops_agent.podman import Node

    calls: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    original = Node._call

    def traced(self: Node, method: str, path: str, *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, method, path, *a, **kw)
        finally:
            kind = f"{method} " + re.sub(r"^/(pods|containers|exec)/(?!json$|create$)[^/]+", r"/\1/{id}",
                                            path.split("?")[0])
            with lock:
                calls[kind].append(time.perf_counter() - t0)

    readiness = {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    with bench_dir() as d:
        b = Bench(runs=1, quick=False, workdir=d)
        try:
            fleet = b.nodes(3, "prof")
            remote = GitRemote(b.tmp("roll-git"))
            cfg = agent_config(b.tmp("roll-cfg") / "agent.yaml", remote.url, fleet, b.tmp("roll-state"),
                               source_path="apps")

            def push(image: str) -> None:
                docs = [deployment("web", image, 15, readiness=readiness, rolling=True)]
                remote.write("apps/web.yaml", dump_all(docs))
                remote.commit_and_push(image)

            agent = load_agent(cfg)
            try:
                push(WEB1)
                assert agent.sync().result == "applied"
                push(WEB2)
                Node._call = traced  # type: ignore[method-assign]
                t0 = time.perf_counter()
                prof = cProfile.Profile()
                prof.enable()
                out = agent.sync()
                prof.disable()
                wall = time.perf_counter() - t0
                Node._call = original  # type: ignore[method-assign]
                assert out.result == "applied", out.error
            finally:
                agent.close()
            print(f"##### rollout WEB1 -> WEB2, 3 nodes x 5 replicas: {wall:.2f} s")
            print(f"{'API call':<40} {'count':>5} {'total s':>8} {'mean s':>7}")
            for kind, ts in sorted(calls.items(), key=lambda kv: -sum(kv[1])):
                print(f"{kind:<40} {len(ts):>5} {sum(ts):>8.2f} {sum(ts) / len(ts):>7.3f}")
            st = io.StringIO()
            pstats.Stats(prof, stream=st).strip_dirs().sort_stats("cumulative").print_stats(top)
            print("\n".join(line for line in st.getvalue().splitlines() if line.strip()))
        finally:
            b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
