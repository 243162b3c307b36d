"""Against the real broker: a new device's combiner starts from the batch model's warm start (its first hybrid
forecasts differ from persistence and equal an offline context stack loaded from the same state), and starts
cold, with the reason logged, when the edge's combiner config differs from the one the state was learned with."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_app.combiners import make_combiner
from hybridstream.devtools.edge import collect, edge_config, expected_forecasts, produce, read_rows, reading_json
from model_contract import FeatureBuffer, Manifest, rows_to_matrix
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka

N = 40


def _offline_hybrid(rows, spec, batch, speed, config, warm) -> np.ndarray:
    """The combiner the edge should run, replayed offline with the same code (horizon 1, no swap)."""
    combiner = make_combiner(config, spec=spec, warm=warm)
    matrix = rows_to_matrix(rows, spec)
    buf, out, pending = FeatureBuffer(spec), np.full(len(rows), np.nan), None
    for i in range(len(rows)):
        if pending is not None:
            combiner.learn_one(*pending[:2], matrix[i, spec.target_index], pending[2])
        buf.push_row(matrix[i])
        if buf.ready:
            out[i] = combiner.predict_one(batch[i], speed[i], buf.window)
            pending = (batch[i], speed[i], combiner.context())
    return out


def _run(kafka_bootstrap, topic_prefix, edge_models, tmp_path, combination):
    rows = read_rows(edge_models.test_csv, 2000, N)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, combination=combination)
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "T1") for r in rows], [b"T1"] * N)
    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], N, timeout=60)
        counters = running.stop()
    return rows, preds, counters


def test_a_new_device_starts_from_the_batch_models_warm_start(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path, caplog
):
    manifest = Manifest.load(edge_models.batch.with_name("manifest.json"))
    warm = manifest.extra["combiner_warm_start"]
    assert warm["rows"] == 600 - 2  # the batch model's history (lags 1-2, H=1)
    with caplog.at_level(logging.INFO, logger="edge_app"):
        rows, preds, counters = _run(kafka_bootstrap, topic_prefix, edge_models, tmp_path, {"strategy": "dynamic"})
    assert counters["combiner_warm_starts"] == 1 and counters["predictions"] == N
    assert "start from batch" in caplog.text and "598 history rows" in caplog.text
    spec = manifest.feature_spec
    b, s = expected_forecasts(rows, edge_models.batch), expected_forecasts(rows, edge_models.speed)
    want = _offline_hybrid(rows, spec, b, s, {"strategy": "dynamic"}, warm)
    got = [p["forecast"]["hybrid"] if p["forecast"] else np.nan for p in preds]
    assert np.allclose(got[1:], want[1:], rtol=1e-4, atol=1e-4)
    actual = [p["actual"] for p in preds]
    assert abs(got[1] - actual[1]) > 1e-6  # its first forecast, before any truth: not persistence (cold would be)
    cold = _offline_hybrid(rows, spec, b, s, {"strategy": "dynamic"}, None)
    assert cold[1] == pytest.approx(actual[1]) and not np.allclose(got[1:], cold[1:], atol=1e-4)


def test_another_combiner_config_starts_cold_and_says_why(kafka_bootstrap, topic_prefix, edge_models, tmp_path, caplog):
    config = {"strategy": "dynamic", "method": "context", "half_life": 300}
    with caplog.at_level(logging.INFO, logger="edge_app"):
        rows, preds, counters = _run(kafka_bootstrap, topic_prefix, edge_models, tmp_path, config)
    assert counters["combiner_warm_starts"] == 0
    assert "start cold" in caplog.text and "half_life 300 != 1000" in caplog.text
    first = preds[1]
    assert first["forecast"]["hybrid"] == pytest.approx(first["actual"])  # persistence: cold
