"""``edge forward`` (mode=cloud): valid sensor readings from Kafka to the cloud over MQTT.

Consumes ``topics.readings`` with the same consumer settings and the same validation as
``edge run`` (:class:`edge_app.admission.Admission`: parsing, the range check, the device allowlist and
limit, per-device ordering); bad readings go to ``topics.deadletter`` with their reason, exactly
as the app writes them. Valid readings are grouped per device into messages on
``hybridstream/<thing>/readings``::

    {"timestamp": "<now, ISO-8601 UTC>", "device": "turbine-1", "context": 1,
     "readings": [{"device": "turbine-1", "Date_time": "...", "Db1t_avg": 40.5, ...}, ...]}

``readings`` is oldest first (consumption order); its first ``context`` rows were already sent
in an earlier message (the device's last ``max_lag - 1`` readings, so the cloud_inference
Lambda, which forecasts from the last ``max_lag`` rows of one message, can serve every
message). Each message is at most ``forward.max_bytes`` (compact JSON, as IoT Core counts it)
and ``forward.max_readings`` rows. That shape satisfies ``MESSAGE_SCHEMAS["readings"]``, the
ingest Lambda and the ``cloud_readings`` rule.

Delivery: what was gathered is published every ``forward.interval_s`` (or at once when a
device's message is full), each message with QoS 1 waiting for its PUBACK
(``mqtt.publish_timeout_s``); the Kafka offsets are committed only after every message covering
them (and every dead-letter record) was acknowledged: at-least-once. A replay after a crash
re-sends readings; each carries (device, timestamp), the cloud's idempotency key.

MQTT down: nothing is committed, the consumer is paused (memory stays bounded, the group
membership stays alive), unacknowledged messages are retried with backoff (0.5 s doubling to
``forward.retry_max_s``). SIGTERM: publish what is gathered (one attempt), commit if all of it
was acknowledged, exit. One consumer, one producer (dead letters), one MQTT client: nothing
is created per record.

Re-training windows: every forwarded (valid) reading is also appended to ``run``'s window spool
(:class:`edge_app.windows.WindowSpool` under ``<state_dir>/windows``, closed by
``windows.max_records`` / ``windows.max_seconds`` and at shutdown) and closed windows go to the
same upload thread (:class:`edge_app.uploaders.UploadWorker` with the ``windows.uploader``: in
``cloud`` mode S3 + the notice on ``hybridstream/<thing>/windows``). The spool is flushed before
every commit (at-least-once for windows too); windows left by a crash are re-queued at start.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from edge_app import kafka_io
from edge_app.admission import Admission, out_of_order
from edge_app.config import ConfigError, EdgeConfig
from edge_app.kafka_io import DeliveryFailed, Outputs
from edge_app.mqtt import PublishFailed, Transport, make_transport
from edge_app.records import encode_json
from edge_app.telemetry import ForwardCounters, Telemetry
from edge_app.uploaders import open_window_pipeline
from model_contract import FeatureSpec, Manifest
from model_contract.bad_record import BadRecord
from model_contract.topics import READINGS, device_topic

log = logging.getLogger("edge_app.forward")

_esc = encode_basestring_ascii
# fixed-length envelope timestamp (milliseconds, +00:00): the size budget counts it exactly
_TS_LEN = len(_esc(datetime(2026, 1, 1, tzinfo=UTC).isoformat(timespec="milliseconds")))
_ENVELOPE = len('{"timestamp":,"device":,"context":,"readings":[]}') + _TS_LEN


def forward_spec(cfg: EdgeConfig) -> tuple[FeatureSpec, Manifest | None]:
    """The feature spec that validates readings: ``forward.feature_spec``, else the batch model's
    manifest (its scaler also gives the ``out_of_range`` bounds), else model_contract's default."""
    if cfg.forward.feature_spec:
        return FeatureSpec.from_dict(cfg.forward.feature_spec), None
    if cfg.models.batch:
        from edge_app.models import fetch, sibling_manifest  # noqa: PLC0415

        location = cfg.models.batch_manifest or sibling_manifest(cfg.models.batch)
        try:
            manifest = Manifest.from_json(fetch(location))
        except Exception as exc:
            raise ConfigError(f"cannot read the batch manifest {location}: {exc}") from None
        return manifest.feature_spec, manifest
    return FeatureSpec(), None


class _Device:
    """Per device: readings gathered since the last message, the context rows, the ordering check."""

    __slots__ = ("name", "quoted", "rows", "size", "context", "last_epoch", "last_ts")

    def __init__(self, name: str, context: int) -> None:
        self.name = name
        self.quoted = _esc(name)
        self.rows: list[bytes] = []
        self.size = 0  # bytes of rows incl. separators
        self.context: collections.deque[bytes] = collections.deque(maxlen=context)
        self.last_epoch = float("-inf")
        self.last_ts = ""


class Forwarder:
    """Build with a config (and optionally a transport); :meth:`run` until ``stop`` is set."""

    def __init__(self, cfg: EdgeConfig, transport: Transport | None = None) -> None:
        if transport is None and not cfg.mqtt.transport:
            raise ConfigError("edge forward needs mqtt.transport (greengrass or mtls)")
        self.cfg = cfg
        self.stop = threading.Event()
        self.counters = ForwardCounters()
        self.spec, manifest = forward_spec(cfg)
        self.admission = Admission.from_config(cfg, self.spec, manifest)
        self.topic = device_topic(cfg.thing_name, READINGS)
        self._context = (self.spec.max_lag - 1) if cfg.forward.context else 0
        self.devices: dict[str, _Device] = {}
        self._outbox: collections.deque[tuple[bytes, int]] = collections.deque()  # (payload, new readings)
        self._consumed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset taken
        self._full = False
        self.consumer = kafka_io.open_consumer(cfg)
        self.outputs = Outputs(cfg, lambda: self.stop.is_set())  # dead letters and events
        self.telemetry = Telemetry(cfg, self.outputs, self.counters)
        self.mqtt = transport if transport is not None else make_transport(cfg.mqtt, cfg.thing_name)
        # re-training windows, exactly as `run` spools and uploads them
        self.uploads, self.spool = open_window_pipeline(
            cfg, Path(cfg.state_dir), self.spec, self.mqtt, self.event, self._window_closed
        )
        log.info(
            "forwarding %s to %s (spec %s, context %d)",
            cfg.topics.readings,
            self.topic,
            self.spec.to_dict(),
            self._context,
        )

    # ---- windows ------------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        """One record to ``topics.events`` (as ``run`` writes them; the upload thread calls this)."""
        self.telemetry.event(kind, **fields)

    def _window_closed(self, path: Path, meta: dict[str, Any]) -> None:
        self.counters.windows_closed += 1
        self.uploads.submit(path, meta)

    # ---- records ------------------------------------------------------------------------------
    def process(self, msgs: list) -> None:
        """Validate and gather one consumed batch (seals a device's message when it is full)."""
        spec, cfg, admission, dead = self.spec, self.cfg, self.admission, self.telemetry.dead
        max_epoch = time.time() + admission.max_ahead_s
        ts_col, dev_col, columns = spec.timestamp_column, spec.device_column, spec.columns
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL:  # a dead consumer: stop, be restarted
                    raise KafkaException(err)
                if err.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("consumer error: %s", err)
                continue
            self.counters.records_in += 1
            self._consumed[(msg.topic(), msg.partition())] = msg.offset()
            try:
                r = admission.parse(msg.value(), msg.key(), max_epoch)
                dev = self.devices.get(r.device)
                if dev is None:
                    admission.admit_device(r.device, len(self.devices))
                    dev = self.devices[r.device] = _Device(r.device, self._context)
                if r.epoch <= dev.last_epoch:
                    raise out_of_order(r, dev.last_epoch, dev.last_ts)
                row = {dev_col: r.device, ts_col: r.timestamp}
                row.update(zip(columns, r.values, strict=True))
                encoded = encode_json(row)
                if self._envelope(dev) + len(encoded) > cfg.forward.max_bytes:
                    raise BadRecord("oversized", f"one reading of {len(encoded)} bytes > forward.max_bytes")
            except BadRecord as exc:
                dead(msg, exc.reason, exc.detail)
                continue
            except Exception as exc:  # a bug or an input nobody thought of: this record only
                self.telemetry.internal_error(msg, exc)
                continue
            if dev.rows and (
                self._envelope(dev) + self._context_size(dev) + dev.size + len(encoded) + 1 > cfg.forward.max_bytes
                or len(dev.context) + len(dev.rows) + 1 > cfg.forward.max_readings
            ):
                self._seal(dev)
                self._full = True
            dev.last_epoch, dev.last_ts = r.epoch, r.timestamp
            dev.rows.append(encoded)
            dev.size += len(encoded) + 1
            self.spool.add(r)

    @staticmethod
    def _envelope(dev: _Device) -> int:
        return _ENVELOPE + len(dev.quoted) + 3  # + up to 3 digits of the context count

    @staticmethod
    def _context_size(dev: _Device) -> int:
        return sum(len(c) + 1 for c in dev.context)

    def _seal(self, dev: _Device) -> None:
        """The device's gathered readings (after its context rows) become one message in the outbox."""
        if not dev.rows:
            return
        limit_bytes, limit_rows = self.cfg.forward.max_bytes, self.cfg.forward.max_readings
        context = list(dev.context)
        while context and (
            self._envelope(dev) + sum(len(c) + 1 for c in context) + dev.size > limit_bytes
            or len(context) + len(dev.rows) > limit_rows
        ):
            context.pop(0)
        now = _esc(datetime.now(UTC).isoformat(timespec="milliseconds"))
        payload = b"".join(
            [
                f'{{"timestamp":{now},"device":{dev.quoted},"context":{len(context)},"readings":['.encode(),
                b",".join(context + dev.rows),
                b"]}",
            ]
        )
        self._outbox.append((payload, len(dev.rows)))
        dev.context.extend(dev.rows)
        dev.rows = []
        dev.size = 0

    # ---- delivery -----------------------------------------------------------------------------
    def _connected(self) -> bool:
        connected = getattr(self.mqtt, "connected", None)  # mtls: an Event; greengrass: the nucleus's
        return connected is None or connected.is_set()

    def _publish_outbox(self) -> bool:
        """Publish the outbox in order, each waiting for its PUBACK; False at the first failure."""
        timeout = self.cfg.mqtt.publish_timeout_s
        while self._outbox:
            if not self._connected():
                return False
            payload, count = self._outbox[0]
            try:
                self.mqtt.publish(self.topic, payload, timeout=timeout)
            except PublishFailed as exc:
                self.counters.publish_failures += 1
                log.warning("readings not acknowledged (%d messages waiting): %s", len(self._outbox), exc)
                return False
            self._outbox.popleft()
            self.counters.messages += 1
            self.counters.forwarded += count
        return True

    def flush(self, final: bool = False) -> bool:
        """Seal every device's readings, publish the outbox, and commit once all of it was acknowledged."""
        for dev in self.devices.values():
            self._seal(dev)
        self._full = False
        if not self._publish_outbox():
            return False
        return self._commit(final)

    def _commit(self, final: bool) -> bool:
        """Commit what was consumed once the dead letters are acknowledged too."""
        while not self.outputs.acknowledged(5 if not final else 10):
            log.warning("waiting for the broker to acknowledge dead letters (%d queued)", len(self.outputs.producer))
            if final or self.stop.is_set():
                return False
        self.outputs.check("dead letters or events")
        if not self._consumed:
            return True
        if not self.spool.flush():  # every reading about to be committed is in its window file, or no commit
            return False
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in self._consumed.items()]
        try:
            kafka_io.commit(self.consumer, offsets=offsets, asynchronous=not final)
        except KafkaException as exc:
            log.warning("commit failed (the readings since the last commit may be re-sent): %s", exc)
            return False
        self._consumed.clear()
        self.counters.commits += 1
        return True

    def run(self, max_seconds: float | None = None) -> dict[str, Any]:
        """Forward until :attr:`stop` is set (or ``max_seconds``); flush and commit at the end."""
        cfg = self.cfg
        self.consumer.subscribe([cfg.topics.readings])
        started = time.monotonic()
        next_flush = started + cfg.forward.interval_s
        next_log = started + cfg.log_interval_s
        backoff, next_try, paused = 0.0, 0.0, False
        normal_exit = False
        try:
            while not self.stop.is_set():
                if paused:  # keeps the group membership alive; a paused partition yields nothing
                    assignment = self.consumer.assignment()
                    if assignment:
                        self.consumer.pause(assignment)
                msgs = kafka_io.consume_available(self.consumer, cfg.kafka.batch_size, cfg.kafka.poll_timeout_s)
                if msgs:
                    self.process(msgs)
                now = time.monotonic()
                self.spool.tick(now)
                if (self._full or now >= next_flush) and now >= next_try:
                    if self.flush():
                        if paused:
                            self.consumer.resume(self.consumer.assignment())
                            paused = False
                            log.info("MQTT delivery resumed")
                        backoff = 0.0
                    else:
                        backoff = min(max(0.5, backoff * 2), cfg.forward.retry_max_s)
                        next_try = time.monotonic() + backoff
                        if not paused:
                            self.consumer.pause(self.consumer.assignment())
                            paused = True
                    next_flush = time.monotonic() + cfg.forward.interval_s
                if now >= next_log:
                    log.info("progress %s", json.dumps(self.counters.to_dict()))
                    next_log = now + cfg.log_interval_s
                if max_seconds is not None and now - started >= max_seconds:
                    break
            normal_exit = True
        finally:
            self._shutdown(normal_exit)
        return self.counters.to_dict()

    def _shutdown(self, normal_exit: bool) -> None:
        try:
            self.spool.close_all("shutdown")
            if not normal_exit:
                log.error("abnormal exit: not committing (the readings since the last commit will be re-sent)")
            elif self.flush(final=True):
                log.info("stopped: everything forwarded and committed %s", json.dumps(self.counters.to_dict()))
            else:
                log.warning(
                    "stopped with %d messages not acknowledged: not committing (re-sent at the next start)",
                    len(self._outbox),
                )
        except DeliveryFailed as exc:
            log.error("%s", exc)
        finally:
            if not self.uploads.close(timeout=30):  # window notices need the MQTT client: before it closes
                log.warning("some windows were not uploaded; they stay spooled for the next start")
            if self.mqtt is not None:
                self.mqtt.close()
            self.outputs.close(10)
            self.consumer.close()
