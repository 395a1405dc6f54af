"""Fleet rollouts: one revision across the nodes, node by node, health-gated,
rolled back on failure, resumable after a crash.

Sits between `agent` (which picks the target revision) and `apply` (which
changes one node). The unit of a rollout is a node: a node step applies the
whole plan of the target revision to that node and returns only when every new
pod there is ready (probes, minReadySeconds). Nodes go in the order of the
agent config (the first is the canary), `max-parallel-nodes` at a time. The
rollout state (target and previous revision, per-node progress, absolute
deadlines) is written to the history store before and after every node step,
so a restarted agent resumes it; the plan itself is always recomputed from live
state (level-triggered), which is what keeps a resumed step from creating
duplicates.

Policy, from the workloads whose template changes (`NodeRollout` knobs; when
several change, the most careful setting wins):
- `max-parallel-nodes`: nodes per step (default 1);
- `auto-rollback`: on failure, roll the touched nodes back to the previous
  (stable) revision, newest first, with the images already on them;
- `unreachable-node-timeout`: an unreachable node not yet updated is waited
  for that long, then deferred; the rollout goes on and the node converges on
  a later pass. A node lost during its own step is a failure.
A rollback to templates that already ran as stable (a `git revert`) is
fast-tracked, as Argo Rollouts does within its rollback window: every node at
once and no minReadySeconds hold, still gated on readiness.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .apply import apply, step_seconds
from .config import AgentConfig
from .desired import compile_node, matching_nodes, resolve_surge
from .errors import Interrupted, NodeError, NodeUnreachable, PruneRefused
from .history import History
from .log import Log
from .model import ObjectRef, Revision, Workload
from .plan import plan
from .podman import Node

# phases of a rollout; the first two are unfinished and resumed by the next pass
PROGRESSING, ROLLING_BACK = "progressing", "rolling-back"
COMPLETE, HALTED, ROLLED_BACK, ROLLBACK_FAILED, SUPERSEDED = "complete", "halted", "rolled-back", "rollback-failed", "superseded"


@dataclass
class NodeProgress:
    status: str = "pending"  # pending | updating | done | deferred | failed | rolled-back | rollback-deferred
    started: float = 0.0
    finished: float = 0.0
    deadline: float = 0.0  # absolute: a resumed step keeps the same deadline
    actions: int = 0
    error: str = ""


@dataclass
class RolloutState:
    target: str
    target_sha: str
    previous: str  # the last stable revision ("" on the first rollout)
    previous_sha: str
    order: list[str]
    nodes: dict[str, NodeProgress]
    phase: str = PROGRESSING
    cause: str = "git"  # git | rollback (break-glass command)
    batch: int = 1
    fast: bool = False
    touched: list[str] = field(default_factory=list)  # nodes changed by this rollout, in order
    failure: dict[str, str] = field(default_factory=dict)  # node, pod, probe, output, error
    started: float = 0.0
    finished: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "RolloutState":
        nodes = {k: NodeProgress(**v) for k, v in raw.pop("nodes").items()}
        return cls(nodes=nodes, **raw)

    @property
    def deferred(self) -> list[str]:
        return [n for n in self.order if self.nodes[n].status in ("deferred", "rollback-deferred")]

    def progress(self) -> str:
        done = sum(1 for n in self.order if self.nodes[n].status in ("done", "rolled-back"))
        return f"{done}/{len(self.order)} node(s)"


@dataclass(frozen=True)
class Policy:
    batch: int
    auto_rollback: bool
    unreachable_timeout: int
    fast: bool
    changed: tuple[ObjectRef, ...]


class Fleet:
    """Applies revisions to the configured nodes."""

    def __init__(self, cfg: AgentConfig, nodes: dict[str, Node], history: History, log: Log, stop: threading.Event) -> None:
        self.cfg = cfg
        self.nodes = nodes
        self.history = history
        self.log = log
        self.stop = stop
        self._lock = threading.Lock()

    # --- one node -----------------------------------------------------------------------

    def step(self, rev: Revision, name: str, *, deadline: float | None = None, hold: bool = True,
             local_first: bool = False) -> int:
        """Apply `rev` to node `name`, health-gated; returns the actions done.
        Raises NodeError (NodeUnreachable, RolloutFailed), PruneRefused, Interrupted."""
        node = self.nodes[name]
        cfg_node = next(n for n in self.cfg.nodes if n.name == name)
        live = node.read()
        p = plan(compile_node(rev, cfg_node, self.cfg.nodes), live, self.cfg.prune, self.history.inventory())
        if p.in_sync:
            return 0
        if not deadline:
            deadline = time.time() + min(step_seconds(p), self.cfg.ready_timeout)
        self.log("node.apply", node=name, revision=rev.id, actions=len(p.actions))
        return apply(node, p, live, self.log, self.stop, deadline=deadline, hold=hold, local_first=local_first)

    def budget(self, rev: Revision) -> float:
        """Seconds a node step of `rev` may take: its largest progressDeadlineSeconds, capped by readyTimeout."""
        deadlines = [o.progress_deadline_seconds for o in rev.objects if isinstance(o, Workload)]
        return min(max(deadlines, default=600), self.cfg.ready_timeout)

    def track(self, rev: Revision) -> None:
        """Add the revision's objects to the inventory before any write, so that a
        crash mid-apply leaves nothing untracked (prune can find it later)."""
        known = self.history.inventory()
        wanted = {o.ref for o in rev.objects}
        if known is not None and not wanted <= known:
            self.history.set_inventory(known | wanted)

    # --- policy -----------------------------------------------------------------------------

    def policy(self, target: Revision, previous: Revision | None) -> Policy:
        first = self.cfg.nodes[0]
        new = {w.ref: w.template_hash for w in compile_node(target, first, self.cfg.nodes).workloads}
        old = {w.ref: w.template_hash for w in compile_node(previous, first, self.cfg.nodes).workloads} if previous else {}
        changed = [o for o in target.objects if isinstance(o, Workload) and new[o.ref] != old.get(o.ref)]
        if not changed:
            return Policy(len(self.cfg.nodes), True, 0, False, ())
        stable = {(r.kind, r.namespace, r.name, r.template_hash) for r in self.history.workload_revisions()}
        fast = all((w.ref.kind, w.ref.namespace, w.ref.name, new[w.ref]) in stable for w in changed)
        batch = min(_parallel(w, self.cfg) for w in changed)
        return Policy(
            batch=len(self.cfg.nodes) if fast else batch,
            auto_rollback=all(w.node_rollout.auto_rollback for w in changed),
            unreachable_timeout=min(w.node_rollout.unreachable_node_timeout for w in changed),
            fast=fast,
            changed=tuple(w.ref for w in changed),
        )

    # --- the rollout ------------------------------------------------------------------------

    def roll(self, target: Revision, previous: Revision | None, superseded: Callable[[], bool] = lambda: False,
             cause: str = "git") -> RolloutState:
        """Take every node to `target`, a batch of nodes at a time. Returns the final
        (or, with deferred nodes, still progressing) state; raises Interrupted on stop."""
        pol = self.policy(target, previous)
        state = self._resume(target) or RolloutState(
            target=target.id, target_sha=target.commit,
            previous=previous.id if previous else "", previous_sha=previous.commit if previous else "",
            order=[n.name for n in self.cfg.nodes], nodes={n.name: NodeProgress() for n in self.cfg.nodes},
            cause=cause, started=time.time(),
        )
        state.phase, state.batch, state.fast = PROGRESSING, pol.batch, pol.fast
        for name in state.order:
            if state.nodes[name].status == "deferred":
                state.nodes[name].status = "pending"
        self.track(target)
        self.save(state)
        self.log("rollout.start", revision=target.id, previous=state.previous or "-", batch=pol.batch, fast=pol.fast,
                 changed=",".join(str(r) for r in pol.changed) or "-")
        pending = [n for n in state.order if state.nodes[n].status in ("pending", "updating")]
        for i in range(0, len(pending), pol.batch):
            if self.stop.is_set():
                raise Interrupted(f"rollout of {target.id} stopped after {state.progress()}; the next start resumes it")
            if i and superseded():
                state.phase = SUPERSEDED
                self.log("rollout.superseded", revision=target.id, progress=state.progress())
                break
            batch = pending[i:i + pol.batch]
            failed = self._batch(state, target, batch, pol)
            if failed:
                self._fail(state, target, previous, failed, pol)
                break
        else:
            if not state.deferred:
                state.phase = COMPLETE
        if state.phase != PROGRESSING:
            state.finished = time.time()
            self.history.record_rollout(state.to_json())
        self.save(state)
        self.log("rollout.end", revision=target.id, phase=state.phase, progress=state.progress(),
                 **({"deferred": ",".join(state.deferred)} if state.deferred else {}))
        return state

    def _resume(self, target: Revision) -> RolloutState | None:
        raw = self.history.get("rollout")
        if not raw or raw.get("target") != target.id or raw.get("phase") not in (PROGRESSING, SUPERSEDED):
            return None
        state = RolloutState.from_json(dict(raw))
        self.log("rollout.resume", revision=target.id, progress=state.progress())
        return state

    def save(self, state: RolloutState) -> None:
        with self._lock:
            self.history.put("rollout", state.to_json())

    def _batch(self, state: RolloutState, target: Revision, names: list[str], pol: Policy) -> list[str]:
        """Update `names` at once; returns the nodes that failed."""
        if len(names) == 1:
            return [n for n in names if not self._node(state, target, n, pol)]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            ok = list(pool.map(lambda n: self._node(state, target, n, pol), names))
        return [n for n, good in zip(names, ok) if not good]

    def _node(self, state: RolloutState, target: Revision, name: str, pol: Policy) -> bool:
        """One node step of the rollout; False when the node failed it."""
        np = state.nodes[name]
        unreachable = self._wait_reachable(name, pol.unreachable_timeout)
        if unreachable:
            np.status, np.error = "deferred", unreachable
            self.log("rollout.deferred", level="warning", node=name, revision=target.id)
            self.save(state)
            return True
        resumed = np.status == "updating"
        np.status = "updating"
        np.started = np.started or time.time()
        np.deadline = np.deadline or time.time() + self.budget(target)  # absolute, persisted before the step
        if name not in state.touched:
            state.touched.append(name)
        self.save(state)
        self.log("rollout.node", node=name, revision=target.id, step=f"{state.order.index(name) + 1}/{len(state.order)}")
        try:
            actions = self.step(target, name, deadline=np.deadline, hold=not pol.fast, local_first=pol.fast)
        except (NodeError, PruneRefused) as e:
            np.status, np.error, np.finished = "failed", str(e), time.time()
            if not state.failure:
                state.failure = {"node": name, "error": str(e), "pod": getattr(e, "pod", ""),
                                 "probe": getattr(e, "probe", ""), "output": getattr(e, "output", "")}
            self.log("rollout.node.failed", level="error", node=name, error=str(e))
            self.save(state)
            return False
        np.status, np.finished, np.actions = "done", time.time(), np.actions + actions
        if not actions and not resumed:
            state.touched.remove(name)  # nothing to change there: not touched, never rolled back
        self.log("rollout.node.done", node=name, revision=target.id, actions=actions,
                 seconds=round(np.finished - np.started, 2))
        self.save(state)
        return True

    def _wait_reachable(self, name: str, timeout: int) -> str:
        """"" once the node answers; the error if it still does not after `timeout` seconds."""
        until = time.time() + timeout
        while True:
            try:
                self.nodes[name].ping()
                return ""
            except NodeError as e:
                if time.time() >= until or self.stop.is_set():
                    return str(e)
            time.sleep(1.0)

    def _fail(self, state: RolloutState, target: Revision, previous: Revision | None, failed: list[str], pol: Policy) -> None:
        """Record the failure; roll the touched nodes back, newest first, when the policy says so."""
        self.history.put("failed", {"sha": target.commit, "revision": target.id, "at": time.time(), **state.failure})
        if previous is None or not pol.auto_rollback:
            state.phase = HALTED
            why = "no earlier revision to roll back to" if previous is None else "auto-rollback is off"
            self.log("rollout.halted", level="error", revision=target.id, reason=why)
            return
        state.phase = ROLLING_BACK
        self.save(state)
        for name in reversed(state.touched):
            np = state.nodes[name]
            self.log("rollback.node", node=name, to=previous.id)
            try:
                self.step(previous, name, hold=False, local_first=True)
                np.status = "rolled-back"
            except NodeUnreachable as e:
                np.status, np.error = "rollback-deferred", str(e)
                self.log("rollback.deferred", level="warning", node=name, error=str(e))
            except (NodeError, PruneRefused) as e:
                np.status, np.error = "failed", f"rollback failed: {e}"
                state.phase = ROLLBACK_FAILED
                state.failure["rollback_error"] = str(e)
                self.history.put("suspended", {"revision": previous.id, "sha": previous.commit, "at": time.time(),
                                               "reason": f"rollback of node {name} to {previous.id} failed: {e}"})
                self.log("rollback.failed", level="error", node=name, error=str(e))
                return
            self.save(state)
        state.phase = ROLLED_BACK


def _parallel(w: Workload, cfg: AgentConfig) -> int:
    value = w.node_rollout.max_parallel_nodes
    if isinstance(value, int):
        return max(1, value)
    return max(1, resolve_surge(value, len(matching_nodes(w, cfg.nodes)), round_up=False))
