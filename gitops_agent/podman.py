"""A node's Podman API: the only module that imports podman-py.

Speaks our own types (`desired` specs in, `live` state out) and translates
every podman-py / HTTP error into `NodeError`. It uses podman-py's API client
(unix:// and tcp:// transports) and sends libpod's own JSON specs, so every
field the agent honours reaches Podman unchanged. An ssh:// node is reached
through the agent's own `tunnel.Tunnel` (one SSH connection per node, kept
across passes): podman-py talks to the tunnel's local unix socket, never
through its own ssh transport.

Reading a node costs a fixed number of list calls (pods, containers, networks,
volumes, secrets, images), whatever the number of objects. Writes happen only
through the methods named for them. Must not decide *what* to change: that is
`plan`'s job.

Probes: `exec` runs a probe in a container (an executable missing from the image
comes back as `NO_SUCH_EXECUTABLE_EXIT` with a plain sentence); `dialer` is how
httpGet/tcpSocket probes reach this node's pods from outside the container
(`dial`: a local socket means the agent is on the node's host, so it enters the
pod's network namespace; `pod_sandbox` says where that is). None: in the container.

Write hook: `Node.on_write` (a class attribute, None in production) is called
with the node's name and the write's description right after each successful
write that changes a node's state (POST/DELETE/PUT; probe execs are not
counted), on every node of the process. Production code never sets it and
reads no test variable: the crash-safety harness (`tests/test_crash.py`) runs
the agent through its own entry point `tests/crash_entry.py`, which installs a
callback that SIGKILLs the process after the k-th write.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import json
import re
import socket
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generator, Iterable, Iterator, Mapping, Protocol

import podman
import podman.errors
import requests
import urllib3

from .config import AgentConfig, NodeConfig
from .dial import Dialer, DialError, NetnsDialer, RemoteDialer, Sandbox
from .desired import (L_CONTAINER, L_EMPTY_DIR_OF, L_INIT, L_KIND, L_NAME, L_NAMESPACE, L_SIDECAR, L_SIZE_LIMIT,
                      L_VOLUME, MANAGED, NO_SUCH_EXECUTABLE_EXIT, NO_TOOL_EXIT, PRE_STOP, SECRET_PREFIX, SEP,
                      ContainerSpec, EmptyDirSpec, NetworkSpec, PodSpec, SecretSpec, VolumeSpec,
                      container_restart_policy, is_sidecar, probe_command, redact)
from . import netprobe
from .endpoints import PodNetwork, creation_aliases
from .errors import ImagePullBackOff, ImageUnavailable, NodeError, NodeUnreachable
from .eviction import Usage
from .live import ContainerProps, LiveContainer, LivePod, LiveState, PropsCache, env_digest
from .model import Resources
from .pullauth import Credential, image_registry, repository as _repository
from .subpaths import (HELPER_ROOT, LOCAL_DRIVER, BindSource, bind_source, components, directories_tar, first_entry,
                       refusal, volume_bind)

if TYPE_CHECKING:  # asyncssh (through tunnel) costs ~25 MB of RSS: loaded only for an ssh:// node
    from podman.api.client import APIResponse

    from .tunnel import SshSettings, Tunnel

INIT_OUTPUT_LINES = 20  # lines of a failed init container's output shown in the error
_MANAGED_FILTER = json.dumps({"label": [f"{MANAGED}=true"]})
_HEALTH = {"healthy", "unhealthy", "starting"}
_ON_FAILURE_RESTART = 3  # libpod define.HealthCheckOnFailureActionRestart
_NS = 1_000_000_000
_LOCAL_SCHEMES = ("unix://", "http+unix://")
_NOT_FOUND = "OCI runtime attempted to invoke a command that was not found"  # libpod's ErrOCIRuntimeNotFound
_DOCTOR = {"io.gitops-agent.doctor": "true"}  # doctor's throwaway objects: never `managed`, so never planned over



_LIST_PATHS = frozenset({"/pods/json", "/containers/json", "/networks/json", "/volumes/json", "/secrets/json",
                         "/images/json"})


class LiveCache(Protocol):
    """What `Node.read` answers from when the daemon gave the node one (`informer.Informer`)."""

    def read(self) -> LiveState: ...

    def writing(self, path: str) -> None:
        """Called before and after each write of the agent to this node (the path names the object)."""


def open_node(cfg: AgentConfig, n: NodeConfig, timeout: float = 60.0) -> "Node":
    """The Node for config entry `n`: an ssh:// node gets its SSH settings and a tunnel socket folder in
    the state dir (every command that talks to nodes opens them this way)."""
    ssh = None
    if n.url.startswith("ssh://"):
        from .tunnel import SshSettings

        ssh = SshSettings(identity=n.identity, known_hosts=n.known_hosts,
                          insecure_ignore_host_key=n.insecure_ignore_host_key, connect_timeout=n.connect_timeout,
                          run_dir=cfg.state_dir / "ssh")
    return Node(n.name, n.url, timeout=timeout, ssh=ssh, credentials=n.credentials, min_free=cfg.min_free_image_space)

class Node:
    """One Podman service, reached through its API socket."""

    # Called as on_write(node name, what) after each state-changing write of any node in the process (see the
    # module docstring); None in production. Set on the class, by a test entry point only.
    on_write: ClassVar[Callable[[str, str], None] | None] = None

    def __init__(self, name: str, url: str, timeout: float = 60.0, ssh: SshSettings | None = None,
                 credentials: tuple[Credential, ...] = (), min_free: int = 0) -> None:
        """`ssh`: how an ssh:// url is reached (identity, knownHosts, ...); required for one.
        `credentials`: the node's authFile entries; `min_free`: bytes to keep free in its image store."""
        self.name = name
        self.url = url
        self.credentials = credentials  # the node's authFile: used for pulls, never printed
        self.min_free = min_free  # bytes that must stay free in the image store after a pull
        self.reads = 0
        self.lists = 0  # the GETs of a list endpoint (/containers/json, ...): what a cached read saves
        # the daemon's event-driven copy of the live state (`informer`); None: every read lists
        self.cache: LiveCache | None = None
        self.writes = 0  # every POST/DELETE, probe execs included
        self.changes = 0  # the writes that change the node's state (probe execs left out)
        self._count = threading.Lock()  # pods are created from a few threads at once
        self._sub_paths = threading.Lock()  # held while subPath directories are made (`_sub_path_sources`)
        self._last_ip: dict[str, str] = {}  # infra container -> its last IP seen (`pod_network`: kept on reconnect)
        self._amounts: Resources | None = None  # `read_amounts`' answer in this pass (a pass starts with `read`)
        self.tunnel: Tunnel | None = None
        base_url = url
        # How httpGet/tcpSocket probes reach this node's pods from outside (None: in the container).
        # A local socket means the agent is on the node's host: it enters the pod's network namespace;
        # an ssh:// node connects to the pod's IP from the node, through its SSH connection.
        self.dialer: Dialer | None = NetnsDialer(self.pod_sandbox) if url.startswith(_LOCAL_SCHEMES) else None
        try:
            if url.startswith("ssh://"):
                from .tunnel import SshSettings, Tunnel

                self.tunnel = Tunnel(name, url, ssh or SshSettings(identity=None, known_hosts=None))
                base_url = self.tunnel.url
                self.dialer = RemoteDialer(self.pod_sandbox, self.tunnel.open_tcp)
            self._client = podman.PodmanClient(base_url=base_url, timeout=timeout)
        except (podman.errors.PodmanError, ValueError, OSError) as e:
            raise NodeError(name, f"cannot use Podman URL {url}: {e}") from e

    def close(self) -> None:
        self._client.api.close()  # what PodmanClient.close does (which has no type hints)
        if self.tunnel is not None:
            self.tunnel.close()

    @property
    def handshakes(self) -> int:
        """SSH connections made to this node so far (0 for a unix:// or tcp:// node)."""
        return self.tunnel.handshakes if self.tunnel is not None else 0

    def _unreachable(self, what: str) -> str:
        if self.tunnel is not None:
            if self.tunnel.dropped:
                self.tunnel.ensure()  # the precise reason (refused, timeout, host key ...) if it cannot reconnect
            return self.tunnel.failure()
        return f"cannot reach Podman at {self.url} ({what}): is the Podman service running?"

    # --- transport ----------------------------------------------------------------

    def _call(self, method: str, path: str, what: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None, raw: bytes | None = None, timeout: float | None = None, ok404: bool = False,
              as_bytes: bool = False, probe: bool = False, headers: Mapping[str, str] | None = None) -> Any:
        with self._count:
            if method == "GET":
                self.reads += 1
                self.lists += path in _LIST_PATHS
            else:
                self.writes += 1
        cache = self.cache if method != "GET" and not probe else None  # a probe exec changes no listed state
        if cache is not None:
            cache.writing(path)
        try:
            return self._checked(method, path, what, params=params, body=body, raw=raw, timeout=timeout,
                                 ok404=ok404, as_bytes=as_bytes, probe=probe, headers=headers)
        finally:
            if cache is not None:
                cache.writing(path)

    def _checked(self, method: str, path: str, what: str, *, params: Mapping[str, Any] | None, body: Any,
                 raw: bytes | None, timeout: float | None, ok404: bool, as_bytes: bool, probe: bool,
                 headers: Mapping[str, str] | None) -> Any:
        """One request, its failures translated: NodeUnreachable, NodeError, or None for an allowed 404."""
        if self.tunnel is not None:
            self.tunnel.ensure()
        try:
            resp = self._send(method, path, params=params, body=body, raw=raw, timeout=timeout, headers=headers)
        except requests.exceptions.ConnectionError as e:
            raise NodeUnreachable(self.name, self._unreachable(what)) from e
        except requests.exceptions.Timeout as e:
            if self.tunnel is not None and self.tunnel.dropped:
                raise NodeUnreachable(self.name, self.tunnel.failure()) from e
            raise NodeUnreachable(self.name, f"Podman at {self.url} timed out ({what})") from e
        except (requests.exceptions.RequestException, podman.errors.PodmanError) as e:
            if _unreachable(e):  # podman-py wraps connection failures in APIError
                raise NodeUnreachable(self.name, self._unreachable(what)) from e
            raise NodeError(self.name, f"{what}: {e}") from e
        if resp.status_code == 404 and ok404:
            return None
        if resp.status_code >= 400:
            raise NodeError(self.name, f"{what}: {_explain(resp)}")
        if method != "GET" and not probe:
            self._written(what)
        return _decoded(resp, as_bytes)

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None, body: Any, raw: bytes | None,
              timeout: float | None, headers: Mapping[str, str] | None) -> APIResponse:
        """One request through podman-py's API client; its exceptions are translated by `_checked`."""
        api = self._client.api
        if method == "GET":
            return api.get(path, params=params, timeout=timeout)
        if method == "DELETE":
            return api.delete(path, params=params, timeout=timeout)
        if method == "PUT":  # a tar archive into a container
            tar = {"content-type": "application/x-tar"}
            return api.put(path, params=params, data=raw, timeout=timeout, headers=tar)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        sent = {**({"content-type": "application/json"} if body is not None else {}), **(headers or {})}
        return api.post(path, params=params, data=data, timeout=timeout, headers=sent or None)

    def _written(self, what: str) -> None:
        """Count a change made on the node and tell the write hook (if any) about it."""
        with self._count:
            self.changes += 1
        hook = Node.on_write
        if hook is not None:
            hook(self.name, what)

    # --- reading --------------------------------------------------------------------

    def read(self) -> LiveState:
        """Everything the agent owns on this node: from the daemon's event-driven cache when it runs one
        (`informer`: no list call in steady state), else `list_live`. A pass starts here: the node's amounts
        are read again (`read_amounts`) the next time they are needed."""
        self._amounts = None
        cache = self.cache
        return cache.read() if cache is not None else self.list_live()

    def events(self) -> "EventStream":
        """Podman's event stream from now on (GET /events?stream=true), held open with no read timeout:
        NodeUnreachable when it cannot be opened, NodeError when the node refuses it."""
        if self.tunnel is not None:
            self.tunnel.ensure()
        try:
            resp = self._client.api.get("/events", params={"stream": "true"}, stream=True, timeout=None)
        except requests.exceptions.ConnectionError as e:
            raise NodeUnreachable(self.name, self._unreachable("event stream")) from e
        except (requests.exceptions.RequestException, podman.errors.PodmanError) as e:
            if _unreachable(e):
                raise NodeUnreachable(self.name, self._unreachable("event stream")) from e
            raise NodeError(self.name, f"event stream: {e}") from e
        if resp.status_code >= 400:
            text = _explain(resp)
            resp.close()
            raise NodeError(self.name, f"event stream: {text}")
        return EventStream(self.name, resp)

    def list_live(self, props: PropsCache | None = None) -> LiveState:
        """Everything the agent owns on this node, in one list call per object type, with the properties of
        each managed container (`ContainerProps`): taken from `props` (the informer's cache, updated in place)
        for a container already inspected, else from one inspect of it."""
        live_pods = self.read_pods(props if props is not None else {})
        nets = self._call("GET", "/networks/json", "list networks", params={"filters": _MANAGED_FILTER}) or []
        vols = self._call("GET", "/volumes/json", "list volumes", params={"filters": _MANAGED_FILTER}) or []
        secrets = [s for s in self._call("GET", "/secrets/json", "list secrets") or []
                   if s["Spec"]["Name"].startswith(SECRET_PREFIX)]
        images = self._call("GET", "/images/json", "list images") or []
        image_names: set[str] = set()
        for img in images:
            image_names.update(img.get("Names") or [])
            image_names.update(img.get("RepoTags") or [])
            image_names.update(img.get("RepoDigests") or [])
            image_names.add(img.get("Id", ""))
        # a pod's emptyDir volumes live and die with it: never a claim's, never pruned as one
        vols = [v for v in vols if L_EMPTY_DIR_OF not in (v.get("Labels") or {})]
        return LiveState(
            node=self.name,
            pods=live_pods,
            networks={n["name"]: n.get("labels") or {} for n in nets},
            volumes={v["Name"]: v.get("Labels") or {} for v in vols},
            secrets=frozenset(s["Spec"]["Name"] for s in secrets),
            marked_secrets=frozenset(s["Spec"]["Name"] for s in secrets if _driver_options(s).get(MANAGED) == "true"),
            images=frozenset(image_names),
            volume_created={v["Name"]: unix_time(v.get("CreatedAt")) for v in vols},
            secret_created={s["Spec"]["Name"]: unix_time(s.get("CreatedAt")) for s in secrets},
            secret_ids={s["Spec"]["Name"]: str(s.get("ID") or "") for s in secrets},
        )

    def read_pods(self, props: PropsCache | None = None) -> dict[str, LivePod]:
        """Managed pods with their app containers: two list calls (what a rollout polls). With `props`, each
        container (the infra container too) gets its properties: from `props`, or inspected once and added."""
        pods = self._call("GET", "/pods/json", "list pods", params={"filters": _MANAGED_FILTER}) or []
        ctrs = self._call("GET", "/containers/json", "list containers",
                          params={"all": "true", "filters": _MANAGED_FILTER}) or []
        by_pod: dict[str, list[LiveContainer]] = {}
        infra: dict[str, tuple[LiveContainer, Any]] = {}
        for c in ctrs:
            labels = c.get("Labels") or {}
            if labels.get(L_INIT) == "true":  # an init container has exited once done
                continue
            found = self._live_container(c, props)
            if c.get("IsInfra"):
                infra[str(c.get("Pod") or "")] = (found, c.get("Ports"))
            else:
                by_pod.setdefault(c.get("PodName") or "", []).append(found)
        if props is not None:
            gone = set(props) - {str(c.get("Id", "")) for c in ctrs}
            for cid in gone:  # removed containers: their IDs never come back
                props.pop(cid, None)
        return {p["Name"]: _live_pod(p, by_pod.get(p["Name"], []), infra.get(p.get("Id", ""))) for p in pods}

    def _live_container(self, c: Mapping[str, Any], props: PropsCache | None) -> LiveContainer:
        """One listed container, with its properties when `props` is given (inspected if not in it)."""
        status = str(c.get("Status") or "")
        cid = str(c.get("Id", ""))
        found = None
        if props is not None:
            found = props.get(cid)
            if found is None:
                info = self._call("GET", f"/containers/{cid}/json", "inspect container", ok404=True)
                if isinstance(info, dict):
                    found = props[cid] = container_props(info)
        return LiveContainer(
            name=(c.get("Names") or [""])[0],
            id=cid,
            image=c.get("Image", ""),
            state=c.get("State", ""),
            health=status if status in _HEALTH else "",
            labels=c.get("Labels") or {},
            started_at=int(c.get("StartedAt") or 0),
            exit_code=int(c.get("ExitCode") or 0),
            props=found,
        )

    def container_stats(self, containers: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        """Podman's stats of running containers (by ID): container ID -> (CPU time used so far in ns, the
        node's clock then in ns, memory in use in bytes); one call. CPU use is the difference of two readings."""
        ids = sorted(set(containers))
        if not ids:
            return {}
        found = self._call("GET", "/containers/stats", "read container stats",
                           params={"stream": "false", "containers": ids}) or {}
        stats = found.get("Stats") or [] if isinstance(found, dict) else []
        return {s["ContainerID"]: (int(s.get("CPUNano") or 0), int(s.get("SystemNano") or 0),
                                   int(s.get("MemUsage") or 0)) for s in stats if s.get("ContainerID")}

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
            raw = self._call("POST", f"/exec/{exec_id}/start", f"exec in {container}", body={"Detach": False},
                             timeout=timeout, as_bytes=True, probe=True)
        except NodeUnreachable as e:
            if _read_timed_out(e):  # the probe took too long; the node itself answered
                return None, f"timed out after {timeout:g}s"
            raise
        info = self._call("GET", f"/exec/{exec_id}/json", f"exec in {container}") or {}
        output = _demux(raw)
        if info.get("ExitCode") == 127 and _NOT_FOUND in output:  # the runtime found no such file in the image
            return NO_SUCH_EXECUTABLE_EXIT, f"no such executable in the image: {command[0]}"
        return info.get("ExitCode"), output

    def pod_sandbox(self, pod: str) -> Sandbox:
        """The host PID of pod `pod`'s infra container and the pod's IP (for `dial`); DialError when
        the pod or its infra container is gone or not running."""
        info = self._call("GET", f"/pods/{pod}/json", f"inspect pod {pod}", ok404=True) or {}
        infra = info.get("InfraContainerID") or next((c.get("Id") for c in info.get("Containers") or []), "")
        if not infra:
            raise DialError(f"pod {pod} is gone")
        c = self._call("GET", f"/containers/{infra}/json", f"inspect pod {pod}", ok404=True) or {}
        pid = int((c.get("State") or {}).get("Pid") or 0)
        if pid <= 0:
            raise DialError(f"pod {pod} is not running (its infra container has no process)")
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        ip = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "")
        return Sandbox(pid, ip, infra)

    def has_image(self, image: str, images: frozenset[str]) -> bool:
        candidates = {image, f"docker.io/{image}", f"docker.io/library/{image}"}
        if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
            candidates |= {f"{c}:latest" for c in candidates}
        return bool(candidates & images)

    # --- writing --------------------------------------------------------------------

    def pull(self, image: str, credential: Credential | None = None, timeout: float = 600) -> None:
        """Pull `image` (with `credential` as X-Registry-Auth, if any). A failure the registry
        gives for good (no such tag or repository, credentials refused) is ImageUnavailable;
        anything that may pass (unreachable, TLS timeout, 5xx, slower than `timeout`) is
        ImagePullBackOff. Podman keeps no half-pulled image either way (a pull whose request is
        given up is dropped by Podman 4.3, not finished in the background)."""
        headers = {"X-Registry-Auth": credential.header()} if credential else None
        try:
            out = self._call("POST", "/images/pull", f"pull {image}", params={"reference": image, "quiet": "true"},
                             timeout=max(1.0, timeout), headers=headers)
        except NodeUnreachable as e:
            if _read_timed_out(e) and self._answers():
                raise ImagePullBackOff(self.name, f"pull {image}: not done within {timeout:.0f}s (slow registry link); "
                                       "Podman dropped it, nothing is kept; retried", image) from e
            raise
        except NodeError as e:  # Podman answered with an HTTP error of its own
            raise _pull_error(self.name, image, credential, str(e).partition(": ")[2]) from e
        text = out if isinstance(out, str) else json.dumps(out)
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("error"):
                raise _pull_error(self.name, image, credential, str(rec["error"]))

    def image(self, ref: str) -> tuple[str, str] | None:
        """(image ID, `repository@sha256:...` manifest digest or "") of a local image; None when absent.

        The digest is the one of `ref`'s repository. An image stored under several manifests
        (made or pulled elsewhere first, then pulled from this repository) lists each; the one
        that is not its first (`Digest`) came from the latest pull."""
        info = self._call("GET", f"/images/{ref}/json", f"inspect image {ref}", ok404=True)
        if not isinstance(info, dict):
            return None
        repo = _repository(ref)
        first = str(info.get("Digest") or "")
        mine = sorted({str(d) for d in info.get("RepoDigests") or [] if str(d).startswith(repo + "@")})
        later = [d for d in mine if d != f"{repo}@{first}"]
        return str(info.get("Id") or ""), (later or mine or [""])[0]

    def remote_size(self, image: str, credential: Credential | None = None) -> int | None:
        """Bytes the registry reports for `image` (its layers and config, compressed, as
        downloaded); None when Podman cannot tell (a multi-arch list, an old registry).

        Podman 4.3 has no remote-inspect endpoint; its manifest inspect fetches a reference
        that is not local from the registry and, for a single image, answers with an error that
        quotes the manifest it read (\"Treating single images as manifest lists...\"): the sizes
        are taken from that manifest. A 200 answer with `layers` is read the same way."""
        headers = {"X-Registry-Auth": credential.header()} if credential else None
        try:
            resp = self._client.api.get(f"/manifests/{image}/json", headers=headers, timeout=60)
        except (requests.exceptions.RequestException, podman.errors.PodmanError):
            return None
        try:
            body = resp.json()
        except ValueError:
            return None
        return manifest_size(body if resp.status_code == 200 else str(body.get("message") or ""))

    def registry_answer(self, image: str) -> str:
        """`doctor`: "" when the node fetched `image`'s manifest from its registry (reachable, its TLS
        certificate trusted), else the registry's or Podman's reason. Pulls nothing. Podman 4.3 answers a
        single image's manifest with an error quoting it (see `remote_size`)."""
        if self.tunnel is not None:
            self.tunnel.ensure()
        try:
            resp = self._client.api.get(f"/manifests/{image}/json", timeout=60)
        except (requests.exceptions.RequestException, podman.errors.PodmanError) as e:
            if _unreachable(e):
                raise NodeUnreachable(self.name, self._unreachable(f"ask the registry of {image}")) from e
            return str(e)
        if resp.status_code == 200:
            return ""
        try:
            message = str(resp.json().get("message") or resp.text)
        except ValueError:
            message = resp.text
        return "" if manifest_size(message) is not None or "Treating single images" in message else message.strip()

    def free_image_space(self) -> int | None:
        """Free bytes on the file system of the node's image store (Podman's graphRoot)."""
        info = self._call("GET", "/info", "read node info") or {}
        store = info.get("store") or {}
        total, used = store.get("graphRootAllocated"), store.get("graphRootUsed")
        return int(total) - int(used) if isinstance(total, int) and isinstance(used, int) else None

    def read_amounts(self) -> Resources:
        """The node's size as its Podman reports it (GET /info): `host.cpus` x 1000 millicores and `host.memTotal`
        bytes, what a resourceFieldRef of a limit nobody sets reads (`desired.node_allocatable`). Read once per
        pass (`read` starts one); NodeError (retried next pass) when /info does not say."""
        if self._amounts is None:
            host = (self._call("GET", "/info", "read node info") or {}).get("host") or {}
            cpus, memory = host.get("cpus"), host.get("memTotal")
            if not (isinstance(cpus, int) and isinstance(memory, int) and cpus > 0 and memory > 0):
                raise NodeError(self.name, f"Podman's /info gives no host.cpus and host.memTotal (cpus={cpus!r}, "
                                f"memTotal={memory!r}), the node's allocatable amounts a resourceFieldRef of an unset "
                                f"limit reads: set capacity.cpu and capacity.memory of node {self.name} in the "
                                "agent config")
            self._amounts = Resources(cpus * 1000, memory)
        return self._amounts

    def image_use(self) -> tuple[set[str], dict[str, int]]:
        """(IDs of the images any container uses, managed or not; size in bytes of every local image by ID)."""
        ctrs = self._call("GET", "/containers/json", "list containers", params={"all": "true"}) or []
        images = self._call("GET", "/images/json", "list images") or []
        return {str(c.get("ImageID") or "") for c in ctrs}, {str(i.get("Id")): int(i.get("Size") or 0) for i in images}

    def remove_image(self, image_id: str) -> bool:
        """Remove an image no container uses (never forced); False when Podman refuses (in use)."""
        try:
            self._call("DELETE", f"/images/{image_id}", f"remove image {image_id[:12]}", ok404=True)
        except NodeUnreachable:
            raise
        except NodeError:
            return False
        return True

    def _answers(self) -> bool:
        try:
            self.ping()
            return True
        except NodeError:
            return False

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
        """Create the pod, its infra container and its containers, then start it. A container with
        runAsNonRoot and no runAsUser is refused first if its image's user is root, as the kubelet does. When a
        container's env wants the pod's address (fieldRef status.podIP), the pod's address is found and pinned
        first (`_pin_address`), then the containers are created with it; other pods cost no extra call."""
        for c in spec.every_container():
            if c.non_root_image:
                self._check_non_root(c)
        # Podman takes a user namespace's ids from those of user `containers`: a failure names where they are
        userns = " (hostUsers: false: ids of user containers in /etc/subuid and /etc/subgid)" if spec.own_userns else ""
        self._call("POST", "/pods/create", f"create pod {spec.name}{userns}",
                   body=_pod_body(spec, self._dns_servers(spec)))
        try:
            for d in spec.empty_dirs:
                self._call("POST", "/volumes/create", f"create emptyDir volume {d.name}", body=_empty_dir_body(spec, d))
            pod_ip = self._pin_address(spec) if any(c.pod_ip_env for c in spec.every_container()) else ""
            sources = self._sub_path_sources(spec)
            for c in spec.every_container():  # init containers first: Podman runs them in the order they were made
                self._create_container(spec, c, pod_ip, sources)
            self.start_pod(spec.name, spec)
            self._set_empty_dir_modes(spec)
            self._give_volumes_to_group(spec, sources)
            for c in spec.containers:
                if c.post_start:
                    self._post_start(c.name, c.post_start, max(30, spec.stop_timeout))
        except NodeError:
            self.remove_pod(spec.name, 0)  # never leave a half-built pod behind
            raise

    def _pin_address(self, spec: PodSpec) -> str:
        """The address of new pod `spec` on its network (the value of env status.podIP), made its own for good.
        Podman gives a pod its address when its infra container starts (a new one at each start), and takes no
        init container into a running pod: the infra container is started alone, its address read, and it is
        stopped and connected again with that address as a static one, so every later start keeps it."""
        what = f"the infra container of pod {spec.name}"
        info = self._call("GET", f"/pods/{spec.name}/json", f"inspect pod {spec.name}") or {}
        infra = str(info.get("InfraContainerID") or "")
        if not infra:
            raise NodeError(self.name, f"pod {spec.name} has no infra container to take the pod's address from")
        self._call("POST", f"/containers/{infra}/start", f"start {what}")
        c = self._call("GET", f"/containers/{infra}/json", f"inspect {what}") or {}
        found = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get(spec.network) or {}
        ip = str(found.get("IPAddress") or "")
        if not ip:
            raise NodeError(self.name, f"pod {spec.name} got no address on network {spec.network} (env status.podIP)")
        self._call("POST", f"/containers/{infra}/stop", f"stop {what}", params={"timeout": 0})  # libpod: not `t`
        self._call("POST", f"/networks/{spec.network}/disconnect", f"disconnect {what}", body={"Container": infra})
        self._call("POST", f"/networks/{spec.network}/connect", f"connect {what} with address {ip}",
                   body={"container": infra, "aliases": list(creation_aliases(spec)), "static_ips": [ip]})
        return ip

    def _dns_servers(self, spec: PodSpec) -> list[str]:
        """The pod's nameservers (`PodDNS`): a ClusterFirst pod's own come after the network's DNS server, the
        gateway of the pod network (where aardvark-dns answers), which Podman would leave out once any is given."""
        if spec.dns is None:
            return []
        if not spec.dns.network_first:
            return list(spec.dns.servers)
        info = self._call("GET", f"/networks/{spec.network}/json", f"inspect network {spec.network}") or {}
        gateways = [str(net["gateway"]) for net in info.get("subnets") or [] if net.get("gateway")]
        return list(dict.fromkeys((*gateways[:1], *spec.dns.servers)))

    def _create_container(self, spec: PodSpec, c: ContainerSpec, pod_ip: str,
                          sources: Mapping[tuple[str, str], BindSource]) -> None:
        """Create container `c`; a seccomp or AppArmor profile the node cannot apply is named with what to do."""
        try:
            self._call("POST", "/containers/create", f"create container {c.name}",
                       body=_container_body(spec, c, pod_ip, sources))
        except NodeUnreachable:
            raise
        except NodeError as e:
            text = str(e)
            if c.seccomp not in ("", "unconfined") and "seccomp profile" in text:
                raise NodeError(self.name, f"container {c.name}: the seccomp profile {c.seccomp} (seccompProfile "
                                           f"type Localhost) cannot be read on node {self.name}: put the file there "
                                           "(under the node's seccompProfileRoot) or change localhostProfile") from e
            if c.apparmor not in ("", "unconfined") and "apparmor" in text.lower():
                enabled = "AppArmor is not enabled on the node" if "not enabled" in text else text
                raise NodeError(self.name, f"container {c.name}: the AppArmor profile {c.apparmor} cannot be applied "
                                           f"on node {self.name} ({enabled}): load the profile there, or use "
                                           "appArmorProfile type RuntimeDefault") from e
            raise

    def _init_failure(self, spec: PodSpec) -> NodeError | None:
        """The init container that stopped the pod's start, with its exit code and its last output lines
        (Secret values redacted); None when no init container failed."""
        for c in spec.init_containers:
            if is_sidecar(c):
                continue
            state = (self.inspect_container(c.name) or {}).get("State") or {}
            if state.get("Status") == "exited" and state.get("ExitCode"):
                output = redact("\n".join(self.logs(c.name, tail=INIT_OUTPUT_LINES)), spec.redactions)
                shown = c.labels.get(L_CONTAINER, c.name)
                return NodeError(self.name, f"pod {spec.name}: init container {shown} exited with code "
                                            f"{state['ExitCode']}: {output or '(no output)'}")
        return None

    def _set_empty_dir_modes(self, spec: PodSpec) -> None:
        """emptyDir `mode`: the top directory of the emptyDir gets it, owner root, as the kubelet makes it (a tmpfs
        also has it from its `mode=` option, for a remount at a container's restart). Through the archive upload of
        the first running container that mounts it read-write, right after the start (Podman gives a new volume to
        the container's user, and the mode of the image's directory there, when it first mounts it); fsGroup,
        next, overrides it, as in Kubernetes."""
        for d in spec.empty_dirs:
            if d.mode is None:
                continue
            bind = next(((c.name, v.target) for c in spec.running_containers() for v in c.volumes
                         if v.volume == d.name and not v.read_only and not v.sub_path), None)
            if bind is not None:
                self._call("PUT", f"/containers/{bind[0]}/archive", f"set the mode of emptyDir volume {d.name}",
                           params={"path": bind[1], "copyUIDGID": "false"}, raw=directories_tar((".",), d.mode))

    def _give_volumes_to_group(self, spec: PodSpec, sources: Mapping[tuple[str, str], BindSource]) -> None:
        """fsGroup, as the kubelet applies it: the top directory of each read-write PVC volume gets the group and
        mode 2775 (setgid: new files take the group). Done through the container (Podman's archive upload keeps a
        tar entry's owner with copyUIDGID=false), so the image needs no shell or chgrp; right after the start,
        because Podman gives a volume on its first use to the container's user when the container starts. A
        subPath mount: its directory gets them (a file subPath keeps its owner: `sources`)."""
        done: set[tuple[str, str]] = set()
        for c in spec.running_containers():
            for v in (() if c.fs_group is None else c.volumes):
                key = (v.volume, v.sub_path)
                if v.read_only or key in done or (v.sub_path and not sources[key].directory):
                    continue
                done.add(key)
                shown = f"directory {v.sub_path} of volume {v.volume}" if v.sub_path else f"volume {v.volume}"
                self._call("PUT", f"/containers/{c.name}/archive", f"set the group of {shown}",
                           params={"path": v.target, "copyUIDGID": "false"},
                           raw=directories_tar((".",), 0o2775, c.fs_group or 0))

    def _sub_path_sources(self, spec: PodSpec) -> dict[tuple[str, str], BindSource]:
        """Where each (volume, subPath) the pod's containers mount is on the node: under the Mountpoint of the
        local volume (Podman 4.3 mounts a named volume only whole: a subPath is a bind mount of that path), its
        directories made when missing by `_make_sub_path`, through a short-lived container of the pod's infra
        image that mounts the whole volume (the archive API: an ssh:// node too)."""
        wanted = sorted({(b.volume, b.sub_path) for c in spec.every_container() for b in c.volumes if b.sub_path})
        if not wanted:
            return {}
        image = self._infra_image(spec.name)
        modes = {d.name: d.mode for d in spec.empty_dirs}  # an emptyDir's `mode` is its top's (set after the start)
        sources: dict[tuple[str, str], BindSource] = {}
        for volume in sorted({v for v, _ in wanted}):
            mountpoint = self._local_mountpoint(volume)
            # one pod at a time: two pods made at once would each find a directory missing and make it
            with self._sub_paths, self._volume_helper(spec.name, volume, image) as helper:
                for sub in (s for v, s in wanted if v == volume):
                    directory = self._make_sub_path(helper, volume, sub, modes.get(volume))
                    sources[(volume, sub)] = BindSource(bind_source(mountpoint, sub), directory)
        return sources

    def _infra_image(self, pod: str) -> str:
        """The image of the pod's infra container (Podman's pause image, on every node: no volume, no pull)."""
        info = self._call("GET", f"/pods/{pod}/json", f"inspect pod {pod}") or {}
        infra = str(info.get("InfraContainerID") or "")
        found = self._call("GET", f"/containers/{infra}/json", f"inspect the infra container of pod {pod}") \
            if infra else None
        image = str((found or {}).get("Image") or "")
        if not image:
            raise NodeError(self.name, f"pod {pod} has no infra container, whose image makes its subPath directories")
        return image

    def _local_mountpoint(self, volume: str) -> str:
        """The directory on the node of a local volume without options (one with a driver or mount options is
        mounted only while a container uses it: the manifests refuse a subPath of one)."""
        info = self._call("GET", f"/volumes/{volume}/json", f"inspect volume {volume}") or {}
        driver, options = info.get("Driver") or LOCAL_DRIVER, info.get("Options") or {}
        mountpoint = str(info.get("Mountpoint") or "")
        if driver != LOCAL_DRIVER or options or not mountpoint:
            shown = ", ".join(sorted(options)) or "none"
            raise NodeError(self.name, f"volume {volume} (driver {driver}, options {shown}) cannot be mounted with a "
                                       "subPath: Podman 4.3 has its files on the node only while a container mounts "
                                       "it whole; mount the whole volume instead")
        return mountpoint

    @contextlib.contextmanager
    def _volume_helper(self, pod: str, volume: str, image: str) -> Iterator[str]:
        """A container (never started, not the agent's: unlabelled) that mounts the whole of `volume` at
        HELPER_ROOT for pod `pod` (pods made at once each have their own), removed afterwards; one a crash left
        behind is removed first."""
        name = f"gitops-subpath-{pod}-{volume}"
        what = f"the container that makes subPath directories of volume {volume}"
        self._call("DELETE", f"/containers/{name}", f"remove {what}", params={"force": "true"}, ok404=True)
        body = {"name": name, "image": image, "netns": {"nsmode": "none"},
                "volumes": [{"Name": volume, "Dest": HELPER_ROOT, "Options": ["rw"]}]}
        self._call("POST", "/containers/create", f"create {what}", body=body)
        try:
            yield name
        finally:
            self._call("DELETE", f"/containers/{name}", f"remove {what}", params={"force": "true"}, ok404=True)

    def _make_sub_path(self, helper: str, volume: str, sub: str, mode: int | None = None) -> bool:
        """Make the directories of `sub` missing in `volume` (through container `helper`), as the kubelet makes
        them: owner root, with the mode of the volume's top directory (`mode`, when it is to be set). True for a
        directory, False for a file that was there. A symbolic link on the way (Podman names an archive after what
        it resolved) is refused: the node would follow it when it binds the path, maybe out of the volume."""
        missing: list[str] = []
        parts = components(sub)
        for path in parts:
            found = self._archive_entry(helper, f"{HELPER_ROOT}/{path}") if not missing else None
            if found is None:
                missing.append(path)
                continue
            why = refusal(found, path, path == parts[-1])
            if why:
                raise NodeError(self.name, f"volume {volume}: {path!r} (of subPath {sub!r}) cannot be bound: {why}; "
                                           "replace it with a directory of the volume")
            if path == parts[-1]:
                return found.isdir()
        if mode is None:
            top = self._archive_entry(helper, HELPER_ROOT)
            mode = (top.mode if top is not None else 0o755) & 0o7777
        self._call("PUT", f"/containers/{helper}/archive", f"make directory {sub} in volume {volume}",
                   params={"path": HELPER_ROOT, "copyUIDGID": "false"}, raw=directories_tar(tuple(missing), mode))
        return True

    def _archive_entry(self, container: str, path: str) -> tarfile.TarInfo | None:
        """The first entry of the archive of `path` in `container` (its own header: name, type, mode), read without
        the rest (the stream is closed after one block); None when the path is not there."""
        what = f"read {path} in container {container}"
        resp = self._get(f"/containers/{container}/archive", what, params={"path": path}, stream=True, ok404=True)
        if resp is None:
            return None
        try:
            return first_entry(resp.raw.read(tarfile.BLOCKSIZE))
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as e:
            raise NodeError(self.name, f"{what}: {e}") from e
        finally:
            resp.close()

    def _check_non_root(self, c: ContainerSpec) -> None:
        """The kubelet's check: the image's USER must be a non-zero numeric uid (a name cannot be verified)."""
        info = self._call("GET", f"/images/{c.image}/json", f"inspect image {c.image}") or {}
        user = str((info.get("Config") or {}).get("User") or "").partition(":")[0]
        if not user.isdigit():
            why = ("runs as root" if user in ("", "root")
                   else f"has the non-numeric user {user!r}, which cannot be verified")
            raise NodeError(self.name, f"container {c.name}: runAsNonRoot is true but image {c.image} {why}; "
                                       "set securityContext.runAsUser to a non-zero user id")
        if int(user) == 0:
            raise NodeError(self.name, f"container {c.name}: runAsNonRoot is true but image {c.image} runs as root "
                                       "(uid 0); set securityContext.runAsUser to a non-zero user id")

    def _post_start(self, container: str, command: tuple[str, ...], timeout: float) -> None:
        """A container's postStart hook; its failure fails the pod (Kubernetes kills the container). Its output
        is not shown: it may hold a Secret's value."""
        code, _ = self.exec(container, command, timeout)
        if code != 0:
            how = f"timed out after {timeout:g}s" if code is None else f"exited {code}"
            raise NodeError(self.name, f"the postStart hook of container {container} {how}")

    def _pre_stop(self, running: list[dict[str, Any]]) -> None:
        """Run the preStop hooks of a pod's `running` containers, each bounded by its grace period, before the
        pod is stopped (the stop timeout starts after them, as the kubelet does). A hook that fails or
        times out does not keep the pod from stopping. A sidecar's runs when it stops (`stop_sidecars`)."""
        for c in running:
            if L_SIDECAR not in (c.get("Labels") or {}):
                self._run_pre_stop(c)

    def _run_pre_stop(self, c: Mapping[str, Any]) -> None:
        """The preStop hook of listed container `c`, if it has one."""
        if PRE_STOP not in (c.get("Labels") or {}):
            return
        try:
            hook = json.loads((c.get("Labels") or {}).get(PRE_STOP, ""))
            command, timeout = tuple(str(part) for part in hook["command"]), float(hook["timeout"])
        except (ValueError, KeyError, TypeError):
            return  # not a label this agent wrote
        try:
            self.exec(c["Id"], command, max(1.0, timeout))
        except NodeUnreachable:
            raise
        except NodeError:
            pass  # the container went away meanwhile: nothing left to run the hook in

    def start_pod(self, name: str, spec: PodSpec | None = None) -> None:
        """Start the pod (its init containers first, each to completion); a failing init container of `spec`
        is named in the error with its exit code and output. A pod with sidecars is started container by
        container (`_start_in_order`)."""
        if spec is not None and spec.sidecars:
            self._start_in_order(spec)
            return
        try:
            self._call("POST", f"/pods/{name}/start", f"start pod {name}", timeout=120)
        except NodeUnreachable:
            raise
        except NodeError as e:
            raise (self._init_failure(spec) if spec is not None else None) or e

    def remove_pod(self, name: str, stop_timeout: int | None = None) -> None:
        """Stop (SIGTERM, then SIGKILL after `stop_timeout` seconds; None: each container's own
        stop timeout, i.e. the terminationGracePeriodSeconds it was created with) and remove. The
        containers' preStop hooks run first, unless `stop_timeout` is 0 (a forced removal). A pod's
        sidecars stop after its app containers, in reverse order, as Kubernetes stops them."""
        if stop_timeout != 0:
            running = self._pod_containers(name, "running")
            self._pre_stop(running)
            self._stop_in_order(name, stop_timeout, running)
        self.stop_pod(name, stop_timeout)
        self.delete_pod(name)

    # --- sidecars: init containers with restartPolicy Always -------------------------------------------

    def _start_in_order(self, spec: PodSpec) -> None:
        """Start a pod with sidecars as the kubelet does: each init container in turn, a plain one run to
        completion, a sidecar started (and its startupProbe passed) before the next; then the app containers.
        Podman 4.3's pod start cannot: it runs every init container before any other container, and an init
        container cannot depend on a sidecar. A pod already running (a container stopped by hand) gets its
        stopped sidecars and app containers started again, its init containers are not run again."""
        states = {str(c.get("Names", [""])[0]): str(c.get("State") or "") for c in self._pod_containers(spec.name)}
        if any(state == "running" for state in states.values()):
            for c in spec.running_containers():
                if states.get(c.name) != "running":
                    self._start_container(c.name)
            return
        for c in spec.init_containers:
            self._start_container(c.name)
            if is_sidecar(c):
                if c.post_start:  # a sidecar is started once its postStart hook is done, as the kubelet has it
                    self._post_start(c.name, c.post_start, max(30, spec.stop_timeout))
                self._started_up(spec, c)
                continue
            code = self._call("POST", f"/containers/{c.name}/wait", f"wait for init container {c.name}",
                              params={"condition": "exited"}, timeout=120)
            if code:
                raise self._init_failure(spec) or NodeError(self.name, f"pod {spec.name}: init container "
                                                                       f"{c.name} exited with code {code}")
        for c in spec.containers:
            self._start_container(c.name)

    def _start_container(self, name: str) -> None:
        self._call("POST", f"/containers/{name}/start", f"start container {name}", timeout=120)

    def _started_up(self, spec: PodSpec, c: ContainerSpec) -> None:
        """Wait for sidecar `c`'s startupProbe to pass, with Kubernetes' timing (run as the rollout's probes run,
        `probes.probe_way`: httpGet/tcpSocket from outside through the node's dialer, else in the container); a
        sidecar that fails it `failureThreshold` times in a row fails the pod's start, with the probe's output."""
        probe, shown, dialer = c.startup, c.labels.get(L_CONTAINER, c.name), self.dialer
        if probe is None:
            return
        time.sleep(probe.initial_delay_seconds)
        failures, output = 0, ""
        while failures < probe.failure_threshold:
            if dialer is not None and probe.action != "exec":
                code, output = netprobe.check(dialer, spec.name, probe)
            else:
                code, output = self.exec(c.name, probe_command(probe), probe.timeout_seconds)
            if code == 0:
                return
            failures = probe.failure_threshold if code in (NO_TOOL_EXIT, NO_SUCH_EXECUTABLE_EXIT) else failures + 1
            time.sleep(probe.period_seconds if failures < probe.failure_threshold else 0)
        raise NodeError(self.name, f"pod {spec.name}: sidecar {shown} failed its startupProbe {failures} times: "
                                   f"{redact(output.strip()[-300:], spec.redactions) or '(no output)'}")

    def _pod_containers(self, pod: str, status: str = "") -> list[dict[str, Any]]:
        """The pod's containers as Podman lists them (only those in `status`, when given), infra included."""
        wanted: dict[str, list[str]] = {"pod": [pod], **({"status": [status]} if status else {})}
        found = self._call("GET", "/containers/json", f"list containers of pod {pod}",
                           params={"all": "true", "filters": json.dumps(wanted)})
        return list(found or [])

    def _stop_in_order(self, pod: str, stop_timeout: int | None, running: list[dict[str, Any]]) -> None:
        """A pod with sidecars: its `running` app containers stopped together, then its sidecars (`stop_sidecars`)."""
        if not any(L_SIDECAR in (c.get("Labels") or {}) for c in running):
            return
        apps = [str(c["Id"]) for c in running if not c.get("IsInfra") and L_SIDECAR not in (c.get("Labels") or {})]
        with ThreadPoolExecutor(max_workers=max(1, len(apps))) as pool:
            for done in [pool.submit(self._stop_one, cid, stop_timeout) for cid in apps]:
                done.result()
        self.stop_sidecars(pod, stop_timeout, running)

    def stop_sidecars(self, pod: str, stop_timeout: int | None, listed: list[dict[str, Any]] | None = None) -> None:
        """Stop a pod's running sidecars (of `listed`, else listed now) one by one, the last one first, each after
        its preStop hook: a finished Job's, or before its pod stops."""
        running = [c for c in (self._pod_containers(pod, "running") if listed is None else listed)
                   if L_SIDECAR in (c.get("Labels") or {})]
        for c in sorted(running, key=lambda c: int((c.get("Labels") or {})[L_SIDECAR]), reverse=True):
            self._run_pre_stop(c)
            self._stop_one(str(c["Id"]), stop_timeout)

    def _stop_one(self, container: str, stop_timeout: int | None) -> None:
        params = {"t": stop_timeout} if stop_timeout is not None else None
        wait = (stop_timeout if stop_timeout is not None else 600) + 60
        self._call("POST", f"/containers/{container}/stop", f"stop container {container}", params=params,
                   timeout=wait, ok404=True)

    def restart_container(self, container: str, stop_timeout: int) -> None:
        """Stop (SIGTERM, SIGKILL after `stop_timeout` s) and start one container again: a failed liveness probe."""
        self._call("POST", f"/containers/{container}/restart", f"restart container {container}",
                   params={"t": stop_timeout}, timeout=stop_timeout + 60, ok404=True)

    def stop_container(self, container: str, stop_timeout: int) -> None:
        """Stop one container for good (SIGTERM, SIGKILL after `stop_timeout` s): a failed liveness probe of a pod
        with restartPolicy Never."""
        # libpod's container stop reads `timeout` (`t` is the Docker API's and is ignored: measured on 4.3.1)
        self._call("POST", f"/containers/{container}/stop", f"stop container {container}",
                   params={"timeout": stop_timeout}, timeout=stop_timeout + 60, ok404=True)

    # --- a pod's network membership (`endpoints`: Service DNS follows readiness) ------------------------

    def pod_network(self, pod: str, network: str) -> PodNetwork | None:
        """Pod `pod`'s membership of `network` (its infra container holds it): its IP and DNS aliases, or not
        connected (a disconnect whose connect never came); None when the pod or its infra container is gone."""
        info = self._call("GET", f"/pods/{pod}/json", f"inspect pod {pod}", ok404=True) or {}
        infra = info.get("InfraContainerID") or ""
        if not infra or (info.get("Labels") or {}).get(MANAGED) != "true":
            return None
        c = self._call("GET", f"/containers/{infra}/json", f"inspect pod {pod}", ok404=True)
        if c is None:
            return None
        found = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get(network)
        if found is None:
            return PodNetwork(pod, infra, network, connected=False, ip=self._last_ip.get(infra, ""))
        ip = str(found.get("IPAddress") or "")
        self._last_ip[infra] = ip
        return PodNetwork(pod, infra, network, connected=True, ip=ip, aliases=frozenset(found.get("Aliases") or ()))

    def disconnect(self, net: PodNetwork) -> None:
        """Take the pod off its network (`podman network disconnect`): its aliases leave DNS."""
        self._call("POST", f"/networks/{net.network}/disconnect", f"disconnect pod {net.pod} from {net.network}",
                   body={"Container": net.infra})

    def connect(self, net: PodNetwork, aliases: Iterable[str]) -> None:
        """Put the pod on its network with exactly `aliases` (Podman adds the pod's name and short id), on the IP
        address it had (a fresh one if that is taken meanwhile)."""
        what = f"connect pod {net.pod} to {net.network}"
        body: dict[str, Any] = {"container": net.infra, "aliases": sorted(aliases)}
        if net.ip:
            try:
                self._call("POST", f"/networks/{net.network}/connect", what, body={**body, "static_ips": [net.ip]})
                return
            except NodeUnreachable:
                raise
            except NodeError:
                pass  # its address was given to another container meanwhile
        self._call("POST", f"/networks/{net.network}/connect", what, body=body)

    def stop_pod(self, name: str, stop_timeout: int | None = None) -> None:
        """Stop a pod: SIGTERM, then SIGKILL after `stop_timeout` s (None: each container's own grace period);
        0 kills it at once (libpod's pod stop takes `t=0` for "each container's own grace period": measured on
        4.3.1, a container ignoring SIGTERM took its full 10 s)."""
        if stop_timeout == 0:
            try:
                self._call("POST", f"/pods/{name}/kill", f"kill pod {name}", params={"signal": "SIGKILL"},
                           timeout=60, ok404=True)
            except NodeError as e:
                if "no running containers" not in str(e):  # 409 for a pod created but never started: nothing to kill
                    raise
            return
        params = {"t": stop_timeout} if stop_timeout is not None else None
        wait = (stop_timeout if stop_timeout is not None else 600) + 60
        self._call("POST", f"/pods/{name}/stop", f"stop pod {name}", params=params, timeout=wait, ok404=True)

    def delete_pod(self, name: str) -> None:
        """Remove a pod (stopped or not). Podman 4.3 takes seconds for a container that ran exec
        sessions (the agent's probes), so a rollout does this off its critical path."""
        self._call("DELETE", f"/pods/{name}", f"remove pod {name}", params={"force": "true"}, timeout=120, ok404=True)
        label = json.dumps({"label": [f"{L_EMPTY_DIR_OF}={name}"]})
        for v in self._call("GET", "/volumes/json", f"list the emptyDir volumes of {name}",
                            params={"filters": label}) or []:
            if (v.get("Labels") or {}).get(MANAGED) == "true":  # made by the agent: lives and dies with its pod
                self.remove_volume(v["Name"])

    def empty_dir_usage(self) -> list[Usage]:
        """The bytes each disk emptyDir volume with a sizeLimit that the agent made here holds now (`eviction`):
        one list of those volumes (by their label) and, only if there is one, one `system df`, which sizes every
        volume of the node (Podman 4.3: the bytes of its files; it sizes images and writable layers too: 12-50 ms
        for 20 containers with 20 volumes of 1 MiB, measured on 4.3.1). Only the volumes of active pods (an app
        container running: as the kubelet, which evicts no pod that has finished, such as a completed Job's) are
        measured; a volume no container uses (`Links` 0: left by a pod already removed) is not either."""
        marked = self._call("GET", "/volumes/json", "list the emptyDir volumes with a sizeLimit",
                            params={"filters": json.dumps({"label": [L_SIZE_LIMIT]})}) or []
        mine = {str(v["Name"]): v.get("Labels") or {} for v in marked if (v.get("Labels") or {}).get(MANAGED) == "true"}
        if not mine:
            return []
        pods = self._call("GET", "/pods/json", "list pods", params={"filters": _MANAGED_FILTER}) or []
        active = {str(p.get("Name")) for p in pods if any(  # an app container running (not only the infra one)
            c.get("Status") == "running" and c.get("Id") != p.get("InfraId") for c in p.get("Containers") or ())}
        mine = {name: labels for name, labels in mine.items() if labels.get(L_EMPTY_DIR_OF) in active}
        if not mine:
            return []
        df = self._call("GET", "/system/df", "measure the emptyDir volumes (system df)", timeout=300) or {}
        sizes = {str(v.get("VolumeName")): v.get("Size") for v in df.get("Volumes") or [] if v.get("Links")}
        return [Usage(node=self.name, pod=str(labels.get(L_EMPTY_DIR_OF, "")), volume=str(labels.get(L_VOLUME, name)),
                      used=int(sizes[name]), limit=int(labels[L_SIZE_LIMIT]),
                      workload="/".join(str(labels.get(k, "")) for k in (L_KIND, L_NAMESPACE, L_NAME)))
                for name, labels in sorted(mine.items())
                if isinstance(sizes.get(name), int) and str(labels.get(L_SIZE_LIMIT, "")).isdigit()]

    def unpause_pod(self, name: str) -> None:
        """Unpause every paused container of the pod (drift: `podman pause` by hand)."""
        self._call("POST", f"/pods/{name}/unpause", f"unpause pod {name}", timeout=60)

    def reconnect(self, infra: str, network: str, aliases: Iterable[str], leave: Iterable[str]) -> None:
        """Disconnect a pod's infra container from each network of `leave`, then connect it to `network`
        (if it left it or was not on it) with `aliases`: its containers keep running."""
        gone = set(leave)
        for net in sorted(gone):
            self._call("POST", f"/networks/{net}/disconnect", f"disconnect {infra[:12]} from network {net}",
                       body={"Container": infra, "Force": True}, ok404=True)
        self._call("POST", f"/networks/{network}/connect", f"connect {infra[:12]} to network {network}",
                   body={"container": infra, "aliases": sorted(aliases)})

    def remove_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{name}", f"remove secret {name}", ok404=True)

    def remove_volume(self, name: str) -> None:
        self._call("DELETE", f"/volumes/{name}", f"remove volume {name}", ok404=True)

    def remove_network(self, name: str) -> None:
        self._call("DELETE", f"/networks/{name}", f"remove network {name}", ok404=True)

    # --- reading for the CLI (describe, logs, doctor) ---------------------------------------

    def info(self) -> dict[str, Any]:
        """Podman's /info (version, host cgroups, OCI runtime, network backend), with the
        node's clock as `serverTime` (unix seconds, from the HTTP Date header)."""
        resp = self._get("/info", "read Podman info", timeout=15)
        out: dict[str, Any] = resp.json()
        date = resp.headers.get("Date")
        out["serverTime"] = email.utils.parsedate_to_datetime(date).timestamp() if date else None
        return out

    def inspect_container(self, container: str) -> dict[str, Any] | None:
        """One container's inspect data (RestartCount, State.StartedAt, ...); None when it is gone."""
        out: dict[str, Any] | None = self._call("GET", f"/containers/{container}/json", f"inspect {container}",
                                                ok404=True)
        return out

    def logs(self, container: str, *, tail: int | None = None, since: float | None = None, until: float | None = None,
             follow: bool = False) -> Generator[str, None, None]:
        """A container's log lines (stdout and stderr, in order). With `follow` the iterator
        ends when the container stops; NodeUnreachable when the node goes away meanwhile."""
        params: dict[str, Any] = {"stdout": "true", "stderr": "true", "follow": "true" if follow else "false"}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = str(int(since))
        if until is not None:
            params["until"] = str(int(until))
        resp = self._get(f"/containers/{container}/logs", f"logs of {container}", params=params, stream=True,
                         timeout=None if follow else 60)
        what = f"logs of {container}"
        try:
            yield from _log_lines(resp.raw)
        except (requests.exceptions.RequestException, OSError, urllib3.exceptions.HTTPError) as e:
            raise NodeUnreachable(self.name, f"Podman at {self.url} stopped answering ({what})") from e
        finally:
            resp.close()

    def trial_run(self, name: str, image: str) -> str:
        """`doctor`: create and start a throwaway container `name` (not labelled managed, so the
        agent never plans over it), then remove it. "" when it started, else Podman's error."""
        try:
            self._call("POST", "/containers/create", f"create container {name}",
                       body={"name": name, "image": image, "command": ["true"], "labels": _DOCTOR})
            self._call("POST", f"/containers/{name}/start", f"start container {name}", timeout=60)
            return ""
        except NodeUnreachable:
            raise
        except NodeError as e:
            return str(e)
        finally:
            self._call("DELETE", f"/containers/{name}", f"remove container {name}", params={"force": "true"},
                       ok404=True)

    def trial_network(self, name: str) -> dict[str, Any]:
        """`doctor`: create a DNS-enabled network `name` as a Namespace gets one, return its
        inspect data (dns_enabled, network_interface), then remove it."""
        try:
            self._call("POST", "/networks/create", f"create network {name}",
                       body={"name": name, "dns_enabled": True, "labels": _DOCTOR})
            out: dict[str, Any] = self._call("GET", f"/networks/{name}/json", f"inspect network {name}") or {}
            return out
        finally:
            self._call("DELETE", f"/networks/{name}", f"remove network {name}", ok404=True)

    def images(self) -> list[str]:
        """The tagged names of the node's local images."""
        images = self._call("GET", "/images/json", "list images") or []
        return sorted(n for img in images for n in img.get("Names") or [])

    def _get(self, path: str, what: str, *, params: Mapping[str, Any] | None = None, stream: bool = False,
             timeout: float | None = None, ok404: bool = False) -> Any:
        """A GET whose response (headers, a stream) the caller reads itself; errors as in `_call` (None for an
        allowed 404)."""
        with self._count:
            self.reads += 1
        if self.tunnel is not None:
            self.tunnel.ensure()
        try:
            resp = self._client.api.get(path, params=params, timeout=timeout, stream=stream)
        except (requests.exceptions.RequestException, podman.errors.PodmanError) as e:
            if _unreachable(e):
                raise NodeUnreachable(self.name, self._unreachable(what)) from e
            raise NodeError(self.name, f"{what}: {e}") from e
        if resp.status_code == 404 and ok404:
            resp.close()
            return None
        if resp.status_code >= 400:
            raise NodeError(self.name, f"{what}: {_explain(resp)}")
        return resp


class EventStream:
    """An open Podman event stream: iterate for event dicts (Type, Action, Actor.Attributes ...);
    NodeUnreachable when it breaks (the service stopped, the connection dropped). `close` from any
    thread ends the iteration."""

    def __init__(self, node: str, resp: Any) -> None:
        self._node = node
        self._resp = resp
        self.closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in self._resp.iter_lines():
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    yield event
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError, AttributeError) as e:
            if self.closed:  # AttributeError: urllib3 reading from a response closed by another thread
                return
            raise NodeUnreachable(self._node, f"the event stream of node {self._node} broke: {e}") from e
        if not self.closed:
            raise NodeUnreachable(self._node, f"the event stream of node {self._node} ended")

    def close(self) -> None:
        self.closed = True
        try:
            _shutdown(self._resp.raw)
            self._resp.close()
        except (OSError, AttributeError, urllib3.exceptions.HTTPError):
            pass


def _shutdown(raw: Any) -> None:
    """Shut the socket under a streamed response, so that a read blocked on it in another thread returns
    (closing the response alone does not wake it). podman-py's unix-socket connections do not give urllib3
    the hook its own `shutdown` needs: the socket is then taken from the connection."""
    try:
        raw.shutdown()
        return
    except (AttributeError, ValueError, RuntimeError):
        pass
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _log_lines(raw: Any) -> Iterator[str]:
    """Lines of Podman's multiplexed log stream (8-byte frame headers), read as they arrive."""
    buf = b""
    while True:
        head = raw.read(8)
        if len(head) < 8:
            break
        size = int.from_bytes(head[4:8], "big")
        payload = raw.read(size) if size else b""
        buf += payload
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buf:
        yield buf.decode("utf-8", "replace")


def _live_pod(p: Mapping[str, Any], containers: list[LiveContainer],
              infra: tuple[LiveContainer, Any] | None) -> LivePod:
    """One listed pod with its app containers, its infra container and the ports it publishes."""
    ports = None
    if infra is not None:
        ports = frozenset((int(m.get("host_port") or 0), int(m.get("container_port") or 0),
                           str(m.get("protocol") or "")) for m in infra[1] or [])
    return LivePod(name=p["Name"], id=p.get("Id", ""), status=p.get("Status", ""), labels=p.get("Labels") or {},
                   containers=tuple(sorted(containers, key=lambda c: c.name)),
                   infra=infra[0] if infra is not None else None, ports=ports)


def unix_time(text: Any) -> float:
    """Podman's RFC 3339 time (nanoseconds, `Z` or an offset) as unix seconds; 0.0 when absent or unreadable."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", str(text or ""))
    if not m:
        return 0.0
    zone = m.group(3) or "Z"
    when = datetime.datetime.fromisoformat(m.group(1) + ("+00:00" if zone == "Z" else zone))
    return when.timestamp() + float("0." + (m.group(2) or "0"))


def container_props(info: Mapping[str, Any]) -> ContainerProps:
    """PURE. A container's inspect → what `plan` compares (environment values as digests only)."""
    cfg, host = info.get("Config") or {}, info.get("HostConfig") or {}
    entry = cfg.get("Entrypoint") or ""
    env = dict(str(e).partition("=")[::2] for e in cfg.get("Env") or [])
    nets = (info.get("NetworkSettings") or {}).get("Networks") or {}
    short = str(info.get("Id") or "")[:12]
    return ContainerProps(
        created=unix_time(info.get("Created")), image_id=str(info.get("Image") or ""),
        image_name=str(info.get("ImageName") or ""),
        entrypoint=" ".join(entry) if isinstance(entry, list) else str(entry),
        command=tuple(str(a) for a in cfg.get("Cmd") or ()),
        env={k: env_digest(v) for k, v in env.items()},
        labels=dict(cfg.get("Labels") or {}),
        restart_policy=str((host.get("RestartPolicy") or {}).get("Name") or ""),
        memory=int(host.get("Memory") or 0), memory_reservation=int(host.get("MemoryReservation") or 0),
        cpu_quota=int(host.get("CpuQuota") or 0), cpu_shares=int(host.get("CpuShares") or 0),
        privileged=bool(host.get("Privileged")), read_only_root_fs=bool(host.get("ReadonlyRootfs")),
        caps=frozenset(info.get("EffectiveCaps") or ()), user=str(cfg.get("User") or ""),
        no_new_privileges="no-new-privileges" in " ".join(host.get("SecurityOpt") or ()),
        **_profiles(host.get("SecurityOpt") or ()),
        groups=tuple(str(g) for g in host.get("GroupAdd") or ()),
        volumes={str(m.get("Destination")): str(m.get("Name")) for m in info.get("Mounts") or []
                 if m.get("Type") == "volume"},
        sub_path_binds={str(m.get("Destination")): found for m in info.get("Mounts") or []
                        if m.get("Type") == "bind" and (found := volume_bind(str(m.get("Source") or "")))},
        image_mounts={str(m.get("Destination")): str(m.get("Source")) for m in info.get("Mounts") or []
                      if m.get("Type") == "image"},
        secrets={str(s.get("Name")): str(s.get("ID")) for s in cfg.get("Secrets") or []},
        networks={name: frozenset(a for a in n.get("Aliases") or () if a != short) for name, n in nets.items()},
    )


def _profiles(security_opt: Iterable[str]) -> dict[str, str]:
    """The seccomp and AppArmor profiles of inspect's HostConfig.SecurityOpt (`seccomp=<file>`, `apparmor=<name>`;
    absent for Podman's defaults, measured with Podman 4.3)."""
    found = dict(str(opt).partition("=")[::2] for opt in security_opt if "=" in str(opt))
    return {"seccomp": found.get("seccomp", ""), "apparmor": found.get("apparmor", "")}


def _pod_body(spec: PodSpec, dns_servers: list[str] | None = None) -> dict[str, Any]:
    """libpod's pod spec. A hostNetwork pod joins the node's network namespace: no network,
    DNS aliases or port mappings (its ports are the node's), and the node's hostname. `dns_servers`: the pod's
    nameservers (`Node._dns_servers`), with its `PodDNS` searches and options."""
    body: dict[str, Any] = {"name": spec.name, "labels": dict(spec.labels)}
    if spec.host_network:
        body["netns"] = {"nsmode": "host"}
    else:
        body["hostname"] = spec.name[:63]
        # a pod with a readinessProbe behind a Service gets its Service names once ready (endpoints.serve)
        body["networks"] = {spec.network: {"aliases": list(creation_aliases(spec))}}
        body["portmappings"] = [
            {"host_port": p.host_port, "container_port": p.container_port, "protocol": p.protocol} for p in spec.ports
        ]
    if spec.dns is not None:
        body.update({key: list(value) for key, value in (("dns_server", dns_servers or ()),
                                                          ("dns_search", spec.dns.searches),
                                                          ("dns_option", spec.dns.options)) if value})
    body.update(_pod_level_fields(spec))
    return body


# Podman's default namespaces of a pod (`--share`), and the size of a pod's own user namespace (as the kubelet's)
_SHARED = ["ipc", "net", "uts"]
_USERNS_IDS = 65536


def _pod_level_fields(spec: PodSpec) -> dict[str, Any]:
    """The pod's cgroup limits, its /etc/hosts entries, a shared PID namespace and a user namespace of its own
    (those that are set). `idmappings` as `podman pod create --userns=auto:size=N` sends it: `userns` alone
    leaves the infra container in the node's user namespace (measured on 4.3)."""
    body: dict[str, Any] = {}
    limits = _cgroup_limits(spec.cpu_millis, spec.cpu_shares, spec.memory_bytes, spec.memory_reservation)
    if spec.pids_limit:
        limits["pids"] = {"limit": spec.pids_limit}
    if limits:
        body["resource_limits"] = limits
    if spec.hosts:
        body["hostadd"] = list(spec.hosts)
    if spec.share_pid:
        body["shared_namespaces"] = [*_SHARED, "pid"]
    if spec.own_userns:
        body["userns"] = {"nsmode": "auto"}
        body["idmappings"] = {"AutoUserNs": True, "AutoUserNsOpts": {"Size": _USERNS_IDS}}
    return body


# tmpfs counts its size in pages (`nr_blocks`): Podman 4.3 refuses a volume's `size=` option without project quotas
_PAGE = 4096


def _empty_dir_body(pod: PodSpec, d: EmptyDirSpec) -> dict[str, Any]:
    """A local volume for an emptyDir, labelled with its pod (removed with it); medium Memory: a tmpfs."""
    own = {k: v for k, v in pod.labels.items() if k not in (L_SIZE_LIMIT, L_VOLUME)}  # the agent's, never a user's
    body: dict[str, Any] = {"Name": d.name, "Label": {**own, L_EMPTY_DIR_OF: pod.name}}
    if d.medium != "Memory" and d.size_limit:  # measured by `eviction`: the pod is evicted past it
        body["Label"].update({L_SIZE_LIMIT: str(d.size_limit), L_VOLUME: d.name.rpartition(f"{SEP}emptydir{SEP}")[2]})
    if d.medium == "Memory":
        mode = 0o1777 if d.mode is None else d.mode
        opts = [f"mode={mode:o}"] + ([f"nr_blocks={-(-d.size_limit // _PAGE)}"] if d.size_limit else [])
        body["Options"] = {"type": "tmpfs", "device": "tmpfs", "o": ",".join(opts)}
    return body


def _container_body(pod: PodSpec, c: ContainerSpec, pod_ip: str = "",
                    sources: Mapping[tuple[str, str], BindSource] | None = None) -> dict[str, Any]:
    """libpod's container spec for container `c` of pod `pod`, whose address is `pod_ip` (env status.podIP);
    `sources`: where each (volume, subPath) it mounts is on the node (`Node._sub_path_sources`)."""
    body: dict[str, Any] = {
        "name": c.name,
        "pod": pod.name,
        "image": c.image,
        "labels": dict(c.labels),
        "env": {**c.env, **{var: pod_ip for var in c.pod_ip_env}},
        "restart_policy": container_restart_policy(pod, c),
        "stop_timeout": pod.stop_timeout,
    }
    if c.labels.get(L_INIT) == "true":  # run to completion each time the pod starts, before the app containers
        body["init_container_type"] = "always"
        del body["restart_policy"]
    body.update(_process_fields(c))
    body.update(_mount_fields(c, sources or {}))
    body.update(_security_fields(c))
    body.update(_profile_fields(c))
    limits = _resource_limits(c)
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


def _process_fields(c: ContainerSpec) -> dict[str, Any]:
    """The spec's entrypoint, command, working directory, Secret-backed environment, stdin and terminal (those that
    are set)."""
    body: dict[str, Any] = {}
    if c.entrypoint:
        body["entrypoint"] = list(c.entrypoint)
    if c.command:
        body["command"] = list(c.command)
    if c.working_dir:
        body["work_dir"] = c.working_dir
    if c.stdin:
        body["stdin"] = True
    if c.tty:
        body["terminal"] = True
    if c.secret_env:
        body["secret_env"] = dict(c.secret_env)
    return body


# cgroupOptions.mountMode ReadWrite: the OCI cgroup mount Podman makes, read-write (as it makes it for a privileged
# container); runc mounts the container's own cgroups there (cgroup v2: its namespace; v1: each controller's).
_WRITABLE_CGROUPS = {"destination": "/sys/fs/cgroup", "source": "cgroup", "type": "cgroup",
                     "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "rw"]}


def _mount_fields(c: ContainerSpec, sources: Mapping[tuple[str, str], BindSource]) -> dict[str, Any]:
    """The spec's Secret files, named volumes, host paths and subPaths of named volumes (bind mounts of their
    directory on the node, `sources`), those that are set."""
    body: dict[str, Any] = {}
    if c.secret_mounts:
        body["secrets"] = [{"Source": m.secret, "Target": m.target, "Mode": m.mode} for m in c.secret_mounts]
    if any(not v.sub_path for v in c.volumes):
        body["volumes"] = [
            {"Name": v.volume, "Dest": v.target, "Options": ["ro" if v.read_only else "rw"]}
            for v in c.volumes if not v.sub_path
        ]
    # hostPath: a missing source fails the create ("statfs ...: no such file or directory")
    binds = [(m.source, m.target, m.read_only) for m in c.host_mounts]
    binds += [(sources[(v.volume, v.sub_path)].path, v.target, v.read_only) for v in c.volumes if v.sub_path]
    if binds:
        body["mounts"] = [{"destination": target, "source": source, "type": "bind",
                           "options": ["rbind", "ro" if read_only else "rw"]} for source, target, read_only in binds]
    if c.cgroup_writable:  # replaces Podman's own read-only cgroup mount (the container's cgroups, not the host's)
        body.setdefault("mounts", []).append(_WRITABLE_CGROUPS)
    if c.image_mounts:  # image volumes: read-only, as Kubernetes mounts them
        body["image_volumes"] = [{"source": m.source, "destination": m.target, "rw": False} for m in c.image_mounts]
    return body


def _security_fields(c: ContainerSpec) -> dict[str, Any]:
    """The spec's privileges, capabilities, user, groups and host namespaces (those that are set)."""
    body: dict[str, Any] = {}
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
    if c.groups:
        body["groups"] = list(c.groups)
    # Podman 4.3 applies a pod's pidns/ipcns to its infra container only: each container asks for the host's.
    for wanted, key in ((c.host_pid, "pidns"), (c.host_ipc, "ipcns"), (c.host_uts, "utsns")):
        if wanted:
            body[key] = {"nsmode": "host"}
    return body


# Where Podman's CLI records a container's profiles, shown by inspect as HostConfig.SecurityOpt (seccomp=...,
# apparmor=...): a container made through the API without them shows neither (measured with Podman 4.3).
_PROFILE_ANNOTATIONS = {"seccomp": "io.podman.annotations.seccomp", "apparmor": "io.podman.annotations.apparmor"}


def _profile_fields(c: ContainerSpec) -> dict[str, Any]:
    """The spec's seccomp and AppArmor profiles (those that are not Podman's default), recorded as the CLI records
    them, so that `plan.container_drift` can read them back."""
    body: dict[str, Any] = {}
    if c.seccomp:
        body["seccomp_profile_path"] = c.seccomp
    if c.apparmor:
        body["apparmor_profile"] = c.apparmor
    notes = {_PROFILE_ANNOTATIONS[key]: value for key, value in (("seccomp", c.seccomp), ("apparmor", c.apparmor))
             if value}
    if notes:
        body["annotations"] = notes
    return body


def _resource_limits(c: ContainerSpec) -> dict[str, Any]:
    """The spec's resource_limits: CPU quota and shares, memory limit and reservation ({} for none)."""
    return _cgroup_limits(c.cpu_millis, c.cpu_shares, c.memory_bytes, c.memory_reservation)


def _cgroup_limits(cpu_millis: int | None, cpu_shares: int | None, memory: int | None,
                   reservation: int | None) -> dict[str, Any]:
    """libpod's resource_limits of a container or a pod: CPU quota and shares, memory limit and reservation."""
    limits: dict[str, Any] = {}
    if cpu_millis:
        limits["cpu"] = {"quota": cpu_millis * 100, "period": 100_000}
    if cpu_shares:
        limits.setdefault("cpu", {})["shares"] = cpu_shares
    if memory:
        limits["memory"] = {"limit": memory}
    if reservation:
        limits.setdefault("memory", {})["reservation"] = reservation
    return limits


def _driver_options(secret: Mapping[str, Any]) -> Mapping[str, Any]:
    driver = (secret.get("Spec") or {}).get("Driver") or {}
    return driver.get("Options") or {}


# What a registry says when an image is gone or access is refused: the same pull would fail again.
_REFUSED = ("unauthorized", "authentication required", "denied", "incorrect username or password",
            "invalid username/password")
_MISSING = ("manifest unknown", "name unknown", "not found", "no such image", "repository does not exist",
            "certificate signed by unknown authority", "x509:", "invalid reference format")


def _pull_error(node: str, image: str, credential: Credential | None, reason: str) -> NodeError:
    """The registry's reason, classified by what happens next; names the registry and where the
    credential came from, never the credential (the reason is the registry's text, which holds none)."""
    registry = image_registry(image)
    low = reason.lower()
    if any(m in low for m in _REFUSED):
        who = (f"the credentials of {credential.source}" if credential else
               "an anonymous pull (no imagePullSecrets or node authFile entry for it)")
        return ImageUnavailable(node, f"pull {image}: registry {registry} refused {who}: {reason.strip()}", image)
    if any(m in low for m in _MISSING):
        return ImageUnavailable(node, f"pull {image}: registry {registry}: {reason.strip()}", image)
    return ImagePullBackOff(node, f"pull {image}: registry {registry} not available, will retry: {reason.strip()}",
                            image)


_QUOTED_MANIFEST = re.compile(r'parsing manifest blob "((?:[^"\\]|\\.)*)"')


def manifest_size(found: Any) -> int | None:
    """Sum of config and layer sizes of a single-image manifest: a dict, or Podman's error text quoting it."""
    if isinstance(found, str):
        m = _QUOTED_MANIFEST.search(found)
        if not m:
            return None
        try:
            found = json.loads(json.loads(f'"{m.group(1)}"'))
        except ValueError:
            return None
    if not isinstance(found, dict) or not isinstance(found.get("layers"), list):
        return None
    parts = [found.get("config") or {}, *found["layers"]]
    sizes = [p.get("size") for p in parts if isinstance(p, dict)]
    return sum(s for s in sizes if isinstance(s, int)) if sizes else None


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


def _decoded(resp: APIResponse, as_bytes: bool) -> Any:
    """A successful answer's body: its bytes (`as_bytes`), None when empty, its JSON, or else its text."""
    if as_bytes:
        return resp.content
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _explain(resp: Any) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("cause") or resp.text).strip()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text.strip()[:300]}"


def _read_timed_out(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        timed_out = isinstance(seen, (requests.exceptions.ReadTimeout, TimeoutError))
        if timed_out or type(seen).__name__ == "ReadTimeoutError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unreachable(error: BaseException) -> bool:
    """True when the error chain holds a failed connection or a timeout."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                             ConnectionError, FileNotFoundError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
