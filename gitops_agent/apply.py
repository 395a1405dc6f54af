"""Executes a Plan on one node: the only place that decides *when* to write.

Sits between `plan` (what) and `podman` (how). Images are made present before
anything is stopped; pods are created health-gated; a rollout moves in
Kubernetes' RollingUpdate/Recreate steps and waits for readiness between them.
It never touches an object that `plan` did not name, and every object `plan`
names is one the agent owns (labels). Must not read Git or the history store.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from . import clock, netprobe
from .desired import PodSpec, WorkloadSpec
from .errors import Consequence, ImagePullBackOff, ImageUnavailable, Interrupted, NodeError
from .reasons import Reason
from .live import LivePod, LiveState
from .log import Log
from .plan import Action, Plan, rolling_step
from .podman import Node
from .probes import Prober
from .pullauth import Credential, for_image

POLL = 0.25
CREATE_PARALLEL = 4  # pods created at once on one node: bounded, an edge box has few cores


class RolloutFailed(NodeError):
    """A new pod crashed, failed its readiness/startup probe, or was not ready by the
    deadline. The old pods that were not yet replaced keep running. Stalled: the revision
    is marked failed and not retried until Git moves (a NodeError only by origin)."""

    code = Reason.ROLLOUT_FAILED
    consequence = Consequence.STALLED

    def __init__(self, node: str, message: str, pod: str = "", probe: str = "", output: str = "") -> None:
        super().__init__(node, message)
        self.pod, self.probe, self.output = pod, probe, output


PULL_RETRY = (1.0, 2.0, 4.0, 8.0)  # seconds between pull attempts within one node step


def ensure_images(node: Node, plan: Plan, live: LiveState, log: Log, local_first: bool = False,
                  deadline: float | None = None, stop: threading.Event | None = None,
                  pins: dict[str, dict[str, str]] | None = None, retry: bool = True) -> dict[tuple[str, str], str]:
    """Pull what the plan's new pods need, before anything is stopped; returns, per (template
    hash, image), what their containers are created from: the `repository@sha256:` digest the
    node has the image by (shown by `podman ps`), or its image ID when it has none.

    Never: must be preloaded. `local_first` (a rollback) uses an image already on the node even
    when its policy is Always, so a rollback works with the registry down. `pins` (this node's
    record, updated in place) holds the image each template first ran with here: a template seen
    before (drift repair, rollback, a `git revert`) gets that very image again, whatever its tag
    points to now, pulled by digest if it is gone; a new template resolves its tag (Always pulls).
    An image named by digest is pinned as written; `localhost/` images (made on the node) are
    used by name and never pinned.
    A pull that fails for a reason that may pass (ImagePullBackOff) is retried with backoff until
    `deadline` (without `retry`: raised at once), then raised; one refused for good
    (ImageUnavailable) is raised at once."""
    pins = pins if pins is not None else {}
    wanted: dict[tuple[str, str], tuple[str, tuple[Credential, ...]]] = {}
    for a in plan.actions:
        pods = a.workload.pods if a.workload else ((a.pod,) if a.pod and a.op != "start-pod" else ())
        for pod in pods:
            for c in pod.every_container():
                wanted.setdefault((pod.template_hash, c.image), (c.pull_policy, pod.pull_credentials))
    use: dict[tuple[str, str], str] = {}
    pulled: set[str] = set()
    for (thash, image), (policy, pod_creds) in sorted(wanted.items()):
        credential = for_image(image, (*pod_creds, *node.credentials))
        pin = pins.get(pin_key(thash, image)) if pinnable(image) else None
        if pin and node.has_image(pin["id"], live.images):
            use[(thash, image)] = pin.get("digest") or pin["id"]
            continue
        if pin and pin.get("digest"):  # its image is gone from the node: the same one, by digest
            _pull_logged(node, pin["digest"], policy, credential, log, deadline, stop, retry, for_tag=image)
            use[(thash, image)] = pin.get("digest") or pin["id"]
            continue
        present = node.has_image(image, live.images) or image in pulled
        if policy == "Never" and not present:
            raise NodeError(node.name, f"image {image} is not on the node and imagePullPolicy is Never (preload it with podman load)")
        if not present or (policy == "Always" and not local_first):
            _pull_logged(node, image, policy, credential, log, deadline, stop, retry)
            pulled.add(image)
        if pinnable(image):
            found = node.image(image)
            if found and found[0]:
                fresh = image in pulled and found[0] not in live.images  # not there before: the agent brought it
                digest = image if "@" in image else found[1]  # a digest reference runs as written
                pins[pin_key(thash, image)] = {"id": found[0], "digest": digest, "pulled": str(fresh).lower()}
                use[(thash, image)] = digest or found[0]
    return use


def pinnable(image: str) -> bool:
    """An image from a registry (a tag that may move, or a digest): not one made on the node (localhost/)."""
    return not image.startswith("localhost/")


def pin_key(thash: str, image: str) -> str:
    return f"{thash} {image}"


def pinned(plan: Plan, use: dict[tuple[str, str], str]) -> Plan:
    """The plan with each new container's image replaced by the digest or ID `ensure_images` chose."""
    if not use:
        return plan

    def pod(p: PodSpec) -> PodSpec:
        return p.map_containers(lambda c: replace(c, image=use.get((p.template_hash, c.image), c.image)))

    actions = []
    for a in plan.actions:
        if a.workload is not None:
            a = replace(a, workload=replace(a.workload, pods=tuple(pod(p) for p in a.workload.pods)))
        if a.pod is not None:
            a = replace(a, pod=pod(a.pod))
        actions.append(a)
    return replace(plan, actions=tuple(actions))


def _pull_logged(node: Node, image: str, policy: str, credential: Credential | None, log: Log,
                 deadline: float | None, stop: threading.Event | None, retry: bool, for_tag: str = "") -> None:
    log("image.pull", node=node.name, image=image, policy=policy,
        **({"credentials": credential.source} if credential else {}), **({"pinned": for_tag} if for_tag else {}))
    check_space(node, image, credential, log)
    pull(node, image, credential, log, deadline, stop, PULL_RETRY if retry else ())


UNPACK_FACTOR = 2  # layers unpack to about twice what the registry reports (compressed)


def check_space(node: Node, image: str, credential: Credential | None, log: Log) -> None:
    """Refuse a pull that would not fit: the registry's size for `image` (unpacked, about
    UNPACK_FACTOR times) must leave `node.min_free` bytes free in the image store. An image
    present in part (shared layers) needs less: the check errs on the safe side."""
    reported = node.remote_size(image, credential)
    free = node.free_image_space()
    if reported is None or free is None:
        log("image.space.unknown", node=node.name, image=image)
        return
    if not space_ok(reported, free, node.min_free):
        raise ImageUnavailable(node.name, f"pull {image}: not enough space in the node's image store: the registry "
                               f"reports {_size(reported)} (about {_size(reported * UNPACK_FACTOR)} unpacked), "
                               f"{_size(free)} free, images.minFree {_size(node.min_free)} must stay free", image)


def space_ok(reported: int, free: int, min_free: int) -> bool:
    return free - reported * UNPACK_FACTOR >= min_free


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def pull(node: Node, image: str, credential: Credential | None, log: Log, deadline: float | None = None,
         stop: threading.Event | None = None, backoff: tuple[float, ...] = PULL_RETRY) -> None:
    """One image, retried after each pause of `backoff` while the registry is unavailable and time is left."""
    deadline = deadline if deadline is not None else clock.now() + 600
    for attempt in range(len(backoff) + 1):
        try:
            node.pull(image, credential, timeout=deadline - clock.now())
            return
        except ImagePullBackOff as e:
            if attempt == len(backoff):
                raise
            pause = backoff[attempt]
            if clock.now() + pause >= deadline or (stop is not None and stop.is_set()):
                raise
            log("image.pull.retry", level="warning", node=node.name, image=image, seconds=pause, error=str(e))
            time.sleep(pause)


class Gate:
    """Judges new pods on one node step: probes (`Prober`), minReadySeconds held
    unless `hold` is off (a rollback to a known-good template), one absolute
    `deadline` on the monotonic clock (`clock.now`: a wall-clock step neither fails nor stretches a step;
    the fleet persists it as wall time for a restart)."""

    def __init__(self, node: Node, deadline: float, hold: bool = True, cap: float | None = None) -> None:
        self.node = node
        self.step_deadline = self.deadline = deadline
        self.hold = hold
        self.cap = cap
        dialer = node.dialer
        outside = (lambda pod, probe: netprobe.check(dialer, pod, probe)) if dialer else None
        self.prober = Prober(node.exec, clock=clock.now, outside=outside, wall=clock.wall)
        self._ready_since: dict[str, float] = {}

    def available(self, spec: PodSpec, pod: LivePod | None) -> bool:
        """Ready for minReadySeconds; raises RolloutFailed when the pod failed."""
        v = self.prober.judge(spec, pod)
        if v.failed:
            raise RolloutFailed(self.node.name, f"{spec.owner}: pod {spec.name}: {v.failed}" + (f": {v.output}" if v.output else ""),
                                pod=spec.name, probe=v.probe, output=v.output)
        now = clock.now()
        if not v.ready:
            self._ready_since.pop(spec.name, None)
            return False
        since = self._ready_since.setdefault(spec.name, now)
        return now - since >= (spec.min_ready_seconds if self.hold else 0)

    def arm(self, seconds: float) -> None:
        """A workload's own progress deadline (capped), starting now, within the step's absolute deadline."""
        if self.cap is not None:
            seconds = min(seconds, self.cap)
        self.deadline = min(self.step_deadline, clock.now() + seconds)

    def check_deadline(self, spec: PodSpec, pod: LivePod | None) -> None:
        if clock.now() > self.deadline:
            raise RolloutFailed(self.node.name, f"{spec.owner}: pod {spec.name} not ready by the progress deadline ({_why(pod)})",
                                pod=spec.name, probe="deadline", output=_why(pod))


def apply(node: Node, plan: Plan, live: LiveState, log: Log, stop: threading.Event | None = None, *,
          deadline: float | None = None, hold: bool = True, local_first: bool = False, cap: float | None = None,
          pins: dict[str, dict[str, str]] | None = None) -> int:
    """Carry out every action in order; returns how many were done. New pods are
    created together and waited for before the next removal. Raises at the first
    failure, and with Interrupted between two steps once `stop` is set."""
    if plan.in_sync:
        return 0
    stop = stop or threading.Event()
    if deadline is None:
        deadline = clock.now() + step_seconds(plan)
    plan = pinned(plan, ensure_images(node, plan, live, log, local_first, deadline, stop, pins))
    gate = Gate(node, deadline, hold, cap)
    pending: list[PodSpec] = []
    done = 0
    actions = list(plan.actions)
    while actions:
        if stop.is_set():
            raise Interrupted(f"stopped after {done} of {len(plan.actions)} action(s) on node {node.name}")
        a = actions[0]
        if a.op.startswith("remove-") and pending:
            wait(node, pending, gate, stop)
            pending = []
        if a.workload is not None:
            gate.arm(a.workload.progress_deadline_seconds)
        elif a.pod is not None and not pending:
            gate.arm(a.pod.progress_deadline_seconds)
        if a.op == "create-pod":  # consecutive creations go together, a few at a time
            batch = _takewhile_create(actions)
            for b in batch:
                log("action", node=node.name, op=b.op, target=b.target, reason=b.reason)
            specs = [b.pod for b in batch if b.pod is not None]
            create_pods(node, specs)
            pending += specs
            del actions[:len(batch)]
            done += len(batch)
            continue
        log("action", node=node.name, op=a.op, target=a.target, reason=a.reason)
        pending += _do(node, a, gate, log, stop)
        del actions[0]
        done += 1
    wait(node, pending, gate, stop)
    return done


def _takewhile_create(actions: list[Action]) -> list[Action]:
    batch: list[Action] = []
    for a in actions:
        if a.op != "create-pod":
            break
        batch.append(a)
    return batch


def create_pods(node: Node, specs: list[PodSpec]) -> None:
    """Create pods, CREATE_PARALLEL at a time (Podman's API serves them concurrently);
    every creation is tried, then the first error is raised."""
    if len(specs) <= 1:
        for spec in specs:
            node.create_pod(spec)
        return
    with ThreadPoolExecutor(max_workers=min(CREATE_PARALLEL, len(specs))) as pool:
        futures = [pool.submit(node.create_pod, spec) for spec in specs]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


def step_seconds(plan: Plan) -> int:
    """How long the node step may take: the largest progressDeadlineSeconds among the pods it starts."""
    specs = [p for a in plan.actions for p in (a.workload.pods if a.workload else (a.pod,) if a.pod else ())]
    return max((p.progress_deadline_seconds for p in specs), default=600)


def _do(node: Node, a: Action, gate: Gate, log: Log, stop: threading.Event) -> list[PodSpec]:
    """One action; returns the pods it started, to be waited for."""
    if a.op == "create-network" and a.network:
        node.create_network(a.network)
    elif a.op == "create-volume" and a.volume:
        node.create_volume(a.volume)
    elif a.op == "create-secret" and a.secret:
        node.create_secret(a.secret)
    elif a.op == "create-pod" and a.pod:
        node.create_pod(a.pod)
        return [a.pod]
    elif a.op == "replace-pod" and a.pod:
        node.remove_pod(a.pod.name, a.pod.stop_timeout)
        node.create_pod(a.pod)
        return [a.pod]
    elif a.op == "start-pod" and a.pod:
        node.start_pod(a.pod.name, a.pod)
        return [a.pod]
    elif a.op == "rollout" and a.workload:
        rollout(node, a.workload, gate, log, stop)
    elif a.op == "remove-pod":
        node.remove_pod(a.target)
    elif a.op == "remove-secret":
        node.remove_secret(a.target)
    elif a.op == "remove-volume":
        node.remove_volume(a.target)
    elif a.op == "remove-network":
        node.remove_network(a.target)
    else:
        raise ValueError(f"malformed action {a}")
    return []


def wait(node: Node, specs: list[PodSpec], gate: Gate, stop: threading.Event | None = None) -> None:
    """Block until every pod in `specs` is available; RolloutFailed when one fails or at the
    deadline; Interrupted once `stop` is set (SIGTERM must not wait for a long deadline)."""
    while specs:
        if stop is not None and stop.is_set():
            raise Interrupted(f"stopped on node {node.name} while waiting for {len(specs)} pod(s); the next pass resumes")
        pods = node.read_pods()
        waiting = [s for s in specs if not gate.available(s, pods.get(s.name))]
        if not waiting:
            return
        gate.check_deadline(waiting[0], pods.get(waiting[0].name))
        time.sleep(POLL)


def _why(pod: LivePod | None) -> str:
    if pod is None:
        return "pod is gone"
    bad = [f"container {c.labels.get('io.gitops-agent.container', c.name)} is {c.health or c.state}" for c in pod.containers if not (c.running and c.health != "unhealthy")]
    return "; ".join(bad) or "its readiness probe has not passed"


def rollout(node: Node, w: WorkloadSpec, gate: Gate, log: Log, stop: threading.Event | None = None) -> None:
    """Replace a workload's pods of older templates with `w`'s, step by step.

    RollingUpdate keeps at least `replicas - maxUnavailable` pods available and
    at most `replicas + maxSurge` in total; Recreate removes every old pod
    first. A new pod counts as available once ready for minReadySeconds. A new
    pod left half-built (an agent killed mid-create) is rebuilt, one left
    unstarted is started.
    """
    wanted = [p.name for p in w.pods]
    specs = {p.name: p for p in w.pods}
    shown = (-1, -1, -1)
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted(f"rollout of {w.ref} on node {node.name} stopped between steps; the next pass resumes it")
        pods = _pods(node, w)
        old = [p for p in pods if p.template_hash != w.template_hash or p.name not in specs]
        new = [p for p in pods if p.name in specs and p.template_hash == w.template_hash]
        broken = [p for p in new if len(p.containers) < len(specs[p.name].containers)]
        for pod in broken:
            gate.check_deadline(specs[pod.name], pod)
            log("rollout.rebuild", node=node.name, workload=str(w.ref), pod=pod.name)
            node.remove_pod(pod.name, 0)
        if broken:
            time.sleep(POLL)
            continue
        # created but never started (the agent was killed between "create container" and "start pod")
        unstarted = [p for p in new if all(c.state in ("created", "configured") for c in p.containers)]
        for pod in unstarted:
            log("rollout.start-pod", node=node.name, workload=str(w.ref), pod=pod.name, reason="created but never started")
            node.start_pod(pod.name, specs[pod.name])
        if unstarted:
            continue
        available = [p for p in new if gate.available(specs[p.name], p)]
        counts = (len(new), len(available), len(wanted))
        if counts != shown:  # for the live view: updated/ready against desired on this node
            shown = counts
            log("rollout.progress", node=node.name, workload=str(w.ref),
                updated=counts[0], ready=counts[1], desired=counts[2])
        if not old and len(available) == len(wanted):
            log("rollout.done", node=node.name, workload=str(w.ref), template=w.template_hash, replicas=len(wanted))
            return
        if w.strategy == "Recreate":
            create_n, remove_n = (0, len(old)) if old else (len(wanted) - len(new), 0)
        else:
            step = rolling_step(
                len(wanted), w.max_surge, w.max_unavailable,
                old_total=len(old), old_ready=sum(p.ready for p in old),
                new_total=len(new), new_ready=len(available),
            )
            create_n, remove_n = step.create, step.remove
        have = {p.name for p in new}
        to_create: list[PodSpec] = [specs[n] for n in wanted if n not in have][:create_n]
        # not-ready old pods go first: they serve nothing
        to_remove = sorted(old, key=lambda p: (p.ready, p.name))[:remove_n]
        for pod in to_remove:
            log("rollout.remove", node=node.name, workload=str(w.ref), pod=pod.name)
            node.remove_pod(pod.name)  # with its own terminationGracePeriodSeconds
        for spec in to_create:
            log("rollout.create", node=node.name, workload=str(w.ref), pod=spec.name)
        create_pods(node, to_create)
        if to_create or to_remove:
            continue
        waiting = next((p for p in new if p not in available), None)
        if waiting is not None:
            gate.check_deadline(specs[waiting.name], waiting)
        elif clock.now() > gate.deadline:
            raise RolloutFailed(node.name, f"{w.ref}: rollout to template {w.template_hash} did not finish by the progress deadline")
        time.sleep(POLL)


def _pods(node: Node, w: WorkloadSpec) -> list[LivePod]:
    return sorted((p for p in node.read_pods().values() if p.owner == w.ref), key=lambda p: p.name)
