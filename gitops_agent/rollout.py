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
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .apply import Gate, apply, ensure_images, pin_key, step_seconds, wait
from .config import AgentConfig
from .desired import NodeDesired, compile_node, held, matching_nodes, resolve_surge
from .errors import ImagePullBackOff, Interrupted, NodeError, NodeUnreachable, PruneRefused
from .history import History
from .log import Log
from .model import NEVER_ROLLS, ObjectRef, Revision, Workload
from .plan import plan
from .podman import Node

PREFETCH_PARALLEL = 4  # nodes pulling a new revision's images at once: bounded, they may share one uplink
PREFETCH_SECONDS = 1800  # a prefetch pull may take this long (or the step budget, if longer): slow links

# phases of a rollout; the first two are unfinished and resumed by the next pass
PROGRESSING, ROLLING_BACK = "progressing", "rolling-back"
COMPLETE, HALTED, ROLLED_BACK, ROLLBACK_FAILED, SUPERSEDED = "complete", "halted", "rolled-back", "rollback-failed", "superseded"


@dataclass
class NodeProgress:
    status: str = "pending"  # pending | updating | done | deferred | waiting | failed | rolled-back | rollback-deferred
    started: float = 0.0
    finished: float = 0.0
    deadline: float = 0.0  # absolute: a resumed step keeps the same deadline
    actions: int = 0
    error: str = ""
    images: dict[str, str] = field(default_factory=dict)  # image as written → digest (or ID) the node runs


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
    failure: dict[str, Any] = field(default_factory=dict)  # node, pod, probe, output, error, unreachable
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
        return [n for n in self.order if self.nodes[n].status in ("deferred", "waiting", "rollback-deferred")]

    @property
    def waiting(self) -> list[str]:
        """Nodes whose step waits for a registry (ImagePullBackOff): nothing was stopped there."""
        return [n for n in self.order if self.nodes[n].status == "waiting"]

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
             local_first: bool = False, verify: bool = False) -> int:
        """Apply `rev` to node `name`, health-gated; returns the actions done. With
        `verify` (a step resumed after a crash) the pods are judged even when the plan
        is empty, since they may have been created but never seen ready.
        Raises NodeError (NodeUnreachable, RolloutFailed), PruneRefused, Interrupted."""
        node = self.nodes[name]
        live = node.read()
        desired = self._desired(rev, name)
        p = plan(desired, live, self.cfg.prune, self.history.inventory(), self.history.secrets(name))
        # record every secret before it exists: an unrecorded secret of ours would be left for ever
        self.history.record_secrets(name, add=[a.target for a in p.actions if a.op == "create-secret"])
        if not deadline:
            deadline = time.time() + min(step_seconds(p), self.cfg.ready_timeout)
        if p.in_sync:
            if verify:
                # a ReplicationController's or ReplicaSet's older-template pods stand in for some current ones;
                # a StatefulSet's held pods (below its partition, OnDelete) keep their older template
                specs = [pod for w in desired.workloads for pod in w.pods
                         if (w.ref.kind not in NEVER_ROLLS or pod.name in live.pods) and w.ref.kind != "Job"
                         and pod.name not in {h.name for h in held(w, live.pods_of(w.ref))}]
                wait(node, specs, Gate(node, deadline, hold), self.stop)
            return 0
        self.log("node.apply", node=name, revision=rev.id, actions=len(p.actions))
        with self._pinning(name, desired) as pins:
            done = apply(node, p, live, self.log, self.stop, deadline=deadline, hold=hold, local_first=local_first,
                         cap=self.cfg.ready_timeout, pins=pins)
        self.history.record_secrets(name, drop=[a.target for a in p.actions if a.op == "remove-secret"])
        return done

    @contextmanager
    def _pinning(self, name: str, desired: NodeDesired) -> Iterator[dict[str, dict[str, str]]]:
        """Node `name`'s pins, to be updated in place; saved afterwards if they changed, also on failure."""
        pins = self.pins(name)
        known = dict(pins)
        try:
            yield pins
        finally:
            if pins != known:
                self.save_pins(name, pins, {w.template_hash for w in desired.workloads})

    def _desired(self, rev: Revision, name: str) -> NodeDesired:
        return compile_node(rev, next(n for n in self.cfg.nodes if n.name == name), self.cfg.nodes)

    def pins(self, name: str) -> dict[str, dict[str, str]]:
        """Node `name`'s image pins: "<template hash> <image>" → the image ID (and digest) that
        template first ran with there (see `apply.ensure_images`)."""
        return dict((self.history.get("image_pins") or {}).get(name, {}))

    def images(self, desired: NodeDesired) -> dict[str, str]:
        """Image as written → the digest (or, without one, the image ID) the node runs it from."""
        pins = self.pins(desired.node)
        out: dict[str, str] = {}
        for w in desired.workloads:
            for image, _ in w.images:
                pin = pins.get(pin_key(w.template_hash, image))
                if pin:
                    out[image] = pin.get("digest") or pin["id"]
        return out

    def save_pins(self, name: str, pins: dict[str, dict[str, str]], current: set[str]) -> None:
        """Keep the pins of templates still worth a rollback: the current ones and every template
        the history knows as a workload revision; the rest are forgotten. The images the agent
        pulled itself are remembered apart (`pulled_images`): only those are ever collected."""
        keep = current | {r.template_hash for r in self.history.workload_revisions()}
        with self._lock:
            all_pins = dict(self.history.get("image_pins") or {})
            all_pins[name] = {k: v for k, v in pins.items() if k.split(" ", 1)[0] in keep}
            self.history.put("image_pins", all_pins)
            pulled = dict(self.history.get("pulled_images") or {})
            fresh = {p["id"] for p in pins.values() if p.get("pulled") == "true"}
            pulled[name] = sorted(set(pulled.get(name, [])) | fresh)
            self.history.put("pulled_images", pulled)

    def collect_images(self, current: set[str], keep_revisions: int) -> None:
        """Image garbage collection, once a revision is stable: on each node, remove the images
        the agent pulled that no template of the current revision or of the `keep_revisions`
        stable revisions before it runs from. Never an image the agent did not pull
        (preloaded or anyone else's), never one any container uses (managed or not), never forced."""
        stable = (self.history.get("stable") or [])[-(keep_revisions + 1):]  # the current one and N before it
        keep = set(current).union(*(s.get("templates", []) for s in stable))
        for name, node in self.nodes.items():
            try:
                self._collect(name, node, keep)
            except NodeError as e:  # an unreachable node is collected after a later rollout
                self.log("images.gc.failed", level="warning", node=name, error=str(e))

    def _collect(self, name: str, node: Node, keep: set[str]) -> None:
        pins = self.pins(name)
        kept = {k: p for k, p in pins.items() if k.split(" ", 1)[0] in keep}
        with self._lock:
            pulled = set((self.history.get("pulled_images") or {}).get(name, []))
        used, sizes = node.image_use()
        removed: set[str] = set()
        for image_id in sorted(pulled - {p["id"] for p in kept.values()} - used):
            if image_id not in sizes or node.remove_image(image_id):
                removed.add(image_id)
                if image_id in sizes:
                    self.log("images.removed", node=name, image=image_id[:12], bytes=sizes[image_id])
        if removed or kept != pins:
            with self._lock:
                all_pins = dict(self.history.get("image_pins") or {})
                all_pins[name] = kept
                self.history.put("image_pins", all_pins)
                all_pulled = dict(self.history.get("pulled_images") or {})
                all_pulled[name] = sorted(set(all_pulled.get(name, [])) - removed)
                self.history.put("pulled_images", all_pulled)

    def prefetch(self, rev: Revision, names: list[str], local_first: bool = False) -> None:
        """Pull `rev`'s images on every node in `names`, PREFETCH_PARALLEL nodes at a time, before
        the first node step: later steps then find them present (and pinned) and spend no time
        on a slow link. Nothing is created or stopped. Best effort: a node whose pull fails is
        left to its own step, which fails or waits exactly as it would have without prefetch."""
        def one(name: str) -> None:
            node = self.nodes[name]
            started = time.time()
            try:
                live = node.read()
                desired = self._desired(rev, name)
                p = plan(desired, live, self.cfg.prune, self.history.inventory(), self.history.secrets(name))
                with self._pinning(name, desired) as pins:
                    until = started + max(self.budget(rev), PREFETCH_SECONDS)  # not bounded by a step's deadline
                    ensure_images(node, p, live, self.log, local_first, until, self.stop, pins, retry=False)
            except (NodeError, PruneRefused) as e:
                self.log("prefetch.failed", level="warning", node=name, revision=rev.id, error=str(e))
                return
            self.log("prefetch.done", node=name, revision=rev.id, seconds=round(time.time() - started, 2))

        if names:
            with ThreadPoolExecutor(max_workers=min(PREFETCH_PARALLEL, len(names))) as pool:
                list(pool.map(one, names))

    def budget(self, rev: Revision) -> float:
        """Seconds a whole node step of `rev` may take, across restarts: the workloads roll one
        after another, each within its progressDeadlineSeconds capped by readyTimeout."""
        cap = self.cfg.ready_timeout
        return sum(min(o.progress_deadline_seconds, cap) for o in rev.objects if isinstance(o, Workload)) or cap

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
        if not changed:  # no new template (scaling, config not used by pods, deletions): still one node at a time
            return Policy(1, True, 0, False, ())
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
        for np in state.nodes.values():
            if np.status in ("deferred", "waiting"):  # a fresh try: its deadline starts when its step starts
                np.status, np.started, np.deadline = "pending", 0.0, 0.0
        self.track(target)
        self.save(state)
        done = [n for n in state.order if state.nodes[n].status == "done"]  # a resumed rollout's finished nodes
        self.log("rollout.start", revision=target.id, previous=state.previous or "-", batch=pol.batch, fast=pol.fast,
                 changed=",".join(str(r) for r in pol.changed) or "-", nodes=",".join(state.order),
                 **({"done": ",".join(done)} if done else {}))
        if any(np.status == "failed" for np in state.nodes.values()):
            self._fail(state, target, previous, pol)  # failed before a crash: finish handling it
        else:
            self.prefetch(target, [n for n in state.order if state.nodes[n].status != "done"], local_first=pol.fast)
            # done nodes are stepped again too (a no-op when in sync): one may have been changed meanwhile
            todo = [n for n in state.order if state.nodes[n].status in ("pending", "updating", "done")]
            for i in range(0, len(todo), pol.batch):
                if self.stop.is_set():
                    raise Interrupted(f"rollout of {target.id} stopped after {state.progress()}; the next start resumes it")
                if i and superseded():
                    state.phase = SUPERSEDED
                    self.log("rollout.superseded", revision=target.id, progress=state.progress())
                    break
                if self._batch(state, target, todo[i:i + pol.batch], pol):
                    self._fail(state, target, previous, pol)
                    break
                if state.waiting:  # a registry is unavailable: go no further, retried with backoff
                    self.log("rollout.waiting", level="warning", revision=target.id, nodes=",".join(state.waiting))
                    break
            else:
                if all(state.nodes[n].status == "done" for n in state.order):
                    state.phase = COMPLETE
        if state.phase != PROGRESSING:
            state.finished = time.time()
            self.history.record_rollout(state.to_json())
        self.save(state)
        self.log("rollout.end", revision=target.id, phase=state.phase, progress=state.progress(),
                 **({"deferred": ",".join(state.deferred)} if state.deferred else {}))
        return state

    def _resume(self, target: Revision) -> RolloutState | None:
        """The unfinished rollout of `target`, if any, fitted to the nodes configured now."""
        raw = self.history.get("rollout")
        if not raw or raw.get("target") != target.id or raw.get("phase") not in (PROGRESSING, SUPERSEDED):
            return None
        state = RolloutState.from_json(dict(raw))
        names = [n.name for n in self.cfg.nodes]
        state.nodes = {n: state.nodes.get(n, NodeProgress()) for n in names}  # removed nodes dropped, new ones pending
        state.order = names
        state.touched = [n for n in state.touched if n in state.nodes]
        self.log("rollout.resume", revision=target.id, progress=state.progress())
        return state

    def save(self, state: RolloutState) -> None:
        with self._lock:
            self.history.put("rollout", state.to_json())

    def _batch(self, state: RolloutState, target: Revision, names: list[str], pol: Policy) -> bool:
        """Update `names` at once; True when one of them failed."""
        failed = threading.Event()
        if len(names) == 1:
            self._node(state, target, names[0], pol, failed)
        else:
            with ThreadPoolExecutor(max_workers=len(names)) as pool:
                list(pool.map(lambda n: self._node(state, target, n, pol, failed), names))
        return failed.is_set()

    def _update(self, state: RolloutState, name: str, **changes: Any) -> None:
        """Change one node's progress and persist it, atomically with the other threads of a batch."""
        with self._lock:
            np = state.nodes[name]
            for key, value in changes.items():
                setattr(np, key, value)
            if np.status == "updating" and name not in state.touched:
                state.touched.append(name)
            if np.status == "failed" and not state.failure:
                state.failure = {"node": name, "error": np.error, "pod": "", "probe": "", "output": ""}
            self.history.put("rollout", state.to_json())

    def _node(self, state: RolloutState, target: Revision, name: str, pol: Policy, failed: threading.Event) -> None:
        """One node step of the rollout; sets `failed` when the node failed it."""
        np = state.nodes[name]
        resumed = np.status == "updating"
        unreachable = self._wait_reachable(name, 0 if resumed else pol.unreachable_timeout)
        if unreachable and resumed:  # lost during its own step: a failure
            with self._lock:
                state.failure = state.failure or {"node": name, "error": unreachable, "pod": "", "probe": "", "output": "",
                                                  "unreachable": True}
            self._update(state, name, status="failed", error=unreachable, finished=time.time())
            failed.set()
            return
        if unreachable:
            self._update(state, name, status="deferred", error=unreachable)
            self.log("rollout.deferred", level="warning", node=name, revision=target.id, error=unreachable)
            return
        if failed.is_set():  # a sibling in this batch failed: do not start on a failed revision
            return
        was_done = np.status == "done"
        self._update(state, name, status="updating", error="", started=np.started or time.time(),
                     deadline=self._deadline(np.deadline, target, was_done, resumed))  # absolute, persisted before the step
        if not was_done:
            self.log("rollout.node", node=name, revision=target.id, step=f"{state.order.index(name) + 1}/{len(state.order)}")
        try:
            actions = self.step(target, name, deadline=np.deadline, hold=not pol.fast, local_first=pol.fast, verify=resumed)
        except ImagePullBackOff as e:  # before anything was stopped: not the revision's fault
            self._update(state, name, status="waiting", error=f"ImagePullBackOff: {e}")
            self.log("rollout.node.waiting", level="warning", node=name, error=str(e))
            return
        except (NodeError, PruneRefused) as e:
            with self._lock:
                if not state.failure:
                    state.failure = {"node": name, "error": str(e), "pod": getattr(e, "pod", ""),
                                     "probe": getattr(e, "probe", ""), "output": getattr(e, "output", ""),
                                     "unreachable": isinstance(e, NodeUnreachable)}
            self._update(state, name, status="failed", error=str(e), finished=time.time())
            self.log("rollout.node.failed", level="error", node=name, error=str(e),
                     **{k: getattr(e, k) for k in ("pod", "probe", "output") if getattr(e, k, "")})
            failed.set()
            return
        self._update(state, name, status="done", finished=np.finished if was_done and not actions else time.time(),
                     actions=np.actions + actions, images=self.images(self._desired(target, name)))
        if not was_done or actions:
            self.log("rollout.node.done", node=name, revision=target.id, actions=actions,
                     seconds=round(np.finished - np.started, 2))

    def _deadline(self, persisted: float, target: Revision, was_done: bool, resumed: bool) -> float:
        """The step's absolute deadline. A resumed step keeps its persisted one, but never
        less than a grace period (minReadySeconds and a few polls) from now, so pods that are
        healthy are not failed for the time the agent was down; a done node re-checked on a
        later pass gets a fresh one."""
        now = time.time()
        if resumed and persisted:
            holds = [o.min_ready_seconds for o in target.objects if isinstance(o, Workload)]
            return max(persisted, now + max(holds, default=0) + 10)
        if was_done or not persisted:
            return now + self.budget(target)
        return persisted

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

    def _fail(self, state: RolloutState, target: Revision, previous: Revision | None, pol: Policy) -> None:
        """Record the failure; roll back, newest first, every node this rollout may have changed."""
        halted = previous is None or not pol.auto_rollback
        if state.failure.get("unreachable"):
            # the node went away, not the revision's fault: roll back as for any failure, but try the
            # revision again on the next pass (with backoff) instead of waiting for Git to move
            self.log("rollout.retry", level="warning", revision=target.id, node=state.failure.get("node"))
        else:
            self.history.put("failed", {"sha": target.commit, "revision": target.id, "at": time.time(), "halted": halted,
                                        **state.failure})
        if halted:
            state.phase = HALTED
            why = "no earlier revision to roll back to" if previous is None else "auto-rollback is off"
            self.log("rollout.halted", level="error", revision=target.id, reason=why)
            return
        assert previous is not None
        state.phase = ROLLING_BACK
        self.save(state)
        reached = [n for n in reversed(state.order) if state.nodes[n].status in ("updating", "done", "failed", "rollback-deferred")]
        for name in reached:  # a node already on `previous` has an empty plan: nothing is written there
            self.log("rollback.node", node=name, to=previous.id)
            try:
                self.step(previous, name, hold=False, local_first=True)
                self._update(state, name, status="rolled-back")
            except NodeUnreachable as e:
                self._update(state, name, status="rollback-deferred", error=str(e))
                self.log("rollback.deferred", level="warning", node=name, error=str(e))
            except (NodeError, PruneRefused) as e:
                state.phase = ROLLBACK_FAILED
                state.failure["rollback_error"] = str(e)
                self._update(state, name, status="failed", error=f"rollback failed: {e}")
                self.history.put("suspended", {"revision": previous.id, "sha": previous.commit, "at": time.time(),
                                               "reason": f"rollback of node {name} to {previous.id} failed: {e}"})
                self.log("rollback.failed", level="error", node=name, error=str(e))
                return
        state.phase = ROLLED_BACK


def _parallel(w: Workload, cfg: AgentConfig) -> int:
    value = w.node_rollout.max_parallel_nodes
    if isinstance(value, int):
        return max(1, value)
    return max(1, resolve_surge(value, len(matching_nodes(w, cfg.nodes)), round_up=False))

