"""``TrainConfig.ol_residual``: the model's change learns what the online linear model misses (same graph)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_contract import build_supervised
from model_contract.online_linear import stream_forecasts
from model_contract.runtime import TFLiteModel
from training_job import ol_residual
from training_job.model import TrainConfig, train_matrix

from .conftest import SPEC, TINY


def test_the_model_is_trained_on_the_online_linear_models_misses(turbine_rows):
    m, _ = turbine_rows.window(0, 400)
    cfg = TINY.replace(ol_residual=True)
    a = train_matrix(m, SPEC, cfg, name="speed", kind="speed")
    plain = train_matrix(m, SPEC, TINY, name="speed", kind="speed")
    assert a.manifest.hyperparameters["ol_residual"] is True and "ol_residual" not in plain.manifest.hyperparameters
    assert a.manifest.version != plain.manifest.version
    scaler, ti, n_ho = a.manifest.scaler, SPEC.target_index, len(a.y_holdout)
    X, y = build_supervised(m, SPEC, scaler)
    r, _ = stream_forecasts(m, SPEC)
    rows = np.arange(SPEC.max_lag + SPEC.horizon - 1, len(m))[-n_ho:]
    # the holdout's targets: the newest value + the online linear model's miss (scaled units)
    want = X[-n_ho:, -1, ti] + (m[rows, ti] - r[rows]) / scaler.scale[ti]
    np.testing.assert_allclose(a.y_holdout, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ol_residual.targets(m, SPEC, scaler, X, y)[-n_ho:], a.y_holdout)
    # served as always (newest value + change); the change corrects r: the holdout RMSE is that of r + change
    lite = TFLiteModel.from_manifest(a.tflite, a.manifest)
    change = scaler.inverse_target(lite.predict_scaled(X[-n_ho:]).astype(np.float64)) - m[rows - SPEC.horizon, ti]
    rmse = math.sqrt(float(np.mean((r[rows] + change - m[rows, ti]) ** 2)))
    assert math.isclose(a.manifest.metrics["rmse"], rmse, rel_tol=1e-4)
    assert ol_residual.burn_in_samples(SPEC, 318) == 238 and ol_residual.burn_in_samples(SPEC, 100) == 99
    with pytest.raises(ValueError, match="residual=True"):
        TrainConfig(ol_residual=True, residual=False)
