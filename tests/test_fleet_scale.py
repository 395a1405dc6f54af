"""The fleet-scale benchmark (benchmarks/fleet.py, issue 14): its simulated agents send what `git ls-remote` sends,
its fleet schedule has the interval and jitter it claims, and `python -m benchmarks.fleet --quick` runs against a
real `git daemon` and a real `git http-backend` behind lighttpd on loopback and writes its block. Never asserts on
a time: the figures live in BENCHMARKS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fleet  # noqa: E402


def test_schedule_keeps_every_agent_on_its_interval_within_the_jitter() -> None:
    """Each simulated agent polls every interval ±10 %, its first poll at a random phase inside one interval."""
    due = fleet.schedule(agents=50, interval=2.0, seconds=20.0, seed=1)
    assert due == sorted(due) and all(0 <= at < 20.0 for at in due)
    assert 50 * 9 <= len(due) <= 50 * 11  # 20 s / (2 s ± 10 %) polls each
    assert fleet.schedule(agents=50, interval=2.0, seconds=20.0, seed=1) == due  # reproducible from the seed
    firsts = sorted(due)[:50]
    assert max(firsts) < 2.0


def test_schedule_gaps_of_one_agent_stay_inside_the_jitter() -> None:
    """With one agent the gaps between its polls are its own intervals: all within [0.9, 1.1] × interval."""
    due = fleet.schedule(agents=1, interval=10.0, seconds=1000.0, seed=3)
    gaps = [b - a for a, b in zip(due, due[1:])]
    assert len(gaps) >= 90 and all(9.0 <= g <= 11.0 for g in gaps)
    assert len({round(g, 6) for g in gaps}) > 1  # jittered, not a fixed period


def test_read_section_splits_pkt_lines_at_the_flush() -> None:
    """A section ends at 0000; what follows is handed back for the next read."""
    import socket

    a, b = socket.socketpair()
    with a, b:
        b.sendall(fleet.pkt(b"version 2\n") + b"0000" + fleet.pkt(b"tail"))
        b.shutdown(socket.SHUT_WR)
        section, rest = fleet.read_section(a, bytearray())
    assert section == b"000eversion 2\n" and bytes(rest) == b"0008tail"


def test_the_simulated_agent_sends_the_bytes_git_ls_remote_sends(tmp_path: Path) -> None:
    """Real git: GIT_TRACE_PACKET of `git ls-remote URL refs/heads/main` against a real git daemon shows the same
    ls-refs request, packet for packet, as the simulated agent's; and the simulated poll gets the refs."""
    srv = tmp_path / "srv"
    srv.mkdir()
    repo = fleet.make_repository(srv)
    with fleet.serving(fleet.start_git_daemon, srv, repo) as server:
        cp = subprocess.run(["git", "-c", "protocol.version=2", "ls-remote", "--", server.url, "refs/heads/main"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "GIT_TRACE_PACKET": "1"})
        server.poll()  # raises unless the answer lists refs/heads/main
    assert cp.returncode == 0 and cp.stdout.endswith("\trefs/heads/main\n"), cp.stderr
    sent = [line.split("ls-remote> ", 1)[1] for line in cp.stderr.splitlines() if "ls-remote> " in line]
    request = sent[sent.index("command=ls-refs"):]
    request = request[:request.index("0000") + 1]
    assert request == _packets(fleet.ls_refs())


def _packets(data: bytes) -> list[str]:
    """pkt-lines as GIT_TRACE_PACKET prints them: the text without its newline, or 0000 / 0001."""
    out, at = [], 0
    while at < len(data):
        size = int(data[at:at + 4], 16)
        out.append(data[at:at + 4].decode() if size < 4 else data[at + 4:at + size].decode().rstrip("\n"))
        at += max(size, 4)
    return out


def test_quick_fleet_benchmark_measures_both_servers_and_writes_its_block(tmp_path: Path) -> None:
    """`python -m benchmarks.fleet --quick`: every phase against both servers, no failed poll, a server CPU per poll
    measured (not zero: the upload-packs were reaped into the server process), the block written."""
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nkept\n")
    cp = subprocess.run([sys.executable, "-m", "benchmarks.fleet", "--quick", "--out", str(out)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    rows: dict[str, list[str]] = defaultdict(list)
    for line in cp.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 5 and cells[0] == "fleet":
            rows[cells[1].split(":")[0]].append(cells[2])
    assert set(rows) == {"git daemon", "git http-backend"}, cp.stdout
    for server, results in rows.items():
        assert len(results) == 5, (server, results)  # calibration, 1 concurrency, per core, nodes, 1 fleet phase
        assert all(r.endswith("0 failed") for r in results if "failed" in r), (server, results)
        assert sum("failed" in r for r in results) == 3
        assert "server CPU 0.0 ms" not in results[0] and "server CPU" in results[0], results[0]
        assert int(results[3].replace(",", "")) > 0
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and fleet.BEGIN in text and fleet.END in text


def test_canary_promotion_through_git_with_one_config_per_node_group(tmp_path: Path) -> None:
    """README's canary pattern on real Git through the agent's own config loader and source: a node group whose
    config says `branch: canary` sees a commit pushed to `canary` while `main` nodes do not; after
    `git merge --ff-only canary` on main the main nodes see the very commit (same ID) the canaries ran."""
    from gitops_agent import config as config_mod
    from gitops_agent.source import GitSource, resolve
    from gitrepo import GitRemote, git

    repo = GitRemote(tmp_path / "repo")
    for f in sorted((ROOT / "sample-repo").rglob("*.yaml")):
        repo.write(f"clusters/edge/{f.relative_to(ROOT / 'sample-repo')}", f.read_text())
    v1 = repo.commit_and_push("web 1.0")
    git("push", "-q", "origin", "HEAD:refs/heads/canary", cwd=repo.workdir)

    def group(branch: str) -> tuple[GitSource, str]:
        cfg_file = tmp_path / f"agent-{branch}.yaml"
        cfg_file.write_text(f"source: {{url: {repo.url}, branch: {branch}, path: clusters/edge}}\n"
                            f"stateDir: {tmp_path / ('state-' + branch)}\n")
        cfg = config_mod.load(str(cfg_file))
        return GitSource(resolve(cfg.source), cfg.state_dir), cfg.source.branch

    (canary, c_branch), (stable, s_branch) = group("canary"), group("main")
    assert (c_branch, s_branch) == ("canary", "main")
    git("checkout", "-q", "-b", "canary", cwd=repo.workdir)
    deploy = "clusters/edge/web/deployment.yaml"
    repo.write(deploy, repo.path(deploy).read_text().replace("web:1.0", "web:1.1"))
    git("commit", "-qam", "web 1.1", cwd=repo.workdir)
    git("push", "-q", "origin", "HEAD:refs/heads/canary", cwd=repo.workdir)
    v2 = git("rev-parse", "HEAD", cwd=repo.workdir)
    assert (canary.remote_head(), stable.remote_head()) == (v2, v1)  # only the canary group moves
    canary.fetch(v2)
    [text] = [f.data.decode() for f in canary.files(v2) if f.path.endswith("web/deployment.yaml")]
    assert "web:1.1" in text
    git("checkout", "-q", "main", cwd=repo.workdir)
    git("merge", "-q", "--ff-only", "canary", cwd=repo.workdir)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=repo.workdir)
    assert stable.remote_head() == v2  # promoted: the tested commit itself, not a copy
    assert canary.location.revision(v2) == f"canary@sha1:{v2}" and stable.location.revision(v2) == f"main@sha1:{v2}"
