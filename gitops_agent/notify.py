"""Alert delivery: the `notify:` sinks, the durable outbox, retries with capped backoff.

Sits after `alerts` (events -> alerts) and owns the only network traffic the agent starts on its own
besides Git and the nodes. Each alert is written to the outbox, a table in the agent's state store
(`stateDir/state.db`), through the History in the same transaction as the state change it reports
(`History.stage`: the pass's next checkpoint or commit; outside a pass, at once); a delivery thread
then sends it to each sink that wants it, oldest first, through a connection of its own, and deletes
it only once the sink accepted it. So an uplink down for hours loses nothing, a kill -9 between a
state change and its alert cannot happen (they commit together), and a kill -9 mid-delivery
redelivers at most the alerts in flight (at-least-once: each alert has an `id` a receiver dedupes on).
The outbox is bounded: when full, the oldest lowest-severity alerts are dropped first and the drop
itself is reported (`notify.dropped`).

The owner of `apprise`, imported only in a child process per Apprise delivery (`python -m
gitops_agent.notify`), so the agent's own memory stays flat. Never
logs a sink's URL or secret (an Apprise URL carries tokens): a sink is named by `name` or its index.
Must not read manifests or talk to Podman.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from .alerts import EVENTS, KINDS, SEVERITIES, Alert, Damper, Watch, build, hide, severity_rank
from .errors import ConfigError
from .log import Log, discard

if TYPE_CHECKING:  # history imports config, which imports this module: imported where used
    from .history import History

BACKOFF_START = 1.0
BACKOFF_CAP = 300.0  # seconds: a link back after hours is used within five minutes


@dataclass(frozen=True)
class SinkConfig:
    """One `notify.sinks[]` entry."""

    name: str
    type: str  # webhook | apprise
    url: str = ""  # webhook: the receiver
    urls: tuple[str, ...] = ()  # apprise: its URLs (slack://, ntfy://, mailto://, json://, ...)
    secret: bytes = b""  # webhook: the HMAC key, read from `secretFile` (never logged)
    events: tuple[str, ...] = ()  # kinds wanted; () = every kind at or above `min_severity`
    min_severity: str = "info"
    timeout: float = 10.0

    def wants(self, alert: Alert) -> bool:
        if self.events and alert.kind not in self.events:
            return False
        return severity_rank(alert.severity) >= severity_rank(self.min_severity)

    def __repr__(self) -> str:  # the URLs and secret may hold tokens
        return f"SinkConfig(name={self.name!r}, type={self.type!r})"


@dataclass(frozen=True)
class NotifyConfig:
    """The `notify:` section."""

    sinks: tuple[SinkConfig, ...] = ()
    node_unreachable_after: float = 600.0
    """Seconds a node stays unreachable before `node.unreachable` fires (an edge uplink blips)."""
    git_unreachable_after: float = 600.0
    """Seconds Git stays unreachable before `git.unreachable` fires."""
    max_pending: int = 1000
    """Alerts kept per sink while it cannot be reached; beyond it the oldest low-severity ones are dropped."""
    damping: float = 3600.0
    """Seconds during which the same condition repeated is held back (and counted) instead of sent again."""
    retry_max: float = BACKOFF_CAP
    """The cap of the retry backoff (doubling from 1 s): how long after a link returns the alerts go out at most."""


def from_mapping(raw: Mapping[str, Any], base_dir: Path | None, durations: Any) -> NotifyConfig:
    """`notify:` (already schema-checked) -> NotifyConfig; `durations` is config.parse_duration."""
    sinks = [_sink(i, s, base_dir, durations) for i, s in enumerate(raw.get("sinks") or ())]
    names = [s.name for s in sinks]
    if len(set(names)) != len(names):
        raise ConfigError(f"notify.sinks: duplicate sink names in {names}")
    return NotifyConfig(
        sinks=tuple(sinks),
        node_unreachable_after=_after(raw, "nodeUnreachableAfter", durations),
        git_unreachable_after=_after(raw, "gitUnreachableAfter", durations),
        max_pending=int(raw.get("maxPending", 1000)),
        damping=_after(raw, "damping", durations, 3600.0),
        retry_max=_after(raw, "retryMax", durations, BACKOFF_CAP),
    )


def _sink(i: int, s: Mapping[str, Any], base_dir: Path | None, durations: Any) -> SinkConfig:
    where = f"notify.sinks[{i}]"
    unknown = sorted(set(s.get("events") or ()) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where}.events: unknown event kind(s) {unknown}; known: {', '.join(KINDS)}")
    secret = b""
    if s.get("secretFile"):
        path = Path(s["secretFile"])
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        try:
            secret = path.read_bytes().strip()
        except OSError as e:
            raise ConfigError(f"{where}.secretFile: cannot read {str(path)!r}: {e.strerror}") from e
    kind = "webhook" if "webhook" in s else "apprise"
    return SinkConfig(
        name=str(s.get("name") or f"{kind}-{i}"), type=kind, url=str(s.get("webhook") or ""),
        urls=tuple(str(u) for u in s.get("apprise") or ()), secret=secret,
        events=tuple(s.get("events") or ()), min_severity=str(s.get("minSeverity", "info")),
        timeout=durations(s.get("timeout", 10), f"{where}.timeout"),
    )


def _after(raw: Mapping[str, Any], key: str, durations: Any, default: float = 600.0) -> float:
    value = raw.get(key)
    if value in (0, "0", "0s"):
        return 0.0
    return default if value is None else float(durations(value, f"notify.{key}"))


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Signature` header: `sha256=` and the hex HMAC-SHA256 of the exact body bytes (Flux's generic-hmac)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the HMAC over the raw body and compare in constant time."""
    return hmac.compare_digest(signature(secret, body), header)


class DeliveryFailed(Exception):
    """A sink did not accept an alert: retried later with backoff (the alert stays in the outbox)."""


class Sink(Protocol):
    name: str

    def send(self, alert: Alert, body: bytes) -> None: ...


class Webhook:
    def __init__(self, cfg: SinkConfig) -> None:
        self.name, self.cfg = cfg.name, cfg

    def send(self, alert: Alert, body: bytes) -> None:
        import urllib.error
        import urllib.request  # lazily: not loaded by an agent without webhook sinks

        headers = {"Content-Type": "application/json", "User-Agent": "gitops-agent", "X-Event-Id": alert.id}
        if self.cfg.secret:
            headers["X-Signature"] = signature(self.cfg.secret, body)
        request = urllib.request.Request(self.cfg.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout) as response:
                response.read()
        except urllib.error.HTTPError as e:
            raise DeliveryFailed(f"the receiver answered HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DeliveryFailed(f"cannot reach the receiver: {getattr(reason, 'strerror', None) or reason}") from None


class Apprise:
    """Apprise URLs, delivered by a short-lived child process (`python -m gitops_agent.notify`): the apprise
    library and its 100 plugins (about 17 MB) never load into the long-running agent. The URLs go to the
    child on stdin, never on its command line (they carry tokens; a command line is visible in `ps`)."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.name, self.cfg = cfg.name, cfg

    def send(self, alert: Alert, body: bytes) -> None:
        import subprocess

        title = f"[{alert.severity}] {alert.kind}: {alert.reason}"
        text = alert.message + (f" (x{alert.count})" if alert.count > 1 else "")
        job = json.dumps({"urls": list(self.cfg.urls), "title": title, "body": text, "timeout": self.cfg.timeout})
        try:
            done = subprocess.run([sys.executable, "-m", "gitops_agent.notify"], input=job, text=True,
                                  capture_output=True, timeout=self.cfg.timeout * max(1, len(self.cfg.urls)) + 30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DeliveryFailed(f"the apprise delivery process failed: {type(e).__name__}") from None
        if done.returncode != 0:  # its stderr is not repeated: apprise may quote a URL, and URLs hold tokens
            raise DeliveryFailed(done.stdout.strip().splitlines()[-1] if done.stdout.strip()
                                 else f"the apprise delivery process exited {done.returncode}")


def _apprise_child() -> int:
    """The child of `Apprise.send`: one job from stdin; exit 0 when every URL took it."""
    import apprise  # only here, in the child process

    try:
        job = json.loads(sys.stdin.read())
    except ValueError:
        print("the apprise job on stdin is not JSON")
        return 1
    sender = apprise.Apprise(asset=apprise.AppriseAsset(secure_logging=True))  # tokens masked in its logs
    for url in job["urls"]:
        if not sender.add(url):
            print("an apprise URL is not understood by apprise (check its scheme)")
            return 1
    if not sender.notify(title=job["title"], body=job["body"]):
        print("apprise could not deliver to one of its URLs")
        return 1
    return 0


def make_sink(cfg: SinkConfig) -> Sink:
    return Webhook(cfg) if cfg.type == "webhook" else Apprise(cfg)


class Outbox:
    """The `notify_outbox` table in state.db (its schema is history.py's). New alerts are written through
    the History's connection in the transaction of the state change they report (`Notifier.enqueue`);
    delivery reads and deletes them through this connection of its own (WAL: the two go on side by side).
    One row per (sink, alert); deleted once delivered."""

    def __init__(self, state_dir: Path, max_pending: int = 1000) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.max_pending = max(2, max_pending)
        self._db = sqlite3.connect(state_dir / "state.db", timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        from .history import OUTBOX_SCHEMA

        self._db.executescript(OUTBOX_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, sink: str, alert: Alert) -> int:
        """Store `alert` for `sink` in a transaction of its own (a Notifier without a History: tests, tools);
        returns how many older alerts were dropped for room."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return row_for(self._db.execute, sink, alert, self.max_pending)

    def next(self, sink: str) -> tuple[int, dict[str, Any], int, float] | None:
        """The oldest pending alert of `sink`: (seq, body, attempts, next_at)."""
        with self._lock:
            row = self._db.execute("SELECT seq, body, attempts, next_at FROM notify_outbox WHERE sink = ? "
                                   "ORDER BY seq LIMIT 1", (sink,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]), row[2], row[3])

    def done(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM notify_outbox WHERE seq = ?", (seq,))

    def retry(self, seq: int, attempts: int, at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE notify_outbox SET attempts = ?, next_at = ? WHERE seq = ?", (attempts, at, seq))

    def forget_except(self, sinks: set[str]) -> int:
        """Drop the alerts of sinks no longer configured (they could never be delivered); how many."""
        marks = ",".join("?" * len(sinks))
        with self._lock:
            done = self._db.execute(f"DELETE FROM notify_outbox WHERE sink NOT IN ({marks})", tuple(sinks))
        return int(done.rowcount)

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM notify_outbox").fetchone()[0])

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """Pending alerts, oldest first, with their sink and attempts (the status page's list)."""
        with self._lock:
            rows = self._db.execute("SELECT sink, body, attempts FROM notify_outbox ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [{"sink": s, "attempts": a, **json.loads(b)} for s, b, a in rows]


def row_for(execute: Callable[..., Any], sink: str, alert: Alert, max_pending: int) -> int:
    """`alert`'s outbox row for `sink`, through `execute` (inside the caller's transaction); how many dropped."""
    from .history import outbox_insert

    return outbox_insert(execute, sink, alert.id, severity_rank(alert.severity),
                         json.dumps(alert.body(), sort_keys=True), max(2, max_pending))


def backoff(attempts: int, cap: float = BACKOFF_CAP) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling from 1 s, capped at `cap`."""
    return float(min(cap, BACKOFF_START * 2 ** max(0, min(attempts, 60) - 1)))


class Notifier:
    """Subscribed to the EventLog: turns events into alerts (`alerts.Watch`), damps repeats, stores each
    wanted alert in the outbox for each sink, and delivers them from a thread of its own.

    With the agent's `history`, an alert is staged there (`History.stage`) and written in the same SQLite
    transaction as the state change it reports (the pass's next checkpoint or commit; outside a pass, at
    once): a kill -9 between the two loses neither or both (and the pass, redone, raises it again)."""

    IDLE = 1.0  # seconds between looks at an empty outbox (an alert committed by the pass is seen this soon)

    def __init__(self, cfg: NotifyConfig, state_dir: Path, log: Log = discard,
                 sinks: tuple[Sink, ...] | None = None, hidden: tuple[str, ...] = (),
                 history: History | None = None) -> None:
        self.cfg = cfg
        self.history = history
        self.hidden = hidden  # strings never sent (the source URL's credentials): replaced by ***
        self.log = log  # used only from the delivery thread (never inside an EventLog callback: its lock)
        self.sinks = sinks if sinks is not None else tuple(make_sink(s) for s in cfg.sinks)
        self.wanted = {s.name: s for s in cfg.sinks}
        self.outbox = Outbox(state_dir, cfg.max_pending)
        gone = self.outbox.forget_except({s.name for s in self.sinks})
        if gone:
            log("notify.forgotten", level="warning", alerts=gone, message="alerts of sinks no longer in notify.sinks")
        self.watch = Watch(cfg.node_unreachable_after, cfg.git_unreachable_after)
        self.damper = Damper(cfg.damping)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        """The EventLog subscriber: every alert is in the outbox before this returns."""
        now = time.time()
        for alert in self.watch.feed(event, fields, now):
            admitted = self.damper.admit(alert)
            if admitted is not None:
                self.enqueue(admitted)

    def enqueue(self, alert: Alert) -> None:
        alert = hide(alert, self.hidden)
        names = [s.name for s in self.sinks if s.name not in self.wanted or self.wanted[s.name].wants(alert)]
        history = self.history
        if history is None:
            self._write(self.outbox.add, names, alert)
        else:
            history.stage(lambda: self._write(lambda sink, a: row_for(history.execute, sink, a, self.cfg.max_pending),
                                              names, alert))
        self._wake.set()

    def _write(self, add: Callable[[str, Alert], int], names: list[str], alert: Alert) -> None:
        for name in names:
            dropped = add(name, alert)
            if dropped:
                add(name, build(EVENTS["notify.dropped"], {"dropped": dropped}, time.time()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop delivering (what is left stays in the outbox for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.outbox.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.IDLE
            for sink in self.sinks:
                wait = min(wait, self._deliver(sink))
            self._wake.wait(max(0.05, wait))
            self._wake.clear()

    def _deliver(self, sink: Sink) -> float:
        """Send `sink`'s pending alerts oldest first until one fails; the seconds until it is due again."""
        while not self._stop.is_set():
            item = self.outbox.next(sink.name)
            if item is None:
                return self.IDLE
            seq, body, attempts, next_at = item
            now = time.time()
            if next_at > now:
                return next_at - now
            alert = Alert(**{**body, "details": body.get("details", {})})
            try:
                sink.send(alert, json.dumps(body, sort_keys=True).encode())
            except Exception as e:  # DeliveryFailed; any other error is a sink's bug: it must not stop the others
                delay = backoff(attempts + 1, self.cfg.retry_max)
                self.outbox.retry(seq, attempts + 1, now + delay)
                self.log("notify.failed", level="warning", sink=sink.name, alert=alert.id, kind=alert.kind,
                         attempts=attempts + 1, retry=round(delay, 1),
                         error=str(e) if isinstance(e, DeliveryFailed) else type(e).__name__)
                return delay
            self.outbox.done(seq)
            self.log("notify.sent", sink=sink.name, alert=alert.id, kind=alert.kind)
        return 5.0


if __name__ == "__main__":
    sys.exit(_apprise_child())
