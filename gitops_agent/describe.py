"""`describe KIND/NAMESPACE/NAME`: one object as the agent sees it on each node, and its recent events.

A leaf beside `status`: the per-node part is `status`'s own entries for the object (pods,
containers, template hash, revision, probe state, Service endpoints); the events come from
the history store's records (workload revisions, finished rollouts, the failed revision).
Read-only: never writes to a node or to the store.
"""

from __future__ import annotations

from typing import Any

from .agent import Agent
from .logs import BadSelector, parse_selector
from .model import ObjectRef
from .status import status


def parse_ref(text: str) -> ObjectRef:
    sel = parse_selector(text)
    if sel.ref is None:
        raise BadSelector(f"{text!r}: give KIND/NAMESPACE/NAME (e.g. Deployment/demo/web)")
    return sel.ref


def describe(agent: Agent, ref: ObjectRef) -> dict[str, Any]:
    """The object on every node it is placed on, and its events, newest first."""
    st = status(agent)
    nodes = [o for o in st["objects"] if (o["kind"], o["namespace"], o["name"]) == (ref.kind, ref.namespace, ref.name)]
    if not nodes:
        where = st["appliedRevision"] or "nothing applied yet"
        raise BadSelector(f"{ref} is not in the applied revision ({where})")
    return {
        "kind": ref.kind, "namespace": ref.namespace, "name": ref.name,
        "appliedRevision": st["appliedRevision"],
        "nodes": nodes,
        "unreachable": [{"name": n["name"], "error": n["error"]} for n in st["nodes"] if not n["reachable"]],
        "events": events(agent, ref),
    }


def events(agent: Agent, ref: ObjectRef, limit: int = 20) -> list[dict[str, Any]]:
    """Rolled (a new template got a revision number), Failed and RolledBack (a rollout whose
    failing pod belongs to this object), newest first."""
    h = agent.history
    out: list[dict[str, Any]] = []
    for wr in h.workload_revisions():
        if (wr.kind, wr.namespace, wr.name) == (ref.kind, ref.namespace, ref.name):
            out.append({"time": wr.updated, "type": "Normal", "reason": "Rolled",
                        "message": f"revision {wr.number}: template {wr.template_hash} from {wr.revision}"})
    for r in h.rollouts():
        failure = r.get("failure") or {}
        if not str(failure.get("error", "")).startswith(f"{ref}:"):  # a rollout failure names its workload first
            continue
        probe = f" {failure['probe']} probe" if failure.get("probe") else ""
        output = f": {failure['output']}" if failure.get("output") else ""
        out.append({"time": r.get("finished") or r.get("started"), "type": "Warning", "reason": "Failed",
                    "message": f"node {failure.get('node')}: pod {failure.get('pod') or '-'}{probe} failed{output} "
                               f"(revision {r['target']})"})
        if r.get("phase") == "rolled-back":
            out.append({"time": r.get("finished"), "type": "Normal", "reason": "RolledBack",
                        "message": f"nodes {', '.join(r.get('touched', [])) or '-'} back on {r['previous']}"})
    out.sort(key=lambda e: e["time"] or 0, reverse=True)
    return out[:limit]

