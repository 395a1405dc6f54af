"""ssh:// nodes for real: Debian's sshd and a private Podman inside a node namespace (`ssh_env.SshNode`), reached
by the agent only through its SSH login over a veth pair. One sshd/Podman node is shared by the module's tests.

Pins down: sync, no-op and a rollout over one reused SSH connection; every SSH fault gives one line naming the
node and the reason, within the configured timeout, exit code 1, no traceback, `status` UNREACHABLE with it; a
changed host key never logs in; no SSH session is left behind (close, SIGTERM, kill -9); nothing is written to
root's ~/.ssh.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent
from gitops_agent.cli import main as cli_main
from gitops_agent.errors import ConfigError, NodeError
from gitops_agent.podman import Node
from gitops_agent.tunnel import SshSettings, SshTarget, Tunnel, parse_target, reason
from podman_env import WEB1, WEB2, make_bare_image
from ssh_env import SshNode, keygen
from test_fleet import BARE1, BARE2, Events, image_of, push, status_of, workload

HOME_SSH = Path("~/.ssh").expanduser()


def _home_ssh() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in HOME_SSH.rglob("*")} if HOME_SSH.exists() else {}


@pytest.fixture(scope="module")
def ssh_node(podman_service: Any) -> Iterator[SshNode]:
    before = _home_ssh()
    node = SshNode("mod")
    try:
        yield node
    finally:
        node.close()
    assert _home_ssh() == before, "something was written under ~/.ssh"


@pytest.fixture
def node(ssh_node: SshNode) -> SshNode:
    """The shared node with a healthy sshd, its link up and no managed pods."""
    ssh_node.link(True)
    ssh_node.start_sshd()
    ssh_node.svc.reset()
    return ssh_node


def write_config(tmp_path: Path, repo: Any, node: SshNode, *, local: Any = None, **ssh: Any) -> Path:
    entry = {"name": node.name, "url": node.url, "identity": str(node.client_key), "connectTimeout": "3s", **ssh}
    nodes = ([{"name": "local", "url": local.url}] if local is not None else []) + [entry]
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": repo.url, "path": "apps"}, "nodes": nodes,
                                   "knownHosts": str(node.known_hosts(tmp_path / "known_hosts")),
                                   "stateDir": str(tmp_path / "state"), "readyTimeout": "60s"}))
    return cfg


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops_agent", *args, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)


def cli_in_process(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`gitops-agent ARGS` run by `cli.main` in this process (no interpreter start-up: the fault rows are many);
    an exception escaping main would fail the test like a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([*args, "--config", str(cfg)])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def messages(stderr: str) -> list[str]:
    """stderr without the event log's lines (`2026-12-01T21:57:13Z info event ...`)."""
    return [line for line in stderr.strip().splitlines() if not re.match(r"\d{4}-\d\d-\d\dT", line)]


# --- pure parts ---------------------------------------------------------------------------------------------

TARGET = SshTarget("core", "10.213.7.2", 2222, "/run/podman/podman.sock")
SETTINGS = SshSettings(identity="/etc/agent/id", known_hosts="/etc/agent/known_hosts", connect_timeout=10)


def test_reasons_are_one_line_naming_the_node_and_the_cause() -> None:
    """Each failure kind has its sentence; the host key ones carry the fingerprint the node offered."""
    assert reason("host-key-changed", "edge-ssh", TARGET, SETTINGS, "SHA256:abc").startswith(
        "host key for edge-ssh ([10.213.7.2]:2222) does not match knownHosts: SHA256:abc")
    assert reason("host-key-unknown", "edge-ssh", TARGET, SETTINGS, "SHA256:abc").startswith(
        "host key for edge-ssh ([10.213.7.2]:2222) is not in knownHosts /etc/agent/known_hosts: SHA256:abc")
    assert reason("auth-refused", "e", TARGET, SETTINGS) == (
        "authentication refused: core@[10.213.7.2]:2222 does not accept the identity /etc/agent/id")
    assert reason("refused", "e", TARGET, SETTINGS) == (
        "connection refused by [10.213.7.2]:2222 (is sshd running on the node?)")
    assert reason("timeout", "e", TARGET, SETTINGS) == "timeout: no SSH answer from [10.213.7.2]:2222 within 10s"
    assert reason("forwarding-refused", "e", TARGET, SETTINGS, "AllowTcpForwarding").startswith(
        "the node's sshd refuses port forwarding (AllowTcpForwarding)")
    assert "passphrase" in reason("passphrase", "e", TARGET, SETTINGS)
    assert reason("socket-missing", "e", TARGET, SETTINGS, "no such socket").startswith(
        "the Podman socket /run/podman/podman.sock on the node does not answer (no such socket)")
    assert all("\n" not in reason(k, "e", TARGET, SETTINGS, "d") for k in ("lost", "unreachable", "timeout"))


def test_parse_target_and_address() -> None:
    """ssh:// URLs split into user, host, port and remote socket; known_hosts' address form."""
    t = parse_target("ssh://core@edge-1.example.net/run/podman/podman.sock")
    assert (t.user, t.host, t.port, t.socket, t.address) == ("core", "edge-1.example.net", 22,
                                                             "/run/podman/podman.sock", "edge-1.example.net")
    assert parse_target("ssh://root@10.0.0.2:2222/x.sock").address == "[10.0.0.2]:2222"
    with pytest.raises(ValueError):
        parse_target("ssh:///no-host")


def test_config_ssh_nodes_need_a_host_key_check_and_an_identity(tmp_path: Path) -> None:
    """knownHosts per node or global; without one (or insecureIgnoreHostKey) or an identity: a config error."""
    src = {"url": str(tmp_path)}
    url = "ssh://core@edge/run/podman/podman.sock"
    cfg = config_mod.from_mapping({"source": src, "knownHosts": "kh", "nodes": [
        {"name": "a", "url": url, "identity": "id"},
        {"name": "b", "url": url, "identity": "id", "knownHosts": "/etc/b_hosts", "connectTimeout": "2s"},
        {"name": "c", "url": url, "identity": "id", "insecureIgnoreHostKey": True}]}, base_dir=tmp_path)
    a, b, c = cfg.nodes
    assert (a.known_hosts, a.connect_timeout) == (str(tmp_path / "kh"), 10.0)
    assert (b.known_hosts, b.connect_timeout) == ("/etc/b_hosts", 2.0)
    assert c.insecure_ignore_host_key
    with pytest.raises(ConfigError, match="needs knownHosts"):
        config_mod.from_mapping({"source": src, "nodes": [{"name": "a", "url": url, "identity": "id"}]})
    with pytest.raises(ConfigError, match="identity: required"):
        config_mod.from_mapping({"source": src, "knownHosts": "kh", "nodes": [{"name": "a", "url": url}]})
    with pytest.raises(ConfigError, match="only used with an ssh:// url"):
        config_mod.from_mapping({"source": src, "nodes": [{"name": "a", "knownHosts": "kh"}]})


# --- a real sshd node ------------------------------------------------------------------------------------------


def test_sync_noop_and_rollout_over_one_reused_ssh_connection(node: SshNode, git_remote: Any, tmp_path: Path) -> None:
    """Three passes of one agent (sync, no-op, rollout) log in once; closing ends the node's SSH session."""
    cfg = write_config(tmp_path, git_remote, node)
    push(git_remote, "v1", workload("web", WEB1, replicas=1))
    logins = node.logins()
    agent = Agent(config_mod.load(str(cfg)), Events())
    try:
        assert agent.sync().result == "applied"
        assert image_of(node.svc) == {WEB1}
        ssh = agent.nodes[node.name]
        writes = ssh.changes
        assert agent.sync().result == "in-sync"
        assert ssh.changes == writes  # the no-op pass wrote nothing
        push(git_remote, "v2", workload("web", WEB2, replicas=1))
        out = agent.sync()
        assert out.result == "applied", out.error
        assert image_of(node.svc) == {WEB2}
        assert ssh.handshakes == 1 and node.logins() - logins == 1
        assert len(node.sessions()) == 1
    finally:
        agent.close()
    assert wait_for(lambda: node.sessions() == []), "the agent left an SSH session open"
    assert not list((tmp_path / "state" / "ssh").glob("*.sock"))


def test_http_readiness_of_a_shell_less_image_is_probed_through_the_ssh_connection(
        node: SshNode, git_remote: Any, tmp_path: Path) -> None:
    """On an ssh:// node httpGet readiness runs from outside the container, over the node's SSH connection to the
    pod's IP: an image with no shell and no tools rolls out gated on it, and a 404 fails it with the HTTP reason."""
    make_bare_image(node.svc, BARE1, "1")
    make_bare_image(node.svc, BARE2, "2")
    cfg = write_config(tmp_path, git_remote, node)
    push(git_remote, "v1", workload("web", BARE1, replicas=2))
    agent = Agent(config_mod.load(str(cfg)), Events())
    try:
        out = agent.sync()
        assert out.result == "applied", out.error
        assert image_of(node.svc) == {BARE1}
        bad = {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
        push(git_remote, "v2: readiness 404", workload("web", BARE2, replicas=2, readiness=bad))
        out = agent.sync()
        assert out.result == "failed" and ":8080/missing: HTTP 404 (success is 200-399)" in out.error, out.error
        assert image_of(node.svc) == {BARE1}
        assert agent.nodes[node.name].handshakes == 1
    finally:
        agent.close()
    st = status_of(cfg)
    assert st["nodes"][0]["httpTcpProbes"] == "from outside the container: agent (through the node's transport)"


def test_sshd_stopped_during_a_rollout_defers_the_node_then_it_converges(
        node: SshNode, clean_podman: Any, git_remote: Any, tmp_path: Path) -> None:
    """sshd stops while the local canary is updated: the SSH node is deferred with the reason; `status`, `diff`
    and `sync` say it in one line without a traceback; once sshd is back the node converges."""
    cfg = write_config(tmp_path, git_remote, node, local=clean_podman)
    knobs = {"rollout.gitops-agent.io/unreachable-node-timeout": "2"}
    push(git_remote, "v1", workload("web", WEB1, replicas=2, annotations=knobs))  # one per node
    assert cli_in_process(cfg, "sync").returncode == 0
    push(git_remote, "v2", workload("web", WEB2, replicas=2, annotations=knobs))

    class StopSshd(Events):
        def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
            super().__call__(event, level, **fields)
            if event == "rollout.node.done" and fields["node"] == "local":
                node.stop_sshd()

    agent = Agent(config_mod.load(str(cfg)), StopSshd())
    try:
        out = agent.sync()
    finally:
        agent.close()
    refused = f"connection refused by {node.address} (is sshd running on the node?)"
    assert out.result == "progressing", out.error
    assert out.node_errors[node.name] == f"node {node.name}: {refused}"
    assert image_of(node.svc) == {WEB1}

    status = cli_in_process(cfg, "status")
    assert status.returncode == 0, status.stderr
    assert f"Node {node.name}: UNREACHABLE: {refused}" in status.stdout
    diff = cli_in_process(cfg, "diff")
    assert diff.returncode == 2 and diff.stderr.strip().splitlines()[-1] == f"node {node.name}: {refused}"
    t0 = time.monotonic()
    sync = cli(cfg, "sync")  # the real command line: exit code, stderr, no traceback
    assert sync.returncode == 1 and "Traceback" not in sync.stderr
    (line,) = messages(sync.stderr)
    assert line.startswith("gitops-agent: revision ")
    assert line.endswith(f"deferred until reachable: node {node.name}: {refused}")
    assert time.monotonic() - t0 < 30

    node.start_sshd()
    sync = cli_in_process(cfg, "sync")
    assert sync.returncode == 0, sync.stderr
    assert image_of(node.svc) == {WEB2} and image_of(clean_podman) == {WEB2}
    assert wait_for(lambda: node.sessions() == [])


def _wrong_key(node: SshNode, tmp: Path) -> dict[str, Any]:
    return {"identity": str(keygen(tmp / "wrong"))}


def _passphrase_key(node: SshNode, tmp: Path) -> dict[str, Any]:
    return {"identity": str(keygen(tmp / "locked", passphrase="secret"))}


def _password_offered(node: SshNode, tmp: Path) -> dict[str, Any]:
    node.start_sshd(PasswordAuthentication="yes", KbdInteractiveAuthentication="yes")
    return {"identity": str(keygen(tmp / "wrong"))}


def _changed_host_key(node: SshNode, tmp: Path) -> dict[str, Any]:
    node.start_sshd(host_key=keygen(tmp / "impostor"))
    return {}


def _unknown_host_key(node: SshNode, tmp: Path) -> dict[str, Any]:
    (tmp / "other_hosts").write_text("[10.0.0.9]:22 " + " ".join(Path(f"{node.host_key}.pub").read_text().split()[:2]))
    return {"knownHosts": str(tmp / "other_hosts")}


def _no_forwarding(node: SshNode, tmp: Path) -> dict[str, Any]:
    node.start_sshd(AllowTcpForwarding="no")
    return {}


def _link_down(node: SshNode, tmp: Path) -> dict[str, Any]:
    node.link(False)
    return {"connectTimeout": "2s"}


def _sshd_stopped(node: SshNode, tmp: Path) -> dict[str, Any]:
    node.stop_sshd()
    return {}


def _socket_missing(node: SshNode, tmp: Path) -> dict[str, Any]:
    return {"url": node.url.replace("podman.sock", "missing.sock")}


FAULTS = {  # name: (set-up, the reason's start (format: node), seconds allowed)
    "wrong key": (_wrong_key, "authentication refused: root@{a} does not accept the identity", 10),
    "password offered": (_password_offered, "authentication refused: root@{a}", 10),
    "passphrase key": (_passphrase_key, "identity {tmp}/locked is protected by a passphrase", 10),
    "changed host key": (_changed_host_key, "host key for edge-ssh ({a}) does not match knownHosts: SHA256:", 10),
    "unknown host key": (_unknown_host_key, "host key for edge-ssh ({a}) is not in knownHosts", 10),
    "AllowTcpForwarding no": (_no_forwarding, "the node's sshd refuses port forwarding (AllowTcpForwarding", 15),
    "link down": (_link_down, "timeout: no SSH answer from {a} within 2s", 12),
    "sshd stopped": (_sshd_stopped, "connection refused by {a}", 10),
    "Podman socket missing": (_socket_missing, "the Podman socket", 15),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_ssh_fault_gives_one_line_with_the_reason(fault: str, node: SshNode, git_remote: Any, tmp_path: Path) -> None:
    """`sync` exits 1 within the bound with one line naming the node and the reason; `status` says UNREACHABLE
    with it; no login with a changed host key; no SSH session left."""
    setup, expected, bound = FAULTS[fault]
    push(git_remote, "v1", workload("web", WEB1, replicas=1,
                                    annotations={"rollout.gitops-agent.io/unreachable-node-timeout": "1"}))
    cfg = write_config(tmp_path, git_remote, node, **setup(node, tmp_path))
    logins = node.logins()
    t0 = time.monotonic()
    sync = cli_in_process(cfg, "sync")
    elapsed = time.monotonic() - t0
    want = expected.format(a=node.address, tmp=tmp_path)
    lines = messages(sync.stderr)
    assert sync.returncode == 1 and "Traceback" not in sync.stderr, sync.stderr
    assert len(lines) == 1 and f"deferred until reachable: node edge-ssh: {want}" in lines[0], lines
    assert "node edge-ssh: node edge-ssh" not in lines[0]
    assert elapsed < bound, f"{fault}: {elapsed:.1f}s"
    if fault == "changed host key":
        assert node.logins() == logins, "a login happened with a changed host key"
    status = cli_in_process(cfg, "status")
    assert status.returncode == 0 and f"Node edge-ssh: UNREACHABLE: {want}" in status.stdout, status.stdout
    assert image_of(node.svc) == set()  # nothing was applied
    assert wait_for(lambda: node.sessions() == [])


def test_open_tcp_reaches_an_address_as_seen_from_the_node(node: SshNode, tmp_path: Path) -> None:
    """open_tcp gives a confirmed stream over the node's connection; a closed port there is ConnectionRefusedError;
    with AllowTcpForwarding no, a NodeError saying so."""
    settings = SshSettings(identity=str(node.client_key), known_hosts=str(node.known_hosts(tmp_path / "kh")),
                           connect_timeout=3, run_dir=tmp_path / "run")
    tunnel = Tunnel(node.name, node.url, settings)
    try:
        with tunnel.open_tcp(node.node_ip, 2222, timeout=5) as stream:
            stream.settimeout(5)
            assert stream.recv(4) == b"SSH-"  # the node's own sshd, reached from inside the node
        with pytest.raises(ConnectionRefusedError):
            tunnel.open_tcp("127.0.0.1", 1, timeout=5)
        assert tunnel.handshakes == 1
    finally:
        tunnel.close()
    node.start_sshd(AllowTcpForwarding="no")
    tunnel = Tunnel(node.name, node.url, settings)
    try:
        with pytest.raises(NodeError, match=r"refuses port forwarding \(AllowTcpForwarding\)"):
            tunnel.open_tcp(node.node_ip, 2222, timeout=5)
    finally:
        tunnel.close()


def test_insecure_ignore_host_key_connects_to_any_key_and_warns(node: SshNode, git_remote: Any, tmp_path: Path) -> None:
    """Labs only: with insecureIgnoreHostKey an unknown host key is accepted, and every start logs a warning."""
    push(git_remote, "v1", workload("web", WEB1, replicas=1))
    cfg = write_config(tmp_path, git_remote, node, insecureIgnoreHostKey=True)
    (tmp_path / "known_hosts").write_text("")  # the global knownHosts lists nothing
    events = Events()
    agent = Agent(config_mod.load(str(cfg)), events)
    try:
        agent.nodes[node.name].ping()
    finally:
        agent.close()
    (warning,) = events.of("ssh.insecure")
    assert warning[1]["node"] == node.name and "not checked" in warning[1]["message"]


def test_link_cut_under_an_open_connection_is_noticed_within_the_timeout(node: SshNode, tmp_path: Path) -> None:
    """A call in flight when the link goes silent fails by the keepalive (not the 60 s API timeout), and the
    reconnect attempt is bounded by connectTimeout; after the link returns, one new login and it works."""
    settings = SshSettings(identity=str(node.client_key), known_hosts=str(node.known_hosts(tmp_path / "kh")),
                           connect_timeout=3, run_dir=tmp_path / "run")
    podman = Node(node.name, node.url, ssh=settings)
    try:
        podman.ping()
        node.link(False)
        t0 = time.monotonic()
        with pytest.raises(NodeError) as caught:
            podman.read()
        elapsed = time.monotonic() - t0
        assert caught.value.reason == f"timeout: no SSH answer from {node.address} within 3s", caught.value.reason
        assert elapsed < 3 * 1.4 + 3 + 2, f"{elapsed:.1f}s"  # keepalive (~1.3 x 3 s), then one reconnect (3 s)
        node.link(True)
        podman.ping()
        assert podman.handshakes >= 2
    finally:
        podman.close()
        node.link(True)


# kill -9 in CI (the harder case); SIGTERM too with GITOPS_AGENT_SSH_ALL=1 (CI time budget)
SIGNALS = [signal.SIGKILL, signal.SIGTERM] if os.environ.get("GITOPS_AGENT_SSH_ALL") else [signal.SIGKILL]


@pytest.mark.parametrize("sig", SIGNALS)
def test_run_leaves_no_ssh_session_on_sigterm_or_kill_9(sig: int, node: SshNode, git_remote: Any,
                                                        tmp_path: Path) -> None:
    """`run` holds one SSH connection across passes and no child process; SIGTERM and kill -9 end the session."""
    push(git_remote, "v1", workload("web", WEB1, replicas=1))
    cfg = write_config(tmp_path, git_remote, node)
    text = cfg.read_text().replace("path: apps", "path: apps\n  interval: 1s")
    cfg.write_text(text)
    logins = node.logins()
    proc = subprocess.Popen([sys.executable, "-m", "gitops_agent", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: image_of(node.svc) == {WEB1}, 60)
        time.sleep(1.5)  # more passes
        assert node.logins() - logins == 1, "one SSH login for every pass of `run`"
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children == [], f"the agent has child processes: {children}"
        assert len(node.sessions()) == 1
        proc.send_signal(sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert wait_for(lambda: node.sessions() == [], 10), "an SSH session outlived the agent"


def test_doctor_checks_an_ssh_nodes_key_files(node: SshNode, git_remote: Any, tmp_path: Path) -> None:
    """`doctor` passes an ssh:// node whose identity loads and whose host is in knownHosts, and names the problem
    with a fix for a knownHosts without the node's key and for a passphrase-protected identity."""
    from gitops_agent import doctor

    def ssh_results(cfg: Path) -> list[Any]:
        return [r for r in doctor.run(config_mod.load(str(cfg))) if r.check in ("ssh-keys", "podman-api")]

    cfg = write_config(tmp_path, git_remote, node)
    results = ssh_results(cfg)
    assert [(r.check, r.status) for r in results] == [("podman-api", doctor.PASS), ("ssh-keys", doctor.PASS)], results
    other = tmp_path / "other_known_hosts"
    other.write_text("[10.0.0.1]:22 " + Path(f"{keygen(tmp_path / 'k')}.pub").read_text())
    locked = keygen(tmp_path / "locked", passphrase="secret-phrase")
    cfg = write_config(tmp_path, git_remote, node, knownHosts=str(other), identity=str(locked))
    (bad,) = [r for r in ssh_results(cfg) if r.check == "ssh-keys"]
    assert bad.status == doctor.FAIL and "has a passphrase" in bad.detail and "has no key for" in bad.detail
    assert "ssh-keyscan" in bad.fix and "secret-phrase" not in bad.detail
