"""Structured event lines: one line per event, `text` (key=value) or `json`.

Used by every module through a plain callable `log(event, **fields)`, so tests
can capture events by passing a list's append. This is the single event
emitter: displays (the live rollout view of `progress`) subscribe to the same
typed events with `EventLog.subscribe`, and never read the history store.
Callers never pass Secret values; this module does not inspect fields.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable, Mapping, TextIO

Log = Callable[..., None]
Subscriber = Callable[[str, str, Mapping[str, Any]], None]  # (event, level, fields)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(ch in text for ch in " \"=\n")) else text


def live_wanted(fmt: str, stream: TextIO) -> bool:
    """The live view only on an interactive terminal, in text format, without NO_COLOR (no-color.org)."""
    return fmt == "text" and _isatty(stream) and not os.environ.get("NO_COLOR")


class EventLog:
    """Writes `ts level event k=v ...` (text) or one JSON object per line (json), and
    hands every event to its subscribers.

    With `live` (default: `live_wanted`) a rollout is also drawn as a live table
    of its nodes (`progress.RolloutView`) under the log lines.
    """

    def __init__(self, fmt: str = "text", stream: TextIO | None = None, live: bool | None = None) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r} (text or json)")
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.live = live_wanted(fmt, self.stream) if live is None else live
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._write: Callable[[str], None] = self._plain
        if self.live:
            from .progress import RolloutView

            view = RolloutView(self.stream)
            self._write = view.print
            self.subscribe(view)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber(event, level, fields)` for every later event, in emit order."""
        with self._lock:
            self._subscribers.append(subscriber)

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = json.dumps({"ts": ts, "level": level, "event": event, **fields}, default=str)
        else:
            line = text_line(time.time(), level, event, fields)
        with self._lock:
            self._write(line)
            for subscriber in self._subscribers:
                try:
                    subscriber(event, level, fields)
                except Exception as e:  # a display must never stop a rollout
                    self._plain(f"{ts} warning log.subscriber error={_quote(f'{type(e).__name__}: {e}')}")

    def _plain(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def text_line(at: float, level: str, event: str, fields: Mapping[str, Any]) -> str:
    """`ts level event k=v ...`, the text format of one event."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return " ".join([ts, level, event, *(f"{k}={_quote(v)}" for k, v in fields.items())])


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def discard(event: str, level: str = "info", **fields: Any) -> None:
    """A Log that drops everything (for one-shot commands whose output is the result)."""
