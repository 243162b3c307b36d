"""The hot loop of ``edge run``: consume a batch, forecast every record, produce, commit.

:func:`run` turns the loop until the app's ``stop`` is set: swap in a verified speed model
(between two batches), commit when due (:func:`commit_point`), consume what is queued,
:func:`process` it, tick the window spool, publish metrics and progress.

:func:`process` is the per-record path (about 50 us a record on a Pi-class core, most of it
the two TFLite invokes): admit the reading, score the device's :class:`~edge_app.state.Pending`
forecast against it (combiner, accuracy, drift), push it into the lag window, forecast the
next reading with both models, blend, spool it for re-training and queue the prediction.
Everything it needs is bound to a local first; no I/O waits (``produce`` only queues), no
per-record allocation beyond the records themselves, no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from edge_app import kafka_io, swap
from edge_app.admission import check_range, out_of_order
from edge_app.combiners import make_combiner
from edge_app.intervals import NO_BAND
from edge_app.kafka_io import DeliveryFailed
from edge_app.records import encode_prediction, parse_reading
from edge_app.state import DeviceState, Pending
from edge_app.telemetry import INTERNAL_ERROR_LOG_EVERY
from model_contract import FeatureBuffer
from model_contract.features import BadRecord

log = logging.getLogger("edge_app")

SPOOL_HOLD_MAX = 200_000  # rows held in memory while the window spool cannot write; then consuming pauses
SLOW_RECORD_S = 0.0002  # a record taking longer than this (normal: ~50 us) makes a slow turn worth logging


def process(app: Any, msgs: list) -> None:
    """Handle one consumed batch of :class:`edge_app.app.EdgeApp` ``app`` (produce() only queues)."""
    cfg = app.cfg
    readings_topic = cfg.topics.readings
    pred_topic = cfg.topics.predictions
    spec = app.spec
    devices = app.devices
    admission = app.admission  # its rules bound to locals: parse_reading + check_range inline (no extra call)
    default_device, min_epoch, bounds = admission.default_device, admission.min_epoch, admission.bounds
    batch_predict = app.batch.model.predict_one
    speed_predict = app.speed.model.predict_one
    versions = (app.batch.version, app.speed.version)
    totals = app.totals
    spool_add = app.spool.add
    outputs = app.outputs
    produce = outputs.producer.produce
    dead = app.telemetry.dead
    ridx = app.residual_index
    clock = time.perf_counter
    counters = app.counters
    picked_ms = time.time() * 1000.0  # when this batch reached the loop (lag = picked - CreateTime)
    max_epoch = picked_ms / 1000.0 + admission.max_ahead_s
    max_gap = cfg.max_gap_s
    speed_version = versions[1]
    touched = app.touched
    isfinite = math.isfinite
    horizon = spec.horizon  # forecasts are for the reading `horizon` readings ahead (DeviceState.ahead)
    guard = app.swap_guard  # armed for the first forecasts after a swap (swap.SwapGuard)
    # seconds per stage (edge_app.stages.STAGES): one clock read between two stages of each record
    t_parse = t_feat = t_invoke = t_comb = t_spool = t_enc = t_prod = 0.0
    started = clock()
    records_before = counters.records_in
    for msg in msgs:
        if msg.error() is not None:
            err = msg.error()
            code = err.code()
            # e.g. fenced by another instance with the same thing name, or (static membership) by its own
            # rejoin after a broker restart: the consumer is dead, so stop (no commit) and be restarted
            if err.fatal() or code == KafkaError._FATAL:
                raise KafkaException(err)
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.debug("consumer: %s", msg.error())  # a topic not created yet
            elif code != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            continue
        if msg.topic() != readings_topic:
            app.notice(msg)
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
                    state = app.new_device(r.device)
                if r.epoch <= state.last_epoch:
                    raise out_of_order(r, state.last_epoch, state.last_ts)
            except BadRecord as exc:
                dead(msg, exc.reason, exc.detail)
                t_parse += clock() - t0
                continue
            if max_gap is not None and r.epoch - state.last_epoch > max_gap and state.last_ts:
                state.buffer = FeatureBuffer(spec)  # a long gap: the lags no longer describe the recent past
                state.pending = None
                state.ahead = deque([None] * (horizon - 1))
                counters.gap_resets += 1
            state.last_epoch = r.epoch
            state.last_ts = r.timestamp
            touched.add(r.device)
            t1 = clock()
            t_parse += t1 - t0
            y = r.target
            pending = state.pending
            errors = None
            if pending is not None:
                errors = (pending.batch - y, pending.speed - y, pending.hybrid - y)
                if isfinite(errors[0]) and isfinite(errors[1]) and isfinite(errors[2]):
                    same_speed = pending.speed_version == speed_version
                    if same_speed:  # the speed forecast came from the model serving now
                        combiner = state.combiner
                        combiner.learn_one(pending.batch, pending.speed, y, pending.context)
                        w = combiner.weights
                        if not (isfinite(w[0]) and isfinite(w[1])):
                            reset_combiner(app, state, w)
                    state.stats.update(*errors)
                    totals.update(*errors)
                    if (ridx != 1 or same_speed) and state.detector.update(errors[ridx]):
                        drift(app, state, r.timestamp, errors[ridx])
            buffer = state.buffer
            t2 = clock()
            buffer.push(r.values, r.epoch)
            combiner = state.combiner
            t3 = clock()
            t_feat += t3 - t2
            t4 = t3
            if buffer.ready:
                window = buffer.window
                b = batch_predict(window)
                s = speed_predict(window)
                t4 = clock()
                if guard.armed:
                    guard.observe(s)
                    if guard.due:  # the new speed model forecasts absurd values: back to the previous one now
                        swap.rollback_swap(app)
                        speed_predict = app.speed.model.predict_one
                        versions = (app.batch.version, app.speed.version)
                        speed_version = versions[1]
                        s = speed_predict(window)
                h = combiner.predict_one(b, s, window) if isfinite(b) and isfinite(s) else math.nan
                forecast = (b, s, h)
                if isfinite(h):  # a context-keeping combiner learns its truth from the row it forecast from
                    made = Pending(b, s, h, speed_version, combiner.context() if combiner.uses_window else None)
                else:
                    made = None
            else:
                forecast = made = None
            if horizon == 1:
                if forecast is not None:
                    state.pending = made
            else:  # the forecast joins the queue; the one for the next reading moves to pending
                ahead = state.ahead
                ahead.append(made)
                state.pending = ahead.popleft()
            t5 = clock()
            t_invoke += t4 - t3
            t_comb += t2 - t1 + t5 - t4
            spool_add(r, pending, versions[0])  # the reading and the forecasts made for it
            t6 = clock()
            t_spool += t6 - t5
            band = state.band
            value = encode_prediction(
                r,
                forecast,
                errors,
                combiner.weights,
                versions,
                (clock() - t0) * 1e6,
                picked_ms - msg.timestamp()[1],
                horizon,
                NO_BAND if band is None else band.step(pending, y, made, r.timestamp),
            )
            t7 = clock()
            t_enc += t7 - t6
            try:
                produce(pred_topic, value, state.key)
            except BufferError:
                outputs.produce(pred_topic, value, state.key)
            counters.predictions += 1
            t_prod += clock() - t7
        except (DeliveryFailed, KafkaException):
            raise
        except Exception as exc:  # a bug or an input nobody thought of: this record only, never the app
            app.telemetry.internal_error(msg, exc)
    total = clock() - started
    timed = t_parse + t_feat + t_invoke + t_comb + t_spool + t_enc + t_prod
    seconds = (t_parse, t_feat, t_invoke, t_comb, t_spool, t_enc, t_prod, total - timed)
    app.stages.add(counters.records_in - records_before, seconds)


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


def drift(app: Any, state: DeviceState, timestamp: str, residual: float) -> None:
    """A drift alarm on ``state``'s device: count, close its window early (if configured), tell the cloud."""
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
        weights=list(state.combiner.weights),
    )


def commit_point(app: Any, block: bool = True) -> bool:
    """Commit the consumed offsets once every output produced so far is acknowledged.

    ``block=False`` commits only if the broker has already acknowledged everything (the
    usual case one loop turn later), so the hot loop never waits for a round trip;
    ``block=True`` waits for the acknowledgements first. The window spool is flushed and the
    touched devices' state saved before every commit. Returns True if it committed.
    """
    outputs = app.outputs
    if not outputs.acknowledged(None if block else 0):
        return False
    try:
        outputs.check()
    except DeliveryFailed as exc:
        app.counters.delivery_errors += exc.count
        raise
    if not app.spool.flush():  # disk full (or an I/O error): rows held in memory, nothing committed
        app.counters.spool_write_errors = app.spool.write_errors
        return False
    app.save_devices()
    kafka_io.commit(app.consumer, asynchronous=True)
    return True


def run(app: Any, max_seconds: float | None = None) -> None:
    """Turn the loop until ``app.stop`` is set (or ``max_seconds``); the caller shuts down."""
    cfg = app.cfg
    counters = app.counters
    started = time.monotonic()
    next_metrics = started + cfg.metrics_interval_s
    next_log = started + cfg.log_interval_s
    last_log_count = 0
    uncommitted = False
    last_commit = started
    commit_every = cfg.kafka.commit_interval_s
    commit_min = min(cfg.kafka.commit_min_interval_s, commit_every)
    size, poll_timeout = cfg.kafka.batch_size, cfg.kafka.poll_timeout_s
    consumer = app.consumer
    clock = time.perf_counter
    slow = cfg.log_slow_turn_ms / 1000.0
    while not app.stop.is_set():
        t0 = clock()
        loaded = app.swapper.take()
        if loaded is not None:
            swap.apply_swap(app, loaded)
        since = time.monotonic() - last_commit
        # positions here = everything processed so far
        if uncommitted and since >= commit_min and commit_point(app, block=since >= commit_every):
            uncommitted = False
            last_commit = time.monotonic()
        t1 = clock()
        if app.spool.degraded and app.spool.held_rows > SPOOL_HOLD_MAX:  # disk full for a while: stop taking input
            app.stop.wait(0.5)
            msgs = []
        else:
            msgs = kafka_io.consume_available(consumer, size, poll_timeout)
        t2 = clock()
        if msgs:
            app.process(msgs)
            counters.batches += 1
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
        app.spool.tick(now)
        if now >= next_metrics:
            app.publish_metrics()
            next_metrics = now + cfg.metrics_interval_s
        if now >= next_log:
            rate = (counters.records_in - last_log_count) / max(now - next_log + cfg.log_interval_s, 1e-9)
            last_log_count = counters.records_in
            log.info("progress %.0f rec/s %s", rate, json.dumps(counters.to_dict()))
            next_log = now + cfg.log_interval_s
        if max_seconds is not None and now - started >= max_seconds:
            break
