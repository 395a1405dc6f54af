"""Hostile input, end to end on real Git and a real private Podman (issue 15):
probe output that prints a Secret, names that must not collide across namespaces,
old-named volumes that keep their data, and `gitops-*` secrets the agent did not make.

Every check reads the real state back from Podman and the real bytes of the state store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from podman_env import WEB1
from test_e2e import Cli, app_containers

TOKEN = "tok-9f8e7d6c5b4a-never-shown"
FILE_LINE = "file-line-3a2b1c-never-shown"
NS = f"own{os.getpid()}"  # a namespace of its own: aardvark-dns state is machine-wide per network name


def _namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"


@pytest.fixture
def env(clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Any, Any, Cli, Path]:
    cfg = tmp_path / "agent.yaml"
    state = tmp_path / "state"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": git_remote.url, "branch": "main", "path": "apps", "interval": "5s"},
        "nodes": [{"name": "local", "url": clean_podman.url}],
        "stateDir": str(state),
        "readyTimeout": "30s",
    }))
    return clean_podman, git_remote, Cli(capsys, cfg), state


PROBE_PRINTS_SECRET = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: {NS}}}
stringData:
  token: {TOKEN}
  file: "header\\n{FILE_LINE}\\n"
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: leaky, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: leaky}}}}
  template:
    metadata: {{labels: {{app: leaky}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: {WEB1}
          command: [httpd, -f, -p, "8080", -h, /www]
          env:
            - name: TOKEN
              valueFrom: {{secretKeyRef: {{name: creds, key: token}}}}
          volumeMounts: [{{name: creds, mountPath: /etc/creds}}]
          readinessProbe:
            exec: {{command: [sh, -c, "echo token=$TOKEN; tail -n 1 /etc/creds/file; cat /etc/creds/token; exit 1"]}}
            periodSeconds: 1
            failureThreshold: 1
      volumes:
        - name: creds
          secret: {{secretName: creds}}
"""


def test_probe_output_never_shows_a_secret_value(env: tuple[Any, Any, Cli, Path]) -> None:
    """A readiness probe printing a Secret env var and a mounted Secret file fails the rollout:
    the output is kept (redacted, naming the key), and neither value appears in sync, status,
    history (text and JSON) nor in the bytes of state.db."""
    svc, repo, cli, state = env
    repo.write("apps/ns.yaml", _namespace(NS))
    repo.write("apps/leaky.yaml", PROBE_PRINTS_SECRET)
    repo.commit_and_push("a probe that prints its secret")
    code, out, err = cli("sync")
    assert code != 0
    assert "readiness probe failed" in out + err
    assert "token=[Secret creds key token]" in out + err  # the output is still there, the value is not
    cli("status")
    cli("status", "--output", "json")
    cli("history")
    cli("history", "--output", "json")
    transcript = "".join(cli.transcript)
    assert "[Secret creds key file]" in transcript
    for value in (TOKEN, FILE_LINE):
        assert value not in transcript
        for f in state.glob("state.db*"):
            assert value.encode() not in f.read_bytes(), f
    # the probe really printed the values: run it by hand in the pod the failed rollout left
    name = next(iter(app_containers(svc)))
    printed = svc.podman("exec", name, "sh", "-c", "echo token=$TOKEN; tail -n 1 /etc/creds/file").stdout
    assert printed.split() == [f"token={TOKEN}", FILE_LINE]
