"""Bad input end to end: every entry of the corpus (tests/bad_corpus.py) is pushed
to a real Git remote on top of a good revision that runs on a real Podman node.
Each gets a clear error naming the file, the revision is rejected whole, fast and
with one log line, and nothing changes on the node (same containers, same applied
revision). A Secret's value sent through every value-derived error appears in no
output of `sync`, `status`, `history` or `diff` and not in the state store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from bad_corpus import CANARY_B64, CORPUS, GOOD_DEPLOY, NODE_LIMITS, SECRET_CANARY, SECRET_LEAKS
from test_hostile import EMPTY_SECRET_ENV
from gitops_agent.agent import Agent
from gitops_agent.cli import main
from gitops_agent.config import from_mapping
from gitops_agent.errors import quote_path

GOOD = GOOD_DEPLOY.replace("image: localhost/gitops-test/web:1}",
                           'image: localhost/gitops-test/web:1, command: [httpd, "-f", "-p", "8080", "-h", /www]}')


def managed_ids(svc: Any) -> dict[str, str]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c["Id"] for c in json.loads(out or "[]")}


def put(repo: Any, files: dict[str, bytes | tuple[str, str]]) -> None:
    for rel, data in files.items():
        path = repo.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, tuple):
            os.symlink(data[1], path)
        else:
            path.write_bytes(data)


def test_every_bad_input_is_rejected_clearly_and_changes_nothing(clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    repo = git_remote
    repo.write("web.yaml", GOOD)
    repo.commit_and_push("good")
    cfg = from_mapping({"source": {"url": repo.url}, "nodes": [{"name": "n", "url": clean_podman.url}],
                        "stateDir": str(tmp_path / "state")})
    events: list[tuple[str, dict[str, Any]]] = []
    agent = Agent(cfg, log=lambda event, **fields: events.append((event, fields)))
    corpus = {**CORPUS, **NODE_LIMITS}
    try:
        assert agent.sync().result == "applied"
        running = managed_ids(clean_podman)
        assert len(running) == 2  # infra + web
        tried = []
        for name, (files, fragment) in corpus.items():
            applied = agent.history.get("applied_sha")
            put(repo, files)
            repo.commit_and_push(f"bad: {name}")
            events.clear()
            started = time.monotonic()
            out = agent.sync()
            assert time.monotonic() - started < 10, name  # replicas: 100000 included: placement math, no pods
            assert out.result == "rejected", (name, out.result, out.error)
            assert fragment in out.error, (name, out.error[:500])
            assert [event for event, _ in events].count("revision.rejected") == 1, (name, events)
            assert not [event for event, _ in events if "pod" in event], (name, events)
            first_file = next(iter(files))
            assert any(p.file.split("/")[0] == first_file.split("/")[0] for p in out.problems), (name, out.problems[:3])
            assert "Traceback" not in out.error
            assert managed_ids(clean_podman) == running, name  # nothing applied, nothing restarted
            assert agent.history.get("applied_sha") == applied, name
            for rel in files:
                if rel == "web.yaml":
                    repo.write(rel, GOOD)
                elif not rel.startswith("many/"):
                    repo.remove(rel)
            if any(rel.startswith("many/") for rel in files):
                repo.remove("many")
            repo.commit_and_push(f"fix: {name}")
            assert agent.sync().result in ("in-sync", "applied"), name
            assert managed_ids(clean_podman) == running, name
            tried.append(name)
        assert tried == list(corpus)
    finally:
        agent.close()
    assert not Path("/tmp/pwned").exists()


def test_a_secret_value_in_every_error_path_is_never_shown_or_stored(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One real commit holds a Secret whose value goes through every value-derived error; `sync`, `diff`,
    `status` and `history` (table and JSON, text and JSON logs) print every problem, each at its file,
    and the value (or its base64) is in none of them and not in the state store."""
    repo = git_remote
    repo.write("web.yaml", GOOD)
    for i, data in enumerate(SECRET_LEAKS.values()):
        path = repo.path(f"leaks/{i:02d}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    repo.write("odd\nname.yaml", GOOD_DEPLOY.replace("replicas: 1", "replicas: x"))
    repo.commit_and_push("leaky")
    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({"source": {"url": repo.url}, "nodes": [{"name": "n", "url": clean_podman.url}],
                                  "stateDir": str(tmp_path / "state")}))
    transcript = []
    for command in (["sync"], ["sync", "--log-format", "json"], ["diff"], ["status"], ["status", "-o", "json"],
                    ["history"], ["history", "-o", "json"]):
        code = main([command[0], "--config", str(config), *command[1:]])
        captured = capsys.readouterr()
        transcript.append(captured.out + captured.err)
        assert code != 0 or command[0] in ("status", "history"), (command, captured)
    printed = "\n".join(transcript)
    assert "Traceback" not in printed
    for i in range(len(SECRET_LEAKS)):
        assert f"leaks/{i:02d}.yaml:" in transcript[0], (i, transcript[0])
    assert '"odd\\nname.yaml":5: Deployment/web: spec.replicas: must be an integer' in transcript[0]
    assert quote_path("odd\nname.yaml") in transcript[3]  # status lists the problems too
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("state.db*"))
    assert b"leaks/00.yaml" in stored  # the problems are stored ...
    for text, where in ((printed, "output"), (stored.decode("latin-1"), "state.db")):
        for secret in (SECRET_CANARY, CANARY_B64, SECRET_CANARY[:11]):  # ... without the value
            assert secret not in text, (secret, where)
    assert managed_ids(clean_podman) == {}


def sync_applied(svc: Any, repo: Any, tmp_path: Path) -> None:
    """One sync of `repo`'s head onto the one node `svc`, which must apply it."""
    cfg = from_mapping({"source": {"url": repo.url}, "nodes": [{"name": "n", "url": svc.url}],
                        "stateDir": str(tmp_path / "state")})
    agent = Agent(cfg)
    try:
        out = agent.sync()
        assert out.result == "applied", out.error
    finally:
        agent.close()


def test_an_empty_secret_value_in_the_environment_runs(clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    """What validate accepts the node runs: a Secret with an empty value, used in the environment, starts on real
    Podman (the empty value as plain env, the other key through a Podman secret)."""
    git_remote.path("web.yaml").write_bytes(EMPTY_SECRET_ENV)
    git_remote.commit_and_push("empty secret value")
    sync_applied(clean_podman, git_remote, tmp_path)
    (name,) = [n for n in managed_ids(clean_podman) if not n.endswith("-infra")]
    shown = clean_podman.podman("exec", name, "sh", "-c", 'echo "[$EMPTY][$ONE][$TOKEN]"').stdout.strip()
    assert shown == "[][][t0ken]"


def test_the_longest_names_validate_accepts_run(clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    """Podman has no length limit that pod and container names reach: a Deployment named with 253 characters
    (a 270-character pod name) and a 63-character container (a 334-character container name) in a 63-character
    namespace start on real Podman, so validate needs no limit for them (it has ones for volumes, networks and
    secrets, tests/bad_corpus.py NODE_LIMITS); a 253-character ConfigMap key of a 253-character ConfigMap is
    mounted through a Podman secret whose name the agent keeps within Podman's 64 characters."""
    name, container, namespace = "w" * 253, "c" * 63, "n" * 63
    config, key = "m" * 253, "k" * 253  # its Podman secret's name is cut to Podman's 64 characters
    deploy = GOOD.replace("metadata: {name: web}", f"metadata: {{name: {name}, namespace: {namespace}}}") \
        .replace("{name: web, image", f"{{name: {container}, volumeMounts: [{{name: v, mountPath: /v}}], image") \
        .replace("    spec:\n", f"    spec:\n      volumes: [{{name: v, configMap: {{name: {config}}}}}]\n")
    git_remote.write("ns.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n")
    git_remote.write("cm.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {config}, namespace: {namespace}}}\n"
                                f"data: {{{key}: long-key-value}}\n")
    git_remote.write("web.yaml", deploy)
    git_remote.commit_and_push("long names")
    sync_applied(clean_podman, git_remote, tmp_path)
    (running,) = [n for n in managed_ids(clean_podman) if not n.endswith("-infra")]
    assert len(running) == 334 and running.startswith(name) and running.endswith(container)
    assert clean_podman.podman("exec", running, "cat", f"/v/{key}").stdout == "long-key-value"
