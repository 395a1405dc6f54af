"""SOPS on real Git and real Podman: an encrypted Secret reaches the container, decrypted in memory with
the config's age key, and its value appears nowhere else; a tampered file rejects the revision."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import sops
from test_e2e import Cli, app_containers
from podman_env import WEB1, WEB2

NS = f"sops{os.getpid()}"
SECRET_VALUE = "s0ps-wifi-psk-never-shown"
NEW_VALUE = "n3w-wifi-psk-never-shown"


def secret(value: str) -> bytes:
    return f"""\
apiVersion: v1
kind: Secret
metadata:
  name: wifi
  namespace: {NS}
stringData:
  psk: {value}
""".encode()


def deployment(image: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {image}
          command: ["sleep", "1000"]
          env:
            - name: PSK
              valueFrom: {{secretKeyRef: {{name: wifi, key: psk}}}}
"""


def test_an_encrypted_secret_reaches_the_container_only_and_a_tampered_file_is_rejected(
        clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc, repo = clean_podman, git_remote
    key = tmp_path / "site.agekey"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True).stdout.strip()
    cfg, state = tmp_path / "agent.yaml", tmp_path / "state"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": "apps", "interval": "5s"},
        "nodes": [{"name": "local", "url": svc.url}], "stateDir": str(state), "readyTimeout": "30s",
        "sops": {"ageKeyFiles": [str(key)]},
    }))
    cli = Cli(capsys, cfg)
    encrypted = sops.encrypt(secret(SECRET_VALUE), [public])
    assert SECRET_VALUE.encode() not in encrypted
    repo.write("apps/ns.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n")
    repo.write("apps/wifi.yaml", encrypted.decode())
    repo.write("apps/web.yaml", deployment(WEB1))
    c1 = repo.commit_and_push("web v1 with an encrypted Secret")

    code, out, err = cli("sync")
    assert code == 0, err
    assert f"main@sha1:{c1}" in out
    (name,) = app_containers(svc)
    env = svc.podman("exec", name, "env").stdout.splitlines()
    assert f"PSK={SECRET_VALUE}" in env  # decrypted, it reaches the container

    # tampered: the Secret renamed after encryption (its MAC no longer matches), with an image change
    repo.write("apps/wifi.yaml", encrypted.decode().replace("name: wifi", "name: wifx"))
    repo.write("apps/web.yaml", deployment(WEB2))
    repo.commit_and_push("tampered")
    code, out, err = cli("sync")
    assert code == 1
    assert "apps/wifi.yaml" in err and "tampering: the file was changed after it was encrypted" in err, err
    assert "revision.tampered" in err and "reason=Tampered" in err, err
    assert {c["Image"] for c in app_containers(svc).values()} == {WEB1}  # nothing applied
    assert f"PSK={SECRET_VALUE}" in svc.podman("exec", name, "env").stdout.splitlines()

    # a new value, encrypted again: `diff` says so, without the value
    repo.write("apps/wifi.yaml", sops.encrypt(secret(NEW_VALUE), [public]).decode())
    repo.write("apps/web.yaml", deployment(WEB1))
    repo.commit_and_push("new psk")
    code, out, err = cli("diff")
    assert code == 1 and "create-secret" in out and "(encrypted value changed)" in out, (out, err)

    # the value is in no output and nowhere in the agent's own files (the Git mirror holds the encrypted file)
    for args in (("status", "-o", "json"), ("history", "--output", "json"), ("diff",), ("status",)):
        cli(*args)
    transcript = "".join(cli.transcript)
    assert SECRET_VALUE not in transcript and NEW_VALUE not in transcript
    for f in state.rglob("*"):
        if f.is_file():
            assert SECRET_VALUE.encode() not in f.read_bytes() and NEW_VALUE.encode() not in f.read_bytes(), f
