"""The per-device steps both processing paths share (:mod:`edge_app.batch_path`, :mod:`edge_app.record_path`).

Each consumed reading is first :func:`admit`-ted (parsed, range-checked, its device found or added,
refused out of order). For each valid reading of a device, in the order the readings came: :func:`score` its pending
forecast against it (the combiner learns, accuracy, drift), then :func:`forecast` the next one
from the two models' forecasts and the lag window (the combiner blends; the forecast becomes the
pending one; the device's interval band scores the reading and issues the new forecast's interval).
Anything a device does after its combiner belongs in one of these two functions: both paths then do
it, once per reading, in the same order.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException

from edge_app.admission import out_of_order
from edge_app.combiners import make_combiner
from edge_app.intervals import NO_BAND
from edge_app.records import Reading
from edge_app.state import DeviceState, Pending
from edge_app.telemetry import INTERNAL_ERROR_LOG_EVERY

log = logging.getLogger("edge_app")

_isfinite = math.isfinite
_nan = math.nan


def admit(app: Any, msg: Any, max_epoch: float, max_gap: float | None) -> tuple[Reading, DeviceState, bool]:
    """The reading of consumed record ``msg`` and its device's state (a new device's made), or :class:`BadRecord`
    (:mod:`edge_app.admission`: parse, range check, device rules; or not later than the device's previous reading).
    Admitted, it becomes the device's newest reading (touched since the last commit); the flag says it came more
    than ``max_gap`` seconds after the previous one (counted; the caller restarts the device's lag window)."""
    r = app.admission.parse(msg.value(), msg.key(), max_epoch)
    state = app.devices.get(r.device)
    if state is None:
        state = app.new_device(r.device)
    if r.epoch <= state.last_epoch:
        raise out_of_order(r, state.last_epoch, state.last_ts)
    gap = max_gap is not None and r.epoch - state.last_epoch > max_gap and bool(state.last_ts)
    if gap:
        app.counters.gap_resets += 1
    state.last_epoch = r.epoch
    state.last_ts = r.timestamp
    app.touched.add(r.device)
    return r, state, gap


def score(app: Any, state: DeviceState, y: float, timestamp: str, speed_version: str) -> tuple | None:
    """The errors (batch, speed, hybrid) of the device's pending forecast against the true value ``y``
    (None if it had none). Finite errors feed the accuracy stats and the drift detector, and the combiner
    learns them if the speed model that made the forecast (``speed_version``) still serves. The steps of
    :func:`check`, :func:`learned` and :func:`account` (the batch path's rounds call them apart), written out
    in one frame: the hot path of both paths, a reading at a time (BENCHMARKS.md, issue 18)."""
    pending = state.pending
    if pending is None:
        return None
    eb = pending.batch - y
    es = pending.speed - y
    eh = pending.hybrid - y
    errors = (eb, es, eh)
    if not (_isfinite(eb) and _isfinite(es) and _isfinite(eh)):
        return errors  # :func:`check`: nothing learned, nothing accounted
    same_speed = pending.speed_version == speed_version
    if same_speed:  # the combiner learns
        combiner = state.combiner
        combiner.learn_one(pending.batch, pending.speed, y, pending.context)
        w = combiner.weights
        if not (_isfinite(w[0]) and _isfinite(w[1])):  # :func:`learned`
            reset_combiner(app, state, w)
            w = state.combiner.weights
    else:
        w = state.combiner.weights
    state.stats.add(errors)  # :func:`account`
    app.totals.add(errors)
    ridx = app.residual_index
    if (ridx != 1 or same_speed) and state.detector.update(errors[ridx]):
        drift(app, state, timestamp, errors[ridx], w)
    return errors


def check(state: DeviceState, y: float, speed_version: str) -> tuple[tuple | None, bool]:
    """The errors (batch, speed, hybrid) of the device's pending forecast against the true value ``y`` (None if
    it had none) and whether the combiner learns them: they are finite and the speed forecast came from the
    model serving now (``speed_version``)."""
    pending = state.pending
    if pending is None:
        return None, False
    errors = (pending.batch - y, pending.speed - y, pending.hybrid - y)
    if not (_isfinite(errors[0]) and _isfinite(errors[1]) and _isfinite(errors[2])):
        return errors, False
    return errors, pending.speed_version == speed_version


def learned(app: Any, state: DeviceState) -> None:
    """After the combiner learned: one whose weights went non-finite is replaced."""
    w = state.combiner.weights
    if not (_isfinite(w[0]) and _isfinite(w[1])):
        reset_combiner(app, state, w)


def account(
    app: Any, state: DeviceState, errors: tuple, same_speed: bool, timestamp: str, weights: tuple[float, float]
) -> None:
    """:func:`score`'s part across devices: finite ``errors`` feed the device's and the app's accuracy stats and
    the drift detector (a drift alarm: :func:`drift`, its event with the combiner's ``weights`` then)."""
    if not (_isfinite(errors[0]) and _isfinite(errors[1]) and _isfinite(errors[2])):
        return
    state.stats.add(errors)
    app.totals.add(errors)
    ridx = app.residual_index
    if (ridx != 1 or same_speed) and state.detector.update(errors[ridx]):
        drift(app, state, timestamp, errors[ridx], weights)


def forecast(
    state: DeviceState,
    b: float,
    s: float,
    window: np.ndarray | None,
    speed_version: str,
    horizon: int,
    pending: Pending | None,
    y: float,
    timestamp: str,
) -> tuple[tuple[float, float, float] | None, str]:
    """The forecasts (batch ``b``, speed ``s``, hybrid) from the lag ``window`` (:func:`blend`), then the device's
    interval band (:meth:`edge_app.intervals.DeviceBand.step`) scores ``pending`` (the forecast for this
    reading, true value ``y``) and issues the new forecast's interval. Returns the forecasts and the
    prediction record's ``"interval"``/``"anomaly"`` members. :func:`blend`'s steps written out in this frame
    (the hot path, as :func:`score`)."""
    if window is None:
        fc = made = None
    else:
        combiner = state.combiner
        h = combiner.predict_one(b, s, window) if _isfinite(b) and _isfinite(s) else _nan
        fc = (b, s, h)
        if _isfinite(h):  # :func:`pending_of`
            made = Pending(b, s, h, speed_version, combiner.context() if combiner.uses_window else None)
        else:
            made = None
    if horizon == 1:  # :func:`move_on`
        if fc is not None:
            state.pending = made
    else:
        ahead = state.ahead
        ahead.append(made)
        state.pending = ahead.popleft()
    band = state.band
    return fc, NO_BAND if band is None else band.step(pending, y, made, timestamp)


def blend(
    state: DeviceState, b: float, s: float, window: np.ndarray | None, speed_version: str, horizon: int
) -> tuple[tuple[float, float, float] | None, Pending | None]:
    """The forecasts (batch ``b``, speed ``s``, hybrid) from the lag ``window`` (None: not full yet, no forecast)
    and the :class:`Pending` made of them (None if none); the device's pending forecast moves on (with a
    ``horizon`` > 1 through its queue of forecasts ahead)."""
    if window is None:
        fc = made = None
    else:
        combiner = state.combiner
        h = combiner.predict_one(b, s, window) if _isfinite(b) and _isfinite(s) else _nan
        fc = (b, s, h)
        made = pending_of(combiner, b, s, h, speed_version)
    move_on(state, fc, made, horizon)
    return fc, made


def pending_of(combiner: Any, b: float, s: float, h: float, speed_version: str) -> Pending | None:
    """The :class:`Pending` of a finite hybrid forecast ``h`` (a context-keeping combiner learns its truth from
    the row it forecast from); None if ``h`` is not finite."""
    if _isfinite(h):
        return Pending(b, s, h, speed_version, combiner.context() if combiner.uses_window else None)
    return None


def move_on(state: DeviceState, fc: tuple | None, made: Pending | None, horizon: int) -> None:
    """The device's pending forecast after a reading whose forecasts were ``fc`` (None: none) and ``made``."""
    if horizon == 1:
        if fc is not None:
            state.pending = made
    else:  # the forecast joins the queue; the one for the next reading moves to pending
        ahead = state.ahead
        ahead.append(made)
        state.pending = ahead.popleft()


def restart_window(state: DeviceState, horizon: int) -> None:
    """A long gap in a device's readings: its forecasts in flight describe another past (the lag window is
    restarted by the caller: the paths build windows differently)."""
    state.pending = None
    state.ahead = deque([None] * (horizon - 1))


def consumer_error(msg: Any) -> None:
    """A consumed error event: a fatal one stops the app (no commit); the rest are logged."""
    err = msg.error()
    code = err.code()
    # e.g. fenced by another instance with the same thing name, or (static membership) by its own
    # rejoin after a broker restart: the consumer is dead, so stop (no commit) and be restarted
    if err.fatal() or code == KafkaError._FATAL:
        raise KafkaException(err)
    if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
        log.debug("consumer: %s", err)  # a topic not created yet
    elif code != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", err)


def reset_combiner(app: Any, state: DeviceState, weights: tuple[float, float]) -> None:
    """A combiner whose weights went non-finite would blend to null forever: start it afresh."""
    counters = app.counters
    counters.combiner_resets += 1
    if counters.combiner_resets == 1 or counters.combiner_resets % INTERNAL_ERROR_LOG_EVERY == 0:
        log.warning(
            "combiner of %s had weights %s: replaced (%d so far)",
            state.device,
            weights,
            counters.combiner_resets,
        )
    state.combiner = make_combiner(app.cfg.combination, spec=app.spec, warm=app.combiner_warm)
    if app.combiner_warm is not None:
        counters.combiner_warm_starts += 1


def drift(app: Any, state: DeviceState, timestamp: str, residual: float, weights: tuple[float, float]) -> None:
    """A drift alarm on ``state``'s device: count, close its window early (if configured), tell the cloud
    (with the combiner's ``weights`` at that reading)."""
    cfg = app.cfg
    app.counters.drift_events += 1
    early = cfg.windows.early_on_drift and app.spool.close(state.device, "drift") is not None
    log.info("drift on %s at %s (|residual| %.3f), early window: %s", state.device, timestamp, abs(residual), early)
    app.telemetry.event(
        "drift",
        device=state.device,
        timestamp=timestamp,
        residual=cfg.drift_residual,
        value=residual,
        early_window=early,
        weights=list(weights),
    )
