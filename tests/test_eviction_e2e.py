"""emptyDir sizeLimit on the node's disk, on real Podman and real Git, through `gitops-agent run` (issue 18).

A Deployment whose container writes 2 MiB into a disk emptyDir of sizeLimit 1Mi is evicted as the kubelet evicts
it: its pod is removed with its emptyDir volume (never its claim's volume, whose data stays), the next pass makes a
new pod with an empty emptyDir (which this time writes nothing: the claim remembers), and the event and `status` say
`Evicted: emptyDir volume "scratch" uses N bytes, over its sizeLimit 1048576`. A Deployment under its limit is
left alone. A short `evictionPeriod` keeps it to seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gitrepo import git
from podman_env import WEB1
from test_hpa_e2e import Agent

# 2 MiB (16 bytes doubled 17 times, and a newline) by the shell alone: the test image has no dd
WRITE = "s=0123456789abcdef; i=0; while [ $i -lt 17 ]; do s=$s$s; i=$((i+1)); done; echo $s > /scratch/big"


def deployment(name: str, command: str, claim: bool = False) -> str:
    mount = ", {name: data, mountPath: /data}" if claim else ""
    volume = "\n        - {name: data, persistentVolumeClaim: {claimName: data}}" if claim else ""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: {WEB1}
          command: ["sh", "-c", "trap 'exit 0' TERM; {command}; sleep 100000 & wait"]
          volumeMounts: [{{name: scratch, mountPath: /scratch}}{mount}]
      volumes:
        - {{name: scratch, emptyDir: {{sizeLimit: 1Mi}}}}{volume}
"""


CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
"""


def running(svc: Any, name: str) -> dict[str, str]:
    """The running pods of Deployment `name`: pod name → pod id."""
    out = svc.podman("pod", "ps", "--filter", f"label=io.gitops-agent.name={name}", "--format", "json").stdout
    return {p["Name"]: p["Id"] for p in json.loads(out or "[]") if p.get("Status") == "Running"}


def ls(svc: Any, pod: str, path: str) -> list[str]:
    """The files in `path` of container main of pod `pod` (an id)."""
    cid = svc.podman("ps", "-q", "--filter", f"pod={pod}", "--filter", "label=io.gitops-agent.container=main").stdout
    return str(svc.podman("exec", cid.strip(), "ls", path).stdout).split()


def until(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_a_pod_over_its_disk_empty_dir_size_limit_is_evicted_and_made_again_with_an_empty_one(
        clean_podman: Any, tmp_path: Path) -> None:
    """The pod over its limit is replaced by a new pod whose emptyDir is empty, its claim's data kept; the event
    and status say why; the pod under its limit keeps running, the same pod."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "app.yaml").write_text("---\n".join([
        CLAIM, deployment("hog", f"[ -e /data/wrote ] || {{ touch /data/wrote; {WRITE}; }}", claim=True),
        deployment("calm", "echo small > /scratch/small")]))
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "apps", cwd=repo)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": str(repo), "interval": "10m"},
        "nodes": [{"name": "local", "url": clean_podman.url}],
        "stateDir": str(tmp_path / "state"), "readyTimeout": "30s", "evictionPeriod": "1s",
    }))
    log = tmp_path / "agent.log"
    agent = Agent(cfg, log)
    try:
        calm = until("calm runs", lambda: running(clean_podman, "calm"), 30)
        first = until("hog runs", lambda: running(clean_podman, "hog"), 30)
        [evicted] = until("pod.evicted", lambda: [e for e in agent.events() if e["event"] == "pod.evicted"], 30)
        assert evicted["reason"] == "Evicted" and evicted["level"] == "warning", evicted
        assert evicted["pod"] in first and evicted["workload"] == "Deployment/default/hog", evicted
        assert evicted["error"] == (f'Evicted: emptyDir volume "scratch" uses {evicted["used"]} bytes, over its '
                                    "sizeLimit 1048576") and evicted["used"] > 2 << 20, evicted
        again = until("a new hog pod", lambda: {n: i for n, i in running(clean_podman, "hog").items()
                                                if i not in first.values()}, 30)
        [pod] = again.values()
        assert ls(clean_podman, pod, "/scratch") == []  # a new, empty emptyDir
        assert ls(clean_podman, pod, "/data") == ["wrote"]  # the claim's data outlived the eviction
        time.sleep(3)  # three more measurements: the new pod (under its limit now) and calm are left alone
        assert running(clean_podman, "calm") == calm and running(clean_podman, "hog") == again
        assert len([e for e in agent.events() if e["event"] == "pod.evicted"]) == 1
        status = subprocess.run([sys.executable, "-m", "gitops_agent", "status", "--config", str(cfg), "-o", "json"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        [shown, *_] = json.loads(status.stdout)["evictions"]
        assert (shown["pod"], shown["volume"], shown["limit"]) == (evicted["pod"], "scratch", 1 << 20), shown
        assert shown["message"] == evicted["error"]
        table = subprocess.run([sys.executable, "-m", "gitops_agent", "status", "--config", str(cfg)],
                               capture_output=True, text=True, timeout=60)
        assert f"pod {evicted['pod']} (Deployment/default/hog): {evicted['error']}" in table.stdout, table.stdout
    finally:
        agent.stop()
    volumes = clean_podman.podman("volume", "ls", "--format", "json").stdout
    names = [v["Name"] for v in json.loads(volumes or "[]")]
    assert any("data" in n and "emptydir" not in n for n in names), names  # the claim's volume is kept
