"""gRPC liveness probes, run by the agent from outside the container, as the kubelet runs every liveness probe.

Sits beside `probes` (which gates rollouts) and runs all the time the daemon runs: an exec, httpGet or tcpSocket
liveness probe is Podman's healthcheck (it runs in the container, so it keeps working while the agent is down),
but no shell tool in an image speaks gRPC, so a `livenessProbe.grpc` is the agent's. `desired` puts the probe on
the container as a label (`LABEL`, JSON); `Monitor.tick` reads each node's managed containers, runs every probe
that is due through the node's dialer (`netprobe.check`, the gRPC health-checking protocol) and restarts a
container after `failureThreshold` failures in a row, with its termination grace period, as the kubelet does.

The difference from Kubernetes (README): the probe runs only while the agent runs, and only on nodes whose pods
the agent can reach (unix:// and ssh:// nodes); on a tcp:// node it is logged once as not running.

`decide` is the pure part ("restart now?" from one result), tested from literals; the I/O is the `Node` handed in.
Must not decide anything about rollouts (that is `probes`) and must not touch a container without `LABEL`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from .dial import Dialer
from .log import Log
from .model import Probe

if TYPE_CHECKING:  # `desired` imports this module; `live` imports `desired`
    from .live import LivePod

LABEL = "io.gitops-agent.liveness-grpc"  # on a container: its gRPC liveness probe, JSON (see `label`)
IDLE_READ = 10.0  # seconds between reads of the nodes while no container has a gRPC liveness probe


@dataclass(frozen=True)
class Track:
    """What the monitor remembers of one container: the start it judged, failures in a row, its next run."""

    started_at: int
    next_run: float
    failures: int = 0


def label(probe: Probe, start_period: int, grace: int, restart: bool = True) -> dict[str, str]:
    """PURE: the container label that carries a gRPC liveness probe (empty for any other probe). `restart`:
    False for a pod with restartPolicy Never, whose container the kubelet stops and leaves stopped."""
    if probe.action != "grpc":
        return {}
    return {LABEL: json.dumps({
        "port": probe.port, "service": probe.service, "period": probe.period_seconds,
        "timeout": probe.timeout_seconds, "failures": probe.failure_threshold,
        "start": start_period, "grace": grace, **({} if restart else {"restart": False}),
    }, sort_keys=True)}


def from_label(labels: Mapping[str, str]) -> tuple[Probe, int, int] | None:
    """PURE: (probe, start period, grace) from a container's labels; None without the label or if it is unreadable.
    (`restarts` says what a failure does.)"""
    raw = labels.get(LABEL)
    if raw is None:
        return None
    try:
        d = json.loads(raw)
        probe = Probe(action="grpc", port=int(d["port"]), service=str(d["service"]),
                      period_seconds=max(1, int(d["period"])), timeout_seconds=max(1, int(d["timeout"])),
                      failure_threshold=max(1, int(d["failures"])))
        return probe, int(d["start"]), int(d["grace"])
    except (ValueError, KeyError, TypeError):
        return None


def first_track(started_at: int, start_period: int) -> Track:
    """PURE: a container just seen (or just restarted): its first probe runs `start_period` s after its start."""
    return Track(started_at=started_at, next_run=float(started_at + start_period))


def decide(track: Track, probe: Probe, code: int | None, now: float) -> tuple[Track, bool]:
    """PURE: the track after one probe result (0 success, 1 failure, None timed out) at `now`, and whether to
    restart the container now: after `failureThreshold` failures in a row (a timeout is a failure, as in
    Kubernetes). A success resets the count; liveness' successThreshold is always 1."""
    failures = 0 if code == 0 else track.failures + 1
    restart = failures >= probe.failure_threshold
    return replace(track, failures=0 if restart else failures, next_run=now + probe.period_seconds), restart


def restarts(labels: Mapping[str, str]) -> bool:
    """PURE: whether a failed gRPC liveness probe restarts the container (else it is stopped: restartPolicy Never)."""
    try:
        return json.loads(labels.get(LABEL, "{}")).get("restart", True) is not False
    except (ValueError, AttributeError):
        return True


class LivenessNode(Protocol):
    """What the monitor needs of a node (`podman.Node`)."""

    name: str
    dialer: Dialer | None

    def read_pods(self) -> dict[str, LivePod]: ...

    def restart_container(self, container: str, stop_timeout: int) -> None: ...

    def stop_container(self, container: str, stop_timeout: int) -> None: ...


Check = Callable[[Dialer, str, Probe], "tuple[int | None, str]"]  # netprobe.check


class Monitor:
    """Runs the gRPC liveness probes of every managed container of `nodes`; `tick` is called about once a second."""

    def __init__(self, nodes: Mapping[str, LivenessNode], log: Log, check: Check | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if check is None:
            from .netprobe import check as netprobe_check

            check = netprobe_check
        self._check: Check = check
        self._nodes, self._log, self._clock = nodes, log, clock
        self._tracks: dict[str, Track] = {}
        self._unreachable: set[str] = set()  # containers already logged as not probed (tcp:// nodes)
        self._next_read = 0.0
        self._down: set[str] = set()  # nodes whose last read failed (logged once)
        self.restarts = 0

    def tick(self) -> None:
        """One round over every node; a node that does not answer is skipped (the sync pass reports it). With no
        gRPC liveness probe anywhere, the nodes are read again only after IDLE_READ seconds."""
        if self._clock() < self._next_read:
            return
        seen: set[str] = set()
        for node in self._nodes.values():
            try:
                pods = node.read_pods()
            except Exception as e:  # noqa: BLE001 - a node down must not stop the probes of the others
                if node.name not in self._down:  # once until it answers again: the sync pass reports it too
                    self._down.add(node.name)
                    self._log("liveness.unavailable", level="warning", node=node.name, error=str(e))
                continue
            self._down.discard(node.name)
            for pod in pods.values():
                for c in pod.containers:
                    if c.running and LABEL in c.labels:
                        seen.add(c.id)
                        self._container(node, pod.name, c.id, c.name, c.started_at, c.labels)
        for gone in set(self._tracks) - seen:
            del self._tracks[gone]
        self._next_read = 0.0 if seen else self._clock() + IDLE_READ

    def _container(self, node: LivenessNode, pod: str, cid: str, name: str, started_at: int,
                   labels: Mapping[str, str]) -> None:
        found = from_label(labels)
        if found is None:
            return
        probe, start_period, grace = found
        if node.dialer is None:
            if cid not in self._unreachable:
                self._unreachable.add(cid)
                self._log("liveness.not-probed", level="warning", node=node.name, container=name,
                          reason="the agent cannot reach this node's pods (tcp://): the gRPC liveness probe does "
                                 "not run")
            return
        track = self._tracks.get(cid)
        if track is None or track.started_at != started_at:
            track = first_track(started_at, start_period)
        now = self._clock()
        if now < track.next_run:
            self._tracks[cid] = track
            return
        code, output = self._check(node.dialer, pod, probe)
        track, restart = decide(track, probe, code, self._clock())
        self._tracks[cid] = track
        if code != 0:
            self._log("liveness.failed", level="warning", node=node.name, container=name, output=output[:200],
                      failures=track.failures if not restart else probe.failure_threshold)
        if restart:
            self._restart(node, cid, name, grace, output, restarts(labels))

    def _restart(self, node: LivenessNode, cid: str, name: str, grace: int, output: str, again: bool) -> None:
        """Restart the container, or stop it for good (`again` False: restartPolicy Never), as the kubelet does."""
        self._log("liveness.restart" if again else "liveness.stop", level="warning", node=node.name, container=name,
                  output=output[:200])
        try:
            if again:
                node.restart_container(cid, grace)
            else:
                node.stop_container(cid, grace)
            self.restarts += 1
        except Exception as e:  # noqa: BLE001 - retried at the next failures; the sync pass reports a node down
            self._log("liveness.restart-failed", level="error", node=node.name, container=name, error=str(e))
        self._tracks.pop(cid, None)
