"""The daemon's event-driven copy of each node's live state (`gitops_agent.informer`): pure parts from
literals, then on real Podman: no list call in a steady-state pass, a hand removal repaired by a running
daemon long before its poll, a broken stream re-listed, and a change the stream never saw found by resync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from gitops_agent import config as config_mod
from gitops_agent import informer
from gitops_agent.agent import Agent
from gitops_agent.errors import NodeError
from gitops_agent.informer import EXPECTED_FOR, Known, classify, differences, written_name
from gitops_agent.live import LiveContainer, LivePod, LiveState
from gitrepo import git
from podman_env import WEB1

POD = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: solo
  labels: {{app: solo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {WEB1}
      command: ["sleep", "1000"]
"""


def _event(kind: str, action: str, name: str, **attrs: str) -> dict[str, Any]:
    return {"Type": kind, "Action": action, "Actor": {"ID": "x", "Attributes": {"name": name, **attrs}}}


MANAGED = {"io.gitops-agent.managed": "true"}
KNOWN = Known(pods=frozenset({"solo"}), pod_ids={"p1": "solo"}, networks=frozenset({"gitops-n"}),
              volumes=frozenset({"data"}), secrets=frozenset({"gitops-s"}), health={"solo_main": "healthy"})


def never(_name: str) -> bool:
    return False


# --- pure ------------------------------------------------------------------------------


def test_a_managed_container_stopped_by_someone_else_is_drift_and_the_agents_own_is_not() -> None:
    """died/stop/kill/remove of a managed container is drift, unless the agent wrote to it or its pod a moment ago."""
    for action in ("died", "stop", "kill", "remove", "pause", "oom"):
        assert classify(_event("container", action, "solo_main", podId="p1", **MANAGED), KNOWN, never) == "drift"
    mine: Callable[[str], bool] = lambda name: name == "solo"
    assert classify(_event("container", "died", "solo_main", podId="p1", **MANAGED), KNOWN, mine) == "changed"
    # a "died" event carries no pod id: the pod is found from the container's name
    assert classify(_event("container", "died", "solo_main", podId="", **MANAGED), KNOWN, mine) == "changed"
    assert classify(_event("container", "start", "solo_main", **MANAGED), KNOWN, never) == "changed"


def test_events_that_change_no_listed_state_or_no_managed_object_are_ignored() -> None:
    """Probe execs, unmanaged containers, unknown pods going away and image pushes leave the copy current."""
    assert classify(_event("container", "exec_died", "solo_main", **MANAGED), KNOWN, never) == "ignore"
    assert classify(_event("container", "died", "someone_else"), KNOWN, never) == "ignore"
    assert classify(_event("pod", "remove", "not-ours"), KNOWN, never) == "ignore"
    assert classify(_event("image", "push", "x"), KNOWN, never) == "ignore"
    assert classify(_event("container", "health_status", "solo_main", health_status="healthy", **MANAGED),
                    KNOWN, never) == "ignore"
    assert classify(_event("container", "health_status", "solo_main", health_status="unhealthy", **MANAGED),
                    KNOWN, never) == "changed"


def test_objects_the_copy_holds_and_new_objects_mark_it_stale() -> None:
    """A known pod/network/volume removed by hand is drift; a created one (maybe managed) or an unknown type
    re-lists."""
    assert classify(_event("pod", "remove", "solo"), KNOWN, never) == "drift"
    assert classify(_event("pod", "remove", "solo"), KNOWN, lambda n: True) == "changed"
    assert classify(_event("network", "remove", "gitops-n"), KNOWN, never) == "drift"
    assert classify(_event("volume", "remove", "data"), KNOWN, never) == "drift"
    assert classify(_event("pod", "create", "new"), KNOWN, never) == "changed"
    assert classify(_event("image", "pull", "localhost/x:1"), KNOWN, never) == "changed"
    assert classify(_event("system", "reset", ""), KNOWN, never) == "changed"
    assert classify(_event("container", "died", "0bac4fb56c82-infra", **MANAGED), KNOWN, never) == "changed"


def test_written_name_is_the_object_a_write_path_names() -> None:
    """The agent's writes name their object in the path, except creates."""
    assert written_name("/pods/solo/stop") == "solo"
    assert written_name("/containers/solo_main/start") == "solo_main"
    assert written_name("/pods/solo") == "solo"
    assert written_name("/pods/create") is None
    assert written_name("/exec/abc/start") is None


def test_differences_name_each_object_that_changed_and_nothing_else() -> None:
    """One line per object gone, appeared or changed; equal copies differ in nothing."""
    c = LiveContainer("solo_main", "c1", WEB1, "running", "")
    old = LiveState("n", pods={"solo": LivePod("solo", "p1", "Running", MANAGED, (c,))},
                    volumes={"data": {}}, images=frozenset({"a"}))
    stopped = LiveContainer("solo_main", "c1", WEB1, "exited", "", exit_code=137)
    new = LiveState("n", pods={"solo": LivePod("solo", "p1", "Exited", MANAGED, (stopped,))},
                    networks={"gitops-n": {}}, images=frozenset({"a"}))
    assert differences(old, old) == []
    assert differences(old, new) == ["pod solo changed", "network gitops-n appeared", "volume data gone"]


# --- real Podman -----------------------------------------------------------------------


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "pod.yaml").write_text(POD)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "solo", cwd=repo)
    return repo


def _config(tmp_path: Path, svc: Any, **extra: Any) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"url": str(_repo(tmp_path)), "interval": "10m"},
                                   "nodes": [{"name": "local", "url": svc.url}], "stateDir": str(tmp_path / "state"),
                                   "readyTimeout": "30s", **extra}))
    return cfg


def _running(svc: Any) -> dict[str, str]:
    out = svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c["Id"] for c in json.loads(out or "[]") if not c.get("IsInfra")}


def _state(svc: Any, name: str) -> str:
    return str(svc.podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip())


def _wait(check: Callable[[], Any], seconds: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_a_steady_state_pass_makes_no_list_call_and_a_hand_removal_is_reported(clean_podman: Any,
                                                                                tmp_path: Path) -> None:
    """With the copy current, a no-op pass lists nothing; the agent's own writes report no drift; a
    container removed by hand does, for its node."""
    drift: list[str] = []
    agent = Agent(config_mod.load(str(_config(tmp_path, clean_podman))))
    node = agent.nodes["local"]
    watches = informer.watch(agent.nodes, 600.0, drift.append, agent.log)
    try:
        assert agent.sync().result == "applied"
        # the watch opened before the pass: while the pass writes, a stream that broke reconnects with backoff
        # (capped at 30 s), so the wait is that long; the no-list assertions below are what this test is about
        _wait(lambda: watches["local"].trusted, 30, "the stream opened and re-listed")
        time.sleep(EXPECTED_FOR)  # the last events of the pass's own writes have arrived
        assert drift == []
        agent.sync()  # lists once: the copy is stale after the pass's writes
        before = node.lists
        assert agent.sync().result == "in-sync"
        assert node.lists == before
        node.cache = None
        agent.sync()
        assert node.lists - before == 6  # the same pass without the copy: one list per object type
        node.cache = watches["local"]

        clean_podman.podman("rm", "-f", "-t", "0", "solo_main")
        _wait(lambda: drift, 10, "a drift report")
        assert set(drift) == {"local"}
        assert "solo" not in [p for p, pod in agent.nodes["local"].read().pods.items() if pod.ready]
    finally:
        informer.unwatch(agent.nodes, watches)
        agent.close()


def _daemon(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "gitops_agent", "run", "--config", str(cfg), "--log-format", "json"],
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


def _events(log: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [e for e in lines if e.get("event") == event]


def test_a_running_daemon_repairs_hand_changes_from_events_and_reconnects_and_resync_finds_the_rest(
        clean_podman: Any,
                                                                                   tmp_path: Path) -> None:
    """The poll is 10 minutes: a container removed by hand runs again within seconds (its event); a pod
    removed while the Podman service was down is found by the re-list after the stream is back and
    repaired; a container paused behind the stream's back (no event written) is found by the resync."""
    svc = clean_podman
    log = tmp_path / "agent.log"
    proc = _daemon(_config(tmp_path, svc, resyncInterval="4s"), log)
    try:
        _wait(lambda: _running(svc), 30, "the pod deployed")
        _wait(lambda: _events(log, "sync"), 30, "the first pass recorded")
        first = _running(svc)["solo_main"]
        time.sleep(EXPECTED_FOR + 0.5)

        svc.podman("rm", "-f", "-t", "0", "solo_main")
        took = _wait(lambda: _running(svc).get("solo_main", first) != first, 10, "repaired after rm -f")
        assert took < 10  # the poll is 10 minutes away: only the event explains this
        assert _events(log, "drift.event")
        second = _running(svc)["solo_main"]
        time.sleep(EXPECTED_FOR + 0.5)

        svc.stop()
        svc.podman("pod", "rm", "-f", "-t", "0", "solo")  # while the stream is down
        svc.start()
        _wait(lambda: _running(svc).get("solo_main", second) != second, 20, "repaired after the re-list")
        assert _events(log, "informer.broken")
        assert any(e["why"] == "reconnect" for e in _events(log, "informer.differences"))
        third = _running(svc)["solo_main"]
        time.sleep(EXPECTED_FOR + 0.5)

        assert not [e for e in _events(log, "informer.differences") if e["missed"]]  # events told everything so far
        seen = len(_events(log, "informer.differences"))
        # a pause (no container exits, so no event from conmon either) with the event log turned off: only the
        # resync can see it
        svc.podman("--events-backend", "none", "pause", "solo_main")
        drifts = len(_events(log, "drift.event"))
        later = lambda: [e for e in _events(log, "informer.differences")[seen:] if e["why"] == "resync"]  # noqa: E731
        _wait(later, 20, "the resync")
        resynced = later()
        # (missed=true when the copy was current; false when the pass's last events had just made it stale)
        assert resynced[0]["first"] == "pod solo changed" and resynced[0]["count"] == 1
        assert len(_events(log, "drift.event")) == drifts  # no event told the agent
        # the pass the resync started unpauses it (a paused container is drift: issue 14)
        _wait(lambda: _state(svc, "solo_main") == "running", 20, "the paused container unpaused")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_copy_follows_an_ssh_node_through_its_tunnel(podman_service: Any, tmp_path: Path) -> None:
    """Over ssh:// the event stream rides the node's one SSH connection: a steady pass lists nothing and a
    container removed by hand is reported for that node."""
    from ssh_env import SshNode

    ssh = SshNode("inf")
    try:
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(yaml.safe_dump({
            "source": {"url": str(_repo(tmp_path)), "interval": "10m"},
            "nodes": [{"name": ssh.name, "url": ssh.url, "identity": str(ssh.client_key), "connectTimeout": "3s"}],
            "knownHosts": str(ssh.known_hosts(tmp_path / "known_hosts")), "stateDir": str(tmp_path / "state"),
            "readyTimeout": "30s"}))
        drift: list[str] = []
        agent = Agent(config_mod.load(str(cfg)))
        node = agent.nodes[ssh.name]
        watches = informer.watch(agent.nodes, 600.0, drift.append, agent.log)
        try:
            assert agent.sync().result == "applied"
            _wait(lambda: watches[ssh.name].trusted, 20, "the stream opened through the tunnel")
            time.sleep(EXPECTED_FOR)
            agent.sync()
            before = node.lists
            assert agent.sync().result == "in-sync"
            assert node.lists == before and drift == []
            ssh.svc.podman("rm", "-f", "-t", "0", "solo_main")
            _wait(lambda: drift, 10, "a drift report over ssh")
            assert set(drift) == {ssh.name} and node.handshakes == 1
        finally:
            informer.unwatch(agent.nodes, watches)
            agent.close()
    finally:
        ssh.close()


def test_the_copy_follows_a_tcp_node(clean_podman: Any, tmp_path: Path) -> None:
    """tcp:// too: a second API service on the same storage, on a loopback port; the copy becomes current
    from its stream and a pod removed by hand is reported."""
    import socket

    from gitops_agent.podman import Node

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(clean_podman.command("system", "service", "--time=0", f"tcp://127.0.0.1:{port}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = Node("tcp", f"tcp://127.0.0.1:{port}", timeout=10)
    drift: list[str] = []
    inf = informer.Informer(node, 600.0, drift.append, lambda *a, **k: None)
    try:
        _wait(lambda: _pings(node), 20, "the tcp service answering")
        clean_podman.podman("pod", "create", "--name", "tcp-pod", "--label", "io.gitops-agent.managed=true")
        node.cache = inf
        inf.start()
        _wait(lambda: inf.trusted, 20, "the stream opened over tcp")
        assert "tcp-pod" in node.read().pods
        before = node.lists
        node.read()
        assert node.lists == before
        clean_podman.podman("pod", "rm", "-f", "tcp-pod")
        _wait(lambda: drift, 10, "a drift report over tcp")
        assert "tcp-pod" not in node.read().pods
    finally:
        inf.close()
        node.close()
        proc.terminate()
        proc.wait(timeout=30)


def _pings(node: Any) -> bool:
    try:
        node.ping()
        return True
    except NodeError:
        return False
