"""Typed events: every state change a user cares about, as a value with its `Reason`.

The decision core (agent, rollout) makes these values and hands them to one sink today,
the structured log (`emit(log, event)` → `log(event.NAME, level, **fields, reason=...)`);
later sinks (metrics, notifications, a status page) subscribe to the same stream
(`log.EventLog.subscribe`) and key on the STABLE names and fields below (README, "Events").
A field that is None is left out of the line. No event carries a Secret value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .log import Log
from .reasons import Reason


@dataclass(frozen=True)
class Event:
    NAME: ClassVar[str] = ""
    LEVEL: ClassVar[str] = "info"
    REASON: ClassVar[Reason] = Reason.APPLIED

    def fields(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if v is not None}

    @property
    def reason(self) -> Reason:
        return self.REASON


def emit(log: Log, event: Event, level: str | None = None) -> None:
    """Hand `event` to the log: its stable name, its fields, and `reason` last."""
    log(event.NAME, level=level or event.LEVEL, **event.fields(), reason=event.reason.value)


# --- revisions and passes ---------------------------------------------------------------------


@dataclass(frozen=True)
class PassDone(Event):
    NAME = "sync"
    revision: str
    result: str
    actions: int
    seconds: float
    outcome: Reason  # the pass's reason (`Outcome.why`), written as `reason`
    error: str | None = None
    polled: bool = False  # Git was asked for the head (a drift pass may take the last poll's answer)

    @property
    def reason(self) -> Reason:
        return self.outcome

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in super().fields().items() if k != "outcome"}


@dataclass(frozen=True)
class RevisionApplied(Event):
    NAME, REASON = "revision.applied", Reason.APPLIED
    revision: str
    actions: int


@dataclass(frozen=True)
class RevisionRejected(Event):
    NAME, LEVEL, REASON = "revision.rejected", "error", Reason.REVISION_REJECTED
    revision: str
    problems: int
    code: Reason = Reason.REVISION_REJECTED  # or PolicyViolation, SignatureUnverified: written as `reason`

    @property
    def reason(self) -> Reason:
        return self.code

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in super().fields().items() if k != "code"}


@dataclass(frozen=True)
class RevisionTampered(Event):
    """A SOPS-encrypted file of the revision fails its MAC: changed after it was encrypted (an alert)."""

    NAME, LEVEL, REASON = "revision.tampered", "error", Reason.TAMPERED
    revision: str
    file: str
    error: str


@dataclass(frozen=True)
class SourceUnavailable(Event):
    NAME, LEVEL, REASON = "source.unavailable", "warning", Reason.SOURCE_UNAVAILABLE
    error: str


@dataclass(frozen=True)
class DriftRepaired(Event):
    NAME, REASON = "drift.repaired", Reason.DRIFT_REPAIRED
    node: str
    revision: str
    actions: int


@dataclass(frozen=True)
class Suspended(Event):
    NAME, LEVEL, REASON = "sync.suspended", "warning", Reason.SUSPENDED
    revision: str
    why: str


@dataclass(frozen=True)
class Resumed(Event):
    NAME, REASON = "sync.resumed", Reason.RESUMED
    was: str  # the suspension's reason


# --- nodes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFailed(Event):
    NAME, LEVEL, REASON = "node.failed", "error", Reason.NODE_FAILED
    node: str
    error: str


@dataclass(frozen=True)
class NodeUnreachable(Event):
    NAME, LEVEL, REASON = "node.unreachable", "warning", Reason.NODE_UNREACHABLE
    node: str
    error: str


@dataclass(frozen=True)
class NodeBack(Event):
    NAME, REASON = "node.back", Reason.NODE_BACK
    node: str


# --- rollouts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutStarted(Event):
    NAME, REASON = "rollout.start", Reason.ROLLOUT_STARTED
    revision: str
    previous: str
    batch: int
    fast: bool
    changed: str
    nodes: str
    done: str | None = None  # a resumed rollout's finished nodes

    @property
    def reason(self) -> Reason:
        return Reason.ROLLOUT_RESUMED if self.done else Reason.ROLLOUT_STARTED


@dataclass(frozen=True)
class RolloutResumed(Event):
    NAME, REASON = "rollout.resume", Reason.ROLLOUT_RESUMED
    revision: str
    progress: str


@dataclass(frozen=True)
class StepStarted(Event):
    NAME, REASON = "rollout.node", Reason.ROLLOUT_STARTED
    node: str
    revision: str
    step: str


@dataclass(frozen=True)
class StepDone(Event):
    NAME, REASON = "rollout.node.done", Reason.STEP_DONE
    node: str
    revision: str
    actions: int
    seconds: float


@dataclass(frozen=True)
class StepFailed(Event):
    NAME, LEVEL, REASON = "rollout.node.failed", "error", Reason.ROLLOUT_FAILED
    node: str
    error: str
    code: Reason
    pod: str | None = None
    probe: str | None = None
    output: str | None = None

    @property
    def reason(self) -> Reason:
        return self.code

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in super().fields().items() if k != "code"}


@dataclass(frozen=True)
class StepWaiting(Event):
    NAME, LEVEL, REASON = "rollout.node.waiting", "warning", Reason.IMAGE_PULL_BACKOFF
    node: str
    error: str


@dataclass(frozen=True)
class NodeDeferred(Event):
    NAME, LEVEL, REASON = "rollout.deferred", "warning", Reason.NODE_DEFERRED
    node: str
    revision: str
    error: str


@dataclass(frozen=True)
class RolloutWaiting(Event):
    NAME, LEVEL, REASON = "rollout.waiting", "warning", Reason.IMAGE_PULL_BACKOFF
    revision: str
    nodes: str


@dataclass(frozen=True)
class WaitingForWindow(Event):
    """A node's maintenance window is closed: the new revision waits for it there (`line`: when it opens)."""

    NAME, REASON = "rollout.window", Reason.WAITING_FOR_WINDOW
    node: str
    revision: str
    line: str


@dataclass(frozen=True)
class WindowIgnored(Event):
    """Break-glass: `sync --ignore-window` (or `rollback`) rolls out on nodes whose window is closed."""

    NAME, LEVEL, REASON = "rollout.window-ignored", "warning", Reason.WINDOW_IGNORED
    revision: str
    nodes: str


@dataclass(frozen=True)
class DriftRepairHeld(Event):
    """`driftRepair: inWindow`: drift on a node is not repaired while its window is closed."""

    NAME, REASON = "drift.held", Reason.WAITING_FOR_WINDOW
    node: str


@dataclass(frozen=True)
class RolloutSuperseded(Event):
    NAME, REASON = "rollout.superseded", Reason.SUPERSEDED
    revision: str
    progress: str


@dataclass(frozen=True)
class RolloutRetry(Event):
    NAME, LEVEL, REASON = "rollout.retry", "warning", Reason.NODE_UNREACHABLE
    revision: str
    node: str | None


@dataclass(frozen=True)
class RolloutHalted(Event):
    NAME, LEVEL, REASON = "rollout.halted", "error", Reason.ROLLOUT_HALTED
    revision: str
    why: str


@dataclass(frozen=True)
class RolledBack(Event):
    NAME, REASON = "rollout.rolled-back", Reason.ROLLED_BACK
    revision: str
    to: str
    deferred: str | None = None


@dataclass(frozen=True)
class RollbackStarted(Event):
    NAME, REASON = "rollback.start", Reason.ROLLBACK_REQUESTED
    to: str
    current: str


@dataclass(frozen=True)
class RollbackNode(Event):
    NAME, REASON = "rollback.node", Reason.ROLLOUT_FAILED
    node: str
    to: str


@dataclass(frozen=True)
class RollbackDeferred(Event):
    NAME, LEVEL, REASON = "rollback.deferred", "warning", Reason.NODE_DEFERRED
    node: str
    error: str


@dataclass(frozen=True)
class RollbackFailed(Event):
    NAME, LEVEL, REASON = "rollback.failed", "error", Reason.ROLLBACK_FAILED
    node: str
    error: str


@dataclass(frozen=True)
class RolloutEnd(Event):
    NAME, REASON = "rollout.end", Reason.ROLLOUT_COMPLETE
    revision: str
    phase: str
    progress: str
    deferred: str | None = None

    @property
    def reason(self) -> Reason:
        return _PHASE_REASONS.get(self.phase, Reason.PROGRESSING)


# --- Service endpoints (`endpoints`: DNS follows readiness) ------------------------------------------------


@dataclass(frozen=True)
class EndpointRemoved(Event):
    """A pod's readiness probe failed failureThreshold times in a row (or a container stopped): it left the DNS
    names of its Services (`services`, comma-separated) on `node`."""

    NAME, LEVEL, REASON = "endpoint.not-ready", "warning", Reason.ENDPOINT_NOT_READY
    node: str
    pod: str
    services: str
    error: str


@dataclass(frozen=True)
class EndpointAdded(Event):
    """A pod passed its readiness probe successThreshold times in a row: it is in its Services' DNS names."""

    NAME, REASON = "endpoint.ready", Reason.ENDPOINT_READY
    node: str
    pod: str
    services: str


# --- emptyDir sizeLimit on the node's disk (`eviction`) ---------------------------------------------------


@dataclass(frozen=True)
class PodEvicted(Event):
    """A pod's disk emptyDir volume held more than its sizeLimit: the pod was removed with its emptyDir volumes
    (its own grace period, its preStop hooks), as the kubelet evicts it; the next pass makes it again. `error`:
    `Evicted: emptyDir volume "x" uses N bytes, over its sizeLimit M`."""

    NAME, LEVEL, REASON = "pod.evicted", "warning", Reason.EVICTED
    node: str
    pod: str
    workload: str
    volume: str
    used: int
    limit: int
    error: str


_PHASE_REASONS = {"complete": Reason.ROLLOUT_COMPLETE, "halted": Reason.ROLLOUT_HALTED,
                  "rolled-back": Reason.ROLLED_BACK, "rollback-failed": Reason.ROLLBACK_FAILED,
                  "superseded": Reason.SUPERSEDED, "progressing": Reason.PROGRESSING}

#: every event, for the README table and tests
ALL: tuple[type[Event], ...] = (
    PassDone, RevisionApplied, RevisionRejected, SourceUnavailable, DriftRepaired, Suspended, Resumed, NodeFailed,
    NodeUnreachable, NodeBack, RolloutStarted, RolloutResumed, StepStarted, StepDone, StepFailed, StepWaiting,
    NodeDeferred, RolloutWaiting, RolloutSuperseded, RolloutRetry, RolloutHalted, RolledBack, RollbackStarted,
    RollbackNode, RollbackDeferred, RollbackFailed, RolloutEnd, WaitingForWindow, WindowIgnored, DriftRepairHeld,
    RevisionTampered, EndpointRemoved, EndpointAdded, PodEvicted,
)
