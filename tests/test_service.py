"""Running as a service (issue 4): the systemd notify protocol of `gitops-agent run`,
a reboot with Git unreachable, and the unit file shipped in the package.

systemd is not PID 1 here, so the tests play its part: a unix datagram socket
bound in a temporary directory is the NOTIFY_SOCKET, and WATCHDOG_USEC is set
as systemd sets it for WatchdogSec=. The agent is the real `gitops-agent run`
process against a real Git remote and the private Podman service.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gitops_agent import systemd
from gitrepo import GitRemote
from podman_env import HTTPD, WEB1

NS = f"svc{os.getpid()}"
UNIT = Path(__file__).resolve().parent.parent / "gitops_agent" / "data" / "gitops-agent.service"


def manifests(replicas: int) -> str:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": WEB1, "command": HTTPD}],
            }},
        },
    }
    return yaml.safe_dump_all([ns, deploy], sort_keys=False)


class FakeSystemd:
    """A NOTIFY_SOCKET: collects every datagram (with its arrival time) in a thread."""

    def __init__(self, abstract: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="gat-sd-")  # short: sun_path holds 108 bytes
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"gat-sd-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str = "") -> list[str]:
        return [m for _, m in list(self.messages) if m.startswith(prefix)]

    def wait_for(self, prefix: str, timeout: float, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.lines(prefix)) < count:
            time.sleep(0.05)
        return self.lines(prefix)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def fake_systemd() -> Iterator[FakeSystemd]:
    sd = FakeSystemd()
    try:
        yield sd
    finally:
        sd.close()


def write_config(tmp_path: Path, url: str, svc: Any) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"url": url, "path": "apps", "interval": "2s", "timeout": "5s"},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }))
    return cfg


def start_agent(cfg: Path, sd: FakeSystemd, log: Path, watchdog_usec: int = 2_000_000) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": sd.address, "WATCHDOG_USEC": str(watchdog_usec)}
    env.pop("WATCHDOG_PID", None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gitops_agent", "run", "--config", str(cfg), "--log-format", "json"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def stop_agent(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def web_containers(svc: Any) -> list[dict[str, Any]]:
    out = svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--filter", "status=running",
                     "--format", "json").stdout
    return [c for c in json.loads(out or "[]") if not c.get("IsInfra") and c["Labels"].get("io.gitops-agent.name") == "web"]


def wait_until(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


# --- sd_notify -------------------------------------------------------------------------------


def test_notify_sends_to_path_and_abstract_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    for abstract in (False, True):
        sd = FakeSystemd(abstract=abstract)
        try:
            monkeypatch.setenv("NOTIFY_SOCKET", sd.address)
            assert systemd.notify("READY=1", "STATUS=two\nlines")
            assert sd.wait_for("STATUS=", 5) == ["STATUS=two lines"]  # one datagram, newlines in values flattened
            assert sd.lines("READY=") == ["READY=1"]
        finally:
            sd.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert systemd.notify("READY=1") is False  # not under systemd: a no-op
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert systemd.notify("READY=1") is False  # a lost notification never raises
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog is someone else's
    assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    monkeypatch.delenv("WATCHDOG_PID")
    assert systemd.watchdog_interval() is None


def test_run_speaks_the_systemd_notify_protocol(clean_podman: Any, git_remote: GitRemote, tmp_path: Path,
                                                 fake_systemd: FakeSystemd) -> None:
    """READY=1 after the first pass (with its STATUS=), WATCHDOG=1 every WATCHDOG_USEC/2,
    STATUS= after each pass, STOPPING=1 on SIGTERM, exit 0."""
    git_remote.write("apps/all.yaml", manifests(1))
    sha = git_remote.commit_and_push("web x1")
    log = tmp_path / "agent.log"
    proc = start_agent(write_config(tmp_path, git_remote.url, clean_podman), fake_systemd, log)
    try:
        assert fake_systemd.wait_for("READY=1", 60), log.read_text()
        assert web_containers(clean_podman), "READY=1 came before the first pass had applied the revision"
        first_status = fake_systemd.lines("STATUS=")[0]
        assert first_status.startswith("STATUS=applied ") and sha in first_status, first_status
        ready_at = next(t for t, m in fake_systemd.messages if m == "READY=1")
        pings = fake_systemd.wait_for("WATCHDOG=1", 10, count=5)
        assert len(pings) >= 5, fake_systemd.messages
        times = [t for t, m in fake_systemd.messages if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(0.8 <= g <= 1.7 for g in gaps), gaps  # half of WATCHDOG_USEC=2 s, on the 0.5 s main-loop tick
        assert len(fake_systemd.lines("STATUS=")) >= 2  # the 2 s poll ran again: a STATUS= per pass
        assert any(m.startswith("STATUS=in-sync ") for m in fake_systemd.lines("STATUS="))
        assert fake_systemd.lines("READY=1") == ["READY=1"]  # once
        assert ready_at <= times[0] + 1.5  # pings run from the start; READY is not held back by them
        assert stop_agent(proc) == 0
        assert fake_systemd.wait_for("STOPPING=1", 5) == ["STOPPING=1"]
        stopping_at = next(t for t, m in fake_systemd.messages if m == "STOPPING=1")
        assert fake_systemd.messages[-1][0] >= stopping_at
        events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line.startswith("{")]
        assert events[-1] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_after_a_reboot_the_last_good_revision_comes_back_with_git_unreachable(
        clean_podman: Any, git_remote: GitRemote, tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    """Apply a revision; stop the agent; "reboot" the node: the Podman service stops and every
    pod is removed (as a reboot leaves pods that have no restart policy and no unit); Git is
    unreachable (the bare repository moved away). The agent starts again and puts the last
    good revision back from its local mirror, and says Git is unreachable."""
    git_remote.write("apps/all.yaml", manifests(1))
    git_remote.commit_and_push("web x1")
    git_remote.write("apps/all.yaml", manifests(2))
    good = git_remote.commit_and_push("web x2")
    cfg = write_config(tmp_path, git_remote.url, clean_podman)
    log = tmp_path / "agent.log"
    proc = start_agent(cfg, fake_systemd, log)
    try:
        assert fake_systemd.wait_for("READY=1", 60), log.read_text()
        assert len(wait_until(lambda: len(web_containers(clean_podman)) == 2 and web_containers(clean_podman), 30)) == 2
        assert stop_agent(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # the reboot: the service goes away, and with it every pod
    clean_podman.stop()
    clean_podman.podman("pod", "rm", "-f", "-a")
    clean_podman.start()
    assert web_containers(clean_podman) == []
    assert json.loads(clean_podman.podman("pod", "ps", "--format", "json").stdout or "[]") == []
    shutil.move(str(git_remote.bare), str(git_remote.bare.with_name("moved-away.git")))

    after = FakeSystemd()
    log2 = tmp_path / "agent-after-reboot.log"
    proc = start_agent(cfg, after, log2)
    try:
        assert after.wait_for("READY=1", 60), log2.read_text()
        status_line = after.lines("STATUS=")[0]
        assert status_line.startswith("STATUS=source-error ") and good in status_line, status_line
        running = wait_until(lambda: len(web_containers(clean_podman)) == 2 and web_containers(clean_podman), 30)
        assert len(running) == 2, log2.read_text()
        assert {c["Labels"]["io.gitops-agent.revision"].rsplit(":", 1)[-1] for c in running} == {good}
        st = subprocess.run([sys.executable, "-m", "gitops_agent", "status", "--config", str(cfg), "-o", "json"],
                            capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stderr
        doc = json.loads(st.stdout)
        assert doc["appliedRevision"].endswith(good)
        assert doc["condition"] == "Reconciling" and "Git source unavailable" in doc["message"], doc["message"]
        assert stop_agent(proc) == 0
        events = [json.loads(line) for line in log2.read_text().splitlines() if line.startswith("{")]
        if any(e["event"] == "watch" or e["event"] == "watch.unavailable" for e in events):  # a local path is watched
            assert [e["event"] for e in events if e["event"].startswith("watch")] == ["watch.unavailable"]
        assert events[-1]["event"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        after.close()


# --- the unit file ---------------------------------------------------------------------------


def parse_unit(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read_string(text)
    return unit


def test_shipped_unit_has_notify_watchdog_restart_and_hardening() -> None:
    unit = parse_unit(UNIT.read_text())
    svc = unit["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert svc["WatchdogSec"] == "60" and svc["Restart"] == "always" and svc["RestartSec"] == "5"
    assert int(svc["TimeoutStartSec"]) > 240  # Daemon.READY_DEADLINE: READY=1 always comes in time
    assert svc["ExecStart"] == "/usr/local/bin/gitops-agent run --config /etc/gitops-agent/config.yaml"
    assert svc["ProtectSystem"] == "strict" and svc["StateDirectory"] == "gitops-agent"
    assert svc["StateDirectoryMode"] == "0700"  # the state directory is private (issue 4, Secrets)
    assert "/run/podman" in svc["ReadWritePaths"]  # the Podman API socket stays reachable
    for key in ("NoNewPrivileges", "PrivateTmp"):
        assert svc[key] == "yes"
    assert "AF_UNIX" in svc["RestrictAddressFamilies"].split() and "AF_INET" in svc["RestrictAddressFamilies"].split()
    assert set(unit["Unit"]["After"].split()) >= {"network-online.target", "podman.socket"}
    assert set(unit["Unit"]["Wants"].split()) >= {"network-online.target", "podman.socket"}
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"  # Restart=always never gives up
    assert unit["Install"]["WantedBy"] == "multi-user.target"

    from gitops_agent.config import DEFAULT_STATE_DIR
    assert DEFAULT_STATE_DIR == "/var/lib/" + svc["StateDirectory"]  # the config's default is the unit's directory
    from gitops_agent.agent import Daemon
    assert Daemon.READY_DEADLINE < int(svc["TimeoutStartSec"])


def test_unit_command_prints_the_shipped_unit_for_this_installation(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "gitops-agent"
    assert exe.exists(), "the console script is installed next to the interpreter (pip install -e .)"
    cp = subprocess.run([str(exe), "unit"], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    shipped = UNIT.read_text()
    assert cp.stdout == shipped.replace("ExecStart=/usr/local/bin/gitops-agent ", f"ExecStart={exe} ")
    assert parse_unit(cp.stdout)["Service"]["ExecStart"].split()[0] == str(exe)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` when it exists (it does in CI: Debian 12 has systemd);
    otherwise the keys above are all that can be checked, and this says so by failing."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze not found: install systemd to verify the unit"
    unit = tmp_path / "gitops-agent.service"
    # verify checks that ExecStart's binary exists: point it at this installation's script
    exe = Path(sys.executable).parent / "gitops-agent"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/gitops-agent", str(exe)))
    cp = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    # systemd-analyze also loads the units it refers to; lines about other units are not ours
    ours = [line for line in (cp.stdout + cp.stderr).splitlines() if "gitops-agent" in line]
    assert cp.returncode == 0 and not ours, cp.stdout + cp.stderr
