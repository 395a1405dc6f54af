"""Real Podman and real Git: an Indexed Job (completions 3, parallelism 2) whose pods write their index (from
JOB_COMPLETION_INDEX and from a fieldRef of the index annotation) to a host directory the test reads, with a
podFailurePolicy Ignore rule that lets index 1's first pod exit 7 without failing the Job (backoffLimit 0). The
other rules (FailJob, FailIndex, Count), backoffLimitPerIndex, maxFailedIndexes and successPolicy are pinned from
literals in tests/test_job_policies.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent.cli import main
from podman_env import WEB1

BASE = "clusters/edge"
SCRIPT = ("echo $JOB_COMPLETION_INDEX $FROM_ANNOTATION >> /out/ran; "
          "if [ $JOB_COMPLETION_INDEX = 1 ] && ! [ -e /out/again ]; then touch /out/again; exit 7; fi; "
          "echo $JOB_COMPLETION_INDEX > /out/done-$JOB_COMPLETION_INDEX")


def manifests(out: Path) -> str:
    return f"""\
apiVersion: batch/v1
kind: Job
metadata: {{name: idx}}
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  backoffLimit: 0
  podFailurePolicy:
    rules:
      - {{action: Ignore, onExitCodes: {{containerName: work, operator: In, values: [7]}}}}
  template:
    metadata: {{name: ignored-as-in-kubernetes}}
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
        - name: work
          image: {WEB1}
          command: ["sh", "-c", {json.dumps(SCRIPT)}]
          env:
            - name: FROM_ANNOTATION
              valueFrom: {{fieldRef: {{fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}}
          volumeMounts: [{{name: out, mountPath: /out}}]
      volumes: [{{name: out, hostPath: {{path: {out}, type: Directory}}}}]
"""


def test_an_indexed_job_runs_each_index_and_pod_failure_policy_rules_act_on_real_podman(
    clean_podman: Any, git_remote: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every index runs and writes its own index; index 1's first pod exits 7 (Ignore: not counted, its pod is
    removed and run again), so the Job completes with backoffLimit 0 and completedIndexes 0-2."""
    svc, repo = clean_podman, git_remote
    out = tmp_path / "out"
    out.mkdir()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": BASE},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
        "policy": {"allowedHostPaths": [{"pathPrefix": str(out)}]},
    }))
    repo.write(f"{BASE}/jobs.yaml", manifests(out))
    repo.commit_and_push("jobs")

    def containers() -> list[dict[str, Any]]:
        listed = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
        return [c for c in json.loads(listed or "[]") if not c.get("IsInfra")]

    def jobs() -> dict[str, Any]:
        code, text, err = cli("status", "--output", "json")
        assert code == 0, err
        return {o["name"]: o for o in json.loads(text)["objects"] if o["kind"] == "Job"}

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([args[0], "--config", str(cfg), *args[1:]])
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    for _ in range(6):  # each pass starts what the last one's results allow (3 passes here)
        code, _, err = cli("sync")
        assert code == 0, err
        for _ in range(100):
            if all(c["State"] == "exited" for c in containers()):
                break
            time.sleep(0.1)
        found = jobs()
        if found["idx"]["state"] in ("Complete", "Failed"):
            break
    idx = found["idx"]
    assert (idx["state"], idx["job"]["succeeded"], idx["job"]["failed"]) == ("Complete", 3, 0), idx
    assert (idx["job"]["completedIndexes"], idx["job"]["failedIndexes"]) == ("0-2", None)
    assert {i: (out / f"done-{i}").read_text() for i in range(3)} == {i: f"{i}\n" for i in range(3)}
    assert sorted((out / "ran").read_text().splitlines()) == ["0 0", "1 1", "1 1", "2 2"]  # index 1 ran again
    pods = json.loads(svc.podman("pod", "ps", "--filter", "label=io.gitops-agent.name=idx", "--format", "json").stdout)
    index = {p["Name"]: p["Labels"]["batch.kubernetes.io/job-completion-index"] for p in pods}
    assert sorted(index.values()) == ["0", "1", "2"], index  # the ignored pod was removed; each pod's label
    assert all(name.startswith(f"idx-{i}-") for name, i in index.items()), index
    code, text, _ = cli("status")
    assert code == 0 and "completed indexes 0-2" in text, text
    code, text, _ = cli("diff")
    assert code == 0 and "in sync" in text, text
