"""A pass over an unchanged revision does only what it must (issue 14, no-op pass target): it compiles the
desired state once per revision, writes nothing to the store when it only repeats the in-sync result already
recorded (a fresh record every `agent.RECORD_QUIET` seconds), and a pass started by drift (`poll=False`) does
not ask Git again while the last poll is younger than `source.interval`. Real Podman and Git."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from gitops_agent import agent as agent_mod
from gitops_agent import config as config_mod
from gitops_agent import fleet as fleet_mod
from gitops_agent.agent import Agent
from gitrepo import GitRemote
from podman_env import HTTPD, WEB1, WEB2


def manifests(image: str = WEB1) -> str:
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": image, "command": HTTPD}],
            }},
        },
    }
    return yaml.safe_dump(deploy, sort_keys=False)


def make_agent(tmp_path: Path, url: str, svc: Any, interval: str = "1h") -> Agent:
    cfg = config_mod.from_mapping({
        "source": {"url": url, "path": "apps", "interval": interval},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }, base_dir=tmp_path)
    return Agent(cfg)


def app_container(svc: Any) -> str:
    out = svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    [name] = [c["Names"][0] for c in json.loads(out or "[]") if not c.get("IsInfra")]
    return str(name)


def store_changes(agent: Agent) -> int:
    """Rows SQLite changed through the agent's store connection so far."""
    return int(agent.history._db.total_changes)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often `desired.compile_node` ran for a node step."""
    calls = {"compile": 0}
    real = fleet_mod.compile_node  # type: ignore[attr-defined]

    def compile_node(*a: Any) -> Any:
        calls["compile"] += 1
        return real(*a)

    monkeypatch.setattr(fleet_mod, "compile_node", compile_node)
    return calls


def test_repeated_in_sync_pass_compiles_and_writes_nothing(clean_podman: Any, git_remote: GitRemote,
                                                            tmp_path: Path, counted: dict[str, int]) -> None:
    git_remote.write("apps/web.yaml", manifests())
    git_remote.commit_and_push("web")
    agent = make_agent(tmp_path, git_remote.url, clean_podman)
    try:
        assert agent.sync().result == "applied"
        assert agent.sync().result == "in-sync"  # the first in-sync after `applied`: a new result, recorded
        rows = len(agent.history.syncs())
        assert rows == 2
        last = agent.history.get("last_result")
        compiled, changes = counted["compile"], store_changes(agent)
        for _ in range(3):
            assert agent.sync().result == "in-sync"
        assert store_changes(agent) == changes, "a repeated in-sync pass wrote to the store"
        assert len(agent.history.syncs()) == rows and agent.history.get("last_result") == last
        assert counted["compile"] == compiled, "an unchanged revision was compiled again"

        # the record grows old: the next in-sync pass records again
        agent.history.put("last_result", {**last, "at": last["at"] - agent_mod.RECORD_QUIET - 1})
        assert agent.sync().result == "in-sync"
        assert len(agent.history.syncs()) == rows + 1
        assert abs(agent.history.get("last_result")["at"] - time.time()) < 60

        # drift: the repair is a result of its own, recorded
        clean_podman.podman("rm", "-f", "-t", "0", app_container(clean_podman))
        out = agent.sync()
        assert out.result == "applied" and out.actions, (out.result, out.error)
        assert len(agent.history.syncs()) == rows + 2

        # a new revision compiles again, once per node step
        git_remote.write("apps/web.yaml", manifests(WEB2))
        git_remote.commit_and_push("web2")
        compiled = counted["compile"]
        assert agent.sync().result == "applied"
        assert counted["compile"] > compiled
    finally:
        agent.close()


def test_drift_pass_reuses_the_last_poll_while_it_is_fresh(clean_podman: Any, git_remote: GitRemote,
                                                           tmp_path: Path) -> None:
    git_remote.write("apps/web.yaml", manifests())
    first = git_remote.commit_and_push("web")
    agent = make_agent(tmp_path, git_remote.url, clean_podman, interval="60s")
    polls: list[str] = []
    real = agent.git.remote_head

    def remote_head() -> str:
        polls.append("ls-remote")
        return real()

    agent.git.remote_head = remote_head  # type: ignore[method-assign]
    try:
        assert agent.polled_at() is None
        out = agent.sync(poll=False)  # no poll yet: Git is asked anyway
        assert out.result == "applied" and len(polls) == 1 and agent.polled_at() is not None
        git_remote.write("apps/web.yaml", manifests(WEB2))
        second = git_remote.commit_and_push("web2")
        out = agent.sync(poll=False)  # the last poll is fresh: its head, the commit it saw
        assert len(polls) == 1 and out.head.endswith(first) and out.result == "in-sync"
        out = agent.sync()  # an interval pass polls (and the rollout asks Git whether it was superseded)
        assert len(polls) >= 2 and out.head.endswith(second) and out.result == "applied", (out.result, out.error)
        assert agent.sync(poll=False).result == "in-sync"
        polled, seen = agent.polled_at(), len(polls)
        assert polled is not None
        agent._polled = (polled - 61.0, agent._polled[1])  # type: ignore[index]  # the last poll is now too old
        assert agent.sync(poll=False).result == "in-sync" and len(polls) == seen + 1  # no starving the poll
    finally:
        agent.close()


def test_daemon_keeps_the_poll_due_after_a_drift_pass() -> None:
    """After a pass that did not poll (drift), the next pass is due when the poll is (last poll + interval),
    not a whole interval after the drift pass; after a pass that polled, the interval with its jitter."""
    from gitops_agent import clock
    from gitops_agent.daemon import Daemon

    class Stub:
        cfg = SimpleNamespace(source=SimpleNamespace(interval=100.0))
        nodes: dict[str, object] = {}

        def __init__(self) -> None:
            self.polled: float | None = None

        def polled_at(self) -> float | None:
            return self.polled

        def sync(self, poll: bool = True) -> object:
            if poll or self.polled is None:
                self.polled = clock.now() - (0 if poll else 70.0)
            return SimpleNamespace(ok=True, waiting=False, result="in-sync", target="r", head="r", error="")

    stub = Stub()
    daemon = Daemon(stub, lambda *a, **k: None)  # type: ignore[arg-type]
    delays: list[float] = []
    daemon.schedule = lambda delay, poll=True: delays.append(delay)  # type: ignore[method-assign]
    stub.polled = clock.now() - 70.0  # polled 70 s ago
    daemon._pass_once(poll=False)
    assert 25.0 < delays[-1] <= 30.0, delays  # due 100 s after the poll
    daemon._pass_once(poll=True)
    assert 90.0 <= delays[-1] <= 110.0, delays  # the interval, jittered ±10 %
