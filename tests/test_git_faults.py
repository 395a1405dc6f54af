"""Git faults on real Git and real Podman (issue 4, "Git faults").

Each test first applies a good revision to a private Podman node, then breaks
the Git side: the remote is unreachable (moved away, a closed port), very slow
(a server that accepts and never answers), force-pushed, its branch deleted,
or replaced by an unrelated repository. Every time:

(a) `Agent.sync()` returns (bounded by `source.timeout`) with a clear result and
    error text, never a traceback;
(b) the node keeps running the last good revision (same container IDs), and
    drift is still repaired (a container removed by hand comes back);
(c) `status()` says why;
(d) once the fault is gone, the next sync applies the new head.

Intended semantics, like Flux's GitRepository: the agent follows the *branch
head*, not a history. A force-pushed branch or a repository replaced by an
unrelated one at the same URL is simply a new head: applied if valid, rejected
like any bad commit if not (the last good revision keeps running). Nothing is
required to descend from what was applied before.

The slow remote and the closed ports use `git daemon --inetd` behind a tiny
TCP listener on 127.0.0.1 (`GitServer`) that can serve, stall, or be closed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_agent import config as config_mod
from gitops_agent.agent import Agent, Daemon
from gitops_agent.status import status
from gitrepo import GitRemote, git
from podman_env import HTTPD, WEB1

NS = f"gf{os.getpid()}"
TIMEOUT = 2.0  # source.timeout for the slow-remote tests
SLACK = 3.0  # podman reads and drift repair on top of the Git calls


def manifests(replicas: int = 1, *, image: str = WEB1, broken: bool = False) -> str:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    deploy = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": "two" if broken else replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "web", "image": image, "command": HTTPD}],
            }},
        },
    }
    return yaml.safe_dump_all([ns, deploy], sort_keys=False)


def push(repo: GitRemote, message: str, **kw: Any) -> str:
    repo.write("apps/all.yaml", manifests(**kw))
    return repo.commit_and_push(message)


def make_agent(tmp_path: Path, url: str, svc: Any, timeout: float = 10.0, interval: str = "1s") -> Agent:
    cfg = config_mod.from_mapping({
        "source": {"url": url, "path": "apps", "interval": interval, "timeout": timeout},
        "nodes": [{"name": "local", "url": svc.url}],
        "stateDir": str(tmp_path / "state"),
        "readyTimeout": "30s",
    }, base_dir=tmp_path)
    return Agent(cfg)


def ids(svc: Any) -> dict[str, str]:
    """Managed app containers: name → ID, read back from Podman."""
    out = svc.podman("ps", "-a", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0]: c["Id"] for c in json.loads(out or "[]") if not c.get("IsInfra")}


def running(svc: Any) -> set[str]:
    out = svc.podman("ps", "--filter", "label=io.gitops-agent.managed=true", "--format", "json").stdout
    return {c["Names"][0] for c in json.loads(out or "[]") if not c.get("IsInfra")}


def rev(sha: str) -> str:
    return f"main@sha1:{sha}"


def sync_ok(agent: Agent, sha: str) -> Any:
    out = agent.sync()
    assert out.ok, (out.result, out.error)
    assert out.target == rev(sha) and agent.history.get("applied_sha") == sha
    return out


def check_outage(agent: Agent, svc: Any, good: str, good_ids: dict[str, str], result: str, *why: str,
                 repair: bool = True, bound: float | None = None, status_why: tuple[str, ...] | None = None) -> dict[str, Any]:
    """(a) a clear result, (b) the last good revision keeps running and drift is repaired, (c) status says why."""
    started = time.monotonic()
    out = agent.sync()
    took = time.monotonic() - started
    if bound is not None:
        assert took < bound, f"sync took {took:.1f}s (bound {bound:.1f}s): a Git timeout did not hold"
    assert out.result == result, (out.result, out.error)
    assert not out.ok and "Traceback" not in out.error
    for text in why:
        assert text in out.error, (text, out.error)
    assert out.target == rev(good), "the node is reconciled to the last good revision"
    assert ids(svc) == good_ids, "no container was touched"
    if repair:
        victim = sorted(good_ids)[0]
        svc.podman("rm", "-f", victim)
        out = agent.sync()
        assert out.result == result and out.actions > 0 and out.target == rev(good)
        assert running(svc) == set(good_ids), "drift repaired against the last good revision during the outage"
    st = status(agent)
    assert st["appliedRevision"] == rev(good)
    assert agent.history.get("applied_sha") == good
    for text in why if status_why is None else status_why:
        assert text in st["message"], (text, st["message"])
    return st


class GitServer:
    """git:// on 127.0.0.1: each connection is handed to `git daemon --inetd`, or held
    open without a byte (`stall`), optionally after serving `serve_first` connections."""

    def __init__(self, base: Path, port: int = 0) -> None:
        self.base = base
        self.stall = False
        self.serve_first = 0
        self.held: list[socket.socket] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, name: str = "remote.git") -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stall and self.serve_first <= 0:
                self.held.append(conn)  # accepted, never answered
                continue
            self.serve_first -= 1
            self.children.append(subprocess.Popen(
                ["git", "daemon", "--inetd", "--export-all", f"--base-path={self.base}"],
                stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL))
            conn.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not stop listening
        except OSError:
            pass
        self.sock.close()
        for c in self.held:
            c.close()
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.thread.join(timeout=5)


def git_processes(needle: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if needle in line and "ps -eo" not in line]


@pytest.fixture
def env(clean_podman: Any, git_remote: GitRemote, tmp_path: Path) -> Any:
    agents: list[Agent] = []

    def agent(url: str | None = None, **kw: Any) -> Agent:
        a = make_agent(tmp_path, url or git_remote.url, clean_podman, **kw)
        agents.append(a)
        return a

    yield clean_podman, git_remote, agent
    for a in agents:
        a.close()


# --- 1. remote unreachable ------------------------------------------------------------------------


def test_remote_moved_away_keeps_last_good_and_recovers(env: Any, tmp_path: Path) -> None:
    """The bare repository vanishes (moved away), then an empty directory sits at its path
    (an unmounted mount point), then it comes back with a new commit."""
    svc, repo, new_agent = env
    agent = new_agent()
    good = push(repo, "web v1")
    sync_ok(agent, good)
    good_ids = ids(svc)
    assert len(good_ids) == 1

    moved = tmp_path / "moved.git"
    repo.bare.rename(moved)
    why = f"'{repo.bare}' does not appear to be a git repository"
    st = check_outage(agent, svc, good, good_ids, "source-error", why)
    assert st["condition"] == "Reconciling" and st["message"].startswith("Git source unavailable: git ls-remote file://")
    assert f"nodes keep the last good revision {rev(good)}" in st["message"]

    # an empty directory at the path, and the agent restarted meanwhile: it starts, and the
    # last good revision (read from its local mirror, not from Git) is still reconciled
    repo.bare.mkdir()
    agent.close()
    restarted = new_agent()
    check_outage(restarted, svc, good, ids(svc), "source-error", why, repair=False)
    repo.bare.rmdir()

    # back, with a commit pushed while the agent could not see it
    moved.rename(repo.bare)
    kept = ids(svc)
    new = push(repo, "web x2", replicas=2)
    out = sync_ok(restarted, new)
    assert out.result == "applied"
    after = ids(svc)
    assert len(after) == 2 and set(kept.values()) <= set(after.values()), "scaled up; the running pod was kept"
    assert status(restarted)["condition"] == "Ready"


def test_closed_port_git_and_ssh_urls(env: Any, tmp_path: Path) -> None:
    """git:// whose server went away (connection refused), and back on the same port;
    ssh:// to a closed port: one clear line, no traceback, nothing applied."""
    svc, repo, new_agent = env
    server = GitServer(repo.bare.parent)
    port = server.port
    try:
        agent = new_agent(server.url())
        good = push(repo, "web v1")
        sync_ok(agent, good)
        good_ids = ids(svc)
    finally:
        server.close()
    st = check_outage(agent, svc, good, good_ids, "source-error",
                      f"git ls-remote git://127.0.0.1:{port}/remote.git: unable to connect to 127.0.0.1:", "Connection refused")
    assert st["condition"] == "Reconciling"

    new = push(repo, "web x2", replicas=2)
    server = GitServer(repo.bare.parent, port=port)
    try:
        assert sync_ok(agent, new).result == "applied"
        assert len(ids(svc)) == 2
    finally:
        server.close()

    # ssh:// to a port nobody listens on: a fresh agent (own state) with nothing applied yet
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    other = make_agent(tmp_path / "ssh", f"ssh://git@127.0.0.1:{closed}/remote.git", svc)
    try:
        started = time.monotonic()
        out = other.sync()
        assert time.monotonic() - started < 10
        assert out.result == "source-error" and out.target == "" and "Traceback" not in out.error
        assert out.error == f"git ls-remote ssh://git@127.0.0.1:{closed}/remote.git: ssh: connect to host 127.0.0.1 port {closed}: Connection refused"
        st = status(other)
        assert st["condition"] == "Reconciling" and "Connection refused" in st["message"] and "nothing applied yet" in st["message"]
    finally:
        other.close()
    assert len(ids(svc)) == 2, "the other agent touched nothing"


# --- 2. very slow remote ----------------------------------------------------------------------------


def test_slow_remote_times_out_within_bound(env: Any) -> None:
    """A server that accepts and never answers: ls-remote, and later fetch alone, are cut
    at source.timeout (2 s); git and its children are gone; the node is untouched."""
    svc, repo, new_agent = env
    server = GitServer(repo.bare.parent)
    try:
        agent = new_agent(server.url(), timeout=TIMEOUT)
        good = push(repo, "web v1")
        sync_ok(agent, good)
        good_ids = ids(svc)

        # every connection stalls: ls-remote is cut
        server.stall = True
        st = check_outage(agent, svc, good, good_ids, "source-error",
                          f"git ls-remote {server.url()}: timed out after {TIMEOUT:g}s", bound=2 * TIMEOUT + SLACK)
        assert st["message"].startswith("Git source unavailable:")
        assert git_processes(f"127.0.0.1:{server.port}") == [], "git (and its children) were killed"
        good_ids = ids(svc)  # after the drift repair

        # ls-remote answers (a new head), the fetch that follows stalls
        new = push(repo, "web x2", replicas=2)
        server.serve_first = 1
        started = time.monotonic()
        out = agent.sync()
        assert time.monotonic() - started < 2 * TIMEOUT + SLACK
        assert out.result == "source-error" and out.head == rev(new) and out.target == rev(good)
        assert out.error == f"git fetch {server.url()}: timed out after {TIMEOUT:g}s"
        assert ids(svc) == good_ids
        st = status(agent)
        assert st["attemptedRevision"] == rev(new) and st["appliedRevision"] == rev(good)
        assert "git fetch" in st["message"] and "timed out" in st["message"]

        # the server answers again: the new head is applied
        server.stall = False
        assert sync_ok(agent, new).result == "applied"
        assert len(ids(svc)) == 2 and status(agent)["condition"] == "Ready"
    finally:
        server.close()
    assert git_processes(f"127.0.0.1:{server.port}") == []


# --- 3. force-pushed history --------------------------------------------------------------------------


def rewrite(repo: GitRemote, message: str, **kw: Any) -> str:
    """Replace the branch with a new, unrelated one-commit history and force-push it."""
    git("checkout", "-q", "--orphan", "rewrite", cwd=repo.workdir)
    git("rm", "-rq", "--cached", ".", cwd=repo.workdir)
    repo.write("apps/all.yaml", manifests(**kw))
    git("add", "-A", cwd=repo.workdir)
    git("commit", "-q", "-m", message, cwd=repo.workdir)
    git("branch", "-M", "rewrite", repo.branch, cwd=repo.workdir)
    git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{repo.branch}", cwd=repo.workdir)
    return git("rev-parse", "HEAD", cwd=repo.workdir)


def test_force_pushed_history(env: Any) -> None:
    """Rewritten to unrelated valid commits: applied. Rewritten to invalid ones: rejected,
    the last good revision keeps running (and is repaired); Git then unreachable: status
    says Git, not "fix it with a new commit". Force-pushed back to the applied commit: Ready."""
    svc, repo, new_agent = env
    agent = new_agent()
    push(repo, "web v1")
    old = push(repo, "web v1 again")
    sync_ok(agent, old)

    valid = rewrite(repo, "rewritten: web x2", replicas=2)
    with pytest.raises(RuntimeError):  # not a descendant: history was rewritten
        git("merge-base", "--is-ancestor", old, valid, cwd=repo.workdir)
    out = sync_ok(agent, valid)
    assert out.result == "applied"
    good_ids = ids(svc)
    assert len(good_ids) == 2
    assert agent.git.has(old), "the previous stable commit stays pinned in the mirror"

    bad = rewrite(repo, "rewritten: broken", broken=True)
    st = check_outage(agent, svc, valid, good_ids, "rejected", "spec.replicas", status_why=(f"revision {rev(bad)} rejected",))
    assert st["condition"] == "Stalled" and st["attemptedRevision"] == rev(bad)
    assert any("apps/all.yaml" in p for p in st["problems"])

    # rejected head, then Git gone: status speaks of Git
    moved = repo.bare.with_name("moved.git")
    repo.bare.rename(moved)
    st = check_outage(agent, svc, valid, ids(svc), "source-error", "does not appear to be a git repository", repair=False)
    assert st["condition"] == "Reconciling" and "rejected" not in st["message"]
    moved.rename(repo.bare)
    assert agent.sync().result == "rejected"  # the same bad head: not retried, still rejected

    # force-pushed back to exactly the applied commit: nothing to do, Ready
    git("push", "-q", "--force", "origin", f"{valid}:refs/heads/{repo.branch}", cwd=repo.workdir)
    before = ids(svc)
    out = agent.sync()
    assert out.result == "in-sync" and out.actions == 0 and ids(svc) == before
    assert status(agent)["condition"] == "Ready"

    # and on to another unrelated valid history
    again = rewrite(repo, "rewritten again: web x3", replicas=3)
    assert sync_ok(agent, again).result == "applied" and len(ids(svc)) == 3


# --- 4. branch deleted -------------------------------------------------------------------------------


def test_branch_deleted_and_recreated(env: Any) -> None:
    svc, repo, new_agent = env
    agent = new_agent()
    good = push(repo, "web v1")
    sync_ok(agent, good)
    good_ids = ids(svc)

    git("update-ref", "-d", f"refs/heads/{repo.branch}", cwd=repo.bare)
    st = check_outage(agent, svc, good, good_ids, "source-error", f"branch 'main' not found in file://{repo.bare}")
    assert st["condition"] == "Reconciling"

    new = push(repo, "web x2", replicas=2)  # pushing re-creates the branch
    assert sync_ok(agent, new).result == "applied" and len(ids(svc)) == 2


# --- 5. repository replaced ---------------------------------------------------------------------------


def test_repository_replaced_by_unrelated_one(env: Any, tmp_path: Path) -> None:
    """Same URL, a new repository with its own history: the agent follows its head (Flux's
    semantics). While it has no branch yet: a clear error, last good keeps running. Its
    invalid head: rejected. The old stable commits stay pinned in the mirror."""
    svc, repo, new_agent = env
    agent = new_agent()
    good = push(repo, "web v1")
    sync_ok(agent, good)
    good_ids = ids(svc)

    shutil.rmtree(repo.bare)
    git("init", "-q", "--bare", "-b", "main", str(repo.bare))  # new, still empty
    check_outage(agent, svc, good, good_ids, "source-error", "branch 'main' not found", repair=False)

    other = GitRemote(tmp_path / "other")
    shutil.rmtree(repo.bare)
    other.bare.rename(repo.bare)
    git("remote", "set-url", "origin", str(repo.bare), cwd=other.workdir)
    bad = push(other, "unrelated: broken", broken=True)
    st = check_outage(agent, svc, good, good_ids, "rejected", "spec.replicas", status_why=(f"revision {rev(bad)} rejected",))
    assert st["condition"] == "Stalled" and st["attemptedRevision"] == rev(bad)

    new = push(other, "unrelated: web x2", replicas=2)
    assert sync_ok(agent, new).result == "applied" and len(ids(svc)) == 2
    assert agent.git.has(good), "the old stable commit is still readable (rollback target)"
    assert [s["sha"] for s in agent.history.get("stable", [])][-2:] == [good, new]


# --- 6. daemon backoff --------------------------------------------------------------------------------


def test_daemon_backs_off_while_git_is_unreachable_and_resets_after_success(env: Any, tmp_path: Path) -> None:
    """Daemon._pass with Git unreachable: delays 2, 4, 8 … capped at max(300 s, interval);
    a success resets to the interval (±10% jitter); a rejected commit does not back off."""
    svc, repo, new_agent = env
    agent = new_agent(interval="1s")
    events: list[tuple[str, dict[str, Any]]] = []
    daemon = Daemon(agent, lambda event, level="info", **f: events.append((event, f)))  # scheduler never started
    good = push(repo, "web v1")

    def delays() -> list[float]:
        return [f["seconds"] for e, f in events if e == "backoff"]

    daemon._pass()
    assert daemon.failures == 0 and agent.history.get("applied_sha") == good and delays() == []

    moved = repo.bare.with_name("moved.git")
    repo.bare.rename(moved)
    for _ in range(4):
        daemon._pass()
    assert delays() == [2, 4, 8, 16] and daemon.failures == 4
    assert [e for e, _ in events if e == "sync.crashed"] == [], "a Git outage is a result, not a crash"
    assert agent.history.get("last_result")["result"] == "source-error"
    assert [daemon._next_delay(False) for _ in range(6)] == [32, 64, 128, 256, 300, 300]  # capped

    moved.rename(repo.bare)
    new = push(repo, "web x2", replicas=2)
    daemon._pass()
    assert daemon.failures == 0 and agent.history.get("applied_sha") == new and len(delays()) == 4
    assert all(0.9 <= daemon._next_delay(True) <= 1.1 for _ in range(20))

    # a bad commit is not retried faster: no backoff, it waits for Git to move
    push(repo, "broken", broken=True)
    daemon._pass()
    assert daemon.failures == 0 and len(delays()) == 4
    # and the cap follows a long interval
    slow = make_agent(tmp_path / "slow", repo.url, svc, interval="10m")
    try:
        d = Daemon(slow, lambda *a, **k: None)
        assert [d._next_delay(False) for _ in range(11)][-3:] == [512, 600, 600]
    finally:
        slow.close()


# --- 7. a remote that now asks for credentials ---------------------------------------------------


def test_remote_asking_for_credentials_fails_at_once_even_on_a_terminal(tmp_path: Path) -> None:
    """A repository deleted or made private on a forge answers 401: git would prompt for a
    user name on the terminal (here a real pty, the agent's controlling terminal) and sit
    there until the timeout. It fails at once with the reason instead."""
    import fcntl
    import pty
    import sys
    import termios
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Unauthorized(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/gone.git"
    script = (
        "from pathlib import Path\n"
        "from gitops_agent.source import GitSource, Location\n"
        "from gitops_agent.errors import SourceUnavailable\n"
        f"g = GitSource(Location({url!r}, 'main', ''), Path({str(tmp_path / 'state')!r}), timeout=8)\n"
        "try:\n    g.remote_head()\nexcept SourceUnavailable as e:\n    print(e)\n"
    )
    master, slave = pty.openpty()
    try:
        started = time.monotonic()
        cp = subprocess.run([sys.executable, "-c", script], stdin=slave, capture_output=True, text=True, timeout=60,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
                            cwd=Path(__file__).resolve().parent.parent)
        took = time.monotonic() - started
    finally:
        os.close(slave)
        os.close(master)
        httpd.shutdown()
    assert cp.returncode == 0 and "Traceback" not in cp.stderr, cp.stderr
    assert cp.stdout.strip() == f"git ls-remote {url}: could not read Username for '{url.rsplit('/', 1)[0]}': terminal prompts disabled"
    assert took < 6, f"took {took:.1f}s: git waited for a password"
