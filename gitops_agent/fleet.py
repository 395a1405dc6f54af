"""Fleet rollouts: one revision across the nodes, node by node, health-gated,
rolled back on failure, resumable after a crash. (Was `rollout.py`, which stays as an alias.)

What to do next is decided by the pure `decide.next_fleet_step` (batches, resume,
failure, rollback newest first, rollover); this module runs what it says on the nodes
(`StepNodes`, `RollBack`), turns each node step into a `NodeResult`, and checkpoints
the rollout state (`History.checkpoint`). `Strategy` is the rollout's settings from
the changed workloads (named so, not Policy: `model.Policy` is the admission policy).

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

Strategy, from the workloads whose template changes (`NodeRollout` knobs; when
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
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from .apply import Gate, apply, ensure_images, pin_key, step_seconds, wait
from .config import AgentConfig
from .desired import BATCH, ENV_UNUSED, NodeDesired, compile_node, held, matching_nodes, resolve_surge
from .errors import Consequence, Interrupted, NodeError, NodeUnreachable, PruneRefused
from .history import History
from .log import Log
from .model import NEVER_ROLLS, ObjectRef, Resources, Revision, Workload
from .nodes import reported_amounts
from .plan import RemovePod, RunPod, plan
from .podman import Node
from . import batchstore, clock, endpoints, events as ev
from .events import emit
from .reasons import Reason
from .decide import (
    OPEN, Closed, Complete, FleetPolicy, Halt, NodeResult, RollBack, StepNodes, closed_windows, next_fleet_step,
)
from .windows import waiting_line
from .state import (
    COMPLETE, HALTED, PROGRESSING, ROLLBACK_FAILED, ROLLED_BACK, ROLLING_BACK, SUPERSEDED, RolloutState as Snapshot,
)

PREFETCH_PARALLEL = 4  # nodes pulling a new revision's images at once: bounded, they may share one uplink
PREFETCH_SECONDS = 1800  # a prefetch pull may take this long (or the step budget, if longer): slow links

# phases of a rollout (defined in state.py): the first two are unfinished and resumed by the next pass
__all__ = ["PROGRESSING", "ROLLING_BACK", "COMPLETE", "HALTED", "ROLLED_BACK", "ROLLBACK_FAILED", "SUPERSEDED",
           "Fleet", "RolloutState", "NodeProgress", "Strategy"]


@dataclass
class NodeProgress:
    # pending | updating | done | deferred | waiting | window | failed | rolled-back | rollback-deferred
    status: str = "pending"
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
    ignored_window: list[str] = field(default_factory=list)  # closed windows overridden (`sync --ignore-window`)

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
class Strategy:
    batch: int
    auto_rollback: bool
    unreachable_timeout: int
    fast: bool
    changed: tuple[ObjectRef, ...]


class Fleet:
    """Applies revisions to the configured nodes."""

    def __init__(self, cfg: AgentConfig, nodes: dict[str, Node], history: History, log: Log,
                 stop: threading.Event) -> None:
        self.cfg = cfg
        self.nodes = nodes
        self.history = history
        self.log = log
        self.stop = stop
        self._lock = threading.Lock()
        # node -> the desired states of its last two steps, oldest first (`endpoints.Monitor` reads their pods)
        self.stepped: dict[str, tuple[NodeDesired, ...]] = {}
        self.wall: Callable[[], float] = clock.wall  # the Jobs' and CronJobs' clock (a test gives its own)
        self.scheduled: dict[str, int] = {}  # node -> the actions of its last step that were Jobs' runs or expiries
        # `_desired`'s memo, per node: (revision, the node's reported amounts it used, its compilation)
        self._compiled: dict[str, tuple[tuple[Revision, Resources | None, NodeDesired], ...]] = {}

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
        self.stepped[name] = (*self.stepped.get(name, ())[-1:], desired)
        batch = batchstore.current(self.history, desired, live, self.wall(), node)  # Jobs' records, saved first
        readiness = endpoints.verdicts(self.history.get(endpoints.STORE_KEY), name)  # in DNS only once ready
        p = plan(desired, live, self.cfg.prune, self.history.inventory(), self.history.secrets(name), batch, readiness)
        # record every secret before it exists: an unrecorded secret of ours would be left for ever
        self.history.record_secrets(name, add=[a.target for a in p.actions if a.op == "create-secret"])
        if not deadline:  # `deadline`: on the monotonic clock (clock.now)
            deadline = clock.now() + min(step_seconds(p), self.cfg.ready_timeout)
        self.scheduled[name] = 0
        served = endpoints.Recorder(self.history.get, self.history.put, name, self.log)  # the gate put a new pod in DNS
        if p.in_sync:
            if verify:
                # a ReplicationController's or ReplicaSet's older-template pods stand in for some current ones;
                # a StatefulSet's held pods (below its partition, OnDelete) keep their older template
                specs = [pod for w in desired.workloads for pod in w.pods
                         if (w.ref.kind not in NEVER_ROLLS or pod.name in live.pods) and w.ref.kind not in BATCH
                         and pod.name not in {h.name for h in held(w, live.pods_of(w.ref))}]
                wait(node, specs, Gate(node, deadline, hold, served=served), self.stop)
            return 0
        self.log("node.apply", node=name, revision=rev.id, actions=len(p.actions))
        with self._pinning(name, desired) as pins:
            done = apply(node, p, live, self.log, self.stop, deadline=deadline, hold=hold, local_first=local_first,
                         cap=self.cfg.ready_timeout, pins=pins, served=served)
        self.history.record_secrets(name, drop=[a.target for a in p.actions if a.op == "remove-secret"])
        # a Job's or CronJob's runs and expiries are scheduled work, not drift (`agent` tells them apart)
        self.scheduled[name] = sum(1 for a in p.actions if isinstance(a, (RunPod, RemovePod)) and a.pod_owner in BATCH)
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
        """Node `name`'s compiled desired state of `rev`, compiled once per Revision object and amounts its Podman
        reports (read, once per pass, only when `rev` needs them: NodeError when they cannot be read, so no pod is
        made with a guessed value): both are immutable (frozen), as is the config, so a pass over an unchanged
        revision reuses the last compilation. The two latest revisions per node are kept (a rollout alternates its
        target and the stable revision)."""
        cfg_node = next(n for n in self.cfg.nodes if n.name == name)
        reported = reported_amounts(rev, cfg_node, self.nodes[name])
        kept = self._compiled.get(name, ())
        for seen, amounts, desired in kept:
            if seen is rev and amounts == reported:
                return desired
        desired = compile_node(rev, cfg_node, self.cfg.nodes, reported)
        self._compiled[name] = ((rev, reported, desired), *kept[:1])
        return desired

    def _any_desired(self, rev: Revision, name: str) -> NodeDesired:
        """Node `name`'s desired state of `rev` for what does not depend on the node's reported amounts (images,
        hashes): the step's compilation, else one without them, so no second /info read can fail here."""
        for seen, _, desired in self._compiled.get(name, ()):
            if seen is rev:
                return desired
        cfg_node = next(n for n in self.cfg.nodes if n.name == name)
        return compile_node(rev, cfg_node, self.cfg.nodes, ENV_UNUSED)

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
            started = clock.now()
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
            self.log("prefetch.done", node=name, revision=rev.id, seconds=round(clock.now() - started, 2))

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

    def policy(self, target: Revision, previous: Revision | None) -> Strategy:
        first = self.cfg.nodes[0]
        new = {w.ref: w.template_hash for w in compile_node(target, first, self.cfg.nodes, ENV_UNUSED).workloads}
        old = ({w.ref: w.template_hash for w in compile_node(previous, first, self.cfg.nodes, ENV_UNUSED).workloads}
               if previous else {})
        changed = [o for o in target.objects if isinstance(o, Workload) and new[o.ref] != old.get(o.ref)]
        if not changed:  # no new template (scaling, config not used by pods, deletions): still one node at a time
            return Strategy(1, True, 0, False, ())
        stable = {(r.kind, r.namespace, r.name, r.template_hash) for r in self.history.workload_revisions()}
        fast = all((w.ref.kind, w.ref.namespace, w.ref.name, new[w.ref]) in stable for w in changed)
        batch = min(_parallel(w, self.cfg) for w in changed)
        return Strategy(
            batch=len(self.cfg.nodes) if fast else batch,
            auto_rollback=all(w.node_rollout.auto_rollback for w in changed),
            unreachable_timeout=min(w.node_rollout.unreachable_node_timeout for w in changed),
            fast=fast,
            changed=tuple(w.ref for w in changed),
        )

    # --- the rollout ------------------------------------------------------------------------

    def closed(self, ignore: bool = False) -> Closed:
        """The nodes whose maintenance window is closed now (`decide.closed_windows`)."""
        return closed_windows({n.name: n.schedule for n in self.cfg.nodes}, _now(), ignore)

    def roll(self, target: Revision, previous: Revision | None, superseded: Callable[[], bool] = lambda: False,
             cause: str = "git", ignore_window: bool = False) -> RolloutState:
        """Take every node to `target`, a batch of nodes at a time. Returns the final
        (or, with deferred nodes or closed windows, still progressing) state; raises Interrupted on stop.
        `ignore_window` (and a break-glass rollback): the maintenance windows are overridden."""
        pol = self.policy(target, previous)
        state = self._start(target, previous, pol, cause)
        overridden = self.closed().start if ignore_window or cause == "rollback" else frozenset()
        if overridden:
            state.ignored_window = sorted(set(state.ignored_window) | overridden)
            emit(self.log, ev.WindowIgnored(target.id, ",".join(sorted(overridden))))
        done = [n for n in state.order if state.nodes[n].status == "done"]  # a resumed rollout's finished nodes
        emit(self.log, ev.RolloutStarted(target.id, state.previous or "-", pol.batch, pol.fast,
                                         ",".join(str(r) for r in pol.changed) or "-", ",".join(state.order),
                                         ",".join(done) if done else None))
        if not any(np.status == "failed" for np in state.nodes.values()):  # else: failed before a crash
            self.prefetch(target, [n for n in state.order if state.nodes[n].status != "done"], local_first=pol.fast)
        self._drive(state, target, previous, pol, superseded, ignore_window or cause == "rollback")
        if state.phase != PROGRESSING:
            state.finished = time.time()
            self.history.record_rollout(state.to_json())
        self.save(state)
        emit(self.log, ev.RolloutEnd(target.id, state.phase, state.progress(),
                                     ",".join(state.deferred) if state.deferred else None))
        return state

    def _start(self, target: Revision, previous: Revision | None, pol: Strategy, cause: str) -> RolloutState:
        """The rollout of `target`: the unfinished one resumed, or a new one; checkpointed."""
        state = self._resume(target) or RolloutState(
            target=target.id, target_sha=target.commit,
            previous=previous.id if previous else "", previous_sha=previous.commit if previous else "",
            order=[n.name for n in self.cfg.nodes], nodes={n.name: NodeProgress() for n in self.cfg.nodes},
            cause=cause, started=time.time(),
        )
        state.phase, state.batch, state.fast = PROGRESSING, pol.batch, pol.fast
        for np in state.nodes.values():
            if np.status in ("deferred", "waiting", "window"):  # a fresh try: its deadline starts when its step starts
                np.status, np.started, np.deadline = "pending", 0.0, 0.0
        self.track(target)
        self.save(state)
        return state

    def _drive(self, state: RolloutState, target: Revision, previous: Revision | None, pol: Strategy,
               superseded: Callable[[], bool], ignore_window: bool = False) -> None:
        """Do what `decide.next_fleet_step` says until it says stop; the decisions are pure, this is the I/O."""
        fpol = FleetPolicy(pol.batch, pol.auto_rollback, previous is not None)
        results: dict[str, NodeResult] = {}
        while True:
            closed = self.closed(ignore_window) if state.phase == PROGRESSING else OPEN  # asked before each step
            step = next_fleet_step(Snapshot.from_json(state.to_json()), results, fpol, closed=closed)
            if isinstance(step, StepNodes) and results and superseded():
                step = next_fleet_step(Snapshot.from_json(state.to_json()), results, fpol, superseded=True,
                                       closed=closed)
            if isinstance(step, StepNodes):
                if self.stop.is_set():
                    raise Interrupted(f"rollout of {target.id} stopped after {state.progress()}; "
                                      "the next start resumes it")
                self._batch(state, target, list(step.nodes), pol)
                results.update({n: NodeResult(n, state.nodes[n].status, step.reason) for n in step.nodes})
                continue
            if state.phase == PROGRESSING and (isinstance(step, RollBack) or
                                               (isinstance(step, Halt) and step.phase in (HALTED, ROLLED_BACK))):
                self._failed(state, target, step)
                results = {}  # the rollback's own results from here
            if isinstance(step, RollBack):
                assert previous is not None
                results[step.node] = self._roll_back(state, step.node, previous)
                continue
            self._stop_in(state, target, step)
            return

    def _stop_in(self, state: RolloutState, target: Revision, step: Complete | Halt) -> None:
        if isinstance(step, Complete):
            state.phase = COMPLETE
            return
        state.phase = step.phase
        if step.phase == SUPERSEDED:
            emit(self.log, ev.RolloutSuperseded(target.id, state.progress()))
        elif step.reason == Reason.WAITING_FOR_WINDOW:  # the nodes left wait for their windows
            now = _now()
            for name in step.nodes:
                plan_ = next(n.schedule for n in self.cfg.nodes if n.name == name)
                line = waiting_line(plan_, now) if plan_ is not None else "waiting for window"
                self._update(state, name, status="window", error=line)
                emit(self.log, ev.WaitingForWindow(name, target.id, line))
        elif step.reason == Reason.IMAGE_PULL_BACKOFF:  # a registry is unavailable: go no further, retried with backoff
            emit(self.log, ev.RolloutWaiting(target.id, ",".join(state.waiting)))
        elif step.phase == ROLLED_BACK:
            emit(self.log, ev.RolledBack(target.id, state.previous or "-",
                                         ",".join(step.nodes) if step.nodes else None))

    def _failed(self, state: RolloutState, target: Revision, step: RollBack | Halt) -> None:
        """The rollout failed (`step` says what next): record the failure, unless a node went away
        (not the revision's fault: tried again on the next pass, with backoff)."""
        halted = isinstance(step, Halt) and step.phase == HALTED
        if not step.record_failure:
            emit(self.log, ev.RolloutRetry(target.id, state.failure.get("node")))
        else:
            self.history.put("failed", {"sha": target.commit, "revision": target.id, "at": time.time(),
                                        "halted": halted, **state.failure})
        if halted:
            state.phase = HALTED
            why = "no earlier revision to roll back to" if not state.previous_sha else "auto-rollback is off"
            emit(self.log, ev.RolloutHalted(target.id, why))
            return
        state.phase = ROLLING_BACK
        self.save(state)

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
        emit(self.log, ev.RolloutResumed(target.id, state.progress()))
        return state

    def save(self, state: RolloutState) -> None:
        with self._lock:
            self.history.checkpoint(state.to_json())

    def _batch(self, state: RolloutState, target: Revision, names: list[str], pol: Strategy) -> bool:
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
            self.history.checkpoint(state.to_json())

    def _node(self, state: RolloutState, target: Revision, name: str, pol: Strategy, failed: threading.Event) -> None:
        """One node step of the rollout; sets `failed` when the node failed it."""
        np = state.nodes[name]
        resumed = np.status == "updating"
        unreachable = self._wait_reachable(name, 0 if resumed else pol.unreachable_timeout)
        if unreachable and resumed:  # lost during its own step: a failure
            with self._lock:
                state.failure = state.failure or {"node": name, "error": unreachable, "pod": "", "probe": "",
                                                  "output": "", "unreachable": True,
                                                  "reason": Reason.NODE_UNREACHABLE.value}
            self._update(state, name, status="failed", error=unreachable, finished=time.time())
            failed.set()
            return
        if unreachable:
            self._update(state, name, status="deferred", error=unreachable)
            emit(self.log, ev.NodeDeferred(name, target.id, unreachable))
            return
        if failed.is_set():  # a sibling in this batch failed: do not start on a failed revision
            return
        was_done = np.status == "done"
        # one reading of both clocks: the persisted deadline (wall time) and the step's own (monotonic) are the same
        # point, whatever the wall clock does after this line (an NTP step right after it must not end the step)
        t0, wall0 = clock.now(), clock.wall()
        self._update(state, name, status="updating", error="", started=np.started or wall0,
                     deadline=self._deadline(np.deadline, target, was_done, resumed, wall0))  # persisted first
        if not was_done:
            emit(self.log, ev.StepStarted(name, target.id, f"{state.order.index(name) + 1}/{len(state.order)}"))
        try:
            # the step waits on the monotonic clock: a wall-clock step from here on neither fails nor stretches it
            deadline = clock.local_deadline(np.deadline, wall0, t0, self.budget(target))
            actions = self.step(target, name, deadline=deadline, hold=not pol.fast, local_first=pol.fast,
                                verify=resumed)
        except (NodeError, PruneRefused) as e:
            if self._step_failed(state, name, e):
                failed.set()
            return
        self._update(state, name, status="done", finished=np.finished if was_done and not actions else time.time(),
                     actions=np.actions + actions, images=self.images(self._any_desired(target, name)))
        if not was_done or actions:
            emit(self.log, ev.StepDone(name, target.id, actions, round(clock.now() - t0, 2)))

    def _step_failed(self, state: RolloutState, name: str, e: NodeError | PruneRefused) -> bool:
        """Record a node step's error by its consequence; True when it fails the revision."""
        if e.consequence is Consequence.WAITING:  # ImagePullBackOff: nothing was stopped, not the revision's fault
            self._update(state, name, status="waiting", error=f"ImagePullBackOff: {e}")
            emit(self.log, ev.StepWaiting(name, str(e)))
            return False
        with self._lock:
            if not state.failure:
                state.failure = {"node": name, "error": str(e), "pod": getattr(e, "pod", ""),
                                 "probe": getattr(e, "probe", ""), "output": getattr(e, "output", ""),
                                 "unreachable": isinstance(e, NodeUnreachable), "reason": e.code.value}
        self._update(state, name, status="failed", error=str(e), finished=time.time())
        emit(self.log, ev.StepFailed(name, str(e), e.code,
                                     *(getattr(e, k, "") or None for k in ("pod", "probe", "output"))))
        return True

    def _deadline(self, persisted: float, target: Revision, was_done: bool, resumed: bool, now: float) -> float:
        """The step's absolute deadline (wall time: persisted). A resumed step keeps its persisted
        one, but never less than a grace period (minReadySeconds and a few polls) from now, so pods
        that are healthy are not failed for the time the agent was down, and never more than a
        fresh step's budget (a backward clock step); a done node re-checked on a later pass gets a
        fresh one. `now`: the wall clock, read once with the monotonic clock by the caller."""
        if resumed and persisted:  # within the clock tolerance (clock.resume_deadline)
            holds = [o.min_ready_seconds for o in target.objects if isinstance(o, Workload)]
            return clock.resume_deadline(persisted, now, self.budget(target), max(holds, default=0) + 10)
        if was_done or not persisted:
            return now + self.budget(target)
        return persisted

    def _wait_reachable(self, name: str, timeout: int) -> str:
        """"" once the node answers; the error if it still does not after `timeout` seconds."""
        until = clock.now() + timeout  # a wait: on the monotonic clock, a clock step neither ends nor stretches it
        lost = False
        while True:
            try:
                self.nodes[name].ping()
                if lost:
                    emit(self.log, ev.NodeBack(name))
                return ""
            except NodeError as e:
                if not lost:
                    emit(self.log, ev.NodeUnreachable(name, str(e)))
                    lost = True
                if clock.now() >= until or self.stop.is_set():
                    return str(e)
            time.sleep(1.0)

    def _roll_back(self, state: RolloutState, name: str, previous: Revision) -> NodeResult:
        """One node back to `previous` (a node already on it has an empty plan: nothing is written)."""
        emit(self.log, ev.RollbackNode(name, previous.id))
        try:
            self.step(previous, name, hold=False, local_first=True)
        except NodeUnreachable as e:
            self._update(state, name, status="rollback-deferred", error=str(e))
            emit(self.log, ev.RollbackDeferred(name, str(e)))
            return NodeResult(name, "rollback-deferred", Reason.NODE_DEFERRED, str(e))
        except (NodeError, PruneRefused) as e:
            state.failure["rollback_error"] = str(e)  # the phase is the decision's (Halt ROLLBACK_FAILED)
            self._update(state, name, status="failed", error=f"rollback failed: {e}")
            self.history.put("suspended", {"revision": previous.id, "sha": previous.commit, "at": time.time(),
                                           "reason": f"rollback of node {name} to {previous.id} failed: {e}"})
            emit(self.log, ev.RollbackFailed(name, str(e)))
            return NodeResult(name, "failed", Reason.ROLLBACK_FAILED, str(e))
        self._update(state, name, status="rolled-back")
        return NodeResult(name, "rolled-back", Reason.ROLLED_BACK)


def _now() -> datetime:
    """The wall clock as an aware datetime: what the maintenance windows are read against."""
    return datetime.fromtimestamp(clock.wall(), timezone.utc)


def _parallel(w: Workload, cfg: AgentConfig) -> int:
    value = w.node_rollout.max_parallel_nodes
    if isinstance(value, int):
        return max(1, value)
    return max(1, resolve_surge(value, len(matching_nodes(w, cfg.nodes)), round_up=False))

