"""The agent's own exceptions, classified by what happens next.

Every third-party error (GitPython, podman-py, PyYAML, OS errors) is
translated into one of these at the module that owns the library, so the loop
and the CLI branch on the consequence, never on a message. Each error is one of
three consequences (`consequence(e)`), and carries a stable `code` (`Reason`):

- `Stalled`: needs a human or a new commit; not retried by itself.
- `Waiting`: retry after a known delay (or when the thing waited for appears).
- `Transient`: retry with backoff.

The classes by origin stay (tests and the CLI name them); they sit under a
consequence:

- `RevisionRejected`: the commit itself is bad. Nothing is applied, and the same
  commit is not retried; only a new commit can fix it (Flux's "Stalled").
- `SourceUnavailable`: Git could not be reached or read. Retry with backoff; the
  node keeps the last good revision (Flux's "Waiting").
- `NodeError`: a Podman call failed. Retry on the next pass (Transient).
  - `NodeUnreachable`: the node did not answer (Transient); the node is told
    apart by this class, not by a flag.
  - `RolloutFailed` (apply.py): a pod failed its probes or deadline. Stalled:
    the revision is marked failed and not retried until Git moves.
  - `ImageUnavailable`: the registry refused an image for good (no such tag or
    repository, credentials refused): the revision fails on that node before
    anything is stopped, as any failed step.
  - `ImagePullBackOff`: the registry could not be reached, timed out or failed
    (5xx): transient; nothing was stopped, the step is retried with backoff and
    the revision is not marked failed.
- `PruneRefused`: the revision would delete everything. Stalled: a new commit
  or `prune.allowEmpty`; it is not a reason to roll back.
- `ConfigError`, `StateError`: the agent's own configuration or state directory
  is wrong. Stalled: needs a human.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from .reasons import Reason


class Consequence(str, Enum):
    """What happens after an error."""

    STALLED = "stalled"  # needs a human or a new commit
    WAITING = "waiting"  # retry after a known delay
    TRANSIENT = "transient"  # retry with backoff


class AgentError(Exception):
    """Base of every error the agent reports without a traceback."""

    code: ClassVar[Reason] = Reason.NODE_FAILED
    consequence: ClassVar[Consequence] = Consequence.TRANSIENT


class Stalled(AgentError):
    """Needs a human or a new commit: not retried until something changes."""

    consequence = Consequence.STALLED


class Waiting(AgentError):
    """Retry after `retry_after` seconds (or when the awaited thing shows up)."""

    consequence = Consequence.WAITING
    retry_after: float = 0.0


class Transient(AgentError):
    """Retry with backoff."""

    consequence = Consequence.TRANSIENT


def consequence(e: BaseException) -> Consequence:
    """What happens after `e`; an exception that is not the agent's own is a bug: transient (backoff)."""
    return e.consequence if isinstance(e, AgentError) else Consequence.TRANSIENT


def reason_of(e: BaseException) -> Reason:
    """The stable reason code of `e` (NodeFailed for a foreign exception)."""
    return e.code if isinstance(e, AgentError) else Reason.NODE_FAILED


class ConfigError(Stalled):
    """The agent configuration (file, flags, environment) is invalid."""

    code = Reason.CONFIG_INVALID


_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f", 0x0D: "\\r",
            0x22: '\\"', 0x5C: "\\\\"}


def quote_path(path: str) -> str:
    """A path as Git prints it with `core.quotePath` (the default): as is when every byte is printable
    ASCII other than `"` and `\\`; else in double quotes, with C escapes and octal bytes (a newline in a
    file name cannot start what reads like another line of output)."""
    data = path.encode("utf-8", errors="surrogateescape")
    if all(0x20 <= byte < 0x7F and byte not in (0x22, 0x5C) for byte in data):
        return path
    return '"' + "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte not in _ESCAPES else _ESCAPES.get(byte, f"\\{byte:03o}")
        for byte in data
    ) + '"'


@dataclass(frozen=True)
class Problem:
    """One validation finding, printed as `FILE:LINE: Kind/name: json.path: message`."""

    file: str
    line: int
    object: str  # "Kind/name", or "" when the document has no identity yet
    path: str  # JSON path inside the document, "" for the document itself
    message: str
    policy: bool = field(default=False, compare=False)  # refused by the agent's `policy:` (not malformed)

    def __str__(self) -> str:
        parts = [f"{quote_path(self.file)}:{self.line}"] if self.file else []
        if self.object:
            parts.append(self.object)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class RevisionRejected(Stalled):
    """A revision failed validation; carries every problem found, not just the first."""

    code = Reason.REVISION_REJECTED

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], revision: str = "") -> None:
        self.problems = tuple(problems)
        self.revision = revision
        head = f"revision {revision} rejected" if revision else "manifests rejected"
        super().__init__(f"{head}: {len(self.problems)} problem(s)\n" + "\n".join(str(p) for p in self.problems))


class PolicyViolation(RevisionRejected):
    """A revision asks for a privileged feature the agent's `policy:` does not allow (at least one problem)."""

    code = Reason.POLICY_VIOLATION


class SignatureUnverified(RevisionRejected):
    """A revision carries no signature by a trusted key (`source.verify`)."""

    code = Reason.SIGNATURE_UNVERIFIED


class SourceUnavailable(Transient):
    """Git could not be reached, timed out, or the branch/path is missing. Retry later."""

    code = Reason.SOURCE_UNAVAILABLE


class NodeError(Transient):
    """A Podman API call on a node failed. Retry on the next pass."""

    code = Reason.NODE_FAILED

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        self.reason = message  # the message without the "node NAME: " prefix (for tables already naming the node)
        super().__init__(f"node {node}: {message}")


class NodeUnreachable(NodeError):
    """The node's Podman API did not answer (service down, network gone, timeout)."""

    code = Reason.NODE_UNREACHABLE


class ImageUnavailable(NodeError):
    """The registry refused the image: no such tag or repository, or credentials refused. Fails the
    revision on that node (Stalled: a new commit or credentials), though it is a NodeError by origin."""

    code = Reason.IMAGE_UNAVAILABLE
    consequence = Consequence.STALLED

    def __init__(self, node: str, message: str, image: str = "") -> None:
        super().__init__(node, message)
        self.image = image


class ImagePullBackOff(NodeError):
    """A pull failed for a reason that may pass (registry unreachable, TLS timeout, 5xx, too slow).
    Nothing was stopped: the step waits and is retried with backoff (the revision is not marked failed)."""

    code = Reason.IMAGE_PULL_BACKOFF
    consequence = Consequence.WAITING

    def __init__(self, node: str, message: str, image: str = "") -> None:
        super().__init__(node, message)
        self.image = image


class PruneRefused(Stalled):
    """The revision would delete every managed object; needs `prune.allowEmpty` or a new commit.
    Nothing was changed on the node, so it is no reason to roll the others back."""

    code = Reason.PRUNE_REFUSED


class StateError(Stalled):
    """The state directory cannot be read or written."""

    code = Reason.STATE_UNAVAILABLE


class Interrupted(Transient):
    """The agent was asked to stop (SIGTERM) and stopped between two steps; the next start resumes."""

    code = Reason.INTERRUPTED
