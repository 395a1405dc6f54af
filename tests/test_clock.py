"""Clock jumps (pure): deadlines and waits run on the monotonic clock; persisted deadlines come back within
a tolerance."""

from __future__ import annotations

from gitops_agent import clock

HOUR = 3600.0


class Clocks:
    """A wall clock that NTP steps, and a monotonic one that only moves forward with real time."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_700_000_000.0, 500.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def step_wall(self, seconds: float) -> None:
        self.wall += seconds


def run_step(clocks: Clocks, jump: float, ready_after: float, budget: float = 120.0, hold: float = 5.0) -> float:
    """A node step as the fleet runs it: the wall deadline persisted, turned into a monotonic one, then
    polled once a second until a pod is ready and has held minReadySeconds; the wall clock steps by
    `jump` mid-step. Returns the seconds the step took (monotonic); raises on a missed deadline."""
    persisted = clocks.wall + budget
    deadline = clock.local_deadline(persisted, clocks.wall, clocks.mono, budget)
    start, ready_since = clocks.mono, None
    while True:
        clocks.tick(1.0)
        if clocks.mono - start == 3:
            clocks.step_wall(jump)
        if clocks.mono > deadline:
            raise TimeoutError("deadline")
        if clocks.mono - start >= ready_after:
            ready_since = clocks.mono if ready_since is None else ready_since
            if clocks.mono - ready_since >= hold:
                return clocks.mono - start


def test_a_jump_forward_or_backward_mid_step_neither_fails_nor_stretches_it() -> None:
    baseline = run_step(Clocks(), 0, ready_after=10)
    assert run_step(Clocks(), +HOUR, ready_after=10) == baseline
    assert run_step(Clocks(), -HOUR, ready_after=10) == baseline


def test_a_persisted_deadline_after_a_jump_while_down_is_kept_within_the_tolerance() -> None:
    wall, mono, budget, grace = 1_700_000_000.0, 10.0, 120.0, 15.0
    persisted = wall + 100  # 100 s were left when the agent went down
    assert clock.local_deadline(persisted, wall, mono, budget) == mono + 100  # no jump: what was left
    # forward: not failed at once; backward: not an hour more
    assert clock.local_deadline(persisted, wall + HOUR, mono, budget, grace) == mono + grace
    assert clock.local_deadline(persisted, wall - HOUR, mono, budget, grace) == mono + budget
    assert clock.resume_deadline(persisted, wall, budget, grace) == persisted
    assert clock.resume_deadline(persisted, wall + HOUR, budget, grace) == wall + HOUR + grace
    assert clock.resume_deadline(persisted, wall - HOUR, budget, grace) == wall - HOUR + budget

