"""The agent's policy (config `policy:`): privileged containers, host namespaces,
added capabilities and hostPath volumes are validation errors unless allowed.

Unit tests of the config section, the libpod specs built from allowed
features and the template hash; then end to end on real Git and real Podman:
the default policy rejects a privileged commit and nothing changes; a config
allowing it applies it, and `podman inspect` shows what was asked for.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import compile_node
from gitops_agent.errors import ConfigError
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.podman import _container_body, _pod_body
from podman_env import WEB1

# --- config -----------------------------------------------------------------------


def policy_of(section: Any) -> model.Policy:
    return config_mod.from_mapping({"source": {"url": "/repo"}, "policy": section}).policy


def test_the_default_policy_denies_everything() -> None:
    cfg = config_mod.from_mapping({"source": {"url": "/repo"}})
    assert cfg.policy == model.Policy() == config_mod.PolicyConfig()
    assert (cfg.policy.allow_privileged, cfg.policy.allow_host_network, cfg.policy.allow_host_pid,
            cfg.policy.allow_host_ipc) == (False, False, False, False)
    assert cfg.policy.allowed_capabilities == () and cfg.policy.allowed_host_paths == ()
    assert policy_of(None) == policy_of({}) == model.Policy()


def test_policy_section_is_read_with_kubernetes_names() -> None:
    policy = policy_of({
        "allowPrivileged": True, "allowHostNetwork": True, "allowHostPID": True, "allowHostIPC": False,
        "allowedCapabilities": ["NET_ADMIN", "CAP_SYS_TIME", "NET_ADMIN"],
        "allowedHostPaths": [{"pathPrefix": "/var/log/", "readOnly": True}, {"pathPrefix": "/srv//data"}],
    })
    assert policy == model.Policy(
        allow_privileged=True, allow_host_network=True, allow_host_pid=True, allow_host_ipc=False,
        allowed_capabilities=("NET_ADMIN", "SYS_TIME"),
        allowed_host_paths=(model.HostPathRule("/var/log", read_only=True), model.HostPathRule("/srv/data")),
    )
    assert policy_of({"allowedCapabilities": ["*"]}).allowed_capabilities == ("*",)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"allowPrivilegd": True},
         "policy.allowPrivilegd: unknown field 'allowPrivilegd' (did you mean 'allowPrivileged'?)"),
        ({"allowPrivileged": "yes"}, "policy.allowPrivileged: must be a boolean, not a string"),
        ({"allowedCapabilities": "NET_ADMIN"},
         "policy.allowedCapabilities: must be a list or null, not a string"),
        ({"allowedCapabilities": ["net_admin"]},
         "policy.allowedCapabilities[0]: must be a capability name (such as NET_ADMIN or CAP_NET_ADMIN, or * for any)"),
        ({"allowedHostPaths": [{"pathPrefix": "var/log"}]},
         "policy.allowedHostPaths[0].pathPrefix: must be an absolute path"),
        ({"allowedHostPaths": [{"pathPrefix": "/var/log/../../etc"}]},
         "policy.allowedHostPaths[0].pathPrefix: must not contain '..'"),
        ({"allowedHostPaths": [{"path": "/var/log"}]},
         "policy.allowedHostPaths[0]: missing required field 'pathPrefix'\n"
         "policy.allowedHostPaths[0].path: unknown field 'path'"),
        ({"allowedHostPaths": [{"pathPrefix": "/x", "readOnly": "true"}]},
         "policy.allowedHostPaths[0].readOnly: must be a boolean, not a string"),
        (["allowPrivileged"], "policy: must be a mapping or null, not a list"),
    ],
)
def test_policy_config_errors(section: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        policy_of(section)
    assert str(error.value) == message


# --- desired state and libpod specs ------------------------------------------------------

NODE = NodeConfig("local")
PRIVILEGED_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  containers:
    - name: main
      image: app:1
      ports: [{containerPort: 9100}]
      securityContext:
        privileged: true
        capabilities: {add: [NET_ADMIN], drop: [CAP_CHOWN]}
        readOnlyRootFilesystem: true
        runAsUser: 1000
        runAsGroup: 1000
        allowPrivilegeEscalation: false
      volumeMounts: [{name: log, mountPath: /host/log, readOnly: true}, {name: data, mountPath: /data}]
  volumes:
    - {name: log, hostPath: {path: /var/log/}}
    - {name: data, hostPath: {path: /srv/data, type: Directory}}
"""
PERMISSIVE = model.Policy(
    allow_privileged=True, allow_host_network=True, allow_host_pid=True, allow_host_ipc=True,
    allowed_capabilities=("NET_ADMIN",),
    allowed_host_paths=(model.HostPathRule("/var/log", read_only=True), model.HostPathRule("/srv")),
)


def test_allowed_features_become_libpod_spec_fields() -> None:
    # (allowPrivilegeEscalation: false with privileged is refused, so check it on its own below)
    text = PRIVILEGED_POD.replace("        allowPrivilegeEscalation: false\n", "").replace(
        "add: [NET_ADMIN]", "add: [NET_ADMIN, CAP_NET_ADMIN]")  # each capability once in the spec
    revision = parse([SourceFile("p.yaml", text.encode())], "main@sha1:" + "a" * 40, policy=PERMISSIVE)
    (workload,) = compile_node(revision, NODE, (NODE,)).workloads
    (pod,) = workload.pods
    assert pod.host_network and pod.network == "" and pod.aliases == () and pod.ports == ()
    body = _pod_body(pod)
    assert body["netns"] == {"nsmode": "host"}
    assert "networks" not in body and "portmappings" not in body and "hostname" not in body
    (container,) = pod.containers
    cbody = _container_body(pod, container)
    assert cbody["privileged"] is True
    assert (cbody["cap_add"], cbody["cap_drop"]) == (["CAP_NET_ADMIN"], ["CAP_CHOWN"])
    assert cbody["read_only_filesystem"] is True and cbody["user"] == "1000:1000"
    assert (cbody["pidns"], cbody["ipcns"], cbody["utsns"]) == ({"nsmode": "host"},) * 3
    assert cbody["mounts"] == [
        {"destination": "/host/log", "source": "/var/log", "type": "bind", "options": ["rbind", "ro"]},
        {"destination": "/data", "source": "/srv/data", "type": "bind", "options": ["rbind", "rw"]},
    ]
    assert "no_new_privileges" not in cbody


def test_no_new_privileges_and_plain_pods() -> None:
    text = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: main\n      image: app:1\n"
            "      ports: [{containerPort: 80, hostPort: 8080}]\n"
            "      securityContext: {runAsUser: 7, allowPrivilegeEscalation: false}\n")
    revision = parse([SourceFile("p.yaml", text.encode())], "main@sha1:" + "a" * 40)  # the default policy
    (pod,) = compile_node(revision, NODE, (NODE,)).workloads[0].pods
    body = _pod_body(pod)
    assert body["networks"] == {"gitops-default": {"aliases": []}} and body["hostname"] == "p"
    assert body["portmappings"] == [{"host_port": 8080, "container_port": 80, "protocol": "tcp"}]
    cbody = _container_body(pod, pod.containers[0])
    assert cbody["no_new_privileges"] is True and cbody["user"] == "7"
    for key in ("privileged", "cap_add", "cap_drop", "read_only_filesystem", "mounts", "pidns", "ipcns", "utsns"):
        assert key not in cbody


def test_template_hash_covers_security_fields_and_is_unchanged_without_them() -> None:
    """Each new field changes the template hash when set; a template using none of them keeps the hash it had
    before they existed (upgrading the agent does not replace every pod)."""
    base = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: main\n      image: app:1\n"

    def thash(text: str) -> str:
        revision = parse([SourceFile("p.yaml", text.encode())], "main@sha1:" + "a" * 40, policy=PERMISSIVE)
        return compile_node(revision, NODE, (NODE,)).workloads[0].template_hash

    import test_manifests  # the manifests test suite's full set, hashed by the agent before policies existed

    full = parse([SourceFile(p, d.encode()) for p, d in test_manifests.FULL_SET.items()], "main@sha1:" + "a" * 40)
    assert [w.template_hash for w in compile_node(full, NODE, (NODE,)).workloads] == ["xm974sffht"]
    variants = [
        base.replace("spec:\n", "spec:\n  hostNetwork: true\n"),
        base.replace("spec:\n", "spec:\n  hostPID: true\n"),
        base.replace("spec:\n", "spec:\n  hostIPC: true\n"),
        base + "      securityContext: {privileged: true}\n",
        base + "      securityContext: {capabilities: {add: [NET_ADMIN]}}\n",
        base + "      securityContext: {capabilities: {drop: [NET_RAW]}}\n",
        base + "      securityContext: {readOnlyRootFilesystem: true}\n",
        base + "      securityContext: {runAsUser: 1}\n",
        base + "      securityContext: {runAsUser: 1, runAsGroup: 1}\n",
        base + "      securityContext: {allowPrivilegeEscalation: false}\n",
        base + "      volumeMounts: [{name: h, mountPath: /h}]\n  volumes: [{name: h, hostPath: {path: /srv}}]\n",
        base + "      volumeMounts: [{name: h, mountPath: /h}]\n  volumes: [{name: h, hostPath: {path: /srv/a}}]\n",
        base + "      volumeMounts: [{name: h, mountPath: /h}]\n  volumes: [{name: h, hostPath: {path: /srv, type: Directory}}]\n",
    ]
    hashes = [thash(base)] + [thash(text) for text in variants]
    assert len(set(hashes)) == len(hashes)
    assert thash(base + "      securityContext: {privileged: false, capabilities: {add: []}}\n") == thash(base)


# --- validate ------------------------------------------------------------------------


def test_validate_uses_the_default_policy_or_the_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "p.yaml").write_text(PRIVILEGED_POD)
    assert main(["validate", str(manifests)]) == 1
    err = capsys.readouterr().err
    assert "p.yaml:5: Pod/p: spec.hostNetwork: the host network is not allowed by the agent policy (policy.allowHostNetwork)" in err
    assert "capability NET_ADMIN is not in policy.allowedCapabilities (allowed: none)" in err
    assert "hostPath /var/log is outside policy.allowedHostPaths (allowed: none)" in err
    assert "8 problem(s); nothing would be applied" in err  # with allowPrivilegeEscalation: false beside privileged
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": str(tmp_path)}, "policy": {
        "allowPrivileged": True, "allowHostNetwork": True, "allowHostPID": True, "allowHostIPC": True,
        "allowedCapabilities": ["NET_ADMIN"],
        "allowedHostPaths": [{"pathPrefix": "/var/log", "readOnly": True}, {"pathPrefix": "/srv"}],
    }}))
    assert main(["validate", str(manifests), "--config", str(cfg)]) == 1  # privileged with allowPrivilegeEscalation: false
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "p.yaml:18: Pod/p: spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false with privileged: true",
        "1 problem(s); nothing would be applied",
    ]
    (manifests / "p.yaml").write_text(PRIVILEGED_POD.replace("        allowPrivilegeEscalation: false\n", ""))
    assert main(["validate", str(manifests), "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("valid: 1 Pod")
    (tmp_path / "bad.yaml").write_text("source: {url: x}\npolicy: {allowEverything: true}\n")
    assert main(["validate", str(manifests), "--config", str(tmp_path / "bad.yaml")]) == 2
    bad = f"{tmp_path / 'bad.yaml'}:2: policy.allowEverything: unknown field 'allowEverything'"
    assert bad in capsys.readouterr().err


# --- end to end on real Podman ----------------------------------------------------------

NS = f"pol{os.getpid()}"
BASE = "clusters/edge"


def web(security: str = "", volumes: str = "") -> str:
    """A one-replica Deployment serving WEB1, with extra container lines (`security`) and pod lines (`volumes`)."""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {WEB1}
          command: [httpd, -f, -p, "8080", -h, /www]
{security}{volumes}"""


HOSTNS_POD = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: hostns, namespace: {NS}}}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {WEB1}
      command: [sleep, "100000"]
      securityContext: {{capabilities: {{add: [NET_ADMIN]}}}}
"""


def app_containers(svc: Any) -> dict[str, dict[str, Any]]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c for c in json.loads(out or "[]") if not c.get("IsInfra")}


def inspect(svc: Any, name: str) -> dict[str, Any]:
    return json.loads(svc.podman("inspect", name).stdout)[0]


def sync(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["sync", "--config", str(cfg)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_policy_end_to_end(clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc, repo = clean_podman, git_remote
    host_dir = tmp_path / "host-logs"
    host_dir.mkdir()
    (host_dir / "node.log").write_text("from the node\n")
    settings = {
        "source": {"url": repo.url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(settings))  # no policy: the default denies everything
    allowing = tmp_path / "allowing.yaml"
    allowing.write_text(yaml.safe_dump({**settings, "policy": {
        "allowPrivileged": True, "allowHostNetwork": True, "allowHostPID": True, "allowHostIPC": True,
        "allowedCapabilities": ["NET_ADMIN"],
        "allowedHostPaths": [{"pathPrefix": str(host_dir), "readOnly": True}],
    }}))

    # 1. a plain workload is applied under the default policy
    repo.write(f"{BASE}/ns.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
    repo.write(f"{BASE}/web.yaml", web())
    c1 = repo.commit_and_push("plain web")
    code, _, err = sync(strict, capsys)
    assert code == 0, err
    good = {name: c["Id"] for name, c in app_containers(svc).items()}
    assert len(good) == 1
    (plain,) = good
    assert inspect(svc, plain)["HostConfig"]["Privileged"] is False

    # 2. privileged, a host path, host namespaces and a capability: rejected, nothing applied
    security = """\
          securityContext:
            privileged: true
          volumeMounts: [{name: logs, mountPath: /host/logs, readOnly: true}]
"""
    volumes = f"""\
      volumes:
        - name: logs
          hostPath: {{path: {host_dir}, type: Directory}}
"""
    repo.write(f"{BASE}/web.yaml", web(security, volumes))
    repo.write(f"{BASE}/hostns.yaml", HOSTNS_POD)
    c2 = repo.commit_and_push("privileged web, host namespaces")
    code, _, err = sync(strict, capsys)
    assert code == 1
    for line in (
        f"{BASE}/web.yaml:16: Deployment/web: spec.template.spec.containers[0].securityContext.privileged: "
        "privileged containers are not allowed by the agent policy (policy.allowPrivileged)",
        f"{BASE}/web.yaml:20: Deployment/web: spec.template.spec.volumes[0].hostPath.path: "
        f"hostPath {host_dir} is outside policy.allowedHostPaths (allowed: none)",
        f"{BASE}/hostns.yaml:5: Pod/hostns: spec.hostNetwork: "
        "the host network is not allowed by the agent policy (policy.allowHostNetwork)",
        f"{BASE}/hostns.yaml:6: Pod/hostns: spec.hostPID: "
        "the host PID namespace is not allowed by the agent policy (policy.allowHostPID)",
        f"{BASE}/hostns.yaml:7: Pod/hostns: spec.hostIPC: "
        "the host IPC namespace is not allowed by the agent policy (policy.allowHostIPC)",
        f"{BASE}/hostns.yaml:13: Pod/hostns: spec.containers[0].securityContext.capabilities.add[0]: "
        "capability NET_ADMIN is not in policy.allowedCapabilities (allowed: none)",
    ):
        assert line in err
    assert {name: c["Id"] for name, c in app_containers(svc).items()} == good  # the last good revision keeps running
    assert main(["status", "--config", str(strict), "--output", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["condition"] == "Stalled"
    assert status["appliedRevision"] == f"main@sha1:{c1}" and status["attemptedRevision"] == f"main@sha1:{c2}"

    # 3. the same commit under a policy that allows it is applied as asked: a rejected commit is not
    # retried until the branch moves, unless the policy it was judged under has changed
    code, out, err = sync(allowing, capsys)
    assert code == 0, err
    assert f"main@sha1:{c2}" in out
    now = app_containers(svc)
    assert set(now) != set(good) and all(c["State"] == "running" for c in now.values())
    (web_name,) = [name for name in now if name.startswith("web-")]
    (hostns_name,) = [name for name in now if name.startswith("hostns_")]
    config = inspect(svc, web_name)
    assert config["HostConfig"]["Privileged"] is True
    (mount,) = [m for m in config["Mounts"] if m["Destination"] == "/host/logs"]
    assert (mount["Type"], mount["Source"], mount["RW"]) == ("bind", str(host_dir), False)
    assert svc.podman("exec", web_name, "cat", "/host/logs/node.log").stdout == "from the node\n"
    assert svc.podman("exec", web_name, "touch", "/host/logs/x", check=False).returncode != 0
    hostns = inspect(svc, hostns_name)
    assert hostns["HostConfig"]["NetworkMode"] == "host" and hostns["HostConfig"]["PidMode"] == "host"
    assert hostns["HostConfig"]["CapAdd"] == ["CAP_NET_ADMIN"] and hostns["HostConfig"]["Privileged"] is False
    in_container = svc.podman("exec", hostns_name, "ls", "-l", "/proc/self/ns/").stdout
    for ns in ("net", "pid", "ipc", "uts"):
        assert os.readlink(f"/proc/self/ns/{ns}") in in_container  # the node's namespaces
    assert svc.podman("exec", hostns_name, "cat", "/proc/sys/kernel/hostname").stdout.strip() == socket.gethostname()

    # 4. tightening the policy again: the running revision is now rejected too; its pods are left as they are
    running = {name: c["Id"] for name, c in app_containers(svc).items()}
    code, _, err = sync(strict, capsys)
    assert code == 1 and "privileged containers are not allowed by the agent policy (policy.allowPrivileged)" in err
    assert {name: c["Id"] for name, c in app_containers(svc).items()} == running
