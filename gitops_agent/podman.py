"""A node's Podman API: the only module that imports podman-py.

Speaks our own types (`desired` specs in, `live` state out) and translates
every podman-py / HTTP error into `NodeError`. It uses podman-py's API client
(unix://, tcp:// and ssh:// transports) and sends libpod's own JSON specs, so
every field the agent honours reaches Podman unchanged.

Reading a node costs a fixed number of list calls (pods, containers, networks,
volumes, secrets, images), whatever the number of objects. Writes happen only
through the methods named for them. Must not decide *what* to change: that is
`plan`'s job.

Fault injection (TEST ONLY, never set it in production): with the environment
variable `GITOPS_AGENT_CRASH_AFTER_WRITES=N` the process sends itself SIGKILL
right after the N-th successful write call (POST/DELETE that changes a node's
state; probe execs are not counted) summed over every node of the process. The
crash-safety harness (`tests/test_crash.py`) uses it to kill the agent after
every single Podman write of a sync or a rollout. Unset, nothing changes.
"""

from __future__ import annotations

import json
import os
import signal
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

# fault injection (test only, see the module docstring): SIGKILL after this many writes
_CRASH_AFTER = int(os.environ.get("GITOPS_AGENT_CRASH_AFTER_WRITES") or 0)
_crash_lock = threading.Lock()
_crash_count = 0


def _count_write() -> None:
    global _crash_count
    with _crash_lock:
        _crash_count += 1
        if _crash_count >= _CRASH_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)


class Node:
    """One Podman service, reached through its API socket."""

    def __init__(self, name: str, url: str, timeout: float = 60.0, identity: str | None = None) -> None:
        self.name = name
        self.url = url
        self.reads = 0
        self.writes = 0  # every POST/DELETE, probe execs included
        self.changes = 0  # the writes that change the node's state (probe execs left out)
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
              as_bytes: bool = False, probe: bool = False) -> Any:
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
        if method != "GET" and not probe:
            with self._count:
                self.changes += 1
            if _CRASH_AFTER:
                _count_write()
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
            marked_secrets=frozenset(
                s["Spec"]["Name"] for s in secrets
                if s["Spec"]["Name"].startswith(SECRET_PREFIX) and _driver_options(s).get(MANAGED) == "true"),
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
        """Run `command` in a running container (a probe); (exit code, its whole output: the
        caller redacts and bounds it). The exit code is None when it did not finish within
        `timeout` seconds."""
        created = self._call("POST", f"/containers/{container}/exec", f"exec in {container}",
                             body={"Cmd": list(command), "AttachStdout": True, "AttachStderr": True}, probe=True)
        exec_id = created["Id"]
        try:
            raw = self._call("POST", f"/exec/{exec_id}/start", f"exec in {container}", body={"Detach": False}, timeout=timeout,
                             as_bytes=True, probe=True)
        except NodeUnreachable as e:
            if _read_timed_out(e):  # the probe took too long; the node itself answered
                return None, f"timed out after {timeout:g}s"
            raise
        info = self._call("GET", f"/exec/{exec_id}/json", f"exec in {container}") or {}
        return info.get("ExitCode"), _demux(raw)

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
        body = {"Name": spec.name, "Label": dict(spec.labels), "Driver": spec.storage_class.driver,
                "Options": dict(spec.storage_class.options)}
        self._call("POST", "/volumes/create", f"create volume {spec.name}", body=body)

    def create_secret(self, spec: SecretSpec) -> None:
        """The value goes in the request body only; it is never part of a message or log.
        Podman 4.3 drops a secret's labels but keeps its driver options: the ownership labels
        go there, the agent's mark on the secrets it made (see `LiveState.marked_secrets`)."""
        marks = {k: v for k, v in spec.labels.items() if v}
        self._call("POST", "/secrets/create", f"create secret {spec.name}",
                   params={"name": spec.name, "driver": "file", "driveropts": json.dumps(marks)}, raw=spec.data)

    def create_pod(self, spec: PodSpec) -> None:
        """Create the pod, its infra container and its containers, then start it."""
        self._call("POST", "/pods/create", f"create pod {spec.name}", body=_pod_body(spec))
        try:
            for c in spec.containers:
                self._call("POST", "/containers/create", f"create container {c.name}", body=_container_body(spec, c))
            self._call("POST", f"/pods/{spec.name}/start", f"start pod {spec.name}", timeout=120)
        except NodeError:
            self.remove_pod(spec.name, 0)  # never leave a half-built pod behind
            raise

    def start_pod(self, name: str) -> None:
        self._call("POST", f"/pods/{name}/start", f"start pod {name}", timeout=120)

    def remove_pod(self, name: str, stop_timeout: int | None = None) -> None:
        """Stop (SIGTERM, then SIGKILL after `stop_timeout` seconds; None: each container's own
        stop timeout, i.e. the terminationGracePeriodSeconds it was created with) and remove."""
        self.stop_pod(name, stop_timeout)
        self.delete_pod(name)

    def stop_pod(self, name: str, stop_timeout: int | None = None) -> None:
        params = {"t": stop_timeout} if stop_timeout is not None else None
        wait = (stop_timeout if stop_timeout is not None else 600) + 60
        self._call("POST", f"/pods/{name}/stop", f"stop pod {name}", params=params, timeout=wait, ok404=True)

    def delete_pod(self, name: str) -> None:
        """Remove a pod (stopped or not). Podman 4.3 takes seconds for a container that ran exec
        sessions (the agent's probes), so a rollout does this off its critical path."""
        self._call("DELETE", f"/pods/{name}", f"remove pod {name}", params={"force": "true"}, timeout=120, ok404=True)

    def remove_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{name}", f"remove secret {name}", ok404=True)

    def remove_volume(self, name: str) -> None:
        self._call("DELETE", f"/volumes/{name}", f"remove volume {name}", ok404=True)

    def remove_network(self, name: str) -> None:
        self._call("DELETE", f"/networks/{name}", f"remove network {name}", ok404=True)


def _pod_body(spec: PodSpec) -> dict[str, Any]:
    """libpod's pod spec. A hostNetwork pod joins the node's network namespace: no network,
    DNS aliases or port mappings (its ports are the node's), and the node's hostname."""
    body: dict[str, Any] = {"name": spec.name, "labels": dict(spec.labels)}
    if spec.host_network:
        body["netns"] = {"nsmode": "host"}
    else:
        body["hostname"] = spec.name[:63]
        body["networks"] = {spec.network: {"aliases": list(spec.aliases)}}
        body["portmappings"] = [
            {"host_port": p.host_port, "container_port": p.container_port, "protocol": p.protocol} for p in spec.ports
        ]
    return body


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
    if c.host_mounts:  # hostPath: a missing source fails the create ("statfs ...: no such file or directory")
        body["mounts"] = [
            {"destination": m.target, "source": m.source, "type": "bind", "options": ["rbind", "ro" if m.read_only else "rw"]}
            for m in c.host_mounts
        ]
    if c.privileged:
        body["privileged"] = True
    if c.cap_add:
        body["cap_add"] = list(c.cap_add)
    if c.cap_drop:
        body["cap_drop"] = list(c.cap_drop)
    if c.read_only_root_fs:
        body["read_only_filesystem"] = True
    if c.user is not None:
        body["user"] = c.user
    if c.no_new_privileges:
        body["no_new_privileges"] = True
    # Podman 4.3 applies a pod's pidns/ipcns to its infra container only: each container asks for the host's.
    for wanted, key in ((c.host_pid, "pidns"), (c.host_ipc, "ipcns"), (c.host_uts, "utsns")):
        if wanted:
            body[key] = {"nsmode": "host"}
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


def _driver_options(secret: Mapping[str, Any]) -> Mapping[str, Any]:
    driver = (secret.get("Spec") or {}).get("Driver") or {}
    return driver.get("Options") or {}


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
