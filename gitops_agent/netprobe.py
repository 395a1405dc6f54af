"""httpGet and tcpSocket probes run by the agent from outside the container, as the kubelet does.

Sits between `probes` (the state machine, which calls `check`) and `dial` (which
opens the TCP stream to the pod on its node). HTTP is the standard library's
`http.client` over the dialed socket; nothing here parses HTTP by hand.

Kubernetes' rules (pkg/probe/http, pkg/probe/tcp):
- tcpSocket: success when the connection opens.
- httpGet: `GET scheme://host:port/path` with the probe's `httpHeaders` (a `Host`
  header replaces the Host; `User-Agent: kube-probe/gitops-agent` and
  `Accept: */*` unless given). HTTPS is not verified. Success is a status
  200-399. Redirects are followed to the same host name (any port or scheme),
  at most 10; a redirect to another host is not followed and counts as success,
  with a warning in the output ("probe terminated redirects"), as the kubelet does.
- The whole probe is bounded by `timeoutSeconds`.

Returns (exit code, output) in the in-container script's convention: 0 success,
1 failure, None timed out. Must not decide thresholds (that is `probes`).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from .dial import Dialer, DialError, DialTimeout
from .model import Probe

MAX_REDIRECTS = 10
_BODY_LIMIT = 10 * 1024  # the kubelet reads at most 10 KiB of a probe's body
USER_AGENT = "kube-probe/gitops-agent"


def check(dialer: Dialer, pod: str, probe: Probe) -> tuple[int | None, str]:
    """Run one httpGet or tcpSocket probe against pod `pod` through `dialer`."""
    timeout = float(probe.timeout_seconds)
    deadline = time.monotonic() + timeout
    try:
        if probe.action == "tcpSocket":
            host = probe.host or dialer.address(pod)
            dialer.dial(pod, host, probe.port, timeout).close()
            return 0, f"tcp {_netloc(host, probe.port)}: connection opened"
        if probe.action == "grpc":
            from . import grpc_probe  # h2: loaded by the first grpc probe only

            host = dialer.address(pod)
            sock = dialer.dial(pod, host, probe.port, timeout)
            try:
                code, output = grpc_probe.check(sock, probe.service, max(0.001, deadline - time.monotonic()))
            finally:
                sock.close()
            return code, f"grpc {_netloc(host, probe.port)}: {output}"
        return _http(dialer, pod, probe, deadline)
    except DialTimeout as e:
        return None, str(e)
    except DialError as e:
        return 1, str(e)


def _http(dialer: Dialer, pod: str, probe: Probe, deadline: float) -> tuple[int | None, str]:
    headers = {k: v for k, v in probe.headers}
    lower = {k.lower() for k in headers}
    if "user-agent" not in lower:
        headers["User-Agent"] = USER_AGENT
    if "accept" not in lower:
        headers["Accept"] = "*/*"
    first_host = probe.host or dialer.address(pod)  # "" is the pod itself: its IP
    scheme, host, port, target = probe.scheme.lower(), first_host, probe.port, probe.path or "/"
    shown = f"{scheme}://{_netloc(host, port)}{target}"
    for _ in range(MAX_REDIRECTS + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, f"GET {shown}: no answer within {probe.timeout_seconds}s"
        conn = _Connection(dialer, pod, host, port, scheme == "https", remaining)
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            status, location = resp.status, resp.getheader("Location")
            resp.read(_BODY_LIMIT)
        except DialError:
            raise
        except (socket.timeout, TimeoutError):
            return None, f"GET {shown}: no answer within {probe.timeout_seconds}s"
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            return 1, f"GET {shown}: {type(e).__name__}: {e}".rstrip(": ")
        finally:
            conn.close()
        if not 300 <= status < 400 or not location:
            ok = 200 <= status < 400
            return (0 if ok else 1), f"GET {shown}: HTTP {status}" + ("" if ok else " (success is 200-399)")
        url = urlsplit(urljoin(f"{scheme}://{_netloc(host, port)}{target}", location))
        new_host = url.hostname or ""
        if new_host != first_host.lower() or url.scheme not in ("http", "https"):
            return 0, (f"GET {shown}: HTTP {status}: probe terminated redirects (to {location}, another host): "
                       "counted as success")
        scheme, host = url.scheme, new_host
        port = url.port or (443 if scheme == "https" else 80)
        target = url.path or "/"
        if url.query:
            target += "?" + url.query
        shown = f"{scheme}://{_netloc(host, port)}{target}"
    return 1, f"GET {shown}: stopped after {MAX_REDIRECTS} redirects"


class _Connection(http.client.HTTPConnection):
    """http.client over a socket from a dialer (TLS without verification for HTTPS)."""

    def __init__(self, dialer: Dialer, pod: str, host: str, port: int, tls: bool, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._dialer, self._pod, self._target_host, self._tls = dialer, pod, host, tls

    def connect(self) -> None:
        sock = self._dialer.dial(self._pod, self._target_host, self.port, float(self.timeout or 1))
        if self._tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=None if _is_ip(self._target_host) else self._target_host)
        self.sock = sock


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
