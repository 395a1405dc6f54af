"""A Job document (schemas/job.json) -> a `model.Workload` of kind Job; `gitops_agent/jobs.py` runs it.

Builds on `convert`'s shared controller fields (the pod template, the rollout knobs). A Job selects its own pods
by the ownership labels, as Kubernetes generates its selector: there is no `selector` to match.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from .. import model
from .document import Document


def job(doc: Document) -> model.Workload:
    """Pods run to completion: `completions`, `parallelism` (both default 1) and `backoffLimit` (default 6)."""
    from .convert import _controller  # convert dispatches here: imported when first used

    spec = doc.body["spec"]
    body = copy.deepcopy(doc.body)
    body["spec"]["template"].setdefault("metadata", {})  # optional in a Job: its pods need no labels
    return _controller(replace(doc, body=body), selector={}, replicas=1, strategy="Recreate",
                       completions=spec.get("completions", 1), parallelism=spec.get("parallelism", 1),
                       backoff_limit=spec.get("backoffLimit", 6))
