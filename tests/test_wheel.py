"""The package as a user installs it: a wheel in a fresh venv, and `pipx install .`.

Every other test imports the editable checkout, where files outside `gitops_agent/` (the
`schemas/` folder) are at hand whether or not they are package data. Here the wheel is built from
a copy of the source tree, installed into a fresh venv (no `-e`, no repository on `sys.path`), and
run from a directory outside the repository: `validate` and one `sync` of `sample-repo/` (pushed to
a real Git remote, synced into the session's private Podman service, never the machine's own
Podman), and `gitops-agent unit`. `pipx install` of the same source tree runs meanwhile, with
PIPX_HOME / PIPX_BIN_DIR under the test's temporary directory, so nothing global changes.

A failed build or install FAILS these tests (never a skip): `.ci/setup` installs pipx.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gitrepo import GitRemote

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample-repo"
UNIT = ROOT / "gitops_agent" / "data" / "gitops-agent.service"
#: What a source tree copy leaves out: local state, never part of a release.
_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis")
#: sample-repo's namespace, renamed for this run: Podman 4.3 keeps aardvark-dns state per network name
#: machine-wide, so another test session's "demo" network must not meet this one.
NS = f"smoke{os.getpid()}"


def _env(tmp: Path) -> dict[str, str]:
    """The environment of a user's shell: no venv of ours, no PYTHONPATH into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PIPX_HOME=str(tmp / "pipx"), PIPX_BIN_DIR=str(tmp / "pipx-bin"), HOME=str(tmp / "home"))
    # pip's download cache stays the user's own (as on their machine: downloaded once, reused), so the two installs
    # do not fetch every dependency again from PyPI; what gets installed, and from what, is unchanged
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    # no byte-compiling of every installed dependency (pip's default, a third of the install's time here): the
    # files installed are the same, and Python compiles what it imports on first use
    env["PIP_NO_COMPILE"] = "1"
    return env


def _run(args: list[str], tmp: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a step from `tmp/cwd` (outside the repository); a non-zero exit fails the test with its output."""
    cp = subprocess.run(args, cwd=tmp / "cwd", env=_env(tmp), capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` exited {cp.returncode}:\n{cp.stdout}\n{cp.stderr}", pytrace=False)
    return cp


@dataclass(frozen=True)
class Installed:
    tmp: Path
    wheel: Path
    venv_agent: Path
    pipx_agent: Path | None  # None: pipx failed, `pipx_error` says why
    pipx_error: str

    def agent(self, *args: str, via: str = "venv") -> subprocess.CompletedProcess[str]:
        exe = self.venv_agent if via == "venv" else self.pipx_agent
        assert exe is not None, f"pipx install failed:\n{self.pipx_error}"
        return _run([str(exe), *args], self.tmp)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from a copy of the tree, installed into a fresh venv; `pipx install` beside it."""
    tmp = tmp_path_factory.mktemp("wheel")
    for d in ("cwd", "home"):
        (tmp / d).mkdir()
    if shutil.which("pipx") is None:
        pytest.fail("pipx is missing: run `bash .ci/setup` (it installs Debian's pipx)", pytrace=False)
    # Two copies: pip builds in the source tree (build/, *.egg-info), and both builds run at once.
    shutil.copytree(ROOT, tmp / "src", ignore=_NOT_SOURCE)
    shutil.copytree(ROOT, tmp / "src-pipx", ignore=_NOT_SOURCE)
    pipx = subprocess.Popen(["pipx", "install", str(tmp / "src-pipx")], cwd=tmp / "cwd", env=_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(tmp / "src")], tmp)
        wheels = sorted((tmp / "dist").glob("gitops_agent-*.whl"))
        assert len(wheels) == 1, f"expected one wheel, got {wheels}"
        _run([sys.executable, "-m", "venv", str(tmp / "venv")], tmp)
        _run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], tmp)
        out, _ = pipx.communicate(timeout=240)
    finally:
        if pipx.poll() is None:
            pipx.kill()
            pipx.wait()
    pipx_agent = tmp / "pipx-bin" / "gitops-agent"
    ok = pipx.returncode == 0 and pipx_agent.exists()
    yield Installed(tmp, wheels[0], tmp / "venv" / "bin" / "gitops-agent", pipx_agent if ok else None,
                    "" if ok else f"exit {pipx.returncode}:\n{out}")


def test_wheel_carries_schemas_and_unit(installed: Installed) -> None:
    """The wheel holds every schema of schemas/ and the systemd unit, and the fresh venv imports the
    package from itself, not from the checkout."""
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        assert {f"gitops_agent/schemas/{p.name}" for p in (ROOT / "schemas").glob("*.json")} <= names
        for p in (ROOT / "schemas").glob("*.json"):
            assert whl.read(f"gitops_agent/schemas/{p.name}") == p.read_bytes()
        assert whl.read("gitops_agent/data/gitops-agent.service") == UNIT.read_bytes()
    where = _run([str(installed.tmp / "venv" / "bin" / "python"), "-c",
                  "import gitops_agent.manifests as m; print(m.__file__)"], installed.tmp).stdout.strip()
    assert where.startswith(str(installed.tmp / "venv")), where


@pytest.mark.parametrize("via", ["venv", "pipx"])
def test_installed_validate_and_unit(installed: Installed, via: str) -> None:
    """`validate sample-repo/` and `unit` work from a wheel in a venv and from `pipx install .`."""
    out = installed.agent("validate", str(SAMPLE), via=via).stdout
    assert out.startswith("valid: 1 Namespace, 1 ConfigMap, 1 Secret, 1 PersistentVolumeClaim, 1 Deployment, "
                          "1 Service"), out
    unit = installed.agent("unit", via=via).stdout
    exe = installed.venv_agent if via == "venv" else installed.pipx_agent
    assert f"ExecStart={exe} run " in unit
    assert unit.replace(f"ExecStart={exe} ", "ExecStart=/usr/local/bin/gitops-agent ") == UNIT.read_text()


def _sample_in_namespace(namespace: str) -> dict[str, str]:
    """sample-repo's manifests, by path, with namespace `demo` renamed."""
    files = {}
    for path in sorted(SAMPLE.rglob("*.yaml")):
        text = path.read_text()
        text = text.replace("namespace: demo\n", f"namespace: {namespace}\n")
        if path.name == "namespace.yaml":
            text = text.replace("name: demo\n", f"name: {namespace}\n")
        assert "demo" not in text, f"{path}: namespace demo left in it"
        files[str(path.relative_to(SAMPLE))] = text
    return files


def _app_containers(svc: Any) -> list[dict[str, Any]]:
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return [c for c in json.loads(out or "[]") if not c.get("IsInfra")]


def test_wheel_syncs_sample_repo(installed: Installed, clean_podman: Any, tmp_path: Path) -> None:
    """One `sync` of sample-repo/ by the wheel-installed agent runs its two web pods (ConfigMap page served
    from the mounted file, Secret in the env), and `diff` then finds nothing to do."""
    from podman_env import make_image

    make_image(clean_podman, "localhost/gitops-sample/web:1.0", variant="sample")
    remote = GitRemote(tmp_path / "git")
    for name, text in _sample_in_namespace(NS).items():
        remote.write(name, text)
    commit = remote.commit_and_push("sample-repo")
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"url": remote.url, "branch": "main"},
        "nodes": [{"name": "local", "url": clean_podman.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "60s",
    }))
    out = installed.agent("sync", "--config", str(config)).stdout
    assert f"main@sha1:{commit}" in out, out
    pods = _app_containers(clean_podman)
    assert len(pods) == 2 and {c["State"] for c in pods} == {"running"}, pods
    assert {c["Labels"]["io.gitops-agent.namespace"] for c in pods} == {NS}
    one = pods[0]["Names"][0]
    page = clean_podman.podman("exec", one, "cat", "/www/index.html").stdout
    assert "Deployed by gitops-agent from Git" in page
    assert "API_TOKEN=sample-token-change-me" in clean_podman.podman("exec", one, "env").stdout
    assert "sample-token-change-me" not in out
    diff = installed.agent("diff", "--config", str(config))
    assert "in sync" in diff.stdout, diff.stdout
