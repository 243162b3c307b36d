"""The demo's second baseline: ``online_linear``, computed offline from the replayed readings with the
batch model's feature spec, scored beside the edge's approaches, in the table, the plots and results.json."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from hybridstream.demo.report import summary_table, write_report
from hybridstream.demo.results import accuracy, error_series, online_linear_errors, with_online_linear
from hybridstream.evaluation.baselines import online_linear_forecasts
from model_contract import FeatureSpec, rows_to_matrix

SPEC = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2))
T0 = datetime(2017, 6, 16, tzinfo=UTC)


def _stream(n: int = 1500, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Readings where y(t) = y(t-1) + 0.5 a(t-1): linear in the lag window, so an online linear model
    learns it and beats persistence (whose error is the whole change)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = y[t - 1] + 0.5 * a[t - 1] + 0.01 * rng.normal()
    ts = [(T0 + timedelta(minutes=10 * i)).isoformat() for i in range(n)]
    readings = [{"device": "d1", "Date_time": ts[i], "a": float(a[i]), "y": float(y[i])} for i in range(n)]
    return readings, y


def _records(readings: list[dict], horizon: int = 1) -> list[dict]:
    """The edge's prediction records: LSTM stand-ins that forecast the last value plus a bias, from the
    second reading on (lags 1, 2: the first reading alone is no window)."""
    out = []
    for i, r in enumerate(readings):
        last = r["y"]
        fc = {"batch": last + 0.3, "speed": last - 0.2, "hybrid": last + 0.1} if i >= 1 else None
        rec = {"key": f"{r['device']}|{r['Date_time']}", "device": r["device"], "timestamp": r["Date_time"],
               "actual": last, "forecast": fc}  # fmt: skip
        if horizon != 1:
            rec["horizon"] = horizon
        out.append(rec)
    return out


def test_online_linear_is_scored_and_differs_from_persistence():
    readings, _ = _stream()
    preds = _records(readings)
    errors = with_online_linear(error_series(preds), preds, readings, SPEC)
    acc = accuracy(errors)
    ol, persistence = acc["online_linear"]["rmse"], acc["persistence"]["rmse"]
    assert ol is not None and math.isfinite(ol) and ol > 0
    assert acc["online_linear"]["n"] == acc["dynamic"]["n"]  # the same readings as the edge approaches
    assert ol < 0.5 * persistence  # it learnt the linear rule; persistence cannot
    # the first forecastable reading (after max_lag readings) has no earlier learning: it is persistence
    first = 2
    assert errors["online_linear"][first] == pytest.approx(errors["persistence"][first])


def test_at_a_horizon_each_forecast_is_the_one_made_h_readings_before():
    readings, y = _stream(600, seed=1)
    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), horizon=3)
    preds = _records(readings, horizon=3)
    err = online_linear_errors(preds, readings, spec)
    direct, _ = online_linear_forecasts(rows_to_matrix(readings, spec), spec)
    assert np.isnan(err[:4]).all() and np.isfinite(err[4:]).all()  # lags 1,2 + horizon 3: row 4 is the first
    np.testing.assert_allclose(err[4:], direct[4:] - y[4:])
    # a reading the edge never predicted (e.g. dead-lettered) gets no error; the others keep theirs
    again = online_linear_errors(preds[:100] + preds[101:], readings, spec)
    np.testing.assert_allclose(again[:100], err[:100])


def test_a_warm_up_changes_the_start_and_devices_do_not_mix():
    readings, _ = _stream(300, seed=2)
    preds = _records(readings)
    history = rows_to_matrix(_stream(2000, seed=3)[0], SPEC)
    cold = online_linear_errors(preds, readings, SPEC)
    warm = online_linear_errors(preds, readings, SPEC, warmup=history)
    assert np.sqrt(np.nanmean(warm[:100] ** 2)) < np.sqrt(np.nanmean(cold[:100] ** 2))
    other = [{**r, "device": "d2"} for r in _stream(300, seed=4)[0]]  # interleaved second device
    mixed = [x for pair in zip(readings, other, strict=True) for x in pair]
    np.testing.assert_allclose(online_linear_errors(preds, mixed, SPEC), cold)


def test_the_edges_own_online_linear_wins_and_no_spec_means_no_row():
    readings, _ = _stream(50)
    preds = _records(readings)
    for p in preds[1:]:
        p["forecast"]["online_linear"] = p["actual"] + 1.0
    errors = error_series(preds)
    assert with_online_linear(errors, preds, readings, SPEC)["online_linear"] is errors["online_linear"]
    bare = error_series(_records(readings))
    assert "online_linear" not in with_online_linear(bare, preds, readings, None)


def test_report_table_plots_and_results_carry_online_linear(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    readings, _ = _stream(400)
    preds = _records(readings)
    errors = with_online_linear(error_series(preds), preds, readings, SPEC)
    acc = accuracy(errors)
    scenario = {
        "approaches": {k: {"rmse": v["rmse"], "mae": v["mae"]} for k, v in acc.items()},
        "readings": 400, "predicted": 400, "deadletter": 0, "model_swaps": 0,
        "latency_ms": {"p50": 1.0, "p99": 2.0}, "model_freshness_s": {"p50": None, "max": None},
    }  # fmt: skip
    results = {"mode": "edge-cloud", "status": "ok", "wall_seconds": 1.0, "scenarios": {"none": scenario}}
    series = {"none": {"errors": errors, "weights": [0.5] * 400, "swap_rows": [], "drift_rows": [],
                       "change_points": [], "latency": {}}}  # fmt: skip
    legends: dict[str, list[str]] = {}
    real_savefig = Figure.savefig

    def spy(fig, path, *args, **kwargs):
        legend = fig.axes[0].get_legend()
        legends[str(path).rsplit("/", 1)[-1]] = [t.get_text() for t in legend.get_texts()] if legend else []
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    out = write_report(tmp_path / "demo-x", results, series, SimpleNamespace(rows=400, rate=40.0, window=100))
    assert {"persistence", "online_linear", "dynamic"} <= set(legends["rmse-none.png"])
    table = summary_table(results)
    head, _, row = table.splitlines()
    assert "| persistence RMSE | online_linear RMSE |" in head
    cells = [c.strip() for c in row.split("|")[1:-1]]
    ol_cell = cells[head.split("|")[1:-1].index(" online_linear RMSE ")]
    assert ol_cell.strip("*") == f"{acc['online_linear']['rmse']:.3f}" and ol_cell.startswith("**")  # the best
    saved = json.loads((out / "results.json").read_text())
    assert saved["scenarios"]["none"]["approaches"]["online_linear"]["rmse"] == acc["online_linear"]["rmse"]
    assert "online_linear" in (out / "report.md").read_text()


def test_the_demo_takes_the_spec_from_the_batch_manifest_and_warms_on_the_history(tmp_path):
    from hybridstream.demo import scenarios as sc
    from hybridstream.demo.run import Demo, DemoOptions
    from hybridstream.devtools.edge import read_rows
    from model_contract import Manifest, Scaler

    spec = FeatureSpec(horizon=2)
    demo = Demo(DemoOptions(scenarios=("step",), rows=300, out_root=tmp_path))
    demo.batch_dir = tmp_path / "batch"
    demo._baseline_spec()  # no manifest: the row is missing and the results say why
    assert demo.spec is None and "manifest.json" in demo.results["online_linear_error"]
    demo.batch_dir.mkdir()
    Manifest(name="batch", version="v", sha256="0", feature_spec=spec, scaler=Scaler.identity(5, 4),
             input_shape=spec.input_shape).save(demo.batch_dir / "manifest.json")  # fmt: skip
    demo._baseline_spec()
    assert demo.spec == spec and demo.warmup.shape == (len(read_rows(sc.HISTORY)), 5)
    assert demo.results["online_linear"]["feature_spec"]["horizon"] == 2
    # the scenario's replayed readings (the +8 degC step included) -> one error per predicted reading
    readings = [json.loads(m.value) for m in demo.scenarios[0].messages if m.key is not None]
    preds = [{"key": f"{r['device']}|{r['Date_time']}", "actual": r["Ot_avg"]} for r in readings]
    err = online_linear_errors(preds, readings, demo.spec, demo.warmup)
    assert np.isnan(err[:3]).all() and np.isfinite(err[3:]).all()  # lags 1,2 + horizon 2
    step = demo.scenarios[0].change_points[0]
    assert abs(err[step + 1]) > 5.0 > np.sqrt(np.mean(err[3:step] ** 2))  # the step itself is a surprise to it


def test_calendar_features_of_the_spec_come_with_it():
    readings, _ = _stream(300, seed=5)
    preds = _records(readings)
    cal = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), calendar=("day_sin1", "day_cos1"))
    assert rows_to_matrix(readings, cal).shape == (300, 4)  # the features built from each reading's timestamp
    err = online_linear_errors(preds, readings, cal)
    assert np.isnan(err[:2]).all() and np.isfinite(err[2:]).all()
    assert not np.allclose(err[10:], online_linear_errors(preds, readings, SPEC)[10:])  # other inputs, other model
