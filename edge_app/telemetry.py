"""Telemetry of ``edge run`` and ``edge forward``: counters, events, dead letters, metrics records.

One style for both commands: counters are attributes of a :class:`CounterSet`
(``to_dict()`` in every metrics record, progress log and exit summary); events go to
``topics.events`` and bad records to ``topics.deadletter`` through :class:`Telemetry`, with
the first of each dead-letter reason logged and every one counted. :class:`MetricsPublisher`
writes ``edge run``'s ``metrics`` records (and the MQTT metrics the IoT rules read).

>>> c = ForwardCounters()
>>> c.dead("invalid_json"); c.dead("invalid_json")
>>> c.to_dict()["deadletter"], c.to_dict()["deadletter_reasons"]
(2, {'invalid_json': 2})
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from edge_app.intervals import level_name
from edge_app.intervals import totals as band_totals
from edge_app.kafka_io import Outputs
from edge_app.metrics import ErrorStats
from edge_app.records import encode_deadletter, encode_event, encode_json
from model_contract import online_linear_kernel
from model_contract.topics import METRICS, device_topic

log = logging.getLogger("edge_app")

MAX_DEADLETTER_PAYLOAD = 128 * 1024  # larger bad payloads are dead-lettered without a copy
INTERNAL_ERROR_LOG_EVERY = 1000  # an unexpected per-record exception is logged (with traceback) once per this many
# events that are also counted: event kind -> counter
EVENT_COUNTERS = {
    "model_rejected": "rejected_models",
    "window_uploaded": "windows_uploaded",
    "window_dropped": "windows_dropped",
}


class CounterSet:
    """What a command has done since it started; subclasses add their counters in ``__init__``."""

    def __init__(self) -> None:
        self.records_in = 0
        self.deadletter = 0
        self.deadletter_reasons: Counter[str] = Counter()

    def dead(self, reason: str) -> None:
        self.deadletter += 1
        self.deadletter_reasons[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "deadletter_reasons" and not k.startswith("_")}
        out["deadletter_reasons"] = dict(self.deadletter_reasons)
        return out


class Counters(CounterSet):
    """``edge run``'s counters."""

    def __init__(self) -> None:
        super().__init__()
        self.predictions = 0
        self.drift_events = 0
        self.notices = 0
        self.swaps = 0
        self.rejected_models = 0
        self.rollbacks = 0  # speed models swapped out again because their first forecasts were absurd
        self.spool_write_errors = 0  # failed writes of the window spool (disk full): nothing committed meanwhile
        self.windows_closed = 0
        self.windows_uploaded = 0
        self.windows_dropped = 0  # spooled windows deleted unsent: the spool was over windows.max_spool_mb
        self.upload_failures = 0
        self.delivery_errors = 0
        self.batches = 0
        self.combiner_resets = 0  # combiners replaced because their weights went non-finite
        self.combiner_warm_starts = 0  # combiners started from the batch model's warm start (new devices, resets)
        self.gap_resets = 0  # lag windows restarted after a gap longer than max_gap_s
        self.devices_restored = 0  # devices whose state was loaded from the state folder
        self.interval_warm_starts = 0  # device intervals started from the batch model's interval warm start
        self.anomaly_events = 0  # runs of readings outside their interval that reached intervals.min_run
        self._devices: dict[str, Any] = {}  # the loop's devices: their combiners' guard counts (see watch)
        self._stages: Any = None  # the loop's edge_app.stages.StageClock (see watch)

    def watch(self, devices: dict[str, Any], stages: Any = None) -> None:
        """Report the guard counts of these devices' combiners (``combiner_*`` in :meth:`to_dict`) and the
        loop's cost per record and stage (``stage_us``: an :class:`edge_app.stages.StageClock`)."""
        self._devices = devices
        self._stages = stages

    def to_dict(self) -> dict[str, Any]:
        states = self._devices.values()
        bands = [getattr(s, "band", None) for s in states]
        out = super().to_dict() | combiner_counts(states) | {"anomalies": sum(b.anomalies for b in bands if b)}
        out["linear_kernel"] = online_linear_kernel.status()["backend"]  # "c", or "numpy": no compiled kernel
        if self._stages is not None:
            out["stage_us"] = self._stages.summary()
        return out


# a combiner's guard counts -> the app-wide counter
COMBINER_COUNTERS = {
    "muted_batch": "combiner_muted_batch",  # records forecast with the batch model muted (its errors exploded)
    "muted_speed": "combiner_muted_speed",
    "fallbacks": "combiner_fallbacks",  # records forecast as persistence: the combiner's own errors exploded
    "correct_learned": "combiner_correct_learned",  # truths the correction layer learned (correct: true)
    "correct_rejected": "combiner_correct_rejected",  # its solves that failed (its weights kept): should stay 0
}


def combiner_counts(states: Any) -> dict[str, int]:
    """The guard counts summed over the devices' combiners (0 for combiners without a guard).

    >>> from edge_app.combiners import make_combiner
    >>> class S:
    ...     combiner = make_combiner({}, target_index=0)
    >>> S.combiner.muted[1] = 2
    >>> combiner_counts([S, S])["combiner_muted_speed"]
    4
    """
    out = dict.fromkeys(COMBINER_COUNTERS.values(), 0)
    for state in states:
        counts = getattr(state.combiner, "counts", None)
        if counts is not None:
            for k, v in counts().items():
                name = COMBINER_COUNTERS.get(k)
                if name is not None:
                    out[name] += v
    return out


class ForwardCounters(CounterSet):
    """``edge forward``'s counters."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded = 0  # readings in acknowledged messages (context rows not counted)
        self.messages = 0
        self.publish_failures = 0
        self.commits = 0
        self.windows_closed = 0
        self.windows_uploaded = 0
        self.windows_dropped = 0  # spooled windows deleted unsent: the spool was over windows.max_spool_mb


def deadletter_value(msg: Any, reason: str, detail: str) -> bytes:
    """The ``deadletter`` record of one consumed message (payload copied unless it is too large)."""
    raw = msg.value()
    if raw is not None and len(raw) > MAX_DEADLETTER_PAYLOAD:  # escaped JSON could exceed the message limit
        detail = f"{detail} (payload of {len(raw)} bytes not copied)"
        raw = None
    return encode_deadletter(raw, reason, detail, msg.topic(), msg.partition(), msg.offset(), msg.key())


class Telemetry:
    """Events and dead letters of one command, through its :class:`Outputs` (thread-safe)."""

    def __init__(self, cfg: Any, outputs: Outputs, counters: CounterSet) -> None:
        self.outputs = outputs
        self.counters = counters
        self._thing = cfg.thing_name
        self._thing_key = cfg.thing_name.encode()
        self._events = cfg.topics.events
        self._deadletter = cfg.topics.deadletter

    def event(self, kind: str, **fields: Any) -> None:
        """Produce one record to the events topic (the swapper and the upload thread call this too)."""
        counter = EVENT_COUNTERS.get(kind)
        if counter is not None and hasattr(self.counters, counter):
            setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        if self.outputs.producer is None:  # after shutdown
            log.info("event after shutdown not sent: %s %s", kind, fields)
            return
        self.outputs.produce(self._events, encode_event(kind, self._thing, **fields), self._thing_key)

    def dead(self, msg: Any, reason: str, detail: str) -> None:
        """Dead-letter one consumed message with its reason (the first of each reason is logged)."""
        if not self.counters.deadletter_reasons[reason]:
            log.warning(
                "dead-lettering %s records (first: %s[%d]@%d: %s)",
                reason,
                msg.topic(),
                msg.partition(),
                msg.offset(),
                detail[:200],
            )
        self.counters.dead(reason)
        self.outputs.produce(self._deadletter, deadletter_value(msg, reason, detail), msg.key())

    def internal_error(self, msg: Any, exc: Exception) -> None:
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
        self.dead(msg, "internal_error", f"{type(exc).__name__}: {exc}"[:300])


class MetricsPublisher:
    """``edge run``'s ``metrics`` records (app-wide and per device) and the MQTT metrics message."""

    def __init__(self, cfg: Any, outputs: Outputs, mqtt: Any) -> None:
        self.cfg = cfg
        self.outputs = outputs
        self.mqtt = mqtt
        self._mqtt_next = time.monotonic() + (cfg.mqtt.metrics_interval_s or 0)
        self._mqtt_last_records = (time.monotonic(), 0)

    def publish(self, counters: Counters, totals: ErrorStats, devices: dict[str, Any], models: dict[str, str]) -> None:
        """One ``metrics`` record for the whole app and (optionally) one per device."""
        cfg = self.cfg
        thing = cfg.thing_name
        base = {"thing": thing, "at": time.time(), "window": cfg.metrics_window}
        rec = {**base, "scope": "all", "devices": len(devices), **totals.snapshot()}
        rec["counters"] = counters.to_dict()
        rec["models"] = models
        rec["intervals"] = band_totals([s.band for s in devices.values() if s.band is not None])
        self.outputs.produce(cfg.topics.metrics, encode_json(rec), thing.encode())
        if cfg.metrics_per_device:
            for state in devices.values():
                dev = {**base, "scope": "device", "device": state.device, **state.stats.snapshot()}
                dev["weights"] = {"batch": state.combiner.weights[0], "speed": state.combiner.weights[1]}
                counts = getattr(state.combiner, "counts", None)
                if counts is not None:
                    dev["combiner"] = counts()
                if state.band is not None:
                    dev["intervals"] = state.band.snapshot()
                self.outputs.produce(cfg.topics.metrics, encode_json(dev), state.key)
        interval = cfg.mqtt.metrics_interval_s
        if self.mqtt is not None and interval and time.monotonic() >= self._mqtt_next:
            self._mqtt_next = time.monotonic() + interval
            self._publish_mqtt(rec, counters.records_in)

    def _publish_mqtt(self, rec: dict[str, Any], records_in: int) -> None:
        """The app-wide rolling accuracy to ``device_topic(thing, METRICS)`` (the IoT rules' schema:
        CloudWatch metrics per field), fire-and-forget, at most once per ``mqtt.metrics_interval_s``."""
        rolling = rec["rolling"]
        now = time.monotonic()
        then, records = self._mqtt_last_records
        self._mqtt_last_records = (now, records_in)
        if any(rolling[a]["rmse"] is None for a in ("batch", "speed", "hybrid")):
            return  # no errors yet: the schema needs the three RMSEs
        msg: dict[str, Any] = {"timestamp": datetime.fromtimestamp(rec["at"], UTC).isoformat()}
        for approach in ("hybrid", "batch", "speed"):
            msg[f"{approach}_rmse"] = rolling[approach]["rmse"]
            msg[f"{approach}_mae"] = rolling[approach]["mae"]
        msg["records_per_s"] = round((records_in - records) / max(now - then, 1e-9), 2)
        bands = rec.get("intervals")
        if bands and bands["n"]:  # running coverage and mean width per level (CloudWatch: Coverage80, Width80...)
            for key, cov in bands["coverage"].items():
                msg[f"coverage_{level_name(float(key))}"] = round(cov, 4)
                msg[f"width_{level_name(float(key))}"] = round(bands["width"][key], 6)
            msg["anomalies"] = bands["anomalies"]
        msg["models"] = rec["models"]
        try:
            self.mqtt.publish(device_topic(self.cfg.thing_name, METRICS), encode_json(msg))
        except Exception as exc:  # never let telemetry stop the loop
            log.warning("metrics not published over MQTT: %s", exc)
