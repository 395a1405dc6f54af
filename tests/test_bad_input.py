"""Bad input end to end: every entry of the corpus (tests/bad_corpus.py) is pushed
to a real Git remote on top of a good revision that runs on a real Podman node.
Each gets a clear error naming the file, the revision is rejected whole, and
nothing changes on the node (same containers, same applied revision)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


from bad_corpus import CORPUS, GOOD_DEPLOY
from gitops_agent.agent import Agent
from gitops_agent.config import from_mapping

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
    agent = Agent(cfg)
    try:
        assert agent.sync().result == "applied"
        running = managed_ids(clean_podman)
        assert len(running) == 2  # infra + web
        tried = []
        for name, (files, fragment) in CORPUS.items():
            applied = agent.history.get("applied_sha")
            put(repo, files)
            repo.commit_and_push(f"bad: {name}")
            out = agent.sync()
            assert out.result == "rejected", (name, out.result, out.error)
            assert fragment in out.error, (name, out.error[:500])
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
        assert tried == list(CORPUS)
    finally:
        agent.close()
    assert not Path("/tmp/pwned").exists()
