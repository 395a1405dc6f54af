"""Per-node variables on real Git and a real Podman fleet: two nodes get different image tags and env from
their `vars:`, a repository ConfigMap and a SOPS-encrypted Secret (`substituteFrom`); `validate --node` and
`diff` show the substituted values, the Secret's as its source only; a variable change on one node rolls only
that node; a revision invalid on one node only is rejected with the node named and nothing applied anywhere."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import sops
from test_e2e import Cli, app_containers
from podman_env import WEB1, WEB2

NS = f"vars{os.getpid()}"
PASSWORD = "s1te-pa55word-never-shown"


def site_objects(public_key: str) -> tuple[str, str, str]:
    """The `substituteFrom` ConfigMap (its GREETING loses to the nodes' vars), the same Secret encrypted by
    the real sops, and the Secret the password is substituted into (the only place it may go)."""
    config_map = f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: site-vars, namespace: {NS}}}
data: {{SITE: plant-7, GREETING: from-the-configmap}}
"""
    creds = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: site-creds, namespace: {NS}}}
stringData: {{PASSWORD: {PASSWORD}}}
"""
    app = f"""\
# gitops-agent.io/substitute: enabled
apiVersion: v1
kind: Secret
metadata: {{name: app-creds, namespace: {NS}}}
stringData: {{password: "${{PASSWORD}}"}}
"""
    return config_map, sops.encrypt(creds.encode(), [public_key]).decode(), app


def daemonset(grace: str = "1", extra: str = "") -> str:
    return f"""\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: web
  namespace: {NS}
  annotations:
    gitops-agent.io/substitute: enabled
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: {grace}
      containers:
        - name: web
          image: "localhost/gitops-test/web:${{TAG}}"
          command: ["sleep", "1000"]
          env:
            - {{name: GREETING, value: "${{GREETING}}"}}
            - {{name: WHERE, value: "${{NODE_NAME}} in ${{NODE_LABEL_zone}}{extra}"}}
            - {{name: LITERAL, value: "$${{HOME}}"}}
            - {{name: SITE, value: "${{SITE}}"}}
            - name: PASS
              valueFrom: {{secretKeyRef: {{name: app-creds, key: password}}}}
"""


def write_config(path: Path, repo: Any, fleet: list[Any], state: Path, south_greeting: str) -> None:
    path.write_text(yaml.safe_dump({
        "substituteFrom": [{"kind": "ConfigMap", "name": "site-vars", "namespace": NS},
                           {"kind": "Secret", "name": "site-creds", "namespace": NS}],
        "sops": {"ageKeyFiles": [str(path.parent / "site.agekey")]},
        "source": {"url": repo.url, "branch": "main", "path": "apps", "interval": "5s"},
        "nodes": [{"name": "n1", "url": fleet[0].url, "labels": {"zone": "north"},
                   "vars": {"TAG": "1", "GREETING": "hello", "GRACE": 1}},
                  {"name": "n2", "url": fleet[1].url, "labels": {"zone": "south"},
                   "vars": {"TAG": "2", "GREETING": south_greeting, "GRACE": "soon"}}],
        "stateDir": str(state), "readyTimeout": "60s",
    }))


def env_of(svc: Any) -> tuple[str, str, dict[str, str]]:
    """The one app container of a node: its ID, image and environment."""
    (name,) = app_containers(svc)
    info = json.loads(svc.podman("inspect", name).stdout)[0]
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    return info["Id"], info["ImageName"], env


def test_two_nodes_get_their_own_values_and_a_variable_change_rolls_only_its_node(
        clean_fleet: list[Any], git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet, repo = clean_fleet, git_remote
    cfg, state = tmp_path / "agent.yaml", tmp_path / "state"
    key = tmp_path / "site.agekey"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True).stdout.strip()
    write_config(cfg, repo, fleet, state, "servus")
    cli = Cli(capsys, cfg)
    repo.write("apps/ns.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n")
    site, creds, app = site_objects(public)
    repo.write("apps/site.yaml", site)
    repo.write("apps/creds.yaml", creds)  # encrypted: decrypted in memory before its keys become variables
    repo.write("apps/app-creds.yaml", app)
    repo.write("apps/web.yaml", daemonset())
    repo.commit_and_push("web from variables")

    code, out, err = cli("validate", str(repo.workdir / "apps"), "--node", "n2")
    assert code == 0, err
    assert 'DaemonSet/web: spec.template.spec.containers[0].image: "localhost/gitops-test/web:2"' in out, out
    assert 'env[0].value: "servus"' in out and 'env[3].value: "plant-7"' in out, out
    assert "Secret/app-creds: stringData.password: (from Secret site-creds)" in out, out
    code, out, err = cli("sync")
    assert code == 0, err
    id1, image1, env1 = env_of(fleet[0])
    id2, image2, env2 = env_of(fleet[1])
    assert (image1, image2) == (WEB1, WEB2)
    assert (env1["GREETING"], env1["WHERE"], env1["LITERAL"]) == ("hello", "n1 in north", "${HOME}")
    assert (env2["GREETING"], env2["WHERE"]) == ("servus", "n2 in south")
    assert env1["SITE"] == env2["SITE"] == "plant-7"  # substituteFrom ConfigMap, under the nodes' vars
    assert env1["PASS"] == env2["PASS"] == PASSWORD  # from the encrypted Secret, through app-creds

    # a variable of n2 changes: n2 rolls, n1 is left as it is; `diff --node` shows n2's substituted values
    write_config(cfg, repo, fleet, state, "griass di")
    code, out, err = cli("diff")
    assert code == 1 and "node n1: in sync" in out and "node n2:" in out, out
    code, out, err = cli("diff", "--node", "n2")
    assert code == 1 and "node n1" not in out and 'env[0].value: "griass di"' in out, out
    assert "(from Secret site-creds)" in out, out
    code, out, err = cli("sync")
    assert code == 0, err
    assert env_of(fleet[0])[0] == id1
    new2 = env_of(fleet[1])
    assert new2[0] != id2 and new2[2]["GREETING"] == "griass di"

    # valid on n1, invalid on n2 (GRACE is not a number there): rejected, n2 named, nothing applied anywhere
    repo.write("apps/web.yaml", daemonset("${GRACE}", extra=" v3"))
    repo.commit_and_push("grace from a variable")
    code, out, err = cli("sync")
    assert code == 1
    assert "apps/web.yaml:" in err and "on node n2:" in err and "on node n1" not in err, err
    assert env_of(fleet[0])[0] == id1 and env_of(fleet[1])[0] == new2[0]

    # the Secret's value reaches the containers and appears in no output and none of the agent's files
    for args in (("status", "-o", "json"), ("history", "--output", "json"), ("diff", "-o", "json")):
        cli(*args)
    assert PASSWORD not in "".join(cli.transcript)
    assert not [f for f in state.rglob("*") if f.is_file() and PASSWORD.encode() in f.read_bytes()]
