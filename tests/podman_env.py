"""Private Podman services and locally built images for the tests.

Nothing here touches the host's own Podman storage or containers: every
:class:`PodmanService` has its own ``--root``, ``--runroot``, ``--tmpdir``,
``--network-config-dir`` and API socket, all under one short directory in
``/tmp`` (a unix socket path must stay under 108 bytes).

Typical use (the fixtures in ``conftest.py`` do this for you)::

    svc = PodmanService()            # starts it, waits for /_ping
    make_image(svc, "localhost/x/web:1", variant="one")
    svc.podman("run", "--rm", "localhost/x/web:1", "cat", "/www/index.html")
    client = svc.client()            # podman-py client on svc.url
    svc.stop(); svc.start()          # same storage: containers survive
    svc.cleanup()                    # rm every pod/container, stop, delete dir

Multi-node tests can run a service inside a network namespace they created
(``ip netns add node1``) with ``PodmanService(netns="node1")``; the service
and every ``svc.podman(...)`` call are then wrapped in
``nsenter --net=/run/netns/node1``.  :class:`NodeNamespace` does the whole
set-up for one simulated node (network namespace with ``lo`` up, plus a
mount namespace with a private netavark run directory, see below)::

    ns = NodeNamespace("gat-node1-1234")
    svc = PodmanService(netns=ns.name, mount_ns=ns.mount_ns, name="node1")
    ns.http_get(8080)                # GET / on 127.0.0.1:8080 inside the node
    svc.cleanup(); ns.close()

Podman quirk (4.3): a rootful Podman keeps netavark's run directory
(``/run/containers/networks``: ``ipam.db`` and the aardvark-dns config and
pid file) at that fixed path, whatever ``--root``/``--runroot`` say.  Only
one aardvark-dns then runs on the machine, in the network namespace of
whichever service started it first, so container DNS breaks on every other
node (and for other test sessions' services).  :class:`NodeNamespace` mounts
a private tmpfs there, in a mount namespace of its own, to give each node
its own.

Trusting a test registry's CA (measured on Podman 4.3, see ``registry.py``):
a rootful service reads ``/etc/containers/certs.d/<host:port>/ca.crt`` at
that fixed path, and its pull API has no cert-dir parameter. What works,
scoped to one node and one registry: bind-mount a copy of ``/etc/containers``
with ``certs.d/127.0.0.1:<port>/ca.crt`` added over ``/etc/containers`` inside
the node's own mount namespace (``registry.trust``); a running service uses it
on its next pull. The host's ``/etc`` and trust store are never changed.
Reaching the registry from a node's network namespace: ``registry.Relay``.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = [
    "pid_alive",
    "api_get",
    "APPLETS",
    "NETAVARK_RUN_DIR",
    "NodeNamespace",
    "QUIRKS_CONF",
    "EXEC_EXIT_DELAY",
    "PodmanService",
    "PodmanUnavailable",
    "WEB1",
    "WEB2",
    "HTTPD",
    "containers_conf",
    "http_get",
    "make_image",
    "make_bare_image",
    "missing_tools",
    "ping",
    "run_each",
    "start_node",
    "stop_node",
]

BUSYBOX = "/bin/busybox"

#: Images the session fixture ``podman_service`` makes (variants "1" and "2").
WEB1 = "localhost/gitops-test/web:1"
WEB2 = "localhost/gitops-test/web:2"

#: The web server of WEB1/WEB2 (port 8080, /www) as a container command that stops at once. busybox
#: httpd as PID 1 ignores SIGTERM, so Podman waits out the whole terminationGracePeriodSeconds (then
#: SIGKILLs) on every stop: a second per replaced pod. Under `sh` with a TERM trap the container
#: exits 0 as soon as Podman asks. Use it wherever that wait is not what the test is about.
HTTPD: list[str] = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]

#: busybox applets linked into /bin of every test image.
APPLETS: tuple[str, ...] = (
    "sh", "httpd", "nc", "sleep", "cat", "ls", "echo", "env",
    "mkdir", "date", "rm", "touch", "grep", "true", "false", "timeout",
)

#: Fix for this sandbox's quirks (see /work/shared/ENVIRONMENT.md): crun
#: refuses hybrid cgroups and raising RLIMIT_NOFILE/NPROC is denied.  It is
#: harmless on a normal host (runc + cgroupfs work there too), so tests
#: always use it.
QUIRKS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def one_node_config(tmp_path: Path, repo_url: str, node_url: str, path: str, **extra: Any) -> Path:
    """``tmp_path/agent.yaml``: an agent config of one node ``local`` (``node_url``) syncing ``path`` of the
    test repository's main branch, its state under ``tmp_path/state``; ``extra``: more top-level keys."""
    import yaml

    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": repo_url, "branch": "main", "path": path},
        "nodes": [{"name": "local", "url": node_url}], "stateDir": str(tmp_path / "state"), "readyTimeout": "30s",
        **extra}))
    return cfg


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists (used to clean up namespaces of dead test runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PodmanUnavailable(RuntimeError):
    """Podman (or something it needs) is missing or does not work."""


def missing_tools() -> list[str]:
    """Return the names of the tools the Podman tests need but cannot find."""
    missing = [t for t in ("podman", "runc", "git") if shutil.which(t) is None]
    if not os.path.exists(BUSYBOX):
        missing.append(f"{BUSYBOX} (busybox-static)")
    return missing


#: containers.conf `exit_command_delay` (seconds) of the services started here; None keeps Podman's
#: default, 300. Podman 4.3 keeps the conmon of every API exec session (the agent's probes) alive that
#: long before its cleanup, and removing a pod whose containers still have such conmons takes ~3.3 s
#: (its cgroup cannot be removed; measured: 4.3 s right after an exec, 1.2 s six seconds after with a
#: delay of 5, 1 s of it the stop). conftest.py sets 5 for the tests: well above the agent's few ms
#: between an exec's end and its inspect, which the delay must cover. The benchmarks keep the default.
EXEC_EXIT_DELAY: int | None = None


def containers_conf(tmpdir: str | os.PathLike[str], *, default_subnet: str | None = None) -> dict[str, str]:
    """Write ``tmpdir/containers.conf`` and return the environment for podman.

    The file holds :data:`QUIRKS_CONF` (always: it does no harm on a normal
    host), :data:`EXEC_EXIT_DELAY` if set, and, if given, ``default_subnet``
    for the default "podman" network.  The returned dict is a copy of ``os.environ`` with
    ``CONTAINERS_CONF`` pointing at the file, and without variables that
    would make the podman CLI talk to some other (remote) service.
    """
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    text = QUIRKS_CONF
    if EXEC_EXIT_DELAY is not None:
        text = text.replace("[engine]\n", f"[engine]\nexit_command_delay = {EXEC_EXIT_DELAY}\n", 1)
    if default_subnet:
        text += f'[network]\ndefault_subnet = "{default_subnet}"\n'
    path = tmpdir / "containers.conf"
    path.write_text(text)
    env = dict(os.environ)
    for var in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINER_SSHKEY", "DOCKER_HOST"):
        env.pop(var, None)
    env["CONTAINERS_CONF"] = str(path)
    return env


def ping(sock_path: str | os.PathLike[str], timeout: float = 2.0) -> bool:
    """True if the Podman API on the unix socket answers ``GET /_ping`` with OK."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(os.fspath(sock_path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[1] == b"200" and body.strip() == b"OK"


def api_get(sock_path: str | os.PathLike[str], path: str, timeout: float = 30.0) -> Any:
    """The JSON body of ``GET path`` on the Podman API at the unix socket (HTTP/1.0: the body ends with the
    connection). A listing this way takes milliseconds, where each podman CLI call starts a whole Podman.

    :raises PodmanUnavailable: if the socket does not answer, or not with 200 and JSON.
    """
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(os.fspath(sock_path))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
            while chunk := s.recv(65536):
                data += chunk
    except OSError as e:
        raise PodmanUnavailable(f"GET {path} on {sock_path}: {e}") from e
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        raise PodmanUnavailable(f"GET {path} on {sock_path}: {head[:200]!r}")
    try:
        return json.loads(body or b"null")
    except ValueError as e:
        raise PodmanUnavailable(f"GET {path} on {sock_path}: not JSON: {body[:200]!r}") from e


def _used_ipv4_nets(netns: str | None) -> list[ipaddress.IPv4Network]:
    cmd = ["ip", "-4", "-o", "addr", "show"]
    if netns:
        cmd = ["nsenter", f"--net=/run/netns/{netns}", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            try:
                nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
            except ValueError:
                pass
    return nets


def _pick_default_subnet(netns: str | None) -> str:
    """A /24 in 10.200.0.0/16 that no interface of the namespace uses yet.

    Every rootful Podman puts its default network on the bridge "podman0"
    with 10.88.0.0/16 and keeps its own IP allocations, so two private
    services in one network namespace (e.g. test sessions of several people
    on one dev machine, or the host's service) would hand out the same
    addresses.  A distinct default subnet per service avoids that.
    """
    used = _used_ipv4_nets(netns)
    start = (os.getpid() * 7) % 250
    for i in range(250):
        cand = ipaddress.ip_network(f"10.200.{(start + i) % 250 + 1}.0/24")
        if not any(cand.overlaps(u) for u in used):
            return str(cand)
    return "10.200.254.0/24"


class PodmanService:
    """A private ``podman system service`` with its own storage and socket.

    :param base_dir: directory for everything (created; default: a fresh
        ``/tmp/gat-XXXX``).  Keep it short: the socket lives in it.
    :param netns: name of a network namespace in ``/run/netns`` to run the
        service (and :meth:`podman` calls) in, via ``nsenter --net=``.
    :param default_subnet: subnet of the default "podman" network; by default
        a free /24 in 10.200.0.0/16 is picked (see :func:`_pick_default_subnet`).
    :param mount_ns: path of a mount namespace to run the service (and
        :meth:`podman` calls) in, via ``nsenter --mount=`` (e.g.
        :attr:`NodeNamespace.mount_ns`).
    :param name: a name for the node (e.g. "node1"), for agent configs and
        messages; default None.
    :param start: start the service right away (default True).

    Attributes: ``base_dir``, ``root``, ``runroot``, ``tmpdir``, ``netdir``,
    ``sock`` (socket path), ``url`` ("unix://..."), ``env`` (environment for
    podman), ``log_path`` (service output), ``netns``, ``mount_ns``,
    ``name``, ``default_subnet``,
    ``images`` (ref -> ID of images made with :func:`make_image`).
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        netns: str | None = None,
        mount_ns: str | None = None,
        name: str | None = None,
        default_subnet: str | None = None,
        start: bool = True,
    ) -> None:
        self._owns_dir = base_dir is None
        if base_dir is None:
            base_dir = tempfile.mkdtemp(prefix="gat-", dir="/tmp")
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.root = self.base_dir / "root"
        self.runroot = self.base_dir / "runroot"
        self.tmpdir = self.base_dir / "tmp"
        self.netdir = self.base_dir / "net"
        self.sock = self.base_dir / "podman.sock"
        self.log_path = self.base_dir / "service.log"
        if len(str(self.sock)) >= 100:
            raise ValueError(f"socket path too long for a unix socket: {self.sock}")
        for d in (self.root, self.runroot, self.tmpdir, self.netdir):
            d.mkdir(parents=True, exist_ok=True)
        self.netns = netns
        self.mount_ns = mount_ns
        self.name = name
        self.default_subnet = default_subnet or _pick_default_subnet(netns)
        self.env = containers_conf(self.base_dir, default_subnet=self.default_subnet)
        #: image ref -> image ID, for images made with :func:`make_image`.
        self.images: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        if start:
            try:
                self.start()
            except BaseException:
                if self._owns_dir:
                    shutil.rmtree(self.base_dir, ignore_errors=True)
                raise

    # -- properties -------------------------------------------------------

    @property
    def url(self) -> str:
        """API URL for podman-py / the agent, e.g. ``unix:///tmp/gat-x/podman.sock``."""
        return f"unix://{self.sock}"

    @property
    def running(self) -> bool:
        """True while the service process started by :meth:`start` is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the service process (or of nsenter wrapping it), if running."""
        return self._proc.pid if self.running else None

    def global_args(self) -> list[str]:
        """The podman global options selecting this service's storage."""
        return [
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.tmpdir),
            "--network-config-dir", str(self.netdir),
            "--cgroup-manager", "cgroupfs",
        ]

    def _prefix(self) -> list[str]:
        opts = []
        if self.netns:
            opts.append(f"--net=/run/netns/{self.netns}")
        if self.mount_ns:
            opts.append(f"--mount={self.mount_ns}")
        return ["nsenter", *opts] if opts else []

    def command(self, *args: str) -> list[str]:
        """argv running ``podman <global args> *args`` (nsenter-wrapped if netns)."""
        return [*self._prefix(), "podman", *self.global_args(), *args]

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the service (no-op if running) and wait until ``/_ping`` answers."""
        if self.running:
            return
        self._closed = False
        try:
            self.sock.unlink()
        except FileNotFoundError:
            pass
        if shutil.which("podman") is None:
            raise PodmanUnavailable("podman not found on PATH: run `bash .ci/setup` (as root)")
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                self.command("system", "service", "--time=0", self.url),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PodmanUnavailable(
                    f"podman system service exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            if ping(self.sock):
                return
            time.sleep(0.05)
        self.stop()
        raise PodmanUnavailable(f"podman service did not answer on {self.sock} within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the service process and wait for it (containers keep running)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def cleanup(self, remove_dir: bool = True) -> None:
        """Remove every pod and container, stop the service, delete ``base_dir``."""
        if self._closed:
            return
        self._closed = True
        for args in (("pod", "rm", "-fa", "-t", "0"), ("rm", "-fa", "-t", "0")):
            self.podman(*args, check=False, timeout=120)
        self.stop()
        if remove_dir:
            self._unmount_all()
            shutil.rmtree(self.base_dir, ignore_errors=True)

    close = cleanup

    def __enter__(self) -> "PodmanService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _unmount_all(self) -> None:
        """Unmount what Podman left mounted under base_dir (e.g. root/overlay).

        With ``mount_ns`` this looks and unmounts inside that mount namespace.
        """
        base = str(self.base_dir.resolve())
        mounts = []
        mnt = ["nsenter", f"--mount={self.mount_ns}"] if self.mount_ns else []
        try:
            if mnt:
                info = subprocess.run([*mnt, "cat", "/proc/self/mountinfo"], capture_output=True,
                                      text=True, timeout=30).stdout
            else:
                info = Path("/proc/self/mountinfo").read_text()
        except (OSError, subprocess.SubprocessError):
            return
        for line in info.splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp == base or mp.startswith(base + "/"):
                mounts.append(mp)
        for mp in sorted(mounts, key=len, reverse=True):
            subprocess.run([*mnt, "umount", "-l", mp], capture_output=True, timeout=30)

    # -- using it --------------------------------------------------------------

    def podman(
        self,
        *args: str,
        check: bool = True,
        input: str | bytes | None = None,
        timeout: float | None = 300,
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run the podman CLI on this service's storage; output is captured.

        Works whether or not the service process is running.  With
        ``check=True`` (default) a non-zero exit raises
        :class:`subprocess.CalledProcessError` whose message includes stderr.
        """
        if isinstance(input, bytes):
            text = False
        cp = subprocess.run(
            self.command(*args),
            env=self.env,
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
        )
        if check and cp.returncode != 0:
            raise _CalledProcessError(cp.returncode, cp.args, cp.stdout, cp.stderr)
        return cp

    def client(self, **kwargs):
        """A ``podman.PodmanClient`` connected to :attr:`url`."""
        import podman  # podman-py

        return podman.PodmanClient(base_url=self.url, **kwargs)

    def reset(self) -> None:
        """Remove every pod, container, volume, secret and non-default network.

        Images are kept.  Starts the service again if it was stopped.
        """
        if not self.running:
            self.start()
        # What is there is listed through the API (milliseconds); the CLI, a whole Podman start each, runs
        # only for a kind that has something to remove: most tests leave little, and this runs before each.
        if self.api("/libpod/pods/json"):
            self._remove_all("pod", "rm", "-fa", "-t", "0")
        if self.api("/libpod/containers/json?all=true"):
            self._remove_all("rm", "-fa", "-t", "0")
        if self.api("/libpod/volumes/json"):
            self.podman("volume", "rm", "-fa")
        extra = [n["name"] for n in self.api("/libpod/networks/json") or () if n["name"] != "podman"]
        if extra:
            self.podman("network", "rm", "-f", *extra)
        secrets = [s["ID"] for s in self.api("/libpod/secrets/json") or ()]
        if secrets:
            self.podman("secret", "rm", *secrets)

    def _remove_all(self, *args: str) -> None:
        """``podman ARGS``, tried again twice: Podman 4.3 can fail to remove a container whose ``userdata/shm``
        is still busy right after its processes were killed (seen once after a ``hostUsers: false`` pod: "unlinkat
        .../userdata/shm: device or resource busy"); a second try a moment later removes it."""
        for attempt in range(3):
            cp = self.podman(*args, check=attempt == 2)
            if cp.returncode == 0:
                return
            time.sleep(1)

    def api(self, path: str) -> Any:
        """The JSON of ``GET path`` on this service's API (e.g. ``/libpod/pods/json``), see :func:`api_get`."""
        return api_get(self.sock, "/v4.0.0" + path)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the service's own output (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        ns = f" netns={self.netns}" if self.netns else ""
        name = f" {self.name}" if self.name else ""
        return f"<PodmanService{name} {self.url} {state}{ns}>"


class _CalledProcessError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        err = self.stderr.decode(errors="replace") if isinstance(self.stderr, bytes) else (self.stderr or "")
        return f"{super().__str__()}\nstderr:\n{err.strip()}"


# -- simulated nodes ----------------------------------------------------------------

#: Where a rootful Podman 4.3 keeps netavark's ipam.db and aardvark-dns state,
#: regardless of --root/--runroot (see the module docstring).
NETAVARK_RUN_DIR = "/run/containers/networks"


class NodeNamespace:
    """Namespaces for one simulated node: ``ip netns`` + a private netavark run dir.

    Creates the network namespace ``name`` (``ip netns add``, ``lo`` up) and a
    mount namespace in which :data:`NETAVARK_RUN_DIR` and ``/run/netns`` are
    private tmpfs mounts.  The
    mount namespace is kept alive by a small helper process (``unshare ...
    cat``) that ends by itself when this Python process dies (its stdin
    closes).  It is a slave of the host's mounts, so it sees e.g. the test
    directories, while mounts made inside it (container rootfs, container
    netns files) stay inside: run the podman CLI through the service
    (:meth:`PodmanService.podman` does) or :meth:`command`, not from the host.

    Use :attr:`name` as ``PodmanService(netns=...)`` and :attr:`mount_ns` as
    ``PodmanService(mount_ns=...)``.  :meth:`close` ends the helper and
    deletes the network namespace (idempotent).

    :raises PodmanUnavailable: if ``ip``, ``nsenter`` or ``unshare`` is
        missing or the namespaces cannot be created.
    """

    def __init__(self, name: str, *, timeout: float = 30.0) -> None:
        missing = [t for t in ("ip", "nsenter", "unshare") if shutil.which(t) is None]
        if missing:
            raise PodmanUnavailable(f"{', '.join(missing)} not found (package iproute2 / util-linux)")
        self.name = name
        self.path = f"/run/netns/{name}"
        self._holder: subprocess.Popen[bytes] | None = None
        self._closed = False
        _run_or_raise(["ip", "netns", "add", name], timeout)
        try:
            _run_or_raise(["nsenter", f"--net={self.path}", "ip", "link", "set", "lo", "up"], timeout)
            os.makedirs(NETAVARK_RUN_DIR, exist_ok=True)
            # Private netavark run dir, and a private /run/netns for the
            # containers' namespace files (which would otherwise show up,
            # unusable, in the host's `ip netns list`).
            script = (
                f"mount -t tmpfs -o mode=0755,size=64m gat-netrun {NETAVARK_RUN_DIR}"
                " && mount -t tmpfs -o mode=0755,size=1m gat-netns /run/netns"
                " && echo ready && exec cat >/dev/null"
            )
            self._holder = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "slave", "sh", "-c", script],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            assert self._holder.stdout is not None
            line = self._holder.stdout.readline()  # "ready", or EOF if it failed
            if line.strip() != b"ready":
                err = self._holder.stderr.read().decode(errors="replace") if self._holder.stderr else ""
                raise PodmanUnavailable(f"cannot make a mount namespace for node {name}: {err.strip()}")
        except BaseException:
            self.close()
            raise

    @property
    def mount_ns(self) -> str:
        """Path of the node's mount namespace (``/proc/PID/ns/mnt`` of the helper)."""
        if self._holder is None or self._holder.poll() is not None:
            raise RuntimeError(f"mount namespace of node {self.name} is gone")
        return f"/proc/{self._holder.pid}/ns/mnt"

    def command(self, *argv: str) -> list[str]:
        """argv running ``argv`` inside the node's network and mount namespaces."""
        return ["nsenter", f"--net={self.path}", f"--mount={self.mount_ns}", *argv]

    def run(self, *argv: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the node's namespaces (output captured as text)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(*argv), timeout=timeout, **kwargs)

    def http_get(self, port: int, host: str = "127.0.0.1", path: str = "/", timeout: float = 5.0) -> str | None:
        """Body of ``GET path`` on ``host:port`` as seen from inside the node, or None.

        None if nothing answers with an HTTP response (refused, timed out).
        Uses busybox ``nc``, in the node's network namespace only.
        """
        return http_get(port, host, path, timeout=timeout, netns=self.name)

    def close(self) -> None:
        """End the mount-namespace helper and delete the network namespace."""
        if self._closed:
            return
        self._closed = True
        holder, self._holder = self._holder, None
        if holder is not None:
            for stream in (holder.stdin, holder.stdout, holder.stderr):
                if stream is not None:
                    stream.close()
            try:
                holder.wait(10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait(10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=60)

    def __enter__(self) -> "NodeNamespace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NodeNamespace {self.name}>"


def _run_or_raise(argv: list[str], timeout: float) -> None:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        raise PodmanUnavailable(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")


def http_get(
    port: int,
    host: str = "127.0.0.1",
    path: str = "/",
    *,
    timeout: float = 5.0,
    netns: str | None = None,
) -> str | None:
    """Body of an HTTP/1.0 ``GET`` via busybox ``nc``, or None if nothing answered.

    ``netns`` runs it inside ``/run/netns/<netns>`` (``nsenter --net``);
    without it, in the caller's network namespace.
    """
    request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"
    argv = [BUSYBOX, "nc", "-w", str(max(1, int(timeout))), host, str(port)]
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    try:
        cp = subprocess.run(argv, input=request.encode(), capture_output=True, timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        return None
    head, sep, body = cp.stdout.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return None
    return body.decode(errors="replace")


def start_node(
    netns_name: str,
    node_name: str,
    images: Sequence[tuple[str, str]] = ((WEB1, "1"), (WEB2, "2")),
) -> tuple[NodeNamespace, PodmanService]:
    """One simulated node: :class:`NodeNamespace` ``netns_name`` plus a private
    service in it named ``node_name``, with ``images`` ((ref, variant) pairs;
    default WEB1 and WEB2) imported.  On failure everything started is
    cleaned up before the error propagates.  Undo with :func:`stop_node`.
    Used by the ``fleet`` fixture and by ``benchmarks/``.
    """
    ns = NodeNamespace(netns_name)
    svc = None
    try:
        svc = PodmanService(netns=ns.name, mount_ns=ns.mount_ns, name=node_name)
        for ref, variant in images:
            make_image(svc, ref, variant=variant)
        return ns, svc
    except BaseException:
        if svc is not None:
            svc.cleanup()
        ns.close()
        raise


def stop_node(ns: NodeNamespace, svc: PodmanService) -> None:
    """Undo :func:`start_node`: remove the node's containers and directory, delete its namespaces."""
    try:
        svc.cleanup()
    finally:
        ns.close()


def run_each(fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
    """``fn(item)`` (``fn(*item)`` for tuples) for every item in parallel; all run
    even if some raise; re-raise the first error, else return the results in order."""
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        futures = [pool.submit(fn, *item) if isinstance(item, tuple) else pool.submit(fn, item) for item in items]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


# -- images -----------------------------------------------------------------------

_ROOTFS_CACHE: dict[tuple[str, tuple[str, ...]], bytes] = {}


def _rootfs_tar(variant: str, applets: Sequence[str] = APPLETS) -> bytes:
    """The image's rootfs as a tar (cached per process, i.e. per test session)."""
    key = (variant, tuple(applets))
    if key in _ROOTFS_CACHE:
        return _ROOTFS_CACHE[key]
    if not os.path.exists(BUSYBOX):
        raise PodmanUnavailable(f"{BUSYBOX} not found: install busybox-static (bash .ci/setup)")
    mtime = 1_700_000_000

    def dir_info(name: str, mode: int = 0o755) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = mode
        ti.mtime = mtime
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "www", "proc", "sys", "dev", "run", "var"):
            tar.addfile(dir_info(d))
        tar.addfile(dir_info("tmp", 0o1777))
        data = Path(BUSYBOX).read_bytes()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode, ti.mtime = len(data), 0o755, mtime
        tar.addfile(ti, io.BytesIO(data))
        for applet in applets:
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, "busybox", 0o777, mtime
            tar.addfile(ti)
        page = (variant + "\n").encode()
        ti = tarfile.TarInfo("www/index.html")
        ti.size, ti.mode, ti.mtime = len(page), 0o644, mtime
        tar.addfile(ti, io.BytesIO(page))
    _ROOTFS_CACHE[key] = buf.getvalue()
    return _ROOTFS_CACHE[key]


def make_image(
    service: PodmanService,
    ref: str,
    variant: str = "",
    *,
    cmd: Sequence[str] | None = None,
) -> str:
    """Build a busybox-static image and import it into ``service``'s storage.

    The image has ``/bin/busybox`` with the :data:`APPLETS` symlinks,
    ``ENV PATH=/bin`` (kube play needs it) and ``/www/index.html`` containing
    ``variant`` + newline, so different variants give different image IDs.
    ``cmd`` optionally sets the image's CMD (e.g. ``["httpd", "-f", "-p",
    "8080", "-h", "/www"]``).  Returns the image ID.
    """

    args = ["import", "--change", "ENV=PATH=/bin"]
    if cmd:
        args += ["--change", "CMD=" + json.dumps(list(cmd), separators=(",", ":"))]
    cp = service.podman(*args, "-", ref, input=_rootfs_tar(variant))
    out = cp.stdout.decode().strip().splitlines()
    image_id = (out[-1] if out else "").removeprefix("sha256:")
    service.images[ref] = image_id
    return image_id


SOCAT = "/usr/bin/socat"  # Debian's socat (bash .ci/setup installs it)


def _socat_rootfs_tar() -> bytes:
    """`/bin/socat` with the shared libraries `ldd` lists, each at its own path (the dynamic loader's too)."""
    if not os.path.exists(SOCAT):
        raise PodmanUnavailable(f"{SOCAT} not found: install socat (bash .ci/setup)")
    listed = subprocess.run(["ldd", SOCAT], capture_output=True, text=True, check=True, timeout=30).stdout
    libs = sorted({word for line in listed.splitlines() for word in line.split() if word.startswith("/")})
    mtime = 1_700_000_000
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "proc", "sys", "dev", "run", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(ti)
        for source, target in ((SOCAT, "bin/socat"), *((lib, lib.lstrip("/")) for lib in libs)):
            data = Path(os.path.realpath(source)).read_bytes()
            ti = tarfile.TarInfo(target)
            ti.size, ti.mode, ti.mtime = len(data), 0o755, mtime
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def make_socat_image(service: PodmanService, ref: str = "localhost/socat:1") -> str:
    """An image of Debian's socat binary and its shared libraries (the Service forwarder's, in place of
    docker.io/alpine/socat, which cannot be pulled here). Returns the image ID."""
    cp = service.podman("import", "--change", "ENV=PATH=/bin", "--change", 'ENTRYPOINT=["socat"]', "-", ref,
                        input=_socat_rootfs_tar())
    out = cp.stdout.decode().strip().splitlines()
    image_id = (out[-1] if out else "").removeprefix("sha256:")
    service.images[ref] = image_id
    return image_id


def make_bare_image(service: PodmanService, ref: str, variant: str = "") -> str:
    """An image with no shell and no tools: the static busybox binary as ``/bin/httpd`` (busybox picks
    the applet from its name: it can only be an HTTP server) and ``/www/index.html`` (``variant``).
    Like a distroless or scratch image: an exec probe or an in-container probe script cannot run."""
    mtime = 1_700_000_000
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "www", "proc", "sys", "dev", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(ti)
        for name, data, mode in (("bin/httpd", Path(BUSYBOX).read_bytes(), 0o755),
                                 ("www/index.html", (variant + "\n").encode(), 0o644)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, mtime
            tar.addfile(ti, io.BytesIO(data))
    cp = service.podman("import", "--change", "ENV=PATH=/bin", "-", ref, input=buf.getvalue())
    out = cp.stdout.decode().strip().splitlines()
    image_id = (out[-1] if out else "").removeprefix("sha256:")
    service.images[ref] = image_id
    return image_id
