"""The reconcile pass: wires source, manifests, desired, plan, apply and history
together; the decisions it acts on are made in `decide` (pure), the daemon loop
around it is `daemon`.

A pass is a short list of named steps (Flux's shape): resolve the newest
revision, validate it, plan and apply it node by node, record the outcome
once. It is level-triggered: even when Git has not moved, live state is read
and drift is repaired against the last good revision. Errors are branched on
by class (errors.py), never by message.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence

from .config import AgentConfig, NodeConfig
from .desired import ENV_UNUSED, compile_node, legacy_secret_names, unplaced
from .errors import (
    AgentError, NodeError, NodeUnreachable, PolicyViolation, Problem, PruneRefused, RevisionRejected,
    SourceUnavailable, StateError, quote_path,
)
from . import batchstore, clock, endpoints, events as ev, hpa, sops, substitute, variables
from .events import emit
from .decide import Candidate, Head, Hold, choose_target, failure_message, fallback, rollback_target
from .history import History
from .live import LiveState
from .log import Log, discard
from .manifests import SourceFile, check_immutable, parse
from .model import Revision, Workload
from .nodes import reported_amounts
from .plan import CreateSecret, Plan, plan
from .podman import Node, open_node
from .reasons import Reason, for_result
from .fleet import COMPLETE, PROGRESSING, ROLLED_BACK, ROLLING_BACK, SUPERSEDED, Fleet, RolloutState
from .source import GitSource, resolve
from .state import Failure, Rejection


RECORD_QUIET = 300.0  # seconds: a streak of in-sync passes is recorded once this often (`Agent._record`)


@dataclass
class Outcome:
    """What one pass did. `ok` is True when every node runs the newest valid revision."""

    head: str = ""  # newest revision id in Git ("" when Git could not be read)
    target: str = ""  # revision the nodes were reconciled to
    result: str = ""  # applied | in-sync | rejected | failed | source-error | progressing | superseded | suspended
    error: str = ""
    actions: int = 0
    problems: tuple[Problem, ...] = ()
    plans: dict[str, Plan] = field(default_factory=dict)
    node_errors: dict[str, str] = field(default_factory=dict)
    rollout: RolloutState | None = None
    waiting: bool = False  # nothing to retry until Git moves (or `resume`): the daemon does not back off
    warnings: tuple[str, ...] = ()  # the target revision's no-op fields and kinds (`Revision.warnings`)
    reason: Reason | None = None  # why `reason_of` was the result (`decide`, an error's code)
    reason_of: str = ""
    polled: bool = False  # Git was asked for the head in this pass (not a drift pass's last answer, not suspended)

    def explain(self, reason: Reason) -> None:
        """`reason` explains the result as it is now (a later result has the reason of its own)."""
        self.reason, self.reason_of = reason, self.result

    @property
    def why(self) -> Reason:
        """The stable reason of this pass's result."""
        if self.reason is not None and self.result and self.reason_of == self.result:
            return self.reason
        return for_result(self.result)

    @property
    def ok(self) -> bool:
        return self.result in ("applied", "in-sync")


class Agent:
    def __init__(self, cfg: AgentConfig, log: Log = discard) -> None:
        self.cfg = cfg
        self.log = log
        self.history = History(cfg.state_dir)
        self.location = resolve(cfg.source)
        self.git = GitSource(self.location, cfg.state_dir, cfg.source.timeout, cfg.source.verify)
        self.nodes = {n.name: open_node(cfg, n) for n in cfg.nodes}
        for n in cfg.nodes:
            if n.insecure_ignore_host_key:
                log("ssh.insecure", level="warning", node=n.name,
                    message=f"insecureIgnoreHostKey: the host key of node {n.name} is not checked (labs only)")
        self._parsed: dict[str, Revision] = {}
        self._scaled_memo: tuple[tuple[str, str], Revision] | None = None  # `_scaled`'s last answer
        self._encrypted: dict[str, frozenset[str]] = {}  # revision id → its files that were SOPS-encrypted
        self._stable: Revision | None = None  # became stable this pass: recorded by `_record`
        self._polled: tuple[float, Head] | None = None  # the last answer of the Git poll (monotonic time, head)
        self.stop = threading.Event()  # set by the daemon on SIGTERM: apply stops after its current step
        self._lock = threading.Lock()
        self.fleet = Fleet(cfg, self.nodes, self.history, log, self.stop)

    def close(self) -> None:
        for n in self.nodes.values():
            n.close()
        self.history.close()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One pass at a time per state directory, across processes (`run` and a
        break-glass `rollback` must not drive the same pods at once)."""
        path = self.cfg.state_dir / "agent.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StateError(f"cannot open the lock {quote_path(str(path))}: {e.strerror}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log("lock.wait",
                         message="another gitops-agent pass is running on this state directory; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            with self.history.in_pass():  # the pass's alerts go in its commits (History.stage)
                yield
        finally:
            os.close(fd)

    # --- revisions -----------------------------------------------------------------

    def _record_scaled(self, rev: Revision) -> None:
        """Record the autoscaled replicas a good pass ran (`hpa.APPLIED_KEY`), only when they changed: a repeated
        in-sync pass writes nothing (BENCHMARKS.md, "The pass itself")."""
        ran = hpa.applied(rev)
        if self.history.get(hpa.APPLIED_KEY) != ran:
            self.history.put(hpa.APPLIED_KEY, ran)

    def revision(self, sha: str) -> Revision:
        """The validated revision at commit `sha` (fetched if needed); RevisionRejected if invalid."""
        if sha not in self._parsed:
            self.git.fetch(sha)
            if self.cfg.source.verify and sha not in {s["sha"] for s in self.history.get("stable", [])}:
                self.git.verify(sha)  # a stable revision was verified when it was applied (and Git may be down now)
            rev_id = self.location.revision(sha)
            files = self._decrypted(self.git.files(sha), rev_id)  # verified above, validated below
            # node ports allocated by earlier revisions stay (manifests.parse's node_ports)
            rev = parse_for_nodes(files, rev_id, self.cfg, node_ports=self.history.get("node_ports") or {})
            # keep two (target and stable): memory stays flat
            self._parsed = {k: v for k, v in list(self._parsed.items())[-1:]}
            self._parsed[sha] = rev
        # the autoscaled workloads' replicas as their autoscalers recorded them (Git's is the starting point)
        return self._scaled(sha)

    def _scaled(self, sha: str) -> Revision:
        """`sha`'s revision with its autoscalers' replicas (`hpa.scaled`); the same object while neither changed, so
        the fleet's compile-once memo (`Fleet._desired`, keyed by the Revision object) holds for autoscaled
        workloads too."""
        raw = self.history.get(hpa.STORE_KEY)
        key = (sha, json.dumps(raw, sort_keys=True))
        if self._scaled_memo is None or self._scaled_memo[0] != key:
            self._scaled_memo = (key, hpa.scaled(self._parsed[sha], raw))
        return self._scaled_memo[1]

    def _decrypted(self, files: list[SourceFile], rev_id: str) -> list[SourceFile]:
        """The SOPS-encrypted files decrypted in memory (`sops.decrypt_files`); a tampered one is an alert."""
        try:
            plain, self._encrypted[rev_id] = sops.decrypt_files(files, self.cfg.sops.age_key_files if self.cfg.sops
                                                                else ())
            return plain
        except sops.DecryptionFailed as e:
            if e.tampered:
                emit(self.log, ev.RevisionTampered(rev_id, e.problem.file, e.problem.message))
            raise

    def files(self, sha: str) -> tuple[list[SourceFile], frozenset[str]]:
        """The manifest files of the fetched commit `sha`, SOPS-encrypted ones decrypted in memory, and the paths
        of those: what `diff` shows each node's substituted values from (`variables.shown`)."""
        rev_id = self.location.revision(sha)
        return self._decrypted(self.git.files(sha), rev_id), self._encrypted[rev_id]

    def applied(self) -> Revision | None:
        """The last good revision, read from the local mirror (works with Git down)."""
        sha = self.history.get("applied_sha")
        if not sha:
            return None
        try:
            return self.revision(sha)
        except (SourceUnavailable, RevisionRejected) as e:
            self.log("applied.unreadable", level="error", revision=sha, error=str(e).splitlines()[0])
            return None

    # --- one pass --------------------------------------------------------------------

    def sync(self, dry_run: bool = False, ignore_window: bool = False, poll: bool = True) -> Outcome:
        """One full reconcile pass. With dry_run, only plans (for `diff`). `ignore_window`: break-glass,
        the maintenance windows are overridden (recorded in the rollout's history). Without `poll` (a pass
        started by drift, `Daemon.on_drift`) Git is not asked again when this agent's last poll is younger
        than `source.interval`: the head it saw then is the head (the daemon's interval passes poll)."""
        with self._lock, (nullcontext() if dry_run else self._exclusive()):
            started, t0 = time.time(), clock.now()  # wall: shown and kept; monotonic: the duration
            out = Outcome()
            self._stable = None
            if not dry_run and self.history.needs_rebuild:  # the store was lost: take back what the nodes' labels tell
                self.history.rebuild(self.live(), self.location.revision, self.log)
            if not dry_run:
                self._adopt_legacy_secrets()
            try:
                target = self._resolve_target(out, poll)
                if target is not None:
                    self._reconcile(target, out, dry_run, ignore_window)
            except StateError:
                raise
            except AgentError as e:  # anything not handled per node above
                out.result, out.error = out.result or "failed", str(e)
            if not dry_run:
                self._record(out, started, t0)
            return out

    def _adopt_legacy_secrets(self) -> None:
        """Once per node, after an upgrade from an agent with dash-joined names: the secrets that
        agent made for the applied revision go into the secret inventory, so that prune removes
        them once no pod of that agent is left (`plan`). Unproven `gitops-*` secrets stay unknown."""
        done = set(self.history.get("secrets_adopted", []))
        pending = [n for n in self.nodes if n not in done]
        if not pending:
            return
        rev = self.applied()
        if rev is None and self.history.get("applied_sha"):
            return  # the applied revision cannot be read now (Git down, no mirror): next pass
        legacy = legacy_secret_names(rev) if rev is not None else frozenset()
        lives = self.live() if legacy else {}
        for name in pending:
            live = lives.get(name)
            if legacy and not isinstance(live, LiveState):
                continue  # unreachable: next pass
            found = sorted(live.secrets & legacy) if isinstance(live, LiveState) else []
            self.history.record_secrets(name, add=found)
            if found:
                self.log("secrets.adopted", node=name, secrets=len(found), revision=rev.id if rev else "-")
            done.add(name)
        self.history.put("secrets_adopted", sorted(done))

    def _resolve_target(self, out: Outcome, poll: bool = True) -> Revision | None:
        """Ask Git for the head (or take the last poll's, `sync`), let `decide.choose_target` pick, read what
        it picked."""
        state = self.history.load()
        head, out.polled = (Head(), False) if state.suspended is not None else self._head(poll)
        out.head = head.revision
        choice = choose_target(head, state, self._policy_key())
        out.result, out.error, out.waiting = choice.result, choice.error, choice.waiting
        out.explain(choice.reason)
        if isinstance(choice, Hold):
            return None
        out.problems = choice.problems
        return self._read_candidates(choice.candidates, out)

    def _read_candidates(self, candidates: tuple[Candidate, ...], out: Outcome) -> Revision | None:
        """The first candidate that reads (what a read error means depends on its role: `decide.Candidate`)."""
        for c in candidates:
            if c.role == "suspended":
                return self.revision(c.sha)
            if c.role == "applied":
                return self.applied()
            if c.role == "rollout":
                try:
                    return self.revision(c.sha)
                except (SourceUnavailable, RevisionRejected):
                    continue
            try:
                return self._head_revision(c.sha)
            except RevisionRejected as e:
                out.result, out.error, out.problems, out.waiting = "rejected", str(e), e.problems, True
                out.explain(e.code)
                self.history.put("rejected", Rejection(c.sha, str(e), e.problems, self._policy_key()).to_json())
                emit(self.log, ev.RevisionRejected(out.head, len(e.problems), e.code))
            except SourceUnavailable as e:
                out.result, out.error = "source-error", str(e)
                out.explain(e.code)
                emit(self.log, ev.SourceUnavailable(str(e)))
            return self._read_candidates(fallback(self.history.load()), out)
        return None

    def _head_revision(self, sha: str) -> Revision:
        """The head's revision; RevisionRejected also when it changes an immutable ConfigMap or Secret of a
        revision the nodes run, the applied one or an unfinished rollout's target (`manifests.check_immutable`),
        as the Kubernetes API server refuses the update: nothing changes on any node."""
        state = self.history.load()
        rollout = state.rollout.target_sha if state.rollout and state.rollout.phase == PROGRESSING else ""
        running = []
        for other in dict.fromkeys((state.applied.sha if state.applied else "", rollout)):
            if other and other != sha:
                try:
                    running.append(self.revision(other))
                except (SourceUnavailable, RevisionRejected):
                    continue  # unreadable now (as in `applied`): the head is not judged against it
        rev = self.revision(sha)  # last: the head stays the parsed and scaled revision the pass uses
        problems = check_immutable(running, rev)
        if problems:
            raise RevisionRejected(problems, rev.id)
        return rev

    def polled_at(self) -> float | None:
        """When (monotonic, `clock.now`) this agent last asked Git for the head; None before its first poll."""
        return self._polled[0] if self._polled is not None else None

    def _head(self, poll: bool) -> tuple[Head, bool]:
        """The remote head and whether Git was asked for it: asked, or (not `poll`) the last poll's answer
        while it is younger than `source.interval` and was not an error."""
        last = self._polled
        if not poll and last is not None and not last[1].error and clock.now() - last[0] < self.cfg.source.interval:
            return last[1], False
        try:
            sha = self.git.remote_head()
            head = Head(sha, self.location.revision(sha))
        except SourceUnavailable as e:
            head = Head(error=str(e))
            emit(self.log, ev.SourceUnavailable(str(e)))
        self._polled = (clock.now(), head)
        return head, True

    def _policy_key(self) -> str:
        """The policy a rejection was judged under: a changed policy re-judges the same commit."""
        judged = repr(self.cfg.policy) + (repr(self.cfg.source.verify) if self.cfg.source.verify else "")
        return hashlib.sha256(judged.encode()).hexdigest()[:16]

    def _reconcile(self, rev: Revision, out: Outcome, dry_run: bool, ignore_window: bool = False) -> None:
        out.target = rev.id
        out.warnings = rev.warnings
        if dry_run:
            self._plan_only(rev, out)
            return
        for warning in unplaced(rev, self.cfg.nodes):
            self.log("placement", level="warning", message=warning)
        for warning in rev.warnings:
            self.log("no-op", level="warning", message=warning)
        stable = self.applied()
        if stable is not None and stable.commit == rev.commit:
            self._converge(rev, out, ignore_window)
            return
        # a new revision: a rollout, node by node (fleet.py)
        state = self.fleet.roll(rev, stable, lambda: self._superseded(rev, out), ignore_window=ignore_window)
        out.rollout = state
        out.actions = sum(n.actions for n in state.nodes.values())
        if state.phase == COMPLETE:
            out.result = out.result or ("applied" if out.actions else "in-sync")
            self._record_scaled(rev)
            self._finish(rev)
            return
        held = [n for n in state.order if state.nodes[n].status == "window"]
        if state.phase == PROGRESSING and held and not state.deferred:  # closed maintenance windows
            self._wait_for_window(rev, stable, held, state, out)
        elif state.phase == PROGRESSING:  # some nodes deferred (unreachable) or waiting for a registry
            out.result = "progressing"
            out.error = f"revision {rev.id} reached {state.progress()}; deferred until reachable: " + "; ".join(
                state.nodes[n].error for n in state.deferred)
        elif state.phase == SUPERSEDED:
            out.result, out.error = "superseded", f"a newer commit arrived during the rollout of {rev.id}"
        else:
            out.result = "failed"
            out.error = _failure_message({**state.failure, "revision": rev.id, "phase": state.phase,
                                          "previous": state.previous})
        out.node_errors.update({n: p.error for n, p in state.nodes.items()
                                if p.status in ("failed", "deferred", "waiting", "rollback-deferred")})

    def _plan_only(self, rev: Revision, out: Outcome) -> None:
        known = self.history.inventory()
        for cfg_node in self.cfg.nodes:
            node = self.nodes[cfg_node.name]
            try:
                live = node.read()
                desired = compile_node(rev, cfg_node, self.cfg.nodes, reported_amounts(rev, cfg_node, node))
                batch = batchstore.current(self.history, desired, live, self.fleet.wall())  # read only
                readiness = endpoints.verdicts(self.history.get(endpoints.STORE_KEY), node.name)
                p = plan(desired, live, self.cfg.prune, known, self.history.secrets(node.name), batch, readiness)
                out.plans[node.name] = encrypted_shown(p, rev, self._encrypted.get(rev.id, frozenset()))
            except (NodeError, PruneRefused) as e:
                out.node_errors[node.name] = str(e)

    def _wait_for_window(self, rev: Revision, stable: Revision | None, held: list[str], state: RolloutState,
                         out: Outcome) -> None:
        """The new revision waits for the windows of `held`; meanwhile those nodes keep the revision
        they run, drift repaired (unless `driftRepair: inWindow`)."""
        out.result, out.waiting = "progressing", True
        out.error = f"revision {rev.id} reached {state.progress()}; " + "; ".join(
            f"node {n}: {state.nodes[n].error}" for n in held)
        out.explain(Reason.WAITING_FOR_WINDOW)
        if stable is None:
            return
        no_repair = self.fleet.closed().repair
        for name in held:
            if name in no_repair:
                emit(self.log, ev.DriftRepairHeld(name))
                continue
            try:
                actions = self.fleet.step(stable, name)
            except (NodeError, PruneRefused) as e:
                out.node_errors[name] = str(e)
                emit(self.log, ev.NodeFailed(name, str(e)))
                continue
            out.actions += actions
            if actions:
                emit(self.log, ev.DriftRepaired(name, stable.id, actions))

    def _converge(self, rev: Revision, out: Outcome, ignore_window: bool = False) -> None:
        """The stable revision again (drift repair): every node on its own; one node's
        failure does not stop the others. A node whose window is closed under `driftRepair:
        inWindow` is left as it is."""
        self.fleet.track(rev)
        no_repair = self.fleet.closed(ignore_window).repair
        scaled = self.history.get(hpa.APPLIED_KEY)  # what the autoscalers' targets ran: scaling is not drift
        for name in self.nodes:
            if name in no_repair:
                emit(self.log, ev.DriftRepairHeld(name))
                continue
            try:
                actions = self.fleet.step(rev, name)
                out.actions += actions
                repaired = (actions - self.fleet.scheduled.get(name, 0)  # a Job's run is not drift, nor is
                            - hpa.moves(rev, scaled, self._node_config(name), self.cfg.nodes))  # autoscaling
                if repaired > 0 and self.history.get("applied_sha") == rev.commit:
                    emit(self.log, ev.DriftRepaired(name, rev.id, repaired))
            except (NodeError, PruneRefused) as e:
                out.node_errors[name] = str(e)
                emit(self.log, ev.NodeUnreachable(name, e.reason) if isinstance(e, NodeUnreachable)
                     else ev.NodeFailed(name, str(e)))
        leftover = self.history.get("rollout") or {}
        if leftover.get("phase") == ROLLING_BACK and not out.node_errors:  # a rollback cut short by a crash is now done
            self.history.checkpoint({**leftover, "phase": ROLLED_BACK, "finished": time.time()})
        if out.node_errors:
            out.result = "failed"
            out.error = "; ".join(out.node_errors.values())
        elif not out.result:
            self._record_scaled(rev)
            out.result = "applied" if out.actions else "in-sync"
            if out.actions or self.history.get("applied_sha") != rev.commit:
                self._finish(rev)  # an in-sync pass of the stable revision has nothing to record

    def _node_config(self, name: str) -> NodeConfig:
        return next(n for n in self.cfg.nodes if n.name == name)

    def _superseded(self, rev: Revision, out: Outcome) -> bool:
        """Rollover: has Git moved past the revision being rolled out?"""
        if out.result == "suspended" or self.stop.is_set():
            return False
        try:
            return self.git.remote_head() != rev.commit
        except SourceUnavailable:
            return False

    def _finish(self, rev: Revision) -> None:
        """`rev` now runs on every node: it becomes the stable revision, recorded with the rest of
        the pass in `_record`'s one transaction (the Git refs that keep it are made first)."""
        self.git.keep(rev.commit, "applied")
        self.git.keep(rev.commit, f"stable/{rev.commit}")
        self._stable = rev

    def _write_stable(self, rev: Revision) -> tuple[list[dict[str, Any]], set[str]]:
        """The store writes of `_finish` (inside the pass's transaction): dropped stable revisions, templates."""
        self.history.set_inventory({o.ref for o in rev.objects})
        self.history.put("applied_sha", rev.commit)
        self.history.put("applied_revision", rev.id)
        self.history.put("applied_digest", rev.digest)
        self.history.put("node_ports", dict(rev.node_ports))  # the next revision keeps these (manifests.parse)
        workloads = [o for o in rev.objects if isinstance(o, Workload)]
        compiled = compile_node(rev, self.cfg.nodes[0], self.cfg.nodes, ENV_UNUSED)
        hashes = {w.ref: w.template_hash for w in compiled.workloads}
        dropped = self.history.add_stable(rev.id, rev.commit, templates=sorted(set(hashes.values())))
        for w in workloads:
            self.history.record_template(w.ref, hashes[w.ref], rev.id, w.revision_history_limit)
        self.history.forget_workloads_except({w.ref for w in workloads})
        return dropped, set(hashes.values())

    # --- break-glass ------------------------------------------------------------------------

    def rollback(self, to: str | None = None) -> Outcome:
        """Roll every node back to an earlier stable revision without Git, then suspend
        syncing until `resume`. `to`: a revision id or commit (prefix); default: the
        stable revision before the current one."""
        with self._lock, self._exclusive():
            started, t0 = time.time(), clock.now()  # wall: shown and kept; monotonic: the duration
            out = Outcome()
            current = self.applied()
            pick = rollback_target(self.history.load().stable, current.commit if current else None, to)
            rev = self.revision(pick.sha)
            out.head, out.target = "", rev.id
            emit(self.log, ev.RollbackStarted(rev.id, current.id if current else "-"))
            state = self.fleet.roll(rev, current, cause="rollback")
            out.rollout = state
            out.actions = sum(n.actions for n in state.nodes.values())
            if state.phase == COMPLETE:
                out.result = "applied" if out.actions else "in-sync"
                self._finish(rev)
            else:
                out.result = "failed" if state.phase != PROGRESSING else "progressing"
                out.error = _failure_message({**state.failure, "revision": rev.id, "phase": state.phase,
                                          "previous": state.previous})
            # pinned: the rollback target while it is done or still on its way (deferred nodes),
            # else (it failed and was rolled back) what runs now
            pinned = rev if state.phase in (COMPLETE, PROGRESSING) else self.applied()
            self._record(out, started, t0, suspend={
                "revision": pinned.id if pinned else rev.id, "sha": pinned.commit if pinned else rev.commit,
                "at": time.time(), "reason": f"gitops-agent rollback to {rev.id}",
            })
            return out

    def _record(self, out: Outcome, started: float, t0: float, suspend: dict[str, Any] | None = None) -> None:
        """Everything the pass learnt, in ONE store transaction (a kill -9 leaves all of it or none);
        then what the commit allows: forgetting dropped stable revisions, collecting images. A pass that
        only repeats the in-sync result recorded less than RECORD_QUIET seconds ago writes nothing."""
        revision = out.head or out.target or "unknown"
        parsed = self._parsed.get(revision.rsplit(":", 1)[-1])
        digest = parsed.digest if parsed else ""
        stable, self._stable = self._stable, None
        if stable is None and suspend is None and self._repeats_record(out):
            emit(self.log, ev.PassDone(revision, out.result, out.actions, round(clock.now() - t0, 3), out.why, None,
                                       out.polled))
            return
        dropped: list[dict[str, Any]] = []
        templates: set[str] = set()
        with self.history.transaction():
            if stable is not None:
                dropped, templates = self._write_stable(stable)
            if suspend is not None:
                self.history.put("suspended", suspend)
            if out.head:
                self.history.put("attempted_revision", out.head)
            self.history.put("last_result", {"result": out.result, "error": out.error, "at": time.time(),
                                             "nodeErrors": out.node_errors, "reason": out.why.value})
            self.history.record_sync(revision, digest, started, out.result, out.error, out.actions,
                                     duration=clock.now() - t0)
            # emitted inside the transaction: the alerts they raise are committed with what they report
            if stable is not None:
                emit(self.log, ev.RevisionApplied(stable.id, out.actions))
            if suspend is not None:
                emit(self.log, ev.Suspended(suspend["revision"], suspend["reason"]))
            emit(self.log, ev.PassDone(revision, out.result, out.actions, round(clock.now() - t0, 3), out.why,
                                       out.error.splitlines()[0] if out.error else None, out.polled))
        for d in dropped:
            self.git.forget(f"stable/{d['sha']}")
        if stable is not None:
            self.fleet.collect_images(templates, self.cfg.keep_image_revisions)

    def _repeats_record(self, out: Outcome) -> bool:
        """`out` is an in-sync pass with nothing to report that the store already says, recorded less than
        RECORD_QUIET seconds ago (wall clock, either way), with no alert staged: writing it would change
        nothing but the time of the last pass (`status`'s `lastSync.at`, a row of `history`)."""
        if out.result != "in-sync" or out.actions or out.error or out.node_errors or self.history.staged():
            return False
        last = self.history.get("last_result") or {}
        at = last.get("at")
        return (last.get("result") == "in-sync" and last.get("reason") == out.why.value and not last.get("error")
                and not last.get("nodeErrors") and isinstance(at, (int, float)) and abs(time.time() - at) < RECORD_QUIET
                and (not out.head or self.history.get("attempted_revision") == out.head))

    # --- read-only views ------------------------------------------------------------------

    def batch_due(self) -> float | None:
        """Seconds until a Job or CronJob of the applied revision next needs a pass on some node (None: none);
        nodes that cannot be read are left to the poll interval."""
        rev, now = self.applied(), self.fleet.wall()
        if rev is None or not any(isinstance(o, Workload) and o.ref.kind in ("Job", "CronJob") for o in rev.objects):
            return None
        times = []
        for cfg_node in self.cfg.nodes:
            try:
                live = self.nodes[cfg_node.name].read()
            except NodeError:
                continue
            at = batchstore.next_wake(self.history, compile_node(rev, cfg_node, self.cfg.nodes, ENV_UNUSED), live,
                                      now)
            times += [at] if at is not None else []
        return max(0.0, min(times) - now) if times else None

    def live(self) -> dict[str, LiveState | str]:
        """Each node's live state, or the error that kept it from being read. Nodes are
        read in parallel, so a slow or unreachable node does not hold up the others."""

        def read(node: Node) -> LiveState | str:
            try:
                return node.read()
            except NodeError as e:
                return e.reason

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(self.nodes)))) as pool:
            return dict(zip(self.nodes, pool.map(read, self.nodes.values())))


def parse_for_nodes(files: list[SourceFile], rev_id: str, cfg: AgentConfig, only: Sequence[NodeConfig] | None = None,
                    node_ports: Mapping[str, int] | None = None) -> Revision:
    """The revision validated under the config; when an object opts in to per-node variables, once per node
    (`only`: these nodes) with that node's variables, each node's result its `variants` entry. A problem on
    any node rejects the revision (nothing is applied anywhere), naming the node unless every node has it."""
    options: dict[str, Any] = {"policy": cfg.policy, "nodes": cfg.nodes, "node_limits": cfg.limits,
                               "storage_classes": cfg.storage_classes, "node_ports": node_ports,
                               "forwarder_image": cfg.forwarder_image}
    sources, bad = variables.sources(files, cfg.substitute_from)  # the `substituteFrom` objects
    if bad:
        raise RevisionRejected(bad, rev_id)
    if not any(substitute.ANNOTATION.encode() in f.data for f in files):
        return parse(files, rev_id, **options)
    revs: dict[str, Revision] = {}
    found: dict[str, tuple[Problem, ...]] = {}
    for node in only or cfg.nodes:
        node_vars = variables.for_node(node, sources)
        try:
            revs[node.name] = parse(files, rev_id, variables=node_vars, **options)
        except RevisionRejected as e:
            found[node.name] = e.problems
    if found:
        every = set.intersection(*(set(p) for p in found.values())) if len(found) == len(only or cfg.nodes) else set()
        problems = dict.fromkeys(p if p in every else replace(p, message=f"on node {name}: {p.message}")
                                 for name, ps in found.items() for p in ps)
        rejected = PolicyViolation if any(p.policy for p in problems) else RevisionRejected
        raise rejected(sorted(problems, key=lambda p: (p.file, p.line)), rev_id)
    return replace(next(iter(revs.values())), variants=revs)


def encrypted_shown(p: Plan, rev: Revision, encrypted: frozenset[str]) -> Plan:
    """`diff`'s plan with a secret of a SOPS-encrypted file shown as `(encrypted value changed)` (never a value)."""
    refs = {o.ref for o in rev.objects if o.origin.file in encrypted}
    actions = tuple(replace(a, reason=f"{a.reason} (encrypted value changed)")
                    if isinstance(a, CreateSecret) and a.secret.source in refs else a for a in p.actions)
    return replace(p, actions=actions)


def _failure_message(f: dict[str, Any]) -> str:
    """One paragraph on a failed rollout (`decide.failure_message` of a raw record with its phase and previous)."""
    return failure_message(Failure.from_json(f), f.get("phase"), f.get("previous", "") or "")


def __getattr__(name: str) -> Any:
    """`gitops_agent.agent.Daemon` stays importable: the daemon moved to daemon.py."""
    if name == "Daemon":
        from .daemon import Daemon

        return Daemon
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
