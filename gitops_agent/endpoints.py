"""Service endpoints follow readiness: a pod whose readiness probe fails leaves its Services' DNS names, and comes
back once it passes again, as the Kubernetes endpoints controller does.

Sits beside `liveness` (same shape: a `Monitor` the daemon ticks about once a second) and `probes` (which gates
rollouts): it runs each managed pod's readiness probes all the time the daemon runs, from outside the container as
the rollout gate does (`probes.probe_way`: httpGet/tcpSocket/grpc through the node's dialer, exec in the container),
with Kubernetes' timing (`initialDelaySeconds` after the container started, one run every `periodSeconds`,
`successThreshold` successes in a row make a container ready, `failureThreshold` failures in a row make it unready; a
container that is not running is unready at once). A pod is ready when every app container is.

A Service is a DNS alias of the pod's infra container on the namespace network (`desired.PodSpec.aliases`: the
Service names, plus a StatefulSet pod's own `<pod>.<service>`). Podman cannot change the aliases of a running
container, so a transition is `network disconnect` + `network connect` with the aliases the pod should now have
(`serving_aliases`) and its own IP address (clients that hold it keep reaching it); the pod's own name stays
resolvable throughout (Podman gives a pod's infra container the pod's name in DNS).

A new pod behind a Service with a readinessProbe is created with only its non-Service names (`creation_aliases`,
used by `podman.Node.create_pod`; the aliases are not in the template hash) and joins its Services' DNS on its first
pass: in the rollout gate (`probes.Gate` calls `serve`, then `Recorder` writes "ready" in the store and emits the
event), or here, for a watched pod found ready and not yet served (`decide` moves it like any other).

The pure part: `creation_aliases`, `with_ready`, `observe` (one probe result -> the container's track), `pod_ready`,
`decide` (readiness + the pod's current network membership -> `Disconnect` / `Connect` actions) and
`serving_aliases` (what `plan` compares drift against, so a pass never puts an unready pod back), all tested from
literals. A pod the monitor has no verdict on yet (just started, or the agent just started) keeps the aliases it
has: an agent restart never moves a pod in or out.

Readiness is recorded in the state store under `endpoints` (`{node: {pod: {ready, since, services}}}`), written on
transitions only, read by `status` (each Service's ready endpoints per node) and by the pass (`unready`). Every
transition is an event (`events.EndpointRemoved` / `EndpointAdded`). Must not touch a pod the agent did not create
(only pods of the compiled desired state, which carry its labels) and must not decide anything about rollouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from . import events as ev
from .desired import L_CONTAINER, ContainerSpec, PodSpec, probe_command, redact
from .dial import Dialer
from .log import Log
from .model import Probe
from .probes import OUTSIDE, probe_way

if TYPE_CHECKING:
    from .live import LivePod

IDLE = 10.0  # seconds between looks at a node none of whose pods has a readinessProbe behind a Service
STORE_KEY = "endpoints"  # the state store key the monitor writes (History.put) and status/the pass read


# --- pure -------------------------------------------------------------------------------------------------------


def service_aliases(spec_aliases: Iterable[str]) -> frozenset[str]:
    """PURE: the aliases of a pod that are Service names. A Service name is a DNS-1035 label (no dot: schemas/
    service.json); a pod's own DNS name through a headless Service is `<pod>.<service>`, which always has one."""
    return frozenset(a for a in spec_aliases if "." not in a)


def serving_aliases(spec_aliases: Iterable[str], service_aliases: Iterable[str], ready: bool) -> frozenset[str]:
    """PURE: the DNS aliases a pod should hold on its network: all of `spec_aliases` when ready, else those that are
    not Service names (a StatefulSet pod's `<pod>.<service>` stays, as its stable identity)."""
    spec = frozenset(spec_aliases)
    return spec if ready else spec - frozenset(service_aliases)


@dataclass(frozen=True)
class Track:
    """One container's readiness as the monitor saw it: `ready` None until a verdict (successThreshold successes
    or failureThreshold failures in a row), the start it judged, the results in a row, and its next run."""

    started_at: int
    next_run: float
    ready: bool | None = None
    successes: int = 0
    failures: int = 0


def first_track(started_at: int, probe: Probe, now: float, wall: float) -> Track:
    """PURE: a container just seen (or restarted): its first probe `initialDelaySeconds` after its start (unix s,
    `wall` is the wall clock now), as a point on the monotonic clock `now`; never later than the delay from now."""
    delay = probe.initial_delay_seconds
    return Track(started_at=started_at, next_run=now + min(delay, max(0.0, started_at + delay - wall)))


def observe(track: Track, probe: Probe, code: int | None, now: float) -> Track:
    """PURE: the track after one probe result at `now` (0 success, anything else a failure; None timed out)."""
    if code == 0:
        successes, failures = track.successes + 1, 0
        ready = True if successes >= probe.success_threshold else track.ready
    else:
        successes, failures = 0, track.failures + 1
        ready = False if failures >= probe.failure_threshold else track.ready
    return replace(track, successes=successes, failures=failures, ready=ready, next_run=now + probe.period_seconds)


def pod_ready(containers: Iterable[bool | None]) -> bool | None:
    """PURE: a pod from its containers' readiness: unready if one is, unknown if one is not judged yet, else ready."""
    seen = list(containers)
    if any(c is False for c in seen):
        return False
    return None if any(c is None for c in seen) else True


@dataclass(frozen=True)
class PodNetwork:
    """A pod's membership of its namespace network, as Podman has it (`podman.Node.pod_network`)."""

    pod: str
    infra: str  # the infra container's id: the one that holds the network
    network: str
    connected: bool
    ip: str = ""
    aliases: frozenset[str] = frozenset()  # as Podman lists them (it adds the container's short id)


@dataclass(frozen=True)
class Disconnect:
    pod: str
    network: str


@dataclass(frozen=True)
class Connect:
    pod: str
    network: str
    aliases: tuple[str, ...]


Action = Disconnect | Connect


def decide(net: PodNetwork, spec_aliases: Iterable[str], ready: bool | None) -> tuple[Action, ...]:
    """PURE: what to do so the pod holds the aliases its readiness calls for. No verdict: nothing. A pod off its
    network (a disconnect whose connect never came) is connected; one with other aliases is disconnected and
    connected again (Podman cannot change a running container's aliases)."""
    if ready is None:
        return ()
    spec = frozenset(spec_aliases)
    wanted = serving_aliases(spec, service_aliases(spec), ready)
    connect = Connect(net.pod, net.network, tuple(sorted(wanted)))
    if not net.connected:
        return (connect,)
    if net.aliases & spec == wanted:
        return ()
    return Disconnect(net.pod, net.network), connect


def creation_aliases(spec: PodSpec) -> tuple[str, ...]:
    """PURE: the DNS aliases a pod is created with. A watched pod (a readinessProbe, behind a Service) starts with
    only its non-Service names and gets its Service names when it first passes readiness (`serve`: the rollout gate,
    or the monitor); any other pod has them all at once (Kubernetes counts a pod without a readinessProbe ready)."""
    if not watched(spec):
        return spec.aliases
    return tuple(sorted(serving_aliases(spec.aliases, service_aliases(spec.aliases), ready=False)))


def with_ready(record: Mapping[str, Any] | None, node: str, pod: str, services: Iterable[str],
               since: float) -> dict[str, Any]:
    """PURE: the store's `endpoints` value once `pod` of `node` is ready and in the DNS names of `services`."""
    out: dict[str, Any] = {n: dict(p) for n, p in (record or {}).items()}
    out.setdefault(node, {})[pod] = {"ready": True, "since": since, "services": sorted(services)}
    return out


def verdicts(record: Mapping[str, Any] | None, node: str) -> dict[str, bool]:
    """PURE: each pod of `node` with a readiness verdict in the store's `endpoints` value: ready or not. A watched pod
    with none is new (not yet served) or dates from before the monitor: the drift check leaves its Service names be."""
    return {p: bool(r.get("ready", True)) for p, r in ((record or {}).get(node) or {}).items()}


def unready(record: Mapping[str, Any] | None, node: str) -> frozenset[str]:
    """PURE: the pods of `node` the monitor last judged unready (`record`: the store's `endpoints` value)."""
    pods = (record or {}).get(node) or {}
    return frozenset(p for p, r in pods.items() if not r.get("ready", True))


def watched(spec: PodSpec) -> bool:
    """PURE: whether the monitor judges this pod: on a network, behind a Service, with a readiness probe (of an app
    container or a sidecar: a sidecar's readiness counts for the pod's)."""
    return bool(spec.network and service_aliases(spec.aliases) and any(c.readiness for c in spec.running_containers()))


# --- I/O: the rollout gate's pass hook -------------------------------------------------------------------


def serve(node: EndpointsNode, spec: PodSpec) -> bool:
    """Put a watched pod that just passed readiness in its Services' DNS names (`decide` for a ready pod); returns
    whether it moved. A pod that is gone or not watched: nothing. Errors are the node's (`podman.Node`)."""
    if not watched(spec):
        return False
    net = node.pod_network(spec.name, spec.network)
    if net is None:
        return False
    actions = decide(net, spec.aliases, True)
    for a in actions:
        act(node, net, a)
    return bool(actions)


def act(node: EndpointsNode, net: PodNetwork, a: Action) -> None:
    """Carry out one action of `decide` on `node`."""
    match a:
        case Disconnect():
            node.disconnect(net)
        case Connect(aliases=aliases):
            node.connect(net, aliases)
        case _:
            assert_never(a)


class Recorder:
    """What the rollout gate calls once it put a new pod in DNS (`probes.Gate(served=...)`): records its "ready"
    in the store's `endpoints` (so the monitor and `status` agree) and emits `endpoint.ready`, unless the store
    already says it is ready (the monitor saw it first). The read and the write are one step for the whole process
    (node steps run in parallel, each with its own recorder, on the same key)."""

    _lock = threading.Lock()

    def __init__(self, get: Callable[[str], Any], put: Callable[[str, Any], None], node: str, log: Log,
                 wall: Callable[[], float] = time.time) -> None:
        self._get, self._put, self._node, self._log, self._wall = get, put, node, log, wall

    def __call__(self, spec: PodSpec) -> None:
        if not watched(spec):
            return
        services = service_aliases(spec.aliases)
        try:
            with self._lock:
                record = self._get(STORE_KEY) or {}
                if ((record.get(self._node) or {}).get(spec.name) or {}).get("ready") is True:
                    return
                self._put(STORE_KEY, with_ready(record, self._node, spec.name, services, self._wall()))
        except Exception as e:  # noqa: BLE001 - a store that refuses the write: the pod is in DNS already
            self._log("endpoints.record-failed", level="warning", error=str(e))
            return
        ev.emit(self._log, ev.EndpointAdded(self._node, spec.name, ",".join(sorted(services))))


# --- the monitor ----------------------------------------------------------------------------------------------


class EndpointsNode(Protocol):
    """What the monitor needs of a node (`podman.Node`)."""

    name: str
    dialer: Dialer | None

    def read_pods(self) -> dict[str, LivePod]: ...

    def exec(self, container: str, command: tuple[str, ...], timeout: float) -> tuple[int | None, str]: ...

    def pod_network(self, pod: str, network: str) -> PodNetwork | None: ...

    def disconnect(self, net: PodNetwork) -> None: ...

    def connect(self, net: PodNetwork, aliases: Iterable[str]) -> None: ...


Check = Callable[[Dialer, str, Probe], "tuple[int | None, str]"]  # netprobe.check
Specs = Callable[[str], Mapping[str, PodSpec]]  # node -> the compiled pods of its last pass, by name
Record = Callable[[dict[str, Any]], None]  # writes the store's `endpoints` value (History.put)


class Monitor:
    """Runs the readiness probes of every watched pod of `nodes` and moves pods in and out of their Services' DNS;
    `tick` is called about once a second (daemon job `endpoints`)."""

    def __init__(self, nodes: Mapping[str, EndpointsNode], specs: Specs, log: Log, record: Record | None = None,
                 check: Check | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, known: Mapping[str, Any] | None = None,
                 reload: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        """`known`: the store's `endpoints` value at start (what status showed before a restart); `reload` reads it
        again, for the pods the rollout gate put in DNS since (`Recorder`) that the monitor has no verdict on."""
        if check is None:
            from .netprobe import check as netprobe_check

            check = netprobe_check
        self._nodes, self._specs, self._log, self._record = nodes, specs, log, record
        self._check: Check = check
        self._clock, self._wall, self._reload = clock, wall, reload
        self._tracks: dict[str, Track] = {}  # container id -> track
        self._verdicts: dict[str, bool] = {}  # pod id -> the readiness its network membership was last made to follow
        self._idle: dict[str, float] = {}  # node -> monotonic time of its next look while it has nothing to watch
        self._down: set[str] = set()
        self.state: dict[str, dict[str, dict[str, Any]]] = {n: dict(p) for n, p in (known or {}).items()}
        self.moves = 0  # pods moved in or out of DNS so far

    def tick(self) -> None:
        """One round over every node; a node that does not answer is skipped (the sync pass reports it)."""
        before = {n: dict(p) for n, p in self.state.items()}
        seen: set[str] = set()
        for node in self._nodes.values():
            compiled = self._specs(node.name)
            specs = {n: s for n, s in compiled.items() if watched(s)}
            if not specs:
                if compiled:  # stepped, with nothing to watch (before the first step: what the store said stays)
                    self.state.pop(node.name, None)
                continue
            if self._clock() < self._idle.get(node.name, 0.0):
                continue
            try:
                pods = node.read_pods()
            except Exception as e:  # noqa: BLE001 - a node down must not stop the others
                if node.name not in self._down:
                    self._down.add(node.name)
                    self._log("endpoints.unavailable", level="warning", node=node.name, error=str(e))
                continue
            self._down.discard(node.name)
            live = {n: p for n, p in pods.items() if n in specs}
            self._idle[node.name] = 0.0 if live else self._clock() + IDLE
            self.state[node.name] = {n: r for n, r in self.state.get(node.name, {}).items() if n in live}
            self._adopt(node.name, live)
            for name, pod in live.items():
                seen.update(c.id for c in pod.containers)
                self._pod(node, specs[name], pod)
        self._tracks = {c: t for c, t in self._tracks.items() if c in seen}
        if self.state != before and self._record is not None:
            self._save()

    def _adopt(self, node: str, live: Iterable[str]) -> None:
        """The store's record of the live pods of `node` the monitor has none of (the gate's `Recorder` wrote it)."""
        mine = self.state.setdefault(node, {})
        missing = [p for p in live if p not in mine]
        if not missing or self._reload is None:
            return
        try:
            stored = (self._reload() or {}).get(node) or {}
        except Exception as e:  # noqa: BLE001 - a store that cannot be read: the monitor's own verdicts stand
            self._log("endpoints.record-failed", level="warning", error=str(e))
            return
        mine.update({p: dict(stored[p]) for p in missing if p in stored})

    def _save(self) -> None:
        try:
            assert self._record is not None
            self._record({n: p for n, p in self.state.items() if p})
        except Exception as e:  # noqa: BLE001 - a store that refuses the write: DNS already follows readiness
            self._log("endpoints.record-failed", level="warning", error=str(e))

    def _pod(self, node: EndpointsNode, spec: PodSpec, pod: LivePod) -> None:
        ready, why = self._judge(node, spec, pod)
        if ready is None or self._verdicts.get(pod.id) is ready:
            return
        try:
            net = node.pod_network(pod.name, spec.network)
            if net is None:
                return  # the pod is gone: the pass sees to it
            actions = decide(net, spec.aliases, ready)
            for a in actions:
                act(node, net, a)
        except Exception as e:  # noqa: BLE001 - retried at the next tick; the sync pass reports a node down
            self._log("endpoints.move-failed", level="warning", node=node.name, pod=pod.name, error=str(e))
            return
        self._verdicts = {**{k: v for k, v in self._verdicts.items() if k != pod.id}, pod.id: ready}
        self._transition(node.name, spec, pod.name, ready, why, moved=bool(actions))

    def _transition(self, node: str, spec: PodSpec, pod: str, ready: bool, why: str, moved: bool) -> None:
        services = sorted(service_aliases(spec.aliases))
        old = self.state.get(node, {}).get(pod)
        self.state.setdefault(node, {})[pod] = {"ready": ready, "since": self._wall(), "services": services}
        self.moves += moved
        if old is not None and old.get("ready") is ready and not moved:
            return  # the same verdict as before a restart of the agent: nothing happened
        event: ev.Event = (ev.EndpointAdded(node, pod, ",".join(services)) if ready else
                           ev.EndpointRemoved(node, pod, ",".join(services), why))
        ev.emit(self._log, event)

    def _judge(self, node: EndpointsNode, spec: PodSpec, pod: LivePod) -> tuple[bool | None, str]:
        """The pod's readiness now (running its probes that are due), and why it is not ready."""
        verdicts: list[bool | None] = []
        why = ""
        for cs in spec.running_containers():
            c = pod.container_for(cs.name)
            if c is None or not c.running:
                verdicts.append(False)
                why = why or f"container {_shown(cs)} is not running"
                continue
            if cs.readiness is None:
                verdicts.append(True)
                continue
            ready, out = self._container(node, spec, cs, cs.readiness, pod.name, c.id, c.started_at)
            verdicts.append(ready)
            if ready is False and not why:
                why = out
        return pod_ready(verdicts), why

    def _container(self, node: EndpointsNode, spec: PodSpec, cs: ContainerSpec, probe: Probe, pod: str, cid: str,
                   started_at: int) -> tuple[bool | None, str]:
        now = self._clock()
        track = self._tracks.get(cid)
        if track is None or track.started_at != started_at:
            track = first_track(started_at, probe, now, self._wall())
        if now < track.next_run:
            self._tracks[cid] = track
            return track.ready, ""
        if probe_way(probe, node.dialer is not None) == OUTSIDE and node.dialer is not None:
            code, output = self._check(node.dialer, pod, probe)
        else:
            code, output = node.exec(cid, probe_command(probe), float(probe.timeout_seconds))
        track = self._tracks[cid] = observe(track, probe, code, self._clock())
        result = "timed out" if code is None else f"exit code {code}"
        why = f"container {_shown(cs)}: readiness probe failed {track.failures} time(s) in a row ({result})"
        return track.ready, f"{why}: {redact(output, spec.redactions, 200)}"


def _shown(cs: ContainerSpec) -> str:
    return cs.labels.get(L_CONTAINER, cs.name)


def specs_of(desired: Iterable[Any]) -> dict[str, PodSpec]:
    """The pods of a node's compiled desired states (`desired.NodeDesired`, oldest first), by name."""
    return {p.name: p for d in desired for w in d.workloads for p in w.pods}
