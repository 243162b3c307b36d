"""``edge run``: readings in, two TFLite forecasts per record, blend, predictions out.

:class:`EdgeApp` wires the parts together and owns their lifecycle; each concern lives in a
module of its own:

============================= ==================================================================
:mod:`edge_app.loop`          the hot loop: consume, forecast every record, produce, commit
:mod:`edge_app.admission`     which readings are accepted (else dead-lettered with a reason)
:mod:`edge_app.state`         per-device state and the :class:`~edge_app.state.Pending` forecast
:mod:`edge_app.device_store`  per-device state saved at commit points, restored after a restart
:mod:`edge_app.telemetry`     counters, events, dead letters, metrics records
:mod:`edge_app.swap`          the speed-model hot swap (notices in, verified models out)
:mod:`edge_app.serving`       which models serve: the batch and speed model, a swap and its rollback
:mod:`edge_app.kafka_io`      Kafka client settings, topics, the output producer, commits
============================= ==================================================================

One thread runs the hot loop. Helpers run beside it: the window uploader (S3 puts, window
notices), the speed-model swapper, the MQTT client (model notices in, metrics out) and
librdkafka's own threads. Offsets are committed only after every output of the batch was
acknowledged by the broker and the window spool was flushed (at-least-once).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from edge_app import kafka_io, loop
from edge_app.admission import Admission, value_bounds
from edge_app.batch_path import BatchBuffers
from edge_app.combiners import warm_start_mismatch
from edge_app.config import EdgeConfig
from edge_app.device_store import DeviceStore
from edge_app.drift import make_detector
from edge_app.intervals import DeviceBand, IntervalConfig
from edge_app.kafka_io import DeliveryFailed, Outputs
from edge_app.metrics import ErrorStats
from edge_app.models import FETCHERS, LoadedModel, S3Fetcher, load_model
from edge_app.mqtt import make_transport
from edge_app.serving import Serving
from edge_app.stages import StageClock
from edge_app.state import DeviceState
from edge_app.swap import SpeedModelSwapper, SwapGuard, initial_speed_model
from edge_app.telemetry import Counters, MetricsPublisher, Telemetry
from edge_app.uploaders import open_window_pipeline
from model_contract import Manifest, conformal, online_linear_kernel
from model_contract.context_stack import WARM_KEY
from model_contract.topics import model_notice_topic

__all__ = ["DeliveryFailed", "EdgeApp"]

log = logging.getLogger("edge_app")


def combiner_warm_start(combination: Any, spec: Any, manifest: Manifest) -> dict | None:
    """The batch manifest's combiner warm start if every new device's combiner can start from it, else None
    (logged once, with why: another method or config, another spec, or a batch model without one)."""
    warm = manifest.extra.get(WARM_KEY)
    why = warm_start_mismatch(combination, spec, warm)
    if why:
        log.info("device combiners start cold: %s", why)
        return None
    log.info("device combiners start from batch %s's warm start (%s history rows)", manifest.version, warm.get("rows"))
    return warm


def interval_warm_start(cfg: IntervalConfig | None, manifest: Manifest) -> dict | None:
    """The batch manifest's interval warm start if it is usable, else None (logged once, with why)."""
    if cfg is None:
        log.info("forecast intervals are off (intervals: null)")
        return None
    warm = manifest.extra.get(conformal.WARM_KEY)
    if not warm:
        log.info("device intervals start cold: batch %s ships no interval warm start", manifest.version)
        return None
    try:
        DeviceBand(cfg, warm)
    except ValueError as exc:
        log.warning("device intervals start cold: %s", exc)
        return None
    log.info("device intervals start from batch %s's warm start (%s history rows)", manifest.version, warm.get("rows"))
    return warm


class EdgeApp:
    """Build with a config; :meth:`run` until ``stop`` is set (or a signal handler sets it)."""

    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.stop = threading.Event()
        self.counters = Counters()
        self.totals = ErrorStats(cfg.metrics_window)
        self.devices: dict[str, DeviceState] = {}
        self.stages = StageClock()  # the loop's time per stage and record (edge_app.stages)
        self.counters.watch(self.devices, self.stages)  # combiners' guard counts, stage costs show in the counters
        self.touched: set[str] = set()  # devices whose state changed since the last commit point
        self.state_dir = Path(cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pointer = self.state_dir / "speed-model.json"
        self.device_store = DeviceStore(self.state_dir / "devices", fsync=cfg.windows.fsync)
        m = cfg.models
        FETCHERS["s3"] = S3Fetcher(m.s3_endpoint_url, m.s3_region, m.max_model_bytes)  # client made at first use

        batch = load_model(m.batch, m.batch_manifest, num_threads=m.num_threads)
        self.spec = batch.manifest.feature_spec
        self.batch_buffers = BatchBuffers(cfg.kafka.batch_size, self.spec.input_shape)  # edge_app.batch_path
        self.admission = Admission.from_config(cfg, self.spec, batch.manifest)
        self.combiner_warm = combiner_warm_start(cfg.combination, self.spec, batch.manifest)
        linear = online_linear_kernel.status()  # built (or loaded) now, not at the first reading
        why = f"the compiled kernel {linear['path']}" if linear["backend"] == "c" else f"numpy ({linear['reason']})"
        log.info("online linear models run %s", why)
        self.interval_cfg = cfg.interval_config
        self.interval_warm = interval_warm_start(self.interval_cfg, batch.manifest)
        speed, speed_published_at = initial_speed_model(m, self.spec, self.pointer)
        log.info(
            "serving batch %s %s and speed %s %s (spec %s)",
            batch.name,
            batch.version,
            speed.name,
            speed.version,
            self.spec.to_dict(),
        )

        self.consumer = kafka_io.open_consumer(cfg)
        self.outputs = Outputs(cfg, lambda: self.stop.is_set())
        self.telemetry = Telemetry(cfg, self.outputs, self.counters)
        self.swapper = SpeedModelSwapper(
            self.spec,
            model_name=m.speed_name,
            num_threads=m.num_threads,
            events=self.event,
            store=self.state_dir / "models",
            journal=self.state_dir / "notices-pending.json",
        )
        bounds = value_bounds(batch.manifest, cfg.out_of_range_k if cfg.out_of_range_k is not None else 50.0)
        target = self.spec.target_index
        guard = SwapGuard((bounds[0][target], bounds[1][target]) if bounds else None)
        self.serving = Serving(
            batch, speed, guard=guard, swapper=self.swapper, pointer=self.pointer, speed_published_at=speed_published_at
        )
        resumed = self.swapper.resume()  # notices consumed (offsets committed) but not finished by a previous run
        if resumed:
            log.info("resuming %d pending model notice(s) from a previous run", resumed)
        # MQTT (IoT Core / the local mosquitto): created once; connects in the background
        self.mqtt = make_transport(cfg.mqtt, cfg.thing_name)
        self.metrics = MetricsPublisher(cfg, self.outputs, self.mqtt)
        if self.mqtt is not None and cfg.mqtt.model_notices:
            self.models_topic = model_notice_topic(m.speed_name)
            self.mqtt.subscribe(self.models_topic, self._mqtt_notice)
        if cfg.windows.uploader == "s3" and self.mqtt is None:
            log.warning("windows.uploader s3 without mqtt: windows are uploaded but no window notice is published")
        self.uploads, self.spool = open_window_pipeline(
            cfg, self.state_dir, self.spec, self.mqtt, self.event, self._window_closed, forecasts=cfg.windows.forecasts
        )
        self.residual_index = {"batch": 0, "speed": 1, "hybrid": 2}[cfg.drift_residual]
        gc.collect()
        gc.freeze()  # start-up objects (models, clients, modules) never get scanned by the cyclic GC again

    @property
    def batch(self) -> LoadedModel:
        """The batch model (:attr:`serving`)."""
        return self.serving.batch

    @property
    def speed(self) -> LoadedModel:
        """The speed model serving now (:attr:`serving`; changed by :meth:`swap_speed`, :meth:`roll_back_speed`)."""
        return self.serving.speed

    @property
    def producer(self) -> Any:
        """The output producer (None after shutdown)."""
        return self.outputs.producer

    # ---- notices and events (any thread) -----------------------------------------------------
    def submit_notice(self, notice: dict[str, Any]) -> bool:
        """Python API for model notices (the MQTT listener calls this): fetch + verify in the background."""
        self.counters.notices += 1
        return self.swapper.submit(notice)

    def _mqtt_notice(self, topic: str, payload: bytes) -> None:
        """A model notice from MQTT (the client's thread): the same path as a Kafka notice."""
        self.counters.notices += 1
        self.swapper.submit_payload(payload, topic)

    def notice(self, msg: Any) -> None:
        """A model notice consumed from ``topics.notices``."""
        self.counters.notices += 1
        self.swapper.submit_payload(msg.value())

    def event(self, kind: str, **fields: Any) -> None:
        """Produce one record to the events topic (thread-safe: the swapper and uploader call it)."""
        self.telemetry.event(kind, **fields)

    def _window_closed(self, path: Path, meta: dict[str, Any]) -> None:
        self.counters.windows_closed += 1
        self.uploads.submit(path, meta)

    # ---- the speed model (the loop's thread) --------------------------------------------------
    def swap_speed(self, loaded: LoadedModel) -> None:
        """Serve ``loaded`` from the next record on (the loop calls this between two batches): it serves on
        probation (:meth:`edge_app.serving.Serving.swap_in`), and what learned from the old model forgets it."""
        old = self.serving.swap_in(loaded)
        self._speed_model_changed()
        self.counters.swaps += 1
        log.info("speed model swapped: %s -> %s", old.version, loaded.version)
        self.telemetry.event("model_swapped", name=loaded.name, old_version=old.version, new_version=loaded.version)

    def roll_back_speed(self) -> None:
        """Undo the last swap (its model forecast absurd values, ``serving.guard.due``): the previous speed model
        serves again, the bad version is refused from now on, ``rollbacks`` is counted, ``model_rolled_back`` sent.
        A path that cached the speed model reads :attr:`serving` again."""
        guard = self.serving.guard
        bad = self.serving.roll_back()
        if bad is None:
            return
        previous = self.serving.speed
        self._speed_model_changed()
        self.counters.rollbacks += 1
        reason = (
            f"{guard.bad} of the first {guard.checked} speed forecasts after the swap were not finite or outside "
            f"[{guard.lo:.4g}, {guard.hi:.4g}]"
        )
        log.error("speed model %s rolled back to %s: %s", bad.version, previous.version, reason)
        self.telemetry.event(
            "model_rolled_back",
            name=bad.name,
            bad_version=bad.version,
            restored_version=previous.version,
            reason=reason,
        )

    def _speed_model_changed(self) -> None:
        """Every device's combiner forgets the old speed model's record (its ``on_swap`` rule); a drift detector
        watching the speed residual starts afresh."""
        reset_detector = self.residual_index == 1
        for state in self.devices.values():
            state.combiner.reset_speed()
            if reset_detector:
                state.detector = make_detector(self.cfg.detector_config)

    # ---- devices -----------------------------------------------------------------------------
    def new_device(self, device: str) -> DeviceState:
        """The state of a device seen for the first time (restored from the state folder if saved)."""
        self.admission.admit_device(device, len(self.devices))
        cfg = self.cfg
        warm = self.combiner_warm
        state = DeviceState(device, self.spec, cfg.combination, cfg.detector_config, cfg.metrics_window, warm)
        if warm is not None:
            self.counters.combiner_warm_starts += 1
        if self.interval_cfg is not None:
            state.band = DeviceBand(self.interval_cfg, self.interval_warm, self._anomaly_reporter(device))
            if self.interval_warm is not None:
                self.counters.interval_warm_starts += 1
        if self.device_store.restore(state, self.serving.versions):
            self.counters.devices_restored += 1
        self.devices[device] = state
        return state

    def _anomaly_reporter(self, device: str):
        """What a device's band calls when a run of readings outside its interval reaches ``min_run``."""
        counters = self.counters

        def report(timestamp: str, actual: float, forecast: float, distance: float, run: int) -> None:
            counters.anomaly_events += 1
            level = self.interval_cfg.anomaly_level
            self.telemetry.event(
                "anomaly",
                device=device,
                timestamp=timestamp,
                level=level,
                distance=distance,
                actual=actual,
                forecast=forecast,
                run=run,
            )

        return report

    def save_devices(self) -> None:
        """Save every device touched since the last commit point."""
        if not self.touched:
            return
        devices = self.devices
        states = [devices[d] for d in self.touched if d in devices]
        self.device_store.save(states, self.serving.versions)
        self.touched.clear()

    # ---- the loop ----------------------------------------------------------------------------
    def process(self, msgs: list) -> None:
        """Handle one consumed batch (:func:`edge_app.loop.process`)."""
        loop.process(self, msgs)

    def publish_metrics(self) -> None:
        """One ``metrics`` record for the whole app and (optionally) one per device."""
        models = {"batch": self.batch.version, "speed": self.speed.version}
        self.metrics.publish(self.counters, self.totals, self.devices, models)

    def run(self, max_seconds: float | None = None) -> dict[str, Any]:
        """Consume until :attr:`stop` is set (or ``max_seconds``); shut down cleanly; return the counters."""
        cfg = self.cfg
        self.consumer.subscribe([cfg.topics.readings, cfg.topics.notices])
        log.info("edge app %s consuming %s as group %s", cfg.thing_name, cfg.topics.readings, cfg.group_id)
        self.event("started", batch=self.batch.version, speed=self.speed.version, group=cfg.group_id)
        normal_exit = False
        try:
            loop.run(self, max_seconds)
            normal_exit = True
        finally:
            self._shutdown(commit=normal_exit)
        return self.counters.to_dict()

    def _shutdown(self, commit: bool = True) -> None:
        """Close windows, deliver and commit what was processed (only after a normal exit), stop the helpers."""
        log.info("shutting down: %s", json.dumps(self.counters.to_dict()))
        if not commit:
            self.outputs.failed = True  # an exception left the loop mid-batch: its outputs may be incomplete
        try:
            self.spool.close_all("shutdown")
            if self.outputs.failed:
                log.error("abnormal exit: not committing (the records since the last commit will be replayed)")
            else:
                self.publish_metrics()
                if loop.commit_point(self):
                    try:
                        kafka_io.commit(self.consumer, asynchronous=False)
                    except KafkaException as exc:
                        log.warning("final commit failed: %s", exc)
                else:
                    log.error("window spool not written (%s): not committing", self.spool.degraded)
        finally:
            drained = self.uploads.close(timeout=30)
            if not drained:
                log.warning("some windows were not uploaded; they stay spooled for the next start")
            self.swapper.close()  # before the last flush: its events must go out too
            if self.mqtt is not None:
                self.mqtt.close()
            self.event("stopped", counters=self.counters.to_dict())
            left = self.outputs.close(10)
            if left:
                log.warning("%d event/metrics records not delivered at exit", left)
            self.consumer.close()
