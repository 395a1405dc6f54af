"""emptyDir `sizeLimit` on the node's disk, enforced as the kubelet enforces it: by eviction.

Kubernetes puts no quota on such a volume either: the kubelet's eviction manager measures each pod's emptyDir
volumes every housekeeping period (about 10 s) and evicts a pod whose volume holds more than its sizeLimit (the pod
fails with reason `Evicted`; its controller makes a new pod, with a new empty emptyDir). Here, while `gitops-agent
run` runs, `Monitor.tick` (every `evictionPeriod`, default 10 s) asks each node for the size of the agent's disk
emptyDir volumes that have a sizeLimit (`podman.Node.empty_dir_usage`: two API calls per node, none per volume),
`decide` picks the pods over a limit, and each is evicted: removed through the normal stop path (preStop hooks,
its terminationGracePeriodSeconds, sidecars last) together with its emptyDir volumes, never a claim's volume.
The pass the monitor then asks for makes the pod again (a new empty emptyDir), as its controller would.

Deliberate difference (README): a bare Pod is made again too (Kubernetes leaves an evicted bare Pod Failed); the
event, the alert and `status` (`evictions`) say it was evicted.

`decide` is the pure part, tested from literals. Must not touch a pod whose volume is under its limit, a volume
the agent did not make (its labels), or any claim's volume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from threading import Lock
from typing import Any, Protocol

from .events import PodEvicted, emit
from .log import Log

STORE_KEY = "evictions"  # the state store's record of the last evictions (`status` shows them)
KEEP = 20  # evictions kept in that record, the newest last
PERIOD = 10.0  # seconds between measurements by default (`evictionPeriod`): the kubelet's housekeeping period


@dataclass(frozen=True)
class Usage:
    """One disk emptyDir volume with a sizeLimit, as measured on its node: `used` and `limit` in bytes."""

    node: str
    pod: str
    volume: str  # its name in the pod spec
    used: int
    limit: int
    workload: str = ""  # Kind/namespace/name of the pod's workload


@dataclass(frozen=True)
class Eviction:
    """A pod to evict, for the first of its volumes over its limit."""

    node: str
    pod: str
    volume: str
    used: int
    limit: int
    workload: str = ""

    @property
    def message(self) -> str:
        return f'Evicted: emptyDir volume "{self.volume}" uses {self.used} bytes, over its sizeLimit {self.limit}'


def decide(usages: Iterable[Usage]) -> list[Eviction]:
    """PURE: the pods to evict, one per pod (its first volume over its limit, by volume name), in node and pod
    order. A volume over its limit is one that holds more bytes than its (positive) limit, as the kubelet
    compares; exactly at the limit is not over it."""
    evict: dict[tuple[str, str], Eviction] = {}
    for u in sorted(usages, key=lambda u: (u.node, u.pod, u.volume)):
        if u.pod and u.limit > 0 and u.used > u.limit and (u.node, u.pod) not in evict:
            evict[(u.node, u.pod)] = Eviction(u.node, u.pod, u.volume, u.used, u.limit, u.workload)
    return list(evict.values())


def recorded(known: Any, done: Iterable[Eviction], at: float, keep: int = KEEP) -> list[dict[str, Any]]:
    """PURE: the store's record of evictions after `done` at `at` (the last `keep`, the newest last)."""
    before = [e for e in known if isinstance(e, dict)] if isinstance(known, list) else []
    return (before + [{**asdict(e), "message": e.message, "at": at} for e in done])[-keep:]


class EvictionNode(Protocol):
    """What the monitor needs of a node (`podman.Node`)."""

    name: str

    def empty_dir_usage(self) -> list[Usage]: ...

    def remove_pod(self, name: str, stop_timeout: int | None = None) -> None: ...


class Monitor:
    """Measures the disk emptyDir volumes of `nodes` and evicts the pods over a limit; `tick` runs every
    `evictionPeriod`. It holds `lock` (the daemon's, which each pass holds too) for the whole tick, taken without
    waiting: a pass running, the tick waits for the next period; a pass that starts meanwhile (a drift pass the
    eviction's own stops trigger) waits for it, so a pass and an eviction never work on the same pod. A node whose
    maintenance window keeps drift repair off (`closed()`, `driftRepair: inWindow`) is not measured: the pass
    would not make its pod again until the window opens. `evicted()` after evictions asks for a pass."""

    def __init__(self, nodes: Mapping[str, EvictionNode], log: Log, record: Callable[[list[Eviction]], None],
                 evicted: Callable[[], None], lock: Lock | None = None,
                 closed: Callable[[], frozenset[str]] = frozenset) -> None:
        self._nodes, self._log, self._record, self._evicted = nodes, log, record, evicted
        self._lock, self._closed = lock or Lock(), closed
        self._down: set[str] = set()  # nodes whose last measurement failed (logged once)
        self.evictions = 0

    def tick(self) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._tick()
        finally:
            self._lock.release()

    def _tick(self) -> None:
        usages: list[Usage] = []
        closed = self._closed()
        for node in self._nodes.values():
            if node.name in closed:
                continue
            try:
                usages += node.empty_dir_usage()
            except Exception as e:  # noqa: BLE001 - a node down must not stop the others' (the pass reports it)
                if node.name not in self._down:
                    self._down.add(node.name)
                    self._log("eviction.unavailable", level="warning", node=node.name, error=str(e))
                continue
            self._down.discard(node.name)
        done = [e for e in decide(usages) if self._evict(e)]
        if done:
            self._record(done)
            self.evictions += len(done)
            self._evicted()

    def _evict(self, e: Eviction) -> bool:
        """Remove the pod with its emptyDir volumes (its own grace period and preStop hooks), then say so."""
        try:
            self._nodes[e.node].remove_pod(e.pod)
        except Exception as err:  # noqa: BLE001 - measured again, and evicted again, at the next period
            self._log("eviction.failed", level="error", node=e.node, pod=e.pod, error=str(err))
            return False
        emit(self._log, PodEvicted(node=e.node, pod=e.pod, workload=e.workload, volume=e.volume, used=e.used,
                                   limit=e.limit, error=e.message))
        return True
