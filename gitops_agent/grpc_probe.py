"""`grpc` probes: the standard gRPC health-checking protocol (grpc.health.v1.Health/Check), spoken over a
socket that is already connected to the container's port.

Sits beside `probes`: the caller (the per-node dialer that connects inside the pod's network namespace) hands
`check` a connected socket; `check` sends one unary Check call over HTTP/2 (h2, a pure-Python sans-I/O
library; this module is its only user) and returns a result in the probes' (exit code, output) form:
0 for SERVING, 1 for any other status or a gRPC error, None when no answer came within the timeout. It never
raises for what the server answers (an unhealthy result is a value) and never closes the socket it was given.

Why not grpcio: its channels make their own connections and take no connected socket, so a probe could not
run through a socket created in the pod's network namespace; it also brings a native core and threads of its
own into the agent. The protocol needed here is one HTTP/2 request with two protobuf fields.
"""

from __future__ import annotations

import socket
import time
from typing import Iterable, Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions

# grpc.health.v1.HealthCheckResponse.ServingStatus
STATUSES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
SERVING = 1
_PATH = "/grpc.health.v1.Health/Check"


class Connected(Protocol):
    """What `check` needs of a socket: a connected stream it may send on and read from."""

    def sendall(self, data: bytes, /) -> None: ...
    def recv(self, size: int, /) -> bytes: ...
    def settimeout(self, value: float | None, /) -> None: ...


def request_message(service: str) -> bytes:
    """A length-prefixed HealthCheckRequest: field 1 (service, a string), left out when empty."""
    raw = service.encode()
    body = b"\x0a" + _varint(len(raw)) + raw if raw else b""
    return b"\x00" + len(body).to_bytes(4, "big") + body


def response_status(message: bytes) -> int | None:
    """The status of a length-prefixed HealthCheckResponse (field 1, a varint; absent is UNKNOWN, 0); None if the
    bytes are not one uncompressed message."""
    if len(message) < 5 or message[0] != 0 or int.from_bytes(message[1:5], "big") != len(message) - 5:
        return None
    body, status, i = message[5:], 0, 0
    try:
        while i < len(body):
            key, i = _read_varint(body, i)
            wire = key & 7
            if wire == 0:
                value, i = _read_varint(body, i)
                if key >> 3 == 1:
                    status = value
            elif wire == 2:
                size, i = _read_varint(body, i)
                i += size
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                return None
    except IndexError:
        return None
    return status if i == len(body) else None


def check(
    sock: Connected, service: str = "", timeout: float = 1.0, authority: str = "localhost"
) -> tuple[int | None, str]:
    """One Health/Check call for `service` ("" is the whole server) on the connected `sock`."""
    deadline = time.monotonic() + timeout
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [
        (":method", "POST"), (":scheme", "http"), (":path", _PATH), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", f"{max(1, int(timeout * 1000))}m"),
    ])
    conn.send_data(stream, request_message(service), end_stream=True)
    body = b""
    trailers: dict[str, str] = {}
    try:
        sock.sendall(conn.data_to_send())
        ended = False
        while not ended:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, f"timed out after {timeout:g}s"
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                return 1, "the connection was closed before the answer ended"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    trailers.update(_headers(event.headers))  # a trailers-only answer carries grpc-status here
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    return 1, f"the server reset the call (HTTP/2 error {event.error_code})"
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return 1, f"the server closed the connection (HTTP/2 error {event.error_code})"
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    ended = True
            sock.sendall(conn.data_to_send())
    except socket.timeout:
        return None, f"timed out after {timeout:g}s"
    except (OSError, h2.exceptions.ProtocolError) as e:
        return 1, f"gRPC health check failed: {e}"
    return _verdict(trailers, body)


def _headers(headers: Iterable[tuple[bytes | str, bytes | str]]) -> dict[str, str]:
    """An event's headers as text: h2 gives str with header_encoding set (its hints say bytes)."""
    return {_text(name): _text(value) for name, value in headers}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _verdict(headers: dict[str, str], body: bytes) -> tuple[int, str]:
    code = headers.get("grpc-status", "")
    if code != "0":
        message = headers.get("grpc-message", "")
        if code == "12":
            return 1, "the server does not implement grpc.health.v1.Health (UNIMPLEMENTED)"
        return 1, f"gRPC status {code or 'missing'}" + (f": {message}" if message else "")
    status = response_status(body)
    if status is None:
        return 1, "the answer is not a HealthCheckResponse"
    name = STATUSES.get(status, str(status))
    return (0, name) if status == SERVING else (1, f"status {name}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        shift += 7
        if not byte & 0x80:
            return value, i
