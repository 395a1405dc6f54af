"""A real SSH node for the tests: Debian's sshd and a private Podman in one network namespace.

:class:`SshNode` makes the namespaces and the Podman service with ``podman_env.start_node``, links the node to
the root namespace with a veth pair on a private /30 picked from the test session's pid (10.213.x.y: traffic only
to addresses this test created), and runs ``/usr/sbin/sshd -D`` inside the node on ``<node address>:2222`` with
key-only login (root, ``authorized_keys`` in the node's folder), password and keyboard-interactive off, a host key
of its own and ``LogLevel VERBOSE`` to ``sshd.log`` (``logins()`` counts "Accepted publickey"). The agent is given
only ``url`` (``ssh://root@<address>:2222<podman socket>``): its way to that Podman is that SSH login.

Faults: ``stop_sshd()`` / ``start_sshd(**options)`` (e.g. ``AllowTcpForwarding="no"``, or ``host_key=`` another
key: a changed host key), ``link(False)`` (the veth down: packets vanish), ``sessions()`` (sshd's per-connection
children: 0 once the agent has closed its connection). Nothing here writes under ``~/.ssh``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from podman_env import PodmanUnavailable, start_node, stop_node

SSHD = "/usr/sbin/sshd"
PORT = 2222


def keygen(path: Path, passphrase: str = "") -> Path:
    """A fresh ed25519 key pair at `path` (and `path`.pub)."""
    for p in (path, Path(f"{path}.pub")):
        p.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class SshNode:
    """sshd + Podman inside a node namespace, reachable from the root namespace over a veth pair."""

    def __init__(self, tag: str, name: str = "edge-ssh") -> None:
        pid = os.getpid()
        self.name = name
        self.ns, self.svc = start_node(f"gas{pid}-{tag}", name)
        self.dir = self.svc.base_dir / "ssh"
        self.dir.mkdir()
        octet = pid % 250
        sub = (pid // 250) % 60 * 4
        self.host_ip, self.node_ip = f"10.213.{octet}.{sub + 1}", f"10.213.{octet}.{sub + 2}"
        self.veth = f"gs{pid % 100000}{tag[:3]}"
        self._sshd: subprocess.Popen[bytes] | None = None
        try:
            self._link_up()
            self.host_key = keygen(self.dir / "host_key")
            self.client_key = keygen(self.dir / "client_key")
            (self.dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
            self.start_sshd()
        except BaseException:
            self.close()
            raise

    def _link_up(self) -> None:
        peer = f"{self.veth}n"
        for argv in (["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer],
                     ["ip", "link", "set", peer, "netns", self.ns.name],
                     ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth],
                     ["ip", "link", "set", self.veth, "up"],
                     ["nsenter", f"--net={self.ns.path}", "ip", "addr", "add", f"{self.node_ip}/30", "dev", peer],
                     ["nsenter", f"--net={self.ns.path}", "ip", "link", "set", peer, "up"]):
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if cp.returncode:
                raise PodmanUnavailable(f"{' '.join(argv)}: {cp.stderr.strip()}")

    @property
    def address(self) -> str:
        return f"[{self.node_ip}]:{PORT}"

    @property
    def url(self) -> str:
        return f"ssh://root@{self.node_ip}:{PORT}{self.svc.sock}"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def known_hosts(self, path: Path, key: Path | None = None) -> Path:
        """A known_hosts file trusting `key` (default: the node's host key) for this node's address."""
        pub = Path(f"{key or self.host_key}.pub").read_text().split()
        path.write_text(f"{self.address} {pub[0]} {pub[1]}\n")
        return path

    def start_sshd(self, host_key: Path | None = None, **options: str) -> None:
        """(Re)start sshd with `options` added to its config (e.g. AllowTcpForwarding="no")."""
        self.stop_sshd()
        settings = {
            "ListenAddress": f"{self.node_ip}:{PORT}", "HostKey": str(host_key or self.host_key),
            "PidFile": str(self.dir / "sshd.pid"), "AuthorizedKeysFile": str(self.dir / "authorized_keys"),
            "PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no", "UsePAM": "no", "StrictModes": "no", "LogLevel": "VERBOSE",
            "AllowTcpForwarding": "yes", "AllowStreamLocalForwarding": "yes", **options,
        }
        conf = self.dir / "sshd_config"
        conf.write_text("".join(f"{k} {v}\n" for k, v in settings.items()))
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self._sshd = subprocess.Popen(
            self.ns.command(SSHD, "-D", "-f", str(conf), "-E", str(self.log)),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._sshd.poll() is not None:
                err = self._sshd.stderr.read().decode() if self._sshd.stderr else ""
                raise PodmanUnavailable(f"sshd exited ({self._sshd.returncode}): {err} {self.log.read_text()}")
            try:
                with socket.create_connection((self.node_ip, PORT), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise PodmanUnavailable(f"sshd did not start listening: {self.log.read_text()}")

    def sessions(self) -> list[int]:
        """sshd's per-connection processes (children of the listener)."""
        return _children(self._sshd.pid) if self._sshd is not None and self._sshd.poll() is None else []

    def stop_sshd(self) -> None:
        """Stop sshd and every connection it serves (the node's sshd is gone)."""
        proc, self._sshd = self._sshd, None
        if proc is None:
            return
        pids = [proc.pid]
        i = 0
        while i < len(pids):
            pids.extend(_children(pids[i]))
            i += 1
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
        (self.dir / "sshd.pid").unlink(missing_ok=True)

    def link(self, up: bool) -> None:
        """The node's end of the veth up or down: packets to the node vanish (a cut link, not a refusal).
        Down pins the node's MAC in the root namespace, so the agent's packets are sent and never answered
        (a timeout) rather than refused by a failed ARP lookup ("No route to host")."""
        peer = f"{self.veth}n"
        if not up:
            out = subprocess.run(["nsenter", f"--net={self.ns.path}", "ip", "-o", "link", "show", peer],
                                 capture_output=True, text=True, check=True, timeout=30).stdout
            out = out.split("link/ether", 1)[1].split()[0]
            subprocess.run(["ip", "neigh", "replace", self.node_ip, "lladdr", out, "dev", self.veth,
                            "nud", "permanent"], check=True, timeout=30)
        subprocess.run(["nsenter", f"--net={self.ns.path}", "ip", "link", "set", peer, "up" if up else "down"],
                       check=True, timeout=30)
        if up:
            subprocess.run(["ip", "neigh", "del", self.node_ip, "dev", self.veth], capture_output=True, timeout=30)

    def logins(self) -> int:
        return self.log.read_text().count("Accepted publickey") if self.log.exists() else 0

    def close(self) -> None:
        self.stop_sshd()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=30)
        stop_node(self.ns, self.svc)
