"""Two clocks: deadlines and waits on the monotonic clock, persisted times on the wall clock.

An edge box without a battery-backed clock may step its wall clock by hours when NTP
syncs. Everything that *waits* (a step's deadline, minReadySeconds, probe periods,
pull backoff, an unreachable node's timeout) runs on `now()` (`time.monotonic()`),
which no clock step moves: a jump neither fails nor stretches a rollout.

What must survive a restart (a node step's absolute deadline, shown times) is stored
as wall time (`wall()`). On resume, `resume_deadline` turns the persisted deadline
back into a monotonic one, within a TOLERANCE: the time left is clamped to at most
the step's budget (a backward jump while the agent was down cannot stretch a step
beyond a fresh one) and at least its grace period (a forward jump cannot fail pods
that are healthy). README ("Clock jumps") documents this.
"""

from __future__ import annotations

import time


def now() -> float:
    """Seconds on the monotonic clock: for every deadline and wait inside this process."""
    return time.monotonic()


def wall() -> float:
    """Seconds since the epoch: for what is persisted or shown."""
    return time.time()


def local_deadline(wall_deadline: float, wall_now: float, mono_now: float, budget: float, grace: float = 0.0) -> float:
    """A persisted wall-clock deadline as a monotonic one: the time left on it, clamped to
    [grace, budget] (budget >= grace), so a wall-clock step since it was persisted moves it by no more."""
    left = min(max(wall_deadline - wall_now, grace), max(budget, grace))
    return mono_now + left


def resume_deadline(persisted: float, wall_now: float, budget: float, grace: float) -> float:
    """The wall deadline a resumed step keeps: the persisted one, but never less than `grace`
    from now (healthy pods are not failed for the time the agent was down) and never more than
    `budget` from now (a backward clock step cannot stretch the step beyond a fresh one)."""
    return min(max(persisted, wall_now + grace), wall_now + max(budget, grace))
