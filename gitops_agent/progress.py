"""The live rollout view: one row per node, drawn on a terminal with `rich`.

Sits beside `log`: it is an `EventLog` subscriber and sees exactly the typed
events the log lines show (`rollout.start`, `rollout.node`, `image.pull`,
`rollout.progress`, `rollout.node.done`, `rollout.node.failed`, `rollback.node`,
...). `Board` turns those events into rows (pure, tested from literals);
`RolloutView` draws the rows with rich's `Live` display and progress bars, and
prints the log lines above them. The only module that imports rich. Must not
read the history store or talk to Podman.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

WAITING, PULLING, UPDATING, READY, FAILED = "waiting", "pulling", "updating", "ready", "failed"
ROLLING_BACK, ROLLED_BACK, DEFERRED = "rolling back", "rolled back", "deferred"


@dataclass
class Row:
    """One node of a rollout as the events told it."""

    node: str
    canary: bool = False
    phase: str = WAITING
    started: float = 0.0
    finished: float = 0.0
    workloads: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # workload → (updated, ready, desired)
    created: int = 0  # pods created by create-pod actions (a first deploy): desired and, once done, ready
    failure: str = ""  # why it failed: the failing probe's last output

    @property
    def counts(self) -> tuple[int, int, int]:
        """(updated, ready, desired) summed over the node's workloads."""
        u = sum(c[0] for c in self.workloads.values())
        r = sum(c[1] for c in self.workloads.values())
        d = sum(c[2] for c in self.workloads.values())
        done = self.created if self.phase in (READY, ROLLED_BACK) else 0
        return u + self.created, r + done, d + self.created

    def elapsed(self, now: float) -> float:
        if not self.started:
            return 0.0
        return (self.finished or now) - self.started


class Board:
    """A rollout's rows, in rollout order, folded from events (pure: time comes in)."""

    def __init__(self) -> None:
        self.revision = ""
        self.phase = ""
        self.rows: dict[str, Row] = {}

    def row(self, node: str) -> Row:
        return self.rows.setdefault(node, Row(node))

    def apply(self, event: str, fields: Mapping[str, Any], now: float) -> None:
        node = str(fields.get("node", ""))
        if event == "rollout.start":
            self._start(fields)
        elif event == "rollout.end":
            self.phase = str(fields.get("phase", ""))
            self._rolled_back(now)
        elif not node or not self.phase:
            return
        elif event in ("action", "rollout.create", "rollout.remove", "rollout.progress", "rollout.done"):
            self._pods(self.row(node), event, fields)
        elif event in _NODE_EVENTS:
            _NODE_EVENTS[event](self.row(node), fields, now)
        elif event == "rollback.node":
            self._rolled_back(now)  # the one before is back on the old revision
            r = self.row(node)
            r.phase, r.started, r.finished = ROLLING_BACK, r.started or now, 0.0

    def _start(self, fields: Mapping[str, Any]) -> None:
        order = [n for n in str(fields.get("nodes", "")).split(",") if n]
        self.revision, self.phase = str(fields.get("revision", "")), "progressing"
        fast = str(fields.get("fast", "")).lower() == "true"
        self.rows = {n: Row(n, canary=not fast and i == 0 and len(order) > 1) for i, n in enumerate(order)}
        for n in str(fields.get("done", "")).split(","):  # a resumed rollout: these nodes finished before
            if n in self.rows:
                self.rows[n].phase = READY

    def _rolled_back(self, now: float) -> None:
        """The node rolling back (if any) is done: back on the old revision."""
        for r in self.rows.values():
            if r.phase == ROLLING_BACK:
                r.phase, r.finished = ROLLED_BACK, now

    @staticmethod
    def _pods(r: Row, event: str, fields: Mapping[str, Any]) -> None:
        if r.phase == PULLING:
            r.phase = UPDATING
        if event == "action":
            if fields.get("op") == "create-pod":
                r.created += 1
            return
        w = str(fields.get("workload", ""))
        if event == "rollout.progress":
            r.workloads[w] = (int(fields["updated"]), int(fields["ready"]), int(fields["desired"]))
        elif event == "rollout.done":
            n = int(fields.get("replicas", 0))
            r.workloads[w] = (n, n, n)


def _node_started(r: Row, fields: Mapping[str, Any], now: float) -> None:
    r.phase, r.started, r.finished, r.failure = UPDATING, now, 0.0, ""


def _pulling(r: Row, fields: Mapping[str, Any], now: float) -> None:
    if r.phase in (WAITING, UPDATING):
        r.phase = PULLING


def _node_done(r: Row, fields: Mapping[str, Any], now: float) -> None:
    r.phase, r.finished = READY, now
    r.workloads = {w: (d, d, d) for w, (_, _, d) in r.workloads.items()}


def _node_failed(r: Row, fields: Mapping[str, Any], now: float) -> None:
    r.phase, r.finished = FAILED, now
    probe, output = str(fields.get("probe") or ""), str(fields.get("output") or "")
    r.failure = f"{probe} probe: {output}" if probe and output else str(fields.get("error", ""))


def _deferred(r: Row, fields: Mapping[str, Any], now: float) -> None:
    r.phase = DEFERRED


def _rollback_failed(r: Row, fields: Mapping[str, Any], now: float) -> None:
    r.phase, r.finished, r.failure = FAILED, now, f"rollback failed: {fields.get('error', '')}"


# Events about one node that change only its row: event -> (row, the event's fields, its time)
_NODE_EVENTS: dict[str, Callable[[Row, Mapping[str, Any], float], None]] = {
    "rollout.node": _node_started,
    "image.pull": _pulling,
    "rollout.node.done": _node_done,
    "rollout.node.failed": _node_failed,
    "rollout.deferred": _deferred,
    "rollback.deferred": _deferred,
    "rollback.failed": _rollback_failed,
}


_STYLE = {READY: "green", FAILED: "bold red", ROLLED_BACK: "yellow", ROLLING_BACK: "yellow", DEFERRED: "magenta",
          UPDATING: "cyan", PULLING: "cyan", WAITING: "dim"}


_WIDTHS = (12, 20, 21, 8)  # PHASE, PODS, UPDATED/READY/DESIRED, ELAPSED: fixed, so each node's grid lines up


def render(board: Board, now: float) -> Group:
    """The rows: node (canary marked), phase, pods bar, counts, elapsed; a failure's reason on its own line
    under its node. Each row is a grid of fixed column widths, so a long reason widens no column."""
    node_w = max([len("NODE")] + [len(r.node) + (9 if r.canary else 0) for r in board.rows.values()])
    parts: list[Any] = [Text(f"rollout {board.revision[-12:]}: {board.phase}", style="bold")]

    def grid(*cells: Any) -> Table:
        t = Table.grid(padding=(0, 2))
        for w in (node_w, *_WIDTHS):
            t.add_column(width=w, no_wrap=True)
        t.add_row(*cells)
        return t

    parts.append(grid("NODE", "PHASE", "PODS", "UPDATED/READY/DESIRED", "ELAPSED"))
    for r in board.rows.values():
        updated, ready, desired = r.counts
        completed = ready if desired else (1 if r.phase == READY else 0)
        bar = ProgressBar(total=max(desired, 1), completed=completed, width=_WIDTHS[1])
        parts.append(grid(r.node + (" (canary)" if r.canary else ""), Text(r.phase, style=_STYLE.get(r.phase, "")), bar,
                          f"{updated}/{ready}/{desired}", f"{r.elapsed(now):.1f}s" if r.started else "-"))
        if r.failure:
            first = r.failure.strip().splitlines()[0] if r.failure.strip() else r.failure
            parts.append(Text(f"  └ {first[:300]}", style="red", overflow="fold"))
    return Group(*parts)


def print_plain(board: Board, stream: TextIO, now: float) -> None:
    """The rows once, without colours or cursor moves (not a terminal)."""
    Console(file=stream, color_system=None, force_terminal=False, width=160, highlight=False).print(render(board, now))


class RolloutView:
    """An EventLog subscriber drawing the board live while a rollout runs."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=True)
        self.board = Board()
        self.clock = clock
        self._live: Live | None = None
        self._lock = threading.RLock()

    def __call__(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        self.feed(event, fields, self.clock())

    def feed(self, event: str, fields: Mapping[str, Any], at: float) -> None:
        """One event that happened at `at` (a replayed one, for `status --watch`, in the past)."""
        with self._lock:
            self.board.apply(event, fields, at)
            if event == "rollout.start" and self._live is None:
                self._live = Live(get_renderable=self._renderable, console=self.console, refresh_per_second=4,
                                  transient=False, redirect_stdout=False, redirect_stderr=False)
                self._live.start()
            elif self._live is not None:
                self._live.refresh()
            if event == "rollout.end" and self._live is not None:
                self._live.stop()
                self._live = None

    def _renderable(self) -> Group:
        return render(self.board, self.clock())

    def print(self, line: str) -> None:
        """A log line, above the live table while there is one."""
        with self._lock:
            self.console.print(Text(line), soft_wrap=True)
