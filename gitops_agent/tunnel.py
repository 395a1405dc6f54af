"""SSH tunnels to ssh:// nodes: the only module that imports asyncssh.

Where it sits: under `podman`, its only user. For a node whose URL is `ssh://user@host[:port]/path/podman.sock`,
a `Tunnel` keeps ONE SSH connection open (reused by every API call of a pass and across the passes of `run`;
`handshakes` counts the connections made) and serves a local unix socket under the state dir. podman-py talks
to that socket as to a local Podman (unix://); each connection to it is carried over a direct-streamlocal
channel to the node's Podman socket. `open_tcp` opens a TCP stream to an address:port as seen from the node
(a direct-tcpip channel on the same connection), for probes run from outside the container.

Why asyncssh (in-process) and not OpenSSH's `ssh` supervised as a child: there is no child process at all, so
none can be left behind (on close, SIGTERM or kill -9 of the agent); every failure arrives as a typed exception
(host key, authentication, channel refused with its code) instead of a stderr line to parse; a channel open is
confirmed or refused, so `open_tcp` tells a refused port from an open one (what a tcpSocket probe needs, which
`ssh -W` cannot tell); and nothing is read from or written to `~/.ssh` (no default keys, config or known_hosts:
every input is given explicitly). podman-py's own ssh transport is not used (it forces host-key checking off,
waits 300 s, leaks `ssh` processes).

Host keys are checked against the configured knownHosts file only; an unknown or changed key is refused during
the key exchange, before any login. `insecure_ignore_host_key` (labs only) skips the check. Nothing can prompt:
no terminal is used, a passphrase-protected key is refused at once, no password or keyboard-interactive auth.

Every failure becomes `NodeUnreachable` (`NodeError` for a configuration problem) whose reason is one line from
`reason()`. Must not talk Podman's API itself or decide anything about pods.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shlex
import socket
import tempfile
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine, TypeVar
from urllib.parse import unquote, urlsplit

import asyncssh

from .errors import NodeError, NodeUnreachable

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 10.0
_SOCKET_MAX = 100  # a unix socket path must stay under 108 bytes


@dataclass(frozen=True)
class SshTarget:
    """Where an ssh:// URL points: `ssh://user@host[:port]/remote/socket`."""

    user: str
    host: str
    port: int
    socket: str

    @property
    def address(self) -> str:
        """host:port as OpenSSH and known_hosts write it: `host` on port 22, else `[host]:port`."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_target(url: str) -> SshTarget:
    """Split an ssh:// node URL; ValueError with a sentence when it is not one."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ValueError(f"{url!r} is not ssh://user@host[:port]/path/to/podman.sock")
    try:
        port = parts.port or 22
    except ValueError as e:
        raise ValueError(f"{url!r}: {e}") from e
    path = unquote(parts.path) or "/run/podman/podman.sock"
    return SshTarget(unquote(parts.username or "root"), parts.hostname, port, path)


@dataclass(frozen=True)
class SshSettings:
    """How one ssh:// node is reached (from its `nodes[]` entry and the agent's stateDir)."""

    identity: str | None
    """Private key file (required for ssh://: no default key under ~/.ssh is ever used)."""
    known_hosts: str | None
    """known_hosts file holding the node's host key (`ssh-keyscan`, checked out of band)."""
    insecure_ignore_host_key: bool = False
    """Labs only: accept any host key."""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    """Seconds for TCP connect + key exchange + login; also sets the keepalive (a dead link is noticed within
    about 1.3 x this)."""
    run_dir: Path = Path("/var/lib/gitops-agent/ssh")
    """Folder for the local forwarded sockets (`<stateDir>/ssh`)."""


# --- reasons: one line per failure kind (pure; tested from literals) -----------------------------------------

HOST_KEY_CHANGED = "host-key-changed"
HOST_KEY_UNKNOWN = "host-key-unknown"
AUTH_REFUSED = "auth-refused"
PASSPHRASE = "passphrase"
IDENTITY_UNREADABLE = "identity-unreadable"
KNOWN_HOSTS_UNREADABLE = "known-hosts-unreadable"
REFUSED = "refused"
TIMEOUT = "timeout"
LOST = "lost"
FORWARDING_REFUSED = "forwarding-refused"
SOCKET_MISSING = "socket-missing"
UNREACHABLE = "unreachable"


def reason(kind: str, node: str, target: SshTarget, settings: SshSettings, detail: str = "") -> str:
    """The one line reported for a failure of `kind` (`detail`: a fingerprint, an OS message)."""
    where = target.address
    if kind == HOST_KEY_CHANGED:
        return (f"host key for {node} ({where}) does not match knownHosts: {detail} "
                f"(refused before login; if the node's key really changed, check it out of band and update "
                f"{settings.known_hosts})")
    if kind == HOST_KEY_UNKNOWN:
        return (f"host key for {node} ({where}) is not in knownHosts {settings.known_hosts}: {detail} "
                f"(refused before login; collect it with ssh-keyscan and check it out of band)")
    if kind == AUTH_REFUSED:
        return f"authentication refused: {target.user}@{where} does not accept the identity {settings.identity}"
    if kind == PASSPHRASE:
        return (f"identity {settings.identity} is protected by a passphrase, which the unattended agent cannot type: "
                f"use a key without one (readable by root only)")
    if kind == IDENTITY_UNREADABLE:
        return f"cannot read identity {settings.identity}: {detail}"
    if kind == KNOWN_HOSTS_UNREADABLE:
        return f"cannot read knownHosts {settings.known_hosts}: {detail}"
    if kind == REFUSED:
        return f"connection refused by {where} (is sshd running on the node?)"
    if kind == TIMEOUT:
        return f"timeout: no SSH answer from {where} within {settings.connect_timeout:g}s"
    if kind == LOST:
        return f"SSH connection to {where} lost: {detail}" if detail else f"SSH connection to {where} lost"
    if kind == FORWARDING_REFUSED:
        return f"the node's sshd refuses port forwarding ({detail or 'AllowTcpForwarding'}) for {target.user}@{where}"
    if kind == SOCKET_MISSING:
        return (f"the Podman socket {target.socket} on the node does not answer ({detail}): "
                f"is the Podman service running there?")
    return f"cannot connect to {where}: {detail}"


def _kind_of(exc: BaseException) -> tuple[str, str]:
    """(kind, detail) for an exception raised while connecting."""
    if isinstance(exc, asyncssh.PermissionDenied):
        return AUTH_REFUSED, ""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HOST_KEY_UNKNOWN, ""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, FutureTimeout)):
        return TIMEOUT, ""
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED, ""
    if isinstance(exc, asyncssh.DisconnectError):
        return LOST, exc.reason
    if isinstance(exc, OSError):
        if exc.errno in (errno.ETIMEDOUT,):
            return TIMEOUT, ""
        return UNREACHABLE, os.strerror(exc.errno) if exc.errno else str(exc)
    return UNREACHABLE, str(exc) or type(exc).__name__


# --- the tunnel -----------------------------------------------------------------------------------------------


class _Client(asyncssh.SSHClient):
    """Records the host key a node offered (for the message) and when the connection drops."""

    def __init__(self, tunnel: Tunnel, generation: int) -> None:
        self._tunnel = tunnel
        self._generation = generation

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self._tunnel._offered = key.get_fingerprint()
        return False  # only keys in knownHosts are trusted

    def connection_lost(self, exc: Exception | None) -> None:
        self._tunnel._on_lost(self._generation, exc)



def check_files(url: str, settings: SshSettings) -> list[str]:
    """What is wrong with an ssh:// node's key files, without connecting (for `doctor`): the identity must
    load without a passphrase and be readable by its owner only; knownHosts must list the node's host."""
    problems: list[str] = []
    identity = settings.identity
    if not identity:
        problems.append("no identity (private key file) is configured")
    else:
        try:
            asyncssh.read_private_key(identity)
            mode = os.stat(identity).st_mode & 0o077
            if mode:
                problems.append(f"identity {identity} can be read by others (mode {oct(mode)}): chmod 600 it")
        except asyncssh.KeyImportError as e:
            problems.append(f"identity {identity}: " + ("has a passphrase (nobody is there to type it)"
                                                        if "passphrase" in str(e).lower() else str(e)))
        except OSError as e:
            problems.append(f"identity {identity}: {e.strerror or e}")
    if settings.insecure_ignore_host_key:
        problems.append("insecureIgnoreHostKey is on: any host key is accepted (labs only)")
    elif not settings.known_hosts:
        problems.append("no knownHosts file is configured")
    else:
        try:
            target = parse_target(url)
            known = asyncssh.read_known_hosts(settings.known_hosts)
            if not known.match(target.host, target.host, target.port)[0]:
                problems.append(f"knownHosts {settings.known_hosts} has no key for {target.address}")
        except (OSError, ValueError) as e:
            problems.append(f"knownHosts {settings.known_hosts}: {getattr(e, 'strerror', None) or e}")
    return problems

class Tunnel:
    """One SSH connection to one node; `url` is the local unix socket podman-py uses.

    Thread-safe: API calls from several threads share it. The connection is made on the first `ensure()`
    and made again by an `ensure()` after it dropped. `close()` ends the connection and removes the socket."""

    def __init__(self, node: str, url: str, settings: SshSettings) -> None:
        self.node = node
        self.target = parse_target(url)
        self.settings = settings
        self.handshakes = 0  # SSH connections made (each one a TCP connect, key exchange and login)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lost: str | None = None  # why the current connection dropped
        self._channel_error: str | None = None  # why the last forwarded connection could not be opened
        self._offered = ""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._local: set[asyncio.StreamWriter] = set()  # forwarded connections open now
        self._streams: set[asyncio.Future[None]] = set()  # open_tcp copy tasks (the loop keeps only weak refs)
        self.socket_path = _socket_path(settings.run_dir, node)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _fail(self, kind: str, detail: str = "") -> NodeUnreachable:
        return NodeUnreachable(self.node, reason(kind, self.node, self.target, self.settings, detail))

    # --- event loop (one thread per tunnel) ---

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name=f"ssh-{self.node}", daemon=True)
            self._thread.start()
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise

    # --- connecting ---

    def ensure(self) -> None:
        """Connect unless connected; NodeUnreachable (one line: `reason`) when the node cannot be reached."""
        with self._lock:
            conn = self._conn
            if conn is not None and self._lost is None:
                return
            if conn is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(conn.abort)
                self._conn = None
            keys = self._client_keys()
            try:
                self._run(self._connect(keys), self.settings.connect_timeout + 5)
            except NodeError:
                raise
            except asyncssh.HostKeyNotVerifiable as e:
                raise self._fail(self._host_key_kind(), self._offered or "(no fingerprint)") from e
            except (OSError, asyncssh.Error, asyncio.TimeoutError, FutureTimeout) as e:
                kind, detail = _kind_of(e)
                raise self._fail(kind, detail) from e

    def _client_keys(self) -> list[Any]:
        identity = self.settings.identity
        if not identity:
            raise NodeError(self.node, "an ssh:// node needs an identity (private key file)")
        try:
            return [asyncssh.read_private_key(identity)]
        except asyncssh.KeyImportError as e:
            if "passphrase" in str(e).lower():
                raise self._fail(PASSPHRASE) from e
            raise self._fail(IDENTITY_UNREADABLE, str(e)) from e
        except OSError as e:
            raise self._fail(IDENTITY_UNREADABLE, e.strerror or str(e)) from e

    def _known_hosts(self) -> Any:
        if self.settings.insecure_ignore_host_key:
            return None
        path = self.settings.known_hosts
        if not path:  # never fall back to ~/.ssh/known_hosts
            raise NodeError(self.node, "an ssh:// node needs knownHosts (or insecureIgnoreHostKey: true, labs only)")
        try:
            return asyncssh.read_known_hosts(path)
        except OSError as e:
            raise self._fail(KNOWN_HOSTS_UNREADABLE, e.strerror or str(e)) from e
        except ValueError as e:
            raise self._fail(KNOWN_HOSTS_UNREADABLE, str(e)) from e

    def _host_key_kind(self) -> str:
        try:
            known = asyncssh.read_known_hosts(str(self.settings.known_hosts))
            listed = known.match(self.target.host, self.target.host, self.target.port)[0]
        except (OSError, ValueError):
            listed = []
        return HOST_KEY_CHANGED if listed else HOST_KEY_UNKNOWN

    async def _connect(self, keys: list[Any]) -> None:
        known = self._known_hosts()
        self._offered = ""
        interval = max(1.0, self.settings.connect_timeout / 3)
        self.handshakes += 1
        generation = self.handshakes
        conn, _ = await asyncssh.create_connection(
            lambda: _Client(self, generation), self.target.host, self.target.port,
            username=self.target.user, client_keys=keys, known_hosts=known,
            config=[], agent_path=None, x509_trusted_certs=None, x509_trusted_cert_paths=None,
            preferred_auth="publickey", password=None, gss_host=None,
            connect_timeout=self.settings.connect_timeout, login_timeout=self.settings.connect_timeout,
            keepalive_interval=interval, keepalive_count_max=3, encoding=None,
        )
        self._conn, self._lost, self._channel_error = conn, None, None
        if self._server is None:
            _prepare_run_dir(self.settings.run_dir)
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
            os.chmod(self.socket_path, 0o600)

    def _on_lost(self, generation: int, exc: Exception | None) -> None:
        if generation != self.handshakes:
            return  # an older connection, already replaced
        for w in list(self._local):  # forwarded connections in flight fail now, not at their own timeout
            w.close()
        if exc is None:
            self._lost = "closed"
        elif isinstance(exc, asyncssh.DisconnectError) and "keepalive" in exc.reason.lower():
            self._lost = reason(TIMEOUT, self.node, self.target, self.settings).replace(
                "no SSH answer", "no keepalive answer")
        else:
            self._lost = reason(LOST, self.node, self.target, self.settings, _kind_of(exc)[1])

    @property
    def dropped(self) -> bool:
        """True when the SSH connection was made and has dropped since."""
        return self._lost is not None

    def failure(self) -> str:
        """Why a forwarded connection just failed: a refused channel, or the SSH connection dropping."""
        return (self._channel_error or self._lost
                or reason(LOST, self.node, self.target, self.settings, "the forwarded connection was closed"))

    # --- forwarding ---

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One local connection (podman-py) carried to the node's Podman socket."""
        conn = self._conn
        if conn is None or self._lost is not None:
            writer.close()
            return
        try:
            r_reader, r_writer = await conn.open_unix_connection(self.target.socket)
        except asyncssh.ChannelOpenError as e:
            self._channel_error = await self._socket_reason(conn, e)
            writer.close()
            return
        except (OSError, asyncssh.Error) as e:
            self._channel_error = reason(LOST, self.node, self.target, self.settings, _kind_of(e)[1])
            writer.close()
            return
        self._channel_error = None
        self._local.add(writer)
        try:
            await _splice(reader, writer, r_reader, r_writer)
        finally:
            self._local.discard(writer)

    async def _socket_reason(self, conn: asyncssh.SSHClientConnection, e: asyncssh.ChannelOpenError) -> str:
        """sshd answers "open failed" both when the socket is missing and when forwarding is not allowed
        (OpenSSH 9.2: AllowTcpForwarding no also refuses unix sockets): ask the node whether the socket exists."""
        setting = "AllowTcpForwarding / AllowStreamLocalForwarding"
        if e.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
            return reason(FORWARDING_REFUSED, self.node, self.target, self.settings, setting)
        try:
            done = await asyncio.wait_for(conn.run(f"test -S {shlex.quote(self.target.socket)}"), 5)
            exists = done.exit_status == 0
        except (OSError, asyncssh.Error, asyncio.TimeoutError):
            return reason(SOCKET_MISSING, self.node, self.target, self.settings,
                          f"{e.reason or 'open failed'}; or {setting} is off")
        if exists:
            return reason(FORWARDING_REFUSED, self.node, self.target, self.settings, setting)
        return reason(SOCKET_MISSING, self.node, self.target, self.settings, "no such socket")

    def open_tcp(self, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP stream to `host:port` as seen from the node, carried by this node's SSH connection.

        Returns a connected stream socket (sendall/recv/settimeout/close; the caller closes it) once the node
        has confirmed the connection. Raises ConnectionRefusedError when the node could not connect to
        `host:port` (refused, no route), TimeoutError after `timeout` seconds, and NodeUnreachable/NodeError
        when the SSH connection itself fails or the node's sshd refuses TCP forwarding (AllowTcpForwarding)."""
        self.ensure()
        conn = self._conn
        assert conn is not None
        mine, theirs = socket.socketpair()
        try:
            self._run(self._open_tcp(conn, host, port, theirs), timeout)
        except asyncssh.ChannelOpenError as e:
            mine.close()
            if e.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                raise NodeError(self.node, reason(FORWARDING_REFUSED, self.node, self.target, self.settings,
                                                  "AllowTcpForwarding")) from e
            raise ConnectionRefusedError(errno.ECONNREFUSED,
                                         f"{host}:{port} from node {self.node}: {e.reason or 'connect failed'}") from e
        except (FutureTimeout, asyncio.TimeoutError) as e:
            mine.close()
            theirs.close()
            raise TimeoutError(f"{host}:{port} from node {self.node}: no connection within {timeout:g}s") from e
        except (OSError, asyncssh.Error) as e:
            mine.close()
            raise NodeUnreachable(self.node, self.failure()) from e
        return mine

    async def _open_tcp(self, conn: asyncssh.SSHClientConnection, host: str, port: int, sock: socket.socket) -> None:
        try:
            r_reader, r_writer = await conn.open_connection(host, port)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        task = asyncio.ensure_future(_splice(reader, writer, r_reader, r_writer))
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)

    # --- closing ---

    def close(self) -> None:
        """End the SSH connection, stop serving the local socket and remove it. Idempotent."""
        loop = self._loop
        if loop is None:
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._conn is not None:
                self._conn.close()
                try:
                    await asyncio.wait_for(self._conn.wait_closed(), 2)
                except (asyncio.TimeoutError, OSError, asyncssh.Error):
                    self._conn.abort()
                self._conn = None

        try:
            self._run(shut(), 5)
        except (FutureTimeout, OSError, asyncssh.Error, RuntimeError):
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if not loop.is_running():
            loop.close()
        self._loop = None
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        if self.socket_path.parent != self.settings.run_dir:  # the private fallback folder of a deep stateDir
            try:
                self.socket_path.parent.rmdir()
            except OSError:
                pass


async def _pump(reader: Any, writer: Any) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncssh.Error, RuntimeError):
        pass


async def _splice(l_reader: Any, l_writer: Any, r_reader: Any, r_writer: Any) -> None:
    """Copy both ways until both sides are done, then close both."""
    try:
        await asyncio.gather(_pump(l_reader, r_writer), _pump(r_reader, l_writer))
    finally:
        for w in (l_writer, r_writer):
            try:
                w.close()
            except (OSError, asyncssh.Error, RuntimeError):
                pass


def _prepare_run_dir(run_dir: Path) -> None:
    """Create the socket folder 0700 and remove sockets left by agents that died (kill -9)."""
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in run_dir.glob("*.sock"):
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                old.unlink()
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _socket_path(run_dir: Path, node: str) -> Path:
    """`<run_dir>/<pid>-<hash of node>.sock`: one per process (a `status` next to `run` gets its own)."""
    name = f"{os.getpid()}-{hashlib.sha256(node.encode()).hexdigest()[:12]}.sock"
    path = run_dir / name
    if len(str(path)) <= _SOCKET_MAX:
        return path
    # A stateDir too deep for a unix socket path: a private 0700 folder in /run (or the temp dir) instead.
    base = "/run" if os.access("/run", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="gitops-agent-ssh-", dir=base)) / name
