"""The agent's persisted state as frozen typed records, each with to/from JSON.

`history.History.load()` reads them into one `AgentState`; the pure decisions in
`decide` take that value, never the store. The JSON shapes are the ones the store
has always held under its keys (`applied_sha`, `rejected`, `failed`, `suspended`,
`rollout`, ...), so a state directory written by an older agent reads the same:
`SCHEMA` is written next to them, and `from_store` migrates what an older
schema lacks (an upgrade neither re-rolls nor forgets the applied revision).

Times persisted here are wall time (`time.time()`): they are shown to people and
survive restarts. Deadlines inside one process run on `time.monotonic()` (see
`clock`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .errors import Problem

SCHEMA = 2  # 1: the untyped keys of agents before the typed records (no `state_schema` key)

# phases of a rollout; the first two are unfinished and resumed by the next pass
PROGRESSING, ROLLING_BACK = "progressing", "rolling-back"
COMPLETE, HALTED, ROLLED_BACK, ROLLBACK_FAILED, SUPERSEDED = (
    "complete", "halted", "rolled-back", "rollback-failed", "superseded")
UNFINISHED = (PROGRESSING, ROLLING_BACK)


def _known(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `raw` that `cls` has (a newer agent's extra fields are ignored, not fatal)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


@dataclass(frozen=True)
class Applied:
    """The stable revision: it ran on every node."""

    sha: str
    revision: str = ""
    digest: str = ""


@dataclass(frozen=True)
class Rejection:
    """A commit that failed validation under the policy `policy` (a key of the policy it was judged by)."""

    sha: str
    error: str = ""
    problems: tuple[Problem, ...] = ()
    policy: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "error": self.error, "problems": [p.__dict__ for p in self.problems],
                "policy": self.policy}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Rejection:
        return cls(sha=raw.get("sha", ""), error=raw.get("error", ""), policy=raw.get("policy", ""),
                   problems=tuple(Problem(**p) for p in raw.get("problems", [])))


@dataclass(frozen=True)
class Failure:
    """A revision that failed its rollout: not retried until Git moves. `halted`: nothing was
    rolled back, the nodes are left as they are for a human."""

    sha: str = ""
    revision: str = ""
    at: float = 0.0
    halted: bool = False
    node: str = ""
    error: str = ""
    pod: str = ""
    probe: str = ""
    output: str = ""
    reason: str = ""  # a `Reason` value ("" in records of older agents)
    rollback_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Failure:
        return cls(**_known(cls, raw))


@dataclass(frozen=True)
class Suspension:
    """Break-glass: Git is not followed until `resume`; `sha` is still reconciled."""

    revision: str
    sha: str
    at: float = 0.0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Suspension:
        return cls(**_known(cls, raw))


@dataclass(frozen=True)
class NodeProgress:
    status: str = "pending"  # pending | updating | done | deferred | waiting | failed | rolled-back | rollback-deferred
    started: float = 0.0
    finished: float = 0.0
    deadline: float = 0.0  # wall time, absolute: a resumed step keeps it (within `clock.TOLERANCE`)
    actions: int = 0
    error: str = ""
    images: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutState:
    """A rollout as persisted (the `rollout` key): the snapshot `decide.next_fleet_step` reads."""

    target: str
    target_sha: str
    previous: str
    previous_sha: str
    order: tuple[str, ...]
    nodes: Mapping[str, NodeProgress]
    phase: str = PROGRESSING
    cause: str = "git"
    batch: int = 1
    fast: bool = False
    touched: tuple[str, ...] = ()
    failure: Mapping[str, Any] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    ignored_window: tuple[str, ...] = ()  # nodes whose closed maintenance window was overridden

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["order"], raw["touched"] = list(self.order), list(self.touched)
        raw["ignored_window"] = list(self.ignored_window)
        raw["nodes"] = {n: {**asdict(p), "images": dict(p.images)} for n, p in self.nodes.items()}
        raw["failure"] = dict(self.failure)
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RolloutState:
        known = _known(cls, raw)
        known["nodes"] = {n: NodeProgress(**_known(NodeProgress, p)) for n, p in raw.get("nodes", {}).items()}
        known["order"] = tuple(raw.get("order", ()))
        known["touched"] = tuple(raw.get("touched", ()))
        known["ignored_window"] = tuple(raw.get("ignored_window", ()))
        return cls(**known)

    def status(self, node: str) -> str:
        return self.nodes[node].status if node in self.nodes else "pending"


@dataclass(frozen=True)
class Stable:
    """A revision that ran everywhere, kept for break-glass rollback and image garbage collection."""

    revision: str
    sha: str
    at: float = 0.0
    templates: tuple[str, ...] = ()


@dataclass(frozen=True)
class LastResult:
    result: str = ""
    error: str = ""
    at: float = 0.0
    reason: str = ""  # a `Reason` value ("" in records of older agents)
    node_errors: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "error": self.error, "at": self.at, "nodeErrors": dict(self.node_errors),
                **({"reason": self.reason} if self.reason else {})}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LastResult:
        return cls(result=raw.get("result", ""), error=raw.get("error", ""), at=raw.get("at", 0.0),
                   reason=raw.get("reason", ""), node_errors=dict(raw.get("nodeErrors", {})))


@dataclass(frozen=True)
class AgentState:
    """Everything the decisions read, loaded once per pass (`History.load`)."""

    applied: Applied | None = None
    attempted: str = ""  # the revision id of the head last seen
    rejected: Rejection | None = None
    failed: Failure | None = None
    suspended: Suspension | None = None
    rollout: RolloutState | None = None
    last: LastResult | None = None
    stable: tuple[Stable, ...] = ()
    schema: int = SCHEMA

    @classmethod
    def from_store(cls, get: Mapping[str, Any]) -> AgentState:
        """From the store's keys (`get`: key → decoded JSON, missing keys absent). Schema 1 (no
        `state_schema` key) has the same shapes, without the `reason` fields: they read as ""."""
        sha = get.get("applied_sha")
        applied = Applied(sha, get.get("applied_revision", ""), get.get("applied_digest", "")) if sha else None
        rejected, failed, suspended = get.get("rejected"), get.get("failed"), get.get("suspended")
        rollout, last = get.get("rollout"), get.get("last_result")
        return cls(
            applied=applied, attempted=get.get("attempted_revision", "") or "",
            rejected=Rejection.from_json(rejected) if rejected else None,
            failed=Failure.from_json(failed) if failed else None,
            suspended=Suspension.from_json(suspended) if suspended else None,
            rollout=RolloutState.from_json(rollout) if rollout else None,
            last=LastResult.from_json(last) if last else None,
            stable=tuple(Stable(s["revision"], s["sha"], s.get("at", 0.0), tuple(s.get("templates", ())))
                         for s in get.get("stable", [])),
            schema=int(get.get("state_schema", 1)),
        )


#: The store keys `AgentState.from_store` reads.
STATE_KEYS = ("applied_sha", "applied_revision", "applied_digest", "attempted_revision", "rejected", "failed",
              "suspended", "rollout", "last_result", "stable", "state_schema")


@dataclass(frozen=True)
class PassRecord:
    """What one pass writes at its end, in one transaction (`History.commit`)."""

    revision: str  # the head, or the target when the head is unknown
    digest: str
    started: float  # wall time
    duration: float  # seconds, measured on the monotonic clock
    last: LastResult
    actions: int = 0
    attempted: str = ""  # the head's revision id ("" when Git could not be read)
