"""Structured event lines: one line per event, `text` (key=value) or `json`.

Used by every module through a plain callable `log(event, **fields)`, so tests
can capture events by passing a list's append. Callers never pass Secret
values; this module does not inspect fields.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable, TextIO

Log = Callable[..., None]


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(ch in text for ch in " \"=\n")) else text


class EventLog:
    """Writes `ts level event k=v ...` (text) or one JSON object per line (json).

    On an interactive terminal (text format) a rollout also gets a live status
    line under the log lines, redrawn after each event and cleared at its end.
    """

    def __init__(self, fmt: str = "text", stream: TextIO | None = None, live: bool | None = None) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r} (text or json)")
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.live = fmt == "text" and _isatty(self.stream) if live is None else live
        self._status = ""
        self._lock = threading.Lock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = json.dumps({"ts": ts, "level": level, "event": event, **fields}, default=str)
        else:
            line = " ".join([ts, level, event, *(f"{k}={_quote(v)}" for k, v in fields.items())])
        with self._lock:
            if not self.live:
                self.stream.write(line + "\n")
            else:
                self._status = _status_line(self._status, event, fields)
                self.stream.write("\r\033[K" + line + "\n" + self._status)
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _status_line(current: str, event: str, fields: dict[str, Any]) -> str:
    """The live line of a rollout: revision, node and step, last thing done."""
    if event == "rollout.start":
        return f"rollout {fields.get('revision', '')[-12:]}: starting"
    if event == "rollout.end":
        return ""
    if not current:
        return ""
    head = current.split(" | ")[0]
    if event in ("rollout.node", "rollback.node"):
        head = f"{head.split(':')[0]}: {'rolling back ' if event == 'rollback.node' else ''}node {fields.get('node')} ({fields.get('step', '')})"
    detail = fields.get("pod") or fields.get("target") or fields.get("node") or ""
    return f"{head} | {event} {detail}".rstrip()

def discard(event: str, level: str = "info", **fields: Any) -> None:
    """A Log that drops everything (for one-shot commands whose output is the result)."""
