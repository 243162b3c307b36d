"""The hot loop of ``edge run``: consume a batch, forecast every record, produce, commit.

:func:`run` turns the loop until the app's ``stop`` is set: swap in a verified speed model
(between two batches), commit when due (:func:`commit_point`), consume what is queued,
:func:`process` it, tick the window spool, publish metrics and progress.

:func:`process` hands the batch to one of two paths with the same results: the batch path
(:mod:`edge_app.batch_path`, the default: each stage once for the whole batch, both models
invoked once per batch) or the per-record path (:mod:`edge_app.record_path`: every stage of a
reading before the next's, two invokes per reading). Both share the per-device steps
(:mod:`edge_app.steps`); no I/O waits (``produce`` only queues), no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from edge_app import kafka_io
from edge_app.batch_path import process_batch
from edge_app.kafka_io import DeliveryFailed
from edge_app.record_path import process_records

log = logging.getLogger("edge_app")

SPOOL_HOLD_MAX = 200_000  # rows held in memory while the window spool cannot write; then consuming pauses
SLOW_RECORD_S = 0.0002  # a record taking longer than this (normal: ~50 us) makes a slow turn worth logging


def process(app: Any, msgs: list) -> None:
    """Handle one consumed batch of :class:`edge_app.app.EdgeApp` ``app`` (produce() only queues): each
    stage for the whole batch at once (:mod:`edge_app.batch_path`, the default) or, with ``process:
    record``, every stage of a reading before the next one's (:mod:`edge_app.record_path`)."""
    if app.cfg.process == "record":
        process_records(app, msgs)
    else:
        process_batch(app, msgs)


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
            app.swap_speed(loaded)
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
