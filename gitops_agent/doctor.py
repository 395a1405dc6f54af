"""`doctor`: checks that a host and its nodes can run the agent, with a fix for each failure.

A leaf beside `status`: each check is one small function `(Context) -> list[Result]`
listed in `CHECKS`, so a new one (SSH host keys, registry trust) is one function
more. Checks talk to Podman only through `podman.Node` (the few writes are
throwaway objects named `gitops-doctor-<pid>`, never labelled managed, removed
at once) and to Git only through `source.GitSource` in a temporary directory.
Must not write to the history store or to any object the agent manages.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import AgentConfig
from .desired import ENV_UNUSED, compile_node
from .errors import AgentError, NodeError
from .model import Revision
from .podman import Node, open_node
from .pullauth import image_registry
from .source import GitSource, resolve

PASS, FAIL, SKIP = "pass", "fail", "skip"
MIN_FREE_BYTES = 200 * 1024 * 1024  # the Git mirror, the history store and logs of one edge node
MAX_SKEW_SECONDS = 60.0  # beyond this, progress deadlines and `--since` mean different times on agent and node
EARLIEST_SANE = 1_704_067_200  # 2024-01-01: a clock before this was never set (no RTC, no NTP yet)

QUIRKS_FIX = """write this to /var/lib/gitops-agent/containers.conf and start the node's Podman service with
CONTAINERS_CONF=/var/lib/gitops-agent/containers.conf (a systemd drop-in: Environment=CONTAINERS_CONF=...):
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file\""""


@dataclass(frozen=True)
class Result:
    """One check's outcome on one node (or the host: node "")."""

    check: str
    status: str  # pass | fail | skip
    detail: str
    fix: str = ""
    node: str = ""


@dataclass
class Context:
    """What the checks share: the config, one Node per configured node, and each node's
    /info once read (None when its API did not answer)."""

    cfg: AgentConfig
    nodes: dict[str, Node]
    info: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    revision: Revision | None = None
    """The last applied revision (its images' registries are checked); None before the first sync."""
    clock: Callable[[], float] = time.time

    def reachable(self) -> list[tuple[str, Node, dict[str, Any]]]:
        return [(n, self.nodes[n], i) for n, i in self.info.items() if i is not None]


def _name(kind: str) -> str:
    return f"gitops-doctor-{kind}-{os.getpid()}"


def podman_api(ctx: Context) -> list[Result]:
    """Each node's Podman API answers; its version, runtime and cgroup setup."""
    out = []
    for name, node in ctx.nodes.items():
        try:
            info = node.info()
        except NodeError as e:
            ctx.info[name] = None
            fix = ("start the Podman API service on the node: `systemctl enable --now podman.socket` "
                   f"(or `podman system service --time=0 {node.url}`), and check the node's url in the config")
            out.append(Result("podman-api", FAIL, str(e), fix, name))
            continue
        ctx.info[name] = info
        host = info.get("host", {})
        out.append(Result("podman-api", PASS, f"Podman {info.get('version', {}).get('Version', '?')} at {node.url} "
                          f"({host.get('ociRuntime', {}).get('name', '?')}, cgroups {host.get('cgroupVersion', '?')}/"
                          f"{host.get('cgroupManager', '?')}, {host.get('networkBackend', '?')})", node=name))
    return out


def runtime_quirks(ctx: Context) -> list[Result]:
    """A container starts: recognises the hybrid-cgroup (crun) and setrlimit errors; prints the CONTAINERS_CONF fix."""
    out = []
    for name, node, _ in ctx.reachable():
        images = node.images()
        if not images:
            out.append(Result("container-start", SKIP, "no local image to try a container with", node=name))
            continue
        error = node.trial_run(_name("run"), images[0])
        if not error:
            out.append(Result("container-start", PASS, f"a container of {images[0]} starts", node=name))
        elif "hybrid mode" in error or "rlimit" in error.lower():
            why = "crun refuses this host's hybrid cgroup layout" if "hybrid" in error else \
                "raising RLIMIT_NOFILE/RLIMIT_NPROC above this host's hard limit is denied"
            out.append(Result("container-start", FAIL, f"{why}: {error}", QUIRKS_FIX, name))
        else:
            out.append(Result("container-start", FAIL, error, "see the Podman service's log on the node", name))
    return out


def namespace_dns(ctx: Context) -> list[Result]:
    """A Namespace's network gets aardvark DNS (service names resolve between pods)."""
    out = []
    for name, node, info in ctx.reachable():
        backend = info.get("host", {}).get("networkBackend", "")
        if backend != "netavark":
            out.append(Result("namespace-dns", FAIL, f"network backend is {backend or 'unknown'}, not netavark: "
                              "no aardvark DNS, service names will not resolve",
                              "install netavark and aardvark-dns; network_backend = \"netavark\" in containers.conf "
                              "(`podman system reset` is needed to switch backends)", name))
            continue
        try:
            net = node.trial_network(_name("net"))
        except NodeError as e:
            out.append(Result("namespace-dns", FAIL, str(e), "check that aardvark-dns is installed on the node", name))
            continue
        if net.get("dns_enabled"):
            out.append(Result("namespace-dns", PASS, "netavark network with aardvark DNS", node=name))
        else:
            out.append(Result("namespace-dns", FAIL, "a network created with DNS came back without it",
                              "install aardvark-dns on the node (apt install aardvark-dns)", name))
    return out


def clock(ctx: Context) -> list[Result]:
    """The host's clock was set, and each node's clock agrees with it."""
    now = ctx.clock()
    if now < EARLIEST_SANE:
        return [Result("clock", FAIL, f"this host's clock reads {time.strftime('%Y-%m-%d', time.gmtime(now))}",
                       "set the clock (timedatectl set-ntp true)")]
    out = [Result("clock", PASS, f"host clock {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}")]
    for name, _, info in ctx.reachable():
        server = info.get("serverTime")
        if server is None:
            out.append(Result("clock", SKIP, "the node sent no Date header", node=name))
        elif abs(server - now) > MAX_SKEW_SECONDS:
            out.append(Result("clock", FAIL, f"node clock is {server - now:+.0f}s off this host's",
                              "enable NTP on both (timedatectl set-ntp true)", name))
        else:
            within = f"node clock within {MAX_SKEW_SECONDS:.0f}s ({server - now:+.0f}s)"
            out.append(Result("clock", PASS, within, node=name))
    return out


def state_dir(ctx: Context) -> list[Result]:
    """The state dir can be created and written, is private, and has room."""
    d = ctx.cfg.state_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-"):
            pass
    except OSError as e:
        return [Result("state-dir", FAIL, f"{d} is not writable: {e.strerror or e}",
                       f"make it writable by the agent's user (mkdir -p {d} && chown root: {d} && chmod 700 {d}), "
                       "or point stateDir / --state-dir at a writable disk (not a read-only mount)")]
    out = []
    mode = d.stat().st_mode & 0o777
    if mode & 0o022:
        out.append(Result("state-dir", FAIL, f"{d} is writable by others (mode {mode:o})", f"chmod 700 {d}"))
    free = shutil.disk_usage(d).free
    if free < MIN_FREE_BYTES:
        out.append(Result("state-dir", FAIL, f"only {free // 2**20} MiB free under {d}",
                          f"free at least {MIN_FREE_BYTES // 2**20} MiB on that filesystem"))
    return out or [Result("state-dir", PASS, f"{d} writable, mode {mode:o}, {free // 2**20} MiB free")]


def git_source(ctx: Context) -> list[Result]:
    """The Git branch answers; the verification keys (source.verify.keys) load."""
    loc = resolve(ctx.cfg.source)
    with tempfile.TemporaryDirectory(prefix="gitops-doctor-") as tmp:
        try:
            src = GitSource(loc, Path(tmp), ctx.cfg.source.timeout, ctx.cfg.source.verify)
        except AgentError as e:
            return [Result("git-verify-keys", FAIL, str(e),
                           "fix source.verify.keys: ASCII-armored OpenPGP or SSH public keys")]
        out = []
        if ctx.cfg.source.verify:
            out.append(Result("git-verify-keys", PASS, f"{len(ctx.cfg.source.verify.keys)} key(s) loaded"))
        try:
            head = src.remote_head()
            out.append(Result("git", PASS, f"{loc.url} {loc.branch} at {head[:12]}"))
        except AgentError as e:
            out.append(Result("git", FAIL, str(e), "check source.url/branch, the network and Git credentials"))
    return out


def registries(ctx: Context) -> list[Result]:
    """Each node reaches the registry of every image the last applied revision pulls there and trusts its TLS
    certificate: one manifest fetch per registry and node, nothing pulled. Podman 4.3's manifest API sends no
    credentials, so a registry that asks for them has answered (reachable, trusted); whether it accepts them
    is for the pull itself to say (`sync` names the registry and the Secret when it does not)."""
    if ctx.revision is None:
        return [Result("registries", SKIP, "no applied revision yet: nothing to pull")]
    out = []
    for name, node, _ in ctx.reachable():
        cfg_node = next(n for n in ctx.cfg.nodes if n.name == name)
        wanted: dict[str, str] = {}  # registry -> an image of it
        for w in compile_node(ctx.revision, cfg_node, ctx.cfg.nodes, ENV_UNUSED).workloads:
            for c in (c for pod in w.pods[:1] for c in pod.every_container()):
                registry = image_registry(c.image)
                if c.pull_policy != "Never" and registry != "localhost":
                    wanted.setdefault(registry, c.image)
        for registry, image in sorted(wanted.items()):
            try:
                why = _registry_answer(node, image)
            except NodeError as e:
                out.append(Result("registries", FAIL, str(e), "see podman-api", name))
                continue
            low = why.lower()
            if _answered(why):
                asked = " (it asks for credentials: the pull sends them)" if why else ""
                out.append(Result("registries", PASS, f"{registry} answers for {image}{asked}", node=name))
                continue
            fix = (f"trust the registry's CA on the node: /etc/containers/certs.d/{registry}/ca.crt"
                   if "x509" in low or "certificate" in low else
                   f"check that the node reaches {registry} (network, DNS, proxy) and that the image exists")
            out.append(Result("registries", FAIL, f"{registry} ({image}): {why}", fix, name))
    return out or [Result("registries", PASS, "the applied revision pulls from no registry (local images only)")]



def _answered(why: str) -> bool:
    low = why.lower()
    return not why or "authentication required" in low or "unauthorized" in low


def _registry_answer(node: Node, image: str) -> str:
    """The node's answer for `image`'s registry, asked a second time (after 1 s) when the first is a failure: a
    doctor check must not report a registry down over one dropped connection or Podman 4.3's occasional mix-up of
    HTTP and HTTPS in its manifest API (seen once in CI: "server gave HTTP response to HTTPS client" from a TLS-only
    registry that answered the pull a second earlier). A registry that is really down fails both times."""
    why = node.registry_answer(image)
    if _answered(why):
        return why
    time.sleep(1.0)
    return str(node.registry_answer(image))


# Each check is one function; the ones needing a node's API run after podman_api.
Check = Callable[[Context], list[Result]]
def ssh_keys(ctx: Context) -> list[Result]:
    """Each ssh:// node's identity loads (no passphrase, owner-only) and knownHosts lists its host key."""
    out = []
    for n in ctx.cfg.nodes:
        if not n.url.startswith("ssh://"):
            continue
        from .tunnel import SshSettings, check_files  # asyncssh: only when there is an ssh:// node

        settings = SshSettings(identity=n.identity, known_hosts=n.known_hosts,
                               insecure_ignore_host_key=n.insecure_ignore_host_key)
        problems = check_files(n.url, settings)
        if problems:
            fix = ("collect the node's host key out of band (`ssh-keyscan -p PORT HOST >> known_hosts`, then compare "
                   "its fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node) and use a "
                   "key without a passphrase, mode 600 (README: SSH nodes)")
            out.append(Result("ssh-keys", FAIL, "; ".join(problems), fix, n.name))
        else:
            out.append(Result("ssh-keys", PASS, f"identity {n.identity} loads; knownHosts lists the node", node=n.name))
    return out


CHECKS: tuple[Check, ...] = (podman_api, runtime_quirks, namespace_dns, clock, state_dir, git_source, ssh_keys,
                             registries)


def run(cfg: AgentConfig, checks: tuple[Check, ...] = CHECKS, revision: Revision | None = None) -> list[Result]:
    """Every check's results, in order. A check that raises is a failure of that check, not of doctor.
    `revision`: the last applied one, for the registry check."""
    ctx = Context(cfg, {}, revision=revision)
    results: list[Result] = []
    try:
        for n in cfg.nodes:
            try:
                ctx.nodes[n.name] = open_node(cfg, n, timeout=15)
            except NodeError as e:  # a URL podman-py cannot use: no other check can reach the node
                results.append(Result("podman-api", FAIL, str(e), "fix the node's url in the config", n.name))
        for check in checks:
            try:
                results += check(ctx)
            except AgentError as e:
                results.append(Result(check.__name__.replace("_", "-"), FAIL, str(e)))
        return results
    finally:
        for node in ctx.nodes.values():
            node.close()


def ok(results: list[Result]) -> bool:
    return all(r.status != FAIL for r in results)


def as_json(results: list[Result]) -> dict[str, Any]:
    return {"ok": ok(results), "checks": [asdict(r) for r in results]}
