"""The reconcile pass and the daemon loop: wires source, manifests, desired,
plan, apply and history together.

A pass is a short list of named steps (Flux's shape): resolve the newest
revision, validate it, plan and apply it node by node, record the outcome
once. It is level-triggered: even when Git has not moved, live state is read
and drift is repaired against the last good revision. Errors are branched on
by class (errors.py), never by message.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator

from . import systemd
from .config import AgentConfig
from .desired import compile_node, legacy_secret_names, unplaced
from .errors import (
    AgentError, NodeError, Problem, PruneRefused, RevisionRejected, SourceUnavailable, StateError, quote_path,
)
from .history import History
from .live import LiveState
from .log import Log, discard
from .manifests import parse
from .model import Revision, Workload
from .plan import Plan, plan
from .podman import Node, open_node
from .rollout import COMPLETE, PROGRESSING, ROLLED_BACK, ROLLING_BACK, SUPERSEDED, Fleet, RolloutState
from .source import GitSource, resolve


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
                self.log("lock.wait", message="another gitops-agent pass is running on this state directory; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- revisions -----------------------------------------------------------------

    def revision(self, sha: str) -> Revision:
        """The validated revision at commit `sha` (fetched if needed); RevisionRejected if invalid."""
        if sha not in self._parsed:
            self.git.fetch(sha)
            if self.cfg.source.verify and sha not in {s["sha"] for s in self.history.get("stable", [])}:
                self.git.verify(sha)  # a stable revision was verified when it was applied (and Git may be down now)
            rev_id = self.location.revision(sha)
            rev = parse(self.git.files(sha), rev_id, policy=self.cfg.policy, nodes=self.cfg.nodes,
                        node_limits=self.cfg.limits, storage_classes=self.cfg.storage_classes)
            self._parsed = {k: v for k, v in list(self._parsed.items())[-1:]}  # keep two (target and stable): memory stays flat
            self._parsed[sha] = rev
        return self._parsed[sha]

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

    def sync(self, dry_run: bool = False) -> Outcome:
        """One full reconcile pass. With dry_run, only plans (for `diff`)."""
        with self._lock, (nullcontext() if dry_run else self._exclusive()):
            started = time.time()
            out = Outcome()
            if not dry_run and self.history.needs_rebuild:  # the store was lost: take back what the nodes' labels tell
                self.history.rebuild(self.live(), self.location.revision, self.log)
            if not dry_run:
                self._adopt_legacy_secrets()
            try:
                target = self._resolve_target(out)
                if target is not None:
                    self._reconcile(target, out, dry_run)
            except StateError:
                raise
            except AgentError as e:  # anything not handled per node above
                out.result, out.error = out.result or "failed", str(e)
            if not dry_run:
                self._record(out, started)
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

    def _resolve_target(self, out: Outcome) -> Revision | None:
        suspended = self.history.get("suspended")
        if suspended:
            # break-glass: Git is not followed until `resume`; the pinned revision is still reconciled
            out.result, out.error = "suspended", f"syncing suspended ({suspended['reason']}); run `gitops-agent resume` to follow Git again"
            out.waiting = True
            return self.revision(suspended["sha"])
        try:
            sha = self.git.remote_head()
        except SourceUnavailable as e:
            out.result, out.error = "source-error", str(e)
            self.log("source.unavailable", level="warning", error=str(e))
            return self._fallback()
        out.head = self.location.revision(sha)
        rejected = self.history.get("rejected") or {}
        if rejected.get("sha") == sha and rejected.get("policy") == self._policy_key():
            # the same bad commit: not retried until the branch moves (no flapping)
            out.result, out.error, out.waiting = "rejected", rejected.get("error", ""), True
            out.problems = tuple(Problem(**p) for p in rejected.get("problems", []))
            return self._fallback()
        failed = self.history.get("failed") or {}
        if failed.get("sha") == sha:
            # a revision that failed its rollout: not retried until Git moves (no flapping)
            out.result, out.error, out.waiting = "failed", _failure_message(failed), True
            if failed.get("halted"):
                return None  # halted without rollback: every node is left as it is for a human to look at
            return self.applied()
        try:
            return self.revision(sha)
        except RevisionRejected as e:
            out.result, out.error, out.problems, out.waiting = "rejected", str(e), e.problems, True
            self.history.put("rejected", {"sha": sha, "error": str(e), "problems": [p.__dict__ for p in e.problems],
                                          "policy": self._policy_key()})
            self.log("revision.rejected", level="error", revision=out.head, problems=len(e.problems))
            return self._fallback()
        except SourceUnavailable as e:
            out.result, out.error = "source-error", str(e)
            self.log("source.unavailable", level="warning", error=str(e))
            return self._fallback()

    def _policy_key(self) -> str:
        """The policy a rejection was judged under: a changed policy re-judges the same commit."""
        judged = repr(self.cfg.policy) + (repr(self.cfg.source.verify) if self.cfg.source.verify else "")
        return hashlib.sha256(judged.encode()).hexdigest()[:16]

    def _fallback(self) -> Revision | None:
        """What to reconcile when the head cannot be used: the revision an unfinished rollout
        is taking the nodes to (reverting its finished nodes would be a rollback nobody asked
        for), else the last stable revision."""
        rollout = self.history.get("rollout") or {}
        failed = self.history.get("failed") or {}
        if rollout.get("phase") == PROGRESSING and rollout.get("target_sha") != failed.get("sha"):
            try:
                return self.revision(rollout["target_sha"])
            except (SourceUnavailable, RevisionRejected):
                pass
        return self.applied()

    def _reconcile(self, rev: Revision, out: Outcome, dry_run: bool) -> None:
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
            self._converge(rev, out)
            return
        # a new revision: a rollout, node by node (rollout.py)
        state = self.fleet.roll(rev, stable, lambda: self._superseded(rev, out))
        out.rollout = state
        out.actions = sum(n.actions for n in state.nodes.values())
        if state.phase == COMPLETE:
            out.result = out.result or ("applied" if out.actions else "in-sync")
            self._finish(rev)
            return
        if state.phase == PROGRESSING:  # some nodes deferred (unreachable) or waiting for a registry
            out.result = "progressing"
            out.error = f"revision {rev.id} reached {state.progress()}; deferred until reachable: " + "; ".join(
                state.nodes[n].error for n in state.deferred)
        elif state.phase == SUPERSEDED:
            out.result, out.error = "superseded", f"a newer commit arrived during the rollout of {rev.id}"
        else:
            out.result = "failed"
            out.error = _failure_message({**state.failure, "revision": rev.id, "phase": state.phase, "previous": state.previous})
        out.node_errors.update({n: p.error for n, p in state.nodes.items()
                                if p.status in ("failed", "deferred", "waiting", "rollback-deferred")})

    def _plan_only(self, rev: Revision, out: Outcome) -> None:
        known = self.history.inventory()
        for cfg_node in self.cfg.nodes:
            node = self.nodes[cfg_node.name]
            try:
                out.plans[node.name] = plan(compile_node(rev, cfg_node, self.cfg.nodes), node.read(), self.cfg.prune, known,
                                            self.history.secrets(node.name))
            except (NodeError, PruneRefused) as e:
                out.node_errors[node.name] = str(e)

    def _converge(self, rev: Revision, out: Outcome) -> None:
        """The stable revision again (drift repair): every node on its own; one node's
        failure does not stop the others."""
        self.fleet.track(rev)
        for name in self.nodes:
            try:
                out.actions += self.fleet.step(rev, name)
            except (NodeError, PruneRefused) as e:
                out.node_errors[name] = str(e)
                self.log("node.failed", level="error", node=name, error=str(e))
        leftover = self.history.get("rollout") or {}
        if leftover.get("phase") == ROLLING_BACK and not out.node_errors:  # a rollback cut short by a crash is now done
            self.history.put("rollout", {**leftover, "phase": ROLLED_BACK, "finished": time.time()})
        if out.node_errors:
            out.result = "failed"
            out.error = "; ".join(out.node_errors.values())
        elif not out.result:
            out.result = "applied" if out.actions else "in-sync"
            if out.actions or self.history.get("applied_sha") != rev.commit:
                self._finish(rev)  # an in-sync pass of the stable revision has nothing to record

    def _superseded(self, rev: Revision, out: Outcome) -> bool:
        """Rollover: has Git moved past the revision being rolled out?"""
        if out.result == "suspended" or self.stop.is_set():
            return False
        try:
            return self.git.remote_head() != rev.commit
        except SourceUnavailable:
            return False

    def _finish(self, rev: Revision) -> None:
        """`rev` now runs on every node: it becomes the stable revision."""
        self.history.set_inventory({o.ref for o in rev.objects})
        self.history.put("applied_sha", rev.commit)
        self.history.put("applied_revision", rev.id)
        self.history.put("applied_digest", rev.digest)
        self.git.keep(rev.commit, "applied")
        self.git.keep(rev.commit, f"stable/{rev.commit}")
        workloads = [o for o in rev.objects if isinstance(o, Workload)]
        hashes = {w.ref: w.template_hash for w in compile_node(rev, self.cfg.nodes[0], self.cfg.nodes).workloads}
        for dropped in self.history.add_stable(rev.id, rev.commit, templates=sorted(set(hashes.values()))):
            self.git.forget(f"stable/{dropped['sha']}")
        for w in workloads:
            self.history.record_template(w.ref, hashes[w.ref], rev.id, w.revision_history_limit)
        self.history.forget_workloads_except({w.ref for w in workloads})
        self.fleet.collect_images(set(hashes.values()), self.cfg.keep_image_revisions)

    # --- break-glass ------------------------------------------------------------------------

    def rollback(self, to: str | None = None) -> Outcome:
        """Roll every node back to an earlier stable revision without Git, then suspend
        syncing until `resume`. `to`: a revision id or commit (prefix); default: the
        stable revision before the current one."""
        with self._lock, self._exclusive():
            started = time.time()
            out = Outcome()
            current = self.applied()
            stable = self.history.get("stable", [])
            if to:
                key = to.rsplit(":", 1)[-1].rsplit("@", 1)[-1]  # main@sha1:<sha>, main@<prefix> (as `history` prints) or <prefix>
                found = [s for s in stable if s["revision"] == to or (len(key) >= 4 and s["sha"].startswith(key))]
                if len(found) != 1:
                    known = ", ".join(s["revision"] for s in reversed(stable)) or "none"
                    raise AgentError(f"{to!r} matches {len(found)} stable revision(s); known stable revisions: {known}")
                pick = found[0]
            else:
                shas = [s["sha"] for s in stable]
                at = shas.index(current.commit) if current is not None and current.commit in shas else len(stable)
                if at == 0:
                    raise AgentError("no earlier stable revision to roll back to (see `gitops-agent history`)")
                pick = stable[at - 1]
            rev = self.revision(pick["sha"])
            out.head, out.target = "", rev.id
            self.log("rollback.start", to=rev.id, current=current.id if current else "-")
            state = self.fleet.roll(rev, current, cause="rollback")
            out.rollout = state
            out.actions = sum(n.actions for n in state.nodes.values())
            if state.phase == COMPLETE:
                out.result = "applied" if out.actions else "in-sync"
                self._finish(rev)
            else:
                out.result = "failed" if state.phase != PROGRESSING else "progressing"
                out.error = _failure_message({**state.failure, "revision": rev.id, "phase": state.phase, "previous": state.previous})
            # pinned: the rollback target while it is done or still on its way (deferred nodes),
            # else (it failed and was rolled back) what runs now
            pinned = rev if state.phase in (COMPLETE, PROGRESSING) else self.applied()
            self.history.put("suspended", {
                "revision": pinned.id if pinned else rev.id, "sha": pinned.commit if pinned else rev.commit,
                "at": time.time(), "reason": f"gitops-agent rollback to {rev.id}",
            })
            self._record(out, started)
            return out

    def _record(self, out: Outcome, started: float) -> None:
        revision = out.head or out.target or "unknown"
        if out.head:
            self.history.put("attempted_revision", out.head)
        self.history.put("last_result", {"result": out.result, "error": out.error, "at": time.time(), "nodeErrors": out.node_errors})
        parsed = self._parsed.get(revision.rsplit(":", 1)[-1])
        digest = parsed.digest if parsed else ""
        self.history.record_sync(revision, digest, started, out.result, out.error, out.actions)
        self.log("sync", revision=revision, result=out.result, actions=out.actions, seconds=round(time.time() - started, 3),
                 **({"error": out.error.splitlines()[0]} if out.error else {}))

    # --- read-only views ------------------------------------------------------------------

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


def _failure_message(f: dict[str, Any]) -> str:
    """One paragraph on a failed rollout: which node, pod and probe, what it said, what was done."""
    text = f"revision {f.get('revision', '?')} failed"
    if f.get("node"):
        text += f" on node {f['node']}"
    text += f": {f.get('error', 'unknown error')}"
    phase = f.get("phase")
    if phase == ROLLED_BACK:
        text += f"; nodes it reached were rolled back to {f.get('previous')}"
    elif phase == "halted":
        text += "; rollout halted (no rollback)"
    elif phase == "rollback-failed":
        text += f"; rollback failed ({f.get('rollback_error', '')}): syncing suspended, fix the node and run `gitops-agent resume`"
    return text + "; not retried until Git moves"


# --- the daemon ------------------------------------------------------------------------


class Daemon:
    """`run`: poll at `interval` with jitter, sync soon after a local repository changes,
    back off after failures, stop cleanly on SIGTERM/SIGINT (the current step finishes)."""

    JITTER = 0.1  # ±10% of the interval, so a fleet does not poll in lockstep
    BACKOFF_START = 2.0
    BACKOFF_CAP = 300.0
    DEBOUNCE = 1.0
    # systemd (Type=notify): READY=1 once the first pass has finished (the node is reconciled,
    # or the reason it is not is in STATUS=), but no later than this after start, so a long
    # first rollout stays inside the unit's TimeoutStartSec (300 s in the shipped unit).
    READY_DEADLINE = 240.0

    def __init__(self, agent: Agent, log: Log) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.agent = agent
        self.log = log
        self.stop = threading.Event()
        self.failures = 0
        self.scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._observer: Any = None
        self._ready = False
        self._in_pass = False
        self._watchdog = systemd.watchdog_interval()  # None unless the unit has WatchdogSec=
        self.ticked = time.monotonic()  # the main loop's last tick (/healthz)
        self.services: Any = None  # alerts, metrics, listener, control socket (services.py), started by run()

    def _next_delay(self, ok: bool) -> float:
        interval = self.agent.cfg.source.interval
        if ok:
            self.failures = 0
            return interval * (1 + random.uniform(-self.JITTER, self.JITTER))
        self.failures += 1
        return min(self.BACKOFF_START * 2 ** (self.failures - 1), max(self.BACKOFF_CAP, interval))

    def _pass(self) -> None:
        if self.stop.is_set():
            return
        self._in_pass = True
        try:
            self._pass_once()
        finally:
            self._in_pass = False

    def _pass_once(self) -> None:
        ok = False
        try:
            out = self.agent.sync()
            ok = out.ok or out.waiting  # a bad commit is not retried faster: it waits for Git to move
            self._notify_result(f"{out.result} {out.target or out.head or '-'}" + (f": {out.error.splitlines()[0]}" if out.error else ""))
            if out.result == "superseded":  # rollover: take the newer commit now
                self.schedule(0)
                return
        except AgentError as e:
            self.log("sync.crashed", level="error", error=str(e))
            self._notify_result(f"sync crashed: {e}")
        except Exception as e:  # a bug must not stop an unattended agent: log it, back off, go on
            self.log("sync.crashed", level="error", error=f"{type(e).__name__}: {e}", bug="yes")
            self._notify_result(f"sync crashed: {type(e).__name__}: {e}")
        finally:
            if self.services is not None:
                self.services.after_pass(self.agent)
        delay = self._next_delay(ok)
        if not self.stop.is_set():
            self.schedule(delay)
            if not ok:
                self.log("backoff", seconds=round(delay, 1), failures=self.failures)

    def _notify_result(self, line: str) -> None:
        """STATUS= after every pass (shown by `systemctl status`); READY=1 after the first."""
        fields = [f"STATUS={line.splitlines()[0][:200] if line else '-'}"]
        if not self._ready:
            self._ready = True
            fields.insert(0, "READY=1")
        systemd.notify(*fields)

    def _alive(self) -> bool:
        """What WATCHDOG=1 vouches for: the scheduler thread runs and a pass is either running
        or scheduled (a lost schedule would leave the node unreconciled forever)."""
        thread = getattr(self.scheduler, "_thread", None)
        return (self.scheduler.running and (thread is None or thread.is_alive())
                and (self._in_pass or self.scheduler.get_job("sync") is not None))

    def schedule(self, delay: float) -> None:
        when = datetime.now() + timedelta(seconds=delay)
        self.scheduler.add_job(self._pass, "date", run_date=when, id="sync", replace_existing=True)

    def _watch(self) -> None:
        """A local source is watched: a commit there triggers a sync within DEBOUNCE seconds."""
        url = self.agent.location.url
        if not url.startswith("file://"):
            return
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        daemon = self

        class Changed(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                path = str(getattr(event, "dest_path", "") or event.src_path)
                if "/refs/" in path or path.endswith(("HEAD", "packed-refs")):
                    daemon.schedule(daemon.DEBOUNCE)

        root = url[len("file://"):]
        gitdir = os.path.join(root, ".git") if os.path.isdir(os.path.join(root, ".git")) else root
        observer = Observer()
        try:
            observer.schedule(Changed(), gitdir, recursive=True)
            observer.start()
        except OSError as e:  # e.g. the repository is gone after a reboot: polling still finds it again
            self.log("watch.unavailable", level="warning", path=gitdir, error=e.strerror or str(e))
            return
        self._observer = observer
        self.log("watch", path=gitdir)

    def run(self) -> int:
        def on_signal(signum: int, _frame: Any) -> None:
            self.log("signal", signal=signal.Signals(signum).name)
            systemd.notify("STOPPING=1", "STATUS=stopping: the current step finishes first")
            self.stop.set()
            self.agent.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.log("start", source=self.agent.location.url, branch=self.agent.location.branch,
                 interval=self.agent.cfg.source.interval, nodes=",".join(self.agent.nodes))
        self.scheduler.start()
        from .liveness import Monitor  # gRPC liveness probes, run by the agent while it runs (README)
        self.scheduler.add_job(Monitor(self.agent.nodes, self.log).tick, "interval", seconds=1, id="liveness")
        self._watch()
        from .services import Services

        self.services = Services(self.agent.cfg, self.log, lambda: self.schedule(0), self._alive, lambda: self.ticked)
        self.schedule(0)
        started = next_ping = time.monotonic()
        try:
            # the main loop is the watchdog's heartbeat: a wedged main thread or a dead
            # scheduler stops the pings, and systemd restarts the agent after WatchdogSec
            while not self.stop.wait(0.5):
                now = self.ticked = time.monotonic()
                if self._watchdog is not None and now >= next_ping and self._alive():
                    systemd.notify("WATCHDOG=1")
                    next_ping = now + self._watchdog
                if not self._ready and now - started > self.READY_DEADLINE:
                    self._ready = True
                    systemd.notify("READY=1", "STATUS=first pass still running")
        finally:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)
            self.scheduler.shutdown(wait=True)  # lets a running pass finish its current step
            if self.services is not None:
                self.services.close()
            self.agent.close()
            self.log("stopped")
        return 0
