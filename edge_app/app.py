"""The edge app's loop: readings in, two TFLite forecasts per record, blend, predictions out.

One thread runs the hot loop (consume a batch, process every record, spool windows, produce,
flush, commit). Helpers run beside it: the window uploader (S3 puts, window notices), the
speed-model swapper, the MQTT client (model notices in, metrics out) and librdkafka's own
threads. Offsets are committed only after every output of the batch was acknowledged by the
broker and the window spool was flushed (at-least-once).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from edge_app.combiners import make_combiner
from edge_app.config import EdgeConfig
from edge_app.drift import make_detector
from edge_app.metrics import Counters, ErrorStats
from edge_app.models import FETCHERS, LoadedModel, S3Fetcher, load_model, write_pointer
from edge_app.mqtt import make_transport
from edge_app.records import encode_deadletter, encode_event, encode_json, encode_prediction, parse_reading
from edge_app.state import DeviceState, load_device_state, save_device_state
from edge_app.swap import SpeedModelSwapper
from edge_app.uploaders import open_window_pipeline
from model_contract import FeatureBuffer
from model_contract.features import BadRecord
from model_contract.runtime import ModelRejected

log = logging.getLogger("edge_app")

# librdkafka settings tuned for a 2-core Pi-class machine (see BENCHMARKS.md); config overrides win
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 10,
    "fetch.min.bytes": 1,
    "queued.min.messages": 20000,
    "fetch.max.bytes": 8 * 1024 * 1024,
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 2000,
    "allow.auto.create.topics": True,
    "topic.metadata.refresh.interval.ms": 10000,
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 2,
    "batch.num.messages": 5000,
    "queue.buffering.max.messages": 500000,
    "compression.type": "none",
    "enable.idempotence": True,
    "acks": "all",
    "delivery.report.only.error": True,
}
SLOW_RECORD_S = 0.0002  # a record taking longer than this (normal: ~50 us) makes a slow turn worth logging
MAX_DEADLETTER_PAYLOAD = 128 * 1024  # larger bad payloads are dead-lettered without a copy
INTERNAL_ERROR_LOG_EVERY = 1000  # an unexpected per-record exception is logged (with traceback) once per this many


def ensure_topics(cfg: EdgeConfig, timeout: float = 30.0) -> list[str]:
    """Create the app's topics that do not exist yet (one partition; the broker's defaults otherwise).

    A consumer only learns about a topic created after it subscribed at its next metadata
    refresh, so a notices topic born later could go unseen for minutes: create them up front.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg.bootstrap})
    names = list(dict.fromkeys(vars(cfg.topics).values()))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [n for n in names if n not in existing]
    if missing:
        for name, future in admin.create_topics([NewTopic(n, num_partitions=1) for n in missing]).items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create topic {name}: {exc}") from None
        log.info("created topics %s", missing)
    return missing


Bounds = tuple[tuple[float, ...], tuple[float, ...]]


def value_bounds(manifest: Any, k: float | None) -> Bounds | None:
    """Per column (lo, hi) = the (batch) manifest scaler's mean -+ k * scale; None when the check is off."""
    if k is None or manifest is None:
        return None
    scaler, columns = manifest.scaler, manifest.feature_spec.columns
    if len(scaler.mean) != len(columns):
        log.warning("batch scaler has %d columns, spec %d: out_of_range check off", len(scaler.mean), len(columns))
        return None
    lo = tuple(m - k * abs(sc) for m, sc in zip(scaler.mean, scaler.scale, strict=True))
    hi = tuple(m + k * abs(sc) for m, sc in zip(scaler.mean, scaler.scale, strict=True))
    return lo, hi


def check_range(values: list[float], bounds: Bounds) -> None:
    """:class:`BadRecord` ``out_of_range`` if a value is outside its column's (lo, hi)."""
    for v, lo, hi in zip(values, bounds[0], bounds[1]):  # noqa: B905 (same length)
        if v < lo or v > hi:
            raise BadRecord("out_of_range", f"{values} outside [{lo:.6g}, {hi:.6g}]"[:200])


def deadletter_value(msg: Any, reason: str, detail: str) -> bytes:
    """The ``deadletter`` record of one consumed message (payload copied unless it is too large)."""
    raw = msg.value()
    if raw is not None and len(raw) > MAX_DEADLETTER_PAYLOAD:  # escaped JSON could exceed the message limit
        detail = f"{detail} (payload of {len(raw)} bytes not copied)"
        raw = None
    return encode_deadletter(raw, reason, detail, msg.topic(), msg.partition(), msg.offset(), msg.key())


def consumer_config(cfg: EdgeConfig) -> dict[str, Any]:
    """The librdkafka consumer settings of ``edge run`` and ``edge forward`` (config overrides win)."""
    conf = {
        "bootstrap.servers": cfg.bootstrap,
        "group.id": cfg.group_id,
        "client.id": f"hybridstream-edge-{cfg.thing_name}",
        # static membership: a restarted app takes its partitions back at once (no session timeout wait)
        "group.instance.id": f"edge-{cfg.thing_name}",
        **CONSUMER_DEFAULTS,
        **cfg.kafka.consumer,
        "enable.auto.commit": False,  # never overridable: commits follow delivery
    }
    if not conf["group.instance.id"]:
        del conf["group.instance.id"]
    return conf


def admit_device(device: str, allow: frozenset[str] | None, known: int, max_devices: int) -> None:
    """:class:`BadRecord` if a device not seen before may not be served (allowlist, limit, unusable id)."""
    if allow is not None and device not in allow:
        raise BadRecord("unknown_device", device[:100])
    if allow is None and known >= max_devices:
        raise BadRecord("too_many_devices", f"{device[:100]} (limit {max_devices})")
    try:
        device.encode()
    except UnicodeEncodeError:  # e.g. an escaped lone surrogate: unusable as a key or file name
        raise BadRecord("bad_device", ascii(device)[:100]) from None


class DeliveryFailed(RuntimeError):
    """An output could not be delivered: the batch is not committed and the app stops (to be restarted)."""


class EdgeApp:
    """Build with a config; :meth:`run` until ``stop`` is set (or a signal handler sets it)."""

    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.stop = threading.Event()
        self.counters = Counters()
        self.totals = ErrorStats(cfg.metrics_window)
        self.devices: dict[str, DeviceState] = {}
        self.state_dir = Path(cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._pointer = self.state_dir / "speed-model.json"
        self._delivery_errors: list[str] = []
        self._failed = False
        self._touched: set[str] = set()  # devices whose state changed since the last commit point
        self._device_dir = self.state_dir / "devices"
        self._device_dir.mkdir(exist_ok=True)
        self._min_epoch = cfg.min_epoch
        m = cfg.models
        FETCHERS["s3"] = S3Fetcher(m.s3_endpoint_url, m.s3_region, m.max_model_bytes)  # client made at first use

        self.batch = load_model(cfg.models.batch, cfg.models.batch_manifest, num_threads=cfg.models.num_threads)
        self.spec = self.batch.manifest.feature_spec
        self._bounds = self._value_bounds(cfg.out_of_range_k)
        self._speed_published_at = 0.0
        self.speed = self._initial_speed()
        log.info(
            "serving batch %s %s and speed %s %s (spec %s)",
            self.batch.name,
            self.batch.version,
            self.speed.name,
            self.speed.version,
            self.spec.to_dict(),
        )

        if cfg.kafka.ensure_topics:
            ensure_topics(cfg)
        producer_conf = {"bootstrap.servers": cfg.bootstrap, **PRODUCER_DEFAULTS, **cfg.kafka.producer}
        producer_conf["on_delivery"] = self._on_delivery_error
        self.producer = Producer(producer_conf)
        self.consumer = Consumer(consumer_config(cfg))
        self.swapper = SpeedModelSwapper(
            self.spec,
            model_name=cfg.models.speed_name,
            num_threads=cfg.models.num_threads,
            events=self.event,
            store=self.state_dir / "models",
            journal=self.state_dir / "notices-pending.json",
        )
        self.swapper.serving_version = self.speed.version
        self.swapper.serving_created_at = self.speed.manifest.created_at
        self.swapper.serving_published_at = self._speed_published_at
        resumed = self.swapper.resume()  # notices consumed (offsets committed) but not finished by a previous run
        if resumed:
            log.info("resuming %d pending model notice(s) from a previous run", resumed)
        # MQTT (IoT Core / the local mosquitto): created once; connects in the background
        self.mqtt = make_transport(cfg.mqtt, cfg.thing_name)
        self._mqtt_next_metrics = time.monotonic() + (cfg.mqtt.metrics_interval_s or 0)
        self._mqtt_last_records = (time.monotonic(), 0)
        if self.mqtt is not None and cfg.mqtt.model_notices:
            self.models_topic = f"hybridstream/models/{cfg.models.speed_name}/published"
            self.mqtt.subscribe(self.models_topic, self._mqtt_notice)
        if cfg.windows.uploader == "s3" and self.mqtt is None:
            log.warning("windows.uploader s3 without mqtt: windows are uploaded but no window notice is published")
        self.uploads, self.spool = open_window_pipeline(
            cfg, self.state_dir, self.spec, self.mqtt, self.event, self._window_closed
        )
        self._allow = frozenset(cfg.devices) if cfg.devices is not None else None
        self._residual_index = {"batch": 0, "speed": 1, "hybrid": 2}[cfg.drift_residual]
        self._detector_cfg = cfg.detector_config
        gc.collect()
        gc.freeze()  # start-up objects (models, clients, modules) never get scanned by the cyclic GC again

    # ---- models -----------------------------------------------------------------------------
    def _initial_speed(self) -> LoadedModel:
        """The swapped-in speed model of a previous run, else the configured one, else the batch model."""
        if self._pointer.exists():
            try:
                pointer = json.loads(self._pointer.read_text())
                loaded = load_model(
                    pointer["model"],
                    spec=self.spec,
                    expected_sha256=pointer["sha256"],
                    num_threads=self.cfg.models.num_threads,
                )
                log.info("resuming speed model %s from %s", loaded.version, self._pointer)
                published = pointer.get("published_at")
                self._speed_published_at = float(published) if isinstance(published, int | float) else 0.0
                return loaded
            except (ModelRejected, ValueError, KeyError, OSError) as exc:
                log.warning("ignoring %s: %s", self._pointer, exc)
        if self.cfg.models.speed:
            return load_model(
                self.cfg.models.speed,
                self.cfg.models.speed_manifest,
                spec=self.spec,
                num_threads=self.cfg.models.num_threads,
            )
        log.warning("no speed model configured: the batch model serves as speed model until a notice arrives")
        return load_model(
            self.cfg.models.batch, self.cfg.models.batch_manifest, num_threads=self.cfg.models.num_threads
        )

    def submit_notice(self, notice: dict[str, Any]) -> bool:
        """Python API for model notices (the MQTT listener calls this): fetch + verify in the background."""
        self.counters.notices += 1
        return self.swapper.submit(notice)

    def _mqtt_notice(self, topic: str, payload: bytes) -> None:
        """A model notice from MQTT (the client's thread): the same path as a Kafka notice."""
        try:
            notice = json.loads(payload)
        except (ValueError, TypeError, RecursionError) as exc:
            self.counters.notices += 1
            self.swapper.submit({"invalid": str(exc)[:200], "topic": topic})
            return
        self.submit_notice(notice)

    def _value_bounds(self, k: float | None) -> Bounds | None:
        return value_bounds(self.batch.manifest, k)

    def _swap_speed(self, loaded: LoadedModel) -> None:
        old = self.speed
        self.speed = loaded
        self.swapper.serving_version = loaded.version
        self.swapper.serving_created_at = loaded.manifest.created_at
        published = loaded.origin.get("published_at")
        if isinstance(published, int | float) and published > 0:
            self.swapper.serving_published_at = float(published)
        for state in self.devices.values():
            state.combiner.reset_speed()
            if self._residual_index == 1:
                state.detector = make_detector(self._detector_cfg)
        try:
            write_pointer(self._pointer, loaded, Path(loaded.location), published_at=self.swapper.serving_published_at)
        except OSError as exc:
            log.warning("could not persist the speed model pointer: %s", exc)
        self.swapper.done(loaded)  # the notice is handled: forget it (a crash before this replays it)
        self.counters.swaps += 1
        log.info("speed model swapped: %s -> %s", old.version, loaded.version)
        self.event("model_swapped", name=loaded.name, old_version=old.version, new_version=loaded.version)

    # ---- outputs ----------------------------------------------------------------------------
    def _on_delivery_error(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def _produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key)
                return
            except BufferError:  # local queue full: let librdkafka drain it, then retry (until it fits)
                self._drain()

    def _drain(self) -> None:
        """The local produce queue is full: wait up to 1 s for acknowledgements, then the caller retries.

        While stopping, a queue that stays full means the broker is gone: give up without
        committing (the batch is replayed at the next start).
        """
        left = self.producer.flush(1)
        if left:
            log.warning("producer queue full (%d records): waiting for the broker", left)
            if self.stop.is_set():
                self._failed = True
                raise DeliveryFailed(f"stopping with a full producer queue ({left} records): not committing")

    def event(self, kind: str, **fields: Any) -> None:
        """Produce one record to the events topic (thread-safe: the swapper and uploader call it)."""
        if kind == "model_rejected":
            self.counters.rejected_models += 1
        elif kind == "window_uploaded":
            self.counters.windows_uploaded += 1
        if self.producer is None:  # after shutdown
            log.info("event after shutdown not sent: %s %s", kind, fields)
            return
        self._produce(
            self.cfg.topics.events,
            encode_event(kind, self.cfg.thing_name, **fields),
            self.cfg.thing_name.encode(),
        )

    def _window_closed(self, path: Path, meta: dict[str, Any]) -> None:
        self.counters.windows_closed += 1
        self.uploads.submit(path, meta)

    def _dead(self, msg: Any, reason: str, detail: str) -> None:
        if not self.counters.deadletter_reasons[reason]:  # the first of each kind is logged, then counted
            log.warning(
                "dead-lettering %s records (first: %s[%d]@%d: %s)",
                reason,
                msg.topic(),
                msg.partition(),
                msg.offset(),
                detail[:200],
            )
        self.counters.dead(reason)
        self._produce(self.cfg.topics.deadletter, deadletter_value(msg, reason, detail), msg.key())

    def _internal_error(self, msg: Any, exc: Exception) -> None:
        """A record raised something unexpected: dead-letter it (``internal_error``) and carry on."""
        n = self.counters.deadletter_reasons["internal_error"]
        if n % INTERNAL_ERROR_LOG_EVERY == 0:
            log.error(
                "internal error on record %s[%d]@%d (%d so far)",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                n + 1,
                exc_info=exc,
            )
        self._dead(msg, "internal_error", f"{type(exc).__name__}: {exc}"[:300])

    # ---- the hot loop ----------------------------------------------------------------------
    def process(self, msgs: list) -> None:
        """Handle one consumed batch (no I/O waits here: produce() only queues)."""
        readings_topic = self.cfg.topics.readings
        pred_topic = self.cfg.topics.predictions
        spec = self.spec
        devices = self.devices
        allow = self._allow
        default_device = self.cfg.default_device
        batch_predict = self.batch.model.predict_one
        speed_predict = self.speed.model.predict_one
        versions = (self.batch.version, self.speed.version)
        totals = self.totals
        spool_add = self.spool.add
        produce = self.producer.produce
        ridx = self._residual_index
        clock = time.perf_counter
        counters = self.counters
        picked_ms = time.time() * 1000.0  # when this batch reached the loop (lag = picked - CreateTime)
        min_epoch = self._min_epoch
        max_epoch = picked_ms / 1000.0 + self.cfg.max_ahead_s
        bounds = self._bounds
        max_gap = self.cfg.max_gap_s
        speed_version = versions[1]
        touched = self._touched
        isfinite = math.isfinite
        for msg in msgs:
            if msg.error() is not None:
                err = msg.error()
                code = err.code()
                if err.fatal():  # e.g. fenced by another instance with the same thing name: stop, do not spin
                    raise KafkaException(err)
                if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.debug("consumer: %s", msg.error())  # a topic not created yet
                elif code != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            if msg.topic() != readings_topic:
                self._notice(msg)
                continue
            t0 = clock()
            counters.records_in += 1
            try:
                try:
                    r = parse_reading(msg.value(), msg.key(), spec, default_device, min_epoch, max_epoch)
                    if bounds is not None:
                        check_range(r.values, bounds)
                    state = devices.get(r.device)
                    if state is None:
                        state = self._new_device(r.device, allow)
                    if r.epoch <= state.last_epoch:
                        reason = "duplicate_timestamp" if r.epoch == state.last_epoch else "out_of_order"
                        raise BadRecord(reason, f"{r.timestamp} not after {state.last_ts}")
                except BadRecord as exc:
                    self._dead(msg, exc.reason, exc.detail)
                    continue
                if max_gap is not None and r.epoch - state.last_epoch > max_gap and state.last_ts:
                    state.buffer = FeatureBuffer(spec)  # a long gap: the lags no longer describe the recent past
                    state.pending = None
                    counters.gap_resets += 1
                state.last_epoch = r.epoch
                state.last_ts = r.timestamp
                touched.add(r.device)
                y = r.target
                pending = state.pending
                errors = None
                if pending is not None:
                    errors = (pending[0] - y, pending[1] - y, pending[2] - y)
                    if isfinite(errors[0]) and isfinite(errors[1]) and isfinite(errors[2]):
                        if pending[3] == speed_version:  # the speed forecast came from the model serving now
                            combiner = state.combiner
                            combiner.learn_one(pending[0], pending[1], y)
                            w = combiner.weights
                            if not (isfinite(w[0]) and isfinite(w[1])):
                                self._reset_combiner(state, w)
                        state.stats.update(*errors)
                        totals.update(*errors)
                        if (ridx != 1 or pending[3] == speed_version) and state.detector.update(errors[ridx]):
                            self._drift(state, r.timestamp, errors[ridx])
                buffer = state.buffer
                buffer.push(r.values)
                combiner = state.combiner
                if buffer.ready:
                    window = buffer.window
                    b = batch_predict(window)
                    s = speed_predict(window)
                    h = combiner.predict_one(b, s) if isfinite(b) and isfinite(s) else math.nan
                    forecast = (b, s, h)
                    state.pending = (b, s, h, speed_version) if isfinite(h) else None
                else:
                    forecast = None
                spool_add(r)
                value = encode_prediction(
                    r,
                    forecast,
                    errors,
                    combiner.weights,
                    versions,
                    (clock() - t0) * 1e6,
                    picked_ms - msg.timestamp()[1],
                )
                try:
                    produce(pred_topic, value, state.key)
                except BufferError:
                    self._produce(pred_topic, value, state.key)
                counters.predictions += 1
            except (DeliveryFailed, KafkaException):
                raise
            except Exception as exc:  # a bug or an input nobody thought of: this record only, never the app
                self._internal_error(msg, exc)

    def _reset_combiner(self, state: DeviceState, weights: tuple[float, float]) -> None:
        """A combiner whose weights went non-finite would blend to null forever: start it afresh."""
        self.counters.combiner_resets += 1
        if self.counters.combiner_resets == 1 or self.counters.combiner_resets % INTERNAL_ERROR_LOG_EVERY == 0:
            log.warning(
                "combiner of %s had weights %s: replaced (%d so far)",
                state.device,
                weights,
                self.counters.combiner_resets,
            )
        state.combiner = make_combiner(self.cfg.combination)

    def _new_device(self, device: str, allow: frozenset[str] | None) -> DeviceState:
        admit_device(device, allow, len(self.devices), self.cfg.max_devices)
        state = DeviceState(device, self.spec, self.cfg.combination, self._detector_cfg, self.cfg.metrics_window)
        self._restore(state)
        self.devices[device] = state
        return state

    # ---- per-device state across restarts -------------------------------------------------
    def _device_file(self, device: str) -> Path:
        from edge_app.windows import safe_name

        digest = hashlib.sha256(device.encode()).hexdigest()[:12]
        return self._device_dir / f"{safe_name(device)[:60]}-{digest}.json"

    def _restore(self, state: DeviceState) -> None:
        """Load the device's state saved at the last commit point (lags, last timestamp, pending forecast)."""
        path = self._device_file(state.device)
        if not path.exists():
            return
        try:
            load_device_state(state, path.read_bytes(), (self.batch.version, self.speed.version))
            self.counters.devices_restored += 1
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring the saved state of %s (%s): %s", state.device, path.name, exc)

    def _save_devices(self) -> None:
        """Write the state of every device touched since the last commit point (atomic, small JSON each)."""
        if not self._touched:
            return
        versions = (self.batch.version, self.speed.version)
        for device in self._touched:
            state = self.devices.get(device)
            if state is None:
                continue
            path = self._device_file(device)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(save_device_state(state, versions))
                    if self.cfg.windows.fsync:
                        fh.flush()
                        os.fsync(fh.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("could not save the state of %s: %s", device, exc)
        self._touched.clear()

    def _drift(self, state: DeviceState, timestamp: str, residual: float) -> None:
        self.counters.drift_events += 1
        early = self.cfg.windows.early_on_drift and self.spool.close(state.device, "drift") is not None
        log.info("drift on %s at %s (|residual| %.3f), early window: %s", state.device, timestamp, abs(residual), early)
        self.event(
            "drift",
            device=state.device,
            timestamp=timestamp,
            residual=self.cfg.drift_residual,
            value=residual,
            early_window=early,
            weights=list(state.combiner.weights),
        )

    def _notice(self, msg: Any) -> None:
        self.counters.notices += 1
        try:
            notice = json.loads(msg.value())
        except (ValueError, TypeError, RecursionError) as exc:
            self.swapper.submit({"invalid": str(exc)[:200]})
            return
        self.swapper.submit(notice)

    def _commit_point(self, block: bool = True) -> bool:
        """Commit the consumed offsets once every output produced so far is acknowledged.

        ``block=False`` commits only if the broker has already acknowledged everything (the
        usual case one loop turn later), so the hot loop never waits for a round trip;
        ``block=True`` waits for the acknowledgements first. The window spool is flushed
        before every commit. Returns True if it committed.
        """
        self.producer.poll(0)  # serve delivery reports (errors only)
        if block:
            while self.producer.flush(10) > 0:
                log.warning("waiting for the broker to acknowledge outputs (%d queued)", len(self.producer))
        elif len(self.producer) > 0:
            return False
        if self._delivery_errors or self._failed:
            errors, self._delivery_errors = self._delivery_errors[:5], []
            self.counters.delivery_errors += len(errors)
            self._failed = True  # never commit again in this process: the batch must be replayed
            raise DeliveryFailed(f"outputs not delivered, offsets not committed: {errors}")
        self.spool.flush()
        self._save_devices()
        try:
            self.consumer.commit(asynchronous=True)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                raise
        return True

    def _consume(self) -> list:
        """Whatever is queued (no wait); if nothing, wait up to poll_timeout for the first record.

        ``consume(n, timeout)`` blocks until n records or the timeout, which would add the timeout
        to every reading's latency at low rates; this returns as soon as anything is there.
        """
        size = self.cfg.kafka.batch_size
        msgs = self.consumer.consume(size, 0)
        if msgs:
            return msgs
        msgs = self.consumer.consume(1, self.cfg.kafka.poll_timeout_s)
        if msgs and size > 1:
            msgs += self.consumer.consume(size - 1, 0)
        return msgs

    def run(self, max_seconds: float | None = None) -> dict[str, Any]:
        """Consume until :attr:`stop` is set (or ``max_seconds``); shut down cleanly; return the counters."""
        cfg = self.cfg
        self.consumer.subscribe([cfg.topics.readings, cfg.topics.notices])
        started = time.monotonic()
        next_metrics = started + cfg.metrics_interval_s
        next_log = started + cfg.log_interval_s
        last_log_count = 0
        uncommitted = False
        last_commit = started
        commit_every = cfg.kafka.commit_interval_s
        commit_min = min(cfg.kafka.commit_min_interval_s, commit_every)
        normal_exit = False
        log.info("edge app %s consuming %s as group %s", cfg.thing_name, cfg.topics.readings, cfg.group_id)
        self.event("started", batch=self.batch.version, speed=self.speed.version, group=cfg.group_id)
        try:
            clock = time.perf_counter
            slow = cfg.log_slow_turn_ms / 1000.0
            while not self.stop.is_set():
                t0 = clock()
                loaded = self.swapper.take()
                if loaded is not None:
                    self._swap_speed(loaded)
                since = time.monotonic() - last_commit
                # positions here = everything processed so far
                if uncommitted and since >= commit_min and self._commit_point(block=since >= commit_every):
                    uncommitted = False
                    last_commit = time.monotonic()
                t1 = clock()
                msgs = self._consume()
                t2 = clock()
                if msgs:
                    self.process(msgs)
                    self.counters.batches += 1
                    uncommitted = True
                t3 = clock()
                # waiting for input is not slow, nor a big batch at the normal per-record cost
                if t1 - t0 > slow or (t3 - t2 > slow and t3 - t2 > SLOW_RECORD_S * len(msgs)):
                    log.warning(
                        "slow loop turn: swap+commit %.1f ms, consume %.1f ms, process %.1f ms (%d records)",
                        (t1 - t0) * 1e3,
                        (t2 - t1) * 1e3,
                        (t3 - t2) * 1e3,
                        len(msgs),
                    )
                now = time.monotonic()
                self.spool.tick(now)
                if now >= next_metrics:
                    self.publish_metrics()
                    next_metrics = now + cfg.metrics_interval_s
                if now >= next_log:
                    rate = (self.counters.records_in - last_log_count) / max(now - next_log + cfg.log_interval_s, 1e-9)
                    last_log_count = self.counters.records_in
                    log.info("progress %.0f rec/s %s", rate, json.dumps(self.counters.to_dict()))
                    next_log = now + cfg.log_interval_s
                if max_seconds is not None and now - started >= max_seconds:
                    break
            normal_exit = True
        finally:
            self._shutdown(commit=normal_exit)
        return self.counters.to_dict()

    def publish_metrics(self) -> None:
        """One ``metrics`` record for the whole app and (optionally) one per device."""
        now = time.time()
        thing = self.cfg.thing_name
        base = {"thing": thing, "at": now, "window": self.cfg.metrics_window}
        rec = {**base, "scope": "all", "devices": len(self.devices), **self.totals.snapshot()}
        rec["counters"] = self.counters.to_dict()
        rec["models"] = {"batch": self.batch.version, "speed": self.speed.version}
        self._produce(self.cfg.topics.metrics, encode_json(rec), thing.encode())
        if self.cfg.metrics_per_device:
            for state in self.devices.values():
                dev = {**base, "scope": "device", "device": state.device, **state.stats.snapshot()}
                dev["weights"] = {"batch": state.combiner.weights[0], "speed": state.combiner.weights[1]}
                self._produce(self.cfg.topics.metrics, encode_json(dev), state.key)
        interval = self.cfg.mqtt.metrics_interval_s
        if self.mqtt is not None and interval and time.monotonic() >= self._mqtt_next_metrics:
            self._mqtt_next_metrics = time.monotonic() + interval
            self._publish_mqtt_metrics(rec)

    def _publish_mqtt_metrics(self, rec: dict[str, Any]) -> None:
        """The app-wide rolling accuracy to ``hybridstream/<thing>/metrics`` (the IoT rules' schema:
        CloudWatch metrics per field), fire-and-forget, at most once per ``mqtt.metrics_interval_s``."""
        rolling = rec["rolling"]
        now = time.monotonic()
        then, records = self._mqtt_last_records
        self._mqtt_last_records = (now, self.counters.records_in)
        if any(rolling[a]["rmse"] is None for a in ("batch", "speed", "hybrid")):
            return  # no errors yet: the schema needs the three RMSEs
        from datetime import UTC, datetime

        msg: dict[str, Any] = {"timestamp": datetime.fromtimestamp(rec["at"], UTC).isoformat()}
        for approach in ("hybrid", "batch", "speed"):
            msg[f"{approach}_rmse"] = rolling[approach]["rmse"]
            msg[f"{approach}_mae"] = rolling[approach]["mae"]
        msg["records_per_s"] = round((self.counters.records_in - records) / max(now - then, 1e-9), 2)
        msg["models"] = rec["models"]
        try:
            self.mqtt.publish(f"hybridstream/{self.cfg.thing_name}/metrics", encode_json(msg))
        except Exception as exc:  # never let telemetry stop the loop
            log.warning("metrics not published over MQTT: %s", exc)

    def _shutdown(self, commit: bool = True) -> None:
        """Close windows, deliver and commit what was processed (only after a normal exit), stop the helpers."""
        log.info("shutting down: %s", json.dumps(self.counters.to_dict()))
        if not commit:
            self._failed = True  # an exception left the loop mid-batch: its outputs may be incomplete
        try:
            self.spool.close_all("shutdown")
            if self._failed:
                log.error("abnormal exit: not committing (the records since the last commit will be replayed)")
            else:
                self.publish_metrics()
                self._commit_point()
                try:
                    self.consumer.commit(asynchronous=False)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError._NO_OFFSET:
                        log.warning("final commit failed: %s", exc)
        finally:
            drained = self.uploads.close(timeout=30)
            if not drained:
                log.warning("some windows were not uploaded; they stay spooled for the next start")
            self.swapper.close()  # before the last flush: its events must go out too
            if self.mqtt is not None:
                self.mqtt.close()
            self.event("stopped", counters=self.counters.to_dict())
            left = self.producer.flush(10)
            if left:
                log.warning("%d event/metrics records not delivered at exit", left)
            self.consumer.close()
            self.producer = None  # release the client now (it holds a callback into this object)
