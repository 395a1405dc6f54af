"""Job and CronJob documents (schemas/job.json, schemas/cronjob.json) -> a `model.Workload` of kind Job or
CronJob; `gitops_agent/jobs.py` runs a Job, `gitops_agent/cronjobs.py` decides a CronJob's runs.

Builds on `convert`'s shared controller fields (the pod template, the rollout knobs). A Job selects its own pods
by the ownership labels, as Kubernetes generates its selector: there is no `selector` to match. A CronJob is
its `jobTemplate` (read as a Job, at its own paths) plus a `model.CronSchedule`.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from .. import model
from .. import windows
from .document import Document, JsonPath

_TEMPLATE: JsonPath = ("spec", "jobTemplate")


def job(doc: Document) -> model.Workload:
    """Pods run to completion: `completions`, `parallelism` (both default 1), `backoffLimit` (default 6),
    `activeDeadlineSeconds` and `ttlSecondsAfterFinished` (both unset by default)."""
    from .convert import _controller  # convert dispatches here: imported when first used

    spec = doc.body["spec"]
    body = copy.deepcopy(doc.body)
    body["spec"]["template"].setdefault("metadata", {})  # optional in a Job: its pods need no labels
    return _controller(replace(doc, body=body), selector={}, replicas=1, strategy="Recreate",
                       completions=spec.get("completions", 1), parallelism=spec.get("parallelism", 1),
                       backoff_limit=spec.get("backoffLimit", 6),
                       active_deadline_seconds=spec.get("activeDeadlineSeconds"),
                       ttl_seconds_after_finished=spec.get("ttlSecondsAfterFinished"))


def _as_job(doc: Document) -> Document:
    """The CronJob's jobTemplate as a Job document at the CronJob's place: the same file, lines and problems
    list (a problem found in the template is the CronJob's, at the template's line)."""
    template = doc.body["spec"]["jobTemplate"]
    n = len(_TEMPLATE)
    lines = {(): doc.lines[()], **{("spec",) + path[n + 1:]: line for path, line in doc.lines.items()
                                   if path[:n + 1] == (*_TEMPLATE, "spec")}}
    body: dict[str, Any] = {**doc.body, "spec": template["spec"]}
    return replace(doc, body=body, lines=lines)


def cronjob(doc: Document) -> model.Workload:
    """A Job template run on a schedule; see schemas/cronjob.json and the README's kinds table."""
    spec = doc.body["spec"]
    schedule, zone = spec["schedule"], spec.get("timeZone", "UTC")
    problem = windows.cron_problem(schedule)
    if problem:
        doc.report(("spec", "schedule"), problem)
    if not windows.known_zone(zone):
        doc.report(("spec", "timeZone"), f"unknown time zone {zone!r} (an IANA name such as Europe/Berlin or UTC)")
    return replace(job(_as_job(doc)), cron=model.CronSchedule(
        schedule=schedule, time_zone=zone, concurrency_policy=spec.get("concurrencyPolicy", "Allow"),
        starting_deadline_seconds=spec.get("startingDeadlineSeconds"),
        successful_jobs_history_limit=spec.get("successfulJobsHistoryLimit", 3),
        failed_jobs_history_limit=spec.get("failedJobsHistoryLimit", 1), suspend=spec.get("suspend", False)))
