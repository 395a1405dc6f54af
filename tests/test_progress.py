"""The live rollout view's board, folded from literal events, and the event journal that
`status --watch` reads (no terminal, no Podman)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from gitops_agent.journal import Journal, follow
from gitops_agent.log import EventLog
from gitops_agent.progress import Board, RolloutView, render


def fold(*events: tuple[str, dict[str, object]]) -> Board:
    b = Board()
    for i, (event, fields) in enumerate(events):
        b.apply(event, fields, float(i))
    return b


START = ("rollout.start", {"revision": "main@sha1:abc", "fast": False, "nodes": "n1,n2,n3"})


def test_rows_follow_the_rollout_order_and_the_first_node_is_the_canary() -> None:
    """Every node gets a row at the start, waiting, in order; only the first of a slow rollout is the canary."""
    b = fold(START)
    assert list(b.rows) == ["n1", "n2", "n3"]
    assert [r.phase for r in b.rows.values()] == ["waiting"] * 3
    assert [r.canary for r in b.rows.values()] == [True, False, False]
    fast = fold(("rollout.start", {"revision": "r", "fast": True, "nodes": "n1,n2"}))
    assert not any(r.canary for r in fast.rows.values())


def test_a_node_moves_through_pulling_updating_ready_with_its_pod_counts() -> None:
    """Pulling on image.pull, updating on pod work, counts from rollout.progress, all ready when done."""
    b = fold(START, ("rollout.node", {"node": "n1"}), ("image.pull", {"node": "n1"}))
    assert b.rows["n1"].phase == "pulling"
    counts = {"updated": 1, "ready": 0, "desired": 3}
    b.apply("rollout.progress", {"node": "n1", "workload": "Deployment/d/web", **counts}, 5)
    assert b.rows["n1"].phase == "updating" and b.rows["n1"].counts == (1, 0, 3)
    b.apply("rollout.node.done", {"node": "n1"}, 9)
    assert b.rows["n1"].phase == "ready" and b.rows["n1"].counts == (3, 3, 3)
    assert b.rows["n1"].elapsed(100) == 8  # from rollout.node (t=1) to done (t=9)


def test_a_failed_canary_shows_its_probe_output_and_ends_rolled_back() -> None:
    """The failing probe's output stays under the node after it was rolled back; others never left waiting."""
    b = fold(START, ("rollout.node", {"node": "n1"}),
             ("rollout.node.failed", {"node": "n1", "error": "long", "probe": "readiness", "output": "No such file"}))
    assert b.rows["n1"].phase == "failed" and b.rows["n1"].failure == "readiness probe: No such file"
    b.apply("rollback.node", {"node": "n1"}, 5)
    assert b.rows["n1"].phase == "rolling back"
    b.apply("rollout.end", {"phase": "rolled-back"}, 6)
    assert [r.phase for r in b.rows.values()] == ["rolled back", "waiting", "waiting"]
    assert b.rows["n1"].failure == "readiness probe: No such file"
    text = _text(b)
    assert "readiness probe: No such file" in text and "n1 (canary)" in text and "rolled back" in text


def test_deferred_and_first_deploy_counts() -> None:
    """An unreachable node is deferred; create-pod actions count as desired, and as ready once the node is done."""
    b = fold(START, ("rollout.deferred", {"node": "n3"}), ("rollout.node", {"node": "n1"}),
             ("action", {"node": "n1", "op": "create-pod"}), ("action", {"node": "n1", "op": "create-network"}))
    assert b.rows["n3"].phase == "deferred" and b.rows["n1"].counts == (1, 0, 1)
    b.apply("rollout.node.done", {"node": "n1"}, 9)
    assert b.rows["n1"].counts == (1, 1, 1)


def test_a_resumed_rollout_shows_the_nodes_done_before_as_ready() -> None:
    """rollout.start of a resumed rollout names the nodes already done: they are ready, not waiting."""
    b = fold(("rollout.start", {"revision": "r", "fast": False, "nodes": "n1,n2,n3", "done": "n1"}))
    assert [r.phase for r in b.rows.values()] == ["ready", "waiting", "waiting"]


def test_events_outside_a_rollout_change_nothing() -> None:
    """A node event before any rollout.start (a plain sync step) makes no row."""
    assert fold(("rollout.node", {"node": "n1"})).rows == {}


def test_the_event_log_hands_every_event_to_subscribers_and_still_writes_lines() -> None:
    """subscribe() is the seam: same events, same order, and the plain lines are unchanged."""
    out = io.StringIO()
    log = EventLog("text", out, live=False)
    seen: list[tuple[str, str, dict[str, object]]] = []
    log.subscribe(lambda e, lv, f: seen.append((e, lv, dict(f))))
    log("rollout.node", node="n1", step="1/3")
    log("rollout.node.failed", level="error", node="n1", error="bad")
    assert seen == [("rollout.node", "info", {"node": "n1", "step": "1/3"}),
                    ("rollout.node.failed", "error", {"node": "n1", "error": "bad"})]
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("info rollout.node node=n1 step=1/3") and "\x1b" not in out.getvalue()


def test_the_live_view_draws_rows_with_log_lines_above() -> None:
    """On a (forced) terminal the view prints the log line and the table of nodes."""
    out = io.StringIO()
    view = RolloutView(out, clock=lambda: 10.0)
    view(*START[:1], "info", START[1])
    view.print("a log line")
    view("rollout.end", "info", {"phase": "complete"})
    text = out.getvalue()
    assert "a log line" in text and "n2" in text and "n1 (canary)" in text


def _text(b: Board) -> str:
    from rich.console import Console

    c = Console(file=io.StringIO(), width=160, color_system=None)
    c.print(render(b, 10.0))
    return c.file.getvalue()  # type: ignore[attr-defined]


def test_the_journal_keeps_rollout_events_and_follow_replays_the_newest_rollout(tmp_path: Path) -> None:
    """Only rollout events are journalled; follow starts at the newest rollout.start and ends at its rollout.end."""
    j = Journal(tmp_path)
    j("sync", "info", {"result": "applied"})
    j("rollout.start", "info", {"revision": "old", "nodes": "n1"})
    j("rollout.end", "info", {"phase": "complete"})
    j("rollout.start", "info", {"revision": "new", "nodes": "n1,n2"})
    j("rollout.node", "info", {"node": "n1"})
    (tmp_path / "events.jsonl").open("a").write('{"cut by a cra')  # a torn last line is skipped
    got: list[dict[str, object]] = []
    stops = iter([False, True])
    for r in follow(tmp_path, stop=lambda: next(stops), poll=0.01):
        got.append(r)
    assert [(r["event"], r.get("revision")) for r in got] == [("rollout.start", "new"), ("rollout.node", None)]
    assert all("sync" != r["event"] for r in got)
    assert list(follow(tmp_path / "nothing", stop=lambda: True)) == []


def test_status_watch_prints_the_last_rollout_and_its_exit_code(tmp_path: Path, capsys: Any) -> None:
    """Not on a terminal, status --watch prints the events as lines and the rows once; 1 unless complete."""
    from gitops_agent.cli import _watch
    from gitops_agent.config import AgentConfig, SourceConfig

    j = Journal(tmp_path)
    for event, fields in (START, ("rollout.node", {"node": "n1"}),
                          ("rollout.node.failed", {"node": "n1", "error": "e", "probe": "readiness", "output": "boom"}),
                          ("rollback.node", {"node": "n1"}), ("rollout.end", {"phase": "rolled-back"})):
        j(event, "info", fields)
    code = _watch(AgentConfig(source=SourceConfig(url="x"), state_dir=tmp_path))
    out = capsys.readouterr().out
    assert code == 1 and "info rollout.node node=n1" in out and "\x1b" not in out
    assert re.search(r"^n1 \(canary\) +rolled back", out, re.M) and "└ readiness probe: boom" in out
    assert re.search(r"^n3 +waiting", out, re.M)
