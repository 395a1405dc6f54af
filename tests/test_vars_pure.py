"""Per-node variables through the loader and the per-node validation (agent.parse_for_nodes), from literals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops_agent import config as config_mod, variables
from gitops_agent.agent import parse_for_nodes
from gitops_agent.cli import main
from gitops_agent.desired import compile_node
from gitops_agent.errors import RevisionRejected
from gitops_agent.manifests import SourceFile, parse
from gitops_agent.model import Workload
from gitops_agent.substitute import node_variables

DEPLOY = b"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {gitops-agent.io/substitute: enabled}
spec:
  replicas: ${REPLICAS}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: "registry.local/web:${TAG:=1.0}"
          env:
            - {name: PORT, value: "${PORT}"}
            - {name: SCRIPT, value: "$${HOME}"}
"""
NOT_OPTED = b"""\
apiVersion: v1
kind: ConfigMap
metadata: {name: script}
data: {run.sh: "echo ${HOME}"}
"""


def config(n2_replicas: object = 1) -> config_mod.AgentConfig:
    return config_mod.from_mapping({
        "source": {"url": "/srv/git/edge"},
        "nodes": [{"name": "n1", "url": "unix:///run/n1.sock", "vars": {"REPLICAS": 3, "PORT": 8080, "TAG": "1.2"}},
                  {"name": "n2", "url": "unix:///run/n2.sock", "vars": {"REPLICAS": n2_replicas, "PORT": 9090}}],
    })


def test_the_loader_keeps_quoted_values_strings_and_plain_ones_typed() -> None:
    variables = node_variables("n1", {"REPLICAS": "3", "PORT": "8080"}, {})
    rev = parse([SourceFile("web.yaml", DEPLOY), SourceFile("cm.yaml", NOT_OPTED)], "r", variables=variables)
    (web,) = [o for o in rev.objects if isinstance(o, Workload)]
    assert web.replicas == 3
    container = web.template.containers[0]
    assert container.image == "registry.local/web:1.0"
    assert [(e.name, e.value) for e in container.env] == [("PORT", "8080"), ("SCRIPT", "${HOME}")]
    (cm,) = [o for o in rev.objects if o.ref.kind == "ConfigMap"]
    assert dict(cm.data)["run.sh"] == b"echo ${HOME}"  # not opted in: left as written


def test_each_node_gets_its_own_variant_and_template_hash() -> None:
    cfg = config()
    rev = parse_for_nodes([SourceFile("web.yaml", DEPLOY)], "r", cfg)
    assert set(rev.variants) == {"n1", "n2"}
    images = {n.name: compile_node(rev, n, cfg.nodes).workloads[0] for n in cfg.nodes}
    assert images["n1"].template_hash != images["n2"].template_hash


def test_invalid_on_one_node_is_rejected_naming_that_node() -> None:
    with pytest.raises(RevisionRejected) as caught:
        parse_for_nodes([SourceFile("web.yaml", DEPLOY)], "r", config(n2_replicas="many"))
    messages = [str(p) for p in caught.value.problems]
    assert messages and all("on node n2:" in m and m.startswith("web.yaml:7:") for m in messages), messages


def test_an_undefined_variable_on_every_node_is_shown_once_without_a_node() -> None:
    text = DEPLOY.replace(b"${PORT}", b"${MISSING}")
    with pytest.raises(RevisionRejected) as caught:
        parse_for_nodes([SourceFile("web.yaml", text)], "r", config())
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 1 and "undefined variable MISSING" in messages[0] and "on node" not in messages[0]


SITE = b"""\
apiVersion: v1
kind: ConfigMap
metadata: {name: site-vars, namespace: demo}
data: {TAG: "2.0", PORT: "7070", ZONE_NAME: west}
---
apiVersion: v1
kind: Secret
metadata: {name: site-creds, namespace: demo}
data: {PASSWORD: aHVudGVyMi1zZWNyZXQ=}
"""
NAMESPACE = b"apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n"
CREDS = b"""\
apiVersion: v1
kind: Secret
metadata:
  name: app-creds
  namespace: demo
  annotations: {gitops-agent.io/substitute: enabled}
stringData: {password: "${PASSWORD}", zone: "${ZONE_NAME}"}
"""
FROM = [{"kind": "ConfigMap", "name": "site-vars", "namespace": "demo"},
        {"kind": "Secret", "name": "site-creds", "namespace": "demo"}]


def site_config(entries: list[dict[str, object]] = FROM) -> config_mod.AgentConfig:
    raw = {"source": {"url": "/srv/git/edge"}, "substituteFrom": entries,
           "nodes": [{"name": "n1", "url": "unix:///run/n1.sock", "vars": {"REPLICAS": 3, "PORT": 8080}}]}
    return config_mod.from_mapping(raw)


def site_files(*extra: SourceFile) -> list[SourceFile]:
    deploy = DEPLOY.replace(b"name: web\n", b"name: web\n  namespace: demo\n", 1)
    return [SourceFile("ns.yaml", NAMESPACE), SourceFile("site.yaml", SITE), SourceFile("web.yaml", deploy), *extra]


def test_substitute_from_objects_of_the_revision_are_variables_of_the_lowest_precedence() -> None:
    """TAG comes from the ConfigMap (no node sets it); PORT from the node's vars, which win over the ConfigMap;
    the Secret's base64 `data` is decoded into the Secret it is substituted into."""
    cfg = site_config()
    rev = parse_for_nodes(site_files(SourceFile("creds.yaml", CREDS)), "r", cfg)
    (web,) = [o for o in rev.variants["n1"].objects if isinstance(o, Workload)]
    assert web.template.containers[0].image == "registry.local/web:2.0"
    assert dict((e.name, e.value) for e in web.template.containers[0].env)["PORT"] == "8080"
    (creds,) = [o for o in rev.variants["n1"].objects if o.ref.name == "app-creds"]
    assert dict(creds.data) == {"password": b"hunter2-secret", "zone": b"west"}


def test_a_missing_substitute_from_object_rejects_the_revision_naming_it_unless_optional() -> None:
    files = [f for f in site_files() if f.path != "site.yaml"] + [SourceFile("site.yaml", SITE.split(b"---")[0])]
    with pytest.raises(RevisionRejected) as caught:
        parse_for_nodes(files, "r", site_config())
    assert [str(p) for p in caught.value.problems] == [
        "substituteFrom[1]: the Secret demo/site-creds is not in the revision's manifests "
        "(add it, or set optional: true to substitute without it)"]
    optional = [FROM[0], {**FROM[1], "optional": True}]
    rev = parse_for_nodes(files, "r", site_config(optional))
    assert set(rev.variants) == {"n1"}


def test_a_bad_key_of_a_substitute_from_object_is_a_problem_at_its_line() -> None:
    bad = SITE.replace(b"ZONE_NAME: west", b"zone-name: west")
    with pytest.raises(RevisionRejected) as caught:
        parse_for_nodes([SourceFile("ns.yaml", NAMESPACE), SourceFile("site.yaml", bad)], "r", site_config())
    (problem,) = caught.value.problems
    assert str(problem).startswith("site.yaml:4: ConfigMap/site-vars: data.zone-name: key 'zone-name' is not")


def test_the_shown_substituted_values_name_a_secret_never_its_value() -> None:
    """What `validate --node` and `diff` print: each changed value as JSON at its FILE:LINE, typed as it will
    be applied; a value from a Secret, or put into a Secret, as where it comes from."""
    files = site_files(SourceFile("creds.yaml", CREDS))
    shown = variables.shown(files, site_config().substitute_from, site_config().nodes)
    lines = [str(change) for change in shown["n1"]]
    assert lines == [
        "creds.yaml:7: Secret/app-creds: stringData.password: (from Secret site-creds)",
        "creds.yaml:7: Secret/app-creds: stringData.zone: (in Secret app-creds)",
        "web.yaml:8: Deployment/web: spec.replicas: 3",
        'web.yaml:15: Deployment/web: spec.template.spec.containers[0].image: "registry.local/web:2.0"',
        'web.yaml:17: Deployment/web: spec.template.spec.containers[0].env[0].value: "8080"',
        'web.yaml:18: Deployment/web: spec.template.spec.containers[0].env[1].value: "${HOME}"',
    ]
    assert "hunter2" not in "".join(lines)
    assert variables.shown([SourceFile("ns.yaml", NAMESPACE)], (), site_config().nodes) == {"n1": []}


def test_validate_node_prints_the_substituted_values_and_names_a_missing_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate DIR --config FILE --node NAME` through the CLI: valid, then that node's substituted values;
    an unknown node is a config error listing the nodes; a missing `substituteFrom` object rejects it."""
    apps = tmp_path / "apps"
    apps.mkdir()
    for file in site_files(SourceFile("creds.yaml", CREDS)):
        (apps / file.path).write_bytes(file.data)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": str(tmp_path)}, "substituteFrom": FROM,
                                   "nodes": [{"name": "n1", "vars": {"REPLICAS": 3, "PORT": 8080}}]}))
    assert main(["validate", str(apps), "--config", str(cfg), "--node", "n1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid: 1 Namespace, 1 ConfigMap, 2 Secret, 1 Deployment") and "node n1: 6 value(s)" in out
    assert "  = creds.yaml:7: Secret/app-creds: stringData.password: (from Secret site-creds)" in out, out
    assert "hunter2" not in out
    assert main(["validate", str(apps), "--config", str(cfg), "--node", "n9"]) == 2
    assert "no node 'n9' in the config (nodes: n1)" in capsys.readouterr().err
    (apps / "site.yaml").write_bytes(SITE.split(b"---")[1])  # the ConfigMap is gone
    assert main(["validate", str(apps), "--config", str(cfg)]) == 1
    assert "substituteFrom[0]: the ConfigMap demo/site-vars is not in the revision's manifests" in capsys.readouterr().err


def test_a_value_from_a_sops_encrypted_config_map_is_shown_as_its_source() -> None:
    """A `substituteFrom` ConfigMap whose file was SOPS-encrypted (`sops.decrypt_files` names it) may be
    substituted anywhere, but `validate --node` and `diff` show its values as where they come from."""
    cfg = site_config()
    shown = variables.shown(site_files(), cfg.substitute_from, cfg.nodes, frozenset({"site.yaml"}))
    lines = [str(change) for change in shown["n1"]]
    assert "web.yaml:15: Deployment/web: spec.template.spec.containers[0].image: " \
           "(from ConfigMap site-vars, SOPS-encrypted)" in lines, lines
    assert 'web.yaml:17: Deployment/web: spec.template.spec.containers[0].env[0].value: "8080"' in lines  # vars


def test_a_substitution_problem_names_the_object_by_kind_and_name() -> None:
    """The kind is read from the document itself (substitution runs before conversion fills it in)."""
    text = DEPLOY.replace(b"${PORT}", b"${MISSING}")
    with pytest.raises(RevisionRejected) as caught:
        parse([SourceFile("web.yaml", text)], "r", variables=node_variables("n1", {"REPLICAS": "1"}, {}))
    (problem,) = caught.value.problems
    assert str(problem).startswith("web.yaml:16: Deployment/web: spec.template.spec.containers[0].env[0].value: "
                                   "undefined variable MISSING"), str(problem)
