"""`logs`: a workload's container logs from every node it runs on, each line prefixed.

A leaf beside `status`: finds the pods by their labels on each node (`podman.Node.read_pods`)
and reads logs through each node's Podman API (`Node.logs`). With `follow`, one thread per
container, new pods picked up as they appear; a node that drops out is reported and followed
again when it is back. Writes
nothing anywhere. The lines are the application's own; the agent adds only the prefix.
"""

from __future__ import annotations

import queue
from collections import deque
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generator, Iterable

from .errors import AgentError, NodeError, NodeUnreachable
from .live import LiveContainer
from .model import ObjectRef
from .podman import Node

C_NAME = "io.gitops-agent.container"
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RETRY_SECONDS = 2.0  # a node that dropped out is pinged again this often
RESCAN_SECONDS = 2.0  # --follow looks for new pods (a rollout's) this often


class BadSelector(AgentError):
    """The object or duration given on the command line cannot be understood."""


@dataclass(frozen=True)
class Selector:
    """What to read: a workload (`kind/namespace/name`) or one pod by its Podman name."""

    ref: ObjectRef | None = None
    pod: str = ""

    def matches(self, pod_name: str, owner: ObjectRef | None) -> bool:
        return owner == self.ref if self.ref else pod_name == self.pod


def parse_selector(text: str) -> Selector:
    """`Deployment/demo/web`, `Pod/demo/db` (kubectl's short kinds work: deploy, sts, ds, po),
    or a bare word: one pod's Podman name, as `describe` and `status -o wide` show it."""
    parts = text.split("/")
    if len(parts) == 3 and all(parts):
        return Selector(ref=ObjectRef(_kind(parts[0]), parts[1], parts[2]))
    if len(parts) == 1 and parts[0]:
        return Selector(pod=parts[0])
    raise BadSelector(f"{text!r}: give KIND/NAMESPACE/NAME (e.g. Deployment/demo/web) or a pod name")


_KINDS = {k.lower(): k for k in ("Deployment", "StatefulSet", "DaemonSet", "Pod", "Service", "ConfigMap", "Secret",
                                  "PersistentVolumeClaim", "Namespace", "ReplicaSet", "ReplicationController", "Job",
                                  "CronJob")}
_KINDS.update({"deploy": "Deployment", "deployments": "Deployment", "sts": "StatefulSet", "ds": "DaemonSet",
               "po": "Pod", "pods": "Pod", "svc": "Service", "cm": "ConfigMap", "pvc": "PersistentVolumeClaim",
               "ns": "Namespace", "rs": "ReplicaSet", "rc": "ReplicationController", "jobs": "Job",
               "cj": "CronJob", "cronjobs": "CronJob"})


def _kind(word: str) -> str:
    try:
        return _KINDS[word.lower()]
    except KeyError:
        raise BadSelector(f"unknown kind {word!r} (one of {', '.join(sorted(set(_KINDS.values())))})") from None


def parse_since(text: str, now: float) -> float:
    """`10m`, `30s`, `2h`, `1d` → the unix time that long before `now`."""
    m = _SINCE.match(text.strip())
    if not m:
        raise BadSelector(f"--since {text!r}: give a duration like 30s, 10m, 2h or 1d")
    return now - int(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True)
class Target:
    """One container to read, on one node."""

    node: str
    pod: str
    container: str  # the manifest's container name
    id: str
    started_at: int

    @property
    def prefix(self) -> str:
        return f"[{self.node}/{self.pod}/{self.container}]"


def targets(node: Node, sel: Selector, container: str = "") -> list[Target]:
    """The selected containers on `node`, pod by pod."""
    out = []
    for pod in sorted(node.read_pods().values(), key=lambda p: p.name):
        if not sel.matches(pod.name, pod.owner):
            continue
        for c in pod.containers:
            name = _container_name(c)
            if not container or name == container:
                out.append(Target(node.name, pod.name, name, c.id, c.started_at))
    return out


def _container_name(c: LiveContainer) -> str:
    return c.labels.get(C_NAME, c.name)


Emit = Callable[[str], None]


def read(nodes: dict[str, Node], sel: Selector, out: Emit, err: Emit, *, container: str = "", tail: int | None = None,
         since: float | None = None, previous: bool = False) -> int:
    """Print the selected containers' logs from every node; how many containers were found."""
    found = 0
    for node in nodes.values():
        try:
            for t in targets(node, sel, container):
                found += 1
                until = None
                if previous:
                    until = float(t.started_at)
                    if not _has_lines(node.logs(t.id, until=until)):
                        err(f"{t.prefix} no earlier run kept by Podman (the container was not restarted)")
                        continue
                if until is not None and tail is not None:  # Podman cuts the tail before `until`: cut here
                    lines: Iterable[str] = deque(node.logs(t.id, since=since, until=until), maxlen=tail)
                else:
                    lines = node.logs(t.id, tail=tail, since=since, until=until)
                for line in lines:
                    out(f"{t.prefix} {line}")
        except NodeError as e:
            err(f"node {node.name}: {e}")
    return found


def _has_lines(lines: Generator[str, None, None]) -> bool:
    try:
        return next(lines, None) is not None
    finally:
        lines.close()  # closes the HTTP response at once


def follow(nodes: dict[str, Node], sel: Selector, out: Emit, err: Emit, stop: threading.Event, *, container: str = "",
           tail: int | None = None, since: float | None = None) -> int:
    """Stream the selected containers' logs from every node until `stop` is set (like `stern`).
    Pods are looked for again every RESCAN_SECONDS, so the new pods of a rollout are followed too.
    A node that drops out is reported, and followed again once it answers. Returns how many
    containers were found at the start (0: nothing to follow, returns at once)."""
    follower = _Follower(nodes, sel, stop, container=container, tail=tail, since=since)
    found = follower.scan(first=True)
    next_scan = time.monotonic() + RESCAN_SECONDS
    while found and not stop.is_set():
        try:
            kind, text = follower.lines.get(timeout=0.2)
            (out if kind == "out" else err)(text)
        except queue.Empty:
            pass
        if time.monotonic() >= next_scan:
            follower.scan(first=False)
            next_scan = time.monotonic() + RESCAN_SECONDS
    while not follower.lines.empty():
        kind, text = follower.lines.get_nowait()
        (out if kind == "out" else err)(text)
    return found


class _Follower:
    """The state `follow` shares with its threads (one per container): the queue of lines to print
    (("out" | "err", text)), the nodes that dropped out and the containers already followed."""

    def __init__(self, nodes: dict[str, Node], sel: Selector, stop: threading.Event, *, container: str,
                 tail: int | None, since: float | None) -> None:
        self.nodes = nodes
        self.sel = sel
        self.stop = stop
        self.container = container
        self.tail = tail
        self.since = since
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.down: set[str] = set()
        self.followed: set[str] = set()  # container ids
        self.lock = threading.Lock()

    def report_down(self, node: str, why: str) -> None:
        with self.lock:
            if node not in self.down:
                self.down.add(node)
                self.lines.put(("err", f"node {node}: dropped out ({why}); following the other nodes"))

    def report_up(self, node: str) -> None:
        with self.lock:
            if node in self.down:
                self.down.discard(node)
                self.lines.put(("err", f"node {node}: back; following it again"))

    def one(self, t: Target, start: float | None, n: int | None) -> None:
        """Follow one container (a thread): again from where it was lost when its node comes back."""
        node = self.nodes[t.node]
        while not self.stop.is_set():
            try:
                for line in node.logs(t.id, tail=n, since=start, follow=True):
                    self.lines.put(("out", f"{t.prefix} {line}"))
                    if self.stop.is_set():
                        return
                node.ping()  # the stream ended: the container stopped, or the node went away
                return
            except NodeUnreachable as e:
                self.report_down(t.node, str(e).split(": ", 1)[-1])
                lost = time.time()  # wall time: Podman's `since`
                self._wait_back(node)
                self.report_up(t.node)
                start, n = lost, None
            except NodeError as e:
                self.lines.put(("err", f"{t.prefix} {e}"))
                return

    def _wait_back(self, node: Node) -> None:
        """Ping `node` every RETRY_SECONDS until it answers or `stop` is set."""
        while not self.stop.wait(RETRY_SECONDS):
            try:
                node.ping()
                return
            except NodeError:
                continue

    def scan(self, first: bool) -> int:
        """Start a thread for each selected container not followed yet; how many are selected."""
        found = 0
        for node in self.nodes.values():
            if not first and node.name in self.down:
                continue  # its own threads wait for it to come back
            try:
                found_here = targets(node, self.sel, self.container)
            except NodeError as e:
                if first:
                    self.lines.put(("err", f"node {node.name}: {e}"))
                continue
            for t in found_here:
                found += 1
                if t.id not in self.followed:
                    self.followed.add(t.id)
                    args = (t, self.since, self.tail) if first else (t, None, None)  # a new pod: all of its lines
                    threading.Thread(target=self.one, args=args, daemon=True).start()
        return found
