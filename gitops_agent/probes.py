"""Readiness and startup probes, run by the agent while it waits for new pods.

Liveness is Podman's job (a healthcheck with restart on failure, so it keeps
working while the agent is down); an httpGet/tcpSocket liveness probe is tried
once in each new container, so an image that cannot run Podman's in-container
script fails the rollout with the reason instead of a restart loop. Readiness and startup gate a rollout, so the
agent runs them itself, with Kubernetes' timing: `initialDelaySeconds` after the
container started, one run every `periodSeconds`, `successThreshold` /
`failureThreshold` consecutive results. Unlike Kubernetes, a pod whose readiness
probe fails `failureThreshold` times in a row during a rollout fails the rollout
at once instead of waiting out the progress deadline (the issue's "fails readiness").

How one probe runs (`probe_way`): `exec` in the container (Node.exec);
`httpGet` / `tcpSocket` from outside the container, as the kubelet does, through
the node's dialer (`dial`, `netprobe`) when the node has one (local unix://
nodes), else as a script in the container (`desired.probe_command`, the
fallback for tcp:// nodes, whose pod addresses the agent cannot reach).

`Prober.judge` turns one observation of a pod into a verdict; the only I/O is
the `run` callable (Node.exec) and the `outside` callable (netprobe.check over
the node's dialer), so the state machine is tested with fakes. `Gate` judges the
new pods of one node step with it: probes, minReadySeconds, the progress deadline
(`PodVerdict`; `RolloutFailed` when `apply` waits on it).

Durations run on `time.monotonic()` (a wall clock stepped by NTP neither fails nor
stretches a step); the wall clock is read only to place a container's start time
(Podman's, in unix seconds) and to take in an absolute deadline the caller persisted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from . import liveness, netprobe
from .desired import NO_SUCH_EXECUTABLE_EXIT, NO_TOOL_EXIT, ContainerSpec, PodSpec, is_sidecar, probe_command, redact
from .errors import Consequence, NodeError
from .live import LiveContainer, LivePod
from .model import Probe
from .reasons import Reason

if TYPE_CHECKING:
    from .podman import Node

Clock = Callable[[], float]

Run = Callable[[str, tuple[str, ...], float], "tuple[int | None, str]"]  # (container id, argv, timeout)
Outside = Callable[[str, Probe], "tuple[int | None, str]"]  # (pod name, probe): httpGet/tcpSocket from outside

IN_CONTAINER = "in the container"
OUTSIDE = "by the agent, from outside the container"
HEALTHCHECK = "by Podman's healthcheck, in the container"
LIVENESS_NOT_PROBED = "not run: the agent cannot reach this node's pods (a tcp:// node)"


def probe_way(probe: Probe, outside: bool, kind: str = "readiness") -> str:
    """PURE: how a `kind` probe runs on a node that can (`outside`) or cannot reach its pods' addresses.
    Liveness is always Podman's healthcheck, so it keeps working while the agent is down."""
    if kind == "liveness":
        return HEALTHCHECK
    return OUTSIDE if outside and probe.action != "exec" else IN_CONTAINER


def probe_ways(containers: Iterable[ContainerSpec], outside: bool) -> list[dict[str, str]]:
    """PURE: one row per probe of `containers` (for `status`): container, probe kind, action, how it runs."""
    rows = []
    for cs in containers:
        name = cs.labels.get("io.gitops-agent.container", cs.name)
        for kind, probe in (("startup", cs.startup), ("readiness", cs.readiness), ("liveness", cs.liveness)):
            if probe is not None:
                runs = probe_way(probe, outside, kind)
                rows.append({"container": name, "probe": kind, "action": probe.action, "runs": runs})
        by_agent = liveness.from_label(cs.labels)  # a grpc liveness probe: the agent's monitor runs it
        if by_agent is not None:
            rows.append({"container": name, "probe": "liveness", "action": by_agent[0].action,
                         "runs": OUTSIDE if outside else LIVENESS_NOT_PROBED})
    return rows


@dataclass(frozen=True)
class Verdict:
    ready: bool
    failed: str = ""  # why the pod failed (empty: not failed)
    container: str = ""
    probe: str = ""  # "readiness" | "startup" | "crash"
    output: str = ""  # the probe's last output or the container's exit


@dataclass
class _Track:
    started_at: int
    probe: str = ""
    successes: int = 0
    failures: int = 0
    next_run: float = 0.0
    startup_ok: bool = False
    liveness_checked: bool = False
    ready: bool = False
    output: str = ""


class Prober:
    """Remembers each new container's probe results across observations."""

    def __init__(self, run: Run, clock: Clock = time.monotonic, outside: Outside | None = None,
                 wall: Clock | None = None) -> None:
        """`clock` times the probes (monotonic); `wall` places a container's start time (unix seconds)
        on it: time.time with the default clock, else `clock` itself (a test's fake clock is both)."""
        self._run = run
        self._outside = outside
        self._clock = clock
        self._wall = wall or (time.time if clock is time.monotonic else clock)
        self._tracks: dict[str, _Track] = {}

    def judge(self, spec: PodSpec, pod: LivePod | None) -> Verdict:
        """Ready when every container runs and passes its probes (its sidecars' too); failed on a crash,
        a restart, or `failureThreshold` failed startup/readiness probes in a row. A sidecar that exited or
        was restarted is not ready (Podman restarts it, as the kubelet does), never a failure of its own."""
        if pod is None:
            return Verdict(False)
        ready = True
        for cs in spec.running_containers():
            live = pod.container_for(cs.name)
            if live is None:
                return Verdict(False)
            if is_sidecar(cs) and (not live.running or self._restarted(live)):
                self._tracks.pop(live.id, None)
                ready = False
                continue
            v = self._container(cs, live, pod.name, spec.redactions)
            if v.failed:
                return v
            ready = ready and v.ready
        return Verdict(ready)

    def _container(self, cs: ContainerSpec, c: LiveContainer, pod: str, hide: tuple[tuple[str, str], ...]) -> Verdict:
        name = c.labels.get("io.gitops-agent.container", c.name)
        if c.state in ("exited", "stopped", "dead"):
            return Verdict(False, f"container {name} exited with code {c.exit_code}", name, "crash",
                           f"exit code {c.exit_code}")
        if not c.running:
            return Verdict(False)
        t = self._tracks.setdefault(c.id, _Track(started_at=c.started_at))
        if c.started_at != t.started_at:
            return Verdict(False, f"container {name} was restarted (it exited or failed its liveness probe)", name,
                           "crash", t.output)
        if c.health == "unhealthy":
            return Verdict(False)
        if cs.liveness is not None and cs.liveness.action != "exec" and not t.liveness_checked:
            t.liveness_checked = True
            failed = self._can_run_healthcheck(cs.liveness, c, hide)
            if failed:
                return Verdict(False, failed, name, "liveness", t.output)
        if cs.startup is not None and not t.startup_ok:
            failed = self._step(t, cs.startup, "startup", c, pod, hide)
            if failed:
                return Verdict(False, failed, name, "startup", t.output)
            if not t.startup_ok:
                return Verdict(False)
        if cs.readiness is None:
            return Verdict(True)
        failed = self._step(t, cs.readiness, "readiness", c, pod, hide)
        if failed:
            return Verdict(False, failed, name, "readiness", t.output)
        return Verdict(t.ready)

    def _restarted(self, c: LiveContainer) -> bool:
        t = self._tracks.get(c.id)
        return t is not None and t.started_at != c.started_at

    def _can_run_healthcheck(self, probe: Probe, c: LiveContainer, hide: tuple[tuple[str, str], ...]) -> str:
        """Podman runs an httpGet/tcpSocket liveness probe as a script in the container: run it once,
        so an image without /bin/sh or without curl/wget/nc fails the rollout with the reason instead of
        being restarted by its healthcheck forever. Any other result is the healthcheck's to judge."""
        code, output = self._run(c.id, probe_command(probe), float(probe.timeout_seconds))
        if code not in (NO_TOOL_EXIT, NO_SUCH_EXECUTABLE_EXIT):
            return ""
        self._tracks[c.id].output = redact(output, hide)
        name = c.labels.get("io.gitops-agent.container", c.name)
        return (f"liveness probe cannot run in container {name} (Podman's healthcheck runs {probe.action} liveness "
                "probes in the container)")

    def _step(self, t: _Track, probe: Probe, kind: str, c: LiveContainer, pod: str,
              hide: tuple[tuple[str, str], ...]) -> str:
        """Run `probe` if it is due; returns a failure message once it has failed enough.
        Its output is kept only redacted (the pod's Secret values) and bounded: this is the one
        place every probe's output passes before it can reach a message, log or the store."""
        now = self._clock()
        if t.probe != kind:  # initialDelaySeconds after the container started, on this clock
            t.probe, t.successes, t.failures = kind, 0, 0
            # what is left of the initial delay, on our clock; never more than the delay (a wall-clock step)
            delay = probe.initial_delay_seconds
            t.next_run = now + min(delay, max(0.0, c.started_at + delay - self._wall()))
        if now < t.next_run:
            return ""
        t.next_run = now + probe.period_seconds
        if probe_way(probe, self._outside is not None) == OUTSIDE:
            assert self._outside is not None
            code, output = self._outside(pod, probe)
        else:
            code, output = self._run(c.id, probe_command(probe), float(probe.timeout_seconds))
        t.output = output = redact(output, hide)
        if code == 0:
            t.successes, t.failures = t.successes + 1, 0
            if kind == "startup":
                t.startup_ok = True
            elif t.successes >= probe.success_threshold:
                t.ready = True
            return ""
        t.successes, t.failures = 0, t.failures + 1
        t.ready = False
        if code in (NO_TOOL_EXIT, NO_SUCH_EXECUTABLE_EXIT):
            return f"{kind} probe cannot run in container {c.labels.get('io.gitops-agent.container', c.name)}: {output}"
        if t.failures >= probe.failure_threshold:
            result = "timed out" if code is None else f"exit code {code}"
            return f"{kind} probe failed {t.failures} time(s) in a row ({result})"
        return ""


class RolloutFailed(NodeError):
    """A new pod crashed, failed its readiness/startup probe, or was not ready by the
    deadline. The old pods that were not yet replaced keep running. Stalled: the revision
    is marked failed and not retried until Git moves (a NodeError only by origin)."""

    code = Reason.ROLLOUT_FAILED
    consequence = Consequence.STALLED

    def __init__(self, node: str, message: str, pod: str = "", probe: str = "", output: str = "") -> None:
        super().__init__(node, message)
        self.pod, self.probe, self.output = pod, probe, output


@dataclass(frozen=True)
class PodVerdict:
    """One new pod judged by the `Gate`: available (ready for minReadySeconds), or `failed` (the whole
    message, naming the workload and the pod), with the probe that failed and its last output."""

    available: bool
    failed: str = ""
    probe: str = ""  # "readiness" | "startup" | "liveness" | "crash" | "deadline"
    output: str = ""


def why_not_ready(pod: LivePod | None) -> str:
    """PURE: what keeps `pod` from being ready, for a deadline's message."""
    if pod is None:
        return "pod is gone"
    bad = [f"container {c.labels.get('io.gitops-agent.container', c.name)} is {c.health or c.state}"
           for c in pod.containers if not (c.running and c.health != "unhealthy")]
    return "; ".join(bad) or "its readiness probe has not passed"


def overdue(spec: PodSpec, pod: LivePod | None) -> PodVerdict:
    """PURE: the verdict on a pod still not ready when the progress deadline passed."""
    why = why_not_ready(pod)
    return PodVerdict(False, f"{spec.owner}: pod {spec.name} not ready by the progress deadline ({why})",
                      "deadline", why)


def to_monotonic(wall_deadline: float, wall: Clock = time.time, clock: Clock = time.monotonic) -> float:
    """An absolute wall-clock deadline (what a caller persists across restarts) as a point on `clock`:
    read once, so a later step of the wall clock moves it no more."""
    return clock() + (wall_deadline - wall())


class Gate:
    """Judges new pods on one node step: probes (`Prober`), minReadySeconds held
    unless `hold` is off (a rollback to a known-good template), one absolute
    `deadline` on the monotonic clock (`clock.now`: a wall-clock step neither fails nor stretches a step;
    the fleet persists it as wall time for a restart and converts it back, `clock.local_deadline`)."""

    def __init__(self, node: Node, deadline: float, hold: bool = True, cap: float | None = None,
                 served: Callable[[PodSpec], None] | None = None) -> None:
        """`served`: called once a new pod the gate saw ready is in its Services' DNS (`endpoints.Recorder`)."""
        self.node = node
        self.served = served
        self._served: set[str] = set()
        self.step_deadline = self.deadline = deadline
        self.hold = hold
        self.cap = cap
        dialer = node.dialer
        outside: Outside | None = (lambda pod, probe: netprobe.check(dialer, pod, probe)) if dialer else None
        self.prober = Prober(node.exec, outside=outside)
        self._ready_since: dict[str, float] = {}

    def verdict(self, spec: PodSpec, pod: LivePod | None) -> PodVerdict:
        """One look at a new pod: available once ready for minReadySeconds; failed when it crashed or
        failed its probes."""
        v = self.prober.judge(spec, pod)
        if v.failed:
            shown = f"{spec.owner}: pod {spec.name}: {v.failed}" + (f": {v.output}" if v.output else "")
            return PodVerdict(False, shown, v.probe, v.output)
        now = time.monotonic()
        if not v.ready:
            self._ready_since.pop(spec.name, None)
            return PodVerdict(False)
        if spec.name not in self._served:
            self._serve(spec)
        since = self._ready_since.setdefault(spec.name, now)
        return PodVerdict(now - since >= (spec.min_ready_seconds if self.hold else 0))

    def _serve(self, spec: PodSpec) -> None:
        """The pass hook: a new pod with a readinessProbe behind a Service was created with only its non-Service
        names (`endpoints.creation_aliases`); once ready it joins its Services' DNS, before it counts as available
        (so a one-shot `sync` serves it too). A node error here fails the step as any other."""
        from . import endpoints  # endpoints runs probes the way this module does (probe_way): imported late

        if endpoints.watched(spec):
            endpoints.serve(self.node, spec)
            if self.served is not None:
                self.served(spec)
        self._served.add(spec.name)

    def available(self, spec: PodSpec, pod: LivePod | None) -> bool:
        """Ready for minReadySeconds; raises RolloutFailed when the pod failed."""
        v = self.verdict(spec, pod)
        if v.failed:
            raise RolloutFailed(self.node.name, v.failed, pod=spec.name, probe=v.probe, output=v.output)
        return v.available

    def arm(self, seconds: float) -> None:
        """A workload's own progress deadline (capped), starting now, within the step's absolute deadline."""
        if self.cap is not None:
            seconds = min(seconds, self.cap)
        self.deadline = min(self.step_deadline, time.monotonic() + seconds)

    def overdue(self) -> bool:
        return time.monotonic() > self.deadline

    def check_deadline(self, spec: PodSpec, pod: LivePod | None) -> None:
        if self.overdue():
            v = overdue(spec, pod)
            raise RolloutFailed(self.node.name, v.failed, pod=spec.name, probe=v.probe, output=v.output)
