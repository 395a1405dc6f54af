"""The Jobs' and CronJobs' records (`jobs.Book`) in the state store, one book per object per node.

Sits between `fleet` (which asks for a node's `jobs.Batch` before it plans, and has it saved first, as secrets
are recorded before they exist) and the pure `jobs` / `cronjobs` (which bring each book up to the clock). The
only I/O here: the store's `batch` key and, for a run that has just failed, the last lines of output of its
failed pods (`Node.logs`), Secret values redacted (`desired.redact`) before they are kept. Holds no Secret value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .cronjobs import advance, pods_of_run, wake_time
from .desired import BATCH, NodeDesired, WorkloadSpec, redact
from .errors import NodeError
from .history import History
from .jobs import FAILED, Batch, Book, finished, job_book, succeeded, wake_times
from .live import LivePod, LiveState
from .podman import Node

KEY = "batch"  # the store key: {node: {"Kind/namespace/name": Book.to_json()}}
OUTPUT_LINES = 10  # lines of each failed pod's output kept with its run


def _books(history: History, node: str) -> dict[str, Any]:
    return dict((history.get(KEY) or {}).get(node, {}))


def stored(history: History, node: str) -> dict[str, Book]:
    """Node `node`'s books as last saved, by "Kind/namespace/name" (what `status` shows)."""
    return {key: Book.from_json(raw) for key, raw in _books(history, node).items()}


def current(history: History, desired: NodeDesired, live: LiveState, now: float,
            node: Node | None = None) -> Batch:
    """Node `desired.node`'s books brought up to `now`; with `node`, saved (with the output of the runs that
    have just failed, read from `node`) before the plan acts on them. Books of objects gone from the node go."""
    stored = _books(history, desired.node)
    books: dict[Any, Book] = {}
    for w in desired.workloads:
        if w.ref.kind not in BATCH:
            continue
        raw = stored.get(str(w.ref))
        old = Book.from_json(raw) if raw is not None else None
        pods = live.pods_of(w.ref)
        new = job_book(w, pods, old, now) if w.cron is None else advance(w, pods, old, now)
        books[w.ref] = _with_output(node, w, pods, old, new) if node is not None else new
    if node is not None:
        fresh = {str(ref): b.to_json() for ref, b in books.items() if b.runs or ref.kind == "CronJob"}
        if fresh != stored:
            with history.transaction():
                every = dict(history.get(KEY) or {})
                every[desired.node] = fresh
                history.put(KEY, every)
    return Batch(now, books)


def _with_output(node: Node, w: WorkloadSpec, pods: Sequence[LivePod], old: Book | None, new: Book) -> Book:
    """`new` with the output of each run that failed since `old`."""
    runs = []
    for r in new.runs:
        before = old.run(r.run) if old is not None else None
        if r.phase == FAILED and not r.output and (before is None or not before.phase):
            own = pods_of_run(pods, r.run) if w.cron is not None else [p for p in pods if p.template_hash == r.run]
            r = replace(r, output=_output(node, w, [p for p in own if not succeeded(p)]))
        runs.append(r)
    return replace(new, runs=tuple(runs))


def _output(node: Node, w: WorkloadSpec, pods: Sequence[LivePod]) -> str:
    """The last lines of each failed (or stopped) pod's containers, Secret values redacted."""
    hide = w.pods[0].redactions if w.pods else ()
    parts = []
    for p in pods:
        for c in p.containers:
            try:
                lines = list(node.logs(c.name, tail=OUTPUT_LINES))
            except NodeError as e:
                lines = [f"(output unavailable: {e.reason})"]
            state = f"exit code {c.exit_code}" if finished(p) else "stopped at its deadline"
            parts.append(f"{c.labels.get('io.gitops-agent.container', c.name)} ({state}):\n" + "\n".join(lines))
    return redact("\n".join(parts), hide)


def next_wake(history: History, desired: NodeDesired, live: LiveState, now: float) -> float | None:
    """The first time after `now` a Job or CronJob of this node needs a pass: a schedule, a deadline, an expiry."""
    stored = _books(history, desired.node)
    times: list[float] = []
    for w in desired.workloads:
        if w.ref.kind not in BATCH:
            continue
        book = Book.from_json(stored.get(str(w.ref), {}))
        times += wake_times(w, live.pods_of(w.ref), book)
        at = wake_time(w, book, now)
        times += [at] if at is not None else []
    later = [t for t in times if t > now]
    return min(later) if later else None
