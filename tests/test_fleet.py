"""Multi-node rollouts on three real Podman nodes (each its own service, storage
and network namespace: the `fleet` fixture), driven from a real Git remote.

Every assertion reads state back from the nodes' Podman or from the agent's
own records; timings come from the agent's event log and from Podman's
container start times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.status import status
from podman_env import HTTPD, WEB1, WEB2, make_bare_image, run_each

NS = f"fl{os.getpid()}"
NAMES = ("n1", "n2", "n3")


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}


BARE1, BARE2 = "localhost/gitops-test/bare:1", "localhost/gitops-test/bare:2"
BARE_HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


def workload(name: str, image: str, *, kind: str = "Deployment", replicas: int | None = 3, readiness: dict[str, Any] | None = None,
             min_ready: int = 0, deadline: int = 30, annotations: dict[str, str] | None = None,
             node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    # a shell-less image has no sh for HTTPD's TERM trap: its httpd runs as is
    command = BARE_HTTPD if image in (BARE1, BARE2) else HTTPD
    container: dict[str, Any] = {"name": "web", "image": image, "command": command,
                                 "readinessProbe": readiness or {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}}
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": 1, "containers": [container]}
    if node_selector:
        pod["nodeSelector"] = node_selector
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}
    if min_ready:
        spec["minReadySeconds"] = min_ready
    if kind == "Deployment":
        spec["replicas"] = replicas
        spec["progressDeadlineSeconds"] = deadline
        spec["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    metadata: dict[str, Any] = {"name": name, "namespace": NS}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, "spec": spec}


def push(repo: Any, message: str, *docs: dict[str, Any]) -> str:
    repo.write("apps/all.yaml", yaml.safe_dump_all([namespace(), *docs], sort_keys=False))
    return repo.commit_and_push(message)


def write_config(tmp_path: Path, repo: Any, fleet: list[Any], labels: dict[str, dict[str, str]] | None = None) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "path": "apps"},
        "nodes": [{"name": n, "url": svc.url, "labels": (labels or {}).get(n, {})} for n, svc in zip(NAMES, fleet)],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "60s",
    }))
    return cfg


class Events(list):
    """A Log that keeps (time, event, fields)."""

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        self.append((time.time(), event, fields))

    def of(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, f) for t, e, f in self if e == event]


def sync(cfg: Path, events: Events | None = None) -> Any:
    agent = Agent(config_mod.load(str(cfg)), events if events is not None else Events())
    try:
        return agent.sync()
    finally:
        agent.close()


def app_containers(svc: Any) -> dict[str, dict[str, Any]]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c for c in json.loads(out or "[]") if not c.get("IsInfra")}


def ids(svc: Any) -> dict[str, str]:
    return {name: c["Id"] for name, c in app_containers(svc).items()}


def hashes(svc: Any, workload_name: str = "web") -> list[str]:
    return sorted(c["Labels"]["io.gitops-agent.template-hash"] for c in app_containers(svc).values()
                  if c["Labels"]["io.gitops-agent.name"] == workload_name)


def pod_count(svc: Any) -> int:
    return len(svc.podman("pod", "ps", "-q").stdout.split())


def image_of(svc: Any) -> set[str]:
    return {c["Image"] for c in app_containers(svc).values()}


@pytest.fixture
def env(clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> tuple[list[Any], Any, Path]:
    return clean_fleet, git_remote, write_config(tmp_path, git_remote, clean_fleet)


def test_good_rollout_reaches_the_nodes_one_at_a_time_in_order(env: tuple[list[Any], Any, Path]) -> None:
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1, min_ready=1))
    assert sync(cfg).result == "applied"
    assert [image_of(svc) for svc in fleet] == [{WEB1}] * 3

    push(repo, "v2", workload("web", WEB2, min_ready=1))
    ev = Events()
    out = sync(cfg, ev)
    assert out.result == "applied", out.error
    assert [image_of(svc) for svc in fleet] == [{WEB2}] * 3
    assert all(pod_count(svc) == 1 for svc in fleet)  # old pods gone, no duplicates
    starts = [(f["node"], t) for t, f in ev.of("rollout.node")]
    dones = [(f["node"], t) for t, f in ev.of("rollout.node.done")]
    assert [n for n, _ in starts] == list(NAMES) and [n for n, _ in dones] == list(NAMES)
    for i in range(2):  # node i+1 starts only after node i is done
        assert dones[i][1] <= starts[i + 1][1]
    # the same order, read from Podman: each node's new container started after the previous one's,
    # at least minReadySeconds later (the previous pod was held ready before the next node began)
    started = [max(c["StartedAt"] for c in app_containers(svc).values()) for svc in fleet]
    assert started[0] <= started[1] - 1 and started[1] <= started[2] - 1, started
    st = status_of(cfg)
    assert st["condition"] == "Ready" and st["rollout"]["phase"] == "complete"
    assert [n["status"] for n in st["rollout"]["nodes"]] == ["done"] * 3


def status_of(cfg: Path) -> dict[str, Any]:
    agent = Agent(config_mod.load(str(cfg)))
    try:
        return status(agent)
    finally:
        agent.close()


def test_failed_readiness_on_the_canary_is_rolled_back_and_other_nodes_are_untouched(env: tuple[list[Any], Any, Path]) -> None:
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1))
    assert sync(cfg).result == "applied"
    before = [ids(svc) for svc in fleet]
    good_hash = hashes(fleet[0])

    bad = {"exec": {"command": ["cat", "/www/ready-flag"]}, "periodSeconds": 1, "failureThreshold": 2}
    c2 = push(repo, "v2: readiness never passes", workload("web", WEB2, readiness=bad))
    out = sync(cfg)
    assert out.result == "failed"
    assert "on node n1" in out.error and "readiness probe failed 2 time(s)" in out.error
    assert "rolled back" in out.error
    # n1 runs the stable template again; n2 and n3 were never touched: same containers
    assert hashes(fleet[0]) == good_hash and image_of(fleet[0]) == {WEB1}
    assert [ids(svc) for svc in fleet[1:]] == before[1:]
    assert all(pod_count(svc) == 1 for svc in fleet)
    agent = Agent(config_mod.load(str(cfg)))
    try:
        failed = agent.history.get("failed")
        assert failed["sha"] == c2 and failed["node"] == "n1" and failed["probe"] == "readiness"
        assert failed["pod"].startswith("web-") and "No such file" in failed["output"]
        rollouts = agent.history.rollouts()
        assert rollouts[0]["phase"] == "rolled-back" and rollouts[0]["touched"] == ["n1"]
    finally:
        agent.close()
    # not retried while Git stays on the failed commit: nothing changes on any node
    now = [ids(svc) for svc in fleet]
    again = sync(cfg)
    assert again.result == "failed" and again.rollout is None
    assert [ids(svc) for svc in fleet] == now
    st = status_of(cfg)
    assert st["condition"] == "Stalled" and "readiness probe failed" in st["message"]


def test_node_stopped_during_a_rollout_is_deferred_then_converges(env: tuple[list[Any], Any, Path]) -> None:
    fleet, repo, cfg = env
    knobs = {"rollout.gitops-agent.io/unreachable-node-timeout": "2"}
    push(repo, "v1", workload("web", WEB1, annotations=knobs))
    assert sync(cfg).result == "applied"
    push(repo, "v2", workload("web", WEB2, annotations=knobs))

    class StopN3(Events):
        def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
            super().__call__(event, level, **fields)
            if event == "rollout.node.done" and fields["node"] == "n1":
                fleet[2].stop()  # n3 goes away while the rollout is on its way

    out = sync(cfg, StopN3())
    assert out.result == "progressing", out.error
    assert "n3" in out.error and "cannot reach Podman" in out.error
    assert image_of(fleet[0]) == {WEB2} and image_of(fleet[1]) == {WEB2}
    st = status_of(cfg)
    assert st["condition"] == "Progressing"
    assert [n["status"] for n in st["rollout"]["nodes"]] == ["done", "done", "deferred"]
    assert st["nodes"][2]["reachable"] is False

    fleet[2].start()
    assert image_of(fleet[2]) == {WEB1}  # its old pod came back with the service
    out = sync(cfg)
    assert out.result == "applied", out.error
    assert [image_of(svc) for svc in fleet] == [{WEB2}] * 3
    assert all(pod_count(svc) == 1 for svc in fleet)
    assert status_of(cfg)["condition"] == "Ready"


def test_git_revert_to_a_stable_revision_is_faster_than_its_first_rollout(env: tuple[list[Any], Any, Path]) -> None:
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1, min_ready=2))
    t0 = time.monotonic()
    assert sync(cfg).result == "applied"
    first = time.monotonic() - t0
    v1_hash = hashes(fleet[0])

    c2 = push(repo, "v2", workload("web", WEB2, min_ready=2))
    assert sync(cfg).result == "applied"
    repo.revert(c2)
    ev = Events()
    t0 = time.monotonic()
    out = sync(cfg, ev)
    revert = time.monotonic() - t0
    assert out.result == "applied", out.error
    assert [hashes(svc) for svc in fleet] == [v1_hash] * 3
    (_, start), = ev.of("rollout.start")
    assert start["fast"] is True
    assert revert < first, (revert, first)
    # still health-gated: every node waited for its new pod to be ready before the rollout ended
    assert len(ev.of("rollout.node.done")) == 3


def test_kill_9_mid_rollout_then_restart_converges_without_duplicates(env: tuple[list[Any], Any, Path], tmp_path: Path) -> None:
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1, replicas=6, min_ready=1))
    assert sync(cfg).result == "applied"
    push(repo, "v2", workload("web", WEB2, replicas=6, min_ready=1))
    log = tmp_path / "agent.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "gitops_agent", "sync", "--config", str(cfg)], stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while WEB2 not in image_of(fleet[1]):  # the rollout has reached the second node
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    mixed = image_of(fleet[1])
    assert image_of(fleet[0]) == {WEB2} and image_of(fleet[2]) == {WEB1}
    code = subprocess.run([sys.executable, "-m", "gitops_agent", "sync", "--config", str(cfg)], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    assert "rollout.resume" in code.stderr
    for svc in fleet:
        assert image_of(svc) == {WEB2}
        assert pod_count(svc) == 2 and len(app_containers(svc)) == 2  # 6 replicas over 3 nodes, nothing doubled
        assert all(c["State"] == "running" for c in app_containers(svc).values())
    assert mixed  # the kill really happened mid-node (either template may have been on n2 at that moment)
    assert status_of(cfg)["condition"] == "Ready"


def test_placement_node_selector_daemonset_and_even_spread(clean_fleet: list[Any], git_remote: Any, tmp_path: Path) -> None:
    fleet, repo = clean_fleet, git_remote
    labels = {"n1": {"zone": "a", "nginx": "enabled"}, "n2": {"zone": "a"}, "n3": {"zone": "b", "nginx": "enabled"}}
    cfg = write_config(tmp_path, repo, fleet, labels)
    ready = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    push(repo, "placement",
         workload("spread", WEB1, replicas=5, readiness=ready),
         workload("nginx", WEB1, replicas=2, readiness=ready, node_selector={"nginx": "enabled"}),
         workload("agent", WEB1, kind="DaemonSet", replicas=None, readiness=ready, node_selector={"zone": "a"}),
         workload("nowhere", WEB1, replicas=2, readiness=ready, node_selector={"zone": "mars"}))
    out = sync(cfg)
    assert out.result == "applied", out.error

    def count(svc: Any, name: str) -> int:
        return sum(1 for c in app_containers(svc).values() if c["Labels"]["io.gitops-agent.name"] == name)

    assert [count(svc, "spread") for svc in fleet] == [2, 2, 1]  # even, first nodes take the remainder
    assert [count(svc, "nginx") for svc in fleet] == [1, 0, 1]  # only nodes labelled nginx=enabled
    assert [count(svc, "agent") for svc in fleet] == [1, 1, 0]  # DaemonSet: one on every zone=a node
    assert [count(svc, "nowhere") for svc in fleet] == [0, 0, 0]
    st = status_of(cfg)
    assert any("nowhere" in w and "no node matches" in w for w in st["warnings"]), st["warnings"]
    spread_ids = [ids(svc) for svc in fleet]

    # an unchanged sync never reshuffles
    assert sync(cfg).result == "in-sync"
    assert [ids(svc) for svc in fleet] == spread_ids

    # relabel n2 in the config: the next sync moves the nginx pods and adds nothing else
    labels["n2"]["nginx"] = "enabled"
    write_config(tmp_path, repo, fleet, labels)
    out = sync(cfg)
    assert out.ok, out.error
    assert [count(svc, "nginx") for svc in fleet] == [1, 1, 0]
    assert [count(svc, "spread") for svc in fleet] == [2, 2, 1]


def test_break_glass_rollback_without_git_then_resume(env: tuple[list[Any], Any, Path], tmp_path: Path) -> None:
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1))
    assert sync(cfg).result == "applied"
    v1_hash = hashes(fleet[0])
    push(repo, "v2", workload("web", WEB2))
    assert sync(cfg).result == "applied"
    v2_hash = hashes(fleet[0])

    gone = Path(str(repo.url).removeprefix("file://") + ".away")
    Path(str(repo.url).removeprefix("file://")).rename(gone)  # the Git server is down
    run = [sys.executable, "-m", "gitops_agent"]
    cp = subprocess.run([*run, "rollback", "--config", str(cfg)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    assert "rolled back" in cp.stdout and "suspended" in cp.stdout
    assert [hashes(svc) for svc in fleet] == [v1_hash] * 3
    st = status_of(cfg)
    assert st["condition"] == "Suspended" and "resume" in st["message"]
    assert st["rollout"]["cause"] == "rollback" and st["rollout"]["phase"] == "complete"

    gone.rename(Path(str(repo.url).removeprefix("file://")))  # Git is back, still at v2
    out = sync(cfg)
    assert out.result == "suspended"  # Git is not followed while suspended...
    assert [hashes(svc) for svc in fleet] == [v1_hash] * 3
    fleet[1].podman("pod", "rm", "-f", "-t", "0", "-a")  # ...but drift is still repaired, to the pinned revision
    assert sync(cfg).result == "suspended"
    assert hashes(fleet[1]) == v1_hash

    cp = subprocess.run([*run, "resume", "--config", str(cfg)], capture_output=True, text=True)
    assert cp.returncode == 0 and "following Git again" in cp.stdout
    assert sync(cfg).result == "applied"
    assert [hashes(svc) for svc in fleet] == [v2_hash] * 3
    cp = subprocess.run([*run, "history", "--config", str(cfg)], capture_output=True, text=True)
    assert cp.returncode == 0 and "rollback" in cp.stdout and "complete" in cp.stdout


def test_liveness_probe_restarts_the_container_through_podman(env: tuple[list[Any], Any, Path]) -> None:
    """Liveness is Podman's healthcheck with restart-on-failure: it works with the agent gone. This sandbox
    has no systemd to run the healthcheck timer, so the test fires one check itself, as the timer would."""
    fleet, repo, cfg = env
    w = workload("web", WEB1, replicas=1)
    c = w["spec"]["template"]["spec"]["containers"][0]
    c["command"] = ["sh", "-c", "touch /tmp/alive && exec httpd -f -p 8080 -h /www"]
    c["livenessProbe"] = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 30, "failureThreshold": 1}
    push(repo, "v1", w)
    assert sync(cfg).result == "applied"
    (name, ctr), = app_containers(fleet[0]).items()
    fleet[0].podman("healthcheck", "run", name)  # healthy
    fleet[0].podman("exec", name, "rm", "/tmp/alive")
    fleet[0].podman("healthcheck", "run", name, check=False)  # unhealthy: Podman restarts it
    deadline = time.monotonic() + 30
    while app_containers(fleet[0])[name]["StartedAt"] == ctr["StartedAt"] or app_containers(fleet[0])[name]["State"] != "running":
        assert time.monotonic() < deadline, app_containers(fleet[0])[name]
        time.sleep(0.2)
    after = app_containers(fleet[0])[name]
    assert after["Id"] == ctr["Id"]  # the same container, restarted in place
    fleet[0].podman("exec", name, "cat", "/tmp/alive")  # and healthy again


def test_a_new_commit_mid_rollout_supersedes_the_target(env: tuple[list[Any], Any, Path]) -> None:
    fleet, repo, cfg = env
    push(repo, "v1", workload("web", WEB1))
    assert sync(cfg).result == "applied"
    push(repo, "v2", workload("web", WEB2))
    v3 = workload("web", WEB1)
    v3["spec"]["template"]["metadata"]["labels"]["release"] = "v3"

    class PushV3(Events):
        def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
            super().__call__(event, level, **fields)
            if event == "rollout.node.done" and fields["node"] == "n1":
                push(repo, "v3", v3)  # arrives while v2 is on its way

    out = sync(cfg, PushV3())
    assert out.result == "superseded", out.error
    assert image_of(fleet[0]) == {WEB2} and image_of(fleet[1]) == {WEB1} and image_of(fleet[2]) == {WEB1}  # n2, n3 never got v2
    out = sync(cfg)
    assert out.result == "applied", out.error
    v3_hash = hashes(fleet[0])
    assert [hashes(svc) for svc in fleet] == [v3_hash] * 3 and all(pod_count(svc) == 1 for svc in fleet)
    agent = Agent(config_mod.load(str(cfg)))
    try:
        assert [r["phase"] for r in agent.history.rollouts()][:2] == ["complete", "superseded"]
    finally:
        agent.close()


def test_auto_rollback_off_halts_and_leaves_every_node_as_it_is(env: tuple[list[Any], Any, Path]) -> None:
    fleet, repo, cfg = env
    knobs = {"rollout.gitops-agent.io/auto-rollback": "false", "rollout.gitops-agent.io/max-parallel-nodes": "2"}
    push(repo, "v1", workload("web", WEB1, annotations=knobs))
    assert sync(cfg).result == "applied"
    bad = {"exec": {"command": ["cat", "/www/ready-flag"]}, "periodSeconds": 1, "failureThreshold": 2}
    push(repo, "v2", workload("web", WEB2, readiness=bad, annotations=knobs))
    out = sync(cfg)
    assert out.result == "failed" and "halted" in out.error
    # the first batch was n1 and n2 (max-parallel-nodes 2): both hold the failed pods for a human to look at; n3 untouched
    assert WEB2 in image_of(fleet[0]) and WEB2 in image_of(fleet[1]) and image_of(fleet[2]) == {WEB1}
    held = [ids(svc) for svc in fleet]
    again = sync(cfg)  # Git has not moved: nothing is retried and nothing is rolled back behind the operator's back
    assert again.result == "failed" and again.rollout is None
    assert [ids(svc) for svc in fleet] == held
    assert status_of(cfg)["rollout"]["phase"] == "halted"




def test_shell_less_image_is_gated_on_http_readiness_probed_from_outside(env: tuple[list[Any], Any, Path]) -> None:
    """An image whose only program is a static HTTP server (no /bin/sh, no tools) rolls out gated on an httpGet
    readiness probe the agent runs from the pod's network namespace; a failing HTTP probe, an exec probe and an
    httpGet liveness probe (Podman runs those in the container) each fail the canary with their reason."""
    fleet, repo, cfg = env
    run_each(lambda svc: (make_bare_image(svc, BARE1, "1"), make_bare_image(svc, BARE2, "2")), fleet)
    assert fleet[0].podman("run", "--rm", BARE1, "sh", "-c", "true", check=False).returncode != 0  # truly no shell
    push(repo, "v1", workload("web", BARE1, replicas=3))
    assert sync(cfg).result == "applied"
    assert [image_of(svc) for svc in fleet] == [{BARE1}] * 3
    st = status_of(cfg)
    assert st["nodes"][0]["httpTcpProbes"] == "from outside the container: agent (pod network namespace)"
    web = next(o for o in st["objects"] if o["kind"] == "Deployment" and o["node"] == "n1")
    assert web["probes"] == [{"container": "web", "probe": "readiness", "action": "httpGet",
                              "runs": "by the agent, from outside the container"}]
    good = [ids(svc) for svc in fleet]

    bad_http = {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
    push(repo, "v2: readiness 404", workload("web", BARE2, replicas=3, readiness=bad_http))
    out = sync(cfg)
    assert out.result == "failed" and "on node n1" in out.error and "readiness probe failed 2 time(s)" in out.error
    assert ":8080/missing: HTTP 404 (success is 200-399)" in out.error and "rolled back" in out.error

    exec_probe = {"exec": {"command": ["cat", "/www/index.html"]}, "periodSeconds": 1}
    push(repo, "v3: exec readiness", workload("web", BARE2, replicas=3, readiness=exec_probe))
    out = sync(cfg)
    assert out.result == "failed"
    assert "readiness probe cannot run in container web: no such executable in the image: cat" in out.error

    w = workload("web", BARE2, replicas=3)
    w["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/index.html", "port": 8080}}
    push(repo, "v4: httpGet liveness", w)
    out = sync(cfg)
    assert out.result == "failed" and "liveness probe cannot run in container web" in out.error
    assert "no such executable in the image: /bin/sh" in out.error
    assert [image_of(svc) for svc in fleet] == [{BARE1}] * 3
    assert [ids(svc) for svc in fleet[1:]] == good[1:]  # only the canary was ever touched


def test_a_hung_http_server_is_restarted_by_its_httpget_liveness_healthcheck(env: tuple[list[Any], Any, Path]) -> None:
    """httpGet liveness is Podman's healthcheck (it runs with the agent gone): a server that still accepts
    connections but never answers (SIGSTOP) fails it and Podman restarts the container. The test fires the
    check itself, as the systemd timer would (none in this sandbox)."""
    fleet, repo, cfg = env
    w = workload("web", WEB1, replicas=1)
    w["spec"]["template"]["spec"]["containers"][0]["command"] = BARE_HTTPD  # httpd itself is the process stopped
    w["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {
        "httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 30, "timeoutSeconds": 1,
        "failureThreshold": 1}
    push(repo, "v1", w)
    assert sync(cfg).result == "applied"
    (name, ctr), = app_containers(fleet[0]).items()
    fleet[0].podman("healthcheck", "run", name)  # healthy
    pid = int(fleet[0].podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
    os.kill(pid, signal.SIGSTOP)  # hung, not crashed: the kernel still accepts its connections
    hc = fleet[0].podman("healthcheck", "run", name, check=False)
    assert hc.returncode != 0, hc
    deadline = time.monotonic() + 30
    while app_containers(fleet[0])[name]["StartedAt"] == ctr["StartedAt"] or app_containers(fleet[0])[name]["State"] != "running":
        assert time.monotonic() < deadline, app_containers(fleet[0])[name]
        time.sleep(0.2)
    assert app_containers(fleet[0])[name]["Id"] == ctr["Id"]  # the same container, restarted in place
    fleet[0].podman("healthcheck", "run", name)  # and it answers again


def test_without_a_dialer_http_readiness_falls_back_to_the_in_container_script(env: tuple[list[Any], Any, Path]) -> None:
    """A node whose pod addresses the agent cannot reach (tcp://: no dialer) runs httpGet readiness as the
    in-container script: busybox's nc gates the rollout; the shell-less image cannot run it and says why."""
    fleet, repo, cfg = env
    run_each(lambda svc: make_bare_image(svc, BARE1, "1"), fleet[:1])
    only_n1 = {"n1": {"probe": "fallback"}}
    cfg = write_config(cfg.parent, repo, fleet, labels=only_n1)
    agent = Agent(config_mod.load(str(cfg)), Events())
    try:
        for node in agent.nodes.values():
            node.dialer = None  # what a tcp:// node gets
        push(repo, "v1", workload("web", WEB1, replicas=1, node_selector={"probe": "fallback"}))
        assert agent.sync().result == "applied"
        execs = agent.nodes["n1"].writes - agent.nodes["n1"].changes
        assert execs >= 1  # the probe ran as an exec in the container
        push(repo, "v2", workload("web", BARE1, replicas=1, node_selector={"probe": "fallback"}))
        out = agent.sync()
        assert out.result == "failed"
        assert "readiness probe cannot run in container web: no such executable in the image: /bin/sh" in out.error
    finally:
        agent.close()
    assert image_of(fleet[0]) == {WEB1}
