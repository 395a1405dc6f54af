"""Live state of one node, as read from Podman: plain frozen data.

Filled by `podman` (the only module that talks to Podman) with one list call
per object type; consumed by the pure `plan`. Holds only objects carrying
`io.gitops-agent.managed=true`, so nothing here can lead to touching an
object the agent does not own. Secrets are the exception: Podman 4.3 drops
their labels, so every `gitops-*` secret is listed, with the subset that
carries the agent's mark in its driver options; `plan` removes only the
secrets the agent can prove it made (`plan.owned_secrets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .desired import L_KIND, L_NAME, L_NAMESPACE, L_TEMPLATE_HASH, SEP, legacy_container_name
from .model import ObjectRef


@dataclass(frozen=True)
class LiveContainer:
    name: str
    id: str
    image: str
    state: str  # Podman's: "running", "exited", "created", ...
    health: str  # "healthy" | "unhealthy" | "starting" | "" (no healthcheck)
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: int = 0  # unix seconds of the last start: a change means Podman restarted it
    exit_code: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class LivePod:
    name: str
    id: str
    status: str  # Podman's pod status: "Running", "Degraded", "Exited", "Created", ...
    labels: Mapping[str, str]
    containers: tuple[LiveContainer, ...] = ()  # app containers only; the infra container is left out

    @property
    def owner(self) -> ObjectRef | None:
        try:
            return ObjectRef(self.labels[L_KIND], self.labels[L_NAMESPACE], self.labels[L_NAME])
        except KeyError:
            return None

    @property
    def template_hash(self) -> str:
        return self.labels.get(L_TEMPLATE_HASH, "")

    @property
    def ready(self) -> bool:
        """Every app container runs and none reports itself unhealthy."""
        return bool(self.containers) and all(c.running and c.health != "unhealthy" for c in self.containers)

    def container(self, name: str) -> LiveContainer | None:
        return next((c for c in self.containers if c.name == name), None)

    @property
    def from_older_agent(self) -> bool:
        """A pod an older agent made (a container under a dash-joined name): it may use secrets
        under the old names, which must stay while it runs (Podman cannot restart it without)."""
        return any(not c.name.startswith(self.name + SEP) for c in self.containers)

    def container_for(self, name: str) -> LiveContainer | None:
        """The container a spec names `name` (`<pod>_<container>`): by that name, or by the
        name older agents (dash-joined names) gave it, so that an upgrade replaces no running pod."""
        found = self.container(name)
        prefix = self.name + SEP
        if found is not None or not name.startswith(prefix):
            return found
        return self.container(legacy_container_name(self.name, name[len(prefix):]))


@dataclass(frozen=True)
class LiveState:
    node: str
    pods: Mapping[str, LivePod] = field(default_factory=dict)
    networks: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # name → labels
    volumes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # name → labels
    secrets: frozenset[str] = frozenset()  # every `gitops-*` secret, the agent's or not
    marked_secrets: frozenset[str] = frozenset()  # those carrying the agent's mark (driver options)
    images: frozenset[str] = frozenset()  # every name and id a local image answers to

    def pods_of(self, ref: ObjectRef) -> list[LivePod]:
        return sorted((p for p in self.pods.values() if p.owner == ref), key=lambda p: p.name)
