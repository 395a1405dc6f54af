"""SOPS decryption (gitops_agent/sops.py) with the real sops binary and real age keys made by age-keygen.

Every file here is encrypted by the real `sops` (through `sops.encrypt`); nothing fakes SOPS's format.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gitops_agent import config, sops
from gitops_agent.errors import ConfigError, RevisionRejected

SECRET_VALUE = "hunter2-wifi-passphrase"
SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: wifi
  namespace: demo
stringData:
  psk: {SECRET_VALUE}
""".encode()
REPO_ROOT = Path(__file__).resolve().parent.parent


def _age_key(path: Path) -> str:
    """A new age identity in `path` (by Debian's age-keygen); its public key."""
    assert shutil.which("age-keygen"), "age-keygen missing: .ci/setup installs Debian's age"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    return subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path, str]:
    folder = tmp_path_factory.mktemp("age")
    first, second = folder / "first.txt", folder / "second.txt"
    return first, _age_key(first), second, _age_key(second)


@pytest.fixture(scope="module")
def encrypted(keys: tuple[Path, str, Path, str]) -> bytes:
    return sops.encrypt(SECRET, [keys[1]])


def _failure(data: bytes, key_files: list[Path], path: str = "apps/wifi.yaml") -> sops.DecryptionFailed:
    with pytest.raises(sops.DecryptionFailed) as caught:
        sops.decrypt(path, data, key_files)
    error = caught.value
    assert isinstance(error, RevisionRejected)
    assert SECRET_VALUE not in str(error)
    return error


def test_encrypted_values_are_not_in_the_file_and_decrypt_back(encrypted: bytes,
                                                                keys: tuple[Path, str, Path, str]) -> None:
    """sops encrypts stringData only; the agent's decrypt gives back the plaintext, in memory."""
    assert SECRET_VALUE.encode() not in encrypted
    assert b"name: wifi" in encrypted  # metadata stays readable, as Flux's convention has it
    assert sops.is_encrypted(encrypted)
    assert not sops.is_encrypted(SECRET)
    plain = sops.decrypt("apps/wifi.yaml", encrypted, [keys[0]])
    assert f"psk: {SECRET_VALUE}".encode() in plain
    assert b"sops:" not in plain


def test_any_configured_key_may_decrypt(encrypted: bytes, keys: tuple[Path, str, Path, str]) -> None:
    """With several key files, the one that matches a recipient decrypts (the others are tried and fail)."""
    assert SECRET_VALUE.encode() in sops.decrypt("apps/wifi.yaml", encrypted, [keys[2], keys[0]])


def test_a_file_for_two_recipients_opens_with_either_key(keys: tuple[Path, str, Path, str]) -> None:
    """Encrypted for both keys (say the site's and the admins'): either identity alone decrypts it."""
    both = sops.encrypt(SECRET, [keys[1], keys[3]])
    assert SECRET_VALUE.encode() in sops.decrypt("a.yaml", both, [keys[2]])
    assert SECRET_VALUE.encode() in sops.decrypt("a.yaml", both, [keys[0]])


def test_wrong_key_is_rejected_naming_the_file_and_the_recipient(encrypted: bytes,
                                                                  keys: tuple[Path, str, Path, str]) -> None:
    """The wrong identity: a Problem at the `sops:` line that names the recipient the file wants; not tampering."""
    error = _failure(encrypted, [keys[2]])
    line = encrypted[: encrypted.index(b"\nsops:")].count(b"\n") + 2
    assert str(error.problem) == (f"apps/wifi.yaml:{line}: sops: none of the configured age keys can decrypt it "
                                  f"(it is encrypted for {keys[1]})")
    assert not error.tampered


def test_changed_metadata_is_a_mac_mismatch_flagged_as_tampering(encrypted: bytes,
                                                                 keys: tuple[Path, str, Path, str]) -> None:
    """An unencrypted field changed after encryption (the Secret renamed): SOPS's MAC catches it."""
    tampered = encrypted.replace(b"name: wifi", b"name: wifx")
    error = _failure(tampered, [keys[0]])
    assert error.tampered
    assert error.problem.message == "tampering: the file was changed after it was encrypted " \
                                    "(its MAC does not match its content)"


def test_changed_ciphertext_and_a_removed_mac_are_tampering(encrypted: bytes,
                                                            keys: tuple[Path, str, Path, str]) -> None:
    """A flipped byte of a value's ciphertext fails its authentication tag; a deleted MAC does not match
    (sops 3.11 reports "File has no MAC" as a mismatch, exit status 51)."""
    flipped = re.sub(rb"(psk: ENC\[AES256_GCM,data:)(.)",
                     lambda m: m.group(1) + (b"B" if m.group(2) == b"A" else b"A"), encrypted)
    assert flipped != encrypted
    error = _failure(flipped, [keys[0]])
    assert error.tampered and "authentication tag" in error.problem.message
    no_mac = re.sub(rb"\n    mac: [^\n]*", b"", encrypted)
    assert sops.is_encrypted(no_mac)  # still SOPS's: never read as a plain manifest
    error = _failure(no_mac, [keys[0]])
    assert error.tampered and "MAC" in error.problem.message


def test_a_missing_key_file_is_named(encrypted: bytes, tmp_path: Path) -> None:
    """A key file that does not exist: the Problem names it and why."""
    missing = tmp_path / "gone.txt"
    error = _failure(encrypted, [missing])
    assert error.problem.message == f"cannot read the age key file {missing}: No such file or directory"
    assert error.problem.file == "apps/wifi.yaml"


def test_no_key_configured_and_a_file_that_is_not_sops(encrypted: bytes, keys: tuple[Path, str, Path, str]) -> None:
    """Without keys an encrypted file is refused; a plain file handed to decrypt says it is not SOPS."""
    assert "no age key is configured" in _failure(encrypted, []).problem.message
    assert _failure(SECRET, [keys[0]]).problem.message == "not a SOPS-encrypted file (no sops metadata)"


def test_the_callers_own_sops_keys_are_never_used(encrypted: bytes, keys: tuple[Path, str, Path, str],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The right key in the caller's SOPS_AGE_KEY_FILE, SOPS_AGE_KEY and ~/.config/sops/age/keys.txt is not
    tried: only the configured key files decrypt."""
    home = tmp_path / "home"
    (home / ".config" / "sops" / "age").mkdir(parents=True)
    shutil.copy(keys[0], home / ".config" / "sops" / "age" / "keys.txt")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys[0]))
    monkeypatch.setenv("SOPS_AGE_KEY", keys[0].read_text())
    assert not _failure(encrypted, [keys[2]]).tampered


def test_decryption_writes_nothing(encrypted: bytes, keys: tuple[Path, str, Path, str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The plaintext travels through a pipe: sops' scratch folder (the only folder it is given) stays empty
    and no file anywhere under it holds the value."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    seen: list[list[str]] = []
    real_run = subprocess.run

    def watching_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        seen.append(os.listdir(str(kwargs["cwd"])))
        return real_run(args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", watching_run)
    assert SECRET_VALUE.encode() in sops.decrypt("apps/wifi.yaml", encrypted, [keys[0]])
    assert seen == [[]]
    assert list(scratch.rglob("*")) == []


def test_the_sample_repository_demo_secret_decrypts_with_its_demo_key() -> None:
    """sample-repo/.sops-demo: the shipped demo Secret opens with the shipped throwaway key."""
    demo = REPO_ROOT / "sample-repo" / ".sops-demo"
    data = (demo / "wifi-secret.sops.yaml").read_bytes()
    assert sops.is_encrypted(data)
    plain = sops.decrypt("wifi-secret.sops.yaml", data, [demo / "DEMO-ONLY-age-key.txt"])
    assert b"kind: Secret" in plain and b"psk: demo-passphrase-not-a-secret" in plain


def test_config_sops_key_files(keys: tuple[Path, str, Path, str], tmp_path: Path) -> None:
    """`sops.ageKeyFiles` is read relative to the config's folder; a key file that is not there is a ConfigError."""
    shutil.copy(keys[0], tmp_path / "site.agekey")
    raw = {"source": {"url": "/tmp/repo"}, "sops": {"ageKeyFiles": ["site.agekey"]}}
    cfg = config.from_mapping(raw, base_dir=tmp_path)
    assert cfg.sops == config.SopsConfig((tmp_path / "site.agekey",))
    assert config.from_mapping({"source": {"url": "/tmp/repo"}}).sops is None
    with pytest.raises(ConfigError, match=r"sops\.ageKeyFiles\[0\]: .*missing\.agekey is not a readable file"):
        config.from_mapping({**raw, "sops": {"ageKeyFiles": ["missing.agekey"]}}, base_dir=tmp_path)


def test_a_tampered_file_is_a_critical_tampering_alert() -> None:
    """The agent's `revision.tampered` event (a MAC mismatch) raises an alert of its own, critical, naming the
    file and SOPS's reason (which never holds a value)."""
    from gitops_agent import events
    from gitops_agent.alerts import Watch

    event = events.RevisionTampered("main@sha1:ccc", "apps/wifi.yaml", "tampering: the file was changed after it "
                                    "was encrypted (its MAC does not match its content)")
    [alert] = Watch(600, 600).feed(event.NAME, {**event.fields(), "reason": event.reason.value}, 1)
    assert (alert.kind, alert.severity, alert.reason, alert.revision) == (
        "revision.tampered", "critical", "Tampered", "main@sha1:ccc")
    assert "apps/wifi.yaml was changed after it was SOPS-encrypted" in alert.message, alert.message
