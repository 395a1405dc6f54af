"""Alerts: the agent's events turned into the alerts people are told about. PURE.

Sits between `log.EventLog` (every `(event, level, fields)` the agent emits: the typed events of
`events.py`, each with its `reason`) and the sinks of `notify` and the counters of `metrics`.
`EVENTS` below is the one table from an event name (with its Reason or phase where that splits it)
to an alert kind, its severity and its text; every alert carries the event's Reason (a failed probe
refines `RolloutFailed` to `ReadinessProbeFailed`, ...). `Watch` adds what one event alone cannot
say: the revision a node failure belongs to, what a drift repair undid (the `action`s of its
node), and the conditions that alert only after a threshold (a node or Git unreachable) and again
when they clear.

Only the fields named in `FIELDS` ever reach an alert, so nothing the callers did not mean to
show leaves the agent (probe output is already redacted of Secret values by `desired.redact`).
Must not do I/O, read the clock (it is passed in) or import a third-party library.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .reasons import Reason

SEVERITIES = ("info", "warning", "error", "critical")
FIELDS = ("node", "workload", "pod", "probe", "output", "error", "previous", "phase", "problems", "actions", "image",
          "changes", "why")
MAX_CHANGES = 10  # a drift alert names this many of the changes it undid


@dataclass(frozen=True)
class Alert:
    """One alert, as every sink receives it (`body()` is the webhook's JSON)."""

    id: str  # unique per alert: a receiver dedupes redeliveries on it (delivery is at-least-once)
    kind: str
    severity: str
    reason: str
    message: str
    at: float
    revision: str = ""
    node: str = ""
    workload: str = ""
    count: int = 1  # how many times the same condition was seen (flapping is damped into one alert)
    details: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "severity": self.severity, "reason": self.reason,
                "revision": self.revision, "node": self.node, "workload": self.workload, "message": self.message,
                "at": self.at, "count": self.count, "details": dict(self.details)}

    def key(self) -> tuple[str, ...]:
        """What makes two alerts "the same condition" for damping."""
        return (self.kind, self.node, self.workload, self.reason, self.revision)


@dataclass(frozen=True)
class Rule:
    kind: str
    severity: str
    reason: str  # used when the event carries no `reason` field
    text: str  # the human line, formatted with the event's fields (missing ones are "-")


# event name (or "event:phase", "event:Reason") -> the alert it raises. The one place to change when events change.
EVENTS: dict[str, Rule] = {
    "revision.rejected": Rule("revision.rejected", "error", Reason.REVISION_REJECTED.value,
                              "revision {revision} is invalid ({problems} problem(s)); "
                              "nodes keep the last good revision"),
    "revision.rejected:PolicyViolation": Rule("revision.rejected", "error", Reason.POLICY_VIOLATION.value,
                                              "revision {revision} asks for what the agent's policy does not allow "
                                              "({problems} problem(s)); nodes keep the last good revision"),
    "revision.rejected:SignatureUnverified": Rule("revision.rejected", "critical", Reason.SIGNATURE_UNVERIFIED.value,
                                                  "revision {revision} carries no trusted signature; "
                                                  "nodes keep the last good revision"),
    "revision.tampered": Rule("revision.tampered", "critical", Reason.TAMPERED.value,
                              "revision {revision}: {file} was changed after it was SOPS-encrypted ({error}); "
                              "nodes keep the last good revision"),
    "rollout.start": Rule("rollout.started", "info", Reason.ROLLOUT_STARTED.value,
                          "rollout of {revision} started (from {previous})"),
    "rollout.node.failed": Rule("rollout.failed", "error", Reason.ROLLOUT_FAILED.value,
                                "rollout of {revision} failed on node {node}: {error}"),
    "rollout.end:complete": Rule("revision.applied", "info", Reason.ROLLOUT_COMPLETE.value,
                                 "revision {revision} runs on every node"),
    "rollout.end:rolled-back": Rule("rollout.rolled-back", "warning", Reason.ROLLED_BACK.value,
                                    "revision {revision} was rolled back to {previous}"),
    "rollout.halted": Rule("rollout.halted", "error", Reason.ROLLOUT_HALTED.value,
                           "rollout of {revision} halted ({why}); the nodes are left as they are"),
    "rollback.failed": Rule("rollback.failed", "critical", Reason.ROLLBACK_FAILED.value,
                            "rollback on node {node} failed: {error}; syncing suspended until `gitops-agent resume`"),
    "sync.suspended": Rule("sync.suspended", "warning", Reason.SUSPENDED.value,
                           "syncing suspended at {revision} ({why}); Git is not followed until `gitops-agent resume`"),
    "image.pull.retry": Rule("image.pull.failing", "warning", Reason.IMAGE_PULL_BACKOFF.value,
                             "pulling {image} on node {node} fails: {error}"),
    "rollout.node.waiting": Rule("image.pull.failing", "warning", Reason.IMAGE_PULL_BACKOFF.value,
                                 "node {node} waits for an image: {error}"),
    "node.failed": Rule("node.failed", "error", Reason.NODE_FAILED.value, "reconciling node {node} failed: {error}"),
    "volume.lost": Rule("volume.lost", "critical", Reason.DATA_LOSS.value, "node {node}: data loss: {error}"),
    "pod.evicted": Rule("pod.evicted", "warning", Reason.EVICTED.value,
                        "node {node}: pod {pod} ({workload}) {error}; the next pass makes it again"),
    "notify.dropped": Rule("notify.dropped", "warning", "OutboxFull",
                           "the alert outbox was full: {dropped} older low-severity alert(s) dropped"),
}
# conditions that alert only once they last longer than a threshold, and again when they clear
CONDITIONS = {
    "node": Rule("node.unreachable", "error", Reason.NODE_UNREACHABLE.value,
                 "node {node} unreachable for {seconds} s: {error}"),
    "node.back": Rule("node.back", "info", Reason.NODE_BACK.value, "node {node} is reachable again"),
    "git": Rule("git.unreachable", "error", Reason.SOURCE_UNAVAILABLE.value,
                "Git unreachable for {seconds} s: {error}"),
    "git.back": Rule("git.back", "info", "SourceAvailable", "Git is reachable again"),
    "drift": Rule("drift.repaired", "warning", Reason.DRIFT_REPAIRED.value,
                  "node {node}: {actions} change(s) made outside Git were undone: {changes}"),
}
KINDS = tuple(sorted({r.kind for r in [*EVENTS.values(), *CONDITIONS.values()]}))


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


def build(rule: Rule, fields: Mapping[str, Any], at: float, revision: str = "",
          new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> Alert:
    """The alert `rule` raises for an event with `fields` (only the FIELDS are kept)."""
    details = {k: str(fields[k]) for k in FIELDS if fields.get(k) not in (None, "")}
    revision = str(fields.get("revision") or revision)
    message = rule.text.format_map(_Blank({**fields, "revision": revision or "-"}))
    return Alert(id=new_id(), kind=rule.kind, severity=rule.severity, reason=_given_reason(fields) or rule.reason,
                 message=message, at=at, revision=revision, node=str(fields.get("node") or ""),
                 workload=str(fields.get("workload") or ""), details=details)


def _given_reason(fields: Mapping[str, Any]) -> str:
    """An event's own Reason (a CamelCase constant); a `reason` field of prose is not one."""
    given = str(fields.get("reason") or "")
    return given if re.fullmatch(r"[A-Z][A-Za-z0-9]+", given) else ""


def rule_for(event: str, fields: Mapping[str, Any]) -> Rule | None:
    """The table's rule for this event; `rollout.end` is looked up with its phase, `revision.rejected`
    with its Reason (invalid, denied by policy, unverified signature)."""
    if event == "rollout.end":
        return EVENTS.get(f"rollout.end:{fields.get('phase', '')}")
    if event == "revision.rejected":
        return EVENTS.get(f"revision.rejected:{_given_reason(fields)}", EVENTS[event])
    return EVENTS.get(event)


def _reason(rule: Rule, fields: Mapping[str, Any]) -> Rule:
    """A failed probe refines `RolloutFailed` in the Reason: ReadinessProbeFailed, StartupProbeFailed, ..."""
    probe = str(fields.get("probe") or "")
    if rule.kind == "rollout.failed" and probe and _given_reason(fields) in ("", Reason.ROLLOUT_FAILED.value):
        return Rule(rule.kind, rule.severity, f"{probe.capitalize()}ProbeFailed", rule.text)
    return rule


class Watch:
    """Events in, alerts out, in emit order. Not thread-safe: `log.EventLog` calls subscribers under its lock."""

    def __init__(self, node_after: float, git_after: float) -> None:
        self.node_after, self.git_after = node_after, git_after
        self.revision = ""  # the revision of the rollout under way (a node event does not name it)
        self.in_rollout = False
        self.down: dict[str, tuple[float, str, bool]] = {}  # "node:n1"/"git" -> (since, error, alerted)
        self.seen_down: set[str] = set()  # conditions reported during the current pass
        self.drift: dict[str, tuple[str, list[str]]] = {}  # node -> (revision, the actions a repair took)
        self.evicted: set[tuple[str, str]] = set()  # (node, pod) evicted (`pod.evicted`): its re-creation is no drift

    def feed(self, event: str, fields: Mapping[str, Any], at: float) -> list[Alert]:
        out: list[Alert] = []
        if event == "rollout.start":
            self.revision, self.in_rollout = str(fields.get("revision", "")), True
        rule = rule_for(event, fields)
        if rule is not None:
            refined = _reason(rule, fields)
            given = {**fields, "reason": refined.reason} if refined is not rule else fields
            out.append(build(refined, given, at, self.revision))
        node = str(fields.get("node", ""))
        if event == "rollout.end":
            self.in_rollout = False
        elif event == "node.apply" and not self.in_rollout and int(fields.get("actions") or 0) > 0:
            self.drift[node] = (str(fields.get("revision", "")), [])
        elif event == "pod.evicted":
            self.evicted.add((node, str(fields.get("pod", ""))))
        elif event == "action" and node in self.drift:
            self._action(node, fields)
        elif event == "drift.repaired":
            out += self._drift(node, fields, at)
        elif event in ("rollout.deferred", "node.unreachable"):
            out += self._down(f"node:{node}", fields, at)
        elif event == "node.back":
            out += self._back(f"node:{node}", at)
        elif event == "source.unavailable":
            out += self._down("git", fields, at)
        elif event == "sync":
            out += self._pass_end(fields, at)
        return out

    def _action(self, node: str, fields: Mapping[str, Any]) -> None:
        """One action of a drift repair; the re-creation of a pod the agent evicted is not a change to undo."""
        target = str(fields.get("target", ""))
        if fields.get("op") == "create-pod" and (node, target) in self.evicted:
            self.evicted.discard((node, target))
            self.drift[node][1].append("")
            return
        self.drift[node][1].append(f"{fields.get('op', '')} {target} ({fields.get('reason', '')})")

    def _drift(self, node: str, fields: Mapping[str, Any], at: float) -> list[Alert]:
        """`drift.repaired`: what the node's `action`s since its `node.apply` undid (none but re-creations of
        evicted pods: no alert, `pod.evicted` said it)."""
        revision, actions = self.drift.pop(node, (str(fields.get("revision", "")), []))
        changes = [a for a in actions if a]
        if actions and not changes:
            return []
        shown = "; ".join(changes[:MAX_CHANGES]) + (f"; and {len(changes) - MAX_CHANGES} more"
                                                   if len(changes) > MAX_CHANGES else "")
        count = int(fields.get("actions") or len(actions)) - (len(actions) - len(changes))
        return [build(CONDITIONS["drift"], {**fields, "revision": fields.get("revision") or revision,
                                            "actions": count, "changes": shown or "-"}, at)]

    def _back(self, key: str, at: float) -> list[Alert]:
        """A condition cleared: `*.back` if it had alerted."""
        self.seen_down.discard(key)
        since_error_alerted = self.down.pop(key, None)
        if since_error_alerted is None or not since_error_alerted[2]:
            return []
        node = key.split(":", 1)[1] if key.startswith("node:") else ""
        return [build(CONDITIONS["git.back" if key == "git" else "node.back"], {"node": node}, at)]

    def _down(self, key: str, fields: Mapping[str, Any], at: float) -> list[Alert]:
        self.seen_down.add(key)
        since, _, alerted = self.down.get(key, (at, "", False))
        error = str(fields.get("error") or "")
        after = self.git_after if key == "git" else self.node_after
        if not alerted and at - since >= after:
            self.down[key] = (since, error, True)
            rule = CONDITIONS["git" if key == "git" else "node"]
            return [build(rule, {**fields, "seconds": round(at - since)}, at)]
        self.down[key] = (since, error, alerted)
        return []

    def _pass_end(self, fields: Mapping[str, Any], at: float) -> list[Alert]:
        """A pass ended: the conditions it did not see again have cleared."""
        out = []
        self.drift = {}
        for key in [k for k in self.down if k not in self.seen_down]:
            if key == "git" and fields.get("result") == "source-error":
                continue
            out += self._back(key, at)
        self.seen_down = set()
        self.in_rollout = False
        return out

class Damper:
    """The same condition repeated is one alert with a count, until it changes: an alert whose `key()`
    equals the last one of its subject (kind family and node) within `window` seconds is held back and
    counted; the count goes out with the next alert of that key after the window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.last: dict[tuple[str, str, str], tuple[tuple[str, ...], float, int]] = {}

    def admit(self, alert: Alert) -> Alert | None:
        subject = (alert.kind.split(".")[0], alert.node, alert.workload)
        key = alert.key()
        seen = self.last.get(subject)
        if seen is not None and seen[0] == key and alert.at - seen[1] < self.window:
            self.last[subject] = (key, seen[1], seen[2] + 1)
            return None
        held = seen[2] if seen is not None and seen[0] == key else 0
        self.last[subject] = (key, alert.at, 0)
        if held:
            return Alert(**{**alert.__dict__, "count": held + 1})
        return alert


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials a URL carries in its userinfo (`https://user:token@host/...`): never shown."""
    _, sep, rest = url.partition("://")
    userinfo = rest.split("/", 1)[0].rpartition("@")[0] if sep else ""
    if not userinfo:
        return ()
    parts = [userinfo, *userinfo.split(":", 1)]
    return tuple(sorted({p for p in parts if len(p) >= 4}, key=len, reverse=True))


def scrub(text: str, hidden: tuple[str, ...]) -> str:
    for word in hidden:
        text = text.replace(word, "***")
    return text


def hide(alert: Alert, hidden: tuple[str, ...]) -> Alert:
    """`alert` with every `hidden` string (`url_secrets` of the source) replaced by ***."""
    if not hidden:
        return alert
    return Alert(**{**alert.__dict__, "message": scrub(alert.message, hidden),
                    "details": {k: scrub(v, hidden) for k, v in alert.details.items()}})


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0
