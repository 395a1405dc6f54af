"""Typed state records: JSON round trips, and a store written by the agent before them reads the same."""

from __future__ import annotations

from pathlib import Path

from gitops_agent.errors import Problem
from gitops_agent.history import History
from gitops_agent.fleet import NodeProgress as OldProgress, RolloutState as OldRollout
from gitops_agent.state import SCHEMA, AgentState, Failure, Rejection, RolloutState


def test_a_store_written_before_the_typed_records_loads_without_losing_the_applied_revision(tmp_path: Path) -> None:
    h = History(tmp_path)  # the writes below are the ones agent.py made before the typed records, key by key
    old = OldRollout(target="main@sha1:bb", target_sha="bb", previous="main@sha1:aa", previous_sha="aa",
                     order=["n1", "n2"], nodes={"n1": OldProgress(status="done", deadline=5.0, images={"i": "d"}),
                                                "n2": OldProgress(status="updating")},
                     failure={"node": "n2", "error": "gone", "unreachable": True})
    h.put("applied_sha", "aa")
    h.put("applied_revision", "main@sha1:aa")
    h.put("applied_digest", "sha256:1")
    h.put("attempted_revision", "main@sha1:bb")
    h.put("rejected", {"sha": "cc", "error": "bad", "problems": [Problem("f", 1, "", "", "m").__dict__], "policy": "p"})
    h.put("failed", {"sha": "dd", "revision": "main@sha1:dd", "at": 1.0, "halted": False, "node": "n1", "error": "x",
                     "pod": "web-1", "probe": "readiness", "output": "", "unreachable": False})
    h.put("rollout", old.to_json())
    h.put("last_result", {"result": "progressing", "error": "", "at": 2.0, "nodeErrors": {}})
    h.put("stable", [{"revision": "main@sha1:aa", "sha": "aa", "at": 1.0, "templates": ["t1"]}])
    h.close()
    state = History(tmp_path).load()
    assert state.schema == 1
    assert state.applied is not None and (state.applied.sha, state.applied.revision) == ("aa", "main@sha1:aa")
    assert state.rejected == Rejection("cc", "bad", (Problem("f", 1, "", "", "m"),), "p")
    assert state.failed is not None
    assert (state.failed.pod, state.failed.probe, state.failed.reason) == ("web-1", "readiness", "")
    assert state.rollout is not None and state.rollout.status("n1") == "done" and state.rollout.order == ("n1", "n2")
    assert state.rollout.to_json() == old.to_json()  # the same shape: nothing re-rolls after an upgrade
    assert state.last is not None and state.last.result == "progressing"
    assert [s.sha for s in state.stable] == ["aa"]


def test_a_transaction_writes_the_schema_and_all_or_nothing(tmp_path: Path) -> None:
    h = History(tmp_path)
    with h.transaction():
        h.put("applied_sha", "aa")
    assert h.load().schema == SCHEMA
    try:
        with h.transaction():
            h.put("applied_sha", "bb")
            raise RuntimeError("killed mid-pass")
    except RuntimeError:
        pass
    assert h.get("applied_sha") == "aa"


def test_records_round_trip_through_json() -> None:
    f = Failure("dd", "main@dd", 1.0, True, "n1", "x", reason="RolloutFailed")
    assert Failure.from_json(f.to_json()) == f
    assert Failure.from_json({**f.to_json(), "future_field": 1}) == f  # a newer agent's extra field is ignored
    r = Rejection("cc", "bad", (Problem("f", 1, "K/n", "a.b", "m"),), "p")
    assert Rejection.from_json(r.to_json()) == r
    raw = {"target": "t", "target_sha": "s", "previous": "", "previous_sha": "", "order": ["n1"],
           "nodes": {"n1": {"status": "pending"}}, "phase": "progressing"}
    assert RolloutState.from_json(raw).to_json()["nodes"]["n1"]["status"] == "pending"
    assert AgentState.from_store({}).applied is None
