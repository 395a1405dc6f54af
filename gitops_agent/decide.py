"""Every decision of the agent, PURE: values in, a value out; no I/O, no clock, no store.

"Why did it not apply my commit?" is answered here:

- `choose_target(head, state, policy_key)`: which revision this pass reconciles, and why
  (suspended, the head rejected or failed before, Git down, a rollout under way...);
- `next_fleet_step(rollout, results, policy)`: what the fleet does next in a rollout
  (step a batch of nodes, roll one back, complete, or stop in a phase, and why);
- `condition(state, ...)`: the status condition `status` shows, from the same values;
- `rollback_target(stable, current, to)`: where the break-glass `rollback` goes.

The caller (`agent`, `fleet.Fleet`) does the I/O a decision asks for and feeds the
results back. Each decision carries a `Reason` (reasons.py): the same vocabulary is
in the logs, the status and the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Sequence

from .errors import AgentError, Problem
from .reasons import Reason, for_result
from .windows import Schedule, is_open, waiting_line
from .state import (
    COMPLETE, HALTED, PROGRESSING, ROLLBACK_FAILED, ROLLED_BACK, ROLLING_BACK, SUPERSEDED, AgentState, Failure,
    RolloutState, Stable,
)

# --- which revision -----------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """What Git said this pass: the branch's commit, or why it could not be read."""

    sha: str = ""
    revision: str = ""  # the revision id shown to people
    error: str = ""  # set when Git could not be read (then `sha` is "")


@dataclass(frozen=True)
class Candidate:
    """A revision to try: `role` tells how the caller reads it and what a read error means.

    - "suspended": the pinned revision; a read error fails the pass;
    - "head": the Git head, validated now; a rejection is recorded and `fallback` is tried;
    - "rollout": an unfinished rollout's target; unreadable: skip it;
    - "applied": the last stable revision (the store's `applied_sha`); unreadable: nothing.
    """

    role: str
    sha: str


@dataclass(frozen=True)
class Target:
    """Reconcile the first readable candidate. `result`, `error`, `waiting` and `problems`
    preset the pass's outcome (empty for a new head)."""

    reason: Reason
    candidates: tuple[Candidate, ...]
    result: str = ""
    error: str = ""
    waiting: bool = False  # nothing to retry until Git moves (or `resume`): no backoff
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Hold:
    """Reconcile nothing this pass: every node is left as it is."""

    reason: Reason
    result: str
    error: str = ""
    waiting: bool = True


def choose_target(head: Head, state: AgentState, policy_key: str) -> Target | Hold:
    """Which revision this pass reconciles, and why (every branch is a test in tests/test_decide.py)."""
    if state.suspended is not None:
        # break-glass: Git is not followed until `resume`; the pinned revision is still reconciled
        error = f"syncing suspended ({state.suspended.reason}); run `gitops-agent resume` to follow Git again"
        return Target(Reason.SUSPENDED, (Candidate("suspended", state.suspended.sha),), "suspended", error, True)
    if head.error or not head.sha:
        return Target(Reason.SOURCE_UNAVAILABLE, fallback(state), "source-error", head.error)
    rejected = state.rejected
    if rejected is not None and rejected.sha == head.sha and rejected.policy == policy_key:
        # the same bad commit under the same policy: not retried until the branch moves (no flapping)
        return Target(Reason.REVISION_REJECTED, fallback(state), "rejected", rejected.error, True, rejected.problems)
    failed = state.failed
    if failed is not None and failed.sha == head.sha:
        # a revision that failed its rollout: not retried until Git moves (no flapping)
        error = failure_message(failed, None, "")
        if failed.halted:  # halted without rollback: every node is left as it is for a human to look at
            return Hold(Reason.ROLLOUT_HALTED, "failed", error)
        return Target(Reason.REVISION_FAILED, _applied(state), "failed", error, True)
    return Target(Reason.APPLIED, (Candidate("head", head.sha),))


def fallback(state: AgentState) -> tuple[Candidate, ...]:
    """What to reconcile when the head cannot be used: the revision an unfinished rollout is
    taking the nodes to (reverting its finished nodes would be a rollback nobody asked for),
    else the last stable revision."""
    r, failed = state.rollout, state.failed
    if r is not None and r.phase == PROGRESSING and r.target_sha != (failed.sha if failed else None):
        return (Candidate("rollout", r.target_sha), *_applied(state))
    return _applied(state)


def _applied(state: AgentState) -> tuple[Candidate, ...]:
    return (Candidate("applied", state.applied.sha),) if state.applied else ()


def _applied_id(state: AgentState) -> str:
    return state.applied.revision if state.applied else ""


def failure_message(f: Failure, phase: str | None, previous: str) -> str:
    """One paragraph on a failed rollout: which node, pod and probe, what it said, what was done."""
    text = f"revision {f.revision or '?'} failed"
    if f.node:
        text += f" on node {f.node}"
    text += f": {f.error or 'unknown error'}"
    if phase == ROLLED_BACK:
        text += f"; nodes it reached were rolled back to {previous}"
    elif phase == HALTED:
        text += "; rollout halted (no rollback)"
    elif phase == ROLLBACK_FAILED:
        text += (f"; rollback failed ({f.rollback_error}): syncing suspended, fix the node and run "
                 "`gitops-agent resume`")
    return text + "; not retried until Git moves"


def rollback_target(stable: Sequence[Stable], current: str | None, to: str | None) -> Stable:
    """Which stable revision the break-glass `rollback` goes to: `to` (a revision id, or a commit
    prefix of 4+ hex digits as `history` prints it, `main@<prefix>` or `main@sha1:<sha>`), else the
    one before the current. AgentError when there is none, or `to` is not exactly one."""
    if to:
        key = to.rsplit(":", 1)[-1].rsplit("@", 1)[-1]
        found = [s for s in stable if s.revision == to or (len(key) >= 4 and s.sha.startswith(key))]
        if len(found) != 1:
            known = ", ".join(s.revision for s in reversed(stable)) or "none"
            raise AgentError(f"{to!r} matches {len(found)} stable revision(s); known stable revisions: {known}")
        return found[0]
    shas = [s.sha for s in stable]
    at = shas.index(current) if current is not None and current in shas else len(stable)
    if at == 0:
        raise AgentError("no earlier stable revision to roll back to (see `gitops-agent history`)")
    return stable[at - 1]


# --- the fleet state machine ------------------------------------------------------------------

#: node statuses a rollback goes over: the rollout may have changed those nodes
REACHED = ("updating", "done", "failed", "rollback-deferred")


@dataclass(frozen=True)
class FleetPolicy:
    batch: int = 1  # nodes stepped at once
    auto_rollback: bool = True
    has_previous: bool = True  # a stable revision to roll back to


@dataclass(frozen=True)
class NodeResult:
    """What one node step (or rollback step) did."""

    node: str
    status: str  # done | deferred | waiting | failed | rolled-back | rollback-deferred
    reason: Reason
    error: str = ""
    actions: int = 0


@dataclass(frozen=True)
class StepNodes:
    """Take these nodes to the target, at once."""

    nodes: tuple[str, ...]
    reason: Reason = Reason.ROLLOUT_STARTED


@dataclass(frozen=True)
class RollBack:
    """Roll `node` back to the previous revision (newest first). `record_failure`: the revision
    is marked failed (not retried until Git moves); not when a node went away mid-step."""

    node: str
    reason: Reason
    record_failure: bool = True


@dataclass(frozen=True)
class Complete:
    reason: Reason = Reason.ROLLOUT_COMPLETE


@dataclass(frozen=True)
class Halt:
    """The rollout stops in `phase` this pass (PROGRESSING: it goes on in a later one)."""

    phase: str
    reason: Reason
    nodes: tuple[str, ...] = ()  # the nodes the reason is about (deferred, waiting, failed)
    record_failure: bool = False
    suspend: bool = False  # a rollback failed: syncing is suspended until `resume`


FleetStep = StepNodes | RollBack | Complete | Halt


@dataclass(frozen=True)
class Closed:
    """The nodes whose maintenance window is closed now (`closed_windows`)."""

    start: frozenset[str] = frozenset()  # may not START the new revision (a pending node waits)
    repair: frozenset[str] = frozenset()  # may not repair drift either (`driftRepair: inWindow`)


OPEN = Closed()


def closed_windows(schedules: Mapping[str, Schedule | None], now: datetime, ignore: bool = False) -> Closed:
    """Which nodes the maintenance windows hold at `now` (the injected clock). `ignore`: the
    break-glass `sync --ignore-window` and `rollback`: nothing is held."""
    if ignore:
        return OPEN
    start = frozenset(n for n, plan in schedules.items() if not is_open(plan, now))
    repair = frozenset(n for n in start if (plan := schedules[n]) is not None and plan.drift_repair == "inWindow")
    return Closed(start, repair)


def next_fleet_step(r: RolloutState, results: Mapping[str, NodeResult], policy: FleetPolicy,
                    superseded: bool = False, closed: Closed = OPEN) -> FleetStep:
    """What the fleet does next. `r`: the rollout with every result so far applied to its
    nodes; `results`: the steps done in this pass's current phase (forward, or rollback).
    `closed`: a node whose window is closed does not start the revision (a node already on
    its way finishes: never half a node); a done one is not re-checked under `driftRepair: inWindow`."""
    if r.phase == ROLLING_BACK:
        return _rollback_step(r, results)
    failed = _with(r, "failed")
    if failed:
        return _on_failure(r, policy, failed)
    waiting = _with(r, "waiting")
    if waiting:  # a registry is unavailable: go no further, retried with backoff
        return Halt(PROGRESSING, Reason.IMAGE_PULL_BACKOFF, waiting)
    # done nodes are stepped again too (a no-op when in sync): one may have been changed meanwhile
    held = tuple(n for n in _with(r, "pending", "window") if n in closed.start)
    todo = [n for n in _with(r, "pending", "updating", "done") if n not in results and n not in held
            and not (n in closed.repair and r.status(n) == "done")]
    if not todo:
        if len(_with(r, "done")) == len(r.order):
            return Complete()
        if held:
            return Halt(PROGRESSING, Reason.WAITING_FOR_WINDOW, held)
        return Halt(PROGRESSING, Reason.NODE_DEFERRED, _with(r, "deferred"))
    if results and superseded:
        return Halt(SUPERSEDED, Reason.SUPERSEDED)
    return StepNodes(tuple(todo[:max(1, policy.batch)]), Reason.ROLLOUT_RESUMED if _resumed(r, results)
                     else Reason.ROLLOUT_STARTED)


def _with(r: RolloutState, *statuses: str) -> tuple[str, ...]:
    """The nodes in rollout order whose status is one of `statuses`."""
    return tuple(n for n in r.order if r.status(n) in statuses)


def _resumed(r: RolloutState, results: Mapping[str, NodeResult]) -> bool:
    return not results and any(r.status(n) in ("updating", "done") for n in r.order)


def _failure_reason(r: RolloutState) -> str:
    """The failure's reason; records of older agents had an `unreachable` flag instead."""
    reason = str(r.failure.get("reason", ""))
    if not reason and r.failure.get("unreachable"):
        return Reason.NODE_UNREACHABLE.value
    return reason


def _on_failure(r: RolloutState, policy: FleetPolicy, failed: Sequence[str]) -> FleetStep:
    # a node that went away is not the revision's fault: roll back as for any failure, but
    # try the revision again on the next pass (with backoff) instead of waiting for Git to move
    record = _failure_reason(r) != Reason.NODE_UNREACHABLE.value
    if not policy.has_previous or not policy.auto_rollback:
        return Halt(HALTED, Reason.ROLLOUT_HALTED, tuple(failed), record_failure=record)
    reached = _reached(r, {})
    if not reached:
        return Halt(ROLLED_BACK, Reason.ROLLED_BACK, tuple(failed), record_failure=record)
    return RollBack(reached[0], Reason.ROLLOUT_FAILED, record)


def _reached(r: RolloutState, results: Mapping[str, NodeResult]) -> list[str]:
    """The nodes to roll back, newest first. A node whose step was refused by prune (nothing
    was written there) is not among them."""
    refused = r.failure.get("node") if _failure_reason(r) == Reason.PRUNE_REFUSED.value else None
    return [n for n in reversed(r.order) if r.status(n) in REACHED and n not in results and n != refused]


def _rollback_step(r: RolloutState, results: Mapping[str, NodeResult]) -> FleetStep:
    broken = [res.node for res in results.values() if res.status == "failed"]
    if broken:
        return Halt(ROLLBACK_FAILED, Reason.ROLLBACK_FAILED, tuple(broken), suspend=True)
    reached = _reached(r, results)
    if reached:
        return RollBack(reached[0], Reason.ROLLOUT_FAILED, record_failure=False)
    return Halt(ROLLED_BACK, Reason.ROLLED_BACK, tuple(n for n in r.order if r.status(n) == "rollback-deferred"))


# --- what status says -------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str  # Ready | Progressing | Reconciling | Stalled | Suspended
    message: str
    reason: Reason
    problems: tuple[Problem, ...] = field(default=())


def condition(state: AgentState, store_problem: str, schedules: Mapping[str, Schedule | None] | None = None,
              now: datetime | None = None) -> Condition:
    """The status condition, from the same state the decisions above read. With `schedules` and
    `now` (the injected clock) a rollout held by closed windows says when they open."""
    if store_problem:  # nothing can be recorded: the other keys may be stale
        return Condition("Stalled", store_problem, Reason.STATE_UNAVAILABLE)
    return _held(state) or _windows(state, schedules or {}, now) or _moving(state)


def _windows(state: AgentState, schedules: Mapping[str, Schedule | None], now: datetime | None) -> Condition | None:
    """A rollout whose remaining nodes wait for their maintenance windows; None when there is none."""
    r = state.rollout
    if r is None or r.phase != PROGRESSING:
        return None
    held = [n for n in r.order if r.status(n) == "window"]
    if not held:
        return None

    def line(name: str) -> str:
        plan = schedules.get(name)
        return waiting_line(plan, now) if plan is not None and now is not None else r.nodes[name].error

    lines = "; ".join(f"node {n}: {line(n) or 'waiting for window'}" for n in held)
    return Condition("Progressing", f"rollout of {r.target} held: {lines}", Reason.WAITING_FOR_WINDOW)


def _held(state: AgentState) -> Condition | None:
    """Suspended, Git down, or the head stalled; None when none of them."""
    applied, attempted, last = _applied_id(state), state.attempted, state.last
    head_sha = attempted.rsplit(":", 1)[-1]
    if state.suspended is not None:
        s = state.suspended
        return Condition("Suspended", f"{s.reason}; pinned to {s.revision}; `gitops-agent resume` follows Git again",
                         Reason.SUSPENDED)
    if last is not None and last.result == "source-error":
        # before rejected/failed: those speak of the head seen before Git went away,
        # and "fix it with a new commit" is no advice while no commit can be read
        keep = f"nodes keep the last good revision {applied}" if applied else "nothing applied yet"
        return Condition("Reconciling", f"Git source unavailable: {last.error}; {keep}; retrying",
                         Reason.SOURCE_UNAVAILABLE)
    if attempted and state.rejected is not None and state.rejected.sha == head_sha:
        return Condition("Stalled", f"revision {attempted} rejected: fix it with a new commit",
                         Reason.REVISION_REJECTED, state.rejected.problems)
    if attempted and state.failed is not None and state.failed.sha == head_sha:
        r = state.rollout
        return Condition("Stalled", failure_message(state.failed, r.phase if r else None, applied),
                         Reason.REVISION_FAILED)
    return None


def _moving(state: AgentState) -> Condition:
    """A rollout under way, Ready, or the last pass's result."""
    r, last = state.rollout, state.last
    if r is not None and r.phase in (PROGRESSING, ROLLING_BACK):
        done = sum(1 for p in r.nodes.values() if p.status in ("done", "rolled-back"))
        return Condition("Progressing", f"rollout of {r.target}: {r.phase}, {done}/{len(r.nodes)} node(s)",
                         Reason.PROGRESSING)
    if last is None:
        return Condition("Reconciling", "no sync has run yet", Reason.NOTHING_TO_APPLY)
    if last.result in ("applied", "in-sync") and _applied_id(state) == state.attempted:
        return Condition("Ready", f"applied revision {_applied_id(state)}", Reason.APPLIED)
    return Condition("Reconciling", f"last pass {last.result}: {last.error}".strip(), for_result(last.result))
