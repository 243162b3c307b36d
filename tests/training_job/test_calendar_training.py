"""The trainer with calendar features: the window's matrix carries them, the model and manifest record
them, and the guardrail compares a calendar candidate with a current model without them (each on its own rows)."""

import numpy as np

from model_contract import FeatureSpec, build_supervised, default_spec
from model_contract.calendar import DAY_FEATURES, parse_timestamp
from model_contract.features import calendar_columns
from model_contract.runtime import TFLiteModel
from training_job.guardrail import judge
from training_job.model import train_matrix
from training_job.pipeline import TrainOptions, train_window
from training_job.windows import parse_window

from .conftest import TINY


def test_a_calendar_window_trains_a_model_whose_inputs_include_the_time_of_day(turbine_rows, tmp_path):
    spec = default_spec()
    window = parse_window(turbine_rows.csv(0, 400), spec, source="test")
    assert window.matrix.shape == (400, 9)
    stamps = [parse_timestamp(t) for t in turbine_rows.timestamps[:400]]
    tod = (np.asarray(stamps) % 86400) / 86400
    np.testing.assert_allclose(window.matrix[:, 5], np.sin(2 * np.pi * tod), atol=1e-9)
    out = train_window(window, TrainOptions(name="speed", kind="speed", spec=spec, cfg=TINY), out_dir=tmp_path)
    assert out.status == "trained", out.reason
    assert out.manifest["feature_spec"]["calendar"] == list(DAY_FEATURES)
    assert out.manifest["input_shape"] == [2, 9]


def test_the_guardrail_builds_each_models_rows_from_its_own_spec(turbine_rows):
    plain_spec, cal_spec = FeatureSpec(), default_spec()
    plain = parse_window(turbine_rows.csv(0, 400), plain_spec)
    cal = parse_window(turbine_rows.csv(0, 400), cal_spec)
    current = train_matrix(plain.matrix, plain_spec, TINY, name="speed", kind="speed")
    cand = train_matrix(cal.matrix, cal_spec, TINY, name="speed", kind="speed")
    columns = {c: cal.matrix[:, i] for i, c in enumerate(cal_spec.columns)} | calendar_columns(cal.epochs)
    verdict = judge(cand.tflite, cand.manifest, current.tflite, current.manifest, columns, holdout_rows=60)
    assert verdict.status in ("accepted", "refused") and verdict.holdout_rows == 60
    # the candidate's score is its forecasts of the newest rows from its own (calendar) features
    X, _ = build_supervised(cal.matrix[-62:], cal_spec, cand.manifest.scaler)
    lite = TFLiteModel(cand.tflite, cand.manifest.scaler, cal_spec.input_shape)
    pred = cand.manifest.scaler.inverse_target(lite.predict_scaled(X))
    rmse = float(np.sqrt(np.mean((pred - cal.matrix[-60:, 4]) ** 2)))
    assert abs(verdict.candidate_rmse - rmse) < 1e-9
