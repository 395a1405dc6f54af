"""The embedded revision store: SQLite (standard library, WAL) in `stateDir`.

Records every sync attempt, the Kubernetes-style revision numbers of each
workload (a new number only when its template hash is new), and a few keys of
agent state (applied/attempted/rejected revision, inventory). `load()` reads
the keys the decisions need as one typed `state.AgentState`; a pass writes its
outcome in ONE transaction (`transaction()`, used by `agent._record`), and a
rollout's progress is written by `checkpoint()` before and after each node
step. Writes `stage`d by others (the alert outbox, `notify_outbox`) ride
in the next of those transactions during a pass (`in_pass`), so an alert
commits with the state change it reports. `on_store_write` is the crash
harness's hook after each commit and checkpoint. Read by `status` and
`history`. Holds no Secret value: only
names, hashes and error messages the agent itself composed.

Losing it must never stop the agent:
- a store that is not a SQLite database any more (overwritten, truncated,
  malformed pages) is moved aside to `state.db.corrupt-<timestamp>` and a new
  one is started; a store that is gone starts new too. Either way the next
  sync calls `rebuild` with the nodes' live state: the inventory (owner labels
  on pods, networks and volumes; secrets: only those carrying the agent's mark
  in their driver options, since Podman 4.3 keeps no secret labels and a name
  proves nothing) and the applied revision (the commit in the
  pods' `io.gitops-agent.revision` label, when they all agree) come back; what
  labels cannot tell (sync history, workload revision numbers, stable
  revisions for break-glass rollback, failed/rejected records, a suspension,
  an unfinished rollout's progress) is listed under the `store` key, logged,
  and shown by `status`;
- a state directory that cannot be written (disk full, read-only) is a
  `StateError` naming the cause; `problem()` lets `status` say so without
  writing anything.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

from .desired import L_KIND, L_NAME, L_NAMESPACE, L_REVISION
from .errors import StateError, quote_path
from .live import LiveState
from .model import ObjectRef
from .state import SCHEMA, STATE_KEYS, AgentState

#: What the store holds that no label on a node can give back.
LOST_ON_RESET = (
    "sync history (`gitops-agent history` starts empty)",
    "workload revision numbers (they start again at 1)",
    "stable revisions for break-glass `rollback` (only the rebuilt applied revision is known)",
    "failed/rejected revision records (a bad head commit is tried once more)",
    "a break-glass suspension, if one was in force (Git is followed again)",
    "an unfinished rollout's progress (the next pass recomputes it from the nodes)",
    "Jobs' and CronJobs' run records (a Job whose pods its ttlSecondsAfterFinished removed runs again)",
)
_LOW_SPACE = 256 * 1024  # bytes free in the state directory under which `problem()` speaks up

_SCHEMA = """
CREATE TABLE IF NOT EXISTS syncs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    revision TEXT NOT NULL,
    digest TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL,
    duration REAL NOT NULL,
    result TEXT NOT NULL,          -- applied | in-sync | rejected | failed | source-error
    error TEXT NOT NULL DEFAULT '',
    actions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS workload_revisions (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    number INTEGER NOT NULL,
    revision TEXT NOT NULL,        -- the commit that last made this template current
    updated REAL NOT NULL,
    PRIMARY KEY (kind, namespace, name, template_hash)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    revision TEXT NOT NULL,
    previous TEXT NOT NULL,
    cause TEXT NOT NULL,           -- git | rollback
    phase TEXT NOT NULL,           -- complete | halted | rolled-back | rollback-failed | superseded
    started REAL NOT NULL,
    finished REAL NOT NULL,
    detail TEXT NOT NULL           -- the final rollout state (JSON): nodes, failure
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (   -- every Podman secret the agent made, recorded before it is made
    node TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (node, name)
);
"""


OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (   -- alerts not yet delivered (notify.py), written with the state they report
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    id TEXT NOT NULL,
    severity INTEGER NOT NULL,
    body TEXT NOT NULL,            -- the alert's JSON (Alert.body()); never a Secret value
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    UNIQUE (sink, id)
);
"""
_SCHEMA += OUTBOX_SCHEMA


def outbox_insert(execute: Callable[..., Any], sink: str, alert_id: str, severity: int, body: str,
                  max_pending: int) -> int:
    """One alert row for `sink` (inside the caller's transaction), keeping at most `max_pending` rows for it
    (the oldest lowest-severity ones dropped first); returns how many were dropped for room."""
    (count,) = execute("SELECT COUNT(*) FROM notify_outbox WHERE sink = ?", (sink,)).fetchone()
    dropped = max(0, int(count) + 1 - max_pending)
    if dropped:
        execute("DELETE FROM notify_outbox WHERE seq IN (SELECT seq FROM notify_outbox WHERE sink = ? "
                "ORDER BY severity, seq LIMIT ?)", (sink, dropped))
    execute("INSERT OR IGNORE INTO notify_outbox (sink, id, severity, body) VALUES (?, ?, ?, ?)",
            (sink, alert_id, severity, body))
    return dropped


@dataclass(frozen=True)
class SyncRecord:
    id: int
    revision: str
    digest: str
    started: float
    duration: float
    result: str
    error: str
    actions: int


@dataclass(frozen=True)
class WorkloadRevision:
    kind: str
    namespace: str
    name: str
    number: int
    template_hash: str
    revision: str
    updated: float


def _from_labels(lives: Iterable[LiveState]) -> tuple[set[ObjectRef], set[str], int]:
    """What the owner labels on live objects tell: the managed objects, the pods' commits, the pod count."""
    refs: set[ObjectRef] = set()
    commits: set[str] = set()
    pods = 0
    for live in lives:
        for pod in live.pods.values():
            pods += 1
            if pod.owner is not None:
                refs.add(pod.owner)
            if pod.labels.get(L_REVISION):
                commits.add(pod.labels[L_REVISION])
        for labels in (*live.networks.values(), *live.volumes.values()):
            if labels.get(L_KIND) and labels.get(L_NAME):
                refs.add(ObjectRef(labels[L_KIND], labels.get(L_NAMESPACE, ""), labels[L_NAME]))
    return refs, commits, pods


class _Rows(list[Any]):
    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class History:
    # Test hook (tests/crash_entry.py kills the process in it; None in production): called as
    # on_store_write("commit" | "checkpoint") after each pass's commit and each rollout checkpoint.
    on_store_write: ClassVar[Callable[[str], None] | None] = None

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "state.db"
        self._mutex = threading.RLock()  # re-entered by the writes inside `transaction`
        self._staged: list[Callable[[], None]] = []  # writes that ride with the next commit (`stage`)
        self._staged_lock = threading.Lock()
        self._passes = 0  # > 0 while a pass runs (`in_pass`): staged writes wait for its commit
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            existed = self.path.exists() and self.path.stat().st_size > 0
        except OSError as e:
            raise StateError(f"cannot open the state store {quote_path(str(self.path))}: {_why(e)}") from e
        moved, damage = "", ""
        self._unwritable = ""  # why the store is open read-only (disk full): every write retries the real open
        try:
            try:
                self._db = self._open()
            except _Corrupt as e:
                damage = str(e)
                moved = self._move_aside()
                self._db = self._open()
        except _Unwritable as e:
            # no crash loop on a full disk: read what is there, fail each write with the cause, recover once it is gone
            self._unwritable = str(e)
            self._db = self._read_only(existed and not moved)
            return
        if moved or not existed:
            cause = "corrupt" if moved else "missing"
            self.put("store", {"at": time.time(), "cause": cause, "movedTo": moved, "damage": damage,
                               "rebuild": "pending"})

    def _open(self) -> sqlite3.Connection:
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise _Corrupt("; ".join(str(r[0]) for r in check[:3]))
            db.executescript(_SCHEMA)
            return db
        except _Corrupt:
            db.close()  # type: ignore[union-attr]
            raise
        except sqlite3.DatabaseError as e:
            if db is not None:
                db.close()
            if _corrupt(e):
                raise _Corrupt(str(e)) from e
            error = _Unwritable if _full(e, self.dir) else StateError
            raise error(f"cannot open the state store {quote_path(str(self.path))}: {_why(e, self.dir)}") from e
        except OSError as e:
            if db is not None:
                db.close()
            error = _Unwritable if _full(e, self.dir) else StateError
            raise error(f"cannot open the state store {quote_path(str(self.path))}: {_why(e, self.dir)}") from e

    def _read_only(self, existing: bool) -> sqlite3.Connection:
        """A connection that needs no disk space: the file as it is (its WAL ignored), or an empty store."""
        try:
            if existing:
                return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error:
            pass
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(_SCHEMA)
        return db

    def _move_aside(self) -> str:
        """state.db (and its -wal) → state.db.corrupt-<ts>[-wal]; -shm is only a cache: removed."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, target)
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists():
                os.replace(wal, Path(f"{target}-wal"))
            shm = self.path.with_name(self.path.name + "-shm")
            if shm.exists():
                shm.unlink()
        except OSError as e:
            raise StateError(f"the state store {quote_path(str(self.path))} is corrupt and cannot be moved aside: "
                             f"{_why(e, self.dir)}") from e
        return str(target)

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> "_Rows":
        """Run one statement and fetch its rows under a lock: a rollout updates nodes from threads."""
        try:
            with self._mutex:
                if self._unwritable and not sql.lstrip().upper().startswith("SELECT"):
                    self._reopen()
                return _Rows(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as e:
            raise StateError(f"state store {quote_path(str(self.path))}: {_why(e, self.dir)}") from e

    def _reopen(self) -> None:
        """A write while read-only: open the store for real, or fail with why it still cannot be."""
        try:
            db = self._open()
        except (_Corrupt, StateError) as e:
            raise StateError(str(e)) from None
        self._db.close()
        self._db, self._unwritable = db, ""

    # --- health and recovery ------------------------------------------------------

    def problem(self) -> str:
        """Why the state directory cannot take writes now ("" when it can). Read-only:
        for `status`, which must say so even though nothing can be recorded."""
        try:
            st = os.statvfs(self.dir)
        except OSError as e:
            return f"state directory {quote_path(str(self.dir))}: {_why(e)}"
        if st.f_bavail * st.f_frsize < _LOW_SPACE:
            return (f"state directory {quote_path(str(self.dir))} is full "
                    f"({st.f_bavail * st.f_frsize // 1024} KiB free): "
                    "syncs fail until space is freed, then the next pass recovers; nodes keep what they run")
        if not os.access(self.dir, os.W_OK):
            return f"state directory {quote_path(str(self.dir))} is not writable"
        return ""

    @property
    def needs_rebuild(self) -> bool:
        return (self.get("store") or {}).get("rebuild") == "pending"

    def rebuild(self, lives: Mapping[str, "LiveState | str"], revision_id: Callable[[str], str],
                log: Callable[..., None] | None = None) -> dict[str, Any] | None:
        """After the store was lost (`needs_rebuild`): take back what the labels on the nodes'
        live objects tell, record what they cannot, and log it. Returns the record (None when
        there was nothing to lose: a first start on empty nodes, or no node could be read)."""
        record = dict(self.get("store") or {})
        read = {n: s for n, s in lives.items() if isinstance(s, LiveState)}
        unread = sorted(n for n, s in lives.items() if not isinstance(s, LiveState))
        if not read:
            return None  # try again on the next pass
        refs, commits, pods = _from_labels(read.values())
        if not refs and record.get("cause") == "missing":
            self.put("store", {**record, "rebuild": "done", "lost": [], "rebuilt": {}})
            return None  # a first start: nothing was lost
        rebuilt: dict[str, Any] = {"inventory": len(refs), "objects": sorted(str(r) for r in refs), "pods": pods,
                                   "nodesRead": sorted(read)}
        if unread:
            rebuilt["nodesNotRead"] = unread
        rebuilt.update(self._take_back(read, refs, commits, revision_id))
        message = self._rebuilt_message(record, len(refs), rebuilt)
        record.update(rebuild="done", rebuiltAt=time.time(), rebuilt=rebuilt, lost=list(LOST_ON_RESET), message=message)
        self.put("store", record)
        if log is not None:
            log("state.rebuilt", level="warning", cause=record.get("cause"), movedTo=record.get("movedTo") or "-",
                inventory=len(refs), applied=rebuilt["appliedRevision"] or "unknown", lost=len(LOST_ON_RESET),
                message=message)
        return record

    def _take_back(self, read: Mapping[str, LiveState], refs: set[ObjectRef], commits: set[str],
                   revision_id: Callable[[str], str]) -> dict[str, Any]:
        """Write back the inventory, the marked secrets and (when the pods agree) the applied revision."""
        if refs:
            known = self.inventory() or set()
            self.set_inventory(known | refs)
        marked = 0
        for node, live in read.items():  # secrets: only those the agent's mark proves (see plan.owned_secrets)
            self.record_secrets(node, add=sorted(live.marked_secrets))
            marked += len(live.marked_secrets)
        if len(commits) == 1:
            sha = next(iter(commits))
            self.put("applied_sha", sha)
            self.put("applied_revision", revision_id(sha))
            return {"secrets": marked, "appliedRevision": revision_id(sha)}
        unknown = (f"the pods carry {len(commits)} different revisions (a rollout was in progress)"
                   if commits else "no managed pod runs")
        return {"secrets": marked, "appliedRevision": "", "appliedUnknown": unknown}

    def _rebuilt_message(self, record: Mapping[str, Any], refs: int, rebuilt: Mapping[str, Any]) -> str:
        what = "was corrupt and was moved aside to " + record.get("movedTo", "?") if record.get("cause") == "corrupt" \
            else "was missing"
        applied = rebuilt["appliedRevision"] or "unknown (" + rebuilt["appliedUnknown"] + ")"
        return (f"state store {quote_path(str(self.path))} {what}; "
                f"rebuilt from the labels on live objects: inventory of {refs} object(s), applied revision {applied}"
                f"; lost: {'; '.join(LOST_ON_RESET)}")

    # --- typed state -------------------------------------------------------------------

    def load(self) -> AgentState:
        """Everything the decisions read (`state.AgentState`), in one read."""
        marks = ",".join("?" * len(STATE_KEYS))
        rows = self._exec(f"SELECT key, value FROM state WHERE key IN ({marks})", STATE_KEYS).fetchall()
        return AgentState.from_store({k: json.loads(v) for k, v in rows})

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every write inside is one SQLite transaction: a crash leaves all of them or none.
        Nested use joins the outer transaction. Other threads' writes wait for it. The staged
        writes (`stage`: the alerts of the pass) go in the same transaction, just before its COMMIT."""
        with self._tx("commit"):
            yield

    @contextmanager
    def _tx(self, hook: str) -> Iterator[None]:
        with self._mutex:
            if self._db.in_transaction:
                yield
                return
            self._exec("BEGIN IMMEDIATE")
            try:
                yield
                self.put("state_schema", SCHEMA)
                staged = self._take_staged()
                try:
                    for write in staged:
                        write()
                except BaseException:
                    self._restage(staged)
                    raise
            except BaseException:
                self._db.rollback()
                raise
            try:
                self._exec("COMMIT")
            except StateError:
                if self._db.in_transaction:
                    self._db.rollback()
                self._restage(staged)
                raise
        if History.on_store_write is not None:
            History.on_store_write(hook)

    def checkpoint(self, rollout: Mapping[str, Any]) -> None:
        """Persist a rollout's progress (`rollout.RolloutState.to_json()`), before and after each node step,
        so a restarted agent resumes it. One transaction, committed at once, with the alerts staged so far
        (joins a pass's transaction when one is open)."""
        with self._tx("checkpoint"):
            self.put("rollout", dict(rollout))

    # --- writes that ride with the state they report (the alert outbox) ------------------

    @contextmanager
    def in_pass(self) -> Iterator[None]:
        """A pass runs: `stage`d writes wait for its next commit or checkpoint; what is still staged
        when it ends (events after its last commit) is written then, in a transaction of its own."""
        with self._staged_lock:
            self._passes += 1
        try:
            yield
        finally:
            with self._staged_lock:
                self._passes -= 1
            self.flush_staged()

    def stage(self, write: Callable[[], None]) -> None:
        """`write` (statements through `execute`) goes into the transaction of the state change it reports:
        the pass's next commit or checkpoint; outside a pass, at once in a transaction of its own."""
        with self._staged_lock:
            self._staged.append(write)
            waits = self._passes > 0
        if not waits:
            self.flush_staged()

    def staged(self) -> bool:
        """Writes are staged for the next commit (`stage`)."""
        with self._staged_lock:
            return bool(self._staged)

    def flush_staged(self) -> None:
        """Write what is staged now, in its own transaction. A store that refuses it (full disk) keeps it
        staged for its next write; the refusal itself is the pass's error, not this caller's."""
        with self._staged_lock:
            if not self._staged:
                return
        try:
            with self._tx("commit"):
                pass
        except StateError:
            pass

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> "_Rows":
        """One statement for a staged write (`stage`); runs inside the transaction that commits it."""
        return self._exec(sql, args)

    def _take_staged(self) -> list[Callable[[], None]]:
        with self._staged_lock:
            staged, self._staged = self._staged, []
        return staged

    def _restage(self, staged: list[Callable[[], None]]) -> None:
        with self._staged_lock:
            self._staged[:0] = staged

    # --- key/value state ----------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self._exec("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any) -> None:
        self._exec("INSERT INTO state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (key, json.dumps(value)))

    def delete(self, key: str) -> None:
        self._exec("DELETE FROM state WHERE key = ?", (key,))

    def inventory(self) -> set[ObjectRef] | None:
        raw = self.get("inventory")
        return None if raw is None else {ObjectRef(*r) for r in raw}

    def set_inventory(self, refs: set[ObjectRef]) -> None:
        self.put("inventory", sorted([r.kind, r.namespace, r.name] for r in refs))

    # --- secret inventory: Podman 4.3 keeps no labels on secrets --------------------

    def secrets(self, node: str) -> set[str]:
        """The Podman secrets the agent made on `node` (names only, never a value)."""
        return {r[0] for r in self._exec("SELECT name FROM secrets WHERE node = ?", (node,)).fetchall()}

    def record_secrets(self, node: str, add: Iterable[str] = (), drop: Iterable[str] = ()) -> None:
        """`add` before the secrets are created (a crash in between leaves a record of a secret
        that may not exist: harmless), `drop` once they are removed."""
        for name in add:
            self._exec("INSERT OR IGNORE INTO secrets(node, name) VALUES (?, ?)", (node, name))
        for name in drop:
            self._exec("DELETE FROM secrets WHERE node = ? AND name = ?", (node, name))

    # --- syncs ------------------------------------------------------------------------

    def record_sync(self, revision: str, digest: str, started: float, result: str, error: str = "", actions: int = 0,
                    duration: float | None = None) -> None:
        """`started`: wall time; `duration`: seconds on the monotonic clock (default: wall time since `started`)."""
        self._exec(
            "INSERT INTO syncs(revision, digest, started, duration, result, error, actions) VALUES (?,?,?,?,?,?,?)",
            (revision, digest, started, time.time() - started if duration is None else duration, result, error,
             actions),
        )

    def syncs(self, limit: int = 50) -> list[SyncRecord]:
        rows = self._exec("SELECT id, revision, digest, started, duration, result, error, actions FROM syncs "
                          "ORDER BY id DESC LIMIT ?", (limit,))
        return [SyncRecord(*r) for r in rows.fetchall()]

    # --- rollouts ------------------------------------------------------------------------

    def record_rollout(self, state: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO rollouts(revision, previous, cause, phase, started, finished, detail) VALUES (?,?,?,?,?,?,?)",
            (state["target"], state["previous"], state["cause"], state["phase"], state["started"], state["finished"],
             json.dumps(state)),
        )

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._exec("SELECT id, detail FROM rollouts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    def add_stable(self, revision: str, sha: str, keep: int = 20,
                   templates: list[str] | None = None) -> list[dict[str, Any]]:
        """Remember a revision that ran everywhere, in the order revisions first became
        stable (a rollback to one keeps its place), with its workloads' template hashes (what
        image garbage collection keeps); returns the ones dropped beyond `keep`."""
        stable: list[dict[str, Any]] = self.get("stable", [])
        if any(s["sha"] == sha for s in stable):
            return []
        stable.append({"revision": revision, "sha": sha, "at": time.time(), "templates": templates or []})
        self.put("stable", stable[-keep:])
        return stable[:-keep]

    # --- workload revisions -----------------------------------------------------------

    def record_template(self, ref: ObjectRef, template_hash: str, revision: str, keep: int) -> int:
        """The workload's revision number for this template, Kubernetes' way.

        A template seen before (a `git revert`) gets the next number again, as a
        rolled-back ReplicaSet does; only `keep` old templates are remembered
        besides the current one (revisionHistoryLimit).
        """
        key = (ref.kind, ref.namespace, ref.name)
        rows = self._exec(
            "SELECT template_hash, number FROM workload_revisions WHERE kind=? AND namespace=? AND name=? "
            "ORDER BY number DESC",
            key,
        ).fetchall()
        if rows and rows[0][0] == template_hash:
            return int(rows[0][1])
        number = (int(rows[0][1]) + 1) if rows else 1
        self._exec(
            "INSERT INTO workload_revisions(kind, namespace, name, template_hash, number, revision, updated) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(kind, namespace, name, template_hash) DO UPDATE SET "
            "number=excluded.number, revision=excluded.revision, updated=excluded.updated",
            (*key, template_hash, number, revision, time.time()),
        )
        self._exec(
            "DELETE FROM workload_revisions WHERE kind=? AND namespace=? AND name=? AND number < ?",
            (*key, number - keep),
        )
        return number

    def workload_revisions(self) -> list[WorkloadRevision]:
        rows = self._exec(
            "SELECT kind, namespace, name, number, template_hash, revision, updated FROM workload_revisions "
            "ORDER BY namespace, kind, name, number DESC"
        )
        return [WorkloadRevision(*r) for r in rows.fetchall()]

    def forget_workloads_except(self, keep: set[ObjectRef]) -> None:
        for kind, ns, name in self._exec("SELECT DISTINCT kind, namespace, name FROM workload_revisions").fetchall():
            if ObjectRef(kind, ns, name) not in keep:
                self._exec("DELETE FROM workload_revisions WHERE kind=? AND namespace=? AND name=?", (kind, ns, name))


class _Corrupt(Exception):
    """The store file is not a sound SQLite database."""


def _corrupt(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return not isinstance(e, sqlite3.OperationalError)


class _Unwritable(StateError):
    """The store cannot be opened for writing because the state directory is full."""


def _full(e: BaseException, state_dir: Path | None) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or getattr(e, "errno", None) == errno.ENOSPC:
        return True
    if state_dir is not None and (code is None or code & 0xFF in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN)):
        try:  # a full tmpfs shows as "disk I/O error" when SQLite grows its -shm file
            st = os.statvfs(state_dir)
            return st.f_bavail * st.f_frsize < _LOW_SPACE
        except OSError:
            pass
    return False


def _why(e: BaseException, state_dir: Path | None = None) -> str:
    """The error, with the cause spelled out when the disk is full."""
    full = _full(e, state_dir)
    text = getattr(e, "strerror", None) or str(e)
    if full:
        where = f" {state_dir}" if state_dir else ""
        return f"no space left in the state directory{where} ({text}); free some space: the next pass recovers"
    return text
