"""Alerts, outbox, sinks, metrics and the page, without Podman: the pure parts from literals; delivery to a
real webhook receiver (http.server on loopback, checking the HMAC) and through real Apprise (`json://` to a
local HTTP server); the listener's endpoints scraped over HTTP and parsed with prometheus_client.parser."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitops_agent import config as config_mod
from gitops_agent import events as ev
from gitops_agent.alerts import CONDITIONS, EVENTS, KINDS, Damper, Watch, build, hide, url_secrets
from gitops_agent.control import ControlSocket, request
from gitops_agent.errors import AgentError, ConfigError, PolicyViolation, RevisionRejected, StateError
from gitops_agent.history import History
from gitops_agent.manifests import parse
from gitops_agent.manifests.intake import SourceFile
from gitops_agent.metrics import Metrics
from gitops_agent.notify import NotifyConfig, Notifier, Outbox, SinkConfig, backoff, signature, verify
from gitops_agent.reasons import Reason
from gitops_agent.web import Listener, Snapshot, page, ready


def logged(event: ev.Event) -> tuple[str, dict[str, Any]]:
    """A typed event as `events.emit` hands it to the log's subscribers: its name, its fields and `reason`."""
    return event.NAME, {**event.fields(), "reason": event.reason.value}

CANARY_FAILURE = [  # the events of a canary failure, as the decision core emits them (fleet.py, agent.py)
    logged(ev.RolloutStarted("main@sha1:bbb", "main@sha1:aaa", 1, False, "Deployment/web", "n1,n2")),
    logged(ev.StepStarted("n1", "main@sha1:bbb", "1/2")),
    ("node.apply", {"node": "n1", "revision": "main@sha1:bbb", "actions": 2}),
    logged(ev.StepFailed("n1", "node n1: readiness probe failed 2 time(s)", Reason.ROLLOUT_FAILED, "web-1",
                         "readiness", "cat: can't open '/www/ready-flag'")),
    logged(ev.RollbackNode("n1", "main@sha1:aaa")),
    ("node.apply", {"node": "n1", "revision": "main@sha1:aaa", "actions": 2}),
    logged(ev.RolloutEnd("main@sha1:bbb", "rolled-back", "0/2 node(s)")),
    logged(ev.PassDone("main@sha1:bbb", "failed", 4, 3.2, Reason.ROLLOUT_FAILED)),
]


def feed(watch: Watch, events: list[tuple[str, dict[str, Any]]], at: float = 100.0) -> list[Any]:
    return [a for e, f in events for a in watch.feed(e, f, at)]


def test_a_canary_failure_is_three_alerts_with_their_reasons() -> None:
    """rollout.started, rollout.failed (node, pod, probe, output, revision), rollout.rolled-back: nothing else."""
    alerts = feed(Watch(600, 600), CANARY_FAILURE)
    assert [(a.kind, a.severity, a.reason) for a in alerts] == [
        ("rollout.started", "info", "RolloutStarted"),
        ("rollout.failed", "error", "ReadinessProbeFailed"),
        ("rollout.rolled-back", "warning", "RolledBack"),
    ]
    failed = alerts[1]
    assert failed.revision == "main@sha1:bbb" and failed.node == "n1"
    assert failed.details["pod"] == "web-1" and "ready-flag" in failed.details["output"]
    assert alerts[2].message == "revision main@sha1:bbb was rolled back to -"
    assert len({a.id for a in alerts}) == 3


def test_only_named_fields_reach_an_alert_and_prose_is_not_a_reason() -> None:
    rule = EVENTS["rollout.halted"]
    a = build(rule, {"revision": "r", "why": "auto-rollback is off", "reason": "auto-rollback is off",
                     "token": "hunter2-SECRET"}, 1.0)
    assert a.reason == "RolloutHalted" and "auto-rollback is off" in a.message
    assert "hunter2" not in json.dumps(a.body())
    assert build(rule, {"reason": "PolicyDenied"}, 1.0).reason == "PolicyDenied"


def test_credentials_in_the_source_url_never_reach_an_alert() -> None:
    hidden = url_secrets("https://bot:glpat-Xy12Zz@git.example.com/ops/edge.git")
    assert hidden == ("bot:glpat-Xy12Zz", "glpat-Xy12Zz")
    assert url_secrets("https://git.example.com/x.git") == () and url_secrets("/srv/repo") == ()
    a = build(EVENTS["node.failed"], {"node": "n1", "error": "fetch https://bot:glpat-Xy12Zz@git.example.com: 403"}, 1)
    shown = hide(a, hidden)
    assert "glpat" not in json.dumps(shown.body()) and "https://***@git.example.com" in shown.details["error"]


def test_conditions_alert_after_their_threshold_and_when_they_clear() -> None:
    w = Watch(node_after=60, git_after=30)
    down = {"node": "n2", "error": "node n2: cannot connect"}
    assert w.feed("rollout.deferred", down, 0) == [] and w.feed("sync", {"result": "progressing"}, 1) == []
    assert w.feed("source.unavailable", {"error": "timeout"}, 10) == []
    [git] = w.feed("source.unavailable", {"error": "timeout"}, 45)
    assert git.kind == "git.unreachable" and "35 s" in git.message
    [node] = w.feed("rollout.deferred", down, 61)
    assert (node.kind, node.node) == ("node.unreachable", "n2")
    assert w.feed("rollout.deferred", down, 90) == []  # once, not every pass
    assert w.feed("sync", {"result": "source-error"}, 91) == []  # both still down this pass
    back = w.feed("sync", {"result": "applied"}, 120)
    assert sorted((a.kind, a.node) for a in back) == [("git.back", ""), ("node.back", "n2")]
    w.feed("rollout.deferred", down, 130)
    assert w.feed("sync", {"result": "applied"}, 140) == []  # a blip shorter than the threshold: no "back"


def test_drift_repair_is_the_drift_repaired_event_and_names_what_it_undid() -> None:
    """events.DriftRepaired raises drift.repaired with its Reason and the `action`s its node's apply took."""
    w = Watch(600, 600)
    assert w.feed("node.apply", {"node": "n3", "revision": "r1", "actions": 1}, 5) == []
    assert w.feed("action", {"node": "n3", "op": "create-pod", "target": "web-abc", "reason": "missing"}, 5) == []
    assert w.feed("node.apply", {"node": "n2", "actions": 0}, 6) == []
    [a] = w.feed(*logged(ev.DriftRepaired("n3", "r1", 1)), 6)
    assert (a.kind, a.node, a.revision, a.details["actions"], a.reason) == ("drift.repaired", "n3", "r1", "1",
                                                                            "DriftRepaired")
    assert a.message == "node n3: 1 change(s) made outside Git were undone: create-pod web-abc (missing)"
    assert w.feed("sync", {"result": "applied"}, 7) == []
    assert w.feed("sync", {"result": "in-sync"}, 8) == []


def test_a_rejected_revision_alerts_with_its_reason_invalid_policy_or_signature() -> None:
    """revision.rejected is split by the event's Reason; an unverified signature is critical."""
    for code, severity, words in [(Reason.REVISION_REJECTED, "error", "is invalid"),
                                  (Reason.POLICY_VIOLATION, "error", "policy does not allow"),
                                  (Reason.SIGNATURE_UNVERIFIED, "critical", "no trusted signature")]:
        [a] = Watch(600, 600).feed(*logged(ev.RevisionRejected("main@sha1:ccc", 2, code)), 1)
        assert (a.kind, a.severity, a.reason, a.revision) == ("revision.rejected", severity, code.value,
                                                              "main@sha1:ccc")
        assert words in a.message, a.message


def test_parse_tells_a_policy_refusal_from_an_invalid_manifest() -> None:
    """The Reason a rejection carries comes from the error's class: PolicyViolation when the policy refused."""
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  hostNetwork: true\n"
           "  containers: [{name: c, image: localhost/x:1}]\n")
    with pytest.raises(RevisionRejected) as denied:
        parse([SourceFile("p.yaml", pod.encode())], "r")
    assert isinstance(denied.value, PolicyViolation) and denied.value.code == Reason.POLICY_VIOLATION
    with pytest.raises(RevisionRejected) as invalid:
        parse([SourceFile("p.yaml", pod.replace("hostNetwork: true", "hostNetwork: 3").encode())], "r")
    assert not isinstance(invalid.value, PolicyViolation) and invalid.value.code == Reason.REVISION_REJECTED


def test_node_unreachable_and_back_come_from_the_typed_events() -> None:
    """node.unreachable once it lasts past the threshold (the drift-repair passes emit it too), node.back
    when events.NodeBack says so or a pass no longer sees it; each with the event's Reason."""
    w = Watch(node_after=60, git_after=60)
    down = logged(ev.NodeUnreachable("n2", "cannot connect"))
    assert w.feed(*down, 0) == [] and w.feed("sync", {"result": "failed"}, 1) == []
    [alert] = w.feed(*down, 61)
    assert (alert.kind, alert.node, alert.reason, alert.severity) == ("node.unreachable", "n2", "NodeUnreachable",
                                                                      "error")
    [back] = w.feed(*logged(ev.NodeBack("n2")), 70)
    assert (back.kind, back.node, back.reason) == ("node.back", "n2", "NodeBack")
    assert w.feed("sync", {"result": "applied"}, 71) == []  # told once
    w.feed(*down, 80)
    w.feed("sync", {"result": "failed"}, 81)
    [alert] = w.feed(*down, 150)
    [back] = w.feed("sync", {"result": "applied"}, 160) + w.feed("sync", {"result": "applied"}, 170)
    assert (alert.kind, back.kind, back.reason) == ("node.unreachable", "node.back", "NodeBack")


def test_suspension_alerts_and_every_rule_speaks_a_reason() -> None:
    [a] = Watch(600, 600).feed(*logged(ev.Suspended("main@sha1:aaa", "gitops-agent rollback to main@sha1:aaa")), 1)
    assert (a.kind, a.severity, a.reason, a.revision) == ("sync.suspended", "warning", "Suspended", "main@sha1:aaa")
    assert "gitops-agent rollback to main@sha1:aaa" in a.message and "resume" in a.message
    spoken = {r.reason for r in [*EVENTS.values(), *CONDITIONS.values()]}
    assert spoken - {r.value for r in Reason} == {"OutboxFull", "SourceAvailable"}  # the alerts' own conditions


def _outbox(path: Path) -> list[str]:
    with sqlite3.connect(path / "state.db") as db:
        return [json.loads(b)["kind"] for (b,) in db.execute("SELECT body FROM notify_outbox ORDER BY seq")]


def _state(path: Path, key: str) -> Any:
    with sqlite3.connect(path / "state.db") as db:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def test_an_alert_is_committed_with_the_state_change_it_reports(tmp_path: Path) -> None:
    """In a pass an alert waits for the pass's next commit or checkpoint (a rolled-back transaction takes
    neither); outside a pass it is written at once. Read through another connection, as delivery does."""
    history = History(tmp_path)
    notifier = Notifier(NotifyConfig(sinks=(SinkConfig("ops", "webhook", url="http://127.0.0.1:9/"),)), tmp_path,
                        history=history)  # not started: nothing is delivered
    try:
        with history.in_pass():
            notifier(*_level(logged(ev.Suspended("main@sha1:aaa", "gitops-agent rollback"))))
            assert _outbox(tmp_path) == []
            with pytest.raises(RuntimeError), history.transaction():
                history.put("suspended", {"revision": "main@sha1:aaa"})
                raise RuntimeError("the pass failed before its commit")
            assert _outbox(tmp_path) == [] and _state(tmp_path, "suspended") is None
            with history.transaction():
                history.put("suspended", {"revision": "main@sha1:aaa"})
                assert _outbox(tmp_path) == []
            assert _outbox(tmp_path) == ["sync.suspended"] and _state(tmp_path, "suspended")
            notifier(*_level(logged(ev.RollbackFailed("n1", "node n1: cannot connect"))))
            history.checkpoint({"phase": "rollback-failed"})
            assert _outbox(tmp_path) == ["sync.suspended", "rollback.failed"]
            notifier(*_level(logged(ev.RevisionRejected("main@sha1:ccc", 1, Reason.SIGNATURE_UNVERIFIED))))
        assert _outbox(tmp_path)[-1] == "revision.rejected"  # after the pass's last commit: when the pass ends
        notifier(*_level(logged(ev.NodeFailed("n3", "node n3: HTTP 500"))))
        assert _outbox(tmp_path)[-1] == "node.failed"  # outside a pass: at once
    finally:
        notifier.close()
        history.close()


def test_a_staged_write_the_store_refuses_waits_for_its_next_commit(tmp_path: Path) -> None:
    """A refused write (the store full, say) neither raises into the event's emitter nor is lost."""
    history = History(tmp_path)
    tries: list[int] = []

    def write() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise StateError("state store: database or disk is full")
        history.execute("INSERT INTO state(key, value) VALUES('alerted', '1')")

    try:
        history.stage(write)  # outside a pass: tried at once, refused, kept
        assert _state(tmp_path, "alerted") is None and len(tries) == 1
        with history.transaction():
            history.put("applied_sha", "abc")
        assert _state(tmp_path, "alerted") == 1 and len(tries) == 2
    finally:
        history.close()


def _level(logged_event: tuple[str, dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    return logged_event[0], "info", logged_event[1]


KILLED_PASS = """
import os, signal, sys
from pathlib import Path
from gitops_agent import events as ev
from gitops_agent.history import History
from gitops_agent.notify import Notifier, NotifyConfig, SinkConfig
state, where = Path(sys.argv[1]), sys.argv[2]
history = History(state)
notifier = Notifier(NotifyConfig(sinks=(SinkConfig("ops", "webhook", url="http://127.0.0.1:9/"),)), state,
                    history=history)
if where == "after-commit":
    History.on_store_write = lambda _: os.kill(os.getpid(), signal.SIGKILL)
with history.in_pass(), history.transaction():
    history.put("suspended", {"revision": "r1"})
    event = ev.Suspended("r1", "test")
    notifier(event.NAME, "warning", {**event.fields(), "reason": event.reason.value})
    if where == "before-commit":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("where", ["before-commit", "after-commit"])
def test_kill_9_around_the_commit_keeps_a_state_change_and_its_alert_together(tmp_path: Path, where: str) -> None:
    """SIGKILL just before or just after the pass's commit: the state change and its alert are both there
    or both not (never a change whose alert is lost)."""
    done = subprocess.run([sys.executable, "-c", KILLED_PASS, str(tmp_path), where], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == -signal.SIGKILL, done.stderr
    expected = (["sync.suspended"], {"revision": "r1"}) if where == "after-commit" else ([], None)
    assert (_outbox(tmp_path), _state(tmp_path, "suspended")) == expected


def test_flapping_is_one_alert_with_a_count_until_it_changes() -> None:
    d = Damper(window=100)
    rule = EVENTS["node.failed"]
    first = build(rule, {"node": "n1", "error": "x"}, 0)
    assert d.admit(first) is first
    assert [d.admit(build(rule, {"node": "n1", "error": "x"}, t)) for t in (10, 20, 30)] == [None] * 3
    other = build(rule, {"node": "n2", "error": "x"}, 31)
    assert d.admit(other) is other  # another node is another condition
    later = d.admit(build(rule, {"node": "n1", "error": "x"}, 150))
    assert later is not None and later.count == 4  # the three held back, and this one
    changed = build(EVENTS["rollout.node.failed"], {"node": "n1"}, 151)
    assert d.admit(changed) is changed


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"kind": "rollout.failed"}'
    assert signature(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify(b"k", body, signature(b"k", body)) and not verify(b"other", body, signature(b"k", body))
    assert [backoff(n) for n in (1, 2, 3, 10, 30)] == [1.0, 2.0, 4.0, 300.0, 300.0]


def test_the_outbox_is_bounded_dropping_oldest_low_severity_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path, max_pending=3)
    info = [build(EVENTS["rollout.start"], {"revision": f"r{i}"}, i) for i in range(2)]
    error = build(EVENTS["node.failed"], {"node": "n1"}, 3)
    for a in (info[0], error, info[1]):
        assert box.add("s", a) == 0
    assert box.add("s", build(EVENTS["rollout.start"], {"revision": "r9"}, 9)) == 1
    kinds = [(r["kind"], r["revision"]) for r in box.recent()]
    assert kinds == [("node.failed", ""), ("rollout.started", "r1"), ("rollout.started", "r9")]
    box.add("removed-sink", error)
    assert box.forget_except({"s"}) == 1 and box.pending() == 3  # a sink taken out of the config: its alerts go
    box.close()


def test_a_notify_config_is_checked(tmp_path: Path) -> None:
    (tmp_path / "hmac").write_text("s3cret\n")
    raw = {"source": {"url": "/x"}, "notify": {"sinks": [
        {"name": "ops", "webhook": "http://127.0.0.1:9/h", "secretFile": "hmac", "events": ["rollout.failed"]},
        {"apprise": ["json://127.0.0.1:9/"], "minSeverity": "error"}], "nodeUnreachableAfter": 0},
        "metrics": {"listen": ""}}
    cfg = config_mod.from_mapping(raw, tmp_path)
    assert [s.name for s in cfg.notify.sinks] == ["ops", "apprise-1"] and cfg.notify.sinks[0].secret == b"s3cret"
    assert cfg.notify.node_unreachable_after == 0 and cfg.metrics_listen == ""
    assert "s3cret" not in repr(cfg)
    assert config_mod.from_mapping({"source": {"url": "/x"}}).metrics_listen == "127.0.0.1:9464"
    with pytest.raises(ConfigError, match="exactly one of webhook"):
        config_mod.from_mapping({"source": {"url": "/x"}, "notify": {"sinks": [{"name": "x"}]}})
    with pytest.raises(ConfigError, match="events"):
        config_mod.from_mapping({"source": {"url": "/x"},
                                 "notify": {"sinks": [{"webhook": "http://h/", "events": ["nope"]}]}})
    assert "revision.applied" in KINDS and "git.back" in KINDS


class Receiver:
    """A real webhook receiver on loopback: records (headers, raw body); answers `status`."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        self.received, self.status = received, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, timeout: float) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := check():
            return value
        time.sleep(0.05)
    return check()


def test_alerts_wait_in_the_outbox_while_the_receiver_is_down_then_arrive_in_order(tmp_path: Path) -> None:
    """Receiver refusing (HTTP 503), then gone, then back: every alert arrives, oldest first, signed."""
    port = free_port()
    sink = SinkConfig("hook", "webhook", url=f"http://127.0.0.1:{port}/hook", secret=b"k3y")
    notifier = Notifier(NotifyConfig(sinks=(sink,)), tmp_path)
    notifier.start()
    try:
        for event, fields in CANARY_FAILURE:
            notifier(event, "info", fields)
        assert notifier.outbox.pending() == 3
        time.sleep(0.5)  # a first try fails (nothing listens); the retry 1 s later is refused (503), then 2 s
        receiver = Receiver(port, status=503)
        assert wait_for(lambda: receiver.received, 5)
        receiver.status = 200
        assert wait_for(lambda: notifier.outbox.pending() == 0, 10)
    finally:
        notifier.close()
    bodies = [json.loads(b) for h, b in receiver.received if verify(b"k3y", b, h["x-signature"])]
    assert len(bodies) == len(receiver.received)
    firsts = list(dict.fromkeys(b["id"] for b in bodies))  # at-least-once: the refused one came again
    assert [next(b["kind"] for b in bodies if b["id"] == i) for i in firsts] == [
        "rollout.started", "rollout.failed", "rollout.rolled-back"]
    receiver.close()


def test_apprise_delivers_to_a_real_local_target(tmp_path: Path) -> None:
    receiver = Receiver()
    sink = SinkConfig("chat", "apprise", urls=(f"json://127.0.0.1:{receiver.port}/notify",), min_severity="error")
    notifier = Notifier(NotifyConfig(sinks=(sink,)), tmp_path)
    notifier.start()
    try:
        for event, fields in CANARY_FAILURE:
            notifier(event, "info", fields)
        assert wait_for(lambda: notifier.outbox.pending() == 0 and receiver.received, 10)
    finally:
        notifier.close()
        receiver.close()
    [body] = receiver.bodies()  # only the error: minSeverity
    assert body["title"] == "[error] rollout.failed: ReadinessProbeFailed"
    assert "readiness probe failed" in body["message"]


STATUS = {
    "condition": "Stalled", "message": "revision main@sha1:bbb failed on node n1: readiness probe failed",
    "appliedRevision": "main@sha1:aaa", "attemptedRevision": "main@sha1:bbb", "suspended": None,
    "rollout": {"target": "main@sha1:bbb", "phase": "rolled-back", "progress": "1/2 node(s)",
                "nodes": [{"name": "n1", "status": "rolled-back", "error": "readiness <probe>"},
                          {"name": "n2", "status": "pending"}]},
    "failedRevision": {"revision": "main@sha1:bbb", "node": "n1", "pod": "web-1", "probe": "readiness",
                       "error": "readiness probe failed", "output": "cat: can't open '/www/ready-flag'"},
    "nodes": [{"name": "n1", "reachable": True, "pods": 1}, {"name": "n2", "reachable": False, "error": "down"}],
    "objects": [{"kind": "Deployment", "namespace": "demo", "name": "web", "node": "n1", "ready": 1, "desired": 2,
                 "state": "Progressing"}, {"kind": "Namespace", "namespace": "", "name": "demo", "node": "n1"}],
}


def test_the_page_shows_the_failed_rollout_escaped() -> None:
    html = page(STATUS, [{"started": 1.0, "revision": "main@sha1:bbb", "result": "failed", "error": "e"}],
                [{"at": 2.0, "sink": "hook", "kind": "rollout.failed", "message": "m", "attempts": 3}], 10.0, 12.0)
    assert "rolled-back" in html and "Last failure" in html and "ready-flag" in html
    assert "readiness &lt;probe&gt;" in html and "<probe>" not in html
    assert "Deployment/demo/web" in html and "1/2" in html and "rollout.failed" in html
    assert 'http-equiv="refresh"' in html and "<script" not in html and "http" not in html.split("<body>")[1]
    assert ready(STATUS) == (False, "Stalled: " + STATUS["message"])
    assert ready({"condition": "Suspended", "message": "pinned"})[0] and not ready({})[0]


def test_the_listener_serves_metrics_health_status_and_the_page(tmp_path: Path) -> None:
    metrics = Metrics(pending=lambda: 2)
    for event, fields in [("rollout.start", {"revision": "r2"}), ("image.pull", {"node": "n1"}),
                          ("node.apply", {"node": "n1", "actions": 1}), ("rollout.end", {"phase": "rolled-back"}),
                          ("sync", {"result": "applied", "seconds": 2.5}),
                          ("node.apply", {"node": "n2", "actions": 1}), logged(ev.DriftRepaired("n2", "r2", 1)),
                          ("sync", {"result": "applied"})]:
        metrics(event, "info", fields)
    metrics.update(STATUS)
    snap = Snapshot()
    healthy = [True]
    listener = Listener("127.0.0.1:0", snap, lambda: (healthy[0], "why"), lambda: (metrics.render(), "text/plain"),
                        lambda: [])
    base = f"http://{listener.address}"
    try:
        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("/readyz")[0] == 503 and get("/status")[0] == 503 and get("/healthz")[0] == 200
        snap.set(STATUS, [])
        healthy[0] = False
        assert get("/healthz")[0] == 503 and get("/readyz")[0] == 503 and get("/nope")[0] == 404
        assert json.loads(get("/status")[1])["condition"] == "Stalled"
        assert "Last failure" in get("/")[1]
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(get("/metrics")[1]) for s in f.samples}
    finally:
        listener.close()
    assert samples[("gitops_agent_sync_total", (("result", "applied"),))] == 2
    assert samples[("gitops_agent_sync_duration_seconds_count", ())] == 2
    assert samples[("gitops_agent_rollout_phase", (("phase", "rolled-back"),))] == 1
    assert samples[("gitops_agent_rollout_phase", (("phase", "progressing"),))] == 0
    web = (("kind", "Deployment"), ("name", "web"), ("namespace", "demo"), ("node", "n1"))
    assert samples[("gitops_agent_workload_ready_pods", web)] == 1
    assert samples[("gitops_agent_workload_desired_pods", web)] == 2
    assert samples[("gitops_agent_node_reachable", (("node", "n2"),))] == 0
    assert samples[("gitops_agent_image_pulls_total", (("node", "n1"), ("result", "requested")))] == 1
    assert ("gitops_agent_drift_repairs_total", (("node", "n1"),)) not in samples  # inside a rollout
    assert samples[("gitops_agent_drift_repairs_total", (("node", "n2"),))] == 1  # after the pass: by hand
    assert samples[("gitops_agent_notifications_pending", ())] == 2
    assert samples[("gitops_agent_revision_info", (("phase", "rolled-back"), ("revision", "main@sha1:aaa")))] == 1
    assert ("gitops_agent_info", (("version", "0.1.0"),)) in samples


def test_git_requests_count_only_the_passes_that_asked_git() -> None:
    """`gitops_agent_git_requests` counts head checks: a drift pass that took the last poll's answer and a
    suspended pass (`polled` false) count nothing; a failed check counts once, as an error."""
    metrics = Metrics()
    for event in [ev.PassDone("main@sha1:a", "applied", 2, 1.0, Reason.APPLIED, None, True),
                  ev.PassDone("main@sha1:a", "in-sync", 0, 0.1, Reason.IN_SYNC, None, False),
                  ev.PassDone("main@sha1:a", "applied", 1, 0.2, Reason.APPLIED, None, False),
                  ev.PassDone("main@sha1:a", "suspended", 0, 0.1, Reason.SUSPENDED),
                  ev.SourceUnavailable("git: timed out"),
                  ev.PassDone("unknown", "source-error", 0, 0.1, Reason.SOURCE_UNAVAILABLE, "git: timed out", True),
                  ev.PassDone("main@sha1:a", "in-sync", 0, 0.1, Reason.IN_SYNC, None, True)]:
        name, fields = logged(event)
        metrics(name, event.LEVEL, fields)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}
    assert samples[("gitops_agent_git_requests_total", (("result", "ok"),))] == 2
    assert samples[("gitops_agent_git_requests_total", (("result", "error"),))] == 1
    assert samples[("gitops_agent_sync_total", (("result", "in-sync"),))] == 2  # every pass still counts as a pass
    assert logged(ev.PassDone("r", "in-sync", 0, 0.1, Reason.IN_SYNC))[1]["polled"] is False  # written, never left out


def test_the_control_socket_is_owner_only_and_wakes_the_daemon(tmp_path: Path) -> None:
    woken = threading.Event()
    control = ControlSocket(tmp_path, woken.set)
    try:
        assert os.stat(tmp_path / "control.sock").st_mode & 0o777 == 0o600
        assert request(tmp_path).startswith("ok") and woken.is_set()
        with pytest.raises(AgentError, match="refused"):
            request(tmp_path, "rm -rf /")
    finally:
        control.close()
    with pytest.raises(AgentError, match="no running agent"):
        request(tmp_path)
