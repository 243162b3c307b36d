"""The batch-at-once path (``process: batch``, the default): each polled batch in stages, each stage once.

What the per-record path (:mod:`edge_app.record_path`) does reading by reading, this does stage
by stage over the whole batch, so the two TFLite models are invoked once per batch (a batch
dimension) instead of once per reading each:

1. **parse**: admit every reading (else dead-letter it with the reason), in order;
2. **features**: push each valid reading into its device's lag window, in order, and copy the
   window into row ``j`` of one (readings, steps, features) array: a device's row ``k`` holds its
   readings up to ``k`` (the ones before it in the same batch included);
3. **invoke**: each model forecasts every row at once (:meth:`~model_contract.runtime.TFLiteModel.predict_batch`,
   each forecast bit-equal to a batch of one's);
4. **combiner**: reading by reading (:func:`~edge_app.steps.score`, :func:`~edge_app.steps.forecast`, spool)
   when the linear models run the compiled kernel (the default where a C compiler exists), while a new speed
   model is on probation (the speed forecast checked: a rollback re-forecasts the rest of the batch with the
   previous model) and for a batch of one device. Otherwise (the numpy code: a Pi without a compiler) each
   device's readings in order, in rounds (:mod:`edge_app.rounds`: round ``r`` is the ``r``-th reading of every
   device present, and the context stacks' linear models of a round step together, one numpy call per step),
   learn the pending forecast's truth and forecast; then, in reading order, what crosses devices or reaches
   the outside (:func:`~edge_app.steps.account`: accuracy, drift alarms and their early window closes; the
   interval band's anomaly events) and the window spool;
5. **encode** every prediction, then **produce** them, in reading order.

State that changes inside a batch is each device's (lag window, pending forecast, combiner, detector,
interval band, window spool) and is only ever touched in that device's reading order, and what is shared
(totals, events, spool closes) in reading order, so the outputs, the forecasts and every device's state
equal the per-record path's (tests/edge_app/test_batch_path.py checks it on a real broker). A reading's
``latency_us`` is the time from the batch reaching the loop to its prediction's encoding.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from confluent_kafka import KafkaException

from edge_app import rounds
from edge_app.intervals import NO_BAND
from edge_app.kafka_io import DeliveryFailed
from edge_app.records import encode_prediction
from edge_app.steps import account, admit, consumer_error, forecast, restart_window, score
from model_contract import FeatureBuffer, online_linear_kernel
from model_contract.bad_record import BadRecord
from model_contract.online_linear_bank import OnlineLinearBank


class BatchBuffers:
    """The batch path's arrays, made once per app: the lag windows of a batch, both models' forecasts, and the
    bank the devices' context stacks step their linear models in (:mod:`edge_app.rounds`)."""

    __slots__ = ("windows", "rows", "batch", "speed", "bank")

    def __init__(self, size: int, input_shape: tuple[int, int]) -> None:
        self._alloc(size, input_shape)
        self.bank = OnlineLinearBank(capacity=4)  # doubled when a fifth device's model joins

    def _alloc(self, size: int, input_shape: tuple[int, ...]) -> None:
        self.windows = np.zeros((size, *input_shape), dtype=np.float64)
        self.rows = tuple(self.windows)  # one view per row, made once (indexing the array makes one per reading)
        self.batch = np.zeros(size, dtype=np.float64)
        self.speed = np.zeros(size, dtype=np.float64)

    def fit(self, size: int) -> None:
        """Room for ``size`` rows at least (a batch larger than the configured one: never in practice)."""
        if size > self.batch.shape[0]:
            self._alloc(size, self.windows.shape[1:])


def process_batch(app: Any, msgs: list) -> None:
    """Handle one consumed batch of :class:`edge_app.app.EdgeApp` ``app``, stage by stage."""
    cfg = app.cfg
    clock = time.perf_counter
    started = clock()
    cpu = time.thread_time()  # the loop thread's CPU time: what the stages cost, waits for a core left out
    readings_topic = cfg.topics.readings
    spec = app.spec
    admission = app.admission
    serving = app.serving  # which models serve (edge_app.serving)
    dead = app.telemetry.dead
    internal_error = app.telemetry.internal_error
    counters = app.counters
    picked_ms = time.time() * 1000.0  # when this batch reached the loop (lag = picked - CreateTime)
    max_epoch = picked_ms / 1000.0 + admission.max_ahead_s
    max_gap = cfg.max_gap_s
    horizon = spec.horizon

    # 1. parse/admit, in order: (msg, reading, state, gap)
    valid = []
    n_in = 0
    for msg in msgs:
        if msg.error() is not None:
            consumer_error(msg)
            continue
        if msg.topic() != readings_topic:
            app.notice(msg)
            continue
        n_in += 1
        try:
            r, state, gap = admit(app, msg, max_epoch, max_gap)
        except BadRecord as exc:
            dead(msg, exc.reason, exc.detail)
            continue
        except (DeliveryFailed, KafkaException):
            raise
        except Exception as exc:  # a bug or an input nobody thought of: this record only, never the app
            internal_error(msg, exc)
            continue
        valid.append((msg, r, state, gap))
    counters.records_in += n_in
    t_parse = clock()

    # 2. features: each device's lag window after each of its readings, one row per forecast
    buffers = app.batch_buffers
    buffers.fit(len(valid))
    rows = buffers.windows
    staged = []  # (msg, reading, state, gap, row or -1)
    m = 0
    for item in valid:
        r, state = item[1], item[2]
        try:
            if item[3]:
                state.buffer = FeatureBuffer(spec)  # a long gap: the lags no longer describe the recent past
            buffer = state.buffer
            buffer.push(r.values, r.epoch)
            if buffer.ready:
                rows[m] = buffer.window
                staged.append((*item, m))
                m += 1
            else:
                staged.append((*item, -1))
        except Exception as exc:
            internal_error(item[0], exc)
    t_feat = clock()

    # 3. invoke: every row through each model at once
    batch_out, speed_out = buffers.batch, buffers.speed
    if m:
        serving.batch.model.predict_batch(rows[:m], batch_out)
        serving.speed.model.predict_batch(rows[:m], speed_out)
    b_list = batch_out[:m].tolist()  # Python floats, as predict_one returns
    s_list = speed_out[:m].tolist()
    t_invoke = clock()

    # 4. combiner (+ window spool): each device's records in order; what crosses devices in reading order
    first = staged[0][2] if staged else None
    if (
        serving.guard.armed
        or online_linear_kernel.kernel() is not None
        or not any(item[2] is not first for item in staged)
    ):
        # a rollback may switch the speed model at any reading (all of it in reading order); the compiled kernel
        # (a model's step is one C call: nothing to step together, and one pass in reading order is the cheapest:
        # BENCHMARKS.md, issue 18); or one device only (a single reading: the 1,000/s latency phase; one turbine)
        done, t_spool = _combine_in_order(app, staged, rows, m, b_list, s_list, speed_out)
    else:
        done, t_spool = _combine_by_rounds(app, staged, rows, b_list, s_list, serving.versions)
    t_comb = clock()

    # 5. encode, then produce, in reading order
    values = []
    for msg, r, state, fc, errors, weights, vers, band in done:
        try:
            lag_ms = picked_ms - msg.timestamp()[1]
            value = encode_prediction(r, fc, errors, weights, vers, (clock() - started) * 1e6, lag_ms, horizon, band)
        except Exception as exc:
            internal_error(msg, exc)
            continue
        values.append((value, state.key))
    t_enc = clock()
    pred_topic = cfg.topics.predictions
    outputs = app.outputs
    produce = outputs.producer.produce
    for value, key in values:
        try:
            produce(pred_topic, value, key)
        except BufferError:
            outputs.produce(pred_topic, value, key)
    counters.predictions += len(values)
    t_prod = clock()
    seconds = (
        t_parse - started,
        t_feat - t_parse,
        t_invoke - t_feat,
        t_comb - t_invoke - t_spool,
        t_spool,
        t_enc - t_comb,
        t_prod - t_enc,
        0.0,
    )
    app.stages.add(n_in, seconds, time.thread_time() - cpu)


def _combine_in_order(
    app: Any, staged: list, rows: np.ndarray, m: int, b_list: list, s_list: list, speed_out: np.ndarray
) -> tuple[list, float]:
    """The combiner stage one reading after the other (with the compiled kernel; while a new speed model is on
    probation; one device): score the device's pending forecast, check the speed forecast if the guard is armed
    (a rollback re-forecasts the rest of the batch with the previous model), forecast, spool. Returns the done
    records and the seconds spent spooling."""
    clock = time.perf_counter
    horizon = app.spec.horizon
    serving = app.serving
    versions = serving.versions
    speed_version = versions[1]
    guard = serving.guard  # armed for the first forecasts after a swap (swap.SwapGuard)
    spool_add = app.spool.add
    internal_error = app.telemetry.internal_error
    views = app.batch_buffers.rows  # rows[j], made once
    done = []  # (msg, reading, state, forecast, errors, weights, versions, band)
    t_spool = 0.0
    for msg, r, state, gap, j in staged:
        try:
            if gap:
                restart_window(state, horizon)
            pending = state.pending  # the forecasts made for this reading
            errors = score(app, state, r.target, r.timestamp, speed_version)
            if j >= 0:
                b = b_list[j]
                s = s_list[j]
                if guard.armed:
                    guard.observe(s)
                    if guard.due:  # the new speed model forecasts absurd values: back to the previous one now
                        app.roll_back_speed()
                        versions = serving.versions
                        speed_version = versions[1]
                        serving.speed.model.predict_batch(rows[j:m], speed_out[j:m])  # this row on: the previous model
                        s_list[j:m] = speed_out[j:m].tolist()
                        s = s_list[j]
                fc, band = forecast(state, b, s, views[j], speed_version, horizon, pending, r.target, r.timestamp)
            else:
                fc, band = forecast(state, 0.0, 0.0, None, speed_version, horizon, pending, r.target, r.timestamp)
            t0 = clock()
            spool_add(r, pending, versions[0], state.band)  # the reading, the forecasts made for it, its interval
            t_spool += clock() - t0
            done.append((msg, r, state, fc, errors, state.combiner.weights, versions, band))
        except (DeliveryFailed, KafkaException):
            raise
        except Exception as exc:
            internal_error(msg, exc)
    return done, t_spool


def _combine_by_rounds(
    app: Any, staged: list, rows: np.ndarray, b_list: list, s_list: list, versions: tuple[str, str]
) -> tuple[list, float]:
    """The combiner stage in two passes (no rollback possible: the speed model is the same for the whole batch).

    A. In rounds, each the next reading of every device present (each device's readings in order, so
       every device's combiner, pending forecasts and lag windows go exactly as reading by reading): learn
       the pending forecast's truth, then forecast (:func:`edge_app.rounds.combine`: the context stacks'
       linear models of a round step together).
    B. In reading order, what crosses devices or reaches the outside: :func:`~edge_app.steps.account`
       (accuracy, drift alarms and their early window closes), the interval band (anomaly events) and the
       window spool. Returns the done records and the seconds spent spooling."""
    clock = time.perf_counter
    internal_error = app.telemetry.internal_error
    # A. per device, in rounds (edge_app.rounds)
    out = rounds.combine(app, staged, rows, b_list, s_list, versions[1], app.batch_buffers.bank)
    # B. in reading order
    spool_add = app.spool.add
    done = []  # (msg, reading, state, forecast, errors, weights, versions, band)
    t_spool = 0.0
    for msg, r, state, _gap, _j in staged:
        got = out[id(msg)]
        try:
            if isinstance(got, Exception):
                raise got
            pending, errors, same_speed, scored, fc, made, weights = got
            if errors is not None:
                account(app, state, errors, same_speed, r.timestamp, scored)
            band = NO_BAND if state.band is None else state.band.step(pending, r.target, made, r.timestamp)
            t0 = clock()
            spool_add(r, pending, versions[0], state.band)  # the reading, the forecasts made for it, its interval
            t_spool += clock() - t0
            done.append((msg, r, state, fc, errors, weights, versions, band))
        except (DeliveryFailed, KafkaException):
            raise
        except Exception as exc:
            internal_error(msg, exc)
    return done, t_spool
