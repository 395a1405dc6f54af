"""Soak (issue 4, "Running as a service"): a long run of syncs with random commits shows no
memory or file-descriptor growth.

One in-process Agent (what `gitops-agent run` drives) against the private Podman service and
a real Git remote: GITOPS_SOAK_PASSES passes (100 by default, about a minute here; set it to
thousands for a real soak), and every few passes a random commit changes the replicas (1-3),
a ConfigMap value or an env var, so passes alternate between applying (rollouts, pod
replacements, ConfigMap rewrites) and being in sync. RSS (VmRSS), open fds and threads are
measured after a warm-up of 20 passes and at the end. GITOPS_SOAK_SEED repeats a run.
"""

from __future__ import annotations

import gc
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitrepo import GitRemote
from podman_env import HTTPD, WEB1

NS = f"soak{os.getpid()}"
PASSES = int(os.environ.get("GITOPS_SOAK_PASSES", "100"))
WARMUP = 20
COMMIT_EVERY = 4  # on average: a commit follows each pass with this probability 1/COMMIT_EVERY
# Bounds. fds: the Git mirror, the SQLite store, the lock and podman-py's pooled connections are
# all opened before the warm-up ends; any per-pass leak (a socket, a pipe to `git`, a lock fd)
# would add one per pass, i.e. 100+ here, so +2 leaves room only for a pool reconnecting.
FD_SLACK = 2
# RSS: after the warm-up the allocator's arenas, SQLite's page cache (2 MB by default) and the
# two cached revisions are at their steady size. What remains is pymalloc fragmentation and
# glibc arenas of the worker threads, which settle within a few MB. A leak that matters on a
# node (say 100 KB per pass: one revision or one Podman response kept per pass) would be 13 MB
# over the default 130 measured passes, and 10 MB is well above the noise (0-3 MB seen).
RSS_SLACK_KB = 10 * 1024


def manifests(replicas: int, value: str, env: str) -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS},
         "data": {"greeting": value}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
         "spec": {
             "replicas": replicas,
             "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "web", "image": WEB1, "command": HTTPD,
                                 "env": [{"name": "MODE", "value": env},
                                         {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}}]}],
             }},
         }},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def sample() -> tuple[int, int, int]:
    gc.collect()
    return rss_kb(), open_fds(), threading.active_count()


def test_soak_random_commits_no_memory_or_fd_growth(clean_podman: Any, git_remote: GitRemote, tmp_path: Path) -> None:
    seed = int(os.environ.get("GITOPS_SOAK_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    state = {"replicas": 1, "value": "hello", "env": "a"}
    git_remote.write("apps/all.yaml", manifests(**state))  # type: ignore[arg-type]
    git_remote.commit_and_push("initial")
    cfg = config_mod.from_mapping({
        "source": {"url": git_remote.url, "path": "apps", "interval": "1s", "timeout": "10s"},
        "nodes": [{"name": "local", "url": clean_podman.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }, base_dir=tmp_path)
    agent = Agent(cfg)
    results: dict[str, int] = {}
    commits = 0
    started = time.monotonic()
    baseline: tuple[int, int, int] | None = None
    try:
        for i in range(PASSES):
            if i == WARMUP:
                baseline = sample()
            out = agent.sync()
            results[out.result] = results.get(out.result, 0) + 1
            assert out.ok, f"pass {i} (seed {seed}): {out.result}: {out.error}"
            if rnd.randrange(COMMIT_EVERY) == 0:
                what = rnd.choice(("replicas", "value", "env"))
                if what == "replicas":
                    state["replicas"] = rnd.choice([n for n in (1, 2, 3) if n != state["replicas"]])
                elif what == "value":
                    state["value"] = f"hello-{rnd.randrange(10**6)}"
                else:
                    state["env"] = rnd.choice([e for e in "abcd" if e != state["env"]])
                git_remote.write("apps/all.yaml", manifests(**state))  # type: ignore[arg-type]
                git_remote.commit_and_push(f"soak {i}: {what}")
                commits += 1
        final = agent.sync()  # the last commit is applied too
        assert final.ok, final.error
        end = sample()
    finally:
        agent.close()
    took = time.monotonic() - started
    assert baseline is not None
    listed = json.loads(clean_podman.podman("ps", "--filter", "label=io.gitops-agent.name=web", "--format", "json").stdout or "[]")
    running = [c for c in listed if not c.get("IsInfra")]
    assert len(running) == state["replicas"]
    print(f"\nsoak: {PASSES} passes, {commits} commits (seed {seed}) in {took:.1f} s; results {results}")
    print(f"soak: after warm-up ({WARMUP} passes): RSS {baseline[0]} kB, {baseline[1]} fds, {baseline[2]} threads")
    print(f"soak: at the end:                  RSS {end[0]} kB, {end[1]} fds, {end[2]} threads")
    print(f"soak: growth: RSS {end[0] - baseline[0]:+d} kB, fds {end[1] - baseline[1]:+d}, threads {end[2] - baseline[2]:+d}")
    assert commits >= PASSES // (COMMIT_EVERY * 2)
    assert results.get("applied", 0) >= commits - 1  # every commit (but maybe the last) was a rollout
    assert end[1] - baseline[1] <= FD_SLACK, (baseline, end)
    assert end[2] - baseline[2] <= 0, (baseline, end)  # no thread left behind per pass
    assert end[0] - baseline[0] < RSS_SLACK_KB, (baseline, end)
