"""A fake `nodes.NodeAPI` for the pure-ish layers (test only): answers, or not, as a script says."""

from __future__ import annotations

from gitops_agent.dial import Dialer
from gitops_agent.errors import NodeUnreachable
from gitops_agent.live import LiveState
from gitops_agent.model import Resources


class FakeNode:
    """`down` pings fail with NodeUnreachable, then it answers; `read` gives an empty node."""

    def __init__(self, name: str, down: int = 0) -> None:
        self.name = name
        self.dialer: Dialer | None = None
        self.down = down
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.pings <= self.down:
            raise NodeUnreachable(self.name, "connection refused")

    def read(self) -> LiveState:
        self.ping()
        return LiveState(self.name)

    def read_amounts(self) -> Resources:
        """A fixed size: 2 CPUs and 4 GiB."""
        return Resources(2000, 4 << 30)

    def image_use(self) -> tuple[set[str], dict[str, int]]:
        return set(), {}

    def remove_image(self, image_id: str) -> bool:
        return False

    def close(self) -> None:
        pass
