"""seccomp and AppArmor profiles, dnsPolicy and dnsConfig (issue 18, the Kubernetes documentation's
pods/security/seccomp, pods/security/apparmor and service/networking/custom-dns examples).

Pure tests from literals (manifest -> model -> Podman's create bodies), then one end-to-end test on real Git and
real Podman: a Localhost seccomp profile that denies mkdir, a container of the same pod without it, the pod's
/etc/resolv.conf from dnsPolicy None, a missing profile file and an AppArmor profile on a node without AppArmor.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import model
from gitops_agent.cli import main
from gitops_agent.config import NodeConfig, from_mapping
from gitops_agent.desired import PodDNS, PodSpec, compile_node
from gitops_agent.errors import RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.podman import _container_body, _pod_body
from podman_env import WEB1

NODE = NodeConfig("n1", seccomp_profile_root="/etc/seccomp")
COMMIT = "main@sha1:" + "a" * 40
UNCONFINED = model.Policy(allow_unconfined=True)


def pod(spec: str = "", container: str = "", annotations: str = "{}") -> str:
    """A Pod with containers `main` (extra lines `container`) and `side`, extra pod-spec lines `spec`."""
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p, annotations: {annotations}}}\nspec:\n"
            + textwrap.indent(textwrap.dedent(spec), "  ")
            + "  containers:\n    - name: main\n      image: app:1\n"
            + textwrap.indent(textwrap.dedent(container), "      ")
            + "    - {name: side, image: app:1}\n")


def parsed(text: str, policy: model.Policy = model.Policy()) -> model.Revision:
    return parse([SourceFile("p.yaml", text.encode())], COMMIT, policy=policy)


def problems(text: str, policy: model.Policy = model.Policy()) -> list[str]:
    with pytest.raises(RevisionRejected) as rejected:
        parsed(text, policy)
    return [str(p) for p in rejected.value.problems]


def spec_of(text: str, policy: model.Policy = model.Policy()) -> PodSpec:
    (workload,) = compile_node(parsed(text, policy), NODE, (NODE,)).workloads
    (spec,) = workload.pods
    return spec


def bodies(text: str, policy: model.Policy = model.Policy()) -> list[dict[str, Any]]:
    spec = spec_of(text, policy)
    return [_container_body(spec, c) for c in spec.containers]


# --- seccomp -----------------------------------------------------------------------------


def test_a_localhost_seccomp_profile_is_the_file_under_the_nodes_seccomp_profile_root() -> None:
    """The pod's Localhost profile is each container's default, a container's own profile wins; the file is
    <seccompProfileRoot>/<localhostProfile> on the node, as the kubelet finds it."""
    text = pod(spec="securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}}\n",
               container="securityContext: {seccompProfile: {type: RuntimeDefault}}\n")
    main_body, side_body = bodies(text)
    assert "seccomp_profile_path" not in main_body  # RuntimeDefault: Podman's own profile
    assert side_body["seccomp_profile_path"] == "/etc/seccomp/profiles/audit.json"
    # recorded as Podman's CLI records it, so that inspect shows it (SecurityOpt) and drift compares it
    assert side_body["annotations"] == {"io.podman.annotations.seccomp": "/etc/seccomp/profiles/audit.json"}
    assert "annotations" not in main_body
    other = compile_node(parsed(text), NodeConfig("n2"), (NodeConfig("n2"),)).workloads[0].pods[0]
    assert other.containers[1].seccomp == "/var/lib/kubelet/seccomp/profiles/audit.json"  # the kubelet's default


def test_a_localhost_profile_is_a_relative_path_and_only_with_type_localhost() -> None:
    """An absolute path or '..' would leave the profile root; localhostProfile with another type is an error."""
    assert problems(pod(container="securityContext: {seccompProfile: {type: Localhost, localhostProfile: /x}}\n")) == [
        "p.yaml:8: Pod/p: spec.containers[0].securityContext.seccompProfile.localhostProfile: must be a path "
        "relative to the node's seccompProfileRoot, without '..' components"]
    escaping = pod(spec="securityContext: {seccompProfile: {type: Localhost, localhostProfile: a/../../x}}\n")
    assert problems(escaping) == ["p.yaml:5: Pod/p: spec.securityContext.seccompProfile.localhostProfile: must be a "
                                  "path relative to the node's seccompProfileRoot, without '..' components"]
    assert problems(pod(spec="securityContext: {seccompProfile: {type: RuntimeDefault, localhostProfile: a.json}}\n")) \
        == ["p.yaml:5: Pod/p: spec.securityContext.seccompProfile.localhostProfile: must not be set with type "
            "RuntimeDefault (only with Localhost)"]


def test_unconfined_needs_the_policy_switch() -> None:
    """Unconfined is refused by the default policy (as Pod Security's baseline), at the field that asks for it;
    policy.allowUnconfined lets it through, as Podman's seccomp=unconfined."""
    text = pod(spec="securityContext: {seccompProfile: {type: Unconfined}}\n")
    assert problems(text) == [
        f"p.yaml:5: Pod/p: spec.securityContext.seccompProfile.type: seccomp profile Unconfined (no seccomp "
        "confinement) is not allowed by the agent policy (policy.allowUnconfined; Pod Security's baseline level "
        "forbids it too): use RuntimeDefault or a Localhost profile"]  # once, for both containers
    assert [b["seccomp_profile_path"] for b in bodies(text, UNCONFINED)] == ["unconfined", "unconfined"]


def test_the_alpha_seccomp_annotations_are_read_as_the_api_server_copies_them() -> None:
    """seccomp.security.alpha.kubernetes.io/pod and the per-container annotation (the documentation's
    seccomp/alpha examples) set the profile a field does not set."""
    text = pod(annotations="{seccomp.security.alpha.kubernetes.io/pod: localhost/profiles/fine.json, "
                           "container.seccomp.security.alpha.kubernetes.io/side: runtime/default}")
    assert [c.seccomp for c in spec_of(text).containers] == ["/etc/seccomp/profiles/fine.json", ""]
    assert problems(pod(annotations="{seccomp.security.alpha.kubernetes.io/pod: localhost/../x}")) == [
        "p.yaml:3: Pod/p: metadata.annotations[\"seccomp.security.alpha.kubernetes.io/pod\"]: annotation "
        "seccomp.security.alpha.kubernetes.io/pod must be runtime/default, localhost/<profile> (a seccomp profile's "
        "path relative, without '..') or unconfined"]


# --- AppArmor ----------------------------------------------------------------------------


def test_apparmor_profiles_from_the_fields_and_the_beta_annotation() -> None:
    """Localhost names a profile loaded on the node (Podman's apparmor=<name>); RuntimeDefault is Podman's default;
    the beta annotation sets a container's profile when its field does not."""
    text = pod(spec="securityContext: {appArmorProfile: {type: Localhost, localhostProfile: k8s-deny-write}}\n",
               container="securityContext: {appArmorProfile: {type: RuntimeDefault}}\n")
    assert ["apparmor_profile" in b for b in bodies(text)] == [False, True]
    assert bodies(text)[1]["apparmor_profile"] == "k8s-deny-write"
    annotated = pod(annotations="{container.apparmor.security.beta.kubernetes.io/main: localhost/deny-write}")
    assert [c.apparmor for c in spec_of(annotated).containers] == ["deny-write", ""]
    unconfined = pod(annotations="{container.apparmor.security.beta.kubernetes.io/side: unconfined}")
    assert problems(unconfined) == [
        "p.yaml:3: Pod/p: metadata.annotations: AppArmor profile Unconfined (no AppArmor confinement) is not allowed "
        "by the agent policy (policy.allowUnconfined; Pod Security's baseline level forbids it too): use "
        "RuntimeDefault or a Localhost profile"]
    assert [c.apparmor for c in spec_of(unconfined, UNCONFINED).containers] == ["", "unconfined"]


def test_apparmor_annotations_that_kubernetes_refuses_are_errors() -> None:
    """An annotation of no container of the pod, an unknown value, or one that contradicts the field."""
    key = "container.apparmor.security.beta.kubernetes.io/"
    assert problems(pod(annotations=f"{{{key}web: runtime/default}}")) == [
        f"p.yaml:3: Pod/p: metadata.annotations[\"{key}web\"]: annotation {key}web names no container of the pod (its "
        "containers: main, side)"]
    assert problems(pod(annotations=f"{{{key}main: docker/default}}")) == [
        f"p.yaml:3: Pod/p: metadata.annotations[\"{key}main\"]: annotation {key}main must be runtime/default, "
        "localhost/<profile> (a seccomp profile's path relative, without '..') or unconfined"]
    assert problems(pod(annotations=f"{{{key}main: localhost/a}}",
                        container="securityContext: {appArmorProfile: {type: Localhost, localhostProfile: b}}\n")) == [
        f"p.yaml:3: Pod/p: metadata.annotations[\"{key}main\"]: annotation {key}main must match "
        "securityContext.appArmorProfile of the container (remove the annotation)"]


# --- DNS -----------------------------------------------------------------------------------

CUSTOM_DNS = """\
dnsPolicy: "None"
dnsConfig:
  nameservers: [192.0.2.1]
  searches: [ns1.svc.cluster-domain.example, my.dns.search.suffix]
  options: [{name: ndots, value: "2"}, {name: edns0}]
"""


def test_dns_policy_none_is_the_dns_config_alone() -> None:
    """The documentation's custom-dns example: the pod's resolver has exactly the dnsConfig's settings."""
    spec = spec_of(pod(spec=CUSTOM_DNS))
    assert spec.dns == PodDNS(("192.0.2.1",), ("ns1.svc.cluster-domain.example", "my.dns.search.suffix"),
                              ("ndots:2", "edns0"))
    body = _pod_body(spec, ["192.0.2.1"])
    assert (body["dns_server"], body["dns_search"], body["dns_option"]) == (
        ["192.0.2.1"], ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"], ["ndots:2", "edns0"])
    # no searches: "." (none), else Podman would write the node's search domains
    assert spec_of(pod(spec="dnsPolicy: None\ndnsConfig: {nameservers: ['2001:db8::1']}\n")).dns == \
        PodDNS(("2001:db8::1",), (".",), ())


def test_dns_policy_none_needs_a_nameserver_and_valid_settings() -> None:
    assert problems(pod(spec="dnsPolicy: None\n")) == [
        "p.yaml:5: Pod/p: spec.dnsPolicy: dnsPolicy None needs dnsConfig.nameservers (at least one): the pod's "
        "resolver has only the dnsConfig's settings"]
    assert problems(pod(spec="dnsPolicy: None\ndnsConfig: {nameservers: [1.2.3.4], searches: [Bad_Domain]}\n")) == [
        "p.yaml:6: Pod/p: spec.dnsConfig.searches[0]: must be a DNS domain name such as my.dns.search.suffix"]
    assert problems(pod(spec="dnsPolicy: None\ndnsConfig: {nameservers: [1.2.3.999]}\n")) == [
        "p.yaml:6: Pod/p: spec.dnsConfig.nameservers[0]: must be an IP address, not '1.2.3.999'"]
    assert problems(pod(spec="dnsConfig: {nameservers: [192.0.2.1, 192.0.2.2, 192.0.2.3]}\n")) == [
        "p.yaml:5: Pod/p: spec.dnsConfig.nameservers: must not list more than 2 nameservers with dnsPolicy "
        "ClusterFirst (the pod network's DNS server is the first of 3)"]


def test_cluster_first_dns_config_comes_after_the_networks() -> None:
    """As the kubelet merges them: the network's DNS server and search domain first, then the dnsConfig's; the
    pod without a dnsConfig keeps the network's resolver untouched."""
    spec = spec_of(pod(spec="dnsConfig: {nameservers: [192.0.2.1], searches: [a.example, a.example], "
                            "options: [{name: ndots, value: '1'}, {name: ndots, value: '3'}]}\n"))
    assert spec.dns == PodDNS(("192.0.2.1",), ("dns.podman", "a.example"), ("ndots:3",), network_first=True)
    assert _pod_body(spec, ["10.89.0.1", "192.0.2.1"])["dns_server"] == ["10.89.0.1", "192.0.2.1"]
    searches_only = spec_of(pod(spec="dnsConfig: {searches: [a.example]}\n"))
    assert searches_only.dns == PodDNS((), ("dns.podman", "a.example"), ())
    assert "dns_server" not in _pod_body(searches_only, [])
    options_only = spec_of(pod(spec="dnsConfig: {options: [{name: ndots, value: '1'}]}\n")).dns
    assert options_only == PodDNS((), (), ("ndots:1",))  # Podman's own search domains stay
    assert spec_of(pod(spec="dnsPolicy: ClusterFirst\n")).dns is None
    assert "dns_search" not in _pod_body(spec_of(pod()))


def test_dns_policy_default_mounts_the_nodes_resolv_conf() -> None:
    """Default is the node's resolver: its /etc/resolv.conf, read-only, in every container (init ones too)."""
    text = pod(spec="dnsPolicy: Default\ninitContainers: [{name: init, image: app:1}]\n")
    spec = spec_of(text)
    assert spec.dns is None
    for c in spec.every_container():
        assert [(m["source"], m["destination"], m["options"]) for m in _container_body(spec, c)["mounts"]] == [
            ("/etc/resolv.conf", "/etc/resolv.conf", ["rbind", "ro"])]
    assert problems(pod(spec="dnsPolicy: Default\ndnsConfig: {searches: [a.example]}\n")) == [
        "p.yaml:6: Pod/p: spec.dnsConfig: is not supported by gitops-agent with dnsPolicy Default (the pod mounts the "
        "node's /etc/resolv.conf as it is): use dnsPolicy None and write the node's nameservers, searches and options "
        "in dnsConfig"]
    host = model.Policy(allow_host_network=True)
    assert problems(pod(spec="hostNetwork: true\ndnsConfig: {searches: [a.example]}\n"), host) == [
        "p.yaml:6: Pod/p: spec.dnsConfig: is not supported by gitops-agent with hostNetwork: true (the pod uses the "
        "node's /etc/resolv.conf); remove it"]


def test_the_config_keys() -> None:
    """nodes[].seccompProfileRoot (an absolute path, the kubelet's default) and policy.allowUnconfined (off)."""
    cfg = from_mapping({"source": {"url": "/r"}, "nodes": [{"name": "a", "seccompProfileRoot": "/srv/seccomp/"},
                                                            {"name": "b"}], "policy": {"allowUnconfined": True}})
    assert [n.seccomp_profile_root for n in cfg.nodes] == ["/srv/seccomp", "/var/lib/kubelet/seccomp"]
    assert cfg.policy.allow_unconfined and not from_mapping({"source": {"url": "/r"}}).policy.allow_unconfined


# --- end to end on real Podman ---------------------------------------------------------------

NS = f"sec{os.getpid()}"
BASE = "clusters/edge"
# Everything allowed but mkdir/mkdirat, which fail with EPERM (errno 1).
DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}


def _deployment(profile: str, apparmor: str = "") -> str:
    app_armor = f", appArmorProfile: {{type: Localhost, localhostProfile: {apparmor}}}" if apparmor else ""
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: guarded, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: guarded}}}}
  template:
    metadata: {{labels: {{app: guarded}}}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: {profile}}}{app_armor}}}
      dnsPolicy: None
      dnsConfig:
        nameservers: [192.0.2.1]
        searches: [ns1.svc.cluster-domain.example, my.dns.search.suffix]
        options: [{{name: ndots, value: "2"}}, {{name: edns0}}]
      containers:
        - {{name: guarded, image: {WEB1}, command: [sleep, "100000"]}}
        - name: free
          image: {WEB1}
          command: [sleep, "100000"]
          securityContext: {{seccompProfile: {{type: RuntimeDefault}}}}
""" + "".join(f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      {dns}
      containers: [{{name: main, image: {WEB1}, command: [sleep, "100000"]}}]
""" for name, dns in (("merged", "dnsConfig: {nameservers: [192.0.2.2], searches: [x.example]}"),
                      ("node", "dnsPolicy: Default")))


def test_seccomp_profile_and_dns_config_take_effect_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mkdir fails with EPERM under the pod's Localhost profile and works in the container with RuntimeDefault; the
    pod's /etc/resolv.conf is the dnsConfig's. A revision naming a missing profile file, then one with an AppArmor
    profile on this node without AppArmor, fail to apply with the file or the reason and the node named; the
    running pod stays."""
    svc, repo = clean_podman, git_remote
    root = tmp_path / "seccomp"
    (root / "profiles").mkdir(parents=True)
    (root / "profiles" / "deny-mkdir.json").write_text(json.dumps(DENY_MKDIR))
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": svc.url, "seccompProfileRoot": str(root)}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
    }))
    repo.write(f"{BASE}/guarded.yaml", _deployment("profiles/deny-mkdir.json"))
    repo.commit_and_push("guarded")
    assert main(["sync", "--config", str(cfg)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    names = {c["Names"][0].split("-")[0] if c["Labels"]["io.gitops-agent.container"] == "main" else
             c["Labels"]["io.gitops-agent.container"]: c["Names"][0] for c in json.loads(svc.podman(
        "ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout) if not c.get("IsInfra")}
    denied = svc.podman("exec", names["guarded"], "mkdir", "/tmp/d", check=False)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr
    assert svc.podman("exec", names["free"], "mkdir", "/tmp/d", check=False).returncode == 0
    assert svc.podman("exec", names["guarded"], "cat", "/etc/resolv.conf").stdout.split("\n") == [
        "search ns1.svc.cluster-domain.example my.dns.search.suffix", "nameserver 192.0.2.1",
        "options ndots:2 edns0", ""]
    gateway = json.loads(svc.podman("network", "inspect", f"gitops-{NS}").stdout)[0]["subnets"][0]["gateway"]
    assert svc.podman("exec", names["merged"], "cat", "/etc/resolv.conf").stdout.split("\n") == [
        "search dns.podman x.example", f"nameserver {gateway}", "nameserver 192.0.2.2", ""]  # ClusterFirst's first
    assert svc.podman("exec", names["node"], "cat", "/etc/resolv.conf").stdout == Path("/etc/resolv.conf").read_text()
    assert main(["sync", "--config", str(cfg)]) == 0  # the profile reads back as set: no drift, the pods stay
    assert "changed by hand" not in capsys.readouterr().err and set(names.values()) <= {
        c["Names"][0] for c in json.loads(svc.podman("ps", "--format", "json").stdout)}

    repo.write(f"{BASE}/guarded.yaml", _deployment("profiles/missing.json"))
    repo.commit_and_push("a profile the node does not have")
    assert main(["sync", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert f"the seccomp profile {root}/profiles/missing.json (seccompProfile type Localhost) cannot be read on " \
           "node local" in err and "rolled back to" in err
    repo.write(f"{BASE}/guarded.yaml", _deployment("profiles/deny-mkdir.json", apparmor="k8s-deny-write"))
    repo.commit_and_push("an AppArmor profile on a node without AppArmor")
    assert main(["sync", "--config", str(cfg)]) != 0
    assert "the AppArmor profile k8s-deny-write cannot be applied on node local (AppArmor is not enabled on the " \
           "node)" in capsys.readouterr().err
    running = {c["Names"][0] for c in json.loads(svc.podman("ps", "--format", "json").stdout)}
    assert set(names.values()) <= running  # the first revision's pod still runs
