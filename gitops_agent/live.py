"""Live state of one node, as read from Podman: plain frozen data.

Filled by `podman` (the only module that talks to Podman) with one list call
per object type; consumed by the pure `plan`. Holds only objects carrying
`io.gitops-agent.managed=true`, so nothing here can lead to touching an
object the agent does not own. Secrets are the exception: Podman 4.3 drops
their labels, so every `gitops-*` secret is listed, with the subset that
carries the agent's mark in its driver options; `plan` removes only the
secrets the agent can prove it made (`plan.owned_secrets`).

Properties (`ContainerProps`): what each container was created with, from its inspect, which the list
calls do not give. A container's inspect changes only through a few writes (network connect/disconnect of
a pod's infra container, `podman update`), so `podman.Node.list_live` inspects a container once per ID and
keeps the answer in the `PropsCache` it is given (the informer's, which drops an entry on the events that
change it and empties itself at each resync). Environment values are kept as digests only: an inspect shows
a Secret-backed variable's value in the clear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

from .desired import L_KIND, L_NAME, L_NAMESPACE, L_TEMPLATE_HASH, SEP, legacy_container_name
from .model import ObjectRef


@dataclass(frozen=True)
class ContainerProps:
    """What a container was created with (its inspect), as `plan.drifted` compares it with the spec."""

    created: float = 0.0  # unix seconds (ns precision): a Secret or volume younger than this was re-made under it
    image_id: str = ""
    image_name: str = ""  # the reference it was created from (a name, a repository@digest, or an image ID)
    entrypoint: str = ""  # space-joined (Podman 4.3 shows it as one string)
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # name → `env_digest` of its value (never a value)
    labels: Mapping[str, str] = field(default_factory=dict)
    restart_policy: str = ""
    memory: int = 0
    memory_reservation: int = 0
    cpu_quota: int = 0
    cpu_shares: int = 0
    privileged: bool = False
    read_only_root_fs: bool = False
    caps: frozenset[str] = frozenset()  # effective capabilities
    user: str = ""
    no_new_privileges: bool = False
    seccomp: str = ""  # the seccomp profile it was given (inspect's SecurityOpt seccomp=...): "" Podman's default
    apparmor: str = ""  # the AppArmor profile it was given (SecurityOpt apparmor=...)
    groups: tuple[str, ...] = ()
    volumes: Mapping[str, str] = field(default_factory=dict)  # mount target → named volume
    # bind mounts of a directory of a local volume (a subPath): mount target → (volume, subPath)
    sub_path_binds: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    image_mounts: Mapping[str, str] = field(default_factory=dict)  # image volume target → the image it mounts
    secrets: Mapping[str, str] = field(default_factory=dict)  # mounted secret name → the ID it was created with
    networks: Mapping[str, frozenset[str]] = field(default_factory=dict)  # infra: network → its aliases


def env_digest(value: str) -> str:
    """What a live environment variable is kept as: a digest, since it may be a Secret's value."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


PropsCache = dict[str, ContainerProps]
"""Container ID → its properties: what a read reuses instead of inspecting the container again."""


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
    props: ContainerProps | None = None  # None: not inspected (a rollout's poll reads lists only)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def paused(self) -> bool:
        return self.state == "paused"


@dataclass(frozen=True)
class LivePod:
    name: str
    id: str
    status: str  # Podman's pod status: "Running", "Degraded", "Exited", "Created", ...
    labels: Mapping[str, str]
    containers: tuple[LiveContainer, ...] = ()  # app containers only; the infra container is left out
    infra: LiveContainer | None = None  # the infra container (its props hold the networks and aliases)
    ports: frozenset[tuple[int, int, str]] | None = None  # published (host port, container port, protocol)

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
    volume_created: Mapping[str, float] = field(default_factory=dict)  # volume name → unix seconds it was made
    secret_created: Mapping[str, float] = field(default_factory=dict)  # `gitops-*` secret name → likewise
    secret_ids: Mapping[str, str] = field(default_factory=dict)  # `gitops-*` secret name → its ID

    def pods_of(self, ref: ObjectRef) -> list[LivePod]:
        return sorted((p for p in self.pods.values() if p.owner == ref), key=lambda p: p.name)
