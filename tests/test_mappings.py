"""Kubernetes fields mapped to Podman (issue 18): resources.requests, the pod securityContext,
capability names, fieldRef / resourceFieldRef env.

Pure tests from literals (manifest -> model -> libpod spec), then one end to end test on real Git
and real Podman that checks every mapping's effect in `podman inspect`, the container's cgroup and
/proc inside the container.
"""

from __future__ import annotations

import io
from dataclasses import replace
import json
import os
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import (PRE_STOP, ContainerSpec, compile_node, container_name, cpu_shares, network_name,
                                  unplaced, volume_name)
from gitops_agent.errors import RevisionRejected
from gitops_agent.live import ContainerProps, env_digest
from gitops_agent.plan import container_drift
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.podman import _container_body
from gitops_agent.subpaths import directories_tar
from podman_env import WEB1, http_get

NODE = NodeConfig("n1", labels={"zone": "a"})
COMMIT = "main@sha1:" + "a" * 40


def pod(spec: str = "", container: str = "", name: str = "p") -> str:
    """A Pod with one container `main`, extra pod-spec lines `spec` and container lines `container`."""
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: shop, tier: web}}}}\nspec:\n"
            + textwrap.indent(textwrap.dedent(spec), "  ")
            + "  containers:\n    - name: main\n      image: app:1\n"
            + textwrap.indent(textwrap.dedent(container), "      "))


def parsed(text: str) -> model.Revision:
    return parse([SourceFile("p.yaml", text.encode())], COMMIT)


def problems(text: str) -> list[str]:
    with pytest.raises(RevisionRejected) as rejected:
        parsed(text)
    return [str(p) for p in rejected.value.problems]


def specs(text: str) -> tuple[ContainerSpec, ...]:
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return spec.containers


def body(text: str) -> dict[str, Any]:
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return _container_body(spec, spec.containers[0])


# --- resources.requests -------------------------------------------------------------


def test_requests_become_cpu_shares_and_a_memory_reservation() -> None:
    """requests.cpu is the kubelet's CPU shares (millicores x 1024 / 1000), requests.memory a memory reservation."""
    text = pod(container="resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: '1', memory: 128Mi}}\n")
    (container,) = parsed(text).objects[0].template.containers  # type: ignore[union-attr]
    assert container.requests == model.Resources(cpu_millis=250, memory_bytes=64 << 20)
    assert body(text)["resource_limits"] == {
        "cpu": {"quota": 100_000, "period": 100_000, "shares": 256},
        "memory": {"limit": 128 << 20, "reservation": 64 << 20},
    }


def test_a_limit_without_a_request_requests_the_limit_and_quantities_round_as_the_kubelet() -> None:
    """Kubernetes defaults a missing request to its limit; shares never go below 2; "0.5" is half a core."""
    assert body(pod(container="resources: {limits: {cpu: 500m, memory: 32Mi}}\n"))["resource_limits"] == {
        "cpu": {"quota": 50_000, "period": 100_000, "shares": 512},
        "memory": {"limit": 32 << 20, "reservation": 32 << 20},
    }
    assert body(pod(container="resources: {requests: {cpu: '0.5'}}\n"))["resource_limits"] == {"cpu": {"shares": 512}}
    assert body(pod(container="resources: {requests: {cpu: 1m}}\n"))["resource_limits"] == {"cpu": {"shares": 2}}
    assert [cpu_shares(m) for m in (None, 1, 100, 1000, 3500)] == [None, 2, 102, 1024, 3584]
    assert "resource_limits" not in body(pod(container="resources: {requests: {cpu: 0, memory: 0}}\n"))


def test_a_request_above_its_limit_and_ephemeral_storage_are_errors() -> None:
    """As in Kubernetes a request may not exceed its limit; ephemeral-storage says why it cannot be enforced."""
    text = pod(container="resources: {requests: {cpu: '2', memory: 1Gi}, limits: {cpu: '1', memory: 512Mi}}\n")
    assert problems(text) == [
        "p.yaml:8: Pod/p: spec.containers[0].resources.requests.cpu: must be less than or equal to the cpu limit ('1')",
        "p.yaml:8: Pod/p: spec.containers[0].resources.requests.memory: must be less than or equal to the memory "
        "limit ('512Mi')",
    ]
    assert problems(pod(container="resources: {limits: {ephemeral-storage: 1Gi}}\n")) == [
        "p.yaml:8: Pod/p: spec.containers[0].resources.limits.ephemeral-storage: field 'ephemeral-storage' is not "
        "supported by gitops-agent (found \"1Gi\"): remove it: Podman's overlay storage can limit a container's "
        "writable layer only on XFS with project quotas, which gitops-agent does not require of a node, so no size "
        "would be enforced (a request of ephemeral-storage is accepted: it places the pod)",
    ]


# --- capabilities -------------------------------------------------------------------


def test_capability_names_in_any_case_with_or_without_cap_prefix() -> None:
    """`drop: [all]` (common in real manifests) is ALL; cap_net_bind_service is CAP_NET_BIND_SERVICE."""
    text = pod(container="securityContext: {capabilities: {drop: [all], add: [cap_net_bind_service, Chown]}}\n")
    revision = parse([SourceFile("p.yaml", text.encode())], COMMIT,
                     policy=model.Policy(allowed_capabilities=("NET_BIND_SERVICE", "CHOWN")))
    (workload,) = compile_node(revision, NODE, (NODE,)).workloads
    (spec,) = workload.pods
    cbody = _container_body(spec, spec.containers[0])
    assert (cbody["cap_drop"], cbody["cap_add"]) == (["ALL"], ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"])
    assert problems(pod(container="securityContext: {capabilities: {add: [net_admin]}}\n")) == [
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.capabilities.add[0]: "
        "capability NET_ADMIN is not in policy.allowedCapabilities (allowed: none)",
    ]


# --- pod securityContext ------------------------------------------------------------


def test_pod_security_context_values_are_defaults_of_each_container() -> None:
    """runAsUser/runAsGroup come from the pod unless the container sets its own; supplementalGroups apply to all."""
    text = pod(
        spec="securityContext: {runAsUser: 1000, runAsGroup: 3000, runAsNonRoot: true,"
             " supplementalGroups: [4000, 4000, 5], seccompProfile: {type: RuntimeDefault}}\n",
        container="securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
    ) + "    - name: side\n      image: app:1\n      securityContext: {runAsUser: 7}\n"
    main_spec, side = specs(text)
    assert (main_spec.user, main_spec.groups) == ("1000:3000", ("4000", "5"))
    assert (side.user, side.groups) == ("7:3000", ("4000", "5"))
    cbody = body(text)
    assert cbody["user"] == "1000:3000" and cbody["groups"] == ["4000", "5"]
    assert "seccomp_profile_path" not in cbody  # RuntimeDefault is Podman's default profile


def test_fs_group_is_a_group_of_every_process_and_of_the_read_write_claims() -> None:
    """fsGroup comes first in the supplementary groups; a container mounting its claims read-only gets none to
    change; the archive Podman is sent names only the target directory, owner root, group fsGroup, mode 2775."""
    claim = ("---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\n"
             "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}\n")
    spec = ("securityContext: {fsGroup: 2000, supplementalGroups: [5, 2000]}\n"
            "volumes: [{name: v, persistentVolumeClaim: {claimName: c}}]\n")
    writer, reader = specs(pod(spec, "volumeMounts: [{name: v, mountPath: /v}]\n")
                           + "    - name: r\n      image: app:1\n"
                             "      volumeMounts: [{name: v, mountPath: /v, readOnly: true}]\n" + claim)
    assert (writer.groups, writer.fs_group) == (("2000", "5"), 2000)
    assert (reader.groups, reader.fs_group) == (("2000", "5"), None)
    with tarfile.open(fileobj=io.BytesIO(directories_tar((".",), 0o2775, 2000))) as tar:
        (entry,) = tar.getmembers()
    assert (entry.name, entry.isdir(), entry.uid, entry.gid, oct(entry.mode)) == (".", True, 0, 2000, "0o2775")


def test_run_as_non_root_is_checked_and_unmapped_pod_fields_say_why() -> None:
    """runAsNonRoot contradicts user 0 and, without runAsUser, leaves the image's user to the node; Localhost
    seccomp without its profile is rejected clearly (tests/test_secprof.py has the rest of seccomp)."""
    assert problems(pod(spec="securityContext: {runAsNonRoot: true, runAsUser: 0}\n")) == [
        "p.yaml:5: Pod/p: spec.securityContext.runAsNonRoot: runAsNonRoot: true contradicts runAsUser: 0",
    ]
    assert problems(pod(spec="securityContext: {runAsGroup: 5}\n")) == [
        "p.yaml:5: Pod/p: spec.securityContext.runAsGroup: runAsGroup needs runAsUser (Podman sets the user and "
        "group together)",
    ]
    (unknown_user,) = specs(pod(spec="securityContext: {runAsNonRoot: true}\n"))
    assert unknown_user.non_root_image and unknown_user.user is None  # the node checks the image's user
    (known,) = specs(pod(spec="securityContext: {runAsNonRoot: true}\n", container="securityContext: {runAsUser: 5}\n"))
    assert not known.non_root_image and known.user == "5"
    assert problems(pod(spec="securityContext: {seccompProfile: {type: Localhost}}\n")) == [
        "p.yaml:5: Pod/p: spec.securityContext.seccompProfile.localhostProfile: is required with type Localhost (the "
        "profile to use)",
    ]


# --- fieldRef / resourceFieldRef ----------------------------------------------------

FIELD_ENV = """\
resources: {requests: {cpu: 250m}, limits: {memory: 64Mi}}
env:
  - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
  - {name: NS, valueFrom: {fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}}
  - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
  - {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['missing']"}}}
  - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
  - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
  - {name: CPU_M, valueFrom: {resourceFieldRef: {containerName: main, resource: requests.cpu, divisor: 1m}}}
  - {name: CPU, valueFrom: {resourceFieldRef: {resource: requests.cpu}}}
  - {name: MEM_REQ, valueFrom: {resourceFieldRef: {resource: requests.memory}}}
"""


def test_field_and_resource_refs_become_literal_env_values() -> None:
    """Each fieldRef is the pod's value on its node; resources are in divisor units, rounded up (1 core for 250m)."""
    (container,) = specs(pod(container=FIELD_ENV))
    assert dict(container.env) == {
        "POD": "p", "NS": "default", "APP": "shop", "NOTE": "", "NODE": "n1",
        "MEM_MI": "64", "CPU_M": "250", "CPU": "1", "MEM_REQ": str(64 << 20),
    }


def test_host_ip_is_the_nodes_address_and_so_is_the_pod_ip_on_the_host_network() -> None:
    """status.hostIP comes from nodes[].address; status.podIP is the same with hostNetwork, and on the namespace
    network the address the pod gets when it is made (`ContainerSpec.pod_ip_env`, not a literal value)."""
    env = "env: [{name: H, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}]\n"
    node = NodeConfig("n1", address="10.1.2.3")
    revision = parse([SourceFile("p.yaml", pod(container=env).encode())], COMMIT, nodes=(node,))
    (workload,) = compile_node(revision, node, (node,)).workloads
    assert dict(workload.pods[0].containers[0].env) == {"H": "10.1.2.3"}
    pod_ip = "env: [{name: P, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n"
    host = parse([SourceFile("p.yaml", pod("hostNetwork: true\n", pod_ip).encode())], COMMIT, nodes=(node,),
                 policy=model.Policy(allow_host_network=True))
    (workload,) = compile_node(host, node, (node,)).workloads
    assert dict(workload.pods[0].containers[0].env) == {"P": "10.1.2.3"}
    assert workload.pods[0].containers[0].pod_ip_env == ()
    (container,) = specs(pod(container=pod_ip))
    assert (dict(container.env), container.pod_ip_env) == ({}, ("P",))


POD_IP_ENV = """\
env:
  - {name: A, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
  - {name: B, value: literal}
  - {name: B, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
  - {name: C, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
  - {name: C, value: last wins}
"""


def test_pod_ip_variables_get_the_address_the_pod_is_made_with_and_are_no_drift() -> None:
    """status.podIP and status.podIPs (one address) take the pod's address at creation; the later of two
    definitions of a variable wins, as in Kubernetes. Its value is not compared (a pod made again has another
    address), only that the variable is there."""
    text = pod(container=POD_IP_ENV)
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    (container,) = spec.containers
    assert (dict(container.env), container.pod_ip_env) == ({"C": "last wins"}, ("A", "B"))
    assert _container_body(spec, container, "10.89.0.7")["env"] == {"C": "last wins", "A": "10.89.0.7",
                                                                    "B": "10.89.0.7"}
    assert all(c.pod_ip_env == () for c in specs(pod(container=FIELD_ENV)))  # no address wanted: no pinning
    live = {"C": env_digest("last wins"), "A": env_digest("10.89.0.9"), "B": env_digest("10.89.0.9")}
    props = ContainerProps(env=live, labels=container.labels, restart_policy="always", image_name=container.image)
    assert container_drift(spec, container, props) == []
    assert container_drift(spec, container, replace(props, env={"C": live["C"], "A": live["A"]})) == ["env B"]


def test_service_account_name_is_a_plain_value_and_hashed_only_when_read() -> None:
    """spec.serviceAccountName reads the pod's serviceAccountName ("default" when unset, the deprecated
    serviceAccount when only it is set); a pod that sets it and does not read it keeps its template hash."""
    env = "env: [{name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}]\n"
    assert dict(specs(pod("serviceAccountName: robot\n", env))[0].env) == {"SA": "robot"}
    assert dict(specs(pod("serviceAccount: old\n", env))[0].env) == {"SA": "old"}
    assert dict(specs(pod("", env))[0].env) == {"SA": "default"}

    def thash(text: str) -> str:
        (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
        return workload.template_hash

    assert thash(pod("serviceAccountName: robot\n")) == thash(pod())
    assert thash(pod("serviceAccountName: robot\n", env)) != thash(pod("serviceAccountName: other\n", env))


def test_unknown_or_late_field_paths_and_unknown_containers_are_errors() -> None:
    """A field the agent cannot fill and a container the pod lacks are errors; a limit the container does not set
    is not (it reads the node's allocatable amount: `tests/test_allocatable.py`)."""
    env = """\
resources: {limits: {memory: 64Mi}}
env:
  - {name: A, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
  - {name: B, valueFrom: {fieldRef: {fieldPath: spec.serviceAccount}}}
  - {name: C, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
  - {name: D, valueFrom: {resourceFieldRef: {containerName: nope, resource: limits.memory}}}
"""
    assert problems(pod(container=env)) == [
        "p.yaml:10: Pod/p: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: status.hostIP is the node's "
        "address, and node local has none in the agent config: set its nodes[].address",
        "p.yaml:11: Pod/p: spec.containers[0].env[1].valueFrom.fieldRef.fieldPath: unknown fieldPath "
        "'spec.serviceAccount' (supported: metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], "
        "metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP, status.hostIPs, "
        "status.podIP, status.podIPs)",
        "p.yaml:13: Pod/p: spec.containers[0].env[3].valueFrom.resourceFieldRef.containerName: 'nope' is not a "
        "container of this pod",
    ]


# --- Service types --------------------------------------------------------------------


def service(name: str, spec: str, selector: str = "app: shop") -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{{selector}}}\n{spec}"


def services_of(revision: model.Revision) -> dict[str, model.Service]:
    return {o.ref.name: o for o in revision.objects if isinstance(o, model.Service)}


def test_nodeport_without_nodeport_gets_a_deterministic_free_port() -> None:
    """The allocated port is the same on every parse, in 30000-32767, and never one already taken."""
    text = pod() + service("a", "  type: NodePort\n  ports: [{name: x, port: 80}, {name: y, port: 81}]\n")
    first = services_of(parsed(text))["a"]
    ports = [p.node_port for p in first.ports]
    assert all(p is not None and 30000 <= p <= 32767 for p in ports) and len(set(ports)) == 2
    assert services_of(parsed(text))["a"] == first
    # the picked port given explicitly to another Service: the allocation moves to the next free one
    taken = ports[0]
    other = service("b", f"  type: NodePort\n  ports: [{{port: 90, nodePort: {taken}}}]\n", "app: other")
    moved = services_of(parsed(text + other))["a"].ports[0].node_port
    assert moved != taken and moved is not None and 30000 <= moved <= 32767
    assert services_of(parsed(text + other))["b"].ports[0].node_port == taken
    (workload,) = compile_node(parsed(text), NODE, (NODE,)).workloads
    assert {(m.host_port, m.container_port) for m in workload.pods[0].ports} == {(ports[0], 80), (ports[1], 81)}


def test_load_balancer_publishes_its_port_and_headless_and_external_name() -> None:
    """A LoadBalancer publishes `port` on the node with NodePort's one-owner rules; clusterIP None is accepted;
    ExternalName says why not."""
    lb = service("lb", "  type: LoadBalancer\n  clusterIP: None\n  ports: [{port: 8443, targetPort: 8080}]\n")
    (workload,) = compile_node(parsed(pod() + lb), NODE, (NODE,)).workloads
    assert [(m.host_port, m.container_port, m.protocol) for m in workload.pods[0].ports] == [(8443, 8080, "tcp")]
    deployment = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 2\n"
                  "  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n"
                  "    spec:\n      containers: [{name: main, image: app:1}]\n")
    # 2 surging replicas: accepted (once rejected, "only one pod on a node can own a node port"); the port is the
    # forwarder's (tests/test_forwarder.py), the pods publish nothing
    deployment_pods, fwd = compile_node(parsed(deployment + lb), NODE, (NODE,)).workloads
    assert all(p.ports == () for p in deployment_pods.pods)
    assert [(m.host_port, m.container_port) for m in fwd.pods[0].ports] == [(8443, 8443)]
    assert problems(pod() + service("e", "  type: ExternalName\n  ports: [{port: 80}]\n")) == [
        "p.yaml:14: Service/e: spec.type: must be ClusterIP, NodePort or LoadBalancer (ExternalName is not supported "
        "by gitops-agent: aardvark-dns, Podman's DNS server, answers only with container addresses and cannot serve "
        "a DNS alias)",
    ]


# --- end to end on real Podman ----------------------------------------------------------

NS = f"map{os.getpid()}"
LB_PORT = 20000 + os.getpid() % 5000  # published on this machine's loopback: unique to the test run
BASE = "clusters/edge"


HOST_IP_ENV = "  - {name: HOST, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}\n"
POD_ENV = """\
  - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
  - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
  - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
"""
NODE_ADDRESS = "192.0.2.10"  # nodes[].address of the test node (documentation range: never dialled)


def _deployment() -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: {NS}}}
spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Mi}}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: shop, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: shop}}}}
  template:
    metadata: {{labels: {{app: shop, tier: web}}, annotations: {{note: 'say "hi"'}}}}
    spec:
      terminationGracePeriodSeconds: 1
      serviceAccountName: shop-robot
      securityContext: {{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000}}
      volumes:
        - {{name: data, persistentVolumeClaim: {{claimName: data}}}}
        - name: podinfo
          downwardAPI:
            items:
              - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
              - {{path: annotations, fieldRef: {{fieldPath: metadata.annotations}}, mode: 0444}}
              - {{path: cpu_request, resourceFieldRef: {{containerName: main, resource: requests.cpu, divisor: 1m}}}}
        - name: all
          projected:
            sources: [{{downwardAPI: {{items: [{{path: meta/name, fieldRef: {{fieldPath: metadata.name}}}}]}}}}]
      initContainers:  # run by the pod's start after its infra container was started alone (status.podIP)
        - name: check
          image: {WEB1}
          command: [sh, -c, 'test -n "$POD_IP"']
          env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
      containers:
        - name: main
          image: {WEB1}
          command: [sleep, "100000"]
          securityContext: {{capabilities: {{drop: [all]}}, seccompProfile: {{type: RuntimeDefault}}}}
          volumeMounts:
            - {{name: data, mountPath: /data}}
            - {{name: podinfo, mountPath: /etc/podinfo}}
            - {{name: all, mountPath: /etc/all}}
""" + textwrap.indent(FIELD_ENV + HOST_IP_ENV + POD_ENV, " " * 10) + f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: web, image: {WEB1}, command: [httpd, -f, -p, "8080", -h, /www]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: {NS}}}
spec: {{type: LoadBalancer, selector: {{app: web}}, ports: [{{port: {LB_PORT}, targetPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: np, namespace: {NS}}}
spec: {{type: NodePort, clusterIP: None, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
"""


def agent_config(tmp_path: Path, repo_url: str, node_url: str) -> Path:
    """An agent config for one node `local` syncing BASE of the test repository."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo_url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": node_url, "address": NODE_ADDRESS}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
    }))
    return cfg


def _status_fields(text: str) -> dict[str, str]:
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def test_mappings_take_effect_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One sync; inspect, the cgroup and /proc of the container show shares, reservation, user, groups, no
    capabilities and the fieldRef values."""
    svc, repo = clean_podman, git_remote
    cfg = agent_config(tmp_path, repo.url, svc.url)
    repo.write(f"{BASE}/shop.yaml", _deployment())
    repo.commit_and_push("shop")
    code = main(["sync", "--config", str(cfg)])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    listed = json.loads(svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout)
    (name,) = [c["Names"][0] for c in listed if not c.get("IsInfra") and c["Names"][0].startswith("shop-")]
    host = json.loads(svc.podman("inspect", name).stdout)[0]["HostConfig"]
    assert (host["CpuShares"], host["MemoryReservation"], host["Memory"]) == (256, 64 << 20, 64 << 20)
    assert host["CapDrop"] and not host["CapAdd"]
    status = _status_fields(svc.podman("exec", name, "cat", "/proc/self/status").stdout)
    assert status["Uid"].split()[0] == "1000" and status["Gid"].split()[0] == "3000"
    assert status["Groups"].split() == ["2000", "4000"]  # fsGroup, then supplementalGroups
    # fsGroup: the non-root process writes to its claim through the group, new files take it (setgid)
    svc.podman("exec", name, "touch", "/data/written")
    data = Path(json.loads(svc.podman("volume", "inspect", volume_name(NS, "data")).stdout)[0]["Mountpoint"])
    assert (oct(data.stat().st_mode & 0o7777), data.stat().st_gid) == ("0o2775", 2000)
    assert ((data / "written").stat().st_uid, (data / "written").stat().st_gid) == (1000, 2000)
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["Seccomp"] == "2"  # a filter: Podman's default profile
    # the container's own cgroup (v1 controllers on these machines, see ENVIRONMENT.md)
    assert svc.podman("exec", name, "cat", "/sys/fs/cgroup/cpu/cpu.shares").stdout.strip() == "256"
    soft = svc.podman("exec", name, "cat", "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes").stdout
    assert int(soft) == 64 << 20
    env = dict(line.partition("=")[::2] for line in svc.podman("exec", name, "env").stdout.splitlines())
    assert {k: env[k] for k in ("NS", "APP", "NOTE", "NODE", "HOST", "MEM_MI", "CPU_M", "CPU", "MEM_REQ")} == {
        "NS": NS, "APP": "shop", "NOTE": "", "NODE": "local", "HOST": NODE_ADDRESS,
        "MEM_MI": "64", "CPU_M": "250", "CPU": "1", "MEM_REQ": str(64 << 20),
    }
    assert env["POD"] in {p["Name"] for p in json.loads(svc.podman("pod", "ps", "--format", "json").stdout)}
    assert env["POD"].startswith("shop-")
    # status.podIP(s): the address `podman inspect` shows on the namespace network; the serviceAccountName
    infra = json.loads(svc.podman("pod", "inspect", env["POD"]).stdout)["InfraContainerID"]
    networks = json.loads(svc.podman("inspect", infra).stdout)[0]["NetworkSettings"]["Networks"]
    address = networks[network_name(NS)]["IPAddress"]
    assert (env["POD_IP"], env["POD_IPS"], env["SA"]) == (address, address, "shop-robot")
    check = json.loads(svc.podman("inspect", container_name(env["POD"], "check")).stdout)[0]["State"]
    assert (check["Status"], check["ExitCode"]) == ("exited", 0)  # the init container ran and saw the address
    # the downwardAPI files, in Kubernetes' formats and modes
    files = svc.podman("exec", name, "sh", "-c", "cat /etc/podinfo/labels; echo '|'; cat /etc/podinfo/annotations; "
                       "echo '|'; cat /etc/podinfo/cpu_request /etc/all/meta/name; stat -c %a /etc/podinfo/annotations")
    assert files.stdout == f'app="shop"\ntier="web"|\nnote="say \\"hi\\""|\n250{env["POD"]}444\n'
    # the address is the pod's own: a restart of the pod keeps it, and nothing the agent set reads as drift
    svc.podman("pod", "restart", env["POD"])
    networks = json.loads(svc.podman("inspect", infra).stdout)[0]["NetworkSettings"]["Networks"]
    assert networks[network_name(NS)]["IPAddress"] == env["POD_IP"]
    capsys.readouterr()
    assert main(["diff", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "node local: in sync"

    # the LoadBalancer's port and the allocated node port answer on the node; status shows both
    assert http_get(LB_PORT) == "1\n"
    assert main(["status", "--config", str(cfg), "--output", "json"]) == 0
    shown = {o["name"]: o for o in json.loads(capsys.readouterr().out)["objects"] if o["kind"] == "Service"}
    assert shown["lb"]["nodePorts"] == [f"{LB_PORT}/TCP"] and shown["lb"]["loadBalancer"] == [f"local:{LB_PORT}/TCP"]
    (node_port,) = shown["np"]["nodePorts"]
    assert 30000 <= int(node_port.removesuffix("/TCP")) <= 32767 and "loadBalancer" not in shown["np"]
    assert http_get(int(node_port.removesuffix("/TCP"))) == "1\n"


# --- lifecycle hooks ---------------------------------------------------------------------


def test_lifecycle_hooks_become_a_post_start_command_and_a_pre_stop_label() -> None:
    """exec runs as written, httpGet by the probe script with the grace period as its timeout; preStop is kept
    on the container (a later revision may no longer have the template when it stops the pod)."""
    text = pod(spec="terminationGracePeriodSeconds: 7\n", container="""\
ports: [{name: http, containerPort: 8080}]
lifecycle:
  postStart: {exec: {command: [sh, -c, "echo up > /tmp/up"]}}
  preStop: {httpGet: {path: /quit, port: http}}
""")
    (container,) = specs(text)
    assert container.post_start == ("sh", "-c", "echo up > /tmp/up")
    hook = json.loads(container.labels[PRE_STOP])
    assert hook["timeout"] == 7 and hook["command"][:2] == ["/bin/sh", "-c"]
    assert "curl -fsSkg -o /dev/null -m 7 'http://127.0.0.1:8080/quit'" in hook["command"][2]
    assert PRE_STOP not in specs(pod())[0].labels and specs(pod())[0].post_start == ()
    assert problems(pod(container="lifecycle: {preStop: {sleep: {seconds: 5}}}\n")) == [
        "p.yaml:8: Pod/p: spec.containers[0].lifecycle.preStop.sleep: field 'sleep' is not supported by "
        "gitops-agent (found {seconds}): use exec with command [sleep, N]",
    ]


HOOKED = f"""\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: log, namespace: {NS}}}
spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Mi}}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: hooked, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: hooked}}}}
  template:
    metadata: {{labels: {{app: hooked}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: main
          image: {WEB1}
          command: [sh, -c, 'trap "echo TERM >> /data/log; exit 0" TERM; while true; do sleep 0.1; done']
          volumeMounts: [{{name: log, mountPath: /data}}]
          lifecycle:
            postStart: {{exec: {{command: [sh, -c, "echo postStart >> /data/log"]}}}}
            preStop: {{exec: {{command: [sh, -c, "echo preStop >> /data/log"]}}}}
      volumes: [{{name: log, persistentVolumeClaim: {{claimName: log}}}}]
"""


def test_pre_stop_runs_before_the_container_is_signalled_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """postStart runs once the pod started; removing the Deployment runs preStop first, then SIGTERM."""
    svc, repo = clean_podman, git_remote
    cfg = agent_config(tmp_path, repo.url, svc.url)
    namespace = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    repo.write(f"{BASE}/ns.yaml", namespace)
    repo.write(f"{BASE}/hooked.yaml", HOOKED)
    repo.commit_and_push("hooked")
    code = main(["sync", "--config", str(cfg)])
    assert code == 0, capsys.readouterr().err
    mountpoint = Path(json.loads(svc.podman("volume", "inspect", volume_name(NS, "log")).stdout)[0]["Mountpoint"])
    assert (mountpoint / "log").read_text() == "postStart\n"
    claim = HOOKED.split("---\n")[0]
    repo.write(f"{BASE}/hooked.yaml", claim)  # the Deployment is gone: its pod is removed, the claim stays
    repo.commit_and_push("no more hooked")
    code = main(["sync", "--config", str(cfg)])
    assert code == 0, capsys.readouterr().err
    assert (mountpoint / "log").read_text() == "postStart\npreStop\nTERM\n"

    # runAsNonRoot without runAsUser: the node refuses an image that runs as root, as the kubelet does
    rooted = HOOKED.replace("      terminationGracePeriodSeconds: 5\n",
                            "      terminationGracePeriodSeconds: 5\n      securityContext: {runAsNonRoot: true}\n")
    repo.write(f"{BASE}/hooked.yaml", rooted)
    repo.commit_and_push("non-root")
    assert main(["sync", "--config", str(cfg)]) == 1
    assert ("container hooked-" in (err := capsys.readouterr().err) and f"runAsNonRoot is true but image {WEB1} "
            "runs as root; set securityContext.runAsUser to a non-zero user id" in err), err
    listed = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    assert [c for c in json.loads(listed) if not c.get("IsInfra")] == []  # nothing half-made is left


# --- placement: capacity, nodeAffinity, podAntiAffinity, tolerations ------------------------

FLEET = (
    NodeConfig("a", labels={"zone": "north", "disk": "ssd", "cores": "4"}),
    NodeConfig("b", labels={"zone": "south", "cores": "16"}, taints=(model.Taint("gpu", "yes", "NoSchedule"),)),
    NodeConfig("c", labels={"zone": "south", "cores": "8"}, taints=(model.Taint("old", "", "PreferNoSchedule"),)),
    NodeConfig("d", labels={"zone": "east"}, cpu_millis=1000, memory_bytes=256 << 20),
)


def deployment(replicas: int, spec: str = "", container: str = "", name: str = "web") -> str:
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n"
            f"  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
            "    spec:\n" + textwrap.indent(textwrap.dedent(spec), "      ")
            + "      containers:\n        - name: main\n          image: app:1\n"
            + textwrap.indent(textwrap.dedent(container), "          "))


def placement(text: str, nodes: tuple[NodeConfig, ...] = FLEET) -> dict[str, int]:
    revision = parse([SourceFile("d.yaml", text.encode())], COMMIT, nodes=nodes)
    counts = {node.name: len(compile_node(revision, node, nodes).workloads[0].pods) for node in nodes}
    return {name: count for name, count in counts.items() if count}


AFFINITY = """\
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: zone, operator: In, values: [north, south]},
                             {key: cores, operator: Gt, values: ["6"]}]
        - matchExpressions: [{key: disk, operator: Exists}, {key: gpu, operator: DoesNotExist}]
"""


def test_required_node_affinity_operators_and_taints_choose_the_nodes() -> None:
    """Terms are ORed, requirements ANDed; an untolerated NoSchedule taint keeps pods off (b), PreferNoSchedule
    only orders (c after a)."""
    assert placement(deployment(3, AFFINITY)) == {"a": 2, "c": 1}
    tolerant = AFFINITY + "tolerations: [{key: gpu, operator: Equal, value: 'yes', effect: NoSchedule}]\n"
    assert placement(deployment(3, tolerant)) == {"a": 1, "b": 1, "c": 1}
    assert placement(deployment(4, "tolerations: [{operator: Exists}]\n")) == {"a": 1, "b": 1, "c": 1, "d": 1}
    not_in = """\
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: zone, operator: NotIn, values: [north]}, {key: cores, operator: Lt, values: ["10"]}]
        - matchFields: [{key: metadata.name, operator: In, values: [a]}]
"""
    assert placement(deployment(4, not_in)) == {"a": 2, "c": 2}  # d has no cores label: Lt does not hold


def test_gt_and_lt_tolerations_compare_a_numeric_taint_value() -> None:
    """Kubernetes 1.35's numeric toleration operators: Gt tolerates a taint whose value is above the toleration's,
    Lt one below it; a taint value that is not a positive integer is tolerated by neither."""
    nodes = (NodeConfig("spot", taints=(model.Taint("sla", "950", "NoSchedule"),)),
             NodeConfig("cheap", taints=(model.Taint("sla", "800", "NoSchedule"),)),
             NodeConfig("odd", taints=(model.Taint("sla", "high", "NoSchedule"),)))
    gt = "tolerations: [{key: sla, operator: Gt, value: '900', effect: NoSchedule}]\n"
    lt = "tolerations: [{key: sla, operator: Lt, value: '900'}]\n"
    assert placement(deployment(2, gt), nodes) == {"spot": 2}
    assert placement(deployment(2, lt), nodes) == {"cheap": 2}
    assert placement(deployment(2, "tolerations: [{key: sla, operator: Gt, value: '950'}]\n"), nodes) == {}
    assert problems(deployment(1, "tolerations: [{operator: Gt, value: '09'}, {key: k, operator: Lt, value: x}]\n"))\
        == ["p.yaml:10: Deployment/web: spec.template.spec.tolerations[0].key: is required with operator Gt",
            "p.yaml:10: Deployment/web: spec.template.spec.tolerations[0].value: must be a positive integer "
            "without leading zeros with operator Gt (found '09')",
            "p.yaml:10: Deployment/web: spec.template.spec.tolerations[1].value: must be a positive integer "
            "without leading zeros with operator Lt (found 'x')"]


def test_preferred_affinity_breaks_ties_and_anti_affinity_puts_one_pod_per_node() -> None:
    """The preferred nodes take the remainder of the even spread; with podAntiAffinity on the hostname, at most
    one pod per node and the rest is reported unplaced. The same config always gives the same placement."""
    preferred = """\
affinity:
  nodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 50, preference: {matchExpressions: [{key: zone, operator: In, values: [east]}]}}
      - {weight: 10, preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [c]}]}}
"""
    assert placement(deployment(4, preferred)) == {"d": 2, "c": 1, "a": 1}
    assert placement(deployment(4, preferred)) == placement(deployment(4, preferred))
    anti = """\
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}}
"""
    assert placement(deployment(5, anti)) == {"a": 1, "c": 1, "d": 1}
    revision = parse([SourceFile("d.yaml", deployment(5, anti).encode())], COMMIT, nodes=FLEET)
    assert unplaced(revision, FLEET) == [
        "Deployment/default/web: podAntiAffinity allows one pod per node and 3 node(s) match; 2 of 5 replica(s) "
        "not placed",
    ]


def spread(key: str, when: str = "DoNotSchedule", extra: str = "") -> str:
    return (f"topologySpreadConstraints:\n  - {{maxSkew: 1, topologyKey: {key}, whenUnsatisfiable: {when}, "
            f"labelSelector: {{matchLabels: {{app: web}}}}{extra}}}\n")


def test_topology_spread_over_a_node_label_spreads_over_its_values_then_their_nodes() -> None:
    """Over `zone` (north: a, south: b and c, east: d) each value gets 2 of 6 replicas, south's split over its two
    nodes, where the plain spread gives {a: 2, b: 2, c: 1, d: 1}; over kubernetes.io/hostname the plain spread is
    kept (its skew is at most 1 already)."""
    tolerant = "tolerations: [{operator: Exists}]\n"
    assert placement(deployment(6, tolerant)) == {"a": 2, "b": 2, "c": 1, "d": 1}
    assert placement(deployment(6, tolerant + spread("zone"))) == {"a": 2, "b": 1, "c": 1, "d": 2}
    assert placement(deployment(6, tolerant + spread("kubernetes.io/hostname"))) == \
        placement(deployment(6, tolerant))
    assert placement(deployment(6, tolerant + spread("zone", "ScheduleAnyway"))) == {"a": 2, "b": 1, "c": 1, "d": 2}


def test_do_not_schedule_keeps_pods_off_unlabelled_nodes_and_schedule_anyway_uses_them_last() -> None:
    """Only node a has label `disk`: DoNotSchedule puts every replica there; ScheduleAnyway too, unless
    podAntiAffinity (one pod per node) sends the rest to the unlabelled nodes, in their usual order."""
    assert placement(deployment(3, spread("disk"))) == {"a": 3}
    assert placement(deployment(3, spread("disk", "ScheduleAnyway"))) == {"a": 3}
    anti = ("affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
            "[{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}}]}}\n")
    assert placement(deployment(3, anti + spread("disk", "ScheduleAnyway"))) == {"a": 1, "c": 1, "d": 1}
    assert placement(deployment(3, anti + spread("disk"))) == {"a": 1}


def test_topology_spreads_the_agent_cannot_honour_are_errors() -> None:
    """A label no node declares, two keys at once, another workload's pods, a StatefulSet (its pods stay on one
    node), minDomains and a taints policy other than Honor: each an error saying why."""
    def rejected(text: str) -> list[str]:
        with pytest.raises(RevisionRejected) as caught:
            parse([SourceFile("d.yaml", text.encode())], COMMIT, nodes=FLEET)
        return [str(p).split(": ", 2)[2] for p in caught.value.problems]

    assert rejected(deployment(2, spread("topology.kubernetes.io/zone"))) == [
        "spec.template.spec.topologySpreadConstraints[0].topologyKey: no node of the agent config declares label "
        "'topology.kubernetes.io/zone': declare it in nodes[].labels (the value: that node's zone), or spread over "
        "kubernetes.io/hostname"]
    both = spread("zone") + spread("kubernetes.io/hostname").removeprefix("topologySpreadConstraints:\n")
    assert rejected(deployment(2, both)) == [
        "spec.template.spec.topologySpreadConstraints: spreads over 2 topology keys (kubernetes.io/hostname, zone); "
        "gitops-agent spreads over one: kubernetes.io/hostname or one node label"]
    other = spread("zone").replace("app: web", "app: other")
    assert "topologySpreadConstraints[0].labelSelector: must select this workload's own pods" in \
        rejected(deployment(2, other))[0]
    sts = deployment(2, spread("zone")).replace("kind: Deployment", "kind: StatefulSet")
    assert rejected(sts) == [
        "spec.template.spec.topologySpreadConstraints: is not supported by gitops-agent on a StatefulSet except "
        "over kubernetes.io/hostname: its pods run on one node, whatever the spread"]
    (min_domains,) = rejected(deployment(2, spread("zone", extra=", minDomains: 3")))
    assert min_domains.startswith("spec.template.spec.topologySpreadConstraints[0].minDomains: field 'minDomains' "
                                  "is not supported by gitops-agent (found 3): remove it")
    (taints,) = rejected(deployment(2, spread("zone", extra=", nodeTaintsPolicy: Ignore")))
    assert taints == ("spec.template.spec.topologySpreadConstraints[0].nodeTaintsPolicy: must be Honor: "
                      "gitops-agent counts only the nodes whose taints the pod tolerates")


def test_requests_beyond_a_nodes_capacity_reject_the_revision_naming_the_node() -> None:
    """Only nodes that declare a capacity are checked, against the requests of the pods placed there."""
    only_d = "nodeSelector: {zone: east}\n"
    fits = deployment(2, only_d, "resources: {requests: {cpu: 500m, memory: 128Mi}}\n")
    assert placement(fits) == {"d": 2}
    too_much = deployment(3, only_d, "resources: {requests: {cpu: 500m}, limits: {memory: 100Mi}}\n")
    with pytest.raises(RevisionRejected) as rejected:
        parse([SourceFile("d.yaml", too_much.encode())], COMMIT, nodes=FLEET)
    assert [str(p) for p in rejected.value.problems] == [
        "d.yaml:11: Deployment/web: spec.template.spec.containers: the pods placed on node d request 1500m of cpu in "
        "all, more than its capacity.cpu (1000m); Deployment/web requests 1500m there",
        "d.yaml:11: Deployment/web: spec.template.spec.containers: the pods placed on node d request 314572800 bytes "
        "of memory in all, more than its capacity.memory (268435456 bytes); Deployment/web requests 314572800 bytes "
        "there",
    ]


def test_ephemeral_storage_requests_place_pods_against_declared_capacity_and_warn_without_one() -> None:
    """As Kubernetes' scheduler counts them: node d declares 1Gi, so three pods of 512Mi there are too many (and
    two fit); with no node declaring the capacity the request does nothing, which a warning says."""
    only_d = "nodeSelector: {zone: east}\n"
    storage = "resources: {requests: {ephemeral-storage: 512Mi}}\n"
    fleet = tuple(replace(n, ephemeral_bytes=1 << 30) if n.name == "d" else n for n in FLEET)
    revision = parse([SourceFile("d.yaml", deployment(2, only_d, storage).encode())], COMMIT, nodes=fleet)
    assert placement(deployment(2, only_d, storage), fleet) == {"d": 2} and revision.warnings == ()
    with pytest.raises(RevisionRejected) as rejected:
        parse([SourceFile("d.yaml", deployment(3, only_d, storage).encode())], COMMIT, nodes=fleet)
    assert [str(p) for p in rejected.value.problems] == [
        "d.yaml:11: Deployment/web: spec.template.spec.containers: the pods placed on node d request 1610612736 "
        "bytes of ephemeral-storage in all, more than its capacity.ephemeral-storage (1073741824 bytes); "
        "Deployment/web requests 1610612736 bytes there"]
    unchecked = parse([SourceFile("d.yaml", deployment(3, only_d, storage).encode())], COMMIT, nodes=FLEET)
    assert unchecked.warnings == (
        "d.yaml:14: Deployment/web: spec.template.spec.containers[0].resources.requests.ephemeral-storage: has no "
        "effect here: no node of the agent config declares capacity.ephemeral-storage, against which it would "
        "place the pod (Podman enforces no size on a container's storage)",)


def test_placement_fields_are_checked() -> None:
    bad = """\
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: a, operator: In}, {key: b, operator: Exists, values: [x]},
                             {key: c, operator: Gt, values: [x]}]
          matchFields: [{key: metadata.namespace, operator: In, values: [x]}]
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: other}}}
"""
    prefix = "d.yaml:{}: Deployment/web: spec.template.spec.affinity."
    terms = "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]."
    with pytest.raises(RevisionRejected) as rejected:
        parse([SourceFile("d.yaml", deployment(1, bad).encode())], COMMIT, nodes=FLEET)
    assert [str(p) for p in rejected.value.problems] == [
        prefix.format(14) + terms + "matchExpressions[0].values: must have at least one value for operator In",
        prefix.format(14) + terms + "matchExpressions[1].values: must be empty for operator Exists",
        prefix.format(15) + terms + "matchExpressions[2].values: must be one integer for operator Gt",
        prefix.format(16) + terms + "matchFields[0].key: must be metadata.name, the only node field there is",
        prefix.format(19) + "podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector: must "
        "select this workload's own pods (a subset of its labels): gitops-agent places each workload on its own, so "
        "only anti-affinity of a workload's own pods is supported",
    ]


def test_node_capacity_and_taints_are_read_from_the_agent_config() -> None:
    from gitops_agent import config as config_mod

    cfg = config_mod.from_mapping({"source": {"url": "/repo"}, "nodes": [
        {"name": "n1", "capacity": {"cpu": "3500m", "memory": "2Gi", "ephemeral-storage": "10Gi"},
         "address": "192.0.2.7",
         "taints": [{"key": "gpu", "value": True, "effect": "NoSchedule"}, {"key": "old", "effect": "NoExecute"}]},
        {"name": "n2"},
    ]})
    n1, n2 = cfg.nodes
    assert (n1.cpu_millis, n1.memory_bytes) == (3500, 2 << 30) and (n2.cpu_millis, n2.memory_bytes) == (None, None)
    assert (n1.ephemeral_bytes, n2.ephemeral_bytes) == (10 << 30, None)
    assert n1.taints == (model.Taint("gpu", "true", "NoSchedule"), model.Taint("old", "", "NoExecute"))
    assert n2.taints == () and (n1.address, n2.address) == ("192.0.2.7", None)


def test_affinity_and_taints_choose_the_nodes_of_a_real_fleet(
    clean_fleet: list[Any], git_remote: Any, tmp_path: Path
) -> None:
    """On three real nodes: required affinity with a toleration and a preference lands on the tainted node
    asked for; podAntiAffinity spreads one pod per untainted node; a topologySpreadConstraint over the zone
    label spreads over zones before nodes; an unchanged sync moves nothing."""
    from test_fleet import NAMES, app_containers, push, sync, workload, write_config

    zones = {"n1": {"zone": "a"}, "n2": {"zone": "b"}, "n3": {"zone": "b"}}
    cfg = write_config(tmp_path, git_remote, clean_fleet, zones)
    settings = yaml.safe_load(cfg.read_text())
    settings["nodes"][1]["taints"] = [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]
    cfg.write_text(yaml.safe_dump(settings))
    ready = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    chosen = workload("chosen", WEB1, replicas=1, readiness=ready)
    chosen["spec"]["template"]["spec"].update(yaml.safe_load("""
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [b]}]}]
    preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 10, preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [n2]}]}}
tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
"""))
    apart = workload("apart", WEB1, replicas=3, readiness=ready)
    apart["spec"]["template"]["spec"]["affinity"] = {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "apart"}}}]}}
    zoned = workload("zoned", WEB1, replicas=3)  # the default httpGet readiness: no podman exec per probe
    zoned["spec"]["template"]["spec"].update(yaml.safe_load("""
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: zoned}}}
tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
"""))
    push(git_remote, "affinity", chosen, apart, zoned)
    out = sync(cfg)
    assert out.result == "applied", out.error

    def count(name: str) -> dict[str, int]:
        per_node = {n: sum(1 for c in app_containers(svc).values() if c["Labels"]["io.gitops-agent.name"] == name)
                    for n, svc in zip(NAMES, clean_fleet)}
        return {n: k for n, k in per_node.items() if k}

    assert count("chosen") == {"n2": 1}
    assert count("apart") == {"n1": 1, "n3": 1}
    assert count("zoned") == {"n1": 2, "n2": 1}  # zones a and b as even as 3 allows; the plain spread: 1, 1, 1
    before = [sorted(app_containers(svc)) for svc in clean_fleet]
    assert sync(cfg).result == "in-sync"
    assert [sorted(app_containers(svc)) for svc in clean_fleet] == before
