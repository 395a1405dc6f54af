"""One vocabulary of *why*: the `Reason` every outcome, status condition, history record,
error and log event carries.

The values are a contract: logs, metrics and notifications key on them, so a value is
never renamed or reused for another meaning (add a new one instead). Values are
CamelCase like Kubernetes condition reasons.
"""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Why the agent did (or did not do) something. `str(reason)` is its stable value."""

    # a pass's result
    APPLIED = "Applied"  # a revision now runs on every node
    IN_SYNC = "InSync"  # nothing to change
    DRIFT_REPAIRED = "DriftRepaired"  # the stable revision again after a live change
    PROGRESSING = "Progressing"  # a rollout goes on (deferred or waiting nodes)
    SUPERSEDED = "Superseded"  # Git moved past the revision being rolled out (rollover)
    # holds: nothing new is applied, and why
    SUSPENDED = "Suspended"  # break-glass rollback: Git is not followed until `resume`
    RESUMED = "Resumed"
    REVISION_REJECTED = "RevisionRejected"  # the head commit failed validation
    POLICY_VIOLATION = "PolicyViolation"  # rejected: it asks for what the agent's `policy:` does not allow
    SIGNATURE_UNVERIFIED = "SignatureUnverified"  # rejected: no trusted signature (`source.verify`)
    REVISION_FAILED = "RevisionFailed"  # the head commit failed its rollout; not retried until Git moves
    ROLLOUT_HALTED = "RolloutHalted"  # failed with nothing to roll back to (or auto-rollback off)
    SOURCE_UNAVAILABLE = "SourceUnavailable"  # Git could not be read; nodes keep the last good revision
    NOTHING_TO_APPLY = "NothingToApply"  # no usable head and no applied revision yet
    # rollouts
    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_RESUMED = "RolloutResumed"
    STEP_DONE = "StepDone"
    ROLLOUT_FAILED = "RolloutFailed"  # a pod failed its probes or deadline
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"  # suspends syncing: needs a human
    ROLLOUT_COMPLETE = "RolloutComplete"
    ROLLBACK_REQUESTED = "RollbackRequested"  # the break-glass command
    # nodes and registries
    NODE_UNREACHABLE = "NodeUnreachable"
    NODE_DEFERRED = "NodeDeferred"  # unreachable longer than unreachable-node-timeout; converges later
    NODE_BACK = "NodeBack"
    NODE_FAILED = "NodeFailed"  # a Podman call failed
    DATA_LOSS = "DataLoss"  # a claim's volume was removed or made again empty under its pods: never repaired
    IMAGE_UNAVAILABLE = "ImageUnavailable"
    IMAGE_PULL_BACKOFF = "ImagePullBackOff"
    # Service endpoints (a pod's readiness, gitops_agent/endpoints)
    ENDPOINT_NOT_READY = "EndpointNotReady"  # a pod failed its readiness probe: out of its Services' DNS
    ENDPOINT_READY = "EndpointReady"  # a pod passed its readiness probe: in its Services' DNS
    EVICTED = "Evicted"  # a pod's disk emptyDir held more than its sizeLimit: removed and made again (eviction)
    # maintenance windows (config `schedule:`)
    WAITING_FOR_WINDOW = "WaitingForWindow"  # a node's window is closed: the new revision waits for it there
    WINDOW_IGNORED = "WindowIgnored"  # break-glass `sync --ignore-window` (or `rollback`) overrode a closed window
    # needs a human or a new commit
    PRUNE_REFUSED = "PruneRefused"
    CONFIG_INVALID = "ConfigInvalid"
    TAMPERED = "Tampered"  # a SOPS-encrypted file was changed after it was encrypted (its MAC does not match)
    STATE_UNAVAILABLE = "StateUnavailable"
    INTERRUPTED = "Interrupted"  # SIGTERM between two steps

    def __str__(self) -> str:
        return self.value


_RESULTS = {
    "applied": Reason.APPLIED, "in-sync": Reason.IN_SYNC, "rejected": Reason.REVISION_REJECTED,
    "failed": Reason.ROLLOUT_FAILED, "source-error": Reason.SOURCE_UNAVAILABLE, "progressing": Reason.PROGRESSING,
    "superseded": Reason.SUPERSEDED, "suspended": Reason.SUSPENDED,
}


def for_result(result: str) -> Reason:
    """The reason of a pass's `Outcome.result` (NodeFailed for a result this table does not know)."""
    return _RESULTS.get(result, Reason.NODE_FAILED)
