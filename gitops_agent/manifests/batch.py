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
    metadata = body["spec"]["template"].setdefault("metadata", {})  # optional in a Job: its pods need no labels
    for key in ("name", "generateName"):
        if key in metadata:
            doc.warn(("spec", "template", "metadata", key), f"{key} has no effect, as in Kubernetes (the Job's pods "
                     "get names derived from the Job's): ignored")
            del metadata[key]
    policy = job_policy(doc)
    default_limit = 2147483647 if policy.backoff_limit_per_index is not None else 6  # Kubernetes' defaults
    return _controller(replace(doc, body=body), selector={}, replicas=1, strategy="Recreate",
                       completions=spec.get("completions", 1), parallelism=spec.get("parallelism", 1),
                       backoff_limit=spec.get("backoffLimit", default_limit), job_policy=policy,
                       active_deadline_seconds=spec.get("activeDeadlineSeconds"),
                       ttl_seconds_after_finished=spec.get("ttlSecondsAfterFinished"))


def job_policy(doc: Document) -> model.JobPolicy:
    """completionMode, backoffLimitPerIndex, maxFailedIndexes, podFailurePolicy and successPolicy, checked
    together as Kubernetes' API server does (each problem reported at its field)."""
    spec = doc.body["spec"]
    indexed = spec.get("completionMode", "NonIndexed") == "Indexed"
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    completions = spec.get("completions")
    if indexed and completions is None:
        doc.report(("spec", "completions"), "is required with completionMode Indexed (the number of indexes)")
    for key in ("backoffLimitPerIndex", "successPolicy") if not indexed else ():
        if key in spec:
            doc.report(("spec", key), "needs completionMode: Indexed")
    if max_failed is not None and per_index is None:
        doc.report(("spec", "maxFailedIndexes"), "needs backoffLimitPerIndex")
    elif max_failed is not None and completions is not None and max_failed > completions:
        doc.report(("spec", "maxFailedIndexes"), f"must be at most completions ({completions})")
    return model.JobPolicy(indexed=indexed, backoff_limit_per_index=per_index, max_failed_indexes=max_failed,
                           pod_failure_rules=_failure_rules(doc, per_index is not None),
                           success_rules=_success_rules(doc, completions or 1))


def _failure_rules(doc: Document, per_index: bool) -> tuple[model.PodFailureRule, ...]:
    """podFailurePolicy's rules: onExitCodes rules as given; an onPodConditions rule is kept (it never matches:
    no pod condition such as DisruptionTarget is ever set on a node here) with a warning."""
    spec = doc.body["spec"]
    if "podFailurePolicy" in spec and spec["template"]["spec"].get("restartPolicy") != "Never":
        doc.report(("spec", "podFailurePolicy"), "needs restartPolicy: Never in the pod template, as in Kubernetes")
    names = {c["name"] for group in ("containers", "initContainers") for c in spec["template"]["spec"].get(group, ())
             if isinstance(c, dict)}
    rules = []
    for i, rule in enumerate(spec.get("podFailurePolicy", {}).get("rules", ())):
        path: JsonPath = ("spec", "podFailurePolicy", "rules", i)
        if rule["action"] == "FailIndex" and not per_index:
            doc.report(path + ("action",), "FailIndex needs backoffLimitPerIndex (and completionMode: Indexed)")
        codes = rule.get("onExitCodes")
        if codes is None:
            kinds = ", ".join(str(c.get("type")) for c in rule.get("onPodConditions", ()))
            doc.warn(path + ("onPodConditions",), f"never matches here (no pod condition such as {kinds or 'these'} "
                     "is ever set on a node: no eviction, preemption or controller adds one): a no-op rule")
            rules.append(model.PodFailureRule(rule["action"]))
            continue
        if codes["operator"] == "In" and 0 in codes["values"]:
            doc.report(path + ("onExitCodes", "values"), "must not contain 0 with operator In (0 is success)")
        if codes.get("containerName") is not None and codes["containerName"] not in names:
            doc.report(path + ("onExitCodes", "containerName"), f"no container {codes['containerName']!r} in the "
                       "pod template")
        rules.append(model.PodFailureRule(rule["action"], model.ExitCodes(
            codes["operator"], frozenset(codes["values"]), codes.get("containerName"))))
    return tuple(rules)


def indexes(text: str) -> list[int]:
    """PURE: Kubernetes' index list `0,2-3` as [0, 2, 3] (ranges in order, as the schema's pattern writes)."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        out += range(int(low), int(high or low) + 1)
    return out


def _success_rules(doc: Document, completions: int) -> tuple[model.SuccessRule, ...]:
    """successPolicy's rules; each index below completions, each count no more than the indexes it counts."""
    rules = []
    for i, rule in enumerate(doc.body["spec"].get("successPolicy", {}).get("rules", ())):
        path: JsonPath = ("spec", "successPolicy", "rules", i)
        listed = indexes(rule["succeededIndexes"]) if "succeededIndexes" in rule else None
        if listed is not None and (sorted(set(listed)) != listed or listed[-1] >= completions):
            doc.report(path + ("succeededIndexes",), f"must list indexes below completions ({completions}) in "
                       "increasing order, without overlaps")
        count = rule.get("succeededCount")
        most = len(listed) if listed is not None else completions
        if count is not None and count > most:
            doc.report(path + ("succeededCount",), f"must be at most {most} (the indexes it counts)")
        rules.append(model.SuccessRule(frozenset(listed) if listed is not None else None, count))
    return tuple(rules)


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
    if spec["jobTemplate"]["spec"].get("completionMode") == "Indexed":
        doc.report((*_TEMPLATE, "spec", "completionMode"), "Indexed is mapped for a Job, not yet for a CronJob's "
                   "runs: use a Job, or NonIndexed")
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
