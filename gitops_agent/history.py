"""The embedded revision store: SQLite (standard library, WAL) in `stateDir`.

Records every sync attempt, the Kubernetes-style revision numbers of each
workload (a new number only when its template hash is new), and a few keys of
agent state (applied/attempted/rejected revision, inventory). Written once per
pass by `agent`; read by `status` and `history`. Holds no Secret value: only
names, hashes and error messages the agent itself composed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StateError
from .model import ObjectRef

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
"""


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


class _Rows(list[Any]):
    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class History:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.db"
        self._mutex = threading.Lock()
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StateError(f"cannot open the state store {self.path}: {e}") from e

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> "_Rows":
        """Run one statement and fetch its rows under a lock: a rollout updates nodes from threads."""
        try:
            with self._mutex:
                return _Rows(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as e:
            raise StateError(f"state store {self.path}: {e}") from e

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

    # --- syncs ------------------------------------------------------------------------

    def record_sync(self, revision: str, digest: str, started: float, result: str, error: str = "", actions: int = 0) -> None:
        self._exec(
            "INSERT INTO syncs(revision, digest, started, duration, result, error, actions) VALUES (?,?,?,?,?,?,?)",
            (revision, digest, started, time.time() - started, result, error, actions),
        )

    def syncs(self, limit: int = 50) -> list[SyncRecord]:
        rows = self._exec("SELECT id, revision, digest, started, duration, result, error, actions FROM syncs ORDER BY id DESC LIMIT ?", (limit,))
        return [SyncRecord(*r) for r in rows.fetchall()]

    # --- rollouts ------------------------------------------------------------------------

    def record_rollout(self, state: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO rollouts(revision, previous, cause, phase, started, finished, detail) VALUES (?,?,?,?,?,?,?)",
            (state["target"], state["previous"], state["cause"], state["phase"], state["started"], state["finished"], json.dumps(state)),
        )

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._exec("SELECT id, detail FROM rollouts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    def add_stable(self, revision: str, sha: str, keep: int = 20) -> list[dict[str, Any]]:
        """Remember a revision that ran everywhere, in the order revisions first became
        stable (a rollback to one keeps its place); returns the ones dropped beyond `keep`."""
        stable = self.get("stable", [])
        if any(s["sha"] == sha for s in stable):
            return []
        stable.append({"revision": revision, "sha": sha, "at": time.time()})
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
            "SELECT template_hash, number FROM workload_revisions WHERE kind=? AND namespace=? AND name=? ORDER BY number DESC",
            key,
        ).fetchall()
        if rows and rows[0][0] == template_hash:
            return int(rows[0][1])
        number = (int(rows[0][1]) + 1) if rows else 1
        self._exec(
            "INSERT INTO workload_revisions(kind, namespace, name, template_hash, number, revision, updated) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(kind, namespace, name, template_hash) DO UPDATE SET number=excluded.number, revision=excluded.revision, updated=excluded.updated",
            (*key, template_hash, number, revision, time.time()),
        )
        self._exec(
            "DELETE FROM workload_revisions WHERE kind=? AND namespace=? AND name=? AND number < ?",
            (*key, number - keep),
        )
        return number

    def workload_revisions(self) -> list[WorkloadRevision]:
        rows = self._exec(
            "SELECT kind, namespace, name, number, template_hash, revision, updated FROM workload_revisions ORDER BY namespace, kind, name, number DESC"
        )
        return [WorkloadRevision(*r) for r in rows.fetchall()]

    def forget_workloads_except(self, keep: set[ObjectRef]) -> None:
        for kind, ns, name in self._exec("SELECT DISTINCT kind, namespace, name FROM workload_revisions").fetchall():
            if ObjectRef(kind, ns, name) not in keep:
                self._exec("DELETE FROM workload_revisions WHERE kind=? AND namespace=? AND name=?", (kind, ns, name))
