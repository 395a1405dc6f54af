"""The rollout event journal: the typed events of `sync`, `run` and `rollback`, kept as JSON
lines in `<stateDir>/events.jsonl`, so that `status --watch` (another process) can draw the
same live rollout view from the same events.

An `EventLog` subscriber (`Journal`) appends; `follow` reads back from the newest
`rollout.start`. Only rollout events are kept (`rollout.*`, `rollback.*`, `image.pull`,
`action`), the file is rotated at MAX_BYTES to `events.jsonl.1`. Callers never pass Secret
values to the log, so none reaches this file. Must not read the history store; a write that
fails (a full or read-only disk) is dropped: the journal never stops a rollout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

MAX_BYTES = 1024 * 1024
NAME = "events.jsonl"
_KEPT = ("rollout.", "rollback.", "image.pull", "action")


def wanted(event: str) -> bool:
    return event.startswith(_KEPT)


class Journal:
    """Appends the rollout events of this process to `<state_dir>/events.jsonl`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / NAME
        self._lock = threading.Lock()
        self.broken = ""  # why the last write failed; writes go on being tried

    def __call__(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        if not wanted(event):
            return
        line = json.dumps({"ts": time.time(), "level": level, "event": event, **fields}, default=str) + "\n"
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size > MAX_BYTES:
                    os.replace(self.path, self.path.with_name(NAME + ".1"))
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                self.broken = ""
            except OSError as e:
                self.broken = e.strerror or str(e)


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return out


def follow(state_dir: Path, stop: Callable[[], bool], poll: float = 0.2) -> Iterator[dict[str, Any]]:
    """The events of the newest rollout in the journal, from its `rollout.start`, then each new
    one as it is written, until its `rollout.end` (or `stop()`). Nothing when there is none."""
    path = state_dir / NAME
    records = _records(path)
    starts = [i for i, r in enumerate(records) if r.get("event") == "rollout.start"]
    if not starts:
        return
    seen = len(records)
    for r in records[starts[-1]:]:
        end = r.get("event") == "rollout.end"  # read before the caller may change r
        yield r
        if end:
            return
    while not stop():
        time.sleep(poll)
        records = _records(path)
        if len(records) < seen:  # rotated: the new file holds only what came after
            seen = 0
        for r in records[seen:]:
            end = r.get("event") == "rollout.end"
            yield r
            if end:
                return
        seen = len(records)
