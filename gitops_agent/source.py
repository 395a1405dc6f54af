"""Git source: the only module that imports GitPython.

Follows one branch of one repository: asks the remote for its head
(`ls-remote`, no pack data), fetches that one commit shallowly (depth 1) into a
private bare repository under `stateDir`, and reads the manifest files of a
commit straight from Git's object store (no work tree, so nothing on disk can
drift from the commit). Every Git failure becomes `SourceUnavailable`.

With `source.verify`, `verify(sha)` checks a commit's (or its tag's) signature
against the configured keys only: a private GNUPGHOME and an SSH
allowed_signers file under `stateDir/verify`, rebuilt at every start. A
missing or untrusted signature is a `RevisionRejected`.
Must not parse manifests or talk to Podman.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import git

from .config import SourceConfig, VerifyConfig
from .errors import ConfigError, Problem, RevisionRejected, SignatureUnverified, SourceUnavailable, quote_path
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

    def __init__(self, location: Location, state_dir: Path, timeout: float = 60.0,
                 verify: VerifyConfig | None = None) -> None:
        self.location = location
        self.timeout = timeout
        self.verifier = _Verifier(verify, state_dir / "verify") if verify else None
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
            raise SourceUnavailable(f"cannot prepare the local mirror in {quote_path(str(self.dir))}: {e}") from e

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

    def verify(self, sha: str) -> None:
        """RevisionRejected unless commit `sha` (fetched) is signed by a configured key: the
        commit itself (mode head) or an annotated tag pointing at it (mode tag)."""
        v = self.verifier
        if v is None:
            return
        short = sha[:12]
        revision = self.location.revision(sha)
        if v.cfg.mode == "head":
            if not re.search(r"^gpgsig(-sha256)? ", self._git("cat-file", "commit", sha).split("\n\n", 1)[0], re.M):
                raise v.rejected(revision, f"commit {short} is not signed")
            ok, why = v.run(self.dir, "verify-commit", sha, self.timeout)
            if not ok:
                raise v.rejected(revision, f"commit {short}: {why}")
            return
        # mode tag: annotated tags pointing at sha, the local ones first (works with Git down)
        failures: list[str] = []
        tried: set[str] = set()
        for remote in (False, True):
            tags = self._remote_tags(sha) if remote else self._local_tags(sha)
            for tag in tags:
                if tag in tried:
                    continue
                tried.add(tag)
                ok, why = v.run(self.dir, "verify-tag", tag, self.timeout)
                if ok:
                    return
                failures.append(f"tag {tag}: {why}")
        if not failures:
            raise v.rejected(revision, f"no signed tag points at {short} (source.verify.mode is tag: "
                                       "push an annotated tag signed by a trusted key with the commit)")
        raise v.rejected(revision, f"no tag pointing at {short} has a trusted signature: " + "; ".join(failures))

    def _local_tags(self, sha: str) -> list[str]:
        """Annotated tags in the mirror that point at `sha` (lightweight tags carry no signature)."""
        out = self._git("for-each-ref", "--points-at", sha, "--format=%(objecttype) %(refname:strip=2)", "refs/tags")
        return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("tag ")]

    def _remote_tags(self, sha: str) -> list[str]:
        """Fetch the remote's annotated tags pointing at `sha` (shallow: the tag and its commit)."""
        out = self._git("ls-remote", "--tags", "--", self.location.url)
        names = [name.removeprefix("refs/tags/").removesuffix("^{}") for peeled, _, name in
                 (line.partition("\t") for line in out.splitlines()) if peeled == sha and name.endswith("^{}")]
        if names:
            self._git("fetch", "--depth", "1", "--no-tags", "origin", *(f"+refs/tags/{n}:refs/tags/{n}" for n in names))
        return names

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


_SSH_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+")
_SSH_FINGERPRINT = re.compile(r"key (SHA256:[A-Za-z0-9+/=]+)")


class _Verifier:
    """The trusted keys of `source.verify`, prepared for git: OpenPGP keys imported into a
    private GNUPGHOME (ultimate ownertrust; nothing else is in that keyring), SSH keys in
    one allowed_signers file. Rebuilt at every start, so a key removed from the config is
    no longer trusted."""

    def __init__(self, cfg: VerifyConfig, home: Path) -> None:
        self.cfg = cfg
        self.home = home
        pgp: list[Path] = []
        signers: list[str] = []
        for path in cfg.keys:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise ConfigError(f"source.verify.keys: cannot read {quote_path(str(path))}: {e.strerror}") from e
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            if "-----BEGIN PGP PUBLIC KEY BLOCK-----" in text:
                pgp.append(path)
            elif lines and all(_SSH_KEY.match(ln) for ln in lines):  # SSH public keys: any principal
                signers += [f'* namespaces="git" {ln}' for ln in lines]
            elif lines and all(_SSH_KEY.search(ln) for ln in lines):  # an allowed_signers file as it is
                signers += lines
            else:
                raise ConfigError(f"source.verify.keys: {quote_path(str(path))} is neither an ASCII-armored "
                                  "OpenPGP public key, "
                                  "an SSH public key nor an SSH allowed_signers file")
        self.gpg = shutil.which("gpg") or ""
        self.ssh_keygen = shutil.which("ssh-keygen") or ""
        if pgp and not self.gpg:
            raise ConfigError("source.verify: OpenPGP keys are configured but `gpg` is not installed "
                              "(apt install gnupg)")
        if signers and not self.ssh_keygen:
            raise ConfigError("source.verify: SSH keys are configured but `ssh-keygen` is not installed "
                              "(apt install openssh-client)")
        try:
            if home.exists():
                shutil.rmtree(home)
            (home / "gnupg").mkdir(parents=True, mode=0o700)
            os.chmod(home, 0o700)
            # no-autostart: importing or verifying must not leave a gpg-agent behind in the state dir
            (home / "gnupg" / "gpg.conf").write_text("no-autostart\n")
            self.allowed_signers = home / "allowed_signers"
            self.allowed_signers.write_text("".join(f"{ln}\n" for ln in signers))
        except OSError as e:
            raise ConfigError(f"source.verify: cannot prepare {home}: {e}") from e
        self.env = {**os.environ, "GNUPGHOME": str(home / "gnupg"), "GIT_TERMINAL_PROMPT": "0"}
        for path in pgp:
            self._gpg("--import", str(path), what=f"cannot import the OpenPGP key {quote_path(str(path))}")
        if pgp:
            listing = self._gpg("--with-colons", "--list-keys", what="cannot list the imported OpenPGP keys")
            fprs = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")]
            self._gpg("--import-ownertrust", what="cannot trust the imported OpenPGP keys",
                      stdin="".join(f"{f}:6:\n" for f in fprs))

    def _gpg(self, *args: str, what: str, stdin: str | None = None) -> str:
        try:
            cp = subprocess.run([self.gpg, "--batch", "--no-tty", *args], input=stdin, env=self.env,
                                capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise ConfigError(f"source.verify: {what}: {e}") from e
        if cp.returncode != 0:
            raise ConfigError(f"source.verify: {what}: {cp.stderr.strip().splitlines()[-1:] or cp.returncode}")
        return cp.stdout

    def run(self, repo: Path, command: str, what: str, timeout: float) -> tuple[bool, str]:
        """`git verify-commit|verify-tag --raw what` with only the configured keys; (ok, why not)."""
        cfg = ["-c", f"gpg.ssh.allowedSignersFile={self.allowed_signers}", "-c", "gpg.minTrustLevel=fully"]
        if self.gpg:
            cfg += ["-c", f"gpg.program={self.gpg}"]
        if self.ssh_keygen:
            cfg += ["-c", f"gpg.ssh.program={self.ssh_keygen}"]
        try:
            cp = subprocess.run(["git", *cfg, command, "--raw", what], cwd=repo, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise SourceUnavailable(f"git {command} {what}: timed out after {timeout:g}s") from e
        except (OSError, subprocess.SubprocessError) as e:
            raise SourceUnavailable(f"git {command} {what}: {e}") from e
        if cp.returncode == 0:
            return True, ""
        return False, _why(cp.stderr)

    def rejected(self, revision: str, message: str) -> RevisionRejected:
        return SignatureUnverified([Problem("", 0, "", "", message)], revision)


def _why(stderr: str) -> str:
    """git verify-*'s raw output (gpg status lines, or ssh-keygen's words) as one reason."""
    status = {ln.split()[1]: ln.split()[2:] for ln in stderr.splitlines()
              if ln.startswith("[GNUPG:] ") and len(ln.split()) > 1}
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        key = (status.get("NO_PUBKEY") or status.get("ERRSIG") or ["?"])[0]
        return f"signature by OpenPGP key {key} is not from a trusted key"
    for bad in ("BADSIG", "EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
        if bad in status:
            key = (status[bad] or ["?"])[0]
            kind = {"BADSIG": "is bad (the signed content was changed)", "EXPKEYSIG": "was made by an expired key",
                    "REVKEYSIG": "was made by a revoked key", "EXPSIG": "has expired"}[bad]
            return f"signature by OpenPGP key {key} {kind}"
    if "GOODSIG" in status:  # good but not trusted enough (cannot happen: every imported key is trusted)
        return f"signature by OpenPGP key {status['GOODSIG'][0]} is not from a trusted key"
    m = _SSH_FINGERPRINT.search(stderr)
    if m and ("No principal matched" in stderr or "not allowed" in stderr or "find-principals" in stderr):
        return f"signature by SSH key {m.group(1)} is not from a trusted key"
    if m and "Good" not in stderr:
        return f"bad SSH signature by key {m.group(1)}"
    if "no signature found" in stderr:
        return "not signed"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("[GNUPG:]")]
    return "signature does not verify" + (f": {lines[-1].removeprefix('error: ')}" if lines else "")
