"""Pod-level fields of the Kubernetes documentation's examples (issue 18): pod-level `spec.resources`,
`resizePolicy` (a no-op with a warning), `hostAliases`, `shareProcessNamespace` with `stdin`/`tty`,
`hostUsers: false` and `nodeName`.

Pure tests from literals (manifest -> model -> libpod spec, and the errors), then one end to end test on real Git
and real Podman that shows each effect: the pod's cgroup files, /etc/hosts, a process of one container seen from
the other, the terminal on the other's standard input, and a uid map that is not the node's.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import compile_node, needs_amounts, pod_request, unplaced
from gitops_agent.errors import RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.podman import _container_body, _pod_body
from podman_env import WEB1

NODE = NodeConfig("n1")
COMMIT = "main@sha1:" + "a" * 40


def pod(spec: str = "", container: str = "", extra: str = "") -> str:
    """A Pod `p` with pod-spec lines `spec`, a container `main` with lines `container`, then containers `extra`."""
    return ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
            + textwrap.indent(textwrap.dedent(spec), "  ")
            + "  containers:\n    - name: main\n      image: app:1\n"
            + textwrap.indent(textwrap.dedent(container), "      ")
            + textwrap.indent(textwrap.dedent(extra), "    "))


def parsed(text: str, nodes: tuple[NodeConfig, ...] | None = None) -> model.Revision:
    return parse([SourceFile("p.yaml", text.encode())], COMMIT, nodes=nodes)


def problems(text: str, nodes: tuple[NodeConfig, ...] | None = None) -> list[str]:
    with pytest.raises(RevisionRejected) as rejected:
        parsed(text, nodes)
    return [str(p) for p in rejected.value.problems]


def bodies(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The libpod pod spec and container specs of the one pod of `text` on NODE."""
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return _pod_body(spec), [_container_body(spec, c) for c in spec.containers]


# --- pod-level resources -------------------------------------------------------------


def test_pod_level_resources_bound_the_pods_cgroup() -> None:
    """limits are the pod's CFS quota, memory and pids limits; requests its CPU shares and memory reservation; a
    container without resources of its own gets none (the pod's cgroup bounds it)."""
    pod_spec, (container,) = bodies(pod("""\
        resources:
          limits: {cpu: 500m, memory: 64Mi, pids: "2048"}
          requests: {cpu: 250m, memory: 32Mi}
    """))
    assert pod_spec["resource_limits"] == {
        "cpu": {"quota": 50_000, "period": 100_000, "shares": 256},
        "memory": {"limit": 64 << 20, "reservation": 32 << 20},
        "pids": {"limit": 2048},
    }
    assert "resource_limits" not in container
    # a pod-level limit without a request requests the limit, as a container's does
    pod_spec, _ = bodies(pod("resources: {limits: {cpu: '1', memory: 1Gi}}\n"))
    assert pod_spec["resource_limits"]["cpu"]["shares"] == 1024
    assert pod_spec["resource_limits"]["memory"]["reservation"] == 1 << 30
    assert "resource_limits" not in bodies(pod())[0]


def test_a_resource_field_ref_of_an_unset_limit_is_the_pods_limit() -> None:
    """As in Kubernetes, a container without a limit of its own sees the pod-level one through resourceFieldRef
    (with neither, the node's allocatable amount: `tests/test_allocatable.py`), and the node is not asked."""
    env = "env: [{name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}]\n"
    _, (container,) = bodies(pod("resources: {limits: {memory: 64Mi}}\n", env))
    assert container["env"]["MEM"] == "64"
    assert not needs_amounts(parsed(pod("resources: {limits: {memory: 64Mi}}\n", env)), NODE)
    assert needs_amounts(parsed(pod(container=env)), NODE)


def test_pod_level_requests_place_the_pod_instead_of_its_containers_sum() -> None:
    """Against a node's capacity the pod counts its pod-level request, as Kubernetes' scheduler does."""
    text = pod("resources: {requests: {cpu: '2'}}\n", "resources: {requests: {cpu: 100m, memory: 10Mi}}\n")
    (workload,) = parsed(text).objects
    assert isinstance(workload, model.Workload)
    assert (pod_request(workload.template, "cpu"), pod_request(workload.template, "memory")) == (2000, 10 << 20)
    small = NodeConfig("n1", cpu_millis=1500)
    assert problems(text, (small,)) == [
        "p.yaml:6: Pod/p: spec.containers: the pods placed on node n1 request 2000m of cpu in all, more than its "
        "capacity.cpu (1500m); Pod/p requests 2000m there"]


def test_pod_level_resources_are_checked_as_kubernetes_checks_them() -> None:
    """A request above its limit, a container's limit above the pod's, containers requesting more than the pod,
    and unsupported resources are errors at their field."""
    found = problems(pod(
        "resources: {limits: {cpu: 500m, memory: 64Mi, hugepages-2Mi: 1Gi}, requests: {memory: 128Mi}}\n",
        "resources: {limits: {cpu: '1'}, requests: {cpu: 200m}}\n",
        "- {name: side, image: app:1, resources: {requests: {cpu: 400m}}}\n"))
    assert found == [
        "p.yaml:5: Pod/p: spec.resources.limits.hugepages-2Mi: field 'hugepages-2Mi' is not supported by "
        "gitops-agent (found \"1Gi\"): remove it if the application works without reserved huge pages: "
        "gitops-agent reserves none",
        "p.yaml:5: Pod/p: spec.resources.requests.memory: must be less than or equal to the memory limit ('64Mi')",
        # no pod-level cpu request: it is the limit, less than the containers' 200m + 400m
        "p.yaml:5: Pod/p: spec.resources.limits.cpu: must be at least what the pod's containers request (600m of "
        "cpu)",
        "p.yaml:9: Pod/p: spec.containers[0].resources.limits.cpu: must be less than or equal to the pod's cpu "
        "limit ('500m')",
    ]
    assert problems(pod("resources: {limits: {pids: '0', memory: 1Mi}}\n")) == [
        "p.yaml:5: Pod/p: spec.resources.limits.memory: must be at least 4Mi: the container runtime alone needs "
        "about 2.5 MB to start",
        "p.yaml:5: Pod/p: spec.resources.limits.pids: must be greater than zero (omit the limit for no limit)",
    ]


def test_resize_policy_is_a_no_op_with_one_warning() -> None:
    """resizePolicy is accepted with a warning saying why it does nothing here; its values are still checked."""
    rev = parsed(pod(container="resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]\n"))
    assert rev.warnings == ("p.yaml:8: Pod/p: spec.containers[0].resizePolicy: resizePolicy has no effect here (a "
                            "change of resources is a new revision, which replaces the pod): ignored",)
    assert problems(pod(container="resizePolicy: [{resourceName: gpu, restartPolicy: NotRequired}]\n")) == [
        "p.yaml:8: Pod/p: spec.containers[0].resizePolicy[0].resourceName: must be one of cpu, memory, not 'gpu'"]


# --- hostAliases, shareProcessNamespace, stdin and tty --------------------------------


def test_host_aliases_shared_pid_and_a_terminal() -> None:
    """hostAliases are the pod's --add-host entries, shareProcessNamespace adds pid to what the pod shares, stdin
    and tty keep the container's input open on a terminal."""
    pod_spec, (main_body, shell) = bodies(pod("""\
        shareProcessNamespace: true
        hostAliases:
          - {ip: 127.0.0.1, hostnames: [foo.local, bar.local]}
          - {ip: "fd00::1", hostnames: [v6.local]}
    """, extra="- {name: shell, image: app:1, stdin: true, tty: true}\n"))
    assert pod_spec["hostadd"] == ["foo.local:127.0.0.1", "bar.local:127.0.0.1", "v6.local:fd00::1"]
    assert pod_spec["shared_namespaces"] == ["ipc", "net", "uts", "pid"]
    assert (shell["stdin"], shell["terminal"]) == (True, True)
    assert "stdin" not in main_body and "terminal" not in main_body
    plain, _ = bodies(pod())
    assert not {"hostadd", "shared_namespaces", "userns", "idmappings"} & set(plain)


def test_host_alias_and_process_namespace_errors() -> None:
    """An address that is not an IP, a hostname that is not a DNS name, and a shared PID namespace with the
    node's are errors."""
    assert problems(pod("hostAliases: [{ip: 10.0.0.300, hostnames: [ok.local]}]\n")) == [
        "p.yaml:5: Pod/p: spec.hostAliases[0].ip: must be an IPv4 or IPv6 address, not '10.0.0.300'"]
    assert problems(pod("hostAliases: [{ip: 10.0.0.1, hostnames: [Bad_Name]}]\n")) == [
        "p.yaml:5: Pod/p: spec.hostAliases[0].hostnames[0]: must be a DNS-1123 subdomain: dot-separated lowercase "
        "labels of letters, digits and '-', each starting and ending with a letter or digit"]
    found = problems(pod("hostPID: true\nshareProcessNamespace: true\n"))
    assert found[1] == ("p.yaml:6: Pod/p: spec.shareProcessNamespace: cannot be true with hostPID: true (the pod "
                        "would share the node's PID namespace)")


# --- hostUsers: false ----------------------------------------------------------------


def test_host_users_false_gives_the_pod_a_user_namespace_of_its_own() -> None:
    """hostUsers: false is Podman's userns auto with 65536 ids for the whole pod."""
    pod_spec, _ = bodies(pod("hostUsers: false\n"))
    assert pod_spec["userns"] == {"nsmode": "auto"}
    assert pod_spec["idmappings"] == {"AutoUserNs": True, "AutoUserNsOpts": {"Size": 65536}}
    assert "userns" not in bodies(pod("hostUsers: true\n"))[0]


def test_host_users_false_refuses_what_a_user_namespace_cannot_have() -> None:
    """Host namespaces, ids beyond the namespace's and volumes whose files outlive the pod are errors."""
    found = problems(pod("""\
        hostUsers: false
        hostIPC: true
        securityContext: {runAsUser: 70000}
        volumes:
          - {name: data, persistentVolumeClaim: {claimName: data}}
          - {name: scratch, emptyDir: {}}
    """, "securityContext: {runAsGroup: 65536, runAsUser: 1}\n"))
    assert [f.split(": ", 3)[2:] for f in found] == [
        ["spec.hostIPC", "cannot be true with hostUsers: false"],
        ["spec.hostIPC", "the host IPC namespace is not allowed by the agent policy (policy.allowHostIPC)"],
        ["spec.securityContext.runAsUser", "must be less than 65536 with hostUsers: false (the ids of the pod's "
                                           "user namespace)"],
        ["spec.volumes[0].persistentVolumeClaim", "is not supported by gitops-agent with hostUsers: false: a "
         "persistentVolumeClaim outlives the pod, and its files keep the ids of the user namespace of the pod that "
         "wrote them (Podman 4.3 has no id-mapped mounts), which the next pod, in another namespace, cannot write; "
         "use an emptyDir, or hostUsers: true"],
        ["spec.volumes[0].persistentVolumeClaim.claimName", "PersistentVolumeClaim 'data' does not exist in "
                                                            "namespace 'default'"],
        ["spec.containers[0].securityContext.runAsGroup", "must be less than 65536 with hostUsers: false (the ids "
                                                          "of the pod's user namespace)"],
    ]


# --- nodeName ------------------------------------------------------------------------


def test_node_name_places_the_pod_on_that_node_only() -> None:
    """nodeName is the only node the pod may run on; with a config an unknown node is an error, without one
    (validate alone) it is not checked."""
    nodes = (NodeConfig("n1"), NodeConfig("n2"))
    text = pod("nodeName: n2\n")
    rev = parsed(text, nodes)
    assert [len(compile_node(rev, n, nodes).workloads[0].pods) for n in nodes] == [0, 1]
    assert problems(pod("nodeName: foo-node\n"), nodes) == [
        "p.yaml:5: Pod/p: spec.nodeName: node 'foo-node' is not in the agent config (its nodes: n1, n2); name one "
        "of them, or remove nodeName to let gitops-agent place the pod"]
    alone = parsed(pod("nodeName: foo-node\n"))
    assert unplaced(alone, (NodeConfig("local"),)) == [
        "Pod/default/p: its nodeName foo-node is no node of the config that matches its nodeSelector, nodeAffinity "
        "and tolerations; 1 replica(s) not placed"]
    # as in Kubernetes, a pod with nodeName skips the scheduler (NoSchedule taints), not the kubelet's admission
    # (nodeSelector, NoExecute taints)
    for taint, placed in (("NoSchedule", [0, 1]), ("NoExecute", [0, 0])):
        tainted = (NodeConfig("n1"), NodeConfig("n2", taints=(model.Taint("gpu", effect=taint),)))
        assert [len(compile_node(parsed(text, tainted), n, tainted).workloads[0].pods) for n in tainted] == placed
    labelled = (NodeConfig("n1"), NodeConfig("n2", labels={"disk": "hdd"}))
    selecting = pod("nodeName: n2\nnodeSelector: {disk: ssd}\n")
    assert [len(compile_node(parsed(selecting, labelled), n, labelled).workloads[0].pods) for n in labelled] == [0, 0]


# --- end to end on real Podman ---------------------------------------------------------

BASE = "apps"
NS = "podspec"
SHARED = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {NS}}}
data: {{mode: quiet}}
---
apiVersion: v1
kind: Pod
metadata: {{name: shared, namespace: {NS}}}
spec:
  nodeName: local
  terminationGracePeriodSeconds: 1
  shareProcessNamespace: true
  hostAliases: [{{ip: 10.1.2.3, hostnames: [foo.remote, bar.remote]}}]
  resources:
    limits: {{cpu: 500m, memory: 64Mi, pids: "64"}}
    requests: {{cpu: 250m, memory: 32Mi}}
  containers:
    - name: main
      image: {WEB1}
      command: [sleep, "100000"]
      resizePolicy: [{{resourceName: cpu, restartPolicy: NotRequired}}]
    - name: shell
      image: {WEB1}
      command: [sleep, "200000"]
      stdin: true
      tty: true
---
apiVersion: v1
kind: Pod
metadata: {{name: userns, namespace: {NS}}}
spec:
  hostUsers: false
  terminationGracePeriodSeconds: 1
  volumes:
    - {{name: scratch, emptyDir: {{}}}}
    - {{name: settings, configMap: {{name: settings}}}}
  containers:
    - name: main
      image: {WEB1}
      command: [sleep, "100000"]
      volumeMounts: [{{name: scratch, mountPath: /scratch}}, {{name: settings, mountPath: /etc/settings}}]
"""


def _ids_for_containers() -> bool:
    """User `containers` has subordinate ids: Podman's --userns=auto takes a pod's from them (.ci/setup adds)."""
    files = [Path("/etc/subuid"), Path("/etc/subgid")]
    return all(f.exists() and any(line.startswith("containers:") for line in f.read_text().splitlines())
               for f in files)


def _cgroup(path: str, controller: str, name: str) -> str:
    """A cgroup v1 file of the pod's cgroup (`path`, Podman's CgroupPath) on the node."""
    return (Path("/sys/fs/cgroup") / controller / path.lstrip("/") / name).read_text().strip()


def test_pod_spec_fields_take_effect_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One sync of two pods: the pod's cgroup holds the pod-level limits and requests, /etc/hosts the
    hostAliases, one container sees the other's process on its terminal, and the hostUsers: false pod runs under
    a uid map of its own in which it writes its emptyDir and reads its ConfigMap."""
    assert _ids_for_containers(), "user `containers` has no subordinate ids in /etc/subuid and /etc/subgid: " \
                                  "run `bash .ci/setup`"
    svc, repo = clean_podman, git_remote
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": svc.url}], "stateDir": str(tmp_path / "state"), "readyTimeout": "30s"}))
    repo.write(f"{BASE}/pods.yaml", SHARED)
    repo.commit_and_push("pods")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    capsys.readouterr()

    info = json.loads(svc.podman("pod", "inspect", f"shared_{NS}").stdout)
    path = info["CgroupPath"]
    assert (_cgroup(path, "cpu", "cpu.cfs_quota_us"), _cgroup(path, "cpu", "cpu.cfs_period_us")) == ("50000", "100000")
    assert _cgroup(path, "cpu", "cpu.shares") == "256"
    assert int(_cgroup(path, "memory", "memory.limit_in_bytes")) == 64 << 20
    assert int(_cgroup(path, "memory", "memory.soft_limit_in_bytes")) == 32 << 20
    assert _cgroup(path, "pids", "pids.max") == "64"
    main_ctr, shell = f"shared_{NS}_main", f"shared_{NS}_shell"
    main_info, shell_info = json.loads(svc.podman("inspect", main_ctr, shell).stdout)
    # the container has no limit of its own: it is bounded by the pod's cgroup, its parent
    assert main_info["HostConfig"]["CgroupParent"] == path and main_info["HostConfig"]["Memory"] == 0
    assert (shell_info["Config"]["Tty"], shell_info["Config"]["OpenStdin"]) == (True, True)
    # from main: its /etc/hosts, shell's process (one PID namespace) whose standard input is a terminal, its uid map
    script = ("cat /etc/hosts; echo ---; for p in /proc/[0-9]*; do [ \"$(cat $p/cmdline)\" = sleep200000 ] && "
              "ls -l $p/fd/0; done; echo ---; cat /proc/self/uid_map")
    hosts, terminal, main_map = svc.podman("exec", main_ctr, "sh", "-c", script).stdout.split("---\n")
    assert "10.1.2.3\tfoo.remote" in hosts.splitlines() and "10.1.2.3\tbar.remote" in hosts.splitlines()
    assert len(terminal.splitlines()) == 1 and "/dev/pts/" in terminal
    host_map = Path("/proc/self/uid_map").read_text().split()
    assert main_map.split() == host_map  # a pod with hostUsers (the default) runs in the node's user namespace

    own = f"userns_{NS}_main"
    uid_map, mode = svc.podman("exec", own, "sh", "-c", "cat /proc/self/uid_map; echo ---; touch /scratch/written "
                               "&& cat /etc/settings/mode").stdout.split("---\n")
    assert uid_map.split() != host_map and uid_map.split()[0] == "0" and uid_map.split()[1] != "0"
    assert uid_map.split()[2] == "65536" and mode == "quiet"  # it writes its emptyDir, reads its ConfigMap
    # in sync: nothing to do and no drift, with one warning for the no-op resizePolicy
    assert main(["diff", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: ") == 1 and "resizePolicy has no effect here" in out
