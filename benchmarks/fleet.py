"""`python -m benchmarks.fleet`: the Git server side of "an agent on every node" (issue 14, "Fleet scale").

Each node's agent polls the repository with `git ls-remote` (Git protocol v2: one `ls-refs` command, no pack data
when nothing changed). This measures what those polls cost the server, on this machine: a `git daemon` (git://)
and `git http-backend` behind lighttpd (smart HTTP: two CGI requests per poll), both on 127.0.0.1, serving a bare
repository with `main`, `canary` and 20 release tags.

Three phases per server, each bounded in time and in polls, so the run stops by itself:

1. calibration: real `git ls-remote URL refs/heads/main` processes, one after another (the agent's own command);
2. saturation: C simulated agents in a closed loop (each sends the exact bytes `git ls-remote` sends, captured with
   GIT_TRACE_PACKET, from a thread; no `git` process, so the clients' CPU stays small on a 2-core machine);
3. fleet: an open loop of simulated agents polling at a fixed interval with ±10 % jitter, at a fraction of the
   capacity phase 2 measured, reporting the poll latency (from the due time, so queueing counts) and the server's
   CPU. Time is compressed: what matters to the server is the arrival rate, so R polls/s stand for 30 × R nodes
   polling every 30 s.

Server CPU is utime+stime+cutime+cstime of the server process from /proc (every `git upload-pack` /
`git http-backend` it ran has been reaped into it), over the phase. "Polls/s per core" is 1 / (CPU s per poll).
Results go to the fleet block of BENCHMARKS.md (between `<!-- fleet:begin -->` and `<!-- fleet:end -->`).
`--quick` (0.5 s phases, one concurrency) is the CI smoke (tests/test_fleet_scale.py); the default takes ~3 min.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path

from ._env import ROOT, Row, fmt_s, machine_info
from .__main__ import table

BEGIN, END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
NODE_INTERVAL = 30.0  # seconds: the agent's default `source.interval`
JITTER = 0.1  # ±10 % of the interval, uniform

Poll = Callable[[], None]


def pkt(data: bytes) -> bytes:
    """One pkt-line: 4 hex digits of length (header included), then the data."""
    return b"%04x" % (len(data) + 4) + data


@cache
def git_agent() -> bytes:
    """`git/2.39.5`: what the installed Git says it is in the `agent=` capability."""
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True, timeout=30).stdout
    return b"git/" + out.split()[2].encode()


def ls_refs() -> bytes:
    """The ls-refs request `git ls-remote URL refs/heads/main` sends (protocol v2; the pattern is matched
    client-side, so no ref-prefix is sent and the server lists every ref). tests/test_fleet_scale.py compares
    it with what the installed `git` sends."""
    return (pkt(b"command=ls-refs\n") + pkt(b"agent=" + git_agent() + b"\n") + pkt(b"object-format=sha1\n")
            + b"0001" + pkt(b"peel\n") + pkt(b"symrefs\n") + pkt(b"unborn\n") + b"0000")


def read_section(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytearray]:
    """Read pkt-lines after `buf` until a flush packet (0000) ends a section: (the section, what follows it)."""
    while True:
        at = 0
        while at + 4 <= len(buf):
            size = int(buf[at:at + 4], 16)
            if size == 0:
                return bytes(buf[:at]), buf[at + 4:]
            if size < 4 or at + size > len(buf):
                break
            at += size
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection inside a pkt-line section")
        buf += chunk


def git_poll(port: int, repo: str) -> Poll:
    """A poll over git://: the capability advertisement, one ls-refs, the refs, a flush; then close."""
    hello = pkt(b"git-upload-pack /" + repo.encode() + b"\0host=127.0.0.1:%d\0\0version=2\0" % port)
    request = ls_refs()

    def poll() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(hello)
            caps, rest = read_section(sock, bytearray())
            if b"ls-refs" not in caps:
                raise ConnectionError("the server does not offer ls-refs (protocol v2)")
            sock.sendall(request)
            refs, _ = read_section(sock, rest)
            sock.sendall(b"0000")
        if b"refs/heads/main" not in refs:
            raise ConnectionError("ls-refs: no refs/heads/main in the answer")
    return poll


def http_poll(port: int, repo: str) -> Poll:
    """A poll over smart HTTP v2: GET info/refs (capabilities), POST git-upload-pack (ls-refs), one connection."""
    headers = {"Git-Protocol": "version=2", "User-Agent": git_agent().decode()}
    request = ls_refs()
    post = {**headers, "Content-Type": "application/x-git-upload-pack-request",
            "Accept": "application/x-git-upload-pack-result"}

    def poll() -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", f"/git/{repo}/info/refs?service=git-upload-pack", headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            if answer.status != 200 or b"version 2" not in body:
                raise ConnectionError(f"info/refs: HTTP {answer.status}")
            conn.request("POST", f"/git/{repo}/git-upload-pack", body=request, headers=post)
            answer = conn.getresponse()
            body = answer.read()
            if answer.status != 200 or b"refs/heads/main" not in body:
                raise ConnectionError(f"git-upload-pack: HTTP {answer.status}")
        finally:
            conn.close()
    return poll


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of `pid` (its reaped children included), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A Git server process on 127.0.0.1 and how to poll it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    poll: Poll

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def settled_cpu(self) -> float:
        """The server's CPU once the children of the last polls are reaped (none left under it)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _children(self.proc.pid):
            time.sleep(0.02)
        return self.cpu()


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def make_repository(srv: Path) -> str:
    """A bare repository `fleet.git` under `srv`: sample-repo/ on `main`, a `canary` branch one commit ahead,
    20 release tags. Returns its name."""
    work = srv.parent / "work"
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)

    shutil.copytree(ROOT / "sample-repo", work)
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "sample-repo")
    for i in range(20):
        git("commit", "-q", "--allow-empty", "-m", f"release {i}")
        git("tag", f"v1.{i}.0")
    git("checkout", "-q", "-b", "canary")
    git("commit", "-q", "--allow-empty", "-m", "canary: next release")
    git("clone", "-q", "--bare", str(work), str(srv / "fleet.git"), cwd=srv.parent)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=srv / "fleet.git")
    return "fleet.git"


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def start_git_daemon(srv: Path, repo: str) -> Server:
    port = free_port()
    # git-daemon itself, not the `git daemon` wrapper: the wrapper would be the process whose CPU we read, and the
    # daemon (which reaps every upload-pack) its child that never exits.
    daemon = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    proc = subprocess.Popen([f"{daemon}/git-daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
                             f"--base-path={srv}", "--export-all", "--max-connections=0", str(srv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "git daemon")
    return Server("git daemon (git://)", f"git://127.0.0.1:{port}/{repo}", proc, git_poll(port, repo))


def lighttpd_config(srv: Path, port: int) -> str:
    """The git-http-backend(1) example for lighttpd, on 127.0.0.1 only."""
    return f"""\
server.document-root = "{srv}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{srv.parent / 'lighttpd.err'}"
server.max-connections = 1024
server.modules = ("mod_alias", "mod_cgi", "mod_setenv")
alias.url = ("/git" => "{HTTP_BACKEND}")
$HTTP["url"] =~ "^/git" {{
    cgi.assign = ("" => "")
    setenv.add-environment = ("GIT_PROJECT_ROOT" => "{srv}", "GIT_HTTP_EXPORT_ALL" => "")
}}
"""


def start_lighttpd(srv: Path, repo: str) -> Server:
    port = free_port()
    conf = srv.parent / "lighttpd.conf"
    conf.write_text(lighttpd_config(srv, port))
    proc = subprocess.Popen(["lighttpd", "-D", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "lighttpd")
    return Server("git http-backend (lighttpd, http://)", f"http://127.0.0.1:{port}/git/{repo}", proc,
                  http_poll(port, repo))


@contextmanager
def serving(start: Callable[[Path, str], Server], srv: Path, repo: str) -> Iterator[Server]:
    server = start(srv, repo)
    try:
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


# --- load ------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What one phase saw: polls done and failed, wall time, the server's CPU over it, each poll's latency."""

    polls: int = 0
    errors: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, latency: float | None) -> None:
        with self.lock:
            if latency is None:
                self.errors += 1
            else:
                self.polls += 1
                self.latencies.append(latency)

    @property
    def cpu_per_poll(self) -> float:
        return self.server_cpu / self.polls if self.polls else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _measured(server: Server, load: Load, body: Callable[[], None]) -> Load:
    """Run `body` (which records into `load`), timing it and the server's CPU over it."""
    cpu0, t0 = server.settled_cpu(), time.perf_counter()
    body()
    load.wall = time.perf_counter() - t0
    load.server_cpu = server.settled_cpu() - cpu0
    return load


def _one(poll: Poll, load: Load, due: float) -> None:
    try:
        poll()
    except (OSError, HTTPException, ValueError):  # refused, reset, timed out, a bad answer: a failed poll
        load.record(None)
    else:
        load.record(time.perf_counter() - due)


def calibrate(server: Server, count: int, seconds: float) -> Load:
    """`count` real `git ls-remote URL refs/heads/main`, one after another (stops after `seconds` anyway)."""
    load = Load()
    argv = ["git", "-c", "protocol.version=2", "ls-remote", "--", server.url, "refs/heads/main"]

    def body() -> None:
        stop = time.perf_counter() + seconds
        while load.polls + load.errors < count and time.perf_counter() < stop:
            t0 = time.perf_counter()
            ok = subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
            load.record(time.perf_counter() - t0 if ok else None)
    return _measured(server, load, body)


def closed_loop(server: Server, concurrency: int, seconds: float) -> Load:
    """`concurrency` simulated agents polling back to back for `seconds`."""
    load = Load()

    def agent(stop: float) -> None:
        while time.perf_counter() < stop:
            _one(server.poll, load, time.perf_counter())

    def body() -> None:
        stop = time.perf_counter() + seconds
        threads = [threading.Thread(target=agent, args=(stop,), daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
    return _measured(server, load, body)


def schedule(agents: int, interval: float, seconds: float, seed: int = 14) -> list[float]:
    """Due times (from 0) of `agents` agents each polling every `interval` ±JITTER, first poll at a random phase,
    over `seconds`: the arrival process of a fleet whose agents started at unrelated times."""
    rng = random.Random(seed)
    heap = [(rng.uniform(0, interval), a) for a in range(agents)]
    heapq.heapify(heap)
    due: list[float] = []
    while heap and heap[0][0] < seconds:
        at, a = heapq.heappop(heap)
        due.append(at)
        heapq.heappush(heap, (at + interval * rng.uniform(1 - JITTER, 1 + JITTER), a))
    return due


def open_loop(server: Server, rate: float, seconds: float, workers: int = 32) -> Load:
    """Polls due at `rate` per second on average (200 simulated agents, interval 200 / rate, ±10 % jitter), each
    taken by the next free worker thread; latency counts from the due time, so a server that falls behind shows."""
    agents = 200
    due = iter(schedule(agents, agents / rate, seconds))
    load, lock = Load(), threading.Lock()

    def worker(start: float) -> None:
        while True:
            with lock:
                at = next(due, None)
            if at is None:
                return
            time.sleep(max(0.0, start + at - time.perf_counter()))
            _one(server.poll, load, start + at)

    def body() -> None:
        start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(start,), daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
    return _measured(server, load, body)


# --- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: `--quick` is the CI smoke, the default the figures for BENCHMARKS.md."""

    calibration_polls: int
    phase_seconds: float
    concurrency: tuple[int, ...]
    fractions: tuple[float, ...]  # of one core's capacity, for the open-loop fleet phase

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(10, 0.5, (4,), (0.5,)) if quick else cls(200, 10.0, (1, 4, 16, 64), (0.25, 0.5, 0.8))


def _ms(seconds: float) -> str:
    return fmt_s(seconds) if seconds >= 1 or seconds != seconds else f"{seconds * 1000:.1f} ms"


def _rows_for(server: Server, plan: Plan) -> tuple[list[Row], dict[str, float]]:
    """Calibration, saturation and fleet phases against one server: its rows, and the raw figures."""
    short = server.name.split(" (")[0]
    rows: list[Row] = []
    real = calibrate(server, plan.calibration_polls, plan.phase_seconds * 3)
    rows.append(Row("fleet", f"{short}: real `git ls-remote`, {real.polls} polls one after another",
                    f"server CPU {_ms(real.cpu_per_poll)} per poll; {real.errors} failed"))
    closed = [closed_loop(server, c, plan.phase_seconds) for c in plan.concurrency]
    for c, load in zip(plan.concurrency, closed):
        rows.append(Row("fleet", f"{short}: {c} simulated agent(s) back to back, {load.wall:.0f} s",
                        f"{load.polls / load.wall:.0f} polls/s, server CPU {_ms(load.cpu_per_poll)} per poll, "
                        f"{load.server_cpu / load.wall:.2f} cores busy; {load.errors} failed"))
    cpu = sum(x.server_cpu for x in closed) / max(1, sum(x.polls for x in closed))
    per_core = 1 / cpu if cpu > 0 else float("nan")
    rows.append(Row("fleet", f"{short}: polls/s one core sustains (1 / server CPU per poll)", f"{per_core:.0f}"))
    rows.append(Row("fleet", f"{short}: nodes one core serves at a {NODE_INTERVAL:.0f} s interval (core 100 % busy)",
                    f"{per_core * NODE_INTERVAL:,.0f}"))
    for fraction in plan.fractions:
        rate = fraction * per_core
        load = open_loop(server, rate, plan.phase_seconds)
        slow = sum(1 for x in load.latencies if x > 0.9)
        rows.append(Row("fleet", f"{short}: {rate * NODE_INTERVAL:,.0f} nodes at {NODE_INTERVAL:.0f} s ±"
                        f"{JITTER:.0%} ({rate:.0f} polls/s, {fraction:.0%} of a core), {load.wall:.0f} s",
                        f"latency p50 {_ms(load.percentile(0.5))}, p99 {_ms(load.percentile(0.99))}, "
                        f"max {_ms(max(load.latencies, default=float('nan')))}; server CPU "
                        f"{load.server_cpu / load.wall:.0%} of a core; {slow} of {load.polls} polls > 0.9 s; "
                        f"{load.errors} failed"))
    return rows, {"cpu_per_poll": cpu, "real_cpu_per_poll": real.cpu_per_poll, "per_core": per_core}


def preflight() -> list[str]:
    """What this benchmark needs but cannot find."""
    missing = [t for t in ("git", "lighttpd") if shutil.which(t) is None]
    return missing + ([] if HTTP_BACKEND.exists() else [str(HTTP_BACKEND)])


def run(plan: Plan, workdir: Path) -> list[Row]:
    srv = workdir / "srv"
    srv.mkdir()
    repo = make_repository(srv)
    rows: list[Row] = []
    for start in (start_git_daemon, start_lighttpd):
        with serving(start, srv, repo) as server:
            server.poll()  # one poll first: the server answers ls-refs with the refs
            rows += _rows_for(server, plan)[0]
    return rows


def markdown(rows: Sequence[Row], plan: Plan, quick: bool, seconds: float) -> str:
    machine = machine_info()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join([
        BEGIN,
        f"_Generated by `python -m benchmarks.fleet{' --quick' if quick else ''}` on {machine['date']} in "
        f"{seconds:.0f} s: {machine['cpu']} ({machine['cores']} cores), Git {machine['git']}, "
        f"load average at the end {load}. Phases of {plan.phase_seconds:g} s; clients and server share the "
        "machine, so read CPU per poll (the server's own), not the polls/s achieved._",
        "",
        *table(rows),
        END,
    ])


def write_block(path: Path, block: str) -> None:
    """Replace the fleet block of `path` (or append it under a heading of its own)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        path.write_text(head + block + rest.split(END, 1)[1])
    else:
        path.write_text(text.rstrip("\n") + "\n\n## Fleet scale: the Git server side\n\n" + block + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="0.5 s phases, one concurrency: the CI smoke")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="Markdown file to update")
    args = p.parse_args(argv)
    missing = preflight()
    if missing:
        print("benchmarks.fleet needs: " + ", ".join(missing) + ". Run `bash .ci/setup` (as root) first.",
              file=sys.stderr)
        return 2
    plan = Plan.of(args.quick)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="gatb-fleet-", dir="/tmp"))
    try:
        rows = run(plan, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - started
    print("\n".join(table(rows)))
    write_block(Path(args.out), markdown(rows, plan, args.quick, seconds))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
