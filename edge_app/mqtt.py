"""The edge app's MQTT transport: one small interface, two implementations chosen by config.

- ``greengrass``: Greengrass IPC (``GreengrassCoreIPCClientV2``: ``publish_to_iot_core`` /
  ``subscribe_to_iot_core``) through the nucleus's own IoT Core connection; only usable inside a
  Greengrass component (the recipe's ``accessControl`` grants the topics).
- ``mtls``: an awsiotsdk MQTT5 client with the device certificate (mutual TLS) to IoT Core or
  the local mosquitto; client id = the thing name. It connects and reconnects in the background
  (never blocks start-up) and re-subscribes after every reconnect.

Created once at start, never per record. :meth:`Transport.publish` with ``timeout=None`` is
fire-and-forget (never blocks the caller); with a timeout it waits for the broker's PUBACK (QoS 1)
and raises :class:`PublishFailed` if none came. Subscription callbacks get ``(topic, payload
bytes)`` on the client's own thread: keep them short.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from model_contract.topics import topic_matches, validate_filter

log = logging.getLogger("edge_app.mqtt")

Callback = Callable[[str, bytes], None]  # (topic, payload)


class PublishFailed(RuntimeError):
    """The broker did not acknowledge a publish in time (offline, refused, or not authorised)."""


class Transport(Protocol):
    def publish(self, topic: str, payload: bytes | str, timeout: float | None = None) -> None: ...

    def subscribe(self, topic: str, callback: Callback) -> None: ...

    def close(self) -> None: ...


def _bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def _log_failure(future: Future, topic: str) -> None:
    if future.exception() is not None:
        log.warning("publish to %s failed: %s", topic, future.exception())


def _safe(callback: Callback, topic: str, payload: bytes) -> None:
    try:
        callback(topic, payload)
    except Exception:  # a subscriber's bug must not kill the client's thread
        log.exception("MQTT subscriber for %s failed", topic)


class GreengrassTransport:
    """Greengrass IPC to IoT Core (QoS 1). ``ipc`` may be given (tests); else the V2 client is made here."""

    def __init__(self, ipc: Any = None) -> None:
        if ipc is None:
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2  # noqa: PLC0415 (Greengrass only)

            ipc = GreengrassCoreIPCClientV2()
        self._ipc = ipc
        self._operations: list[Any] = []

    def publish(self, topic: str, payload: bytes | str, timeout: float | None = None) -> None:
        future = self._ipc.publish_to_iot_core_async(topic_name=topic, qos="1", payload=_bytes(payload))
        if timeout is None:
            future.add_done_callback(lambda f: _log_failure(f, topic))
            return
        try:
            future.result(timeout)
        except FutureTimeout:
            raise PublishFailed(f"no acknowledgement for {topic} within {timeout:.0f}s") from None
        except Exception as exc:
            raise PublishFailed(f"publish to {topic} failed: {exc}") from exc

    def subscribe(self, topic: str, callback: Callback) -> None:
        def on_event(event: Any) -> None:
            try:
                message = event.message
                received, payload = message.topic_name, _bytes(message.payload or b"")
            except (AttributeError, TypeError) as exc:
                log.warning("malformed IPC message on %s ignored: %s", topic, exc)
                return
            _safe(callback, received, payload)

        def on_error(exc: Exception) -> bool:
            log.warning("IPC subscription %s error: %s", topic, exc)
            return False  # keep the stream open

        _, operation = self._ipc.subscribe_to_iot_core(
            topic_name=topic, qos="1", on_stream_event=on_event, on_stream_error=on_error
        )
        self._operations.append(operation)

    def close(self) -> None:
        for operation in self._operations:
            try:
                operation.close()
            except Exception as exc:
                log.debug("closing an IPC subscription: %s", exc)
        self._operations.clear()
        try:
            self._ipc.close()
        except Exception as exc:
            log.debug("closing the IPC client: %s", exc)


class MtlsTransport:
    """An MQTT5 client with a device certificate (mutual TLS). ``flow_control=False`` lifts the
    client-side IoT Core throttling (~60 msg/s) for a local broker."""

    def __init__(
        self,
        *,
        endpoint: str,
        port: int,
        cert: str,
        key: str,
        ca: str,
        client_id: str,
        flow_control: bool = True,
    ) -> None:
        from awscrt import mqtt5  # noqa: PLC0415 (only the mtls transport needs it)
        from awsiot import mqtt5_client_builder  # noqa: PLC0415

        self._mqtt5 = mqtt5
        self._subs: dict[str, Callback] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._subscribed: dict[str, threading.Event] = {}
        kwargs: dict[str, Any] = {}
        if not flow_control:
            kwargs["extended_validation_and_flow_control_options"] = mqtt5.ExtendedValidationAndFlowControlOptions.NONE
        self._client = mqtt5_client_builder.mtls_from_path(
            endpoint=endpoint,
            port=port,
            cert_filepath=cert,
            pri_key_filepath=key,
            ca_filepath=ca or None,
            client_id=client_id,
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_QOS0_PUBLISH_ON_DISCONNECT,
            min_reconnect_delay_ms=500,
            max_reconnect_delay_ms=60_000,
            on_publish_received=self._on_publish,
            on_lifecycle_connection_success=self._on_connected,
            on_lifecycle_connection_failure=self._on_failure,
            on_lifecycle_disconnection=self._on_disconnected,
            **kwargs,
        )
        self.endpoint = f"{endpoint}:{port}"
        self._client.start()  # connects (and reconnects) in the background

    # ---- client callbacks (the CRT's thread) -----------------------------------------------
    def _on_connected(self, data: Any) -> None:
        log.info("MQTT connected to %s", self.endpoint)
        self.connected.set()
        with self._lock:
            topics = list(self._subs)
        for topic in topics:  # a clean session forgets subscriptions: make them again
            self._send_subscribe(topic)

    def _on_failure(self, data: Any) -> None:
        log.warning("MQTT connection to %s failed: %s", self.endpoint, getattr(data, "exception", data))

    def _on_disconnected(self, data: Any) -> None:
        self.connected.clear()
        with self._lock:
            for event in self._subscribed.values():
                event.clear()
        log.warning("MQTT disconnected from %s: %s", self.endpoint, getattr(data, "exception", data))

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, callback in subs:
            if topic_matches(topic_filter, packet.topic):
                _safe(callback, packet.topic, bytes(packet.payload or b""))

    def _send_subscribe(self, topic: str) -> None:
        mqtt5 = self._mqtt5
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)]
        )
        future = self._client.subscribe(packet)

        def done(f: Future) -> None:
            exc = f.exception()
            codes = getattr(f.result(), "reason_codes", []) if exc is None else []
            if exc is not None or any(int(c) >= 0x80 for c in codes):
                log.warning("MQTT subscribe %s failed: %s", topic, exc or codes)
                return
            self._subscribed.setdefault(topic, threading.Event()).set()

        future.add_done_callback(done)

    # ---- the interface ------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | str, timeout: float | None = None) -> None:
        mqtt5 = self._mqtt5
        packet = mqtt5.PublishPacket(topic=topic, payload=_bytes(payload), qos=mqtt5.QoS.AT_LEAST_ONCE)
        future = self._client.publish(packet)
        if timeout is None:
            return
        try:
            result = future.result(timeout)
        except FutureTimeout:
            raise PublishFailed(f"no PUBACK for {topic} within {timeout:.0f}s (offline?)") from None
        except Exception as exc:
            raise PublishFailed(f"publish to {topic} failed: {exc}") from exc
        puback = getattr(result, "puback", None)
        code = getattr(puback, "reason_code", 0)
        if puback is not None and int(code) >= 0x80:
            raise PublishFailed(f"publish to {topic} refused: {code!r}")

    def subscribe(self, topic: str, callback: Callback) -> None:
        validate_filter(topic)  # a bad filter fails here, not in every message callback
        with self._lock:
            self._subs[topic] = callback
            self._subscribed.setdefault(topic, threading.Event())
        if self.connected.is_set():
            self._send_subscribe(topic)

    def wait_subscribed(self, topic: str, timeout: float = 10.0) -> bool:
        """True once the broker acknowledged the subscription (tests; never needed in the app)."""
        with self._lock:
            event = self._subscribed.setdefault(topic, threading.Event())
        return event.wait(timeout)

    def close(self) -> None:
        try:
            self._client.stop()
        except Exception as exc:
            log.debug("stopping the MQTT client: %s", exc)


def make_transport(mqtt_config: Any, thing_name: str) -> Transport | None:
    """The transport the ``mqtt`` config section asks for (None when ``transport`` is empty)."""
    kind = mqtt_config.transport
    if not kind:
        return None
    if kind == "greengrass":
        return GreengrassTransport()
    if kind == "mtls":
        return MtlsTransport(
            endpoint=mqtt_config.endpoint,
            port=mqtt_config.port,
            cert=mqtt_config.cert,
            key=mqtt_config.key,
            ca=mqtt_config.ca,
            client_id=mqtt_config.client_id or thing_name,
            flow_control=mqtt_config.flow_control,
        )
    raise ValueError(f"unknown mqtt.transport {kind!r} (greengrass or mtls)")
