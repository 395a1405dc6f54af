"""The agent's own exceptions, classified by what happens next.

Every third-party error (GitPython, podman-py, PyYAML, OS errors) is
translated into one of these at the module that owns the library, so the loop
and the CLI branch on the class, never on a message:

- `RevisionRejected`: the commit itself is bad. Nothing is applied, and the same
  commit is not retried; only a new commit can fix it (Flux's "Stalled").
- `SourceUnavailable`: Git could not be reached or read. Retry with backoff; the
  node keeps the last good revision (Flux's "Waiting").
- `NodeError`: a Podman call failed. Retry on the next pass.
  - `ImageUnavailable`: the registry refused an image for good (no such tag or
    repository, credentials refused): the revision fails on that node before
    anything is stopped, as any failed step.
  - `ImagePullBackOff`: the registry could not be reached, timed out or failed
    (5xx): transient; nothing was stopped, the step is retried with backoff and
    the revision is not marked failed.
- `ConfigError`: the agent's own configuration is wrong. Needs a human.
"""

from __future__ import annotations

from dataclasses import dataclass


class AgentError(Exception):
    """Base of every error the agent reports without a traceback."""


class ConfigError(AgentError):
    """The agent configuration (file, flags, environment) is invalid."""


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

    def __str__(self) -> str:
        parts = [f"{quote_path(self.file)}:{self.line}"] if self.file else []
        if self.object:
            parts.append(self.object)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class RevisionRejected(AgentError):
    """A revision failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], revision: str = "") -> None:
        self.problems = tuple(problems)
        self.revision = revision
        head = f"revision {revision} rejected" if revision else "manifests rejected"
        super().__init__(f"{head}: {len(self.problems)} problem(s)\n" + "\n".join(str(p) for p in self.problems))


class SourceUnavailable(AgentError):
    """Git could not be reached, timed out, or the branch/path is missing. Retry later."""


class NodeError(AgentError):
    """A Podman API call on a node failed. Retry on the next pass."""

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        self.reason = message  # the message without the "node NAME: " prefix (for tables already naming the node)
        super().__init__(f"node {node}: {message}")


class NodeUnreachable(NodeError):
    """The node's Podman API did not answer (service down, network gone, timeout)."""


class ImageUnavailable(NodeError):
    """The registry refused the image: no such tag or repository, or credentials refused."""

    def __init__(self, node: str, message: str, image: str = "") -> None:
        super().__init__(node, message)
        self.image = image


class ImagePullBackOff(NodeError):
    """A pull failed for a reason that may pass (registry unreachable, TLS timeout, 5xx, too slow)."""

    def __init__(self, node: str, message: str, image: str = "") -> None:
        super().__init__(node, message)
        self.image = image


class PruneRefused(AgentError):
    """The revision would delete every managed object; needs `prune.allowEmpty`."""


class StateError(AgentError):
    """The state directory cannot be read or written."""


class Interrupted(AgentError):
    """The agent was asked to stop (SIGTERM) and stopped between two steps."""
