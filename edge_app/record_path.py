"""The per-record path (``process: record``): every step of a reading before the next reading's first.

The reference the default :mod:`edge_app.batch_path` is tested against (same forecasts, same
outputs in the same order: tests/edge_app/test_batch_path.py), and the path of the releases before
it. Per reading: admit it (else dead-letter it with the reason), :func:`~edge_app.steps.score` the
device's pending forecast, push it into the device's lag window, invoke both models on that window
(two TFLite invokes per reading), :func:`~edge_app.steps.forecast`, spool it for re-training,
encode and queue the prediction.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaException

from edge_app.kafka_io import DeliveryFailed
from edge_app.records import encode_prediction
from edge_app.steps import admit, consumer_error, forecast, restart_window, score
from model_contract import FeatureBuffer
from model_contract.bad_record import BadRecord


def process_records(app: Any, msgs: list) -> None:
    """Handle one consumed batch of :class:`edge_app.app.EdgeApp` ``app`` record by record."""
    cfg = app.cfg
    readings_topic = cfg.topics.readings
    pred_topic = cfg.topics.predictions
    spec = app.spec
    admission = app.admission
    serving = app.serving  # which models serve (edge_app.serving)
    batch_predict = serving.batch.model.predict_one
    speed_predict = serving.speed.model.predict_one
    versions = serving.versions
    spool_add = app.spool.add
    outputs = app.outputs
    produce = outputs.producer.produce
    dead = app.telemetry.dead
    clock = time.perf_counter
    counters = app.counters
    picked_ms = time.time() * 1000.0  # when this batch reached the loop (lag = picked - CreateTime)
    max_epoch = picked_ms / 1000.0 + admission.max_ahead_s
    max_gap = cfg.max_gap_s
    speed_version = versions[1]
    horizon = spec.horizon
    guard = serving.guard  # armed for the first forecasts after a swap (swap.SwapGuard)
    # seconds per stage (edge_app.stages.STAGES): one clock read between two stages of each record
    t_parse = t_feat = t_invoke = t_comb = t_spool = t_enc = t_prod = 0.0
    started = clock()
    cpu = time.thread_time()  # the loop thread's CPU time: what the stages cost, waits for a core left out
    records_before = counters.records_in
    for msg in msgs:
        if msg.error() is not None:
            consumer_error(msg)
            continue
        if msg.topic() != readings_topic:
            app.notice(msg)
            continue
        t0 = clock()
        counters.records_in += 1
        try:
            try:
                r, state, gap = admit(app, msg, max_epoch, max_gap)
            except BadRecord as exc:
                dead(msg, exc.reason, exc.detail)
                t_parse += clock() - t0
                continue
            if gap:
                state.buffer = FeatureBuffer(spec)  # a long gap: the lags no longer describe the recent past
                restart_window(state, horizon)
            t1 = clock()
            t_parse += t1 - t0
            pending = state.pending  # the forecasts made for this reading
            errors = score(app, state, r.target, r.timestamp, speed_version)
            t2 = clock()
            buffer = state.buffer
            buffer.push(r.values, r.epoch)
            t3 = clock()
            t_feat += t3 - t2
            t4 = t3
            b = s = 0.0
            window = None
            if buffer.ready:
                window = buffer.window
                b = batch_predict(window)
                s = speed_predict(window)
                t4 = clock()
                if guard.armed:
                    guard.observe(s)
                    if guard.due:  # the new speed model forecasts absurd values: back to the previous one now
                        app.roll_back_speed()
                        speed_predict = serving.speed.model.predict_one
                        versions = serving.versions
                        speed_version = versions[1]
                        s = speed_predict(window)
            fc, band = forecast(state, b, s, window, speed_version, horizon, pending, r.target, r.timestamp)
            t5 = clock()
            t_invoke += t4 - t3
            t_comb += t2 - t1 + t5 - t4
            spool_add(r, pending, versions[0], state.band)  # the reading, the forecasts made for it, its interval
            t6 = clock()
            t_spool += t6 - t5
            value = encode_prediction(
                r,
                fc,
                errors,
                state.combiner.weights,
                versions,
                (clock() - t0) * 1e6,
                picked_ms - msg.timestamp()[1],
                horizon,
                band,
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
    app.stages.add(counters.records_in - records_before, seconds, time.thread_time() - cpu)
