"""Jobs (batch/v1) on a node: the PURE decision of a Job's next runs from its live pods, and its result.

Sits under `plan` (which turns `next_runs` into RunPod and RemovePod actions) and over `desired` (a Job's
WorkloadSpec holds one PodSpec per attempt it may make: completions + backoffLimit of them) and `live`. The live
pods of the Job's current template are the record of its runs, kept on the node: exited 0 (succeeded), exited
otherwise (failed), else active. So a finished Job is not run again on later passes, and a changed template (a
new template hash) is a new run. No Podman, no clock: tested from literals (tests/test_jobs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .desired import PodSpec, WorkloadSpec
from .live import LivePod


@dataclass(frozen=True)
class JobRun:
    """A Job's run on a node, as its pods show it."""

    succeeded: int
    failed: int
    active: int
    completions: int
    backoff_limit: int
    exit_codes: tuple[int, ...] = ()  # of the failed pods' first failed container, in pod-name order

    @property
    def phase(self) -> str:
        """Complete, Failed (more than backoffLimit pods failed), Running or Pending (nothing started yet)."""
        if self.succeeded >= self.completions:
            return "Complete"
        if self.failed > self.backoff_limit:
            return "Failed"
        return "Running" if self.active else "Pending"


def finished(pod: LivePod) -> bool:
    return bool(pod.containers) and all(c.state in ("exited", "stopped") for c in pod.containers)


def succeeded(pod: LivePod) -> bool:
    return finished(pod) and all(c.exit_code == 0 for c in pod.containers)


def job_run(w: WorkloadSpec, pods: Sequence[LivePod]) -> JobRun:
    """The run of `w`'s current template from its live `pods` (the Job's, any template)."""
    own = sorted((p for p in pods if p.template_hash == w.template_hash), key=lambda p: p.name)
    failed = [p for p in own if finished(p) and not succeeded(p)]
    return JobRun(
        succeeded=sum(succeeded(p) for p in own),
        failed=len(failed),
        active=sum(not finished(p) for p in own),
        completions=w.completions,
        backoff_limit=len(w.pods) - w.completions,
        exit_codes=tuple(next(c.exit_code for c in p.containers if c.exit_code) for p in failed
                         if any(c.exit_code for c in p.containers)),
    )


def next_runs(w: WorkloadSpec, pods: Sequence[LivePod]) -> tuple[tuple[PodSpec, ...], tuple[str, ...]]:
    """(attempts to start now, pods to remove): the next unused attempts while the Job is neither complete nor
    failed, never more than `parallelism` active nor more than the completions still missing; and the pods of
    an older template, whose run the changed Job replaces."""
    run = job_run(w, pods)
    stale = tuple(sorted(p.name for p in pods if p.template_hash != w.template_hash))
    if run.phase in ("Complete", "Failed"):
        return (), stale
    used = {p.name for p in pods}
    free = [spec for spec in w.pods if spec.name not in used]
    count = min(w.parallelism - run.active, w.completions - run.succeeded - run.active)
    return tuple(free[: max(0, count)]), stale
