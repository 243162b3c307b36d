"""The interval replay of eval run / eval benchmark / eval intervals: the summary's shape, the baseline on the
same rows, the horizon, and the flags' rule."""

from __future__ import annotations

import numpy as np

from hybridstream.devtools import interval_selection
from hybridstream.evaluation import interval_study
from hybridstream.evaluation.intervals import RollingQuantile, issued_half_widths, score
from hybridstream.evaluation.online_run import APPROACHES, RunResult
from model_contract import FeatureSpec
from model_contract.conformal import ConformalInterval, warm_start


def _result(n: int = 4000, horizon: int = 1) -> RunResult:
    rng = np.random.default_rng(1)
    y = np.cumsum(rng.normal(size=n))
    noise = rng.normal(size=n) * np.where(np.arange(n) < n // 2, 1.0, 3.0)  # the errors triple halfway
    forecasts = {k: y + noise for k in APPROACHES}
    for f in forecasts.values():
        f[:2] = np.nan
    warm = warm_start(rng.normal(size=500), horizon)
    return RunResult(FeatureSpec(horizon=horizon), 1000, y, forecasts, np.zeros(n), interval_warm=warm)


def test_the_json_line_carries_coverage_and_width_per_level(tmp_path):
    r = _result()
    dyn = r.summary()["approaches"]["dynamic"]
    assert set(dyn) >= {"rmse", "mae", "coverage", "width", "coverage_tenths"}
    assert set(dyn["coverage"]) == set(dyn["width"]) == {"0.8", "0.95"}
    assert abs(dyn["coverage"]["0.8"] - 0.8) < 0.02 and dyn["width"]["0.8"] < dyn["width"]["0.95"]
    assert len(dyn["coverage_tenths"]["0.95"]) == 10
    path = r.save(tmp_path / "r.npz")
    assert RunResult.load(path).interval_warm == r.interval_warm  # saved with the run
    res = interval_study.compare([path], (200,))["r"]
    assert res["conformal"]["interval_rows"] == res["rolling-200"]["interval_rows"]  # the same rows
    assert "conformal" in interval_study.markdown({"r": res})
    # the baselines' forecasts get the same intervals (their own warm starts, here none: cold), on the same rows
    assert {"persistence+conformal", "online_linear+conformal"} <= set(res)
    assert res["persistence+conformal"]["interval_rows"] == res["conformal"]["interval_rows"]
    assert r.summary()["approaches"]["persistence"]["coverage"] == r.intervals(approach="persistence")[1]["coverage"]


def test_an_interval_is_scored_only_when_its_truth_arrives():
    r = _result(600, horizon=3)
    f = r.forecasts["dynamic"]
    hw = issued_half_widths(r.y, f, ConformalInterval(), 3)
    manual, ci, issued = np.full((600, 2), np.nan), ConformalInterval(), {}
    for j in range(600):
        if j - 3 >= 0 and np.isfinite(f[j - 3]):
            ci.learn_one(f[j - 3] - r.y[j - 3], issued.pop(j - 3))
        if np.isfinite(f[j]):
            issued[j] = ci.half_widths()
            if issued[j] is not None:
                manual[j] = issued[j]
    assert np.array_equal(hw, manual, equal_nan=True)
    base = issued_half_widths(r.y, f, RollingQuantile(n=50), 3)
    assert score(r.y, f, base, (0.8, 0.95))["interval_rows"] > 500


def test_flags_need_min_run_readings_outside_in_a_row():
    y = np.array([0, 5, -5, 0, 5, 5, 5, 5, 5, 0], float)
    hw = np.ones((10, 2))
    assert interval_study.flagged(y, np.zeros(10), hw, min_run=4).tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]


def test_the_selection_rule_takes_the_smallest_largest_width_among_the_calibrated_then_the_best_mean():
    rows = [
        {"config": {"a": 1}, "max": 0.005, "mean": -0.02, "eligible": False},  # narrowest, but not calibrated
        {"config": {"a": 2}, "max": 0.010, "mean": -0.03, "eligible": True},
        {"config": {"a": 3}, "max": 0.0105, "mean": -0.05, "eligible": True},  # a tie on the largest: better mean
        {"config": {"a": 4}, "max": 0.020, "mean": -0.09, "eligible": True},
    ]
    assert interval_selection.choose(rows)["config"] == {"a": 3}
    assert interval_selection.choose(rows[:1]) is None
    rng = np.random.default_rng(0)
    streams = {"s": rng.standard_t(4, 3000) * np.repeat(rng.uniform(0.5, 2.0, 30), 100)}
    (row,) = interval_selection.evaluate(streams, {"lr": (0.04,)}, log=lambda m: None)
    assert set(row["relative_width"]) == {"s 0.8", "s 0.95"} and row["scale_step_worst_tenth"] < 0.05
