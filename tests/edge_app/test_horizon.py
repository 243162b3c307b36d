"""A model trained for horizon H: the edge scores each forecast against the reading H readings later."""

from __future__ import annotations

import json
import shutil

import pytest

from hybridstream.devtools.edge import collect, edge_config, produce, read_rows, reading_json
from model_contract.conformal import WARM_KEY, ConformalInterval
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka

H = 3
N = 60


def with_horizon(model, folder, horizon: int):
    """A copy of a fixture model whose manifest says it forecasts ``horizon`` readings ahead."""
    folder.mkdir(parents=True)
    shutil.copy(model, folder / "model.tflite")
    manifest = json.loads(model.with_name("manifest.json").read_text())
    manifest["feature_spec"]["horizon"] = horizon
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "model.tflite"


def test_forecasts_are_scored_horizon_readings_later(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    class Models:
        batch = with_horizon(edge_models.batch, tmp_path / "m" / "batch", H)
        speed = with_horizon(edge_models.speed, tmp_path / "m" / "speed", H)

    rows = read_rows(edge_models.test_csv, 1000, N)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, Models, windows={"early_on_drift": False})
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "d1") for r in rows], [b"d1"] * N)
    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], N, timeout=60)
        counters = running.stop()
    assert len(preds) == N and counters["predictions"] == N
    assert all(p["horizon"] == H for p in preds)
    for i, p in enumerate(preds):
        if i < 1:  # lags (1, 2): no forecast before the second reading
            assert p["forecast"] is None
        if i < 1 + H:  # the first forecast (made at reading 1) is for reading 1 + H
            assert p["error"] is None
            continue
        made = preds[i - H]["forecast"]
        for approach in ("batch", "speed", "hybrid"):
            assert p["error"][approach] == pytest.approx(made[approach] - p["actual"], abs=1e-9)
    # the combiner learned from the delayed truths
    assert preds[-1]["weights"]["batch"] != pytest.approx(0.5, abs=1e-6)
    # each interval is scored when its truth arrives, H readings later: the shared learner replayed so
    warm = json.loads(Models.batch.with_name("manifest.json").read_text())["extra"][WARM_KEY]
    ci, issued = ConformalInterval.from_state(warm), {}
    for i, p in enumerate(preds):
        if i >= H and preds[i - H]["forecast"]:
            ci.learn_one(preds[i - H]["forecast"]["hybrid"] - p["actual"], issued.pop(i - H))
        if p["forecast"]:
            issued[i] = ci.half_widths()
            w = p["interval"]["0.95"][1] - p["forecast"]["hybrid"]
            assert w == pytest.approx(issued[i][1], abs=1e-6 * abs(p["forecast"]["hybrid"]))  # bounds: 8 digits
    assert ci.scored == N - 1 - H
