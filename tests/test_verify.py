"""Commit verification (`source.verify`) on real Git, gpg and ssh-keygen.

Keys are made fresh per session: two OpenPGP keys (one trusted, one not) in a
throw-away GNUPGHOME and two SSH ed25519 keys. Commits and tags are signed with
the real `git commit -S` / `git tag -s`. The decisions are checked through
`Agent.revision` (no Podman needed); one end-to-end test on Podman shows that a
rejected revision leaves the last good one running.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.cli import main
from gitops_agent.errors import ConfigError, RevisionRejected
from podman_env import WEB1

NS = f"ver{os.getpid()}"
BASE = "apps"


@dataclass(frozen=True)
class Keys:
    gnupghome: str  # holds the secret keys used to sign
    trusted_fpr: str
    untrusted_fpr: str
    trusted_asc: Path
    untrusted_asc: Path
    ssh_trusted: Path  # private key; .pub next to it
    ssh_untrusted: Path


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    cp = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp.stdout


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    for tool in ("gpg", "gpgconf", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run `bash .ci/setup` (installs gnupg and openssh-client)", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="gatv"))  # short path: gpg-agent's socket lives in GNUPGHOME
    home = base / "g"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        fprs = []
        for uid in ("Trusted <trusted@example.org>", "Stranger <stranger@example.org>"):
            _run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never", env=env)
            listing = _run("gpg", "--with-colons", "--list-keys", uid, env=env)
            fprs.append(next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")))
        ascs = []
        for name, fpr in zip(("trusted.asc", "untrusted.asc"), fprs):
            (base / name).write_text(_run("gpg", "--armor", "--export", fpr, env=env))
            ascs.append(base / name)
        sshs = []
        for name in ("ssh_trusted", "ssh_untrusted"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@example.org", "-f", str(base / name))
            sshs.append(base / name)
        yield Keys(str(home), fprs[0], fprs[1], ascs[0], ascs[1], sshs[0], sshs[1])
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


class Signer:
    """Commits and tags in a GitRemote's working tree, signed (or not) with the test keys."""

    def __init__(self, repo: Any, keys: Keys) -> None:
        self.repo, self.keys = repo, keys
        self.env = {**os.environ, "GNUPGHOME": keys.gnupghome, "GIT_CONFIG_NOSYSTEM": "1"}

    def _git(self, *args: str, key: str | None = None) -> str:
        cfg = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "core.hooksPath=/dev/null",
               "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
        if key is not None:
            ssh = key.startswith("/")
            cfg += ["-c", f"user.signingkey={key}", "-c", f"gpg.format={'ssh' if ssh else 'openpgp'}"]
        return _run("git", *cfg, *args, env=self.env, cwd=self.repo.workdir).strip()

    def commit(self, message: str, key: str | None = None, files: dict[str, str] | None = None) -> str:
        """Commit (signed with `key`: an OpenPGP fingerprint or an SSH private key path) and push."""
        for path, text in (files or {"note.txt": message}).items():
            self.repo.write(path, text)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message, key=key)
        self._git("push", "-q", "origin", "HEAD:refs/heads/main")
        return self._git("rev-parse", "HEAD")

    def tag(self, name: str, key: str | None = None, annotated: bool = True) -> None:
        if key:
            self._git("tag", "-s", "-m", name, name, key=key)
        elif annotated:
            self._git("tag", "-a", "-m", name, name)
        else:
            self._git("tag", name)
        self._git("push", "-q", "origin", f"refs/tags/{name}")


def agent_config(tmp_path: Path, repo: Any, keys: Keys, mode: str = "head", node_url: str | None = None) -> Path:
    """An agent config next to copies of the trusted keys (relative paths, as a user writes them)."""
    shutil.copy(keys.trusted_asc, tmp_path / "release.asc")
    shutil.copy(keys.ssh_trusted.with_suffix(".pub"), tmp_path / "deploy_key.pub")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo.url, "branch": "main", "path": BASE,
                   "verify": {"mode": mode, "keys": ["release.asc", "deploy_key.pub"]}},
        "nodes": [{"name": "local", "url": node_url or f"unix://{tmp_path}/none.sock"}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }))
    return cfg


def rejection(agent: Agent, sha: str) -> str:
    with pytest.raises(RevisionRejected) as e:
        agent.revision(sha)
    (problem,) = e.value.problems
    return problem.message


MANIFEST = {f"{BASE}/ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"}


def test_config_verify_section(tmp_path: Path) -> None:
    (tmp_path / "k.asc").write_text("x")
    cfg = config_mod.from_mapping({"source": {"url": "https://example.org/r.git", "verify": {"keys": ["k.asc"]}}}, tmp_path)
    assert cfg.source.verify == config_mod.VerifyConfig("head", (tmp_path / "k.asc",))
    assert config_mod.from_mapping({"source": {"url": "https://example.org/r.git"}}).source.verify is None
    for verify, message in (
        ({"mode": "commit", "keys": ["k.asc"]}, "source.verify.mode: must be one of head, tag, not 'commit'"),
        ({"mode": "tag"}, "source.verify.keys: expected a non-empty list"),
        ({"keys": ["missing.asc"]}, f"source.verify.keys[0]: {tmp_path / 'missing.asc'} is not a readable file"),
        ({"keys": ["k.asc"], "trust": "all"}, "source.verify.trust: unknown field 'trust'"),
    ):
        with pytest.raises(ConfigError) as e:
            config_mod.from_mapping({"source": {"url": "https://example.org/r.git", "verify": verify}}, tmp_path)
        assert message in str(e.value)


def test_bad_key_file_and_missing_tools_are_config_errors(git_remote: Any, tmp_path: Path, keys: Keys,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = agent_config(tmp_path, git_remote, keys)
    (tmp_path / "deploy_key.pub").write_text("not a key\n")
    with pytest.raises(ConfigError, match="is neither an ASCII-armored OpenPGP public key"):
        Agent(config_mod.load(str(cfg)))
    cfg = agent_config(tmp_path, git_remote, keys)
    monkeypatch.setattr("gitops_agent.source.shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match=r"`gpg` is not installed \(apt install gnupg\)"):
        Agent(config_mod.load(str(cfg)))


def test_head_mode_openpgp_and_ssh(git_remote: Any, tmp_path: Path, keys: Keys) -> None:
    signer = Signer(git_remote, keys)
    agent = Agent(config_mod.load(str(agent_config(tmp_path, git_remote, keys))))
    try:
        verify_dir = tmp_path / "state" / "verify"
        assert stat.S_IMODE(verify_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((verify_dir / "gnupg").stat().st_mode) == 0o700

        good = signer.commit("signed", key=keys.trusted_fpr, files=MANIFEST)
        assert agent.revision(good).commit == good

        unsigned = signer.commit("unsigned")
        assert rejection(agent, unsigned) == f"commit {unsigned[:12]} is not signed"

        stranger = signer.commit("stranger", key=keys.untrusted_fpr)
        assert rejection(agent, stranger) == (f"commit {stranger[:12]}: signature by OpenPGP key "
                                              f"{keys.untrusted_fpr[-16:]} is not from a trusted key")

        ssh_good = signer.commit("ssh signed", key=str(keys.ssh_trusted))
        assert agent.revision(ssh_good).commit == ssh_good

        ssh_bad = signer.commit("ssh stranger", key=str(keys.ssh_untrusted))
        message = rejection(agent, ssh_bad)
        assert message.startswith(f"commit {ssh_bad[:12]}: signature by SSH key SHA256:")
        assert message.endswith(" is not from a trusted key")
    finally:
        agent.close()
    # no gpg-agent was left running on the agent's keyring
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(verify_dir) not in ps


def test_tag_mode(git_remote: Any, tmp_path: Path, keys: Keys) -> None:
    signer = Signer(git_remote, keys)
    agent = Agent(config_mod.load(str(agent_config(tmp_path, git_remote, keys, mode="tag"))))
    try:
        # a signed commit alone is not enough in tag mode
        c1 = signer.commit("v1", key=keys.trusted_fpr, files=MANIFEST)
        assert rejection(agent, c1).startswith(f"no signed tag points at {c1[:12]}")

        c2 = signer.commit("v2")
        signer.tag("v2", key=keys.trusted_fpr)
        assert agent.revision(c2).commit == c2  # the tag was fetched with the commit

        c3 = signer.commit("v3")
        signer.tag("light", annotated=False)
        assert rejection(agent, c3).startswith(f"no signed tag points at {c3[:12]}")

        c4 = signer.commit("v4")
        signer.tag("v4-unsigned")
        signer.tag("v4-stranger", key=keys.untrusted_fpr)
        message = rejection(agent, c4)
        assert message.startswith(f"no tag pointing at {c4[:12]} has a trusted signature: ")
        assert "tag v4-unsigned: not signed" in message
        assert f"tag v4-stranger: signature by OpenPGP key {keys.untrusted_fpr[-16:]} is not from a trusted key" in message

        c5 = signer.commit("v5")
        signer.tag("v5", key=str(keys.ssh_trusted))
        assert agent.revision(c5).commit == c5
    finally:
        agent.close()


def app_containers(svc: Any) -> dict[str, str]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c["Id"] for c in json.loads(out or "[]") if not c.get("IsInfra")}


def web(text: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {WEB1}
          command: [sh, -c, "echo {text} > /tmp/v; exec httpd -f -p 8080 -h /www"]
"""


def test_verify_end_to_end(clean_podman: Any, git_remote: Any, tmp_path: Path, keys: Keys,
                           capsys: pytest.CaptureFixture[str]) -> None:
    svc, signer = clean_podman, Signer(git_remote, keys)
    cfg = agent_config(tmp_path, git_remote, keys, node_url=svc.url)

    def sync() -> tuple[int, str, str]:
        code = main(["sync", "--config", str(cfg)])
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    def status() -> dict[str, Any]:
        assert main(["status", "--config", str(cfg), "--output", "json"]) == 0
        return dict(json.loads(capsys.readouterr().out))

    # 1. signed by a trusted OpenPGP key: applied
    c1 = signer.commit("v1", key=keys.trusted_fpr, files={**MANIFEST, f"{BASE}/web.yaml": web("one")})
    code, out, err = sync()
    assert code == 0, err
    assert f"main@sha1:{c1}" in out
    good = app_containers(svc)
    assert len(good) == 1

    # 2. unsigned: rejected like an invalid revision; the last good revision keeps running
    c2 = signer.commit("v2 unsigned", files={f"{BASE}/web.yaml": web("two")})
    code, _, err = sync()
    assert code == 1
    assert f"commit {c2[:12]} is not signed" in err
    assert app_containers(svc) == good
    st = status()
    assert st["condition"] == "Stalled"
    assert st["attemptedRevision"] == f"main@sha1:{c2}" and st["appliedRevision"] == f"main@sha1:{c1}"
    code, _, err = sync()  # not retried until Git moves; still rejected, still running
    assert code == 1 and f"commit {c2[:12]} is not signed" in err and app_containers(svc) == good

    # 3. signed by a key that is not configured: rejected too
    c3 = signer.commit("v3 stranger", key=keys.untrusted_fpr, files={f"{BASE}/web.yaml": web("three")})
    code, _, err = sync()
    assert code == 1
    assert f"commit {c3[:12]}: signature by OpenPGP key {keys.untrusted_fpr[-16:]} is not from a trusted key" in err
    assert app_containers(svc) == good

    # 4. signed with the trusted SSH key: applied (a new pod for the new template)
    c4 = signer.commit("v4 ssh", key=str(keys.ssh_trusted), files={f"{BASE}/web.yaml": web("four")})
    code, out, err = sync()
    assert code == 0, err
    assert f"main@sha1:{c4}" in out
    now = app_containers(svc)
    assert len(now) == 1 and now != good
    assert svc.podman("exec", next(iter(now)), "cat", "/tmp/v").stdout.strip() == "four"
    assert status()["condition"] == "Ready"

    # 5. a restart (new process) with the stable revision: not re-verified against Git, stays in sync
    code, _, err = sync()
    assert code == 0, err
    assert app_containers(svc) == now
