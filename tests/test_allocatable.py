"""A resourceFieldRef of a limit nobody sets (issue 18): as in Kubernetes it reads the node's allocatable amount,
the node's declared capacity in the agent config, else what its Podman reports (GET /info: host.cpus,
host.memTotal). Pure tests from literals, then one sync on a private Podman that reads the container's env."""

from __future__ import annotations

import json
import threading
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from fake_node import FakeNode
from gitops_agent import config as config_mod, model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import ENV_UNUSED, compile_node, needs_amounts, unset_limits
from gitops_agent.errors import NodeError
from gitops_agent.fleet import Fleet
from gitops_agent.history import History
from gitops_agent.live import ContainerProps, LiveState, env_digest
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.plan import container_drift
from gitops_agent.podman import Node
from podman_env import WEB1, one_node_config

COMMIT = "main@sha1:" + "a" * 40
NODE = NodeConfig("n1")
REPORTED = model.Resources(cpu_millis=4000, memory_bytes=8_000_000_001)  # 4 CPUs; 7629.4 MiB

ENV = """\
env:
  - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
  - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
  - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory}}}
  - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
"""


def pod(container: str = ENV, spec: str = "") -> str:
    """A Pod `p` with pod-spec lines `spec` and one container `main` with lines `container`."""
    return ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n" + textwrap.indent(spec, "  ")
            + "  containers:\n    - name: main\n      image: app:1\n" + textwrap.indent(container, "      "))


def parsed(text: str, node: NodeConfig = NODE) -> model.Revision:
    return parse([SourceFile("p.yaml", text.encode())], COMMIT, nodes=(node,))


def env(text: str, node: NodeConfig = NODE, reported: model.Resources | None = None) -> dict[str, str]:
    (workload,) = compile_node(parsed(text, node), node, (node,), reported).workloads
    return dict(workload.pods[0].containers[0].env)


def test_an_unset_limit_reads_the_nodes_declared_capacity_in_divisor_units_rounded_up() -> None:
    """The node's capacity in the agent config is its allocatable amount: no Podman is asked (the divisor as the
    kubelet applies it: ceil(value / divisor), so 1500m is 2 CPUs)."""
    node = NodeConfig("n1", cpu_millis=1500, memory_bytes=(3 << 30) + 1)
    assert not needs_amounts(parsed(pod(), node), node)
    assert env(pod(), node) == {"CPU": "2", "CPU_M": "1500", "MEM": str((3 << 30) + 1), "MEM_MI": "3073"}


def test_without_a_declared_capacity_an_unset_limit_reads_what_the_nodes_podman_reports() -> None:
    """host.cpus x 1000 millicores and host.memTotal bytes, in divisor units rounded up."""
    assert unset_limits(parsed(pod()), NODE) == {"cpu", "memory"}
    assert env(pod(), NODE, REPORTED) == {"CPU": "4", "CPU_M": "4000", "MEM": "8000000001", "MEM_MI": "7630"}


def test_each_resource_takes_the_declared_capacity_first_then_the_reported_amount() -> None:
    """A node that declares only its CPU: the memory is what Podman reports; only memory is asked for."""
    node = NodeConfig("n1", cpu_millis=500)
    assert unset_limits(parsed(pod(), node), node) == {"memory"}
    assert env(pod(), node, REPORTED) == {"CPU": "1", "CPU_M": "500", "MEM": "8000000001", "MEM_MI": "7630"}


def test_a_change_of_the_nodes_amount_is_no_drift_of_a_running_container() -> None:
    """Env that reads the node's amount is fixed when the container is made, as in Kubernetes: a node whose memory
    (or declared capacity) changed later replaces no pod; the variable's absence is still drift, and so is a
    changed variable that reads the container's own limit."""
    text = pod("resources: {limits: {cpu: 250m}}\n" + ENV.replace("resource: limits.cpu}", "resource: limits.cpu, "
                                                                  "containerName: main}"))
    (before,) = compile_node(parsed(text), NODE, (NODE,), REPORTED).workloads
    (after,) = compile_node(parsed(text), NODE, (NODE,), model.Resources(4000, 16 << 30)).workloads
    made, now = before.pods[0].containers[0], after.pods[0].containers[0]
    assert (made.env["MEM"], now.env["MEM"]) == ("8000000001", str(16 << 30)) and now.node_env == ("MEM", "MEM_MI")
    live = ContainerProps(env={k: env_digest(v) for k, v in made.env.items()}, cpu_quota=25000)
    assert [d for d in container_drift(after.pods[0], now, live) if d.startswith("env")] == []
    gone = ContainerProps(env={k: env_digest(v) for k, v in made.env.items() if k != "MEM"}, cpu_quota=25000)
    assert [d for d in container_drift(after.pods[0], now, gone) if d.startswith("env")] == ["env MEM"]
    changed = ContainerProps(env={**live.env, "CPU_M": env_digest("999")}, cpu_quota=25000)
    assert [d for d in container_drift(after.pods[0], now, changed) if d.startswith("env")] == ["env CPU_M"]


def test_a_limit_of_the_container_or_of_the_pod_wins_over_the_nodes_amount() -> None:
    """Only a limit that neither the container nor the pod sets reads the node: then nothing is asked."""
    own = pod("resources: {limits: {cpu: 250m, memory: 64Mi}}\n" + ENV)
    pod_level = pod(spec="resources: {limits: {cpu: '3', memory: 1Gi}}\n")
    assert not needs_amounts(parsed(own), NODE) and not needs_amounts(parsed(pod_level), NODE)
    assert env(own) == {"CPU": "1", "CPU_M": "250", "MEM": str(64 << 20), "MEM_MI": "64"}
    assert env(pod_level) == {"CPU": "3", "CPU_M": "3000", "MEM": str(1 << 30), "MEM_MI": "1024"}
    requests = "env: [{name: R, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}]\n"
    assert not needs_amounts(parsed(pod(requests)), NODE) and env(pod(requests)) == {"R": "0"}


def test_a_downward_api_file_of_an_unset_limit_reads_the_nodes_amount() -> None:
    """A downwardAPI volume item's resourceFieldRef reads the same amount as env does."""
    volumes = ("volumes:\n  - name: info\n    downwardAPI:\n      items:\n"
               "        - {path: mem, resourceFieldRef: {containerName: main, resource: limits.memory, "
               "divisor: 1Mi}}\n")
    text = pod("volumeMounts: [{name: info, mountPath: /info}]\n", volumes)
    assert unset_limits(parsed(text), NODE) == {"memory"}
    compiled = compile_node(parsed(text), NODE, (NODE,), REPORTED)
    (secret,) = compiled.secrets
    assert secret.data == b"7630"


def test_compiling_without_the_reported_amounts_it_needs_is_a_clear_error() -> None:
    """A caller that applies or compares env must read the amounts first; one that reads only template hashes
    passes ENV_UNUSED (its env values are never applied), and the template hash never depends on the node."""
    with pytest.raises(ValueError, match=r"node n1: compiling needs the amounts its Podman reports \(limits.cpu, "
                                         r"limits.memory\): pass `reported`"):
        compile_node(parsed(pod()), NODE, (NODE,))
    (unused,) = compile_node(parsed(pod()), NODE, (NODE,), ENV_UNUSED).workloads
    (read,) = compile_node(parsed(pod()), NODE, (NODE,), REPORTED).workloads
    assert unused.template_hash == read.template_hash


def test_the_podman_node_reads_its_amounts_once_per_pass_and_refuses_an_info_without_them() -> None:
    """`Node.read_amounts` reads /info once until the next `read` starts a pass; an /info without host.cpus or
    host.memTotal is a node error that says what to set."""
    node = Node("n1", "unix:///nonexistent/podman.sock")
    answers: list[Any] = [{"host": {"cpus": 2, "memTotal": 4 << 30}}, {"host": {"cpus": 3, "memTotal": 5 << 30}},
                          {"host": {"cpus": 2}}]
    calls: list[str] = []

    def call(method: str, path: str, what: str, **_: Any) -> Any:
        calls.append(f"{method} {path}")
        return answers.pop(0) if path == "/info" else []

    class Listed:  # the daemon's live cache (`informer`): `read` answers from it without listing the node
        def read(self) -> LiveState:
            return LiveState("n1")

        def writing(self, path: str) -> None:
            pass

    node._call = call  # type: ignore[method-assign]
    node.cache = Listed()
    assert node.read_amounts() == node.read_amounts() == model.Resources(2000, 4 << 30)
    assert calls == ["GET /info"]
    node.read()  # the next pass
    assert node.read_amounts() == model.Resources(3000, 5 << 30)
    node.read()
    with pytest.raises(NodeError, match=r"node n1: Podman's /info gives no host.cpus and host.memTotal \(cpus=2, "
                                        r"memTotal=None\).*set capacity.cpu and capacity.memory of node n1"):
        node.read_amounts()


class CountingNode(FakeNode):
    """A FakeNode that counts its /info reads, or fails them like a node whose /info cannot be read."""

    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__(name)
        self.amount_reads, self.fail = 0, fail

    def read_amounts(self) -> model.Resources:
        self.amount_reads += 1
        if self.fail:
            raise NodeError(self.name, "read node info: connection reset")
        return super().read_amounts()


def fleet(tmp_path: Path, node: FakeNode) -> Fleet:
    tmp_path.mkdir(parents=True)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": f"file://{tmp_path}/repo"}, "stateDir": str(tmp_path / "state"),
                                   "nodes": [{"name": node.name, "url": f"unix://{tmp_path}/n.sock"}]}))
    return Fleet(config_mod.load(str(cfg)), {node.name: node}, History(tmp_path / "state"),  # type: ignore[dict-item]
                 lambda event, **fields: None, threading.Event())


def test_the_fleet_compiles_with_the_reported_amounts_and_fails_the_node_when_they_cannot_be_read(
        tmp_path: Path) -> None:
    """The fleet reads the amounts only for a revision that needs them, compiles once per revision and amounts
    (the same value on every pass: no drift), and a node whose /info cannot be read is a node error (retried),
    never a pod with a made-up value."""
    node = CountingNode("n1")
    f = fleet(tmp_path / "a", node)
    rev, plain = parsed(pod(), NodeConfig("n1")), parsed(pod("env: [{name: A, value: b}]\n"), NodeConfig("n1"))
    first = f._desired(rev, "n1")
    assert f._desired(rev, "n1") is first
    assert dict(first.workloads[0].pods[0].containers[0].env)["MEM_MI"] == str(4 << 10)  # FakeNode: 4 GiB
    f._desired(plain, "n1")
    assert node.amount_reads == 2  # each look-up of `rev` (a `Node` answers them from its pass's cache), none for
    # `plain`
    broken = fleet(tmp_path / "b", CountingNode("n1", fail=True))
    with pytest.raises(NodeError, match="node n1: read node info: connection reset"):
        broken._desired(rev, "n1")


# --- on real Podman ----------------------------------------------------------------------

BASE = "deploy"


def test_unset_limits_read_what_the_nodes_podman_reports_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Pod whose env reads limits.cpu and limits.memory of a container with no limits: synced to a real Podman,
    the container's env (inspect Config.Env) holds the node's host.cpus and host.memTotal as its /info reports
    them; a second sync changes nothing."""
    svc, repo = clean_podman, git_remote
    cfg = one_node_config(tmp_path, repo.url, svc.url, BASE)
    manifest = pod(ENV + "command: [sh, -c, 'exec sleep 100000']\n", "terminationGracePeriodSeconds: 1\n")
    repo.write(f"{BASE}/p.yaml", manifest.replace("image: app:1", f"image: {WEB1}"))
    repo.commit_and_push("allocatable")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    host = svc.client().info()["host"]  # GET /info of the node's service
    (inspected,) = json.loads(svc.podman("container", "inspect", "p_main").stdout)
    values = dict(v.split("=", 1) for v in inspected["Config"]["Env"])
    cpus, mem = int(host["cpus"]), int(host["memTotal"])
    assert {k: values[k] for k in ("CPU", "CPU_M", "MEM", "MEM_MI")} == {
        "CPU": str(cpus), "CPU_M": str(cpus * 1000), "MEM": str(mem), "MEM_MI": str(-(-mem // (1 << 20)))}
    capsys.readouterr()
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    (again,) = json.loads(svc.podman("container", "inspect", "p_main").stdout)
    assert again["Id"] == inspected["Id"]  # the same value on every pass: no drift, no new pod
