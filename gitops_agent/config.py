"""Agent settings: grouped frozen dataclasses, loaded from YAML.

Read once at start-up by `cli`; passed explicitly to everything else. Nothing
here talks to Git or Podman. The file is read as safely as a manifest and
checked against `data/config.schema.json` first, with every problem reported
at once as FILE:LINE (`ConfigError`); unknown keys are an error (a typo in the
config must not silently fall back to a default). What the schema cannot say
(duplicate node names, key files that must exist) is checked here after it.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

from . import forwarder, pullauth, windows
from .errors import ConfigError, Problem, quote_path
from .model import HostPathRule, NodeLimits, Policy, StorageClass, Taint
from .notify import NotifyConfig
from .notify import from_mapping as notify_from_mapping
from .pullauth import Credential

PolicyConfig = Policy
"""The `policy:` section: `model.Policy`, defined there so that `manifests` can use it too."""
LimitsConfig = NodeLimits
"""The `limits:` section: `model.NodeLimits` (maxPodsPerNode, maxContainersPerPod, maxReplicasPerRevision)."""

ENV_VAR = "GITOPS_AGENT_CONFIG"
DEFAULT_SOCKET = "unix:///run/podman/podman.sock"
DEFAULT_STATE_DIR = "/var/lib/gitops-agent"
DEFAULT_SECCOMP_ROOT = "/var/lib/kubelet/seccomp"


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
    known_hosts: str | None = None
    """known_hosts file with the ssh:// node's host key (the node's own `knownHosts`, else the global one)."""
    insecure_ignore_host_key: bool = False
    """Labs only: accept any host key of an ssh:// node (a man in the middle would get in)."""
    connect_timeout: float = 10.0
    """Seconds to reach an ssh:// node (TCP connect, key exchange, login); a dead link is noticed within ~1.3x."""
    auth_file: str | None = None
    """Registry credentials for every pull on this node (Podman's auth.json format); a pod's
    imagePullSecrets win for the registries they name."""
    credentials: tuple[Credential, ...] = field(default=(), repr=False, compare=False)
    """Read from `auth_file` when the configuration is loaded. Never printed."""
    cpu_millis: int | None = None
    """`capacity.cpu`: millicores the node offers to pods' CPU requests; None: not checked."""
    memory_bytes: int | None = None
    """`capacity.memory`: bytes the node offers to pods' memory requests; None: not checked."""
    ephemeral_bytes: int | None = None
    """`capacity.ephemeral-storage`: bytes the node offers to pods' ephemeral-storage requests; None: not
    checked."""
    seccomp_profile_root: str = DEFAULT_SECCOMP_ROOT
    """`seccompProfileRoot`: the node's folder of the seccomp files of type Localhost profiles (the kubelet's
    default); Podman reads `<root>/<localhostProfile>` on the node when it creates the container."""
    address: str | None = None
    """The node's IP address as pods see it: `status.hostIP` (and a hostNetwork pod's `status.podIP`)."""
    taints: tuple[Taint, ...] = ()
    """Only pods tolerating a NoSchedule/NoExecute taint are placed here; PreferNoSchedule only breaks ties."""
    schedule: windows.Schedule | None = None
    """Maintenance windows (the node's own `schedule:`, else the top-level one); None: always open."""
    vars: Mapping[str, str] = field(default_factory=dict)
    """`vars:`: this node's variables for `${NAME}` substitution (as text; YAML `true` is "true")."""


@dataclass(frozen=True)
class SubstituteFrom:
    """One `substituteFrom:` entry: a ConfigMap or Secret of the repository whose keys are variables."""

    kind: str  # ConfigMap | Secret
    name: str
    namespace: str = "default"
    optional: bool = False
    """False: a revision without this object is rejected; True: it is skipped."""


@dataclass(frozen=True)
class SopsConfig:
    """`sops:`: SOPS-encrypted manifests are decrypted in memory with these age identity files."""

    age_key_files: tuple[Path, ...] = ()


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
    resync_interval: float = 600.0
    """Seconds between full re-lists of each node's live state by the daemon's event-driven cache (`informer`):
    the level-triggered safety net under Podman's event stream (10 minutes: a re-list of 200 containers costs
    about 0.4 s of Podman's time)."""
    autoscaler_period: float = 15.0
    """Seconds between two measurements of the HorizontalPodAutoscalers' pods (`autoscaler`): Kubernetes'
    `--horizontal-pod-autoscaler-sync-period` default. A change of replicas wakes a pass at once."""
    eviction_period: float = 10.0
    """Seconds between two measurements of the disk emptyDir volumes with a sizeLimit (`eviction`): about the
    kubelet's housekeeping period, after which it evicts a pod over its limit. Two API calls per node each time."""
    keep_image_revisions: int = 20
    min_free_image_space: int = 0
    """Bytes that must stay free in a node's image store after a pull (an edge disk also holds logs
    and volumes); a pull that would leave less is refused before it starts."""
    """Image garbage collection keeps the images of the current revision and of this many stable
    revisions before it (20: every revision `rollback` lists); older images the agent pulled are removed."""
    """Seconds a new pod may take to become ready before the apply fails (Kubernetes' progressDeadlineSeconds is 600;
    edge pods start locally)."""
    policy: PolicyConfig = PolicyConfig()
    """What manifests may ask of the nodes; the default denies privileged containers, host namespaces,
    added capabilities and hostPath volumes."""
    limits: LimitsConfig = LimitsConfig()
    """How many pods a revision may place on a node, containers in a pod, and pods in all."""
    storage_classes: Mapping[str, StorageClass] = field(default_factory=dict)
    """`storageClasses:`: storageClassName -> the Podman volume driver and options of its claims' volumes."""
    notify: NotifyConfig = NotifyConfig()
    """`notify:`: alert sinks (webhook, Apprise) and their thresholds (notify.py)."""
    metrics_listen: str = "127.0.0.1:9464"
    """`metrics.listen`: host:port of /metrics, /healthz, /readyz, /status and the page; "" turns it off."""
    substitute_from: tuple[SubstituteFrom, ...] = ()
    """`substituteFrom:`: repository ConfigMaps/Secrets whose keys are substitution variables (lowest precedence)."""
    sops: SopsConfig | None = None
    """`sops:`: the age identities that decrypt SOPS-encrypted manifests; None: encrypted files are rejected."""
    forwarder_image: str = forwarder.DEFAULT_IMAGE
    """`serviceForwarder.image`: the socat image of the Service forwarder pods (gitops_agent/forwarder.py), pulled
    if not present (IfNotPresent); an air-gapped site preloads or mirrors it."""


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


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A schema-checked optional section: a mapping, or {} when absent or null."""
    return dict(raw.get(key) or {})


QUANTITY_SUFFIXES: dict[str, int | Decimal] = {
    "": 1, "m": Decimal("0.001"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def quantity(value: int | float | str, per_unit: int) -> int:
    """A schema-valid Kubernetes quantity ("500m", "1.5", "128Mi", 2) in whole sub-units, rounded up:
    `per_unit` 1000 gives millicores, 1 gives bytes."""
    if isinstance(value, str):
        number = value.rstrip("kKMGTPEim")
        suffix = value[len(number):]
    else:
        number, suffix = repr(value), ""
    return math.ceil(Decimal(number) * QUANTITY_SUFFIXES[suffix] * per_unit)


def _label(value: Any) -> str:
    """A label value as Kubernetes writes it: YAML `true` is "true", not Python's "True"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@cache
def schema() -> dict[str, Any]:
    """The config file's JSON schema, shipped inside the package (found by a wheel install too)."""
    text = (files("gitops_agent") / "data" / "config.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _raise(problems: list[Problem]) -> None:
    if problems:
        raise ConfigError("\n".join(map(str, problems)))


def from_mapping(raw: Mapping[str, Any], base_dir: Path | None = None) -> AgentConfig:
    """Build an AgentConfig from parsed YAML; relative paths are taken from `base_dir`.

    The schema is checked first (every problem at once); what follows relies on its shapes and
    checks only what it cannot say."""
    from . import manifests  # not at the top: manifests (through desired) imports this module

    _raise(manifests.check_value(raw, schema()))
    source = _source(raw["source"], base_dir)
    entries = raw.get("nodes") or [{"name": "local"}]
    top_schedule = _schedule(raw.get("schedule"), "schedule", None)
    nodes = [_node(i, nd, raw.get("knownHosts"), base_dir, top_schedule) for i, nd in enumerate(entries)]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(f"nodes: duplicate node names in {names}")
    pr = _section(raw, "prune")
    prune = PruneConfig(
        enabled=pr.get("enabled", True),
        allow_empty=pr.get("allowEmpty", False),
        delete_volumes=pr.get("deleteVolumes", False),
    )
    keep_images, min_free = _images(_section(raw, "images"))
    state_dir = Path(raw.get("stateDir", DEFAULT_STATE_DIR))
    if base_dir is not None and not state_dir.is_absolute():
        state_dir = (base_dir / state_dir).resolve()
    return AgentConfig(
        source=source,
        nodes=tuple(nodes),
        state_dir=state_dir,
        prune=prune,
        ready_timeout=parse_duration(raw.get("readyTimeout", 120), "readyTimeout"),
        resync_interval=parse_duration(raw.get("resyncInterval", 600), "resyncInterval"),
        autoscaler_period=parse_duration(raw.get("autoscalerPeriod", 15), "autoscalerPeriod"),
        eviction_period=parse_duration(raw.get("evictionPeriod", 10), "evictionPeriod"),
        policy=policy_from_mapping(_section(raw, "policy")),
        limits=limits_from_mapping(_section(raw, "limits")),
        keep_image_revisions=keep_images,
        min_free_image_space=min_free,
        storage_classes={
            str(name): StorageClass(sc.get("driver", "local"),
                                    {str(k): str(v) for k, v in _section(sc, "options").items()})
            for name, sc in _section(raw, "storageClasses").items()
        },
        notify=notify_from_mapping(_section(raw, "notify"), base_dir, parse_duration),
        metrics_listen=str(_section(raw, "metrics").get("listen", "127.0.0.1:9464") or ""),
        substitute_from=tuple(SubstituteFrom(e["kind"], e["name"], e.get("namespace", "default"),
                                             e.get("optional", False)) for e in raw.get("substituteFrom") or ()),
        sops=_sops(raw.get("sops"), base_dir),
        forwarder_image=str(_section(raw, "serviceForwarder").get("image") or forwarder.DEFAULT_IMAGE),
    )


def _source(src: Mapping[str, Any], base_dir: Path | None) -> SourceConfig:
    """The schema-checked `source:` section; a relative local path is taken from `base_dir`."""
    url = src["url"]
    if base_dir is not None and "://" not in url and not url.startswith("/") and "@" not in url:
        url = str((base_dir / url).resolve())
    return SourceConfig(
        url=url,
        branch=src.get("branch", "main"),
        path=(src.get("path") or "").strip("/"),
        interval=parse_duration(src.get("interval", 30), "source.interval"),
        timeout=parse_duration(src.get("timeout", 60), "source.timeout"),
        verify=verify_from_mapping(src["verify"], base_dir) if src.get("verify") is not None else None,
    )


def _node(i: int, nd: Mapping[str, Any], known_hosts: Any, base_dir: Path | None,
          top_schedule: windows.Schedule | None) -> NodeConfig:
    """The schema-checked entry `nodes[i]`; `known_hosts` is the config's top-level knownHosts (or None)."""
    node_url = nd.get("url", DEFAULT_SOCKET)
    identity = nd.get("identity")
    if identity is not None:
        if not node_url.startswith("ssh://"):
            raise ConfigError(f"nodes[{i}].identity: only used with an ssh:// url")
        identity = _file(identity, base_dir)
    labels = {str(k): _label(v) for k, v in _section(nd, "labels").items()}
    auth_file, credentials = _auth_file(nd.get("authFile"), base_dir, f"nodes[{i}].authFile")
    capacity = _section(nd, "capacity")
    taints = tuple(Taint(t["key"], _label(t.get("value", "")), t["effect"]) for t in nd.get("taints") or ())
    return NodeConfig(
        nd["name"], node_url, labels, identity,
        **_ssh_options(nd, node_url, known_hosts, base_dir, f"nodes[{i}]"),
        auth_file=auth_file, credentials=credentials,
        cpu_millis=None if capacity.get("cpu") is None else quantity(capacity["cpu"], 1000),
        memory_bytes=None if capacity.get("memory") is None else quantity(capacity["memory"], 1),
        ephemeral_bytes=None if capacity.get("ephemeral-storage") is None else quantity(
            capacity["ephemeral-storage"], 1),
        taints=taints,
        address=nd.get("address"),
        seccomp_profile_root=posixpath.normpath(nd.get("seccompProfileRoot", DEFAULT_SECCOMP_ROOT)),
        schedule=_schedule(nd.get("schedule"), f"nodes[{i}].schedule", top_schedule),
        vars={str(k): _label(v) for k, v in _section(nd, "vars").items()},
    )


def _schedule(raw: Mapping[str, Any] | None, where: str, inherited: windows.Schedule | None
              ) -> windows.Schedule | None:
    """A schema-checked `schedule:` section (a node's replaces the top-level one as a whole)."""
    if raw is None:
        return inherited

    def windows_of(key: str) -> tuple[windows.Window, ...]:
        return tuple(windows.window(w["cron"], parse_duration(w["duration"], f"{where}.{key}[{j}].duration"),
                                    f"{where}.{key}[{j}]") for j, w in enumerate(raw.get(key) or ()))

    return windows.schedule(raw.get("timeZone", "UTC"), windows_of("allow"), windows_of("deny"),
                            raw.get("driftRepair", "always"), where)


def _sops(raw: Mapping[str, Any] | None, base_dir: Path | None) -> SopsConfig | None:
    """The schema-checked `sops:` section; its key files must exist (read only when a file is decrypted)."""
    if raw is None:
        return None
    keys = []
    for i, name in enumerate(raw.get("ageKeyFiles") or ()):
        path = Path(_file(name, base_dir))
        if not path.is_file():
            raise ConfigError(f"sops.ageKeyFiles[{i}]: {quote_path(str(path))} is not a readable file")
        keys.append(path)
    return SopsConfig(tuple(keys))


def limits_from_mapping(raw: Mapping[str, Any]) -> NodeLimits:
    """The schema-checked `limits:` section; anything absent keeps its default."""
    names = {"maxPodsPerNode": "max_pods_per_node", "maxContainersPerPod": "max_containers_per_pod",
             "maxReplicasPerRevision": "max_replicas_per_revision"}
    return NodeLimits(**{names[key]: value for key, value in raw.items()})


def _file(value: Any, base_dir: Path | None) -> str:
    """A file named in the config: `~` expanded, a relative path taken from the config file's folder."""
    p = Path(str(value)).expanduser()
    return str(p if p.is_absolute() or base_dir is None else (base_dir / p).resolve())


def _ssh_options(nd: Mapping[str, Any], url: str, global_known: Any, base_dir: Path | None,
                 where: str) -> dict[str, Any]:
    """knownHosts / insecureIgnoreHostKey / connectTimeout of one node; an ssh:// node must say how its host
    key is checked and which key logs in (nothing under ~/.ssh is ever used)."""
    ssh_keys = ("knownHosts", "insecureIgnoreHostKey", "connectTimeout")
    if not url.startswith("ssh://"):
        used = [k for k in ssh_keys if k in nd]
        if used:
            raise ConfigError(f"{where}.{used[0]}: only used with an ssh:// url")
        return {}
    insecure = nd.get("insecureIgnoreHostKey", False)  # types checked by the schema
    known = nd.get("knownHosts", global_known)
    if not nd.get("identity"):
        raise ConfigError(f"{where}.identity: required for an ssh:// url (the private key that logs in to the node)")
    if not known and not insecure:
        raise ConfigError(f"{where}: an ssh:// node needs knownHosts (a file with its host key, e.g. from ssh-keyscan, "
                          "checked out of band; per node or global), or insecureIgnoreHostKey: true (labs only)")
    return {
        "known_hosts": _file(known, base_dir) if known else None,
        "insecure_ignore_host_key": insecure,
        "connect_timeout": parse_duration(nd.get("connectTimeout", 10), f"{where}.connectTimeout"),
    }


_BYTES = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_BYTE_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _images(raw: Any) -> tuple[int, int]:
    """`images.keepRevisions` (0 to 20: the stable revisions `rollback` lists) and `images.minFree`
    (bytes, or a Kubernetes quantity such as 500Mi)."""
    keep = raw.get("keepRevisions", 20)  # shapes and ranges checked by the schema
    m = _BYTES.match(str(raw.get("minFree", 0)))
    assert m is not None  # the schema's pattern
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
    """The schema-checked `source.verify` section: `mode` (head | tag) and `keys` (files, relative to the
    config's folder), which must exist."""
    keys_raw = raw.get("keys")
    if not keys_raw:
        raise ConfigError("source.verify.keys: expected a non-empty list of key files "
                          "(ASCII-armored OpenPGP public keys, SSH public keys or allowed_signers files)")
    keys: list[Path] = []
    for i, k in enumerate(keys_raw):
        p = Path(k).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = (base_dir / p).resolve()
        if not p.is_file():
            raise ConfigError(f"source.verify.keys[{i}]: {quote_path(str(p))} is not a readable file")
        keys.append(p)
    return VerifyConfig(mode=raw.get("mode", "head"), keys=tuple(keys))


_CAPABILITY = re.compile(r"^(CAP_)?([A-Z][A-Z0-9_]*)$")


def policy_from_mapping(raw: Mapping[str, Any]) -> Policy:
    """The schema-checked `policy:` section (Kubernetes PodSecurityPolicy names); anything absent is denied."""
    caps = ["*" if cap == "*" else _CAPABILITY.match(cap).group(2)  # type: ignore[union-attr]  # by the schema
            for cap in raw.get("allowedCapabilities") or []]
    rules: list[HostPathRule] = []
    for i, entry in enumerate(raw.get("allowedHostPaths") or []):
        prefix = entry["pathPrefix"]
        if ".." in prefix.split("/"):
            raise ConfigError(f"policy.allowedHostPaths[{i}].pathPrefix: must not contain '..'")
        rules.append(HostPathRule(posixpath.normpath(prefix).replace("//", "/"), entry.get("readOnly", False)))
    return Policy(
        allow_privileged=raw.get("allowPrivileged", False),
        allow_host_network=raw.get("allowHostNetwork", False),
        allow_host_pid=raw.get("allowHostPID", False),
        allow_host_ipc=raw.get("allowHostIPC", False),
        allow_unconfined=raw.get("allowUnconfined", False),
        allow_writable_cgroups=raw.get("allowWritableCgroups", False),
        allowed_capabilities=tuple(dict.fromkeys(caps)),
        allowed_host_paths=tuple(rules),
    )


def load(path: str | os.PathLike[str] | None, source_override: str | None = None) -> AgentConfig:
    """Load the config from `path`, else $GITOPS_AGENT_CONFIG, else the built-in default.

    The built-in default follows `source_override` (a Git URL or local path) on the
    local Podman socket; without a config file `--source` is required.
    """
    from . import manifests  # not at the top: manifests (through desired) imports this module

    path = path or os.environ.get(ENV_VAR)
    if path:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read config {quote_path(str(p))}: {e.strerror}") from e
        raw, problems = manifests.read_checked(manifests.SourceFile(str(p), data), schema())
        _raise(problems)
        cfg = from_mapping(raw, base_dir=p.parent.resolve())
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
