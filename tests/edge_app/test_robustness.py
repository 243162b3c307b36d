"""Abnormal exits commit nothing; a combiner gone non-finite is replaced; metrics never carry NaN."""

from __future__ import annotations

import math

import pytest

import edge_app.state
from edge_app.combiners import make_combiner
from hybridstream.devtools.edge import collect, edge_config, produce, read_rows, reading_json, wait_for
from tests.edge_app.helpers import AppThread, committed_offset

pytestmark = pytest.mark.kafka


def test_an_exception_in_the_loop_exits_without_committing(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    rows = read_rows(edge_models.test_csv, 3200, 30)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "t1") for r in rows])
    running = AppThread(cfg)
    tick = running.app.spool.tick

    def exploding_tick(now=None):  # something outside the per-record guard fails after a batch was processed
        if running.app.counters.predictions:
            raise RuntimeError("simulated crash")
        tick(now)

    running.app.spool.tick = exploding_tick
    running.thread.start()
    running.thread.join(60)
    assert isinstance(running.error, RuntimeError)
    assert running.app.counters.predictions > 0
    # the processed batch was NOT committed: a restart replays it (before the fix _shutdown committed it)
    assert committed_offset(kafka_bootstrap, cfg["group_id"], cfg["topics"]["readings"]) < 0
    assert (tmp_path / "state" / "devices").is_dir() and not list((tmp_path / "state" / "devices").iterdir())


class _Poisoned:
    """A real combiner whose weights turn NaN after a few updates (what extreme inputs did to some)."""

    def __init__(self, after: int, spec=None) -> None:
        self._inner = make_combiner({"strategy": "dynamic"}, spec=spec)
        self._left = after
        self.uses_window = self._inner.uses_window

    @property
    def weights(self):
        return (math.nan, math.nan) if self._left <= 0 else self._inner.weights

    def predict_one(self, batch: float, speed: float, window=None) -> float:
        return math.nan if self._left <= 0 else self._inner.predict_one(batch, speed, window)

    def context(self):
        return self._inner.context()

    def learn_one(self, batch: float, speed: float, y: float, context=None) -> None:
        self._left -= 1
        self._inner.learn_one(batch, speed, y, context)

    def reset_speed(self) -> None:
        self._inner.reset_speed()


def test_a_combiner_gone_nan_is_replaced_and_metrics_stay_valid(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path, monkeypatch
):
    monkeypatch.setattr(edge_app.state, "make_combiner", lambda cfg, spec=None, warm=None: _Poisoned(10, spec))
    rows = read_rows(edge_models.test_csv, 3300, 60)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, metrics_interval_s=0.2)
    with AppThread(cfg) as running:
        produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "t1") for r in rows[:30]])
        assert wait_for(lambda: running.app.counters.predictions >= 30, timeout=30)
        metrics_before = len(collect(kafka_bootstrap, cfg["topics"]["metrics"], 2, timeout=10))
        produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "t1") for r in rows[30:]])
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], len(rows), timeout=30)
        assert wait_for(lambda: running.app.counters.predictions >= len(rows), timeout=30)
        counters = running.stop()  # before the fix: the app had died on NaN weights in a metrics record
    assert metrics_before >= 2
    assert counters["combiner_resets"] == 1
    assert counters["combiner_warm_starts"] == 2  # the device's combiner and its replacement: the batch warm start
    hybrid = [p["forecast"]["hybrid"] for p in preds[2:]]
    assert all(h is not None and math.isfinite(h) for h in hybrid)  # never null for good once replaced
    for p in preds:
        assert all(w is None or math.isfinite(w) for w in p["weights"].values())
