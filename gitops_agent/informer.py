"""Live state from Podman's event stream, like a Kubernetes informer: the daemon's copy of each node.

Sits between `podman.Node` and everything that reads a node's live state (`Node.read`): the daemon gives
every node an `Informer` (`watch`), which keeps the `LiveState` of the last full list (`Node.list_live`)
and answers reads from it while nothing has changed. A thread per node reads Podman's event stream
(`Node.events`); an event about a managed object (or about a name the copy holds) marks the copy stale,
and the next read lists again. A steady-state pass therefore makes no list call at all.

Level-triggered safety stays: a full re-list when the watch starts, each time the stream is opened again
after a break (reconnect with backoff; the copy is not trusted between the break and that re-list: every
read lists meanwhile, as without a cache), and every `resyncInterval`. Differences a resync finds in a copy
that events said was current are counted (`resync_differences`, should stay 0) and logged as missed; any
difference a re-list finds in managed objects starts a pass (`on_drift`), which repairs what needs it.

Drift: a managed container that died, stopped, was killed, paused or removed, or a pod (network, volume)
the copy holds that was stopped or removed, calls `on_drift(node)` at once (the daemon debounces and runs a
pass). The agent's own writes do not: `Node` tells the informer the path of each write (`writing`), and
events about an object written within `EXPECTED_FOR` seconds are the pass's own (they still mark the copy
stale). So a pass never triggers another one by its own writes; a pass triggered by a restart Podman made
itself finds nothing to do and writes nothing.

A node whose Podman refuses the event stream (an API without /events) is listed on every read, logged
once; the stream is tried again with a long backoff. Works over every transport `Node` speaks (unix, tcp,
ssh through its tunnel). Must not decide what to change (`plan`), nor talk to podman-py (`podman`).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping

from .desired import MANAGED, SECRET_PREFIX, SEP
from .errors import NodeError, NodeUnreachable
from .live import LiveState, PropsCache
from .log import Log
from .podman import EventStream, Node

Verdict = Literal["ignore", "changed", "drift"]

EXPECTED_FOR = 2.0  # seconds after the agent's write to an object during which its events are the agent's own
BACKOFF_START = 0.5  # seconds before the first reconnect of a broken stream; doubles on each failure
BACKOFF_CAP = 30.0
REFUSED_BACKOFF = 300.0  # a node that refuses the event stream is asked again this often

# events that change nothing a list call returns
_QUIET_CONTAINER = frozenset({"exec", "exec_died", "attach", "detach", "mount", "unmount", "sync", "export",
                              "commit", "copy", "checkpoint", "exec_create", "exec_start", "top", "resize"})
_CONTAINER_DRIFT = frozenset({"died", "stop", "kill", "remove", "pause", "oom"})
_OBJECT_DRIFT = frozenset({"stop", "kill", "remove", "pause", "died"})  # of a pod, network or volume
_IMAGE_CHANGES = frozenset({"pull", "tag", "untag", "remove", "load", "import", "build", "prune"})
_DROPPED_KEPT = 1000  # network membership events remembered for lists in flight
_MEMBERSHIP = frozenset({"connect", "disconnect"})  # network events about a container (Actor.ID)
_WRITTEN = re.compile(r"^/(?:pods|containers|networks|volumes|secrets)/([^/?]+)")
_NOT_NAMES = frozenset({"create", "json", "prune"})


@dataclass(frozen=True)
class Known:
    """What a copy of the live state holds, by name: what an event is matched against."""

    pods: frozenset[str] = frozenset()
    pod_ids: Mapping[str, str] | None = None  # pod id -> name
    networks: frozenset[str] = frozenset()
    volumes: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    health: Mapping[str, str] | None = None  # container name -> its health as listed
    infra: frozenset[str] = frozenset()  # ids of the pods' infra containers (network connect/disconnect events)

    @staticmethod
    def of(live: LiveState | None) -> "Known":
        if live is None:
            return Known()
        return Known(pods=frozenset(live.pods), pod_ids={p.id: p.name for p in live.pods.values()},
                     networks=frozenset(live.networks), volumes=frozenset(live.volumes), secrets=live.secrets,
                     health={c.name: c.health for p in live.pods.values() for c in p.containers},
                     infra=frozenset(p.infra.id for p in live.pods.values() if p.infra is not None))


def written_name(path: str) -> str | None:
    """The object a write's API path names (`/pods/web_1/stop` -> web_1); None for creates and lists."""
    m = _WRITTEN.match(path)
    return m.group(1) if m and m.group(1) not in _NOT_NAMES else None


def pod_of_container(name: str, pod_id: str, known: Known) -> str:
    """The pod a container event is about: by the pod id Podman gives, else by the name (`<pod>_<container>`)."""
    found = (known.pod_ids or {}).get(pod_id) if pod_id else None
    return found or (name.rsplit(SEP, 1)[0] if SEP in name else "")


def classify(event: Mapping[str, Any], known: Known, expected: Callable[[str], bool]) -> Verdict:
    """PURE. What one Podman event means for the copy: nothing, a stale copy, or drift to repair now.
    `expected(name)`: the agent itself wrote to that object a moment ago."""
    kind = str(event.get("Type") or "")
    action = str(event.get("Action") or event.get("status") or "")
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    name = str(attrs.get("name") or "")
    if kind == "container":
        return _container(action, attrs, name, known, expected)
    if kind == "image":
        return "changed" if action in _IMAGE_CHANGES else "ignore"
    if kind == "network" and action in _MEMBERSHIP:  # Actor: the container; its `name`, the container's
        return _membership(event, known, expected)
    holds = _held(kind, name, known)
    if holds is None:
        return "changed"  # a type this version does not know (system reset, ...): list again to be sure
    if name not in holds:
        return "changed" if action == "create" else "ignore"  # a new object may be managed (labels are not sent)
    if action in _OBJECT_DRIFT and not expected(name):
        return "drift"
    return "changed"


def _membership(event: Mapping[str, Any], known: Known, expected: Callable[[str], bool]) -> Verdict:
    """A container connected to or disconnected from a network: drift when it is a managed pod's infra
    container and the agent did not just write to that network (or that container)."""
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    if str(actor.get("ID") or event.get("ID") or "") not in known.infra:
        return "ignore"
    network, name = str(attrs.get("network") or event.get("network") or ""), str(attrs.get("name") or "")
    return "changed" if (network and expected(network)) or (name and expected(name)) else "drift"


def props_changed(event: Mapping[str, Any]) -> str:
    """PURE. The id of the container whose inspect an event changed (network membership), else ""."""
    action = str(event.get("Action") or event.get("status") or "")
    if str(event.get("Type") or "") == "network" and action in _MEMBERSHIP:
        return str((event.get("Actor") or {}).get("ID") or event.get("ID") or "")
    return ""


def _held(kind: str, name: str, known: Known) -> frozenset[str] | None:
    """The names of objects of `kind` the copy holds; None for a type this module does not know."""
    if kind == "secret":
        return known.secrets if name.startswith(SECRET_PREFIX) or not name else frozenset()
    return {"pod": known.pods, "network": known.networks, "volume": known.volumes}.get(kind)


def _container(action: str, attrs: Mapping[str, Any], name: str, known: Known,
               expected: Callable[[str], bool]) -> Verdict:
    if attrs.get(MANAGED) != "true" or action in _QUIET_CONTAINER:
        return "ignore"
    if action == "health_status":
        status = attrs.get("health_status")
        listed = (known.health or {}).get(name)
        return "ignore" if status is not None and listed == status else "changed"
    if name.endswith("-infra"):
        return "changed"  # the pod's own events say what happened to it
    pod = pod_of_container(name, str(attrs.get("podId") or ""), known)
    if action in _CONTAINER_DRIFT and not expected(name) and not (pod and expected(pod)):
        return "drift"
    return "changed"


def differences(old: LiveState, new: LiveState) -> list[str]:
    """PURE. What differs between two copies of a node's live state, one short line per object
    (names only: never a value)."""
    out: list[str] = []
    out += _diff("pod", old.pods, new.pods)
    out += _diff("network", old.networks, new.networks)
    out += _diff("volume", old.volumes, new.volumes)
    out += _diff("secret", {s: s in old.marked_secrets for s in old.secrets},
                 {s: s in new.marked_secrets for s in new.secrets})
    out += _diff("image", dict.fromkeys(old.images), dict.fromkeys(new.images))
    return out


def _diff(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterable[str]:
    for name in sorted(set(old) | set(new)):
        if name not in new:
            yield f"{kind} {name} gone"
        elif name not in old:
            yield f"{kind} {name} appeared"
        elif old[name] != new[name]:
            yield f"{kind} {name} changed"


class Informer:
    """One node's event-driven copy of its live state (see the module docstring). `read` is what
    `Node.read` answers with once the daemon set `node.cache` to this (`watch`)."""

    def __init__(self, node: Node, resync_interval: float, on_drift: Callable[[str], None], log: Log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.resync_interval = resync_interval
        self.on_drift = on_drift
        self.log = log
        self.clock = clock
        self.relists = 0  # full lists made by the watch itself (start, reconnect, resync)
        self.resyncs = 0
        self.resync_differences = 0  # objects a resync found changed in a copy events said was current
        self.drift_events = 0
        self._lock = threading.Lock()
        self._live: LiveState | None = None
        self._known = Known()
        self._trusted = False  # the stream is open and the copy was listed after it opened
        self._changes = 0  # bumped by every write, relevant event and stream break
        self._copy_changes = -1  # `_changes` when the list that made the copy began: current iff equal
        self._tickets = 0  # lists begun, in order: an older list never replaces a newer copy
        self._copy_ticket = -1
        self._epoch = 0  # bumped at each stream break: a list begun before it is not trusted
        self._recent: dict[str, float] = {}  # object name -> when the agent last wrote to it
        self._props: PropsCache = {}  # container id -> its inspected properties (`live.ContainerProps`)
        self._dropped: list[str] = []  # ids whose props an event changed, in order: a list begun before keeps none
        self._dropped_base = 0  # how many of the oldest `_dropped` were trimmed (bounded memory)
        self._stream: EventStream | None = None
        self._stop = threading.Event()
        self._refused_logged = False
        self._threads = [threading.Thread(target=self._watch, name=f"informer-{node.name}", daemon=True),
                         threading.Thread(target=self._resync_loop, name=f"resync-{node.name}", daemon=True)]

    @property
    def trusted(self) -> bool:
        """Reads are answered from the copy (the stream is open and was re-listed since)."""
        return self._trusted

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)

    # --- what Node calls ---------------------------------------------------------------

    def read(self) -> LiveState:
        with self._lock:
            if self._trusted and self._copy_changes == self._changes and self._live is not None:
                return self._live
            begun = self._begin()
        live = self._list(begun)
        self._store(live, begun)
        return live

    def writing(self, path: str) -> None:
        name = written_name(path)
        with self._lock:
            self._changes += 1
            if name:
                self._recent[name] = self.clock()

    # --- the watch ---------------------------------------------------------------------

    def _begin(self) -> tuple[int, int, int, int]:
        """(ticket, changes, epoch, props events seen) of a list about to begin; the caller holds the lock."""
        self._tickets += 1
        return self._tickets, self._changes, self._epoch, self._dropped_base + len(self._dropped)

    def _list(self, begun: tuple[int, int, int, int]) -> LiveState:
        """A full list, reusing the properties of containers inspected before (a copy: the watch may drop
        entries meanwhile); the properties it read are kept, but for containers an event changed since."""
        with self._lock:
            props = dict(self._props)
        live = self.node.list_live(props)
        with self._lock:
            seen = begun[3] - self._dropped_base
            for cid in self._dropped[max(seen, 0):]:
                props.pop(cid, None)
            if begun[0] >= self._copy_ticket and seen >= 0:  # (trimmed meanwhile: keep none of what it read)
                self._props = props
        return live

    def _store(self, live: LiveState, begun: tuple[int, int, int, int], trust: bool = False) -> None:
        ticket, changes, epoch, _ = begun
        with self._lock:
            if ticket < self._copy_ticket:
                return  # a newer list finished first
            self._live, self._known, self._copy_ticket, self._copy_changes = live, Known.of(live), ticket, changes
            if trust and epoch == self._epoch:  # listed across a break: events in between may be missing
                self._trusted = True

    def _expected(self, name: str) -> bool:
        now = self.clock()
        with self._lock:
            self._recent = {n: t for n, t in self._recent.items() if now - t < EXPECTED_FOR}
            return name in self._recent

    def _watch(self) -> None:
        delay = BACKOFF_START
        while not self._stop.is_set():
            try:
                stream = self.node.events()
            except NodeUnreachable:
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            except NodeError as e:
                self._refused(e)
                self._stop.wait(REFUSED_BACKOFF)
                continue
            delay = BACKOFF_START
            self._follow(stream)
            if not self._stop.is_set():
                self.log("informer.broken", level="warning", node=self.node.name,
                         message=f"the event stream of node {self.node.name} broke: its live state is listed "
                                 "on every pass until the stream is back and re-listed")
                self._stop.wait(delay)

    def _refused(self, e: NodeError) -> None:
        if not self._refused_logged:
            self._refused_logged = True
            self.log("informer.fallback", level="warning", node=self.node.name,
                     message=f"node {self.node.name} gives no event stream ({e.reason}): its live state is "
                             "listed on every pass")

    def _follow(self, stream: EventStream) -> None:
        """Re-list once the stream is open (no gap), then apply its events until it breaks."""
        with self._lock:
            self._stream = stream
        try:
            if self._stop.is_set():
                return
            self._relist("start" if self._live is None else "reconnect")
            for event in stream:
                self._on_event(event)
        except NodeError:
            pass  # a broken stream, or a list that failed: the copy is not trusted until the next re-list
        finally:
            with self._lock:
                self._trusted, self._stream = False, None
                self._epoch += 1
                self._changes += 1
            stream.close()

    def _on_event(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            known = self._known
        verdict = classify(event, known, self._expected)
        changed = props_changed(event)
        if verdict == "ignore" and not changed:
            return
        with self._lock:
            self._changes += 1
            if changed:
                self._props.pop(changed, None)
                self._dropped.append(changed)
                if len(self._dropped) > _DROPPED_KEPT:
                    self._dropped_base += len(self._dropped) // 2
                    del self._dropped[:len(self._dropped) // 2]
        if verdict == "drift":
            self.drift_events += 1
            attrs = (event.get("Actor") or {}).get("Attributes") or {}
            self.log("drift.event", node=self.node.name, type=event.get("Type", ""),
                     action=event.get("Action", ""), object=attrs.get("name", ""))
            self.on_drift(self.node.name)

    def _relist(self, why: str) -> None:
        """A full list into the copy; what changed since the last copy is logged, and repaired at once."""
        with self._lock:
            old, clean = self._live, self._copy_changes == self._changes
            if why == "resync":  # `podman update` sends no event in Podman 4.3: a resync inspects every container
                self._props = {}
            begun = self._begin()
        live = self._list(begun)
        self._store(live, begun, trust=True)
        found = differences(old, live) if old is not None else []
        with self._lock:
            self.relists += 1
            if why == "resync":
                self.resyncs += 1
                if clean:
                    self.resync_differences += len(found)
        if found:  # missed: the events had said the copy was current
            missed = why == "resync" and clean
            self.log("informer.differences", level="warning" if missed else "info", node=self.node.name,
                     why=why, missed=missed, count=len(found), first="; ".join(found[:5]))
        if any(not d.startswith("image ") for d in found):
            # a stale copy may hide a hand change behind the events that made it stale: a pass decides
            self.on_drift(self.node.name)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_interval):
            if not self._trusted:
                continue  # the watch re-lists itself once its stream is back
            try:
                self._relist("resync")
            except NodeError:
                pass  # unreachable now: the stream breaks too, and its reconnect re-lists


def watch(nodes: Mapping[str, Node], resync_interval: float, on_drift: Callable[[str], None],
          log: Log) -> dict[str, Informer]:
    """Start an informer on each node and route the node's reads through it."""
    informers = {name: Informer(node, resync_interval, on_drift, log) for name, node in nodes.items()}
    for name, inf in informers.items():
        nodes[name].cache = inf
        inf.start()
    return informers


def unwatch(nodes: Mapping[str, Node], informers: Mapping[str, Informer]) -> None:
    """Stop the informers; the nodes' reads list again."""
    for name, inf in informers.items():
        nodes[name].cache = None
        inf.close()
