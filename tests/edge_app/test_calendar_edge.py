"""The edge app with models of the product's default spec (time-of-day calendar features), against the
real broker: each forecast is what the model gives for the lag window built from the readings' values
AND their timestamps (UTC), exactly as the trainer built its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from hybridstream.devtools.edge import collect, edge_config, expected_forecasts, produce, read_rows, reading_json
from model_contract import FeatureBuffer, Manifest, default_spec
from model_contract.calendar import parse_timestamp
from model_contract.runtime import TFLiteModel
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka
N = 60


def test_the_edge_serves_a_calendar_model_with_the_readings_time_of_day(
    kafka_bootstrap, topic_prefix, calendar_models, turbine_dir, tmp_path
):
    manifest = Manifest.load(calendar_models.batch.with_name("manifest.json"))
    assert manifest.feature_spec == default_spec() and tuple(manifest.input_shape) == (2, 9)
    rows = read_rows(turbine_dir / "test.csv", 1000, N)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, calendar_models, windows={"early_on_drift": False})
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "T1") for r in rows], [b"T1"] * N)
    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], N, timeout=60)
        counters = running.stop()
    assert counters["predictions"] == N and counters["deadletter"] == 0
    want_batch = expected_forecasts(rows, calendar_models.batch)
    want_speed = expected_forecasts(rows, calendar_models.speed)
    got = {p["timestamp"]: p for p in preds}
    for i, row in enumerate(rows[1:], start=1):
        f = got[row["Date_time"]]["forecast"]
        assert f["batch"] == pytest.approx(want_batch[i], rel=1e-5, abs=1e-5)
        assert f["speed"] == pytest.approx(want_speed[i], rel=1e-5, abs=1e-5)
    # the time of day is an input: the same values six hours later forecast something else
    spec, model = manifest.feature_spec, TFLiteModel.from_files(calendar_models.batch)
    shifted = FeatureBuffer(spec)
    for row in rows[:2]:
        shifted.push(spec.parse_values(row), parse_timestamp(row["Date_time"]) + 6 * 3600)
    assert abs(model.predict_one(shifted.window) - want_batch[1]) > 1e-6
    assert np.isfinite(want_batch[1:]).all()
