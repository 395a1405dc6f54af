"""A HorizontalPodAutoscaler document (schemas/horizontalpodautoscaler.json) -> a `model.Autoscaler`;
`gitops_agent/hpa.py` decides its replicas, `gitops_agent/autoscaler.py` measures its target's pods.

Its target (exists, same namespace, limits of each metric's resource) is checked against the other objects in
`checks.check_autoscalers`; here only what the document alone can tell: minReplicas <= maxReplicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from .. import model
from .document import Document, Problems

# Kubernetes' defaults: minReplicas 1; without metrics, 80 % of the CPU; scaleUp 0 s and scaleDown 300 s windows;
# without policies, model.SCALE_UP_RATE and SCALE_DOWN_RATE
DEFAULT_METRIC = model.Metric("cpu", 80)


V1 = "autoscaling/v1"
_V1_TARGET = ("spec", "targetCPUUtilizationPercentage")


def from_v1(doc: Document) -> None:
    """An autoscaling/v1 document (still served by Kubernetes) made the autoscaling/v2 one Kubernetes stores:
    `targetCPUUtilizationPercentage: N` is a cpu Resource metric of averageUtilization N; without it, v2's default
    (80 % of the CPU) applies, as in v1. v2's own fields are an error here, as Kubernetes' strict decoding says."""
    doc.body["apiVersion"] = "autoscaling/v2"
    spec = doc.body.get("spec")
    if not isinstance(spec, dict):
        return  # the schema says what is wrong
    for name in ("metrics", "behavior"):
        if name in spec:
            doc.report(("spec", name), f"field {name!r} is autoscaling/v2's: set apiVersion autoscaling/v2, or use "
                                       "targetCPUUtilizationPercentage (autoscaling/v1 has only that)")
    if "targetCPUUtilizationPercentage" not in spec:
        return
    percent = spec.pop("targetCPUUtilizationPercentage")
    if not isinstance(percent, int) or isinstance(percent, bool) or percent < 1:
        doc.report(_V1_TARGET, "must be an integer of at least 1 (a percentage of the containers' cpu limits)")
        return
    spec["metrics"] = [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}]
    doc.lines[("spec", "metrics")] = doc.line_of(_V1_TARGET)


def autoscaler(doc: Document) -> model.Autoscaler:
    """See schemas/horizontalpodautoscaler.json and the README's kinds table."""
    spec = doc.body["spec"]
    target = spec["scaleTargetRef"]
    low, high = spec.get("minReplicas", 1), spec["maxReplicas"]
    if low > high:
        doc.report(("spec", "minReplicas"), f"must be at most maxReplicas ({high})")
    metrics = tuple(model.Metric(m["resource"]["name"], m["resource"]["target"]["averageUtilization"])
                    for m in spec.get("metrics", ()))
    behavior = spec.get("behavior", {})
    up, down = behavior.get("scaleUp", {}), behavior.get("scaleDown", {})
    return model.Autoscaler(
        ref=doc.ref, origin=doc.origin,
        target=model.ObjectRef(target["kind"], doc.namespace, target["name"]),
        min_replicas=low, max_replicas=high, metrics=metrics or (DEFAULT_METRIC,),
        scale_up_window=up.get("stabilizationWindowSeconds", 0),
        scale_down_window=down.get("stabilizationWindowSeconds", 300),
        scale_up_rate=_rate(up, model.SCALE_UP_RATE), scale_down_rate=_rate(down, model.SCALE_DOWN_RATE),
    )


def _rate(rules: dict[str, Any], default: model.ScalingRate) -> model.ScalingRate:
    """One direction's rate as Kubernetes' defaulting makes it: each of selectPolicy and policies the manifest's,
    else the default's (the schema checked the values: at least one policy, value > 0, periodSeconds 1..1800)."""
    policies = tuple(model.ScalingPolicy(p["type"], p["value"], p["periodSeconds"]) for p in rules["policies"]) \
        if "policies" in rules else default.policies
    return model.ScalingRate(rules.get("selectPolicy", default.select), policies)


def check_autoscalers(entries: Iterable[tuple[Document, model.Object | None]]) -> Problems:
    """Each autoscaler's target is a Deployment or StatefulSet of its namespace, declared in the repository,
    scaled by no other autoscaler, whose every container has a limit of each metric's resource (the utilisation
    is measured against it); each problem at the autoscaler's document."""
    found = Problems()
    workloads = {obj.ref: obj for _, obj in entries if isinstance(obj, model.Workload)}
    claimed: dict[model.ObjectRef, str] = {}
    for doc, obj in entries:
        if not isinstance(obj, model.Autoscaler):
            continue
        path = ("spec", "scaleTargetRef", "name")
        target = workloads.get(obj.target)
        if target is None:
            found.add(doc, path, f"{obj.target.kind} {obj.target.name!r} does not exist in namespace "
                                 f"{obj.target.namespace!r} (an autoscaler scales a workload of its own namespace)")
            continue
        if obj.target in claimed:
            found.add(doc, path, f"{obj.target} is already scaled by HorizontalPodAutoscaler "
                                 f"{claimed[obj.target]!r}: one autoscaler per workload")
            continue
        claimed[obj.target] = obj.ref.name
        for i, metric in enumerate(obj.metrics):
            missing = [c.name for c in target.template.containers if _limit(c, metric.resource) is None]
            if missing:
                where = _V1_TARGET if _V1_TARGET in doc.lines else \
                    ("spec", "metrics", i, "resource", "name") if "metrics" in doc.body["spec"] else path
                found.add(doc, where, f"the {metric.resource} utilisation is measured against the containers' "
                                      f"limits, and container(s) {', '.join(missing)} of {obj.target} have no "
                                      f"resources.limits.{metric.resource}: set one")
    return found


def _limit(container: model.Container, resource: str) -> int | None:
    return container.resources.cpu_millis if resource == "cpu" else container.resources.memory_bytes


def at_most(entries: Iterable[tuple[Document, model.Object | None]]) -> list[tuple[Document, model.Workload]]:
    """The workloads as `policy.check_capacity` counts them: an autoscaled one at its autoscaler's maxReplicas
    (if that is more than Git's replicas), since that is what it may run."""
    pairs = list(entries)
    most = {o.target: o.max_replicas for _, o in pairs if isinstance(o, model.Autoscaler)}
    return [(doc, replace(obj, replicas=max(obj.replicas, most.get(obj.ref, 0))))
            for doc, obj in pairs if isinstance(obj, model.Workload)]
