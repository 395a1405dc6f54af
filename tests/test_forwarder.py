"""The Service forwarder (issue 18): a NodePort or LoadBalancer Service whose port one pod cannot own (several
replicas, or a RollingUpdate with maxSurge) is served by a socat pod `svclb-<service>` of the agent on each node
that runs its pods; one pod that never surges keeps the direct path. Pure tests from literals, then one test on
real Podman, Git and socat."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import forwarder
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig
from gitops_agent.desired import MANAGED, L_KIND, L_NAME, compile_node, forwarder_spec
from gitops_agent.errors import RevisionRejected
from gitops_agent.live import LivePod, LiveState
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import ObjectRef, Origin, Service, ServicePort, Workload
from gitops_agent.plan import CreatePod, RemovePod, plan
from podman_env import WEB1, WEB2, http_get, make_socat_image

NODE = NodeConfig("local")
COMMIT = "a" * 40


def deployment(name: str = "web", replicas: int = 2, strategy: str = "") -> str:
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n"
            f"{strategy}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n"
            f"    metadata: {{labels: {{app: {name}}}}}\n    spec:\n"
            f"      containers: [{{name: main, image: app:1, ports: [{{name: http, containerPort: 8080}}]}}]\n---\n")


def service(name: str = "web", kind: str = "LoadBalancer", ports: str = "[{port: 80, targetPort: http}]",
            app: str = "web") -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec: {{type: {kind}, selector: {{app: {app}}}, ports: {ports}}}\n---\n")


def revision(text: str) -> Any:
    return parse([SourceFile("p.yaml", text.encode())], f"main@sha1:{COMMIT}", forwarder_image="localhost/socat:1")


def on_node(text: str) -> dict[str, Any]:
    return {str(w.ref): w for w in compile_node(revision(text), NODE, (NODE,)).workloads}


RECREATE = "  strategy: {type: Recreate}\n"


def test_which_services_need_a_forwarder() -> None:
    """Several pods or a surge: forwarded; one pod that never surges, a ClusterIP Service, or no pods: not."""
    def forwarded(text: str) -> bool:
        rev = revision(text)
        (svc,) = [o for o in rev.objects if isinstance(o, Service)]
        return forwarder.forwarded(svc, [o for o in rev.objects if isinstance(o, Workload)])

    assert forwarded(deployment(replicas=2, strategy=RECREATE) + service())
    assert forwarded(deployment(replicas=1) + service(kind="NodePort"))  # maxSurge 25% by default
    assert not forwarded(deployment(replicas=1, strategy=RECREATE) + service())
    no_surge = "  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}\n"
    assert not forwarded(deployment(replicas=1, strategy=no_surge) + service(kind="NodePort"))
    assert not forwarded(deployment(replicas=3) + service(kind="ClusterIP"))
    assert not forwarded(deployment(replicas=0) + service())
    assert not forwarded(deployment(replicas=3) + service(app="other"))


def test_the_forwarder_pod_spec() -> None:
    """One socat container per port, listening on the node port, connecting to the Service's name at the port its
    pods serve; labelled as the Service's; the pods it serves publish nothing and stay aliases of the Service."""
    ports = "[{name: a, port: 80, targetPort: http}, {name: b, port: 53, protocol: UDP, targetPort: 5353}]"
    workloads = on_node(deployment(replicas=2) + service(ports=ports))
    web, lb = workloads["Deployment/default/web"], workloads["Service/default/web"]
    assert all(p.ports == () and p.aliases == ("web",) for p in web.pods)
    (pod,) = lb.pods
    assert (pod.name, pod.aliases, pod.network, lb.strategy, lb.replicas) == ("svclb-web", (), "gitops-default",
                                                                             "Recreate", 1)
    assert [(m.host_port, m.container_port, m.protocol) for m in pod.ports] == [(80, 80, "tcp"), (53, 53, "udp")]
    assert [(c.name, c.image, c.pull_policy, c.entrypoint, c.command) for c in pod.containers] == [
        ("svclb-web_tcp-80", "localhost/socat:1", "IfNotPresent", ("socat",),
         ("TCP-LISTEN:80,fork,reuseaddr", "TCP:web:8080")),
        ("svclb-web_udp-53", "localhost/socat:1", "IfNotPresent", ("socat",),
         ("UDP-RECVFROM:53,fork,reuseaddr", "UDP-SENDTO:web:5353")),
    ]
    assert {k: pod.labels[k] for k in (MANAGED, L_KIND, L_NAME)} == {MANAGED: "true", L_KIND: "Service",
                                                                      L_NAME: "web"}
    assert all(c.cap_drop == ("ALL",) and c.cap_add == ("CAP_NET_BIND_SERVICE",) for c in pod.containers)
    # NodePort: the (allocated) nodePort is published; outside `default` the pod name carries the namespace
    svc = Service(ObjectRef("Service", "shop", "np"), Origin("s.yaml", 1), {"app": "x"},
                  (ServicePort(80, 8080, node_port=30080),), "NodePort")
    spec = forwarder_spec(svc, [], "img", COMMIT)
    assert (spec.pods[0].name, spec.pods[0].containers[0].command) == (
        "svclb-np_shop", ("TCP-LISTEN:30080,fork,reuseaddr", "TCP:np:8080"))


def test_direct_path_stays_and_a_change_of_path_is_an_ordinary_plan() -> None:
    """One pod that never surges publishes the port itself (no forwarder); scaling it to 3 rolls its pods to
    publish nothing and adds the forwarder after them; back to 1, prune removes the forwarder first."""
    single = on_node(deployment(replicas=1, strategy=RECREATE) + service())
    assert list(single) == ["Deployment/default/web"]
    (pod,) = single["Deployment/default/web"].pods
    assert [(m.host_port, m.container_port) for m in pod.ports] == [(80, 8080)]
    three = on_node(deployment(replicas=3, strategy=RECREATE) + service())
    assert list(three) == ["Deployment/default/web", "Service/default/web"]
    assert three["Deployment/default/web"].template_hash != single["Deployment/default/web"].template_hash
    # the forwarder's template is its ports and image: its pods' rollouts never replace it
    other = on_node(deployment(replicas=3, strategy=RECREATE).replace("app:1", "app:2") + service())
    assert other["Service/default/web"].template_hash == three["Service/default/web"].template_hash
    moved = on_node(deployment(replicas=3, strategy=RECREATE) + service(ports="[{port: 81, targetPort: http}]"))
    assert moved["Service/default/web"].template_hash != three["Service/default/web"].template_hash
    desired = compile_node(revision(deployment(replicas=3, strategy=RECREATE) + service()), NODE, (NODE,))
    acts = plan(desired, LiveState("local")).actions
    created = [a for a in acts if isinstance(a, CreatePod)]
    assert (created[-1].target, created[-1].reason) == ("svclb-web", "forwarder of Service/default/web: node port "
                                                                     "80/TCP to its pods")
    (fwd,) = three["Service/default/web"].pods
    live = LiveState("local", pods={"svclb-web": LivePod("svclb-web", "id1", "Running", fwd.labels)})
    back = compile_node(revision(deployment(replicas=1, strategy=RECREATE) + service()), NODE, (NODE,))
    acts = plan(back, live, inventory=[ObjectRef("Service", "default", "web")]).actions
    assert isinstance(acts[0], RemovePod) and acts[0].name == "svclb-web"
    assert isinstance(acts[-1], CreatePod) and acts[-1].pod.ports


def test_two_services_on_one_port_stay_an_error() -> None:
    """The one-owner rule applies to the forwarder: two Services on one node port are still rejected."""
    text = deployment(replicas=2) + service() + service(name="other")
    with pytest.raises(RevisionRejected) as e:
        revision(text)
    assert [p.message for p in e.value.problems] == [
        "host port 80/TCP is already used by Service/web at p.yaml:15"]


# --- end to end on real Podman ----------------------------------------------------------

NS = f"fwd{os.getpid()}"
LB_PORT = 25000 + os.getpid() % 5000  # published on this machine's loopback: unique to the test run
SOCAT_IMAGE = "localhost/socat:1"


def _shop(image: str) -> str:
    """A 2-replica Deployment (default strategy: RollingUpdate, maxSurge 25%) behind a LoadBalancer Service; each
    pod serves its own hostname (its pod's name)."""
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: [sh, -c, "cat /etc/hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec: {{type: LoadBalancer, selector: {{app: web}}, ports: [{{port: {LB_PORT}, targetPort: http}}]}}
"""


def _answers(count: int) -> list[str | None]:
    out = []
    for _ in range(count):
        body = http_get(LB_PORT)
        out.append(body.strip() if body is not None else None)
    return out


def _forwarder_ids(svc: Any) -> list[str]:
    listed = json.loads(svc.podman("ps", "--filter", f"label={L_KIND}=Service", "--format", "json").stdout)
    return sorted(c["Id"] for c in listed if not c.get("IsInfra"))


def test_a_load_balancer_of_two_surging_replicas_answers_through_its_forwarder(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The port answers on the node from both pods over several connections, and again after a rolling update
    (the forwarder is not replaced: its ports did not change); status shows the forwarder."""
    svc, repo = clean_podman, git_remote
    make_socat_image(svc, SOCAT_IMAGE)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": "apps"},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
        "serviceForwarder": {"image": SOCAT_IMAGE},
    }))
    repo.write("apps/shop.yaml", _shop(WEB1))
    repo.commit_and_push("shop")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    pods = {p["Name"] for p in json.loads(svc.podman("pod", "ps", "--format", "json").stdout)}
    web = {p for p in pods if p.startswith("web-")}
    assert len(web) == 2 and f"svclb-web_{NS}" in pods
    seen = _answers(12)
    # every connection answered by a pod of the Service (socat connects to the first address aardvark-dns answers
    # for the name; aardvark-dns 1.4 answers in a fixed order, so connections are not spread over the pods)
    assert len(seen) == 12 and set(seen) <= web, seen
    forwarders = _forwarder_ids(svc)
    capsys.readouterr()
    assert main(["status", "--config", str(cfg), "--output", "json"]) == 0
    shown = {(o["kind"], o["name"]): o for o in json.loads(capsys.readouterr().out)["objects"]}
    assert shown[("Service", "web")]["forwarder"] == {"pod": f"svclb-web_{NS}", "ports": [f"{LB_PORT}/TCP"],
                                                     "state": "Ready"}

    repo.write("apps/shop.yaml", _shop(WEB2))  # a new revision: a rolling update of the pods
    repo.commit_and_push("web 2")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    renewed = {p["Name"] for p in json.loads(svc.podman("pod", "ps", "--format", "json").stdout)
               if p["Name"].startswith("web-")}
    assert len(renewed) == 2 and not renewed & web
    deadline = time.monotonic() + 10  # the old pods' names leave DNS with them
    while not set(seen := _answers(6)) <= renewed and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(seen) == 6 and set(seen) <= renewed, seen
    assert _forwarder_ids(svc) == forwarders


def test_a_pod_may_not_take_the_forwarders_name() -> None:
    """A Pod named `svclb-<service>` next to a forwarded Service is an error that says which names meet."""
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: svclb-web}\n"
           "spec: {containers: [{name: main, image: app:1}]}\n---\n")
    with pytest.raises(RevisionRejected) as e:
        revision(deployment(replicas=2) + service() + pod)
    assert [f"{p.line}: {p.message}" for p in e.value.problems] == [
        "14: its node port forwarder pod would be named svclb-web, the name of Pod/svclb-web: rename one"]
    assert revision(deployment(replicas=1, strategy=RECREATE) + service() + pod).objects  # direct: no forwarder
