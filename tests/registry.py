"""A real container registry for the tests, reachable from the fleet's nodes.

:class:`Registry` runs Debian's ``docker-registry`` (the CNCF distribution
registry 2.8) on ``127.0.0.1:<free port>`` of the root network namespace, with
TLS (a CA and a server certificate made with ``openssl`` for this run) and,
unless ``auth=False``, htpasswd authentication (bcrypt, ``htpasswd -B``).

Reaching it from a node: the fleet's nodes live in network namespaces of their
own, with no link to the root namespace. :class:`Relay` is a small TCP relay in
this test process: a thread enters the node's network namespace (``setns`` on
that thread only), binds ``127.0.0.1:<the registry's port>`` there and returns,
so a node pulls ``127.0.0.1:PORT/repo:tag`` as if the registry ran on its own
loopback, and every byte flows over loopback only. The relay can limit its
bandwidth (``rate`` bytes/s: a slow edge link) and be paused (``refuse()``:
connections are closed at once, an unreachable registry).

Trusting the test CA, per node, never machine-wide (measured on Podman 4.3):
a rootful Podman reads a registry's CA from
``/etc/containers/certs.d/<host:port>/ca.crt``, and its API's image pull has no
cert-dir parameter. :func:`trust` copies the host's ``/etc/containers`` into
the node's directory, adds ``certs.d/127.0.0.1:PORT/ca.crt`` there and
bind-mounts the copy over ``/etc/containers`` inside the node's OWN mount
namespace (:class:`podman_env.NodeNamespace`), so only that node's Podman
service trusts the CA, only for that host:port; nothing under the host's
``/etc`` changes. The running service picks it up on its next pull.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from podman_env import PodmanService, PodmanUnavailable

__all__ = ["Registry", "Relay", "trust", "push", "free_port"]

USER = "edge"
PASSWORD = "s3cr3t-pull-token-%d" % os.getpid()  # unique per run: searched for in every output
_CLONE_NEWNET = 0x40000000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    if cp.returncode != 0:
        raise PodmanUnavailable(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp


class Registry:
    """``docker-registry serve`` on 127.0.0.1 with TLS (and htpasswd auth unless ``auth=False``).

    Attributes: ``dir``, ``port``, ``host`` ("127.0.0.1:PORT"), ``ca`` (CA certificate path),
    ``auth``. :meth:`stop` / :meth:`start` keep the stored images.
    """

    def __init__(self, base_dir: str | os.PathLike[str], *, auth: bool = True, port: int | None = None) -> None:
        missing = [t for t in ("docker-registry", "openssl", "htpasswd", "skopeo") if shutil.which(t) is None]
        if missing:
            raise PodmanUnavailable(f"{', '.join(missing)} not found: run `bash .ci/setup` "
                                    "(docker-registry, openssl, apache2-utils, skopeo)")
        self.dir = Path(base_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = auth
        self.ca = self.dir / "ca.crt"
        self._proc: subprocess.Popen[bytes] | None = None
        self._make_certs()
        config = [
            "version: 0.1",
            "log: {level: warn}",
            f"storage: {{filesystem: {{rootdirectory: {self.dir / 'data'}}}, delete: {{enabled: true}}}}",
            f"http: {{addr: '{self.host}', tls: {{certificate: {self.dir / 'server.crt'}, key: {self.dir / 'server.key'}}}}}",
        ]
        if auth:
            _run(["htpasswd", "-Bbc", str(self.dir / "htpasswd"), USER, PASSWORD])
            config.append(f"auth: {{htpasswd: {{realm: gitops-test, path: {self.dir / 'htpasswd'}}}}}")
        (self.dir / "config.yml").write_text("\n".join(config) + "\n")
        self.start()

    def _make_certs(self) -> None:
        d = self.dir
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gitops-test CA",
              "-keyout", str(d / "ca.key"), "-out", str(self.ca)])
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
              "-keyout", str(d / "server.key"), "-out", str(d / "server.csr")])
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        _run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(self.ca), "-CAkey", str(d / "ca.key"),
              "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.crt")])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        if self.running:
            return
        log = open(self.dir / "registry.log", "ab")
        try:
            self._proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PodmanUnavailable(f"docker-registry exited: {(self.dir / 'registry.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            # Something answers on the port; make sure it is this registry, not another process that took the
            # port between free_port() and the bind (the registry then exits with "address already in use").
            time.sleep(0.3)
            if self._proc.poll() is None:
                return
            raise PodmanUnavailable(f"docker-registry exited: {(self.dir / 'registry.log').read_text()[-2000:]}")
        raise PodmanUnavailable(f"docker-registry did not listen on {self.host} within {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the registry (a crash, mid-transfer)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def ref(self, repo: str, tag: str) -> str:
        return f"{self.host}/{repo}:{tag}"

    def creds(self) -> str:
        return f"{USER}:{PASSWORD}"


def push(node: PodmanService, image: str, registry: Registry, dest: str) -> str:
    """Push local `image` of `node` to `registry` as `dest` (repo:tag) with `podman push`, through
    the node's relay; returns the manifest digest ("sha256:...") the registry stored."""
    digest_file = node.base_dir / "pushed.digest"
    args = ["push", "--quiet", "--cert-dir", str(registry.dir / "client-certs"), "--digestfile", str(digest_file)]
    certs = registry.dir / "client-certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(registry.ca, certs / "ca.crt")
    if registry.auth:
        args += ["--creds", registry.creds()]
    node.podman(*args, image, f"docker://{registry.host}/{dest}")
    return digest_file.read_text().strip()


def trust(node: PodmanService, registry: Registry) -> None:
    """Make `node`'s Podman service trust the registry's CA for its host:port only (see the module docstring)."""
    if not node.mount_ns:
        raise ValueError("trust() needs a node with its own mount namespace (podman_env.NodeNamespace)")
    etc = node.base_dir / "etc-containers"
    if not etc.exists():
        shutil.copytree("/etc/containers", etc, symlinks=True)
    certs = etc / "certs.d" / registry.host
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(registry.ca, certs / "ca.crt")
    seen = subprocess.run(["nsenter", f"--mount={node.mount_ns}", "test", "-d", f"/etc/containers/certs.d/{registry.host}"],
                          capture_output=True, timeout=30)
    if seen.returncode != 0:  # the copy is not bound yet in this node's mount namespace
        _run(["nsenter", f"--mount={node.mount_ns}", "mount", "--bind", str(etc), "/etc/containers"])


# -- the relay --------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _listen_in(netns: str | None, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port inside /run/netns/<netns> (the caller's namespace if None)."""
    result: dict[str, Any] = {}

    def bind() -> None:  # on a thread of its own: setns changes this thread's namespace only
        try:
            if netns:
                with open(f"/run/netns/{netns}") as f:
                    _setns(f.fileno())
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            result["sock"] = s
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=bind)
    t.start()
    t.join()  # the thread ends; its namespace goes with it, the socket stays in the node's
    if "error" in result:
        raise result["error"]
    return result["sock"]


class Relay:
    """TCP relay from 127.0.0.1:`listen_port` in network namespace `netns` to 127.0.0.1:`target_port`
    of this process's namespace. ``rate``: bytes/s per direction and connection (None: unlimited).
    ``refuse()`` makes it close new and open connections (an unreachable registry), ``accept()`` undoes it."""

    def __init__(self, netns: str | None, target_port: int, listen_port: int | None = None,
                 rate: float | None = None) -> None:
        self.target_port = target_port
        self.port = listen_port or target_port
        self.rate = rate
        self.bytes = 0  # relayed from the registry to the node
        self._refusing = False
        self._closed = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sock = _listen_in(netns, self.port)
        threading.Thread(target=self._serve, daemon=True).start()

    def refuse(self) -> None:
        self._refusing = True
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            _close(c)

    def accept(self) -> None:
        self._refusing = False

    def close(self) -> None:
        self._closed = True
        self.refuse()
        _close(self._sock)

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self._refusing:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while True:
                started = time.monotonic()
                data = src.recv(16384 if self.rate is None else max(1024, int(self.rate / 20)))
                if not data:
                    break
                dst.sendall(data)
                if down:
                    self.bytes += len(data)
                if self.rate:
                    time.sleep(max(0.0, len(data) / self.rate - (time.monotonic() - started)))
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
