"""The demo's figures come from the edge app's prediction records: errors pair a record's forecast
with the next record's actual; static and persistence come from the same records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridstream.demo.cloud_results import CloudResults
from hybridstream.demo.results import accuracy, error_series, percentiles, rolling_rmse, unique_predictions


def _rec(i: int, actual: float, batch: float | None, speed: float | None, hybrid: float | None, device="d1"):
    fc = None if batch is None else {"batch": batch, "speed": speed, "hybrid": hybrid}
    return {"key": f"{device}|2017-06-16T21:{i:02d}:00+02:00", "device": device,
            "timestamp": f"2017-06-16T21:{i:02d}:00+02:00", "actual": actual, "forecast": fc}  # fmt: skip


def test_errors_pair_each_forecast_with_the_next_actual():
    recs = [_rec(0, 10.0, None, None, None), _rec(1, 11.0, 12.0, 10.0, 11.5), _rec(2, 13.0, 14.0, 12.0, 13.0)]
    err = error_series(unique_predictions(recs))
    assert math.isnan(err["batch"][0]) and math.isnan(err["batch"][1])  # no forecast for readings 0 and 1
    assert err["batch"][2] == -1.0 and err["speed"][2] == -3.0 and err["dynamic"][2] == -1.5
    assert err["static"][2] == pytest.approx(0.7 * 12.0 + 0.3 * 10.0 - 13.0)
    assert err["persistence"][1] == -1.0 and err["persistence"][2] == -2.0
    acc = accuracy(err)
    assert acc["batch"] == {"rmse": 1.0, "mae": 1.0, "n": 1} and acc["speed"]["rmse"] == 3.0
    assert acc["persistence"]["n"] == 1  # scored on the same readings as the edge approaches


def test_replayed_duplicates_count_once_and_devices_never_mix():
    recs = [_rec(0, 1.0, 2.0, 2.0, 2.0), _rec(0, 1.0, 9.0, 9.0, 9.0), _rec(1, 3.0, 3.0, 3.0, 3.0),
            _rec(0, 5.0, 6.0, 6.0, 6.0, device="d2"), _rec(1, 6.0, 6.0, 6.0, 6.0, device="d2")]  # fmt: skip
    preds = unique_predictions(recs)
    assert len(preds) == 4 and preds[0]["forecast"]["batch"] == 2.0  # the first copy of a key wins
    err = error_series(preds)
    assert err["batch"][1] == -1.0 and math.isnan(err["batch"][2]) and err["batch"][3] == 0.0


def test_extra_edge_approaches_are_scored_too():
    recs = [_rec(0, 1.0, 1.0, 1.0, 1.0), _rec(1, 2.0, 1.0, 1.0, 1.0)]
    recs[0]["forecast"]["online_linear"] = 2.5
    err = error_series(recs)
    assert err["online_linear"][1] == 0.5


def test_rolling_rmse_and_percentiles():
    err = np.array([np.nan, 1.0, -1.0, 3.0])
    roll = rolling_rmse(err, 2)
    assert math.isnan(roll[0]) and roll[2] == 1.0 and roll[3] == pytest.approx(math.sqrt(5))
    assert percentiles([1, 2, 3, float("nan"), None], 50) == {"p50": 2.0}
    assert percentiles([], 50, 99) == {"p50": None, "p99": None}


def test_cloud_results_match_readings_messages_sharing_a_timestamp():
    obs = CloudResults("pi-1")
    for i in (1, 2):  # two messages sent in the same millisecond
        reading = {"device": "t1", "Date_time": f"2017-06-16T21:{i:02d}:00+02:00", "Ot_avg": float(i)}
        obs("hybridstream/pi-1/readings", {"timestamp": "T", "readings": [reading]})
    for b in (10.0, 20.0):
        obs("hybridstream/pi-1/results", {"timestamp": "T", "predictions": [{"batch": b, "hybrid": b,
            "weights": {"batch": 1.0}}], "models": {"batch": "batch/v1"}})  # fmt: skip
    obs("hybridstream/pi-2/results", {"timestamp": "T", "predictions": [{"batch": 0.0}]})  # another thing
    assert [r["actual"] for r in obs.records] == [1.0, 2.0]
    assert [r["forecast"]["speed"] for r in obs.records] == [10.0, 20.0]  # batch stands in until a speed model
    assert obs.keys == {"t1|2017-06-16T21:01:00+02:00", "t1|2017-06-16T21:02:00+02:00"}


def test_a_horizon_pairs_the_forecast_with_the_reading_that_many_ahead():
    recs = [_rec(i, float(i), 100.0 + i, 100.0 + i, 100.0 + i) for i in range(5)]
    for r in recs:
        r["horizon"] = 2
    err = error_series(recs)
    assert np.isnan(err["batch"][:2]).all()
    assert err["batch"][2] == (100.0 + 0) - 2.0 and err["batch"][4] == (100.0 + 2) - 4.0
    assert err["persistence"][3] == 1.0 - 3.0


def test_the_report_plots_the_forecast_band_and_the_flagged_readings(tmp_path):
    from hybridstream.demo.report import _plots
    from hybridstream.demo.results import band_series

    recs = []
    for i in range(60):
        rec = _rec(i % 60, float(i % 7), 1.0, 1.0, float(i % 7) + 0.1)
        rec |= {"horizon": 1, "interval": {"0.8": [i % 7 - 0.5, i % 7 + 0.7], "0.95": [i % 7 - 1.0, i % 7 + 1.2]}}
        rec["anomaly"] = {"level": 0.95, "distance": 2.0, "run": 4} if i == 30 else None
        recs.append(rec)
    band = band_series(recs)
    assert band["flagged"] == [30] and 0 <= band["coverage"]["0.8"] <= band["coverage"]["0.95"] <= 1
    series = {"s": {"errors": error_series(recs), "weights": [0.5] * 60, "swap_rows": [], "drift_rows": [],
                    "change_points": [], "latency": {}, "band": band}}  # fmt: skip
    assert "band-s.png" in _plots(tmp_path, series) and (tmp_path / "band-s.png").stat().st_size > 10_000
