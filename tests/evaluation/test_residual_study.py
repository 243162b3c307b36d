"""The residual study (an LSTM on the online linear model's residual) on a generated CSV: JSON shape, every
approach scored, the residual samples and the shrink factor."""

from __future__ import annotations

import json

import numpy as np

from hybridstream.evaluation import residual_study
from model_contract import FeatureSpec, Scaler
from model_contract.online_linear import stream_forecasts
from tests.evaluation.test_benchmark import write_channels


def test_the_study_scores_every_approach(tmp_path, capsys):
    path = tmp_path / "plant.csv"
    write_channels(path, 600)  # train 120, validation 30, stream 450 rows
    argv = [str(path), "--targets", "temp", "--epochs", "2", "--burn-in", "20", "--variants", "inorm mse"]
    assert residual_study.main([*argv, "--window", "300"]) == 0  # one re-trained correction, from row 300 on
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"input", "horizon", "channels", "mean"} and list(out["channels"]) == ["temp"]
    want = {"persistence", "online_linear", "selected", "stack_ol", "stack_res", "stack_last_res", "rolling"}
    want |= {"stack_res_rolling"}
    want |= {"inorm mse +model", "inorm mse +a*model"}
    for ch in out["channels"].values():
        assert set(ch["mse"]) == want and all(np.isfinite(v) and v > 0 for v in ch["mse"].values())
        assert ch["rows"] == 450 and set(ch["holdout"]) == {"inorm mse"}
        assert all(0.0 <= h["a"] <= 1.0 for h in ch["holdout"].values())
        # the holdout's choice: never worse than the online linear model there (a = 0 is it)
        assert ch["selected"] == "online_linear" or ch["selected"].endswith("model")
    assert set(out["mean"]) == want


def test_residual_samples_are_the_online_linear_models_misses_in_scaled_units():
    rng = np.random.default_rng(1)
    m = np.cumsum(rng.normal(size=(200, 2)), axis=0)
    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), calendar=())
    r, _ = stream_forecasts(m, spec)
    scaler = Scaler.fit(m, 1)
    X, d, rows = residual_study.residual_samples(m, r, spec, scaler)
    assert X.shape == (198, 2, 2) and rows[0] == 2 and rows[-1] == 199
    np.testing.assert_allclose(d, (m[rows, 1] - r[rows]) / scaler.scale[1], rtol=1e-5)
    assert residual_study.shrink_factor(np.array([1.0, 2.0]), np.array([0.5, 1.0])) == 0.5
    assert residual_study.shrink_factor(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == 0.0
    assert residual_study.shrink_factor(np.zeros(2), np.ones(2)) == 1.0
