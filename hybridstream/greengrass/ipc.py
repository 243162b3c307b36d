"""A minimal Greengrass IPC server: event-stream RPC over a Unix socket, as the nucleus serves it.

Enough for ``awsiot.greengrasscoreipc`` clients (V1 and V2) to connect with their ``SVCUID`` and
call ``PublishToIoTCore`` / ``SubscribeToIoTCore``; other operations get a ``ServiceError``.
Every call is checked against the calling component's ``aws.greengrass.ipc.mqttproxy``
authorization policies as the nucleus holds them (``AuthorizationHandler`` with
``ResourceLookupPolicy.MQTT_STYLE``: ``*`` globs, MQTT ``+`` / ``#``), so a policy whose
resources were never interpolated refuses exactly what a real core refuses.

"IoT Core" here is :class:`CloudStub`: it records every publish, hands it to an optional
``bridge`` (e.g. a local MQTT broker) and delivers messages injected with
:meth:`CloudStub.deliver` to the matching subscriptions.

Wire format (aws-c-event-stream): prelude (total length, headers length, CRC32), headers
(name, type, value), payload, CRC32 of everything before it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import socketserver
import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_contract.topics import topic_matches

log = logging.getLogger(__name__)

# message types and flags (awscrt.eventstream.rpc.MessageType / MessageFlag)
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK = 0, 1, 2, 3, 4, 5
CONNECTION_ACCEPTED, TERMINATE_STREAM = 1, 2
MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBLISH, SUBSCRIBE = "aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"

# -- event-stream codec ------------------------------------------------------------------------
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _INT16, _INT32, _INT64, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)


def encode(headers: Mapping[str, int | str | bool], payload: bytes = b"") -> bytes:
    """One event-stream message (ints as int32, str as string, bool as bool)."""
    raw = b""
    for name, value in headers.items():
        key = name.encode()
        raw += struct.pack("B", len(key)) + key
        if isinstance(value, bool):
            raw += struct.pack("B", _BOOL_TRUE if value else _BOOL_FALSE)
        elif isinstance(value, int):
            raw += struct.pack(">Bi", _INT32, value)
        else:
            data = str(value).encode()
            raw += struct.pack(">BH", _STRING, len(data)) + data
    total = 12 + len(raw) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw + payload
    return body + struct.pack(">I", zlib.crc32(body))


def decode_headers(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(raw):
        n = raw[i]
        name = raw[i + 1 : i + 1 + n].decode()
        i += 1 + n
        kind = raw[i]
        i += 1
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            value: Any = kind == _BOOL_TRUE
        elif kind == _BYTE:
            value, i = struct.unpack(">b", raw[i : i + 1])[0], i + 1
        elif kind == _INT16:
            value, i = struct.unpack(">h", raw[i : i + 2])[0], i + 2
        elif kind == _INT32:
            value, i = struct.unpack(">i", raw[i : i + 4])[0], i + 4
        elif kind in (_INT64, _TIMESTAMP):
            value, i = struct.unpack(">q", raw[i : i + 8])[0], i + 8
        elif kind in (_BYTES, _STRING):
            (length,) = struct.unpack(">H", raw[i : i + 2])
            value = raw[i + 2 : i + 2 + length]
            value = value.decode() if kind == _STRING else value
            i += 2 + length
        elif kind == _UUID:
            value, i = raw[i : i + 16], i + 16
        else:
            raise ValueError(f"unknown event-stream header type {kind}")
        out[name] = value
    return out


def read_message(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """Read one message; None at end of stream. Checks both CRCs."""
    prelude = _read_exact(sock, 12)
    if prelude is None:
        return None
    total, headers_len, prelude_crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != prelude_crc:
        raise ValueError("event-stream prelude CRC mismatch")
    rest = _read_exact(sock, total - 12)
    if rest is None:
        return None
    body, (crc,) = prelude + rest[:-4], struct.unpack(">I", rest[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError("event-stream message CRC mismatch")
    return decode_headers(rest[:headers_len]), rest[headers_len:-4]


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# -- authorization -------------------------------------------------------------------------------
def resource_matches(resource: str, topic: str) -> bool:
    """A policy resource against a topic (or topic filter), as MQTT_STYLE look-ups match it:
    ``*`` any characters, ``+`` one level, a trailing ``#`` any number of levels, else literal.

    >>> resource_matches("hybridstream/{iot:thingName}/*", "hybridstream/pi-1/windows")
    False
    >>> resource_matches("hybridstream/+/windows", "hybridstream/pi-1/windows")
    True
    >>> resource_matches("hybridstream/models/+/published", "hybridstream/models/speed-pi-1/published")
    True
    """
    if resource in ("*", "#"):
        return True
    pattern = ""
    levels = resource.split("/")
    for index, level in enumerate(levels):
        sep = "/" if index else ""
        if level == "+":
            pattern += sep + "[^/]+"
        elif level == "#" and index == len(levels) - 1:
            pattern += "(?:/.*)?" if index else ".*"
        else:
            pattern += sep + ".*".join(re.escape(part) for part in level.split("*"))
    return re.fullmatch(pattern, topic) is not None


def authorized(policies: Mapping[str, Any], operation: str, topic: str) -> bool:
    """Whether any of a component's ``accessControl`` policies for the MQTT proxy allows it."""
    for policy in (policies or {}).get(MQTT_PROXY, {}).values():
        ops = policy.get("operations", [])
        allowed = operation in ops or "*" in ops
        if allowed and any(resource_matches(r, topic) for r in policy.get("resources", [])):
            return True
    return False


# -- "IoT Core" ------------------------------------------------------------------------------------
@dataclass
class CloudStub:
    """IoT Core as the components see it through IPC: records publishes, delivers messages."""

    bridge: Callable[[str, bytes], None] | None = None
    published: list[tuple[str, str, bytes]] = field(default_factory=list)  # (component, topic, payload)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (component, operation, topic)
    _subscribers: list[tuple[str, Callable[[str, bytes], None]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, component: str, topic: str, payload: bytes) -> None:
        with self._lock:
            self.published.append((component, topic, payload))
        if self.bridge is not None:
            self.bridge(topic, payload)
        self.deliver(topic, payload)  # IoT Core sends it to every matching subscription, the sender's too

    def subscribe(self, topic_filter: str, callback: Callable[[str, bytes], None]) -> Callable[[], None]:
        entry = (topic_filter, callback)
        with self._lock:
            self._subscribers.append(entry)

        def cancel() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return cancel

    def subscriptions(self) -> list[str]:
        with self._lock:
            return [f for f, _ in self._subscribers]

    def deliver(self, topic: str, payload: bytes) -> int:
        """A message from the cloud to every matching subscription; returns how many got it."""
        with self._lock:
            targets = [cb for f, cb in self._subscribers if topic_matches(f, topic)]
        for callback in targets:
            callback(topic, payload)
        return len(targets)


# -- the server -----------------------------------------------------------------------------------
class _Handler(socketserver.BaseRequestHandler):
    server: IpcServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        send_lock = threading.Lock()
        component: str | None = None
        cancels: dict[int, Callable[[], None]] = {}

        def send(headers: dict[str, Any], payload: bytes = b"") -> None:
            with send_lock:
                sock.sendall(encode(headers, payload))

        def reply(stream: int, model: str, body: dict, *, error: bool = False, terminate: bool = True) -> None:
            send(
                {
                    ":message-type": APPLICATION_ERROR if error else APPLICATION_MESSAGE,
                    ":message-flags": TERMINATE_STREAM if terminate else 0,
                    ":stream-id": stream,
                    ":content-type": "application/json",
                    "service-model-type": model,
                },
                json.dumps(body).encode(),
            )

        try:
            while True:
                message = read_message(sock)
                if message is None:
                    return
                headers, payload = message
                kind, stream = headers.get(":message-type"), headers.get(":stream-id", 0)
                if kind == CONNECT:
                    token = json.loads(payload or b"{}").get("authToken", "")
                    component = self.server.tokens.get(token)
                    flags = CONNECTION_ACCEPTED if component else 0
                    send({":message-type": CONNECT_ACK, ":message-flags": flags, ":stream-id": 0})
                    if not component:
                        log.warning("IPC connection with an unknown SVCUID refused")
                        return
                elif kind == PING:
                    send({":message-type": PING_RESPONSE, ":message-flags": 0, ":stream-id": 0})
                elif kind == APPLICATION_MESSAGE and component:
                    if headers.get(":message-flags", 0) & TERMINATE_STREAM:
                        cancel = cancels.pop(stream, None)
                        if cancel:
                            cancel()
                        continue
                    self._operation(component, headers.get("operation", ""), stream, payload, reply, cancels)
        except (OSError, ValueError) as exc:
            log.debug("IPC connection closed: %s", exc)
        finally:
            for cancel in cancels.values():
                cancel()

    def _operation(self, component, operation, stream, payload, reply, cancels) -> None:
        request = json.loads(payload or b"{}")
        topic = request.get("topicName", "")
        if operation not in (PUBLISH, SUBSCRIBE):
            reply(stream, "aws.greengrass#ServiceError", {"message": f"{operation} is not emulated"}, error=True)
            return
        if not authorized(self.server.policies.get(component, {}), operation, topic):
            self.server.cloud.refused.append((component, operation, topic))
            log.info("IPC: %s is not authorized to %s on %s", component, operation, topic)
            message = f"Principal {component} is not authorized to perform {MQTT_PROXY}:{operation} on resource {topic}"
            reply(stream, "aws.greengrass#UnauthorizedError", {"message": message}, error=True)
            return
        if operation == PUBLISH:
            data = base64.b64decode(request.get("payload") or b"")
            self.server.cloud.publish(component, topic, data)
            reply(stream, "aws.greengrass#PublishToIoTCoreResponse", {})
            return

        def forward(received: str, data: bytes) -> None:
            body = {"message": {"topicName": received, "payload": base64.b64encode(data).decode()}}
            try:
                reply(stream, "aws.greengrass#IoTCoreMessage", body, terminate=False)
            except OSError:
                cancels.pop(stream, lambda: None)()

        reply(stream, "aws.greengrass#SubscribeToIoTCoreResponse", {}, terminate=False)
        cancels[stream] = self.server.cloud.subscribe(topic, forward)


class IpcServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The nucleus's IPC socket. ``register(component, policies)`` returns the SVCUID to hand
    to that component's processes (with the socket path) in their environment."""

    daemon_threads = True

    def __init__(self, path: Path, cloud: CloudStub | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        super().__init__(str(self.path), _Handler)
        self.cloud = cloud or CloudStub()
        self.tokens: dict[str, str] = {}
        self.policies: dict[str, Mapping[str, Any]] = {}
        self._thread: threading.Thread | None = None

    def register(self, component: str, access_control: Mapping[str, Any] | None) -> str:
        token = base64.b32encode(os.urandom(15)).decode()
        self.tokens[token] = component
        self.policies[component] = access_control or {}
        return token

    def start(self) -> IpcServer:
        self._thread = threading.Thread(target=self.serve_forever, name="gg-ipc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.path.unlink(missing_ok=True)
