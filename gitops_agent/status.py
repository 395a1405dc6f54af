"""`status`: what runs where, read from the history store and each node's live state.

Read-only: it never writes to a node or to the store. Its dict is printed as
JSON by `status -o json` and as tables by `cli`.
"""

from __future__ import annotations

from typing import Any

from .agent import Agent, _failure_message
from .desired import claim_volume, compile_node, network_name, unplaced
from .errors import NodeError, Problem
from .jobs import job_run
from .live import LiveState
from .model import Object, Service
from .plan import unknown_secrets
from .probes import probe_ways
from .rollout import PROGRESSING, ROLLING_BACK


def status(agent: Agent) -> dict[str, Any]:
    """Applied vs attempted revision, the condition, the rollout, and each object's state on each node."""
    h = agent.history
    applied = h.get("applied_revision", "")
    attempted = h.get("attempted_revision", "")
    last = h.get("last_result") or {}
    rejected = h.get("rejected") or {}
    failed = h.get("failed") or {}
    suspended = h.get("suspended")
    rollout = h.get("rollout")
    head_sha = attempted.rsplit(":", 1)[-1]
    head_rejected = bool(attempted) and rejected.get("sha") == head_sha
    head_failed = bool(attempted) and failed.get("sha") == head_sha
    unfinished = rollout is not None and rollout.get("phase") in (PROGRESSING, ROLLING_BACK)
    store, store_problem = h.get("store") or {}, h.problem()
    if store_problem:  # nothing can be recorded: the other keys may be stale
        condition, message = "Stalled", store_problem
    elif suspended:
        condition, message = "Suspended", f"{suspended['reason']}; pinned to {suspended['revision']}; `gitops-agent resume` follows Git again"
    elif last.get("result") == "source-error":
        # checked before rejected/failed: those speak of the head seen before Git went away,
        # and "fix it with a new commit" is no advice while no commit can be read
        keep = f"nodes keep the last good revision {applied}" if applied else "nothing applied yet"
        condition, message = "Reconciling", f"Git source unavailable: {last.get('error', '')}; {keep}; retrying"
    elif head_rejected:
        condition, message = "Stalled", f"revision {attempted} rejected: fix it with a new commit"
    elif head_failed:
        condition, message = "Stalled", _failure_message({**failed, "phase": (rollout or {}).get("phase"), "previous": applied})
    elif unfinished:
        condition, message = "Progressing", f"rollout of {rollout['target']}: {rollout['phase']}, {_progress(rollout)}"
    elif last.get("result") in ("applied", "in-sync") and applied == attempted:
        condition, message = "Ready", f"applied revision {applied}"
    elif not last:
        condition, message = "Reconciling", "no sync has run yet"
    else:
        condition, message = "Reconciling", f"last pass {last.get('result')}: {last.get('error', '')}".strip()
    out: dict[str, Any] = {
        "source": {"url": agent.location.url, "branch": agent.location.branch, "path": agent.location.path},
        "appliedRevision": applied,
        "attemptedRevision": attempted,
        "condition": condition,
        "message": message,
        "suspended": suspended,
        "failedRevision": failed or None,
        "rollout": _rollout(rollout),
        "problems": [str(Problem(**p)) for p in rejected.get("problems", [])] if head_rejected else [],
        "lastSync": last,
        "stateStore": {"problem": store_problem, **({"reset": store} if store.get("lost") else {})},
        "nodes": [],
        "objects": [],
        "orphanedVolumes": [],
        "unknownSecrets": [],
        "warnings": [],
    }
    rev = agent.applied()
    if rev is not None:
        out["warnings"] = unplaced(rev, agent.cfg.nodes) + list(rev.warnings)
    if store.get("lost"):  # the store was lost and rebuilt from labels: say what is gone for good
        out["warnings"].append(store["message"])
    lives = agent.live()
    revs = {(r.kind, r.namespace, r.name, r.template_hash): r.number for r in h.workload_revisions()}
    node_status = {n: p["status"] for n, p in (rollout or {}).get("nodes", {}).items()} if unfinished else {}
    for cfg_node in agent.cfg.nodes:
        live = lives[cfg_node.name]
        if isinstance(live, str):
            out["nodes"].append({"name": cfg_node.name, "reachable": False, "error": live, "labels": dict(cfg_node.labels)})
            continue
        dialer = agent.nodes[cfg_node.name].dialer
        out["nodes"].append({"name": cfg_node.name, "reachable": True, "pods": len(live.pods), "labels": dict(cfg_node.labels),
                             "httpTcpProbes": f"from outside the container: {dialer.mode}" if dialer else
                             "in the container (the agent cannot reach this node's pod addresses)",
                             **({"rollout": node_status[cfg_node.name]} if cfg_node.name in node_status else {})})
        if rev is None:
            continue
        desired = compile_node(rev, cfg_node, agent.cfg.nodes)
        out["nodes"][-1]["images"] = agent.fleet.images(desired)
        out["nodes"][-1]["imageBytes"] = _image_bytes(agent, cfg_node.name)
        vol_names = {claim_volume(v.claim, live.volumes) for v in desired.volumes}
        out["orphanedVolumes"] += [f"{cfg_node.name}/{v}" for v in sorted(set(live.volumes) - vol_names)]
        out["unknownSecrets"] += [f"{cfg_node.name}/{s}" for s in sorted(unknown_secrets(desired, live, h.secrets(cfg_node.name)))]
        for o in rev.objects:
            out["objects"].append(_object(o, cfg_node.name, desired, live, revs, dialer is not None))
    return out


def _object(o: Object, node: str, desired: Any, live: LiveState, revs: dict[tuple[str, str, str, str], int],
            outside: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": o.ref.kind, "namespace": o.ref.namespace, "name": o.ref.name, "node": node}
    by_ref = {w.ref: w for w in desired.workloads}
    if o.ref in by_ref:
        w = by_ref[o.ref]
        pods = live.pods_of(o.ref)
        current = [p for p in pods if p.template_hash == w.template_hash]
        ready = sum(p.ready for p in current)
        others = sorted({p.template_hash for p in pods} - {w.template_hash})
        if ready == w.replicas and len(pods) == w.replicas:
            state = "Ready"
        elif others:
            state = "Rolling" if current else "OldRevision"
        else:
            state = "Progressing" if pods else ("Missing" if w.replicas else "NotScheduled")
        entry.update(
            ready=ready, desired=w.replicas, templateHash=w.template_hash,
            revision=revs.get((o.ref.kind, o.ref.namespace, o.ref.name, w.template_hash)),
            otherTemplates=[{"templateHash": t, "revision": revs.get((o.ref.kind, o.ref.namespace, o.ref.name, t))} for t in others],
            pods=[{"name": p.name, "ready": p.ready, "status": p.status, "templateHash": p.template_hash,
                   "containers": [{"name": c.labels.get("io.gitops-agent.container", c.name), "image": c.image,
                                   "state": c.state, "health": c.health, "startedAt": c.started_at,
                                   "exitCode": c.exit_code}
                                  for c in p.containers]} for p in pods],
            probes=probe_ways(w.pods[0].containers, outside) if w.pods else [],
            state=state,
        )
        if o.ref.kind == "Job":  # its run (gitops_agent/jobs): Complete, Failed, Running or Pending
            run = job_run(w, pods)
            entry.update(state=run.phase, job={"succeeded": run.succeeded, "failed": run.failed, "active": run.active,
                                               "completions": run.completions, "exitCodes": list(run.exit_codes)})
    elif o.ref.kind == "PersistentVolumeClaim":
        entry["state"] = "Bound" if claim_volume(o.ref, live.volumes) in live.volumes else "Pending"
    elif o.ref.kind == "Namespace":
        entry["state"] = "Active" if network_name(o.ref.name) in live.networks else "Missing"
    elif o.ref.kind in ("ConfigMap", "Secret"):
        mine = [s for s in desired.secrets if s.source == o.ref]
        entry["keys"] = len(getattr(o, "data", {}))
        entry["state"] = "Applied" if all(s.name in live.secrets for s in mine) else "Missing"
    elif o.ref.kind == "Service":
        endpoints = sum(
            p.ready for w in desired.workloads for p in live.pods_of(w.ref)
            if any(o.ref.name in ps.aliases for ps in w.pods[:1])
        )
        entry.update(endpoints=endpoints, state="Ready" if endpoints else "NoEndpoints")
        if isinstance(o, Service) and o.published():  # node ports (given or allocated); a LoadBalancer's address
            entry["nodePorts"] = [f"{port}/{sp.protocol}" for port, sp in o.published()]
            if o.type == "LoadBalancer":
                entry["loadBalancer"] = [f"{node}:{port}/{sp.protocol}" for port, sp in o.published()]
    return entry


def _progress(rollout: dict[str, Any]) -> str:
    nodes = rollout.get("nodes", {})
    done = sum(1 for p in nodes.values() if p["status"] in ("done", "rolled-back"))
    return f"{done}/{len(nodes)} node(s)"


def _rollout(rollout: dict[str, Any] | None) -> dict[str, Any] | None:
    if not rollout:
        return None
    return {
        "target": rollout["target"], "previous": rollout["previous"], "phase": rollout["phase"], "cause": rollout["cause"],
        "progress": _progress(rollout), "fast": rollout.get("fast", False), "batch": rollout.get("batch", 1),
        "nodes": [{"name": n, **rollout["nodes"][n]} for n in rollout["order"]],
        "failure": rollout.get("failure") or None,
    }


def _image_bytes(agent: Agent, name: str) -> int | None:
    """Disk use of the node's image store (every image, whoever pulled it); None if it cannot be read."""
    try:
        return sum(agent.nodes[name].image_use()[1].values())
    except NodeError:
        return None
