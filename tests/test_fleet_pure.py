"""The fleet layer's waits and events on fake nodes (`tests/fake_node.py`): no Podman needed for these."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import yaml

from fake_node import FakeNode
from gitops_agent import config as config_mod
from gitops_agent.history import History
from gitops_agent.fleet import Fleet


def fleet(tmp_path: Path, nodes: dict[str, FakeNode]) -> tuple[Fleet, list[tuple[str, dict[str, Any]]]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": f"file://{tmp_path}/repo"}, "stateDir": str(tmp_path / "state"),
                                   "nodes": [{"name": n, "url": f"unix://{tmp_path}/{n}.sock"} for n in nodes]}))
    seen: list[tuple[str, dict[str, Any]]] = []
    f = Fleet(config_mod.load(str(cfg)), nodes, History(tmp_path / "state"),  # type: ignore[arg-type]
              lambda event, **fields: seen.append((event, fields)), threading.Event())
    return f, seen


def test_a_node_that_comes_back_within_the_timeout_is_waited_for_with_its_events(tmp_path: Path) -> None:
    node = FakeNode("n1", down=2)
    f, seen = fleet(tmp_path, {"n1": node})
    assert f._wait_reachable("n1", timeout=30) == ""
    assert node.pings == 3
    assert [(e, fields.get("reason")) for e, fields in seen] == [("node.unreachable", "NodeUnreachable"),
                                                                  ("node.back", "NodeBack")]


def test_a_node_still_down_after_the_timeout_is_reported_once(tmp_path: Path) -> None:
    f, seen = fleet(tmp_path, {"n1": FakeNode("n1", down=10**6)})
    assert f._wait_reachable("n1", timeout=0) == "node n1: connection refused"
    assert [e for e, _ in seen] == ["node.unreachable"]
    f2, seen2 = fleet(tmp_path / "b", {"n1": FakeNode("n1")})
    assert f2._wait_reachable("n1", timeout=0) == "" and seen2 == []  # an answering node: no event at all
