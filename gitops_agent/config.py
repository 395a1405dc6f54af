"""Agent settings: grouped frozen dataclasses, loaded from YAML.

Read once at start-up by `cli`; passed explicitly to everything else. Nothing
here talks to Git or Podman. Unknown keys are an error (a typo in the config
must not silently fall back to a default).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import pullauth
from .errors import ConfigError
from .model import HostPathRule, Policy
from .pullauth import Credential

PolicyConfig = Policy
"""The `policy:` section: `model.Policy`, defined there so that `manifests` can use it too."""

ENV_VAR = "GITOPS_AGENT_CONFIG"
DEFAULT_SOCKET = "unix:///run/podman/podman.sock"
DEFAULT_STATE_DIR = "/var/lib/gitops-agent"


@dataclass(frozen=True)
class SourceConfig:
    """Where the desired state lives."""

    url: str
    """Git URL (https://, ssh://, file://) or a local path to a Git repository."""
    branch: str = "main"
    path: str = ""
    """Subdirectory holding the manifests; "" is the repository root."""
    interval: float = 30.0
    """Seconds between polls in `run`. Flux's default for GitRepository is 1m; 30 s suits a single edge node."""
    timeout: float = 60.0
    """Seconds any one Git network operation may take before it counts as a failure."""
    verify: VerifyConfig | None = None
    """Commit verification (`source.verify`); None: commits are not verified."""


VERIFY_MODES = ("head", "tag")


@dataclass(frozen=True)
class VerifyConfig:
    """`source.verify`: only revisions signed by one of `keys` are applied."""

    mode: str = "head"
    """head: the branch head commit must carry a good signature; tag: an annotated tag pointing at
    the branch head must carry one."""
    keys: tuple[Path, ...] = ()
    """Trusted keys: ASCII-armored OpenPGP public keys, SSH public keys, or SSH allowed_signers files."""


@dataclass(frozen=True)
class NodeConfig:
    """One Podman node, reached only through its API socket."""

    name: str
    url: str = DEFAULT_SOCKET
    labels: Mapping[str, str] = field(default_factory=dict)
    identity: str | None = None
    """SSH private key for an ssh:// url (ssh://user@host/run/podman/podman.sock)."""
    auth_file: str | None = None
    """Registry credentials for every pull on this node (Podman's auth.json format); a pod's
    imagePullSecrets win for the registries they name."""
    credentials: tuple[Credential, ...] = field(default=(), repr=False, compare=False)
    """Read from `auth_file` when the configuration is loaded. Never printed."""


@dataclass(frozen=True)
class PruneConfig:
    enabled: bool = True
    """Remove managed objects that are no longer in Git."""
    allow_empty: bool = False
    """Allow a revision that would delete every managed object (protects against a mis-pointed path)."""
    delete_volumes: bool = False
    """Delete the data of a PersistentVolumeClaim removed from Git. Off: its volume is kept and reported orphaned."""


@dataclass(frozen=True)
class AgentConfig:
    source: SourceConfig
    nodes: tuple[NodeConfig, ...] = (NodeConfig("local"),)
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    prune: PruneConfig = PruneConfig()
    ready_timeout: float = 120.0
    keep_image_revisions: int = 20
    min_free_image_space: int = 0
    """Bytes that must stay free in a node's image store after a pull (an edge disk also holds logs
    and volumes); a pull that would leave less is refused before it starts."""
    """Image garbage collection keeps the images of the current revision and of this many stable
    revisions before it (20: every revision `rollback` lists); older images the agent pulled are removed."""
    """Seconds a new pod may take to become ready before the apply fails (Kubernetes' progressDeadlineSeconds is 600; edge pods start locally)."""
    policy: PolicyConfig = PolicyConfig()
    """What manifests may ask of the nodes; the default denies privileged containers, host namespaces,
    added capabilities and hostPath volumes."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, where: str) -> float:
    """`30s`, `1m`, `1.5h`, `500ms` or a plain number of seconds → seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(f"{where}: {value!r} is not a duration (examples: 30s, 5m, 1h)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{where}: must be greater than zero")
    return seconds


def _take(raw: Mapping[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return dict(raw)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _label(value: Any) -> str:
    """A label value as Kubernetes writes it: YAML `true` is "true", not Python's "True"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def from_mapping(raw: Mapping[str, Any], base_dir: Path | None = None) -> AgentConfig:
    """Build an AgentConfig from parsed YAML; relative paths are taken from `base_dir`."""
    top = _take(raw, {"source", "nodes", "stateDir", "prune", "readyTimeout", "policy", "images"}, "config")
    if "source" not in top:
        raise ConfigError("config: 'source' is required (source.url: the Git repository to follow)")
    src = _take(top["source"], {"url", "branch", "path", "interval", "timeout", "verify"}, "source")
    if not src.get("url"):
        raise ConfigError("source.url is required")
    url = str(src["url"])
    if base_dir is not None and "://" not in url and not url.startswith("/") and "@" not in url:
        url = str((base_dir / url).resolve())
    source = SourceConfig(
        url=url,
        branch=str(src.get("branch", "main")),
        path=str(src.get("path", "") or "").strip("/"),
        interval=parse_duration(src.get("interval", 30), "source.interval"),
        timeout=parse_duration(src.get("timeout", 60), "source.timeout"),
        verify=verify_from_mapping(src["verify"], base_dir) if src.get("verify") is not None else None,
    )
    nodes: list[NodeConfig] = []
    for i, n in enumerate(top.get("nodes") or [{"name": "local"}]):
        nd = _take(n, {"name", "url", "labels", "identity", "authFile"}, f"nodes[{i}]")
        if not nd.get("name"):
            raise ConfigError(f"nodes[{i}].name is required")
        labels = nd.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ConfigError(f"nodes[{i}].labels: expected a mapping")
        node_url = str(nd.get("url", DEFAULT_SOCKET))
        if not node_url.startswith(("unix://", "tcp://", "ssh://", "http+unix://")):
            raise ConfigError(f"nodes[{i}].url: {node_url!r} must start with unix://, tcp://, ssh:// or http+unix://")
        identity = nd.get("identity")
        if identity is not None:
            if not node_url.startswith("ssh://"):
                raise ConfigError(f"nodes[{i}].identity: only used with an ssh:// url")
            identity = str(Path(str(identity)).expanduser() if Path(str(identity)).expanduser().is_absolute() or base_dir is None
                           else (base_dir / str(identity)).resolve())
        auth_file, credentials = _auth_file(nd.get("authFile"), base_dir, f"nodes[{i}].authFile")
        nodes.append(NodeConfig(str(nd["name"]), node_url, {str(k): _label(v) for k, v in labels.items()}, identity,
                                auth_file, credentials))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(f"nodes: duplicate node names in {names}")
    pr = _take(top.get("prune") or {}, {"enabled", "allowEmpty", "deleteVolumes"}, "prune")
    prune = PruneConfig(
        enabled=_bool(pr.get("enabled", True), "prune.enabled"),
        allow_empty=_bool(pr.get("allowEmpty", False), "prune.allowEmpty"),
        delete_volumes=_bool(pr.get("deleteVolumes", False), "prune.deleteVolumes"),
    )
    keep_images, min_free = _images(top.get("images") or {})
    state_dir = Path(str(top.get("stateDir", DEFAULT_STATE_DIR)))
    if base_dir is not None and not state_dir.is_absolute():
        state_dir = (base_dir / state_dir).resolve()
    return AgentConfig(
        source=source,
        nodes=tuple(nodes),
        state_dir=state_dir,
        prune=prune,
        ready_timeout=parse_duration(top.get("readyTimeout", 120), "readyTimeout"),
        policy=policy_from_mapping(top.get("policy") or {}),
        keep_image_revisions=keep_images,
        min_free_image_space=min_free,
    )


_BYTES = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_BYTE_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _images(raw: Any) -> tuple[int, int]:
    """`images.keepRevisions` (0 to 20: the stable revisions `rollback` lists) and `images.minFree`
    (bytes, or a Kubernetes quantity such as 500Mi)."""
    img = _take(raw, {"keepRevisions", "minFree"}, "images")
    keep = img.get("keepRevisions", 20)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= 20:
        raise ConfigError(f"images.keepRevisions: expected a whole number from 0 to 20, not {keep!r}")
    m = _BYTES.match(str(img.get("minFree", 0)))
    if m is None or isinstance(img.get("minFree"), bool):
        raise ConfigError(f"images.minFree: expected bytes or a quantity such as 500Mi, not {img.get('minFree')!r}")
    return keep, int(m.group(1)) * _BYTE_UNITS[m.group(2)]


def _auth_file(raw: Any, base_dir: Path | None, where: str) -> tuple[str | None, tuple[Credential, ...]]:
    """A node's `authFile` (relative to the config's folder) and its credentials; ConfigError
    names the file and what is wrong with it, never a value."""
    if raw is None:
        return None, ()
    path = Path(str(raw)).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = (base_dir / path).resolve()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {path}: {e.strerror}") from None
    try:
        return str(path), pullauth.parse(data, True, f"auth file {path}")
    except ValueError as e:
        raise ConfigError(f"{where}: {path} {e}") from None


def verify_from_mapping(raw: Mapping[str, Any], base_dir: Path | None = None) -> VerifyConfig:
    """The `source.verify` section: `mode` (head | tag) and `keys` (files, relative to the config's folder)."""
    ver = _take(raw, {"mode", "keys"}, "source.verify")
    mode = ver.get("mode", "head")
    if mode not in VERIFY_MODES:
        raise ConfigError(f"source.verify.mode: {mode!r} is not one of {', '.join(VERIFY_MODES)}")
    keys_raw = ver.get("keys")
    if not isinstance(keys_raw, list) or not keys_raw or not all(isinstance(k, str) and k for k in keys_raw):
        raise ConfigError("source.verify.keys: expected a non-empty list of key files "
                          "(ASCII-armored OpenPGP public keys, SSH public keys or allowed_signers files)")
    keys: list[Path] = []
    for i, k in enumerate(keys_raw):
        p = Path(k).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = (base_dir / p).resolve()
        if not p.is_file():
            raise ConfigError(f"source.verify.keys[{i}]: {p} is not a readable file")
        keys.append(p)
    return VerifyConfig(mode=str(mode), keys=tuple(keys))


_CAPABILITY = re.compile(r"^(CAP_)?([A-Z][A-Z0-9_]*)$")


def policy_from_mapping(raw: Mapping[str, Any]) -> Policy:
    """The `policy:` section (Kubernetes PodSecurityPolicy names); anything absent is denied."""
    pol = _take(raw, {"allowPrivileged", "allowHostNetwork", "allowHostPID", "allowHostIPC",
                      "allowedCapabilities", "allowedHostPaths"}, "policy")
    caps_raw = pol.get("allowedCapabilities") or []
    if not isinstance(caps_raw, list):
        raise ConfigError("policy.allowedCapabilities: expected a list of capability names such as NET_ADMIN")
    caps: list[str] = []
    for i, cap in enumerate(caps_raw):
        m = _CAPABILITY.match(cap) if isinstance(cap, str) else None
        if cap != "*" and m is None:
            raise ConfigError(f"policy.allowedCapabilities[{i}]: {cap!r} is not a capability name "
                              "(such as NET_ADMIN or CAP_NET_ADMIN, or * for any)")
        caps.append("*" if cap == "*" else m.group(2) if m else "")
    paths_raw = pol.get("allowedHostPaths") or []
    if not isinstance(paths_raw, list):
        raise ConfigError("policy.allowedHostPaths: expected a list of {pathPrefix, readOnly}")
    rules: list[HostPathRule] = []
    for i, entry in enumerate(paths_raw):
        where = f"policy.allowedHostPaths[{i}]"
        e = _take(entry, {"pathPrefix", "readOnly"}, where)
        prefix = e.get("pathPrefix")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ConfigError(f"{where}.pathPrefix: must be an absolute path, got {prefix!r}")
        if ".." in prefix.split("/"):
            raise ConfigError(f"{where}.pathPrefix: must not contain '..'")
        rules.append(HostPathRule(posixpath.normpath(prefix).replace("//", "/"), _bool(e.get("readOnly", False), f"{where}.readOnly")))
    return Policy(
        allow_privileged=_bool(pol.get("allowPrivileged", False), "policy.allowPrivileged"),
        allow_host_network=_bool(pol.get("allowHostNetwork", False), "policy.allowHostNetwork"),
        allow_host_pid=_bool(pol.get("allowHostPID", False), "policy.allowHostPID"),
        allow_host_ipc=_bool(pol.get("allowHostIPC", False), "policy.allowHostIPC"),
        allowed_capabilities=tuple(dict.fromkeys(caps)),
        allowed_host_paths=tuple(rules),
    )


def load(path: str | os.PathLike[str] | None, source_override: str | None = None) -> AgentConfig:
    """Load the config from `path`, else $GITOPS_AGENT_CONFIG, else the built-in default.

    The built-in default follows `source_override` (a Git URL or local path) on the
    local Podman socket; without a config file `--source` is required.
    """
    path = path or os.environ.get(ENV_VAR)
    if path:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read config {p}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config {p} is not valid YAML: {e}") from e
        cfg = from_mapping(raw or {}, base_dir=p.parent.resolve())
    else:
        if not source_override:
            raise ConfigError(
                f"no configuration: pass --config FILE, set {ENV_VAR}, or give --source URL|PATH"
            )
        cfg = from_mapping({"source": {"url": source_override}}, base_dir=Path.cwd())
    if source_override and path:
        override = Path(source_override)
        url = str(override.resolve()) if override.exists() else source_override
        cfg = replace(cfg, source=replace(cfg.source, url=url))
    return cfg
