"""The trainer core: fixed seeds make the same window give the same model, byte for byte."""

from __future__ import annotations

import numpy as np

from model_contract import FeatureSpec, Scaler
from model_contract.runtime import TFLiteModel
from training_job.model import TrainConfig, TrainingCancelled, model_version, train_matrix, training_rows

from .conftest import SPEC, TINY

# the options' tests start from the config before issue 17 made instance_norm + shrink the defaults
PLAIN = TINY.replace(instance_norm=False, shrink=False)


def test_same_window_same_bytes_and_version(turbine_rows):
    m, _ = turbine_rows.window(0, 150)
    a = train_matrix(m, SPEC, TINY, name="speed", kind="speed")
    b = train_matrix(m.copy(), SPEC, TINY, name="speed", kind="speed")
    assert a.tflite == b.tflite and a.manifest.sha256 == b.manifest.sha256
    assert a.manifest.version == b.manifest.version == model_version(m, SPEC, TINY, "speed")
    assert model_version(m, SPEC, TINY, "batch") != a.manifest.version
    assert a.manifest.extra["epochs_run"] == TINY.epochs
    lite = TFLiteModel.from_manifest(a.tflite, a.manifest)
    assert np.isfinite(lite.predict_one(m[-2:]))


def test_scaler_is_fitted_on_the_training_rows_only(turbine_rows):
    # 150 rows, lags 1..2 -> 148 samples; the newest 30 are the holdout, so the 118 training
    # samples use rows 0..119 (lags and targets) and the holdout's targets are rows 120..149
    m, _ = turbine_rows.window(0, 150)
    assert training_rows(150, SPEC, TINY.holdout_fraction) == 120
    a = train_matrix(m, SPEC, TINY, name="speed", kind="speed")
    assert a.manifest.scaler == Scaler.fit(m[:120], SPEC.target_index)
    assert a.manifest.scaler != Scaler.fit(m, SPEC.target_index)
    changed = m.copy()
    changed[120:] += 50.0  # a wildly different holdout does not move the scaler (nor the training data)
    b = train_matrix(changed, SPEC, TINY, name="speed", kind="speed")
    assert b.manifest.scaler == a.manifest.scaler and b.manifest.version != a.manifest.version
    assert b.manifest.metrics["rmse"] > a.manifest.metrics["rmse"]  # ... the holdout score sees the shift


def test_cancel_stops_training(turbine_rows):
    m, _ = turbine_rows.window(0, 150)
    try:
        train_matrix(m, SPEC, TINY.replace(epochs=100), name="speed", kind="speed", cancel=lambda: True)
    except TrainingCancelled:
        return
    raise AssertionError("training was not cancelled")


def test_the_defaults_record_instance_norm_and_shrink_and_old_configs_keep_their_versions():
    """Issue 17 made ``instance_norm`` + ``shrink`` the defaults: a default config records both (its models never
    share a version with a model of the old defaults), and the old defaults still hash to the version they had
    before the flip (e644e6b8b5fb1019: ``model_version`` at 748d64c, trainer revision 3; f4832b2277922e0e at
    revision 4, which renamed every model: batch models publish their weights), so no cached model is mistaken."""
    recorded = TrainConfig().to_dict()
    assert recorded["instance_norm"] is True and recorded["shrink"] is True
    old = TrainConfig(instance_norm=False, shrink=False)
    assert not {"instance_norm", "shrink", "members", "ol_residual"} & set(old.to_dict())
    m = np.arange(40, dtype=float).reshape(8, 5)
    assert model_version(m, FeatureSpec(), old, "batch") == "f4832b2277922e0e"
    assert model_version(m, FeatureSpec(), TrainConfig(), "batch") != "f4832b2277922e0e"


def test_instance_norm_converts_to_builtin_ops_and_keeps_the_old_versions(turbine_rows):
    """RevIN-style centring inside the graph: the TFLite model matches Keras, serves the same windows; a config
    without it hashes as before (no cached model is renamed)."""
    m, _ = turbine_rows.window(0, 150)
    cfg = PLAIN.replace(instance_norm=True)
    a = train_matrix(m, SPEC, cfg, name="speed", kind="speed")
    assert a.manifest.parity_max_abs_diff < 1e-4 and a.manifest.hyperparameters["instance_norm"] is True
    assert np.isfinite(TFLiteModel.from_manifest(a.tflite, a.manifest).predict_one(m[-2:]))
    assert "instance_norm" not in PLAIN.to_dict() and a.manifest.version != model_version(m, SPEC, PLAIN, "speed")
    shifted = m.copy()
    shifted[:, : len(SPEC.columns)] += 3.0  # every column moved: the network sees the same centred window
    lite = TFLiteModel.from_manifest(a.tflite, a.manifest)
    assert abs(lite.predict_one(shifted[-2:]) - 3.0 - lite.predict_one(m[-2:])) < 1e-3


def test_shrink_scales_the_learned_change_by_a_holdout_fitted_factor(turbine_rows):
    m, _ = turbine_rows.window(0, 150)
    a = train_matrix(m, SPEC, PLAIN.replace(shrink=True), name="speed", kind="speed")
    b = train_matrix(m, SPEC, PLAIN, name="speed", kind="speed")
    k = a.manifest.extra["shrink"]
    assert 0.0 <= k <= 1.0 and a.manifest.parity_max_abs_diff < 1e-4 and "shrink" not in b.manifest.extra
    la, lb = TFLiteModel.from_manifest(a.tflite, a.manifest), TFLiteModel.from_manifest(b.tflite, b.manifest)
    last = m[-1, SPEC.target_index]
    assert abs((la.predict_one(m[-2:]) - last) - k * (lb.predict_one(m[-2:]) - last)) < 1e-3  # the same change x k
    assert a.manifest.metrics["holdout_rmse"] <= b.manifest.metrics["holdout_rmse"] + 1e-6  # never worse there


def test_a_seed_ensemble_is_one_graph_averaging_its_members(turbine_rows):
    """``members`` = 2: two networks trained alone (seeds 42, 43) joined in one builtin-op TFLite graph whose change
    is the mean of theirs (one invoke on the edge); a config without it hashes as before."""
    m, _ = turbine_rows.window(0, 150)
    ens = train_matrix(m, SPEC, PLAIN.replace(members=2), name="speed", kind="speed")
    one = train_matrix(m, SPEC, PLAIN, name="speed", kind="speed")  # seed 42: the first member
    other = train_matrix(m, SPEC, PLAIN.replace(seed=43), name="speed", kind="speed")
    assert ens.manifest.parity_max_abs_diff < 1e-4 and ens.manifest.hyperparameters["members"] == 2
    assert ens.manifest.extra["epochs_run"] == [PLAIN.epochs, PLAIN.epochs]
    assert "members" not in PLAIN.to_dict() and ens.manifest.version != one.manifest.version
    lites = [TFLiteModel.from_manifest(t.tflite, t.manifest) for t in (ens, one, other)]
    window = m[-2:]
    mean = (lites[1].predict_one(window) + lites[2].predict_one(window)) / 2
    assert abs(lites[0].predict_one(window) - mean) < 1e-3
    warm = train_matrix(m, SPEC, PLAIN.replace(members=2), name="speed", kind="speed", init_weights=ens.weights)
    assert warm.manifest.parity_max_abs_diff < 1e-4 and warm.manifest.extra["warm_start"] is True
