"""A StatefulSet document (schemas/statefulset.json) -> a `model.Workload` of kind StatefulSet.

Builds on `convert`'s shared controller fields (the pod template, the selector against its labels, the rollout
knobs): only what a StatefulSet adds is here. Each `volumeClaimTemplates` entry becomes a template volume of kind
"claimTemplate" named after it, so that the containers' `volumeMounts` refer to it as in Kubernetes; `desired`
gives every ordinal its own Podman volume for it (`<template>-<statefulset>-<ordinal>`, Kubernetes' PVC name).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from .. import model
from .document import Document


def statefulset(doc: Document) -> model.Workload:
    """Pods `<name>-<ordinal>`; see schemas/statefulset.json and the README's kinds table."""
    from .convert import _controller  # convert dispatches here: imported when first used

    spec = doc.body["spec"]
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", ())]
    for i, name in enumerate(claims):
        if name in claims[:i]:
            doc.report(("spec", "volumeClaimTemplates", i, "metadata", "name"),
                       f"volume name {name!r} is used by two volumeClaimTemplates")
    # A pod volume named like a claim template is replaced by it, as Kubernetes' StatefulSet controller does
    # (said with a warning). The claim templates become placeholder volumes of the pod, so that the template's
    # volumeMounts checks see them.
    body = copy.deepcopy(doc.body)
    own_volumes = []
    for j, v in enumerate(body["spec"]["template"]["spec"].get("volumes", ())):
        if v.get("name") in claims:
            doc.warn(("spec", "template", "spec", "volumes", j),
                     f"volume {v['name']!r} is replaced by the volumeClaimTemplate of the same name (as in Kubernetes)")
        else:
            own_volumes.append(v)
    placeholders = ({"name": n, "emptyDir": {}} for n in dict.fromkeys(claims))
    body["spec"]["template"]["spec"]["volumes"] = [*own_volumes, *placeholders]
    strategy = spec.get("updateStrategy", {})
    workload = _controller(replace(doc, body=body), replicas=spec.get("replicas", 1),
                           strategy=strategy.get("type", "RollingUpdate"), rolling_update=model.RollingUpdate(0, 1),
                           service_name=spec.get("serviceName", ""),
                           pod_management=spec.get("podManagementPolicy", "OrderedReady"),
                           partition=strategy.get("rollingUpdate", {}).get("partition", 0))
    own = len(workload.template.volumes) - len(claims)
    volumes = (*workload.template.volumes[:own],
               *(model.Volume(name, "claimTemplate", name) for name in claims))
    return replace(workload, template=replace(workload.template, volumes=volumes))

