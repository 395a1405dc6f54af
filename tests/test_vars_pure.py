"""Per-node variables through the loader and the per-node validation (agent.parse_for_nodes), from literals."""

from __future__ import annotations

import pytest

from gitops_agent import config as config_mod
from gitops_agent.agent import parse_for_nodes
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
