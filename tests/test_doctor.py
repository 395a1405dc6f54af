"""`doctor` on real Podman and Git: passes on this CI machine's setup, and names the
failing check with its fix for a node whose socket is gone, a state dir that cannot be
written (a read-only bind mount, so root is refused too), and this sandbox's rlimit quirk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from podman_env import WEB1, PodmanService, make_image

AGENT = [sys.executable, "-m", "gitops_agent"]


def config(tmp_path: Path, repo: Any, nodes: dict[str, str], state: Path | None = None) -> Path:
    cfg = tmp_path / f"agent-{len(nodes)}.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": repo.url},
                                   "nodes": [{"name": n, "url": u} for n, u in nodes.items()],
                                   "stateDir": str(state or tmp_path / "state")}))
    return cfg


def doctor(cfg: Path, *prefix: str) -> tuple[int, dict[str, Any]]:
    cp = subprocess.run([*prefix, *AGENT, "doctor", "-c", str(cfg), "-o", "json"], capture_output=True, text=True,
                        timeout=120)
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp.returncode, json.loads(cp.stdout)


def by(out: dict[str, Any], check: str, node: str = "") -> list[dict[str, Any]]:
    return [c for c in out["checks"] if c["check"] == check and c["node"] == node]


@pytest.fixture
def repo(git_remote: Any) -> Any:
    git_remote.write("apps/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: dr}\n")
    git_remote.commit_and_push("one namespace")
    return git_remote


def test_doctor_passes_here_and_names_a_gone_socket_with_its_fix(clean_podman: Any, repo: Any, tmp_path: Path) -> None:
    """All checks pass on a node set up like CI (exit 0); a node without a socket fails podman-api
    with a fix (exit 1)."""
    code, out = doctor(config(tmp_path, repo, {"n1": clean_podman.url}))
    assert code == 0 and out["ok"], out
    names = {c["check"] for c in out["checks"] if c["status"] == "pass"}
    assert {"podman-api", "container-start", "namespace-dns", "clock", "state-dir", "git"} <= names, out
    assert "Podman 4." in by(out, "podman-api", "n1")[0]["detail"]
    # nothing left behind on the node by the trial container and network
    assert clean_podman.podman("ps", "-aq").stdout.strip() == ""
    assert "gitops-doctor" not in clean_podman.podman("network", "ls").stdout

    gone = tmp_path / "gone" / "podman.sock"
    code, out = doctor(config(tmp_path, repo, {"n1": clean_podman.url, "gone": f"unix://{gone}"}))
    assert code == 1 and not out["ok"]
    (failed,) = [c for c in out["checks"] if c["status"] == "fail"]
    assert failed["check"] == "podman-api" and failed["node"] == "gone"
    assert "cannot reach Podman" in failed["detail"] and "podman system service" in failed["fix"]
    assert by(out, "podman-api", "n1")[0]["status"] == "pass"  # the other node is still checked
    text = subprocess.run([*AGENT, "doctor", "-c", str(config(tmp_path, repo, {"gone": f"unix://{gone}"}))],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 1 and "FAIL podman-api" in text.stdout
    assert "fix: start the Podman API service" in text.stdout


def test_doctor_names_a_read_only_state_dir(clean_podman: Any, repo: Any, tmp_path: Path) -> None:
    """A state dir on a read-only mount (root cannot write either) fails state-dir with the fix."""
    state = tmp_path / "ro-state"
    state.mkdir()
    cfg = config(tmp_path, repo, {"n1": clean_podman.url}, state)
    ro = ["unshare", "-m", "--propagation", "private", "sh", "-c",
          f'mount --bind "{state}" "{state}" && mount -o remount,bind,ro "{state}" && exec "$0" "$@"']
    code, out = doctor(cfg, *ro)
    assert code == 1
    (failed,) = [c for c in out["checks"] if c["status"] == "fail"]
    assert failed["check"] == "state-dir" and "not writable" in failed["detail"] and "Read-only" in failed["detail"]
    assert "stateDir" in failed["fix"]


def test_doctor_recognises_the_rlimit_quirk_and_prints_the_containers_conf_fix(repo: Any, tmp_path: Path) -> None:
    """A Podman service without this sandbox's ulimit fix cannot start containers: doctor says why and how to fix it."""
    svc = PodmanService(base_dir=f"/tmp/gat-dr{os.getpid()}", start=False)
    try:
        Path(svc.env["CONTAINERS_CONF"]).write_text('[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                                                    'events_logger = "file"\n')
        svc.start()
        make_image(svc, WEB1, variant="1")
        code, out = doctor(config(tmp_path, repo, {"n1": svc.url}))
    finally:
        svc.cleanup()
    assert code == 1
    (failed,) = [c for c in out["checks"] if c["status"] == "fail"]
    assert failed["check"] == "container-start" and "rlimit" in failed["detail"].lower()
    assert "CONTAINERS_CONF" in failed["fix"] and 'default_ulimits = ["nofile=1024:1024"' in failed["fix"]


def test_doctor_loads_the_verification_keys_and_names_a_bad_one(repo: Any, tmp_path: Path) -> None:
    """An SSH public key loads (git-verify-keys pass, git pass); a file that is no key fails with the fix."""
    from gitops_agent.config import AgentConfig, SourceConfig, VerifyConfig
    from gitops_agent.doctor import git_source, run

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True, timeout=30)
    (tmp_path / "bad.pub").write_text("not a key\n")

    def results(key: str) -> list[Any]:
        cfg = AgentConfig(source=SourceConfig(url=repo.url, verify=VerifyConfig(keys=(tmp_path / key,))),
                          nodes=(), state_dir=tmp_path / "state")
        return run(cfg, (git_source,))

    assert {r.check: r.status for r in results("key.pub")} == {"git-verify-keys": "pass", "git": "pass"}
    (bad,) = results("bad.pub")
    assert bad.check == "git-verify-keys" and bad.status == "fail" and "neither an ASCII-armored" in bad.detail
    assert "source.verify.keys" in bad.fix
