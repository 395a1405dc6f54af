"""Allocated node ports stay across revisions (issue 18): a NodePort Service without `nodePort` gets a port from
its hash; the agent records the allocation when the revision is applied and passes it to the next parse, so a
Service added later that hashes to the same port cannot move the first one. Real Git, real Podman (one node)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.model import Service
from test_fleet import NS, namespace, sync


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}}


def pick(name: str) -> int:
    return 30000 + int(hashlib.sha256(f"{NS}/{name}/80/TCP".encode()).hexdigest(), 16) % 2768


def test_a_node_port_allocated_by_an_applied_revision_stays_when_a_later_service_hashes_to_it(
        clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "path": "apps"},
        "nodes": [{"name": "n1", "url": clean_fleet[0].url}],
        "stateDir": str(tmp_path / "state"),
    }))
    git_remote.write("apps/all.yaml", yaml.safe_dump_all([namespace(), service("web")], sort_keys=False))
    git_remote.commit_and_push("web")
    assert sync(cfg).ok
    rival = next(f"a{i}" for i in range(100_000) if pick(f"a{i}") == pick("web"))  # sorts before "web"
    git_remote.write("apps/all.yaml", yaml.safe_dump_all([namespace(), service("web"), service(rival)],
                                                         sort_keys=False))
    head = git_remote.commit_and_push("rival")
    assert sync(cfg).ok
    agent = Agent(config_mod.load(str(cfg)))
    try:
        ports = {o.ref.name: o.ports[0].node_port for o in agent.revision(head).objects if isinstance(o, Service)}
        assert ports == {"web": pick("web"), rival: pick("web") + 1}
        assert agent.history.get("node_ports") == {f"{NS}/web/80/TCP": pick("web"),
                                                   f"{NS}/{rival}/80/TCP": pick("web") + 1}
    finally:
        agent.close()
