"""The guardrail at a horizon other than 1: it scores on the window's tail with targets H rows ahead.

Two TFLite models are built without training (fast, exact): the untrained residual network is the
persistence forecast (its ``change`` layer starts at zero, see training_job/model.py), and the same
network with a constant offset on that layer is a broken model.
"""

from __future__ import annotations

import numpy as np
import pytest

from model_contract import FeatureSpec, Manifest, Scaler, sha256_bytes
from training_job.guardrail import evaluate, judge
from training_job.model import TrainConfig, build_model, export_tflite

H = 3
SPEC3 = FeatureSpec(horizon=H)
CFG = TrainConfig(lstm_units=4, dense_units=2)
HOLDOUT = 80


def _model(matrix: np.ndarray, spec: FeatureSpec, offset: float, version: str) -> tuple[bytes, Manifest]:
    """A residual network forecasting the newest target value + ``offset`` (scaled units), as TFLite."""
    model = build_model(spec.input_shape, CFG, target_index=spec.target_index)
    kernel, bias = model.get_layer("change").get_weights()
    model.get_layer("change").set_weights([kernel, bias + offset])
    tflite = export_tflite(model, spec.input_shape, CFG, target_index=spec.target_index)
    scaler = Scaler.fit(matrix, spec.target_index)
    manifest = Manifest(
        name="speed", version=version, sha256=sha256_bytes(tflite), feature_spec=spec, scaler=scaler,
        input_shape=spec.input_shape,
    )  # fmt: skip
    return tflite, manifest


@pytest.fixture(scope="module")
def window(turbine_rows) -> np.ndarray:
    return turbine_rows.window(1000, 400)[0]


@pytest.fixture(scope="module")
def models(window):
    return {
        "persistence": _model(window, SPEC3, 0.0, "persist3"),
        "broken": _model(window, SPEC3, 2.0, "broken3"),
        "persistence_h1": _model(window, FeatureSpec(), 0.0, "persist1"),
    }


def _persistence_rmse(y: np.ndarray, h: int, n: int) -> float:
    """RMSE of 'the value h readings before' over the last n targets."""
    return float(np.sqrt(np.mean((y[-n - h : -h] - y[-n:]) ** 2)))


def test_a_persistence_model_at_h3_gets_the_persistence_score_at_h3(window, models):
    y = window[:, SPEC3.target_index]
    expected = _persistence_rmse(y, H, HOLDOUT)
    assert abs(expected - _persistence_rmse(y, 1, HOLDOUT)) > 0.05 * expected  # the horizon matters here
    rmse, mae, n = evaluate(*models["persistence"], window, HOLDOUT)
    assert n == HOLDOUT
    assert rmse == pytest.approx(expected, rel=1e-4)
    assert mae == pytest.approx(float(np.mean(np.abs(y[-HOLDOUT - H : -H] - y[-HOLDOUT:]))), rel=1e-4)
    # the H=1 twin of the same network scores the H=1 persistence figure on the same tail
    rmse1, _, _ = evaluate(*models["persistence_h1"], window, HOLDOUT)
    assert rmse1 == pytest.approx(_persistence_rmse(y, 1, HOLDOUT), rel=1e-4)


def test_at_h3_a_broken_candidate_is_refused_and_persistence_accepted(window, models):
    columns = {c: window[:, i] for i, c in enumerate(SPEC3.columns)}
    expected = _persistence_rmse(window[:, SPEC3.target_index], H, HOLDOUT)
    refused = judge(*models["broken"], *models["persistence"], columns, HOLDOUT)
    assert refused.refused and refused.current_version == "persist3" and refused.holdout_rows == HOLDOUT
    assert refused.current_rmse == pytest.approx(expected, rel=1e-4)
    assert refused.candidate_rmse > refused.current_rmse * (1 + refused.margin)
    accepted = judge(*models["persistence"], *models["broken"], columns, HOLDOUT)
    assert accepted.status == "accepted" and accepted.candidate_rmse == pytest.approx(expected, rel=1e-4)
    first = judge(*models["broken"], None, None, columns, HOLDOUT)
    assert first.status == "first" and not first.refused


def test_a_current_model_of_another_horizon_is_not_compared(window, models):
    columns = {c: window[:, i] for i, c in enumerate(SPEC3.columns)}
    verdict = judge(*models["broken"], *models["persistence_h1"], columns, HOLDOUT)
    assert verdict.status == "skipped" and "horizon" in verdict.reason and verdict.current_rmse is None


def test_too_short_a_window_for_the_horizon_is_a_clear_error(window, models):
    with pytest.raises(ValueError, match="horizon 3"):
        evaluate(*models["persistence"], window[:4], HOLDOUT)  # lags 1,2 + horizon 3 need 5 rows for one target


def test_at_h3_with_calendar_features_the_window_columns_feed_each_model(turbine_rows):
    from model_contract import default_spec
    from model_contract.features import calendar_columns
    from training_job.windows import parse_window

    spec = default_spec(horizon=H)
    window = parse_window(turbine_rows.csv(1000, 400), spec)
    columns = {c: window.matrix[:, i] for i, c in enumerate(spec.columns)} | calendar_columns(window.epochs)
    persistence = _model(window.matrix, spec, 0.0, "persist3cal")
    broken = _model(window.matrix, spec, 2.0, "broken3cal")
    verdict = judge(*broken, *persistence, columns, HOLDOUT)
    expected = _persistence_rmse(window.matrix[:, spec.target_index], H, HOLDOUT)
    assert verdict.refused and verdict.current_rmse == pytest.approx(expected, rel=1e-4)
