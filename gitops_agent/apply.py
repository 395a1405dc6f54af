"""Executes a Plan on one node: the only place that decides *when* to write.

Sits between `plan` (what) and `podman` (how). Images are made present before
anything is stopped; pods are created health-gated (`probes.Gate`); a plan's
`RollingUpdate` runs as `rolling.update`, which moves in Kubernetes'
RollingUpdate/Recreate steps and waits for readiness between them. Each kind of
action is dispatched with `match` (`typing.assert_never` proves every kind is
handled). It never touches an object that `plan` did not name, and every object
`plan` names is one the agent owns (labels). Must not read Git or the history
store. Deadlines are points on the monotonic clock (`clock.now`); the fleet turns
what it persisted across a restart (wall time) into one (`clock.local_deadline`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Callable, assert_never

from .desired import PodSpec
from .errors import ImagePullBackOff, ImageUnavailable, Interrupted, NodeError
from .live import LiveState
from .log import Log
from .plan import (Action, CreateNetwork, CreatePod, CreateSecret, CreateVolume, Plan, ReconnectPod, RecreateSecret,
                   RemoveNetwork, RemovePod, RemoveSecret, RemoveVolume, ReplacePod, RollingUpdate, RunPod, StartPod,
                   StopSidecars, UnpausePod, VolumeLost)
from .podman import Node
from .probes import Gate, RolloutFailed
from .reasons import Reason
from .pullauth import Credential, for_image
from .rolling import CREATE_PARALLEL, POLL, create_pods, update

__all__ = ["CREATE_PARALLEL", "POLL", "Gate", "RolloutFailed", "apply", "create_pods", "ensure_images", "pin_key",
           "pinned", "pinnable", "pull", "space_ok", "step_seconds", "wait"]


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
    `deadline` (monotonic, `clock.now`; without `retry`: raised at once), then raised; one refused for good
    (ImageUnavailable) is raised at once."""
    pins = pins if pins is not None else {}
    until = deadline if deadline is not None else time.monotonic() + 600
    wanted: dict[tuple[str, str], tuple[str, tuple[Credential, ...]]] = {}
    for a in plan.actions:
        for pod in pods_made(a):
            for c in pod.every_container():
                wanted.setdefault((pod.template_hash, c.image), (c.pull_policy, pod.pull_credentials))
                for m in c.image_mounts:  # an image volume's image is pulled as a container's
                    wanted.setdefault((pod.template_hash, m.source), (m.pull_policy, pod.pull_credentials))
    use: dict[tuple[str, str], str] = {}
    pulled: set[str] = set()
    for (thash, image), (policy, pod_creds) in sorted(wanted.items()):
        credential = for_image(image, (*pod_creds, *node.credentials))
        pull_one = _Puller(node, log, until, stop, retry, credential, policy)
        pin = pins.get(pin_key(thash, image)) if pinnable(image) else None
        if pin:
            if node.has_image(pin["id"], live.images):
                use[(thash, image)] = pin.get("digest") or pin["id"]
                continue
            if pin.get("digest"):  # its image is gone from the node: the same one, by digest
                pull_one(pin["digest"], for_tag=image)
                use[(thash, image)] = pin["digest"]
                continue
        if _make_present(node, image, policy, live, local_first, image in pulled, pull_one):
            pulled.add(image)
        found = node.image(image) if pinnable(image) else None
        if found and found[0]:
            fresh = image in pulled and found[0] not in live.images  # not there before: the agent brought it
            digest = image if "@" in image else found[1]  # a digest reference runs as written
            pins[pin_key(thash, image)] = {"id": found[0], "digest": digest, "pulled": str(fresh).lower()}
            use[(thash, image)] = digest or found[0]
    return use


class _Puller:
    """One image's pull as `ensure_images` does it: logged, space checked, retried within `until`."""

    def __init__(self, node: Node, log: Log, until: float, stop: threading.Event | None, retry: bool,
                 credential: Credential | None, policy: str) -> None:
        self.node, self.log, self.until, self.stop, self.retry = node, log, until, stop, retry
        self.credential, self.policy = credential, policy

    def __call__(self, image: str, for_tag: str = "") -> None:
        self.log("image.pull", node=self.node.name, image=image, policy=self.policy,
                 **({"credentials": self.credential.source} if self.credential else {}),
                 **({"pinned": for_tag} if for_tag else {}))
        check_space(self.node, image, self.credential, self.log)
        _pull(self.node, image, self.credential, self.log, self.until, self.stop, PULL_RETRY if self.retry else ())


def _make_present(node: Node, image: str, policy: str, live: LiveState, local_first: bool, pulled: bool,
                  pull_one: _Puller) -> bool:
    """Pull `image` if its policy wants it now; True when it was pulled."""
    present = node.has_image(image, live.images) or pulled
    if policy == "Never" and not present:
        raise NodeError(node.name, f"image {image} is not on the node and imagePullPolicy is Never "
                        "(preload it with podman load)")
    if present and (policy != "Always" or local_first):
        return False
    pull_one(image)
    return True


def pods_made(a: Action) -> tuple[PodSpec, ...]:
    """The pods an action creates (whose images must be present first)."""
    match a:
        case RollingUpdate(workload=w):
            return w.pods
        case CreatePod(pod=pod) | ReplacePod(pod=pod) | RunPod(pod=pod):
            return (pod,)
        case _:
            return ()


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
        return p.map_containers(lambda c: replace(
            c, image=use.get((p.template_hash, c.image), c.image),
            image_mounts=tuple(replace(m, source=use.get((p.template_hash, m.source), m.source))
                               for m in c.image_mounts)))

    def action(a: Action) -> Action:
        match a:
            case RollingUpdate(workload=w):
                return replace(a, workload=replace(w, pods=tuple(pod(p) for p in w.pods)))
            case CreatePod(pod=p) | ReplacePod(pod=p) | StartPod(pod=p) | RunPod(pod=p):
                return replace(a, pod=pod(p))
            case _:
                return a

    return replace(plan, actions=tuple(action(a) for a in plan.actions))


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
    """One image, retried after each pause of `backoff` while the registry is unavailable and time is
    left before `deadline` (monotonic, `clock.now`; default: 600 s from now)."""
    until = deadline if deadline is not None else time.monotonic() + 600
    _pull(node, image, credential, log, until, stop, backoff)


def _pull(node: Node, image: str, credential: Credential | None, log: Log, until: float,
          stop: threading.Event | None, backoff: tuple[float, ...]) -> None:
    """`pull` with its deadline on the monotonic clock."""
    for attempt in range(len(backoff) + 1):
        try:
            node.pull(image, credential, timeout=until - time.monotonic())
            return
        except ImagePullBackOff as e:
            if attempt == len(backoff):
                raise
            pause = backoff[attempt]
            if time.monotonic() + pause >= until or (stop is not None and stop.is_set()):
                raise
            log("image.pull.retry", level="warning", node=node.name, image=image, seconds=pause, error=str(e))
            time.sleep(pause)


def apply(node: Node, plan: Plan, live: LiveState, log: Log, stop: threading.Event | None = None, *,
          deadline: float | None = None, hold: bool = True, local_first: bool = False, cap: float | None = None,
          pins: dict[str, dict[str, str]] | None = None, served: Callable[[PodSpec], None] | None = None) -> int:
    """Carry out every action in order; returns how many were done. New pods are
    created together and waited for before the next removal. Raises at the first
    failure, and with Interrupted between two steps once `stop` is set. `deadline`
    is on the monotonic clock, `clock.now` (default: `step_seconds` from now). `served`: the gate's hook once a
    new pod is in its Services' DNS (`endpoints.Recorder`)."""
    if plan.in_sync:
        return 0
    stop = stop or threading.Event()
    if deadline is None:
        deadline = time.monotonic() + step_seconds(plan)
    plan = pinned(plan, ensure_images(node, plan, live, log, local_first, deadline, stop, pins))
    gate = Gate(node, deadline, hold, cap, served)
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
        if isinstance(a, RollingUpdate):
            gate.arm(a.workload.progress_deadline_seconds)
        elif isinstance(a, (CreatePod, ReplacePod, StartPod)) and not pending:
            gate.arm(a.pod.progress_deadline_seconds)
        batch = _creations(actions) or [a]  # consecutive creations go together, a few at a time
        for b in batch:
            log("action", node=node.name, op=b.op, target=b.target, reason=b.reason)
        if isinstance(a, CreatePod):
            specs = [b.pod for b in batch if isinstance(b, CreatePod)]
            create_pods(node, specs)
            pending += specs
        else:
            pending += _do(node, a, gate, log, stop)
        del actions[:len(batch)]
        done += sum(1 for b in batch if not isinstance(b, VolumeLost))  # told (volume.lost), not done: no repair
    wait(node, pending, gate, stop)
    return done


def _creations(actions: list[Action]) -> list[Action]:
    """The run of pod creations `actions` starts with (empty when it starts with anything else)."""
    batch: list[Action] = []
    for a in actions:
        if not isinstance(a, CreatePod):
            break
        batch.append(a)
    return batch


def step_seconds(plan: Plan) -> int:
    """How long the node step may take: the largest progressDeadlineSeconds among the pods it starts."""
    specs = [p for a in plan.actions for p in (*pods_made(a), *((a.pod,) if isinstance(a, StartPod) else ()))]
    return max((p.progress_deadline_seconds for p in specs), default=600)


def _do(node: Node, a: Action, gate: Gate, log: Log, stop: threading.Event) -> list[PodSpec]:
    """One action; returns the pods it started, to be waited for."""
    match a:
        case CreateNetwork(network=network):
            node.create_network(network)
        case CreateVolume(volume=volume):
            node.create_volume(volume)
        case CreateSecret(secret=secret):
            node.create_secret(secret)
        case CreatePod(pod=pod):
            node.create_pod(pod)
            return [pod]
        case ReplacePod(pod=pod):
            node.remove_pod(pod.name, pod.stop_timeout)
            node.create_pod(pod)
            return [pod]
        case StartPod(pod=pod):
            node.start_pod(pod.name, pod)
            return [pod]
        case RunPod(pod=pod):
            node.create_pod(pod)  # runs to its end: not waited for (gitops_agent/jobs)
        case StopSidecars(name=name, stop_timeout=timeout):
            node.stop_sidecars(name, timeout)
        case RollingUpdate(workload=workload):
            update(node, workload, gate, log, stop)
        case RemovePod(name=name):
            node.remove_pod(name)
        case RemoveSecret(name=name):
            node.remove_secret(name)
        case RemoveVolume(name=name):
            node.remove_volume(name)
        case RemoveNetwork(name=name):
            node.remove_network(name)
        case ReconnectPod() | UnpausePod() | RecreateSecret() | VolumeLost():
            _repair(node, a, log)
        case _:
            assert_never(a)
    return []


def _repair(node: Node, a: ReconnectPod | UnpausePod | RecreateSecret | VolumeLost, log: Log) -> None:
    """A drift repair made in place (the pod's containers keep running), or a data loss told loudly."""
    match a:
        case ReconnectPod(pod=pod, infra=infra, aliases=aliases, disconnect=leave):
            node.reconnect(infra, pod.network, aliases, leave)
        case UnpausePod(pod=pod):
            node.unpause_pod(pod.name)
        case RecreateSecret(secret=secret):
            node.remove_secret(secret.name)
            node.create_secret(secret)
        case VolumeLost(name=name, pods=pods, reason=reason):  # never "repaired": a person decides
            log("volume.lost", level="critical", node=node.name, volume=name, pods=",".join(pods), error=reason,
                reason=Reason.DATA_LOSS.value)
        case _:
            assert_never(a)


def wait(node: Node, specs: list[PodSpec], gate: Gate, stop: threading.Event | None = None) -> None:
    """Block until every pod in `specs` is available; RolloutFailed when one fails or at the
    deadline; Interrupted once `stop` is set (SIGTERM must not wait for a long deadline)."""
    while specs:
        if stop is not None and stop.is_set():
            raise Interrupted(f"stopped on node {node.name} while waiting for {len(specs)} pod(s); "
                              "the next pass resumes")
        pods = node.read_pods()
        waiting = [s for s in specs if not gate.available(s, pods.get(s.name))]
        if not waiting:
            return
        gate.check_deadline(waiting[0], pods.get(waiting[0].name))
        time.sleep(POLL)
