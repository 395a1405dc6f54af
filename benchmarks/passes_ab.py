"""`python -m benchmarks.passes_ab [--pods 200] [--rounds 10]`: what each change to the no-op pass bought
(issue 14), A/B in one process on one private Podman node with the informer's copy current.

Each round runs, interleaved on the same agent: the floor (one `GET /containers/json` of the managed
containers), then the pass with each change switched off or on in turn (in-process switches, nothing else
differs):
- `before`: the desired state compiled again (`Fleet._compiled` emptied first) and the pass recorded in the
  store like every pass was (`Agent._repeats_record` answering no): what the pass did before these changes;
- `+ compile once`: the memo kept, still recorded;
- `+ repeated in-sync pass not recorded`: both, i.e. the interval pass now (Git poll + node side);
- `+ drift pass, no Git poll`: `sync(poll=False)`, the pass `Daemon.on_drift` starts.
Prints medians and ratios to the floor; BENCHMARKS.md quotes them by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import yaml

from ._env import WEB1, Bench, GitRemote, agent_config, bench_dir, deployment, dump_all, fmt_s, load_agent, median


def _variants(agent: Any) -> list[tuple[str, Callable[[], Any]]]:
    recorded = agent._repeats_record

    def run(memo: bool, record_skip: bool, poll: bool = True) -> Callable[[], Any]:
        def one() -> Any:
            if not memo:
                agent.fleet._compiled.clear()
            agent._repeats_record = recorded if record_skip else (lambda _out: False)
            try:
                return agent.sync(poll=poll)
            finally:
                agent._repeats_record = recorded
        return one

    return [("before", run(False, False)), ("+ compile once", run(True, False)),
            ("+ repeated in-sync pass not recorded", run(True, True)),
            ("+ drift pass, no Git poll", run(True, True, poll=False))]


def measure(b: Bench, pods: int, rounds: int) -> dict[str, list[float]]:
    from gitops_agent import informer as inf
    from gitops_agent.podman import _MANAGED_FILTER

    from .informer import _steady

    [svc] = b.nodes(1, "ab")
    remote = GitRemote(b.tmp("ab-git"))
    cfg = agent_config(b.tmp("ab-cfg") / "agent.yaml", remote.url, [svc], b.tmp("ab-state"))
    raw = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**raw, "limits": {"maxPodsPerNode": pods + 10}}))
    remote.write("apps/idle.yaml", dump_all([deployment("idle", WEB1, pods)]))
    remote.commit_and_push(f"idle x{pods}")
    agent = load_agent(cfg)
    watches: dict[str, Any] = {}
    times: dict[str, list[float]] = {"floor": []}
    try:
        if agent.sync().result != "applied":
            raise RuntimeError("passes_ab: the apply failed")
        node = agent.nodes[svc.name]
        watches = inf.watch(agent.nodes, 600.0, lambda _n: None, agent.log)
        while not watches[svc.name].trusted:
            time.sleep(0.05)
        _steady(agent, node)
        variants = _variants(agent)
        for _ in range(rounds):
            t0 = time.perf_counter()
            node._call("GET", "/containers/json", "floor", params={"all": "true", "filters": _MANAGED_FILTER})
            times["floor"].append(time.perf_counter() - t0)
            for name, fn in variants:
                lists = node.lists
                t0 = time.perf_counter()
                out = fn()
                times.setdefault(name, []).append(time.perf_counter() - t0)
                if out.result != "in-sync" or node.lists != lists:
                    raise RuntimeError(f"passes_ab: {name} gave {out.result}, {node.lists - lists} list calls")
    finally:
        inf.unwatch(agent.nodes, watches)
        agent.close()
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.passes_ab", description=__doc__)
    p.add_argument("--pods", type=int, default=200)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    with bench_dir() as workdir:
        b = Bench(runs=1, quick=False, workdir=workdir)
        try:
            times = measure(b, args.pods, args.rounds)
        finally:
            b.close()
    floor = median(times["floor"])
    print(f"| Variant ({args.pods} containers, {args.rounds} interleaved rounds) | Median | Min–max | / floor |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {fmt_s(median(values))} | {fmt_s(min(values))}–{fmt_s(max(values))} | "
              f"{median(values) / floor:.3f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
