"""PURE: registry credentials, from Kubernetes' docker-config Secrets and Podman's auth.json.

Sits beside `manifests` (which validates a Secret of type
kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg with `check_secret_value`,
as Kubernetes does, and its credentials with `parse` where imagePullSecrets name it) and
`desired`/`apply` (which pick the credential for an image with `for_image`).
`podman` sends the chosen one to Podman's pull API as its X-Registry-Auth
header (`Credential.header`); nothing else ever sees the values.

A credential's values are never part of its repr, of an error message or of a
log field: messages name the registry and where the credential came from (the
Secret, or the node's auth file), never the user name, password or token.
No I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
#: the data key each registry-credential Secret type must have
SECRET_KEYS = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}
_DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io"}


@dataclass(frozen=True)
class Credential:
    """One registry's credential. `source` says where it came from, for messages."""

    registry: str  # "host[:port]" or "host[:port]/path" (a repository prefix), normalized
    source: str  # e.g. "Secret shop/regcred" or "auth file /etc/gitops-agent/auth.json"
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def header(self) -> str:
        """Podman's X-Registry-Auth header value (base64url JSON of a docker auth config)."""
        body: dict[str, str] = {"serveraddress": self.registry.split("/", 1)[0]}
        if self.identity_token:
            body["identitytoken"] = self.identity_token
        else:
            body["username"], body["password"] = self.username, self.password
        return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


def normalize_registry(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `reg:5000/` → `reg:5000`; `reg/team` stays."""
    key = key.strip()
    for scheme in ("https://", "http://"):
        key = key.removeprefix(scheme)
    key = key.rstrip("/")
    for api in ("/v1", "/v2"):
        key = key.removesuffix(api)
    host, sep, path = key.partition("/")
    if host in _HUB_ALIASES:
        host = _DOCKER_HUB
    return host + sep + path if path else host


def image_registry(image: str) -> str:
    """The registry host of an image reference, as Podman resolves it (docker.io when none)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return _DOCKER_HUB if first in _HUB_ALIASES else first
    return _DOCKER_HUB


def repository(image: str) -> str:
    """`127.0.0.1:5000/team/web:1` → `127.0.0.1:5000/team/web` (registry host always included)."""
    ref = image.partition("@")[0]
    head, _, last = ref.rpartition("/")
    last = last.partition(":")[0]
    ref = f"{head}/{last}" if head else last
    registry = image_registry(image)
    return ref if ref.startswith(registry + "/") or ref == registry else f"{registry}/{ref}"


def check_secret_value(data: bytes) -> None:
    """What Kubernetes checks of a registry-credential Secret's value: a JSON object (a Secret that is never used
    to pull is valid with any; `parse` checks the credentials where imagePullSecrets name it). ValueError names
    what is wrong, never a value."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("must be a JSON object (docker config format)")


def parse(data: bytes, wrapped: bool, source: str) -> tuple[Credential, ...]:
    """Credentials from a docker config: `{"auths": {...}}` (dockerconfigjson, auth.json) when
    `wrapped`, else the bare registry map (the legacy .dockercfg). ValueError names what is wrong,
    never a value."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("is not valid JSON") from None
    if wrapped:
        if not isinstance(doc, dict) or not isinstance(doc.get("auths"), dict):
            raise ValueError("must be a JSON object with an 'auths' object (docker config.json format)")
        doc = doc["auths"]
    if not isinstance(doc, dict):
        raise ValueError("must be a JSON object mapping registries to credentials")
    creds = []
    for key, entry in doc.items():
        if not isinstance(entry, dict):
            raise ValueError(f"the entry for registry {key!r} must be an object")
        creds.append(_credential(key, entry, source))
    return tuple(creds)


def _credential(key: str, entry: Mapping[str, Any], source: str) -> Credential:
    registry = normalize_registry(key)
    token = entry.get("identitytoken") or entry.get("registrytoken") or ""
    user, password = entry.get("username") or "", entry.get("password") or ""
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ValueError(f"the 'auth' of registry {key!r} is not base64 of user:password") from None
        if ":" not in decoded:
            raise ValueError(f"the 'auth' of registry {key!r} is not base64 of user:password")
        user, _, password = decoded.partition(":")
    if not all(isinstance(v, str) for v in (user, password, token)):
        raise ValueError(f"the credentials of registry {key!r} must be strings")
    if not token and not (user and password):
        raise ValueError(f"registry {key!r} has no credentials "
                         "(needs 'auth', 'username'+'password' or 'identitytoken')")
    return Credential(registry, source, user, password, token)


def for_image(image: str, credentials: Iterable[Credential]) -> Credential | None:
    """The credential Podman would use for `image`: the longest matching repository prefix,
    else the registry host; the first source wins on a tie (pod Secrets before the node's file)."""
    repo = repository(image)
    best: Credential | None = None
    for cred in credentials:
        if repo == cred.registry or repo.startswith(cred.registry + "/"):
            if best is None or len(cred.registry) > len(best.registry):
                best = cred
    return best
