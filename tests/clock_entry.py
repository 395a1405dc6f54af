"""A fake-time hook for the clock-jump test (test only): `python tests/clock_entry.py OFFSET_FILE <gitops-agent args>`.

Runs `gitops_agent.cli.main` with `time.time` stepped by the number of seconds written in OFFSET_FILE (re-read
whenever the file changes), as an NTP step moves the wall clock of an edge box; `time.monotonic` is left alone,
as the kernel does. (libfaketime's FAKETIME_DONT_FAKE_MONOTONIC makes Python's time.sleep fail with EINVAL on
Debian 12, so the step is made here, for every Python reader of the wall clock in the process.)
"""

from __future__ import annotations

import os
import sys
import time

from gitops_agent.cli import main


def step_wall_clock(path: str) -> None:
    real = time.time
    seen: list[float] = [-1.0, 0.0]  # mtime, offset

    def stepped() -> float:
        try:
            mtime = os.stat(path).st_mtime_ns
            if mtime != seen[0]:
                with open(path) as f:
                    seen[:] = [mtime, float(f.read().strip() or 0)]
        except (OSError, ValueError):
            pass
        return real() + seen[1]

    time.time = stepped


if __name__ == "__main__":
    step_wall_clock(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
