"""A node's Podman API: the only module that imports podman-py.

Speaks our own types (`desired` specs in, `live` state out) and translates
every podman-py / HTTP error into `NodeError`. It uses podman-py's API client
(unix://, tcp:// and ssh:// transports) and sends libpod's own JSON specs, so
every field the agent honours reaches Podman unchanged.

Reading a node costs a fixed number of list calls (pods, containers, networks,
volumes, secrets, images), whatever the number of objects. Writes happen only
through the methods named for them. Must not decide *what* to change: that is
`plan`'s job.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping

import podman
import podman.errors
import requests

from .desired import MANAGED, SECRET_PREFIX, ContainerSpec, NetworkSpec, PodSpec, SecretSpec, VolumeSpec
from .errors import NodeError, NodeUnreachable
from .live import LiveContainer, LivePod, LiveState

_MANAGED_FILTER = json.dumps({"label": [f"{MANAGED}=true"]})
_HEALTH = {"healthy", "unhealthy", "starting"}
_ON_FAILURE_RESTART = 3  # libpod define.HealthCheckOnFailureActionRestart
_NS = 1_000_000_000


class Node:
    """One Podman service, reached through its API socket."""

    def __init__(self, name: str, url: str, timeout: float = 60.0, identity: str | None = None) -> None:
        self.name = name
        self.url = url
        self.reads = 0
        self.writes = 0
        self._count = threading.Lock()  # pods are created from a few threads at once
        try:
            extra = {"identity": identity} if identity else {}
            self._client = podman.PodmanClient(base_url=url, timeout=timeout, **extra)
        except (podman.errors.PodmanError, ValueError, OSError) as e:
            raise NodeError(name, f"cannot use Podman URL {url}: {e}") from e

    def close(self) -> None:
        self._client.close()

    # --- transport ----------------------------------------------------------------

    def _call(self, method: str, path: str, what: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None, raw: bytes | None = None, timeout: float | None = None, ok404: bool = False,
              as_bytes: bool = False) -> Any:
        with self._count:
            if method == "GET":
                self.reads += 1
            else:
                self.writes += 1
        api = self._client.api
        try:
            if method == "GET":
                resp = api.get(path, params=params, timeout=timeout)
            elif method == "DELETE":
                resp = api.delete(path, params=params, timeout=timeout)
            else:
                data = raw if raw is not None else (json.dumps(body) if body is not None else None)
                resp = api.post(path, params=params, data=data, timeout=timeout,
                                headers={"content-type": "application/json"} if body is not None else None)
        except requests.exceptions.ConnectionError as e:
            raise NodeUnreachable(self.name, f"cannot reach Podman at {self.url} ({what}): is the Podman service running?") from e
        except requests.exceptions.Timeout as e:
            raise NodeUnreachable(self.name, f"Podman at {self.url} timed out ({what})") from e
        except (requests.exceptions.RequestException, podman.errors.PodmanError) as e:
            if _unreachable(e):  # podman-py wraps connection failures in APIError
                raise NodeUnreachable(self.name, f"cannot reach Podman at {self.url} ({what}): is the Podman service running?") from e
            raise NodeError(self.name, f"{what}: {e}") from e
        if resp.status_code == 404 and ok404:
            return None
        if resp.status_code >= 400:
            raise NodeError(self.name, f"{what}: {_explain(resp)}")
        if as_bytes:
            return resp.content
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    # --- reading --------------------------------------------------------------------

    def read(self) -> LiveState:
        """Everything the agent owns on this node, in one list call per object type."""
        live_pods = self.read_pods()
        nets = self._call("GET", "/networks/json", "list networks", params={"filters": _MANAGED_FILTER}) or []
        vols = self._call("GET", "/volumes/json", "list volumes", params={"filters": _MANAGED_FILTER}) or []
        secrets = self._call("GET", "/secrets/json", "list secrets") or []
        images = self._call("GET", "/images/json", "list images") or []
        image_names: set[str] = set()
        for img in images:
            image_names.update(img.get("Names") or [])
            image_names.update(img.get("RepoTags") or [])
            image_names.add(img.get("Id", ""))
        return LiveState(
            node=self.name,
            pods=live_pods,
            networks={n["name"]: n.get("labels") or {} for n in nets},
            volumes={v["Name"]: v.get("Labels") or {} for v in vols},
            secrets=frozenset(s["Spec"]["Name"] for s in secrets if s["Spec"]["Name"].startswith(SECRET_PREFIX)),
            images=frozenset(image_names),
        )

    def read_pods(self) -> dict[str, LivePod]:
        """Managed pods with their app containers: two list calls (what a rollout polls)."""
        pods = self._call("GET", "/pods/json", "list pods", params={"filters": _MANAGED_FILTER}) or []
        ctrs = self._call("GET", "/containers/json", "list containers", params={"all": "true", "filters": _MANAGED_FILTER}) or []
        by_pod: dict[str, list[LiveContainer]] = {}
        for c in ctrs:
            if c.get("IsInfra"):
                continue
            labels = c.get("Labels") or {}
            status = str(c.get("Status") or "")
            by_pod.setdefault(c.get("PodName") or "", []).append(
                LiveContainer(
                    name=(c.get("Names") or [""])[0],
                    id=c.get("Id", ""),
                    image=c.get("Image", ""),
                    state=c.get("State", ""),
                    health=status if status in _HEALTH else "",
                    labels=labels,
                    started_at=int(c.get("StartedAt") or 0),
                    exit_code=int(c.get("ExitCode") or 0),
                )
            )
        live_pods = {
            p["Name"]: LivePod(
                name=p["Name"],
                id=p.get("Id", ""),
                status=p.get("Status", ""),
                labels=p.get("Labels") or {},
                containers=tuple(sorted(by_pod.get(p["Name"], []), key=lambda c: c.name)),
            )
            for p in pods
        }
        return live_pods

    def ping(self) -> None:
        """One cheap call; NodeUnreachable when the node's Podman API does not answer."""
        self._call("GET", "/_ping", "ping", timeout=5)

    def exec(self, container: str, command: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
        """Run `command` in a running container (a probe); (exit code, last output).
        The exit code is None when it did not finish within `timeout` seconds."""
        created = self._call("POST", f"/containers/{container}/exec", f"exec in {container}",
                             body={"Cmd": list(command), "AttachStdout": True, "AttachStderr": True})
        exec_id = created["Id"]
        try:
            raw = self._call("POST", f"/exec/{exec_id}/start", f"exec in {container}", body={"Detach": False}, timeout=timeout,
                             as_bytes=True)
        except NodeUnreachable as e:
            if _read_timed_out(e):  # the probe took too long; the node itself answered
                return None, f"timed out after {timeout:g}s"
            raise
        info = self._call("GET", f"/exec/{exec_id}/json", f"exec in {container}") or {}
        return info.get("ExitCode"), _demux(raw)[-400:]

    def has_image(self, image: str, images: frozenset[str]) -> bool:
        candidates = {image, f"docker.io/{image}", f"docker.io/library/{image}"}
        if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
            candidates |= {f"{c}:latest" for c in candidates}
        return bool(candidates & images)

    # --- writing --------------------------------------------------------------------

    def pull(self, image: str) -> None:
        """Pull `image`; a registry that cannot be reached is a clear error, nothing else changes."""
        out = self._call("POST", "/images/pull", f"pull {image}", params={"reference": image, "quiet": "true"}, timeout=600)
        text = out if isinstance(out, str) else json.dumps(out)
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("error"):
                raise NodeError(self.name, f"pull {image} failed: {rec['error']}")

    def create_network(self, spec: NetworkSpec) -> None:
        self._call("POST", "/networks/create", f"create network {spec.name}",
                   body={"name": spec.name, "dns_enabled": True, "labels": dict(spec.labels)})

    def create_volume(self, spec: VolumeSpec) -> None:
        self._call("POST", "/volumes/create", f"create volume {spec.name}", body={"Name": spec.name, "Label": dict(spec.labels)})

    def create_secret(self, spec: SecretSpec) -> None:
        # The value goes in the request body only; it is never part of a message or log.
        self._call("POST", "/secrets/create", f"create secret {spec.name}", params={"name": spec.name, "driver": "file"}, raw=spec.data)

    def create_pod(self, spec: PodSpec) -> None:
        """Create the pod, its infra container and its containers, then start it."""
        self._call("POST", "/pods/create", f"create pod {spec.name}", body={
            "name": spec.name,
            "hostname": spec.name[:63],
            "labels": dict(spec.labels),
            "networks": {spec.network: {"aliases": list(spec.aliases)}},
            "portmappings": [{"host_port": p.host_port, "container_port": p.container_port, "protocol": p.protocol} for p in spec.ports],
        })
        try:
            for c in spec.containers:
                self._call("POST", "/containers/create", f"create container {c.name}", body=_container_body(spec, c))
            self._call("POST", f"/pods/{spec.name}/start", f"start pod {spec.name}", timeout=120)
        except NodeError:
            self.remove_pod(spec.name, 0)  # never leave a half-built pod behind
            raise

    def start_pod(self, name: str) -> None:
        self._call("POST", f"/pods/{name}/start", f"start pod {name}", timeout=120)

    def remove_pod(self, name: str, stop_timeout: int = 10) -> None:
        self._call("POST", f"/pods/{name}/stop", f"stop pod {name}", params={"t": stop_timeout}, timeout=stop_timeout + 60, ok404=True)
        self._call("DELETE", f"/pods/{name}", f"remove pod {name}", params={"force": "true"}, timeout=120, ok404=True)

    def remove_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{name}", f"remove secret {name}", ok404=True)

    def remove_volume(self, name: str) -> None:
        self._call("DELETE", f"/volumes/{name}", f"remove volume {name}", ok404=True)

    def remove_network(self, name: str) -> None:
        self._call("DELETE", f"/networks/{name}", f"remove network {name}", ok404=True)


def _container_body(pod: PodSpec, c: ContainerSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": c.name,
        "pod": pod.name,
        "image": c.image,
        "labels": dict(c.labels),
        "env": dict(c.env),
        "restart_policy": pod.restart_policy,
        "stop_timeout": pod.stop_timeout,
    }
    if c.entrypoint:
        body["entrypoint"] = list(c.entrypoint)
    if c.command:
        body["command"] = list(c.command)
    if c.working_dir:
        body["work_dir"] = c.working_dir
    if c.secret_env:
        body["secret_env"] = dict(c.secret_env)
    if c.secret_mounts:
        body["secrets"] = [{"Source": m.secret, "Target": m.target, "Mode": m.mode} for m in c.secret_mounts]
    if c.volumes:
        body["volumes"] = [{"Name": v.volume, "Dest": v.target, "Options": ["ro" if v.read_only else "rw"]} for v in c.volumes]
    limits: dict[str, Any] = {}
    if c.cpu_millis:
        limits["cpu"] = {"quota": c.cpu_millis * 100, "period": 100_000}
    if c.memory_bytes:
        limits["memory"] = {"limit": c.memory_bytes}
    if limits:
        body["resource_limits"] = limits
    if c.health_cmd:
        body["healthconfig"] = {
            "Test": ["CMD", *c.health_cmd],
            "Interval": c.health_interval * _NS,
            "Timeout": c.health_timeout * _NS,
            "Retries": c.health_retries,
            "StartPeriod": c.health_start_period * _NS,
        }
        body["health_check_on_failure_action"] = _ON_FAILURE_RESTART
    return body


def _demux(raw: Any) -> str:
    """Podman's multiplexed exec stream (8-byte frame headers) → plain text."""
    data = raw if isinstance(raw, bytes) else b""
    out, i = [], 0
    while i + 8 <= len(data) and data[i] in (0, 1, 2) and data[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(data[i + 4:i + 8], "big")
        out.append(data[i + 8:i + 8 + size])
        i += 8 + size
    text = b"".join(out) if out else data
    return text.decode("utf-8", "replace").strip()


def _explain(resp: Any) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("cause") or resp.text).strip()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text.strip()[:300]}"


def _read_timed_out(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ReadTimeout, TimeoutError)) or type(seen).__name__ == "ReadTimeoutError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unreachable(error: BaseException) -> bool:
    """True when the error chain holds a failed connection or a timeout."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, FileNotFoundError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
