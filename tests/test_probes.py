"""The probe state machine (probes.Prober) with a scripted exec and a fake clock: pure, no Podman."""

from __future__ import annotations

import dataclasses

from gitops_agent.desired import NO_SUCH_EXECUTABLE_EXIT, NO_TOOL_EXIT, ContainerSpec, PodSpec, probe_command, redact, redactions
from gitops_agent.live import LiveContainer, LivePod
from gitops_agent.model import ObjectRef, Probe
from gitops_agent.probes import IN_CONTAINER, OUTSIDE, Prober, probe_way

REF = ObjectRef("Deployment", "default", "web")


def spec(readiness: Probe | None = None, startup: Probe | None = None) -> PodSpec:
    c = ContainerSpec(
        name="web-abc-web", image="img", pull_policy="IfNotPresent", entrypoint=(), command=(), env={}, secret_env={},
        secret_mounts=(), volumes=(), working_dir=None, health_cmd=None, health_interval=0, health_timeout=0,
        health_retries=0, health_start_period=0, cpu_millis=None, memory_bytes=None, labels={},
        readiness=readiness, startup=startup,
    )
    return PodSpec("web-abc", REF, "abc", "gitops-default", (), (), "always", 1, (c,), {})


def pod(state: str = "running", started_at: int = 100, health: str = "", exit_code: int = 0) -> LivePod:
    c = LiveContainer("web-abc-web", "cid", "img", state, health, {"io.gitops-agent.container": "web"}, started_at, exit_code)
    return LivePod("web-abc", "pid", "Running", {}, (c,))


class Script:
    """Answers probe runs from a list of exit codes; records when each ran."""

    def __init__(self, codes: list[int | None], clock: list[float]) -> None:
        self.codes, self.clock, self.calls = list(codes), clock, []

    def __call__(self, container: str, command: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
        self.calls.append((self.clock[0], container, command, timeout))
        code = self.codes.pop(0)
        return code, f"output {code}"


def prober(codes: list[int | None]) -> tuple[Prober, Script, list[float]]:
    clock = [100.0]
    run = Script(codes, clock)
    return Prober(run, clock=lambda: clock[0]), run, clock


def test_no_probe_means_ready_while_running():
    p, run, _ = prober([])
    assert p.judge(spec(), pod()).ready
    assert not p.judge(spec(), pod(state="created")).ready
    assert run.calls == []


def test_readiness_waits_initial_delay_then_runs_every_period_until_success_threshold():
    probe = Probe("exec", ("cat", "/ready"), initial_delay_seconds=5, period_seconds=2, success_threshold=2)
    p, run, clock = prober([1, 0, 0])
    s = spec(readiness=probe)
    assert not p.judge(s, pod()).ready and run.calls == []  # t=100 < started 100 + 5
    clock[0] = 105
    v = p.judge(s, pod())
    assert not v.ready and not v.failed and len(run.calls) == 1  # failed once (threshold 3)
    clock[0] = 106
    assert not p.judge(s, pod()).ready and len(run.calls) == 1  # not due before 107
    clock[0] = 107
    assert not p.judge(s, pod()).ready  # one success of two
    clock[0] = 109
    assert p.judge(s, pod()).ready
    assert [c[0] for c in run.calls] == [105, 107, 109]
    assert run.calls[0][1:] == ("cid", ("cat", "/ready"), 1.0)


def test_readiness_failing_failure_threshold_times_fails_the_pod_with_its_output():
    probe = Probe("exec", ("false",), period_seconds=1, failure_threshold=2)
    p, _, clock = prober([1, 1])
    assert not p.judge(spec(readiness=probe), pod()).failed
    clock[0] += 1
    v = p.judge(spec(readiness=probe), pod())
    assert v.failed == "readiness probe failed 2 time(s) in a row (exit code 1)"
    assert (v.probe, v.container, v.output) == ("readiness", "web", "output 1")


def test_a_timeout_counts_as_a_failure():
    probe = Probe("exec", ("sleep", "9"), failure_threshold=1)
    p, _, _ = prober([None])
    assert p.judge(spec(readiness=probe), pod()).failed == "readiness probe failed 1 time(s) in a row (timed out)"


def test_startup_gates_readiness_and_fails_after_its_threshold():
    startup = Probe("exec", ("test", "-f", "/started"), period_seconds=1, failure_threshold=2)
    ready = Probe("exec", ("true",))
    p, run, clock = prober([1, 0, 0])
    s = spec(readiness=ready, startup=startup)
    assert not p.judge(s, pod()).ready
    clock[0] += 1
    assert p.judge(s, pod()).ready  # startup passed, then readiness ran at once
    assert [c[2] for c in run.calls] == [("test", "-f", "/started"), ("test", "-f", "/started"), ("true",)]
    p2, _, clock2 = prober([1, 1])
    p2.judge(s, pod())
    clock2[0] += 1
    v = p2.judge(s, pod())
    assert (v.probe, v.failed) == ("startup", "startup probe failed 2 time(s) in a row (exit code 1)")


def test_exited_or_restarted_container_is_a_crash():
    p, _, _ = prober([])
    v = p.judge(spec(), pod(state="exited", exit_code=3))
    assert (v.probe, v.failed) == ("crash", "container web exited with code 3")
    assert p.judge(spec(), pod(started_at=100)).ready
    v = p.judge(spec(), pod(started_at=130))
    assert v.probe == "crash" and "was restarted" in v.failed


def test_unhealthy_liveness_is_not_ready_and_missing_pod_or_container_is_not_ready():
    p, _, _ = prober([])
    assert not p.judge(spec(), pod(health="unhealthy")).ready
    assert not p.judge(spec(), None).ready
    assert not p.judge(spec(), LivePod("web-abc", "pid", "Running", {}, ())).ready


def test_probe_without_tools_fails_at_once_with_a_clear_message():
    p, _, _ = prober([NO_TOOL_EXIT])
    v = p.judge(spec(readiness=Probe("httpGet", port=80)), pod())
    assert v.failed == "readiness probe cannot run in container web: output 98"


def test_probe_commands():
    assert probe_command(Probe("exec", ("cat", "/x"))) == ("cat", "/x")
    tcp = probe_command(Probe("tcpSocket", port=5432, timeout_seconds=2))
    assert tcp[:2] == ("/bin/sh", "-c") and "nc -w 2 '127.0.0.1' 5432 </dev/null" in tcp[2]
    http = probe_command(Probe("httpGet", port=8080, path="/healthz", host="10.0.0.1", headers=(("X-Probe", "it's"),)))[2]
    assert "curl -fsSkg -o /dev/null -m 1 -H 'X-Probe: it'\\''s' 'http://10.0.0.1:8080/healthz'" in http
    assert "GET /healthz HTTP/1.0\\r\\nHost: 10.0.0.1\\r\\nX-Probe: it'\\''s\\r\\n\\r\\n" in http
    https = probe_command(Probe("httpGet", port=443, scheme="HTTPS"))[2]
    assert " nc " not in https and "no curl, wget'" in https


def test_redaction_hides_every_form_of_a_secret_value_and_bounds_the_output():
    pairs = redactions([("[S a key k]", b"hunter2-long\n"), ("[S a key f]", b"line-one\nline-two\n"), ("[S a key x]", b"abc")])
    text = "got hunter2-long and line-two; whole: line-one\nline-two\n; abc stays"
    assert redact(text, pairs) == "got [S a key k] and [S a key f]; whole: [S a key f]\n; abc stays"
    # cut after redacting: no fragment of a value survives at the edge of the kept tail
    long = "x" * 1000 + "hunter2-long" + "y" * 395
    kept = redact(long, pairs)
    assert len(kept) == 400 and kept.endswith("y" * 395) and "hunter" not in kept and "long" not in kept


def test_probe_output_is_redacted_where_it_is_recorded():
    s = spec(readiness=Probe("exec", ("x",), failure_threshold=1))
    s = dataclasses.replace(s, redactions=redactions([("[Secret c key t]", b"s3cr3t-value")]))
    p = Prober(lambda cid, cmd, t: (1, "TOKEN=s3cr3t-value " + "z" * 1000), clock=lambda: 1000.0)
    v = p.judge(s, pod())
    assert v.failed and "s3cr3t" not in v.output and "TOKEN=[Secret c key t]" not in v.output  # the tail is kept
    assert len(v.output) == 400
    p = Prober(lambda cid, cmd, t: (1, "TOKEN=s3cr3t-value"), clock=lambda: 1000.0)
    assert p.judge(s, pod()).output == "TOKEN=[Secret c key t]"


def test_startup_probe_output_and_a_crash_after_it_are_redacted_too():
    s = spec(startup=Probe("exec", ("x",), failure_threshold=1))
    s = dataclasses.replace(s, redactions=redactions([("[Secret c key t]", b"s3cr3t-value")]))
    p = Prober(lambda cid, cmd, t: (1, "boot failed, TOKEN=s3cr3t-value"), clock=lambda: 1000.0)
    v = p.judge(s, pod())
    assert v.probe == "startup" and v.output == "boot failed, TOKEN=[Secret c key t]"
    v = p.judge(s, pod(started_at=200))  # restarted: the crash verdict carries the last (redacted) output
    assert v.probe == "crash" and "s3cr3t" not in v.output


def test_a_pod_redacts_the_secrets_it_uses_and_not_its_configmaps():
    from gitops_agent.config import NodeConfig
    from gitops_agent.desired import compile_node
    from gitops_agent.manifests import SourceFile, parse

    docs = """\
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {a: secret-env-value, b: secret-file-value}
---
apiVersion: v1
kind: Secret
metadata: {name: e}
stringData: {E: secret-from-envfrom}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {k: plain-config-value}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: x
      image: img
      env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: a}}}, {name: K, valueFrom: {configMapKeyRef: {name: c, key: k}}}]
      envFrom: [{secretRef: {name: e}}]
      volumeMounts: [{name: v, mountPath: /v}]
  volumes: [{name: v, secret: {secretName: s, items: [{key: b, path: b}]}}]
"""
    rev = parse([SourceFile("p.yaml", docs.encode())], "main@sha1:" + "0" * 40)
    node = NodeConfig("n", "unix:///x")
    pod_spec = compile_node(rev, node, (node,)).workloads[0].pods[0]
    assert dict(pod_spec.redactions) == {"secret-env-value": "[Secret s key a]", "secret-file-value": "[Secret s key b]",
                                         "secret-from-envfrom": "[Secret e key E]"}
    assert "secret-env-value" not in repr(pod_spec)


def test_probe_way_http_and_tcp_from_outside_when_the_node_has_a_dialer_exec_always_inside():
    assert probe_way(Probe("httpGet", port=80), outside=True) == OUTSIDE
    assert probe_way(Probe("tcpSocket", port=80), outside=True) == OUTSIDE
    assert probe_way(Probe("exec", ("true",)), outside=True) == IN_CONTAINER
    assert probe_way(Probe("httpGet", port=80), outside=False) == IN_CONTAINER


def test_outside_probes_get_the_pod_name_and_exec_probes_still_run_in_the_container():
    """On a node with a dialer the httpGet readiness goes to `outside` (pod name, probe); exec to `run`."""
    clock = [100.0]
    run = Script([0], clock)
    outside: list[tuple[str, Probe]] = []

    def check(pod_name: str, probe: Probe) -> tuple[int | None, str]:
        outside.append((pod_name, probe))
        return (0, "GET http://10.0.0.2:8080/: HTTP 200") if len(outside) > 1 else (1, "dial tcp: connection refused")

    p = Prober(run, clock=lambda: clock[0], outside=check)
    http = Probe("httpGet", port=8080, period_seconds=1)
    s = spec(readiness=http, startup=Probe("exec", ("true",)))
    v = p.judge(s, pod())
    assert not v.ready and not v.failed and len(outside) == 1  # refused once of failureThreshold 3
    clock[0] += 1
    assert p.judge(s, pod()).ready
    assert outside == [("web-abc", http), ("web-abc", http)] and [c[2] for c in run.calls] == [("true",)]


def test_exec_probe_on_an_image_without_the_executable_fails_at_once():
    p, _, _ = prober([NO_SUCH_EXECUTABLE_EXIT])
    v = p.judge(spec(readiness=Probe("exec", ("cat", "/ready"))), pod())
    assert v.failed == "readiness probe cannot run in container web: output 97"


def test_http_liveness_is_tried_once_in_the_container_and_fails_the_pod_only_when_it_cannot_run():
    """Podman's healthcheck runs httpGet liveness in the container: an image without /bin/sh fails at once
    (instead of a restart loop); a probe that runs, whatever its result, is left to the healthcheck."""
    from dataclasses import replace
    live = Probe("httpGet", port=8080)
    p, run, _ = prober([NO_SUCH_EXECUTABLE_EXIT])
    s = spec()
    s = replace(s, containers=(replace(s.containers[0], liveness=live),))
    v = p.judge(s, pod())
    assert (v.probe, v.output) == ("liveness", "output 97")
    assert v.failed.startswith("liveness probe cannot run in container web")
    p, run, _ = prober([1])
    assert p.judge(s, pod()).ready and p.judge(s, pod()).ready and len(run.calls) == 1
    assert run.calls[0][2] == probe_command(live)


def test_probe_timing_runs_on_the_monotonic_clock_and_ignores_a_wall_clock_jump():
    """initialDelaySeconds counts from the container's start (wall time, Podman's); from then on the periods
    run on the monotonic clock, so an NTP step of an hour either way neither runs a probe early nor late."""
    probe = Probe("exec", ("cat", "/ready"), initial_delay_seconds=5, period_seconds=2, failure_threshold=3)
    mono, wall = [5000.0], [100.0]
    run = Script([1, 0], mono)
    p = Prober(run, clock=lambda: mono[0], wall=lambda: wall[0])
    s = spec(readiness=probe)
    assert not p.judge(s, pod(started_at=100)).ready and run.calls == []  # 5 s after the start: not yet
    mono[0], wall[0] = 5005.0, 105.0
    assert not p.judge(s, pod(started_at=100)).ready and len(run.calls) == 1
    wall[0] += 3600  # the wall clock jumps forward: the next period is still 2 s away
    mono[0] += 1
    assert not p.judge(s, pod(started_at=100)).ready and len(run.calls) == 1
    wall[0] -= 7200  # and back, an hour behind
    mono[0] += 1
    assert p.judge(s, pod(started_at=100)).ready and [c[0] for c in run.calls] == [5005.0, 5007.0]


def test_a_persisted_wall_deadline_is_taken_onto_the_monotonic_clock_once():
    """A deadline persisted as wall time becomes a point on the monotonic clock, read once."""
    from gitops_agent.probes import to_monotonic

    assert to_monotonic(1_000_600.0, wall=lambda: 1_000_000.0, clock=lambda: 42.0) == 642.0
    assert to_monotonic(1_000_000.0, wall=lambda: 1_000_010.0, clock=lambda: 42.0) == 32.0  # already past


def test_probe_ways_lists_a_grpc_liveness_probe_run_by_the_agent() -> None:
    """`status` shows a grpc liveness probe (carried by a label, not a Podman healthcheck) as run by the agent from
    outside the container, and as not run on a node whose pods it cannot reach."""
    from gitops_agent import liveness
    from gitops_agent.probes import LIVENESS_NOT_PROBED, probe_ways

    labels = {"io.gitops-agent.container": "api", **liveness.label(Probe("grpc", port=50051), 0, 30)}
    cs = type("CS", (), {"name": "p_api", "labels": labels, "startup": None, "readiness": None, "liveness": None})()
    row = {"container": "api", "probe": "liveness", "action": "grpc"}
    assert probe_ways([cs], outside=True) == [{**row, "runs": OUTSIDE}]
    assert probe_ways([cs], outside=False) == [{**row, "runs": LIVENESS_NOT_PROBED}]
