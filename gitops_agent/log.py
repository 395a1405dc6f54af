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
    return json.dumps(text) if (not text or any(ch in text for ch in " \"=\n")) else text


class EventLog:
    """Writes `ts level event k=v ...` (text) or one JSON object per line (json)."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r} (text or json)")
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = json.dumps({"ts": ts, "level": level, "event": event, **fields}, default=str)
        else:
            line = " ".join([ts, level, event, *(f"{k}={_quote(v)}" for k, v in fields.items())])
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def discard(event: str, level: str = "info", **fields: Any) -> None:
    """A Log that drops everything (for one-shot commands whose output is the result)."""
