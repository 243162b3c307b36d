import math

import numpy as np
import pytest

from model_contract import FeatureBuffer, FeatureSpec, Manifest, Scaler, build_supervised, content_version
from model_contract.bad_record import BadRecord
from model_contract.features import rows_to_matrix


def test_online_buffer_matches_batch_features_for_any_lags():
    rng = np.random.default_rng(0)
    spec = FeatureSpec(columns=("a", "b", "c"), target="c", lags=(1, 3, 4))
    matrix = rng.normal(size=(50, 3))
    scaler = Scaler.fit(matrix, spec.target_index)
    X, y = build_supervised(matrix, spec, scaler)
    buf = FeatureBuffer(spec)
    scaled = np.empty(spec.input_shape)
    online = []
    for row in matrix[:-1]:
        buf.push(row)
        if buf.ready:
            online.append(scaler.transform_into(buf.window, scaled).copy())
    np.testing.assert_allclose(np.stack(online), X, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, scaler.transform(matrix)[spec.max_lag :, 2], rtol=1e-6)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"a": 1, "b": 2}, "missing_field"),
        ({"a": 1, "b": 2, "c": "x"}, "non_numeric"),
        ({"a": 1, "b": None, "c": 3}, "non_numeric"),
        ({"a": 1, "b": True, "c": 3}, "non_numeric"),
        ({"a": 1, "b": float("nan"), "c": 3}, "not_finite"),
        ({"a": "inf", "b": 2, "c": 3}, "not_finite"),
    ],
)
def test_bad_values_raise_with_a_reason(record, reason):
    spec = FeatureSpec(columns=("a", "b", "c"), target="c")
    with pytest.raises(BadRecord) as err:
        spec.parse_values(record)
    assert err.value.reason == reason
    with pytest.raises(BadRecord, match="row 1"):
        rows_to_matrix([{"a": 1, "b": 2, "c": 3}, record], spec)


def test_manifest_round_trip_and_content_version():
    spec = FeatureSpec()
    scaler = Scaler.fit(np.arange(10.0).reshape(2, 5), spec.target_index)
    m = Manifest(
        name="speed",
        version=content_version(b"w"),
        sha256="0" * 64,
        feature_spec=spec,
        scaler=scaler,
        input_shape=(2, 5),
        metrics={"rmse": 1.5},
    )
    back = Manifest.from_json(m.to_json())
    assert back == m
    assert content_version(b"w") != content_version(b"w2")
    assert math.isclose(scaler.inverse_target(scaler.transform_target(7.0)), 7.0)


def test_feature_spec_rejects_nonsense():
    with pytest.raises(ValueError):
        FeatureSpec(columns=("a",), target="b")
    with pytest.raises(ValueError):
        FeatureSpec(columns=("a",), target="a", lags=(0,))


def test_horizon_shifts_the_targets_and_round_trips():
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(40, 3))
    one = FeatureSpec(columns=("a", "b", "c"), target="c", lags=(1, 2))
    six = FeatureSpec(columns=("a", "b", "c"), target="c", lags=(1, 2), horizon=6)
    scaler = Scaler.fit(matrix, 2)
    X1, y1 = build_supervised(matrix, one, scaler)
    X6, y6 = build_supervised(matrix, six, scaler)
    # the same inputs, the target 5 rows later: sample i reads rows i, i+1 and forecasts row i + 2 + 5
    np.testing.assert_allclose(X6, X1[: len(X6)])
    np.testing.assert_allclose(y6, scaler.transform(matrix)[2 + 5 :, 2], rtol=1e-6)
    assert len(X6) == 40 - 2 - 5
    assert FeatureSpec.from_dict(six.to_dict()) == six and six.to_dict()["horizon"] == 6
    assert "horizon" not in one.to_dict() and FeatureSpec.from_dict(one.to_dict()).horizon == 1
    assert build_supervised(matrix[:7], six, scaler)[0].shape == (0, 2, 3)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="horizon"):
            FeatureSpec(horizon=bad)
