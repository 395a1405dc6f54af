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
from .desired import PodSpec, WorkloadSpec
from .errors import Interrupted, NodeError
from .live import LivePod, LiveState
from .log import Log
from .plan import Action, Plan, rolling_step
from .podman import Node

POLL = 0.25


class RolloutFailed(NodeError):
    """New pods did not become ready in time; the old ones that were not yet replaced keep running."""


def ensure_images(node: Node, plan: Plan, live: LiveState, log: Log) -> None:
    """Pull what the plan's new pods need, before anything is stopped. Never: must be preloaded."""
    wanted: dict[str, str] = {}
    for a in plan.actions:
        pods = a.workload.pods if a.workload else ((a.pod,) if a.pod and a.op != "start-pod" else ())
        for pod in pods:
            for c in pod.containers:
                wanted.setdefault(c.image, c.pull_policy)
    for image, policy in sorted(wanted.items()):
        present = node.has_image(image, live.images)
        if policy == "Never" and not present:
            raise NodeError(node.name, f"image {image} is not on the node and imagePullPolicy is Never (preload it with podman load)")
        if policy == "Always" or not present:
            log("image.pull", node=node.name, image=image, policy=policy)
            node.pull(image)


def apply(node: Node, plan: Plan, live: LiveState, ready_timeout: float, log: Log, stop: threading.Event | None = None) -> int:
    """Carry out every action in order; returns how many were done. Raises at the
    first failure, and with Interrupted between two steps once `stop` is set."""
    if plan.in_sync:
        return 0
    stop = stop or threading.Event()
    ensure_images(node, plan, live, log)
    done = 0
    for a in plan.actions:
        if stop.is_set():
            raise Interrupted(f"stopped after {done} of {len(plan.actions)} action(s) on node {node.name}")
        log("action", node=node.name, op=a.op, target=a.target, reason=a.reason)
        _do(node, a, ready_timeout, log, stop)
        done += 1
    return done


def _do(node: Node, a: Action, ready_timeout: float, log: Log, stop: threading.Event) -> None:
    if a.op == "create-network" and a.network:
        node.create_network(a.network)
    elif a.op == "create-volume" and a.volume:
        node.create_volume(a.volume)
    elif a.op == "create-secret" and a.secret:
        node.create_secret(a.secret)
    elif a.op == "create-pod" and a.pod:
        node.create_pod(a.pod)
        wait_ready(node, a.pod.owner, [a.pod.name], ready_timeout)
    elif a.op == "replace-pod" and a.pod:
        node.remove_pod(a.pod.name, a.pod.stop_timeout)
        node.create_pod(a.pod)
        wait_ready(node, a.pod.owner, [a.pod.name], ready_timeout)
    elif a.op == "start-pod" and a.pod:
        node.start_pod(a.pod.name)
        wait_ready(node, a.pod.owner, [a.pod.name], ready_timeout)
    elif a.op == "rollout" and a.workload:
        rollout(node, a.workload, ready_timeout, log, stop)
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


def _pods(node: Node, w: WorkloadSpec) -> list[LivePod]:
    return sorted((p for p in node.read_pods().values() if p.owner == w.ref), key=lambda p: p.name)


def wait_ready(node: Node, owner: object, names: list[str], timeout: float) -> None:
    """Block until every pod in `names` is ready; RolloutFailed with the reason after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        pods = {p.name: p for p in node.read_pods().values() if p.name in names}
        waiting = [n for n in names if n not in pods or not pods[n].ready]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RolloutFailed(node.name, f"{owner}: pod {waiting[0]} not ready after {timeout:g}s ({_why(pods.get(waiting[0]))})")
        time.sleep(POLL)


def _why(pod: LivePod | None) -> str:
    if pod is None:
        return "pod is gone"
    bad = [f"container {c.labels.get('io.gitops-agent.container', c.name)} is {c.health or c.state}" for c in pod.containers if not (c.running and c.health != "unhealthy")]
    return "; ".join(bad) or f"pod status {pod.status}"


def rollout(node: Node, w: WorkloadSpec, ready_timeout: float, log: Log, stop: threading.Event | None = None) -> None:
    """Replace a workload's pods of older templates with `w`'s, step by step.

    RollingUpdate keeps at least `replicas - maxUnavailable` pods ready and at
    most `replicas + maxSurge` in total; Recreate removes every old pod first.
    Fails (RolloutFailed) when no step makes progress for `ready_timeout`.
    """
    wanted = [p.name for p in w.pods]
    specs = {p.name: p for p in w.pods}
    stop_timeout = w.pods[0].stop_timeout if w.pods else 10
    last_progress = time.monotonic()
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted(f"rollout of {w.ref} on node {node.name} stopped between steps; the next pass resumes it")
        pods = _pods(node, w)
        old = [p for p in pods if p.template_hash != w.template_hash or p.name not in specs]
        new = [p for p in pods if p.name in specs and p.template_hash == w.template_hash]
        new_ready = [p for p in new if p.ready]
        if not old and len(new_ready) == len(wanted):
            log("rollout.done", node=node.name, workload=str(w.ref), template=w.template_hash, replicas=len(wanted))
            return
        if w.strategy == "Recreate":
            create_n, remove_n = (0, len(old)) if old else (len(wanted) - len(new), 0)
        else:
            step = rolling_step(
                len(wanted), w.max_surge, w.max_unavailable,
                old_total=len(old), old_ready=sum(p.ready for p in old),
                new_total=len(new), new_ready=len(new_ready),
            )
            create_n, remove_n = step.create, step.remove
        have = {p.name for p in new}
        to_create: list[PodSpec] = [specs[n] for n in wanted if n not in have][:create_n]
        # not-ready old pods go first: they serve nothing
        to_remove = sorted(old, key=lambda p: (p.ready, p.name))[:remove_n]
        for pod in to_remove:
            log("rollout.remove", node=node.name, workload=str(w.ref), pod=pod.name)
            node.remove_pod(pod.name, stop_timeout)
        for spec in to_create:
            log("rollout.create", node=node.name, workload=str(w.ref), pod=spec.name)
            node.create_pod(spec)
        if to_create or to_remove:
            last_progress = time.monotonic()
            continue
        if time.monotonic() - last_progress > ready_timeout:
            waiting = next((p for p in new if not p.ready), None)
            raise RolloutFailed(
                node.name,
                f"{w.ref}: rollout to template {w.template_hash} made no progress for {ready_timeout:g}s"
                + (f" (pod {waiting.name}: {_why(waiting)})" if waiting else ""),
            )
        time.sleep(POLL)
