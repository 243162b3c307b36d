"""Calendar features: values at known instants, the one parser, the spec, and serving == training."""

import json
import math

import numpy as np
import pytest

from model_contract import FeatureBuffer, FeatureSpec, Manifest, Scaler, build_supervised, default_spec
from model_contract.bad_record import BadRecord
from model_contract.calendar import (
    CALENDAR_FEATURES,
    DAY_FEATURES,
    calendar_row,
    parse_calendar_option,
    parse_timestamp,
)
from model_contract.features import calendar_matrix, rows_to_matrix, with_calendar

MIDNIGHT = parse_timestamp("2017-01-14T00:00:00Z")


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2017-01-14T00:00:00", (0.0, 1.0, 0.0, 1.0)),
        ("2017-01-14T06:00:00", (1.0, 0.0, 0.0, -1.0)),
        ("2017-01-14 12:00:00", (0.0, -1.0, 0.0, 1.0)),
        ("2017-01-14T20:00:00+02:00", (-1.0, 0.0, 0.0, -1.0)),  # 18:00 UTC: the UTC phase, not the wall clock's
        (MIDNIGHT + 3 * 3600, (math.sqrt(0.5), math.sqrt(0.5), 1.0, 0.0)),
    ],
)
def test_time_of_day_features_at_known_instants(stamp, expected):
    row = calendar_row(parse_timestamp(stamp), DAY_FEATURES)
    np.testing.assert_allclose(row, expected, atol=1e-12)


def test_year_features_and_the_vectorised_form_agree_with_the_scalar_one():
    assert calendar_row(0.0, ("year_sin1", "year_cos1")) == [0.0, 1.0]  # 1970-01-01 is phase 0
    half_year = parse_timestamp("1970-07-02T15:00:00")
    assert calendar_row(half_year, ("year_cos1",))[0] == pytest.approx(-1.0, abs=1e-4)
    epochs = np.random.default_rng(0).uniform(0, 2e9, size=200)
    vec = calendar_matrix(epochs, CALENDAR_FEATURES)
    scalar = np.array([calendar_row(float(t), CALENDAR_FEATURES) for t in epochs])
    np.testing.assert_allclose(vec, scalar, atol=1e-12)


def test_names_are_checked_and_the_cli_option_parses():
    with pytest.raises(ValueError, match="valid: day_sin1"):
        FeatureSpec(calendar=("hour_sin",))
    with pytest.raises(ValueError, match="distinct"):
        FeatureSpec(calendar=("day_sin1", "day_sin1"))
    assert parse_calendar_option("day") == DAY_FEATURES
    assert parse_calendar_option("none") == ()
    assert parse_calendar_option("year_sin1, day_cos1") == ("year_sin1", "day_cos1")
    with pytest.raises(ValueError, match="unknown"):
        parse_calendar_option("weekday")


def test_spec_features_shape_and_round_trip():
    spec = default_spec()
    assert spec.features == (*spec.columns, *DAY_FEATURES)
    assert spec.input_shape == (2, 9) and spec.target_index == 4
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["calendar"] == list(DAY_FEATURES)
    old = FeatureSpec().to_dict()
    assert "calendar" not in old  # a spec without calendar writes what every older manifest holds
    assert FeatureSpec.from_dict(old) == FeatureSpec() and FeatureSpec.from_dict(old).calendar == ()
    assert with_calendar(spec, ()) == FeatureSpec() and with_calendar(FeatureSpec(), DAY_FEATURES) == spec


def test_an_old_manifest_without_calendar_still_parses_and_equals():
    spec = FeatureSpec()
    m = Manifest(
        name="batch",
        version="v1",
        sha256="0" * 64,
        feature_spec=spec,
        scaler=Scaler.identity(5, 4),
        input_shape=(2, 5),
    )
    data = json.loads(m.to_json())
    assert "calendar" not in data["feature_spec"]
    assert Manifest.from_json(json.dumps(data)) == m


def _rows(n, start=MIDNIGHT, step=600.0):
    rng = np.random.default_rng(1)
    return [
        {"Date_time": f"{np.datetime64(int(start + i * step), 's')}", "a": float(x), "b": float(y)}
        for i, (x, y) in enumerate(rng.normal(size=(n, 2)))
    ]


def test_rows_to_matrix_adds_calendar_columns_from_each_timestamp():
    spec = FeatureSpec(columns=("a", "b"), target="b", calendar=("day_sin1", "day_cos1"))
    rows = _rows(4, step=6 * 3600.0)
    m = rows_to_matrix(rows, spec)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m[:, 2:], [[0, 1], [1, 0], [0, -1], [-1, 0]], atol=1e-12)
    np.testing.assert_array_equal(m[:, :2], [[r["a"], r["b"]] for r in rows])


@pytest.mark.parametrize(("stamp", "detail"), [(None, "missing Date_time"), ("yesterday", "'yesterday'")])
def test_rows_to_matrix_refuses_a_row_without_a_usable_timestamp(stamp, detail):
    spec = FeatureSpec(columns=("a", "b"), target="b", calendar=DAY_FEATURES)
    rows = _rows(3)
    if stamp is None:
        del rows[1]["Date_time"]
    else:
        rows[1]["Date_time"] = stamp
    with pytest.raises(BadRecord, match=f"row 1: .*{detail}") as err:
        rows_to_matrix(rows, spec)
    assert err.value.reason == "bad_timestamp"
    rows[1].pop("Date_time", None)
    assert rows_to_matrix(rows, FeatureSpec(columns=("a", "b"), target="b")).shape == (3, 2)  # no calendar: not needed


@pytest.mark.parametrize("lags", [(1, 2), (1, 3, 6)])
def test_online_buffer_with_calendar_matches_batch_features(lags):
    spec = FeatureSpec(columns=("a", "b"), target="b", lags=lags, calendar=DAY_FEATURES + ("year_sin1",))
    rows = _rows(60)
    matrix = rows_to_matrix(rows, spec)
    scaler = Scaler.fit(matrix, spec.target_index)
    assert all(s > 0.1 for s in scaler.scale[2:6])  # time-of-day sin/cos over 10 h: a sensible scale
    X, y = build_supervised(matrix, spec, scaler)
    buf, rebuilt = FeatureBuffer(spec), FeatureBuffer(spec)
    scaled = np.empty(spec.input_shape)
    online = []
    for row, full in zip(rows[:-1], matrix[:-1], strict=True):
        buf.push([row["a"], row["b"]], parse_timestamp(row["Date_time"]))
        rebuilt.push_row(full)
        np.testing.assert_array_equal(buf.window, rebuilt.window)
        if buf.ready:
            online.append(scaler.transform_into(buf.window, scaled).copy())
    np.testing.assert_allclose(np.stack(online), X, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, scaler.transform(matrix)[spec.max_lag :, spec.target_index], rtol=1e-6)


def test_buffer_needs_the_epoch_with_calendar_and_full_rows_for_push_row():
    buf = FeatureBuffer(FeatureSpec(columns=("a", "b"), target="b", calendar=DAY_FEATURES))
    with pytest.raises(ValueError, match="epoch"):
        buf.push([1.0, 2.0])
    with pytest.raises(ValueError, match="rows have 6"):
        buf.push_row([1.0, 2.0])
    assert buf.width == 6


def test_online_linear_reads_the_calendar_features_once():
    from model_contract.online_linear import OnlineLinear

    spec = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2), calendar=DAY_FEATURES)
    assert spec.linear_inputs() == (0, 1, 6, 7, 8, 9, 10, 11)
    assert FeatureSpec(columns=("a", "b"), target="b").linear_inputs() == (0, 1, 2, 3)
    rows = _rows(400)
    m = rows_to_matrix(rows, spec)
    ours, flat = OnlineLinear.for_spec(spec), OnlineLinear(target_index=3)  # the target's newest value: flat[3]
    buf = FeatureBuffer(spec)
    for t in range(len(m) - 1):
        buf.push_row(m[t])
        if buf.ready:
            w = buf.window
            manual = np.concatenate([w[0, :2], w[1, :2], w[1, 2:]])[None, :]  # columns at each step, calendar once
            assert ours.predict_one(w) == flat.predict_one(manual)
            ours.learn_one(w, m[t + 1, 1])
            flat.learn_one(manual, m[t + 1, 1])
    assert ours.n == flat.n == len(m) - 2 and np.array_equal(ours.weights, flat.weights)
