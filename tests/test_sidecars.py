"""Sidecar containers (an initContainers[] entry with restartPolicy: Always, Kubernetes 1.29+): from manifests to
Podman's create bodies, the Job's result and the plan, from literals; then one sync on a private Podman (the start
order through a shared hostPath, a sidecar alongside the app, one restarted when it exits, the stop order, and a
Job that completes when its app container exits 0 while its sidecar still runs)."""

from __future__ import annotations

import json
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import L_INIT, L_SIDECAR, PRE_STOP, compile_node, container_restart_policy
from gitops_agent.endpoints import watched
from gitops_agent.errors import RevisionRejected
from gitops_agent.jobs import job_run
from gitops_agent.live import ContainerProps, LiveContainer, LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.plan import StopSidecars, container_drift, plan
from gitops_agent.podman import _container_body
from gitops_agent.probes import Prober
from podman_env import WEB1
from test_mappings import parsed, problems  # a revision of one file p.yaml, and its problems
from test_pod_volumes import pod, pod_spec

NODE = NodeConfig("n1")

SIDECARS = """\
initContainers:
  - {name: first, image: "tool:1", command: ["true"]}
  - name: side
    image: "tool:1"
    restartPolicy: Always
    ports: [{containerPort: 9000, hostPort: 9000}]
    startupProbe: {exec: {command: [test, -f, /ready]}, periodSeconds: 1}
    readinessProbe: {exec: {command: ["true"]}}
    livenessProbe: {exec: {command: ["true"]}}
  - {name: second, image: "tool:1", command: ["true"]}
containers:
  - {name: app, image: "app:1"}
restartPolicy: Never
"""


def test_a_sidecar_is_created_in_its_place_restarted_always_and_probed_like_an_app_container() -> None:
    """Creation order is the manifest's (init containers, the sidecar among them, then the apps); the sidecar is no
    Podman init container, restarts always whatever the pod's restartPolicy, publishes its hostPort, has Podman's
    liveness healthcheck, and counts among the containers that run for the pod's life."""
    spec = pod_spec(pod(SIDECARS))
    assert [c.labels["io.gitops-agent.container"] for c in spec.every_container()] == ["first", "side", "second", "app"]
    first, side, second = (_container_body(spec, c) for c in spec.init_containers)
    assert first["init_container_type"] == second["init_container_type"] == "always"
    assert "init_container_type" not in side and side["restart_policy"] == "always"
    assert side["labels"][L_SIDECAR] == "1" and L_INIT not in side["labels"]
    assert side["healthconfig"]["Test"] == ["CMD", "true"]  # its livenessProbe, Podman's healthcheck
    assert _container_body(spec, spec.containers[0])["restart_policy"] == "no"
    assert [c.labels["io.gitops-agent.container"] for c in spec.running_containers()] == ["side", "app"]
    assert [(p.host_port, p.container_port) for p in spec.ports] == [(9000, 9000)]
    side_spec = spec.sidecars[0]
    assert side_spec.startup is not None and side_spec.readiness is not None
    assert container_restart_policy(spec, side_spec) == "always"


def test_a_sidecar_takes_probes_and_hooks_but_a_plain_init_container_and_an_app_container_keep_their_errors() -> None:
    """startupProbe stays an error on an init container that runs to completion; restartPolicy on an app
    container is an error that says what to do; only Always is a sidecar, which may have lifecycle hooks."""
    text = pod("""\
        initContainers:
          - {name: plain, image: "tool:1", startupProbe: {exec: {command: ["true"]}}}
          - {name: never, image: "tool:1", restartPolicy: Never}
        containers: [{name: app, image: "app:1", restartPolicy: Always}]
        """)
    found = problems(text)
    assert found[0] == (
        "p.yaml:6: Pod/p: spec.initContainers[0].startupProbe: is not allowed in an init container (it runs to "
        "completion before the app containers start; with restartPolicy: Always it is a sidecar, which may have "
        "probes and hooks)")
    assert any("spec.initContainers[1].restartPolicy" in p and "Always" in p for p in found), found
    assert found[-1] == ("p.yaml:8: Pod/p: spec.containers[0].restartPolicy: may be set on an init container only "
                         "(Always: a sidecar); remove it and set the pod's restartPolicy")
    assert len(found) == 3, found
    hooked = pod_spec(pod("""\
        initContainers:
          - {name: s, image: "tool:1", restartPolicy: Always, lifecycle: {postStart: {exec: {command: ["true"]}},
             preStop: {exec: {command: ["false"]}}}}
        containers: [{name: app, image: "app:1"}]
        """)).sidecars[0]
    assert hooked.post_start == ("true",) and json.loads(hooked.labels[PRE_STOP])["command"] == ["false"]


def test_a_sidecar_counts_in_the_template_hash_and_templates_without_one_keep_theirs() -> None:
    """Making an init container a sidecar is a new template; the sidecar field left at its default is not hashed."""
    def thash(text: str) -> str:
        (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
        return workload.template_hash

    plain = pod("initContainers: [{name: i, image: 'tool:1'}]\ncontainers: [{name: web, image: 'app:1'}]\n")
    side = pod("initContainers: [{name: i, image: 'tool:1', restartPolicy: Always}]\n"
               "containers: [{name: web, image: 'app:1'}]\n")
    assert thash(plain) != thash(side)
    assert thash(pod("containers: [{name: web, image: 'app:1'}]\n")) == "j58tp7wsnd"  # test_pod_volumes' pin


def test_sidecars_count_in_the_pods_request_as_kubernetes_scheduler_counts_them() -> None:
    """A sidecar's request adds to the app containers' and to every init container started after it (it keeps
    running), not to those before it."""
    small = NodeConfig("n1", cpu_millis=1000)

    def accepted(inits: str) -> bool:
        text = pod(f"""\
            initContainers: [{inits}]
            containers: [{{name: a, image: "app:1", resources: {{requests: {{cpu: 500m}}}}}}]
            """)
        try:
            parse([SourceFile("p.yaml", text.encode())], "main@sha1:" + "a" * 40, nodes=(small,))
        except RevisionRejected:
            return False
        return True

    side = '{name: s, image: "t:1", restartPolicy: Always, resources: {requests: {cpu: 300m}}}'
    init = '{name: i, image: "t:1", resources: {requests: {cpu: 800m}}}'
    assert accepted(f"{init}, {side}")  # 800m, then 300m + 500m
    assert not accepted(f"{side}, {init}")  # 300m + 800m while the init container runs
    assert not accepted(side.replace("300m", "600m"))  # 600m + 500m


def test_a_sidecars_readiness_probe_puts_its_pod_under_the_readiness_monitor_of_its_services() -> None:
    """A sidecar's readiness counts for the pod's, so a pod behind a Service whose only readinessProbe is a
    sidecar's is judged by the monitor that adds and removes it from the Service's DNS."""
    service = ("---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
               "spec: {selector: {app: p}, ports: [{port: 80}]}\n")
    probed = pod("""\
        initContainers: [{name: s, image: "t:1", restartPolicy: Always, readinessProbe: {exec: {command: ["true"]}}}]
        containers: [{name: a, image: "app:1"}]
        """)
    assert watched(pod_spec(probed + service))
    assert not watched(pod_spec(probed.replace(', readinessProbe: {exec: {command: ["true"]}}', "") + service))


JOB = textwrap.dedent("""\
    apiVersion: batch/v1
    kind: Job
    metadata: {name: ship}
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          initContainers: [{name: logs, image: "tool:1", restartPolicy: Always}]
          containers: [{name: run, image: "tool:1"}]
""")


def _job_pod(app_state: str, app_code: int, side_state: str) -> tuple[Any, LivePod]:
    rev = parse([SourceFile("job.yaml", JOB.encode())], "main@sha1:" + "a" * 40, nodes=(NODE,))
    desired = compile_node(rev, NODE, (NODE,))
    (w,) = desired.workloads
    spec = w.pods[0]
    side, app = spec.sidecars[0], spec.containers[0]
    live = LivePod(spec.name, "id", "Running", dict(spec.labels), (
        LiveContainer(side.name, "s", "tool:1", side_state, "", dict(side.labels), exit_code=143),
        LiveContainer(app.name, "a", "tool:1", app_state, "", dict(app.labels), exit_code=app_code),
    ))
    return desired, live


def test_a_jobs_pod_completes_with_its_app_containers_and_its_running_sidecars_are_then_stopped() -> None:
    """The sidecar neither keeps the Job running nor fails it (its 143 from SIGTERM is not the Job's); once the app
    container exited, the plan stops the sidecars that still run, and nothing more once they are stopped."""
    for app_code, phase in ((0, "Complete"), (4, "Failed")):
        desired, live = _job_pod("exited", app_code, "running")
        (w,) = desired.workloads
        assert job_run(w, [live]).phase == phase
        acts = plan(desired, LiveState("n1", pods={live.name: live})).actions
        stops = [a for a in acts if isinstance(a, StopSidecars)]
        assert [(a.op, a.target, a.stop_timeout) for a in stops] == [("stop-sidecars", live.name, 30)]
        assert job_run(w, [live]).exit_codes == (() if app_code == 0 else (app_code,))
    desired, live = _job_pod("running", 0, "running")
    assert job_run(desired.workloads[0], [live]).phase == "Running"
    assert not [a for a in plan(desired, LiveState("n1", pods={live.name: live})).actions
                if isinstance(a, StopSidecars)]
    desired, live = _job_pod("exited", 0, "exited")
    assert not [a for a in plan(desired, LiveState("n1", pods={live.name: live})).actions
                if isinstance(a, StopSidecars)]


def test_a_pod_whose_app_containers_are_done_stops_its_sidecars_and_one_stopped_by_hand_is_started_again() -> None:
    """restartPolicy Never, outside a Job too: the kubelet stops the sidecars once the app containers exited; while
    they run, a sidecar stopped by hand is started again (`start-pod` starts only the stopped containers); one
    removed by hand replaces the pod, as a removed app container does."""
    desired = compile_node(parsed(pod(SIDECARS)), NODE, (NODE,))
    (w,) = desired.workloads
    spec = w.pods[0]
    side, app = spec.sidecars[0], spec.containers[0]

    def actions(app_state: str, side_state: str) -> list[tuple[str, str]]:
        live = LivePod(spec.name, "id", "Running", dict(spec.labels), (
            LiveContainer(side.name, "s", "tool:1", side_state, "", dict(side.labels)),
            LiveContainer(app.name, "a", "app:1", app_state, "", dict(app.labels), exit_code=1),
        ))
        return [(a.op, a.reason) for a in plan(desired, LiveState("n1", pods={spec.name: live})).actions
                if a.op.endswith(("-pod", "-sidecars"))]

    assert actions("exited", "running") == [("stop-sidecars", "its app containers are done: its sidecars stop")]
    alone = LivePod(spec.name, "id", "Running", dict(spec.labels),
                    (LiveContainer(app.name, "a", "app:1", "running", "", dict(app.labels)),))
    assert [(a.op, a.reason) for a in plan(desired, LiveState("n1", pods={spec.name: alone})).actions
            if a.op.endswith("-pod")] == [("replace-pod", f"container {side.name} removed by hand")]
    assert actions("running", "exited") == [("start-pod", f"sidecar {side.name} stopped")]
    assert actions("running", "running") == [] and actions("exited", "exited") == []


def test_a_restarting_sidecar_makes_the_pod_not_ready_without_failing_it_and_its_restart_policy_is_compared() -> None:
    """A sidecar that exited or was restarted by Podman is waited for (not ready), never a crash of the rollout;
    drift compares the sidecar's restart policy with always, not with the pod's."""
    spec = pod_spec(pod(SIDECARS))
    side, app = spec.sidecars[0], spec.containers[0]

    def live(side_state: str, started: int) -> LivePod:
        return LivePod(spec.name, "id", "Running", dict(spec.labels), (
            LiveContainer(side.name, "s", "tool:1", side_state, "", dict(side.labels), started_at=started),
            LiveContainer(app.name, "a", "app:1", "running", "", dict(app.labels), started_at=1),
        ))

    prober = Prober(lambda cid, argv, timeout: (0, ""), clock=lambda: 100.0)
    assert prober.judge(spec, live("running", 1)).ready
    verdict = prober.judge(spec, live("exited", 1))
    assert not verdict.ready and not verdict.failed
    verdict = prober.judge(spec, live("running", 5))  # restarted: started again
    assert not verdict.failed
    assert prober.judge(spec, live("running", 5)).ready
    kept = ContainerProps(image_name="tool:1", labels=dict(side.labels), restart_policy="always")
    assert "restart policy" not in container_drift(spec, side, kept)
    assert "restart policy" in container_drift(spec, side, replace(kept, restart_policy="no"))


# --- one sync on a private Podman ---------------------------------------------------------

LOG = "/log"


def _manifests(ns: str, host_dir: Path) -> str:
    """Pod `order`: a plain init container, a sidecar with a startupProbe, a plain init container that needs it up,
    a sidecar that exits every 2 s, a last sidecar, and the app; every one appends to files of a hostPath. Job
    `ship`: a sidecar that would run for ever, and an app container that exits 0."""
    trap = "trap 'echo {0}-term >> /log/stop; exit 0' TERM; echo {0} >> /log/order; "
    vol = f"volumeMounts: [{{name: log, mountPath: {LOG}}}]"
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: order, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{name: log, hostPath: {{path: {host_dir}/pod, type: Directory}}}}]
  initContainers:
    - {{name: first, image: {WEB1}, command: [sh, -c, "echo first >> /log/order"], {vol}}}
    - name: side
      image: {WEB1}
      restartPolicy: Always
      command: [sh, -c, "{trap.format('side')}sleep 0.5; touch /log/side-ready; sleep 100000 & wait"]
      lifecycle: {{postStart: {{exec: {{command: [touch, /log/side-post]}}}}}}
      startupProbe: {{exec: {{command: [cat, /log/side-ready]}}, periodSeconds: 1, failureThreshold: 10}}
      {vol}
    - name: second
      image: {WEB1}
      command: [sh, -c, "[ -f /log/side-ready ] && [ -f /log/side-post ] && echo second >> /log/order"]
      {vol}
    - name: blink
      image: {WEB1}
      restartPolicy: Always
      command: [sh, -c, "trap 'exit 0' TERM; echo up >> /log/blink; sleep 2 & wait"]
      {vol}
    - name: last
      image: {WEB1}
      restartPolicy: Always
      command: [sh, -c, "{trap.format('last')}sleep 100000 & wait"]
      lifecycle: {{preStop: {{exec: {{command: [sh, -c, "echo last-hook >> /log/stop"]}}}}}}
      {vol}
  containers:
    - name: app
      image: {WEB1}
      command: [sh, -c, "{trap.format('app')}sleep 100000 & wait"]
      {vol}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: ship, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      volumes: [{{name: log, hostPath: {{path: {host_dir}/job, type: Directory}}}}]
      initContainers:
        - name: logs
          image: {WEB1}
          restartPolicy: Always
          command: [sh, -c, "{trap.format('logs')}sleep 100000 & wait"]
          {vol}
      containers:
        - {{name: run, image: {WEB1}, command: [sh, -c, "sleep 0.5; echo done >> /log/order"], {vol}}}
"""


def test_sidecars_on_real_podman(clean_podman: Any, git_remote: Any, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The start order is the manifest's, the second init container running once the sidecar's postStart hook
    ran and it passed its startupProbe; the sidecars run alongside the app, one that exits is restarted; removing
    the pod stops the app first, then the sidecars, the last one first (after its preStop hook). The Job is
    Complete once its app container exited 0, and its sidecar is stopped then."""
    svc, repo = clean_podman, git_remote
    for d in ("pod", "job"):
        (tmp_path / d).mkdir()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": "clusters/edge"},
        "nodes": [{"name": "local", "url": svc.url}], "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
        "prune": {"enabled": True}, "policy": {"allowedHostPaths": [{"pathPrefix": str(tmp_path)}]},
    }))
    ns = "sidecars"

    def states() -> dict[str, tuple[str, int]]:
        listed = json.loads(svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true",
                                       "--format", "json").stdout or "[]")
        return {c["Labels"]["io.gitops-agent.container"]: (c["State"], c["ExitCode"]) for c in listed
                if not c.get("IsInfra")}

    def lines(name: str) -> list[str]:
        path = tmp_path / name
        return path.read_text().split() if path.exists() else []

    def sync() -> None:
        assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err

    repo.write("clusters/edge/all.yaml", _manifests(ns, tmp_path))
    repo.commit_and_push("sidecars")
    sync()
    assert lines("pod/order") == ["first", "side", "second", "last", "app"]
    found = states()
    assert all(found[n][0] == "running" for n in ("side", "last", "app")), found
    for _ in range(60):  # blink exits after 2 s; Podman starts it again (restartPolicy Always on a sidecar)
        if len(lines("pod/blink")) >= 2:
            break
        time.sleep(0.1)
    assert len(lines("pod/blink")) >= 2

    for _ in range(50):
        if states().get("run", ("", 0))[0] == "exited":
            break
        time.sleep(0.1)
    assert states()["run"] == ("exited", 0) and states()["logs"][0] == "running"
    sync()  # the Job's app container exited 0: its sidecar is stopped, the Job is Complete
    assert states()["logs"][0] == "exited" and lines("job/stop") == ["logs-term"]
    capsys.readouterr()
    assert main(["status", "--config", str(cfg), "--output", "json"]) == 0
    jobs = [o for o in json.loads(capsys.readouterr().out)["objects"] if o["kind"] == "Job"]
    assert [(o["state"], o["job"]["succeeded"]) for o in jobs] == [("Complete", 1)]

    repo.write("clusters/edge/all.yaml", _manifests(ns, tmp_path).split("---\napiVersion: v1\nkind: Pod")[0])
    repo.commit_and_push("the pod and the job removed")
    sync()
    assert lines("pod/stop") == ["app-term", "last-hook", "last-term", "side-term"]
    assert states() == {}
