"""`status`: what runs where, read from the history store and each node's live state.

Read-only: it never writes to a node or to the store. Its dict is printed as
JSON by `status -o json` and as tables by `cli`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .agent import Agent
from . import clock, eviction, hpa
from .decide import condition
from .state import AgentState
from .endpoints import STORE_KEY as ENDPOINTS, unready
from .desired import ENV_UNUSED, claim_volume, compile_node, network_name, unplaced
from .errors import NodeError
from . import batchstore
from .cronjobs import pods_of_run
from .jobs import Book, job_run
from .live import LiveState
from .model import Object, Revision, Service
from .plan import unknown_secrets
from .probes import probe_ways
from .windows import Schedule, waiting_line
from .fleet import PROGRESSING, ROLLING_BACK


def status(agent: Agent) -> dict[str, Any]:
    """Applied vs attempted revision, the condition, the rollout, and each object's state on each node."""
    h = agent.history
    state = h.load()
    applied = state.applied.revision if state.applied else ""
    attempted = state.attempted
    last = h.get("last_result") or {}
    failed = h.get("failed") or {}
    suspended = h.get("suspended")
    rollout = h.get("rollout")
    unfinished = rollout is not None and rollout.get("phase") in (PROGRESSING, ROLLING_BACK)
    store, store_problem = h.get("store") or {}, h.problem()
    schedules = {n.name: n.schedule for n in agent.cfg.nodes}
    now = datetime.fromtimestamp(clock.wall(), timezone.utc)
    cond = condition(state, store_problem, schedules, now)  # the same decisions the agent makes (decide.py)
    condition_, message = cond.type, cond.message
    out: dict[str, Any] = {
        "source": {"url": agent.location.url, "branch": agent.location.branch, "path": agent.location.path},
        "appliedRevision": applied,
        "attemptedRevision": attempted,
        "condition": condition_,
        "message": message,
        "reason": cond.reason.value,
        "suspended": suspended,
        "failedRevision": failed or None,
        "rollout": _rollout(rollout, schedules, now),
        "problems": _problems(state),
        "lastSync": last,
        "stateStore": {"problem": store_problem, **({"reset": store} if store.get("lost") else {})},
        "nodes": [],
        "objects": [],
        "orphanedVolumes": [],
        "unknownSecrets": [],
        "warnings": [],
    }
    rev = agent.applied()
    out["warnings"] = (unplaced(rev, agent.cfg.nodes) + list(rev.warnings)) if rev is not None else []
    out["warnings"] += [store["message"]] if store.get("lost") else []  # the store was lost: what is gone for good
    node_status = {n: p["status"] for n, p in (rollout or {}).get("nodes", {}).items()} if unfinished else {}
    _nodes(agent, rev, node_status, out)
    out["autoscalers"] = _autoscalers(rev, h.get(hpa.STORE_KEY), out["objects"])
    out["evictions"] = eviction.recorded(h.get(eviction.STORE_KEY), (), 0.0)  # the last ones, the newest last
    return out


def _autoscalers(rev: Revision | None, raw: Any, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each HorizontalPodAutoscaler: its target's pods now (every node), the replicas it wants, its metrics;
    its rows in `objects` get the same summary as their state and detail."""
    records = hpa.records(raw)
    found = []
    for spec, _ in hpa.targets(rev) if rev is not None else []:
        record = records.get(str(spec.ref))
        current = sum(len(o.get("pods", ())) for o in objects
                      if (o["kind"], o["namespace"], o["name"]) == (spec.target.kind, spec.target.namespace,
                                                                     spec.target.name))
        desired = record.desired if record is not None else None
        entry = {"name": spec.ref.name, "namespace": spec.ref.namespace, "target": str(spec.target),
                 "currentReplicas": current, "desiredReplicas": desired,
                 "minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas,
                 "metrics": [{"resource": r.resource, "utilization": r.utilization, "target": r.target,
                              "pods": r.pods} for r in (record.readings if record else ())],
                 "heldBack": record.held if record else None,  # the replicas wanted while a rate policy holds
                 "measuredAt": record.at if record else None, "summary": hpa.shown(record, spec, current)}
        found.append(entry)
        for o in objects:
            if (o["kind"], o["namespace"], o["name"]) == (spec.ref.kind, spec.ref.namespace, spec.ref.name):
                o.update(state="Measured" if record and record.readings else "Waiting", detail=entry["summary"])
    return found


def _problems(state: AgentState) -> list[str]:
    """The head's validation problems, when the head is the rejected commit."""
    rejected, attempted = state.rejected, state.attempted
    if not attempted or rejected is None or rejected.sha != attempted.rsplit(":", 1)[-1]:
        return []
    return [str(p) for p in rejected.problems]


def _nodes(agent: Agent, rev: Revision | None, node_status: dict[str, str], out: dict[str, Any]) -> None:
    """Each node (reachable, or why not) and, for the applied revision, each object's state on it."""
    h = agent.history
    lives = agent.live()
    revs = {(r.kind, r.namespace, r.name, r.template_hash): r.number for r in h.workload_revisions()}
    readiness = h.get(ENDPOINTS) or {}  # the daemon's readiness monitor's verdicts (endpoints.py)
    for cfg_node in agent.cfg.nodes:
        live = lives[cfg_node.name]
        if isinstance(live, str):
            out["nodes"].append({"name": cfg_node.name, "reachable": False, "error": live,
                                 "labels": dict(cfg_node.labels)})
            continue
        dialer = agent.nodes[cfg_node.name].dialer
        out["nodes"].append({"name": cfg_node.name, "reachable": True, "pods": len(live.pods),
                             "labels": dict(cfg_node.labels),
                             "httpTcpProbes": f"from outside the container: {dialer.mode}" if dialer else
                             "in the container (the agent cannot reach this node's pod addresses)",
                             **({"rollout": node_status[cfg_node.name]} if cfg_node.name in node_status else {})})
        if rev is None:
            continue
        desired = compile_node(rev, cfg_node, agent.cfg.nodes, ENV_UNUSED)  # no env is read here
        out["nodes"][-1]["images"] = agent.fleet.images(desired)
        out["nodes"][-1]["imageBytes"] = _image_bytes(agent, cfg_node.name)
        vol_names = {claim_volume(v.claim, live.volumes) for v in desired.volumes}
        out["orphanedVolumes"] += [f"{cfg_node.name}/{v}" for v in sorted(set(live.volumes) - vol_names)]
        unknown = unknown_secrets(desired, live, h.secrets(cfg_node.name))
        out["unknownSecrets"] += [f"{cfg_node.name}/{s}" for s in sorted(unknown)]
        books = batchstore.stored(h, cfg_node.name)
        for o in rev.objects:
            out["objects"].append(_object(o, cfg_node.name, desired, live, revs, dialer is not None,
                                          unready(readiness, cfg_node.name), books.get(str(o.ref))))


def _object(o: Object, node: str, desired: Any, live: LiveState, revs: dict[tuple[str, str, str, str], int],
            outside: bool, unready_pods: frozenset[str] = frozenset(), book: Book | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": o.ref.kind, "namespace": o.ref.namespace, "name": o.ref.name, "node": node}
    by_ref = {w.ref: w for w in desired.workloads}
    if o.ref in by_ref and o.ref.kind != "Service":  # a Service's own WorkloadSpec is its forwarder (_service)
        entry.update(_workload(o, by_ref[o.ref], live, revs, outside))
        if o.ref.kind in ("Job", "CronJob"):
            entry.update(_job(by_ref[o.ref], live.pods_of(o.ref), book))
    elif o.ref.kind == "PersistentVolumeClaim":
        entry["state"] = "Bound" if claim_volume(o.ref, live.volumes) in live.volumes else "Pending"
    elif o.ref.kind == "Namespace":
        entry["state"] = "Active" if network_name(o.ref.name) in live.networks else "Missing"
    elif o.ref.kind in ("ConfigMap", "Secret"):
        mine = [s for s in desired.secrets if s.source == o.ref]
        entry["keys"] = len(getattr(o, "data", {}))
        entry["state"] = "Applied" if all(s.name in live.secrets for s in mine) else "Missing"
    elif o.ref.kind == "Service":
        entry.update(_service(o, node, desired, live, unready_pods))
    elif o.ref.kind == "HorizontalPodAutoscaler":
        entry["state"] = "Waiting"  # until `_autoscalers` gives its summary
    return entry


def _workload_state(w: Any, pods: list[Any], current: list[Any], ready: int, others: list[str]) -> str:
    if ready == w.replicas and len(pods) == w.replicas:
        return "Ready"
    if others:
        return "Rolling" if current else "OldRevision"
    return "Progressing" if pods else ("Missing" if w.replicas else "NotScheduled")


def _workload(o: Object, w: Any, live: LiveState, revs: dict[tuple[str, str, str, str], int],
              outside: bool) -> dict[str, Any]:
    pods = live.pods_of(o.ref)
    current = [p for p in pods if p.template_hash == w.template_hash]
    ready = sum(p.ready for p in current)
    others = sorted({p.template_hash for p in pods} - {w.template_hash})
    entry: dict[str, Any] = dict(
        ready=ready, desired=w.replicas, templateHash=w.template_hash,
        revision=revs.get((o.ref.kind, o.ref.namespace, o.ref.name, w.template_hash)),
        otherTemplates=[{"templateHash": t, "revision": revs.get((o.ref.kind, o.ref.namespace, o.ref.name, t))}
                        for t in others],
        pods=[{"name": p.name, "ready": p.ready, "status": p.status, "templateHash": p.template_hash,
               "containers": [{"name": c.labels.get("io.gitops-agent.container", c.name), "image": c.image,
                               "state": c.state, "health": c.health, "startedAt": c.started_at,
                               "exitCode": c.exit_code}
                              for c in p.containers]} for p in pods],
        probes=probe_ways(w.pods[0].running_containers(), outside) if w.pods else [],
        state=_workload_state(w, pods, current, ready, others),
    )
    return entry


def _job(w: Any, pods: list[Any], book: Book | None) -> dict[str, Any]:
    """A Job's run (gitops_agent/jobs): its state (Complete, Failed, Running or Pending), counts, exit codes and
    the failed pods' last output (Secret values redacted); a CronJob's runs (gitops_agent/cronjobs), each so."""
    if w.cron is None:
        record = book.run(w.template_hash) if book else None
        run = job_run(w, pods, record, clock.wall())
        return {"state": run.phase, "job": {
            "succeeded": run.succeeded, "failed": run.failed, "active": run.active, "completions": run.completions,
            "exitCodes": list(run.exit_codes), "reason": run.reason or None,
            "finishedAt": _iso(record.finished) if record and record.finished else None,
            "output": record.output if record and record.output else None,
            **({"completedIndexes": run.completed_indexes, "failedIndexes": run.failed_indexes or None}
               if w.job.indexed else {})}}
    runs = []
    for r in book.runs if book else ():
        state = job_run(w, pods_of_run(pods, r.run), r, clock.wall())
        runs.append({"run": f"{w.ref.name}-{r.run}", "scheduled": _iso(r.scheduled), "state": state.phase,
                     "reason": state.reason or None, "succeeded": state.succeeded, "failed": state.failed,
                     "active": state.active, "exitCodes": list(state.exit_codes), "output": r.output or None})
    active = sum(1 for r in runs if r["state"] in ("Running", "Pending"))
    return {"state": "Suspended" if w.cron.suspend else ("Active" if active else "Scheduled"), "cronJob": {
        "schedule": w.cron.schedule, "timeZone": w.cron.time_zone, "concurrencyPolicy": w.cron.concurrency_policy,
        "lastScheduleTime": _iso(book.last) if book and book.last else None, "active": active,
        "note": book.note if book and book.note else None, "runs": runs}}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _service(o: Object, node: str, desired: Any, live: LiveState, unready_pods: frozenset[str]) -> dict[str, Any]:
    """A Service on one node: its ready endpoints (running pods it selects that the readiness monitor has not
    taken out of its DNS name, endpoints.py) and those that are not ready."""
    selected = [p for w in desired.workloads for p in live.pods_of(w.ref)
                if any(o.ref.name in ps.aliases for ps in w.pods[:1])]
    ready = sorted(p.name for p in selected if p.ready and p.name not in unready_pods)
    entry: dict[str, Any] = {"endpoints": len(ready), "state": "Ready" if ready else "NoEndpoints",
                             "readyEndpoints": ready,
                             "notReadyEndpoints": sorted({p.name for p in selected} - set(ready))}
    if isinstance(o, Service) and o.published():  # node ports (given or allocated); a LoadBalancer's address
        entry["nodePorts"] = [f"{port}/{sp.protocol}" for port, sp in o.published()]
        if o.type == "LoadBalancer":
            entry["loadBalancer"] = [f"{node}:{port}/{sp.protocol}" for port, sp in o.published()]
    entry.update(_forwarder(o, desired, live))
    return entry


def _forwarder(o: Object, desired: Any, live: LiveState) -> dict[str, Any]:
    """The Service's forwarder pod on this node (gitops_agent/forwarder.py), if it has one: its ports and state."""
    fwd = next((w for w in desired.workloads if w.ref == o.ref), None)
    if fwd is None:
        return {}
    (spec,) = fwd.pods
    pod = live.pods.get(spec.name)
    state = "Missing" if pod is None else "Ready" if pod.ready and pod.template_hash == fwd.template_hash else \
        "Progressing"
    return {"forwarder": {"pod": spec.name, "ports": [f"{m.host_port}/{m.protocol.upper()}" for m in spec.ports],
                          "state": state}}


def _progress(rollout: dict[str, Any]) -> str:
    nodes = rollout.get("nodes", {})
    done = sum(1 for p in nodes.values() if p["status"] in ("done", "rolled-back"))
    return f"{done}/{len(nodes)} node(s)"


def _rollout(rollout: dict[str, Any] | None, schedules: Mapping[str, Schedule | None] | None = None,
             now: datetime | None = None) -> dict[str, Any] | None:
    """The rollout record as `status` shows it; a node held by its maintenance window gets `window`, its line
    as of `now` (`windows.waiting_line`: "waiting for window (opens 02:00 Europe/Berlin, in 3 h 12 min)")."""
    if not rollout:
        return None
    return {
        "target": rollout["target"], "previous": rollout["previous"], "phase": rollout["phase"],
        "cause": rollout["cause"],
        "progress": _progress(rollout), "fast": rollout.get("fast", False), "batch": rollout.get("batch", 1),
        "nodes": [_rollout_node(n, rollout["nodes"][n], (schedules or {}).get(n), now) for n in rollout["order"]],
        "failure": rollout.get("failure") or None,
    }


def _rollout_node(name: str, record: dict[str, Any], plan: Schedule | None, now: datetime | None) -> dict[str, Any]:
    """One node of the rollout; held by its window (status `window`): with the line of when it opens."""
    entry = {"name": name, **record}
    if record.get("status") == "window":
        fresh = waiting_line(plan, now) if plan is not None and now is not None else ""
        entry["window"] = fresh or record.get("error") or "waiting for window"
    return entry


def _image_bytes(agent: Agent, name: str) -> int | None:
    """Disk use of the node's image store (every image, whoever pulled it); None if it cannot be read."""
    try:
        return sum(agent.nodes[name].image_use()[1].values())
    except NodeError:
        return None
