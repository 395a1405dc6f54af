"""Git source: the only module that imports GitPython.

Follows one branch of one repository: asks the remote for its head
(`ls-remote`, no pack data), fetches that one commit shallowly (depth 1) into a
private bare repository under `stateDir`, and reads the manifest files of a
commit straight from Git's object store (no work tree, so nothing on disk can
drift from the commit). Every Git failure becomes `SourceUnavailable`.
Must not parse manifests or talk to Podman.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import git

from .config import SourceConfig
from .errors import SourceUnavailable
from .manifests import Limits, SourceFile, is_manifest_path

_SYMLINK_MODE = 0o120000

# never wait for a human: no credential prompt on a terminal (a remote that now asks for
# a password, e.g. a deleted or private repository on a forge, fails at once instead of
# hanging until the timeout)
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}

# git's generic advice after the real error: not a reason
_BOILERPLATE = (
    "fatal: could not read from remote repository.",
    "please make sure you have the correct access rights",
    "and the repository exists.",
)


def _reason(stderr: object, status: object) -> str:
    """The lines of git's stderr that say what went wrong, on one line.

    GitPython wraps stderr as `stderr: '…'`; git's own output may span lines
    (`unable to connect to host:` / `host[0: …]: errno=Connection refused`) and ends
    with advice that names no cause. An empty stderr becomes the exit status.
    """
    text = str(stderr or "").strip()
    if text.startswith("stderr:"):
        text = text.removeprefix("stderr:").strip()
        if len(text) >= 2 and text[0] == text[-1] == "'":
            text = text[1:-1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if ln.lower() not in _BOILERPLATE] or lines
    reason = ""
    for ln in useful:
        ln = ln.removeprefix("fatal: ").removeprefix("error: ")
        reason = f"{reason} {ln}" if reason.endswith(":") else f"{reason}; {ln}" if reason else ln
    return reason or f"git exited with status {status}"


@dataclass(frozen=True)
class Location:
    """A resolved source: what Git is asked for, and where in the tree to look."""

    url: str
    branch: str
    path: str  # "" or "a/b" inside the repository

    def revision(self, sha: str) -> str:
        """Flux's revision form: `main@sha1:<40 hex>`."""
        return f"{self.branch}@sha1:{sha}"


def resolve(cfg: SourceConfig) -> Location:
    """Turn the configured URL into something `git` fetches from.

    A local path may point inside a repository (e.g. `sample-repo/` of a
    checkout): the repository root becomes the URL (as file://, so shallow
    fetches work) and the rest is prepended to `source.path`.
    """
    url, path = cfg.url, cfg.path
    local = Path(url[len("file://"):]) if url.startswith("file://") else Path(url)
    if "://" not in url or url.startswith("file://"):
        if not local.exists():
            # gone for now (unmounted, moved): keep the URL, so the mirror and the last good
            # revision stay usable; fetching reports SourceUnavailable until it is back
            return Location(url="file://" + str(local.absolute()), branch=cfg.branch, path=path.strip("/"))
        try:
            top = git.Repo(local, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            # there but not (yet) a repository: an empty mount point, a repository being
            # replaced. Like a missing path: the agent starts, keeps the last good revision,
            # and every pass reports it (`'…' does not appear to be a git repository`)
            return Location(url="file://" + str(local.absolute()), branch=cfg.branch, path=path.strip("/"))
        root = Path(top.git_dir if top.bare else top.working_tree_dir or top.git_dir).resolve()
        inner = local.resolve().relative_to(root).as_posix() if local.resolve() != root else ""
        if inner and not top.bare:
            path = "/".join(p for p in (inner, path) if p and p != ".")
        url = "file://" + str(root)
    return Location(url=url, branch=cfg.branch, path=path.strip("/"))


class GitSource:
    """A shallow mirror of one branch, kept in `state_dir/source`."""

    def __init__(self, location: Location, state_dir: Path, timeout: float = 60.0) -> None:
        self.location = location
        self.timeout = timeout
        key = hashlib.sha256(location.url.encode()).hexdigest()[:12]
        self.dir = state_dir / "source" / key
        try:
            if (self.dir / "HEAD").exists():
                self.repo = git.Repo(self.dir)
            else:
                self.dir.mkdir(parents=True, exist_ok=True)
                self.repo = git.Repo.init(self.dir, bare=True)
                self.repo.create_remote("origin", location.url)
        except (git.GitError, OSError) as e:
            raise SourceUnavailable(f"cannot prepare the local mirror in {self.dir}: {e}") from e

    def _git(self, *args: str) -> str:
        try:
            out: str = self.repo.git.execute(
                ["git", *args], kill_after_timeout=self.timeout, with_extended_output=False, env=_GIT_ENV
            )
            return out
        except git.GitCommandError as e:
            if e.status in (-9, 9, "-9") or "did not complete in" in str(e.stderr):
                reason = f"timed out after {self.timeout:g}s"
            else:
                reason = _reason(e.stderr, e.status)
            raise SourceUnavailable(f"git {args[0]} {self.location.url}: {reason}") from e
        except (git.GitError, OSError, subprocess.SubprocessError) as e:
            raise SourceUnavailable(f"git {args[0]} {self.location.url}: {e}") from e

    def remote_head(self) -> str:
        """The sha the remote branch points at now; costs no pack data."""
        ref = f"refs/heads/{self.location.branch}"
        out = self._git("ls-remote", "--", self.location.url, ref)
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        raise SourceUnavailable(f"branch {self.location.branch!r} not found in {self.location.url}")

    def has(self, sha: str) -> bool:
        try:
            self.repo.commit(sha)
            return True
        except (ValueError, git.BadName, git.GitError):
            return False

    def fetch(self, sha: str) -> None:
        """Make commit `sha` (the branch head) available locally; a no-op when it already is."""
        if self.has(sha):
            return
        branch = self.location.branch
        self._git("fetch", "--depth", "1", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        if not self.has(sha):  # the branch moved between ls-remote and fetch: take what was fetched
            raise SourceUnavailable(f"branch {branch} moved while fetching {sha[:12]}; will retry")

    def keep(self, sha: str, name: str) -> None:
        """Pin a commit under refs/gitops/<name> so it stays readable after the branch moves on."""
        try:
            self.repo.git.update_ref(f"refs/gitops/{name}", sha)
        except git.GitError as e:
            raise SourceUnavailable(f"cannot record {name} revision in the local mirror: {e}") from e

    def forget(self, name: str) -> None:
        """Drop a pin made by `keep` (its commit may then be garbage-collected)."""
        try:
            self.repo.git.update_ref("-d", f"refs/gitops/{name}")
        except git.GitError:
            pass  # already gone

    def files(self, sha: str, limits: Limits = Limits()) -> list[SourceFile]:
        """Every manifest file under the configured path in commit `sha`, read from the object store."""
        try:
            tree = self.repo.commit(sha).tree
            if self.location.path:
                try:
                    tree = tree / self.location.path
                except KeyError as e:
                    raise SourceUnavailable(
                        f"path {self.location.path!r} does not exist in {self.location.revision(sha)}"
                    ) from e
            prefix = f"{self.location.path}/" if self.location.path else ""
            out: list[SourceFile] = []
            total = 0
            for item in tree.traverse():
                if not isinstance(item, git.Blob):
                    continue
                path = str(item.path)
                rel = path[len(prefix):] if path.startswith(prefix) else path
                if not is_manifest_path(rel):
                    continue
                if item.mode == _SYMLINK_MODE:
                    out.append(SourceFile(path, b"", is_symlink=True))
                    continue
                total += item.size
                if item.size > limits.max_file_bytes or total > limits.max_total_bytes:
                    # never read: `manifests` reports the size (reading part of a blob from
                    # GitPython's shared cat-file stream can leave it blocked)
                    out.append(SourceFile(path, b"", size=item.size))
                    continue
                out.append(SourceFile(path, item.data_stream.read()))
            return out
        except SourceUnavailable:
            raise
        except (git.GitError, ValueError, OSError) as e:
            raise SourceUnavailable(f"cannot read commit {sha[:12]}: {e}") from e
