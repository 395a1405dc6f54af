"""`NodeAPI`: the few operations the agent's fleet layer needs from a node.

`podman.Node` is the real one (checked structurally by mypy below); `tests/fake_node.py` is
a fake for the pure-ish layers (waits, events), so they are tested without Podman. The
per-node apply (`apply.py`) still takes `podman.Node`: it needs every write call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .dial import Dialer
from .config import NodeConfig
from .desired import needs_amounts
from .live import LiveState
from .model import Resources, Revision


class NodeAPI(Protocol):
    name: str
    dialer: Dialer | None

    def read(self) -> LiveState:
        """The node's managed objects (NodeError when it cannot be read)."""

    def read_amounts(self) -> Resources:
        """The node's CPU (millicores) and memory (bytes) as its Podman reports them, read once per pass."""

    def ping(self) -> None:
        """Returns when the node's API answers; NodeUnreachable otherwise."""

    def image_use(self) -> tuple[set[str], dict[str, int]]:
        """Image IDs in use by containers, and every image's size."""

    def remove_image(self, image_id: str) -> bool:
        """Remove an image the agent pulled; False when it is in use."""

    def close(self) -> None: ...


def reported_amounts(revision: Revision, cfg_node: NodeConfig, node: NodeAPI) -> Resources | None:
    """What `node`'s Podman reports of its size when compiling `revision` for it needs that
    (`desired.needs_amounts`: a resourceFieldRef reads a limit nobody sets), else None: no /info read."""
    return node.read_amounts() if needs_amounts(revision, cfg_node) else None


if TYPE_CHECKING:
    from .podman import Node

    _REAL: type[NodeAPI] = Node
