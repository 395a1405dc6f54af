"""The daemon's read-only HTTP listener: `/metrics`, `/healthz`, `/readyz`, `/status` and the status page `/`.

Sits beside the daemon loop (`agent.Daemon`), on `metrics.listen` (default 127.0.0.1:9464: loopback
only; another address is an explicit setting, and README warns about it). Every answer comes from
the `Snapshot` the daemon takes at the end of each pass (the `status` JSON, the recent syncs, the
pending alerts), so a request costs no Podman call and never waits for a pass. Only GET and HEAD;
nothing here changes anything. The `status` JSON holds no Secret value, so none is served.

`page` is pure: the snapshot in, one self-contained HTML page out (no script, no external asset,
auto-refresh by a meta tag, readable at a phone's width).
"""

from __future__ import annotations

import html
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

REFRESH = 5  # seconds between the page's reloads


class Snapshot:
    """What the last pass saw, for the listener's threads (replaced whole, read without Podman)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status: dict[str, Any] = {}
        self.syncs: list[dict[str, Any]] = []
        self.at = 0.0

    def set(self, status: dict[str, Any], syncs: list[dict[str, Any]]) -> None:
        with self._lock:
            self.status, self.syncs, self.at = status, syncs, time.time()

    def get(self) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
        with self._lock:
            return self.status, self.syncs, self.at


def ready(status: Mapping[str, Any]) -> tuple[bool, str]:
    """`/readyz`: the last pass finished and the applied revision is the head (condition Ready), or a
    documented hold: syncing suspended by `rollback` (a pinned revision on purpose)."""
    if not status:
        return False, "no pass has finished yet"
    condition = status.get("condition", "")
    if condition in ("Ready", "Suspended"):
        return True, f"{condition}: {status.get('message', '')}"
    return False, f"{condition}: {status.get('message', '')}"


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError with the reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (example: 127.0.0.1:9464)")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class Listener:
    """A ThreadingHTTPServer on its own thread; routes to the snapshot, the metrics and the health callable."""

    def __init__(self, listen: str, snapshot: Snapshot, healthy: Callable[[], tuple[bool, str]],
                 metrics: Callable[[], tuple[bytes, str]] | None, pending: Callable[[], list[dict[str, Any]]]) -> None:
        host, port = parse_listen(listen)
        routes = _routes(snapshot, healthy, metrics, pending)

        class Handler(BaseHTTPRequestHandler):
            server_version = "gitops-agent"

            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                code, ctype, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:  # requests are not logged
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


Route = Callable[[], tuple[int, str, bytes]]


def _routes(snapshot: Snapshot, healthy: Callable[[], tuple[bool, str]],
            metrics: Callable[[], tuple[bytes, str]] | None,
            pending: Callable[[], list[dict[str, Any]]]) -> dict[str, Route]:
    def text(ok: bool, why: str) -> tuple[int, str, bytes]:
        return (200 if ok else 503), "text/plain; charset=utf-8", f"{'ok' if ok else 'not ok'}: {why}\n".encode()

    def status() -> tuple[int, str, bytes]:
        st, _, _ = snapshot.get()
        if not st:
            return 503, "application/json", b'{"error": "no pass has finished yet"}\n'
        return 200, "application/json", json.dumps(st, indent=2, default=str).encode() + b"\n"

    def index() -> tuple[int, str, bytes]:
        st, syncs, at = snapshot.get()
        return 200, "text/html; charset=utf-8", page(st, syncs, pending(), at, time.time()).encode()

    routes: dict[str, Route] = {
        "/healthz": lambda: text(*healthy()),
        "/readyz": lambda: text(*ready(snapshot.get()[0])),
        "/status": status,
        "/": index,
    }
    if metrics is not None:
        routes["/metrics"] = lambda: (200, metrics()[1], metrics()[0])
    return routes


# --- the page (pure) --------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;color:#222;background:#fafafa;max-width:1100px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:6px}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f0f0f0}.bad{color:#b00020;font-weight:600}.ok{color:#1b5e20;font-weight:600}
.cond{padding:8px;border-radius:4px;background:#fff;border:1px solid #ddd}pre{white-space:pre-wrap;margin:0}
@media (max-width:600px){body{font-size:14px;padding:6px}td,th{padding:3px}}
"""
_BAD = {"Stalled", "failed", "rolled-back", "halted", "rollback-failed", "Missing", "Progressing", "Suspended"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(head: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    cells = "".join("<tr>" + "".join(f"<td{_cls(c)}>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _cls(value: Any) -> str:
    if value in _BAD:
        return ' class="bad"'
    return ' class="ok"' if value in ("Ready", "done", "complete", "applied", "in-sync") else ""


def _when(at: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(at))) if at else "-"


def page(st: Mapping[str, Any], syncs: list[dict[str, Any]], pending: list[dict[str, Any]], at: float,
         now: float) -> str:
    """The status page: revisions and condition, the rollout per node, workloads per node, the last
    failure with its probe output, recent syncs, pending alerts."""
    parts = [f"<p>Waiting for the first pass to finish (page reloads every {REFRESH} s).</p>"] if not st else [
        _summary(st, at, now), _rollout(st.get("rollout")), _failure(st.get("failedRevision")),
        "<h2>Workloads</h2>" + _table(
            ["Node", "Workload", "Ready", "State"],
            [[o["node"], f"{o['kind']}/{o['namespace']}/{o['name']}", f"{o.get('ready', 0)}/{o['desired']}",
              o.get("state")] for o in st.get("objects", []) if "desired" in o], "No workloads."),
        "<h2>Nodes</h2>" + _table(["Node", "Reachable", "Pods / error"],
                                  [[n["name"], "yes" if n.get("reachable") else "NO", n.get("pods", n.get("error", ""))]
                                   for n in st.get("nodes", [])], "No nodes."),
    ]
    parts.append("<h2>Recent syncs</h2>" + _table(
        ["When", "Revision", "Result", "Error"],
        [[_when(s.get("started")), s.get("revision"), s.get("result"), (s.get("error") or "").split("\n")[0][:200]]
         for s in syncs], "No sync recorded yet."))
    parts.append("<h2>Pending alerts</h2>" + _table(
        ["When", "Sink", "Kind", "Message", "Tries"],
        [[_when(p.get("at")), p.get("sink"), p.get("kind"), p.get("message"), p.get("attempts")] for p in pending],
        "None: every alert was delivered."))
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="refresh" content="{REFRESH}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>gitops-agent: {_e(st.get('condition', 'starting'))}</title><style>{_CSS}</style></head>"
            f"<body><h1>gitops-agent</h1>{''.join(parts)}</body></html>\n")


def _summary(st: Mapping[str, Any], at: float, now: float) -> str:
    condition = st.get("condition", "")
    return (f'<div class="cond"><b{_cls(condition)}>{_e(condition)}</b>: {_e(st.get("message"))}</div>'
            + _table(["Applied revision", "Head (attempted)", "As of"],
                     [[st.get("appliedRevision") or "-", st.get("attemptedRevision") or "-",
                       f"{_when(at)} ({round(now - at)} s ago)"]], ""))


def _rollout(rollout: Mapping[str, Any] | None) -> str:
    if not rollout:
        return "<h2>Rollout</h2><p>No rollout recorded.</p>"
    head = (f"<h2>Rollout of {_e(rollout.get('target'))}: <span{_cls(rollout.get('phase'))}>"
            f"{_e(rollout.get('phase'))}</span> ({_e(rollout.get('progress'))})</h2>")
    nodes = rollout.get("nodes", [])
    rows = [[n.get("name"), n.get("status"), n.get("window") or n.get("error", "")] for n in nodes]
    held = [f"<p><b>{_e(n.get('name'))}</b>: {_e(n['window'])}</p>" for n in nodes if n.get("window")]
    return head + "".join(held) + _table(["Node", "Phase", "Error / window"], rows, "No nodes.")


def _failure(failed: Mapping[str, Any] | None) -> str:
    if not failed:
        return ""
    rows = [[failed.get("revision"), failed.get("node"), failed.get("pod"), failed.get("probe"), failed.get("error")]]
    out = "<h2>Last failure</h2>" + _table(["Revision", "Node", "Pod", "Probe", "Error"], rows, "")
    if failed.get("output"):
        out += f"<p>Probe output:</p><pre>{_e(failed['output'])}</pre>"
    return out
