"""Prometheus metrics: the owner of `prometheus_client`.

Fed two ways, neither of which costs a Podman call at scrape time: counters from the agent's events
(subscribed to `log.EventLog`), and gauges from the snapshot `web.Snapshot` takes at the end of
each pass (what that pass saw: `status` JSON). A scrape renders the registry and reads the count of
pending alerts from the outbox (SQLite). Names follow the Prometheus conventions and are listed in
README.md (Metrics); changing one is a breaking change. No label or value is ever a Secret's.
"""

from __future__ import annotations

import importlib.metadata
import time
import threading
from typing import Any, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .alerts import Watch

CONTENT_TYPE = CONTENT_TYPE_LATEST
PHASES = ("progressing", "complete", "rolling-back", "rolled-back", "halted", "rollback-failed", "superseded")
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def _version() -> str:
    try:
        return importlib.metadata.version("gitops-agent")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """One registry per agent (tests run several agents in one process)."""

    def __init__(self, pending: Callable[[], int] = lambda: 0) -> None:
        r = self.registry = CollectorRegistry()
        Gauge("gitops_agent_info", "The running agent.", ["version"], registry=r).labels(_version()).set(1)
        self.revision = Gauge("gitops_agent_revision_info", "The applied revision and its rollout phase.",
                              ["revision", "phase"], registry=r)
        self.syncs = Counter("gitops_agent_sync", "Reconcile passes by result.", ["result"], registry=r)
        self.duration = Histogram("gitops_agent_sync_duration_seconds", "Duration of a reconcile pass.",
                                  buckets=DURATION_BUCKETS, registry=r)
        self.phase = Gauge("gitops_agent_rollout_phase", "1 for the phase of the newest rollout, 0 for the others.",
                           ["phase"], registry=r)
        labels = ["node", "namespace", "kind", "name"]
        self.ready = Gauge("gitops_agent_workload_ready_pods", "Ready pods of the current template.", labels,
                           registry=r)
        self.desired = Gauge("gitops_agent_workload_desired_pods", "Pods the revision asks for.", labels, registry=r)
        self.reachable = Gauge("gitops_agent_node_reachable", "1 when the node's Podman answered in the last pass.",
                               ["node"], registry=r)
        self.drift = Counter("gitops_agent_drift_repairs", "Passes that undid changes made by hand.", ["node"],
                             registry=r)
        self.git = Counter("gitops_agent_git_requests", "Head checks of the Git source by result.", ["result"],
                           registry=r)
        self.pulls = Counter("gitops_agent_image_pulls", "Image pulls (requested, retried).", ["node", "result"],
                             registry=r)
        self.suspended = Gauge("gitops_agent_suspended", "1 while syncing is suspended (break-glass).", registry=r)
        Gauge("gitops_agent_notifications_pending", "Alerts waiting in the outbox.", registry=r).set_function(
            lambda: float(pending()))
        self.applied_at = Gauge("gitops_agent_last_applied_timestamp_seconds",
                                "When a revision last finished applying on every node (Unix time).", registry=r)
        for phase in PHASES:
            self.phase.labels(phase).set(0)
        self._watch = Watch(0.0, 0.0)  # only for drift: a node changed outside a rollout
        self._lock = threading.Lock()

    def __call__(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        """The EventLog subscriber: counters move as events happen."""
        if event == "sync":
            result = str(fields.get("result", ""))
            self.syncs.labels(result).inc()
            self.duration.observe(float(fields.get("seconds") or 0))
            if fields.get("polled") is True and result != "source-error":  # a drift pass may not ask Git
                self.git.labels("ok").inc()
        elif event == "source.unavailable":
            self.git.labels("error").inc()
        elif event == "image.pull":
            self.pulls.labels(str(fields.get("node", "")), "requested").inc()
        elif event == "image.pull.retry":
            self.pulls.labels(str(fields.get("node", "")), "retried").inc()
        elif event in ("rollout.start", "rollout.end"):
            self._set_phase("progressing" if event == "rollout.start" else str(fields.get("phase", "")))
        for alert in self._watch.feed(event, fields, 0.0):
            if alert.kind == "drift.repaired":
                self.drift.labels(alert.node).inc()
            elif alert.kind == "revision.applied":
                self.applied_at.set(time.time())

    def _set_phase(self, current: str) -> None:
        for phase in PHASES:
            self.phase.labels(phase).set(1 if phase == current else 0)

    def update(self, st: Mapping[str, Any]) -> None:
        """Gauges from the `status` JSON of the pass that just ended."""
        with self._lock:
            rollout = st.get("rollout") or {}
            self.revision.clear()
            if st.get("appliedRevision"):
                self.revision.labels(st["appliedRevision"], rollout.get("phase", "")).set(1)
            if rollout.get("phase"):
                self._set_phase(rollout["phase"])
            self.suspended.set(1 if st.get("suspended") else 0)
            for node in st.get("nodes", []):
                self.reachable.labels(node["name"]).set(1 if node.get("reachable") else 0)
            self.ready.clear()
            self.desired.clear()
            for o in st.get("objects", []):
                if "desired" in o:
                    key = (o["node"], o["namespace"], o["kind"], o["name"])
                    self.ready.labels(*key).set(o.get("ready", 0))
                    self.desired.labels(*key).set(o["desired"])

    def render(self) -> bytes:
        with self._lock:
            return generate_latest(self.registry)
