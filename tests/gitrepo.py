"""A throw-away Git "remote" for tests, driven by the real ``git`` CLI.

``GitRemote(tmp)`` makes ``tmp/remote.git`` (bare, branch ``main``) and a
working tree ``tmp/work`` whose ``origin`` is that bare repo.  The agent under
test clones/fetches :attr:`GitRemote.url`; the test edits files in the working
tree and pushes::

    remote = GitRemote(tmp_path / "git")
    remote.write("apps/web.yaml", "...")
    sha = remote.commit_and_push("add web")
    remote.remove("apps/web.yaml")
    remote.commit_and_push("drop web")
    remote.revert(sha)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["GitRemote", "git"]

_GIT_CONFIG = [
    "-c", "user.name=t",
    "-c", "user.email=t@t",
    "-c", "commit.gpgsign=false",
    "-c", "init.defaultBranch=main",
    "-c", "core.hooksPath=/dev/null",
]


def git(*args: str, cwd: str | os.PathLike[str] | None = None) -> str:
    """Run ``git <args>`` (with a fixed test identity); return stripped stdout."""
    env = dict(os.environ)
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    cp = subprocess.run(
        ["git", *_GIT_CONFIG, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if cp.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({cp.returncode}):\n{cp.stderr.strip()}")
    return cp.stdout.strip()


class GitRemote:
    """A bare repository (the "remote") plus a working clone to commit from.

    :param base: directory to create both in (``base/remote.git``, ``base/work``).
    :param branch: the branch used everywhere (default ``main``).

    Attributes: ``bare`` (Path), ``workdir`` (Path), ``branch`` (str).
    """

    def __init__(self, base: str | os.PathLike[str], branch: str = "main") -> None:
        base = Path(base)
        base.mkdir(parents=True, exist_ok=True)
        self.branch = branch
        self.bare = base / "remote.git"
        self.workdir = base / "work"
        git("init", "-q", "--bare", "-b", branch, str(self.bare))
        git("init", "-q", "-b", branch, str(self.workdir))
        git("remote", "add", "origin", str(self.bare), cwd=self.workdir)

    @property
    def url(self) -> str:
        """What the agent should clone: the bare repository's path."""
        return str(self.bare)

    def path(self, relpath: str) -> Path:
        """Absolute path of ``relpath`` in the working tree."""
        return self.workdir / relpath

    def write(self, relpath: str, text: str) -> Path:
        """Write ``text`` to ``relpath`` in the working tree (parents created)."""
        p = self.path(relpath)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def remove(self, relpath: str) -> None:
        """Delete a file or a whole directory from the working tree."""
        p = self.path(relpath)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()

    def commit_and_push(self, message: str) -> str:
        """Stage everything (``git add -A``), commit, push to the bare repo; return the SHA.

        An empty commit is allowed, so a test can make "a new commit with the
        same content".
        """
        git("add", "-A", cwd=self.workdir)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.workdir)
        return self._push()

    def revert(self, sha: str) -> str:
        """``git revert --no-edit sha``, push, return the new SHA."""
        git("revert", "--no-edit", sha, cwd=self.workdir)
        return self._push()

    def head(self) -> str:
        """SHA of the remote's branch (what a fetch would see now)."""
        return git("rev-parse", f"refs/heads/{self.branch}", cwd=self.bare)

    def _push(self) -> str:
        git("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.workdir)
        return git("rev-parse", "HEAD", cwd=self.workdir)

    def __repr__(self) -> str:
        return f"<GitRemote {self.url} ({self.branch})>"
