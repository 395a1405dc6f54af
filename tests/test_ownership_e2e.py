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

from podman_env import WEB1
from test_e2e import Cli, app_containers, setup  # noqa: F401  (setup: the shared fixture)

TOKEN = "tok-9f8e7d6c5b4a-never-shown"
FILE_LINE = "file-line-3a2b1c-never-shown"
BASE = "clusters/edge"  # the path the shared `setup` fixture syncs
NS = f"own{os.getpid()}"  # a namespace of its own: aardvark-dns state is machine-wide per network name


def _namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"


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


def test_probe_output_never_shows_a_secret_value(setup: tuple[Any, Any, Cli, Path]) -> None:
    """A readiness probe printing a Secret env var and a mounted Secret file fails the rollout:
    the output is kept (redacted, naming the key), and neither value appears in sync, status,
    history (text and JSON) nor in the bytes of state.db."""
    svc, repo, cli, state = setup
    repo.write(f"{BASE}/ns.yaml", _namespace(NS))
    repo.write(f"{BASE}/leaky.yaml", PROBE_PRINTS_SECRET)
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


P = os.getpid()
NS_A, NS_CAT, NS_SEC = f"c{P}", f"c{P}-cat", f"c{P}-secret-b"  # dash-joined, these met in one name


def _pod(name: str, ns: str, container: str = "app", claim: str = "", secret: str = "") -> str:
    env = f"[{{name: WHO, value: {ns}/{name}}}" + (
        f", {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: {secret}, key: k}}}}}}]" if secret else "]")
    mounts = f"\n      volumeMounts: [{{name: d, mountPath: /data}}]" if claim else ""
    volumes = f"\n  volumes: [{{name: d, persistentVolumeClaim: {{claimName: {claim}}}}}]" if claim else ""
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: {container}
      image: {WEB1}
      command: [sh, -c, "[ -d /data ] && echo $WHO >> /data/who; exec sleep 3600"]
      env: {env}{mounts}{volumes}
"""


def _claim(name: str, ns: str) -> str:
    return (f"apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: {ns}}}\n"
            "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}\n")


def _secret(name: str, ns: str, value: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{k: {value}}}\n"


def _volume_files(svc: Any, volume: str) -> str:
    return svc.podman("run", "--rm", "-v", f"{volume}:/data", WEB1, "sh", "-c", "cat /data/*").stdout


def test_names_never_collide_across_namespaces_and_old_volumes_keep_their_data(setup: tuple[Any, Any, Cli, Path]) -> None:
    """Every kind the agent names, with identities whose dash-joined names were equal: volumes
    (`c-cat`/`data` vs `c`/`cat-data`), secrets (`c`/`b-secret-n` vs `c-secret-b`/`n`), a Pod
    `twin` in three namespaces, containers (`web`/`db-x` vs `web-db`/`x`), networks. A volume an
    old agent made under the old name keeps serving its own claim, with its data; the other
    namespace gets a fresh one. A container under its old name is not replaced."""
    svc, repo, cli, state = setup
    legacy = f"gitops-{NS_CAT}-data"  # what an older agent (dash-joined names) named NS_CAT's claim "data"
    svc.podman("volume", "create", "--label", "io.gitops-agent.managed=true", "--label", f"io.gitops-agent.namespace={NS_CAT}",
               "--label", "io.gitops-agent.kind=PersistentVolumeClaim", "--label", "io.gitops-agent.name=data", legacy)
    svc.podman("run", "--rm", "-v", f"{legacy}:/data", WEB1, "sh", "-c", "echo precious > /data/keep")
    docs = {
        "ns.yaml": "---\n".join(_namespace(n) for n in (NS_A, NS_CAT, NS_SEC)),
        "claims.yaml": _claim("data", NS_CAT) + "---\n" + _claim("cat-data", NS_A),
        "secrets.yaml": _secret("b-secret-n", NS_A, "value-of-a") + "---\n" + _secret("n", NS_SEC, "value-of-sec"),
        "twins.yaml": "---\n".join((_pod("twin", NS_CAT, claim="data"), _pod("twin", NS_A, claim="cat-data", secret="b-secret-n"),
                                    _pod("twin", NS_SEC, secret="n"))),
        "web.yaml": _pod("web", "default", container="db-x") + "---\n" + _pod("web-db", "default", container="x"),
    }
    for name, text in docs.items():
        repo.write(f"{BASE}/{name}", text)
    repo.commit_and_push("names that used to collide")
    code, out, err = cli("sync")
    assert code == 0, out + err
    ctrs = app_containers(svc)
    assert sorted(ctrs) == sorted([f"twin_{NS_CAT}_app", f"twin_{NS_A}_app", f"twin_{NS_SEC}_app", "web_db-x", "web-db_x"])
    assert all(c["State"] == "running" for c in ctrs.values())
    vols = set(svc.podman("volume", "ls", "--format", "{{.Name}}").stdout.split())
    assert {legacy, f"gitops-{NS_A}_cat-data"} <= vols and f"gitops-{NS_CAT}_data" not in vols
    assert _volume_files(svc, legacy).split() == ["precious", f"{NS_CAT}/twin"]  # old data carried over, own writer only
    assert _volume_files(svc, f"gitops-{NS_A}_cat-data").split() == [f"{NS_A}/twin"]  # fresh, never the other one's
    for ns, value in ((NS_A, "value-of-a"), (NS_SEC, "value-of-sec")):
        assert svc.podman("exec", f"twin_{ns}_app", "sh", "-c", "echo $TOKEN").stdout.strip() == value
    nets = set(svc.podman("network", "ls", "--format", "{{.Name}}").stdout.split())
    assert {f"gitops-{n}" for n in (NS_A, NS_CAT, NS_SEC)} <= nets
    code, out, _ = cli("status", "--output", "json")
    claims = {o["namespace"]: o["state"] for o in json.loads(out)["objects"] if o["kind"] == "PersistentVolumeClaim"}
    assert claims == {NS_CAT: "Bound", NS_A: "Bound"} and json.loads(out)["orphanedVolumes"] == []

    # a container under its old dash-joined name (`<pod>-<container>`) is recognised: no replacement
    before = ctrs["web_db-x"]["Id"]
    svc.podman("rename", "web_db-x", "web-db-x")
    code, out, err = cli("sync")
    assert code == 0 and "in-sync" in out + err, out + err
    assert app_containers(svc)["web-db-x"]["Id"] == before


def _secret_names(svc: Any) -> set[str]:
    return set(svc.podman("secret", "ls", "--format", "{{.Name}}").stdout.split())


def test_a_hand_made_gitops_secret_is_never_deleted_even_after_the_store_is_lost(setup: tuple[Any, Any, Cli, Path]) -> None:
    """`gitops-admin-key`, made by hand, survives every sync and is shown in `status`; the
    agent's own old secrets are pruned, from its inventory and, with the state store
    deleted, from the mark it puts in their driver options."""
    svc, repo, cli, state = setup
    svc.podman("secret", "create", "gitops-admin-key", "/etc/hostname")
    repo.write(f"{BASE}/ns.yaml", _namespace(NS))
    user = _pod("user", NS, secret="s")
    for value in ("value-one", "value-two", "value-three"):
        repo.write(f"{BASE}/app.yaml", _secret("s", NS, value) + "---\n" + user)
        repo.commit_and_push(value)
        if value == "value-three":  # the store is lost: only the mark tells the agent's secrets apart
            for f in state.glob("state.db*"):
                f.unlink()
        before = _secret_names(svc) - {"gitops-admin-key"}
        code, out, err = cli("sync")
        assert code == 0, out + err
        names = _secret_names(svc)
        assert "gitops-admin-key" in names
        ours = names - {"gitops-admin-key"}
        assert len(ours) == 1 and not ours & before  # the new value's secret, the old one pruned
        assert svc.podman("exec", f"user_{NS}_app", "sh", "-c", "echo $TOKEN").stdout.strip() == value
    code, out, _ = cli("status", "--output", "json")
    assert json.loads(out)["unknownSecrets"] == ["local/gitops-admin-key"]
    code, out, _ = cli("status")
    assert "Unknown secret (not made by this agent, left alone): local/gitops-admin-key" in out
    code, out, _ = cli("diff")
    assert "secret gitops-admin-key was not made by this agent: left alone" in out


def test_upgrade_takes_the_old_agents_secrets_and_removes_them_once_its_pods_are_gone(
        setup: tuple[Any, Any, Cli, Path]) -> None:
    """The state an agent with dash-joined names left: its secret (old name, no mark, no record)
    and its pod (container `user-app`). The upgraded agent keeps both while that pod runs (Podman
    could not restart it without the secret), takes the secret as its own (a name only the applied
    revision's value gives), and removes it once a new template replaced the pod."""
    import sqlite3

    from gitops_agent.desired import legacy_secret_name
    from gitops_agent.model import ObjectRef

    svc, repo, cli, state = setup
    svc.podman("secret", "create", "gitops-admin-key", "/etc/hostname")
    user = _pod("user", "default", secret="s")
    repo.write(f"{BASE}/app.yaml", _secret("s", "default", "old-value") + "---\n" + user)
    repo.commit_and_push("before the upgrade")
    code, out, err = cli("sync")
    assert code == 0, out + err
    # what the older agent would have left instead: its names, and a store without a secret inventory
    old_secret = legacy_secret_name(ObjectRef("Secret", "default", "s"), "k", b"old-value")
    with open(state / "old-secret", "w") as f:
        f.write("old-value")
    svc.podman("secret", "create", old_secret, str(state / "old-secret"))
    svc.podman("rename", "user_app", "user-app")
    with sqlite3.connect(state / "state.db") as db:
        db.execute("DELETE FROM secrets")
        db.execute("DELETE FROM state WHERE key = 'secrets_adopted'")
    code, out, err = cli("sync")
    assert code == 0 and "in-sync" in out + err, out + err
    assert old_secret in _secret_names(svc)  # the old pod may need it
    code, out, _ = cli("status", "--output", "json")
    assert json.loads(out)["unknownSecrets"] == ["local/gitops-admin-key"]  # the old agent's is known, not unknown

    repo.write(f"{BASE}/app.yaml", _secret("s", "default", "new-value") + "---\n" + user)
    repo.commit_and_push("a new value replaces the old pod")
    for _ in range(2):  # the pass that replaces the old pod plans with it still running: the next one prunes
        code, out, err = cli("sync")
        assert code == 0, out + err
    names = _secret_names(svc)
    assert old_secret not in names and "gitops-admin-key" in names and len(names) == 2
    assert svc.podman("exec", "user_app", "sh", "-c", "echo $TOKEN").stdout.strip() == "new-value"
