"""``hybridstream eval run`` on generated CSVs of another shape than the turbine files, and its error paths."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from hybridstream.cli import main
from hybridstream.evaluation.online_run import RunResult

APPROACHES = {"batch", "speed", "static", "dynamic", "persistence", "online_linear"}


def write_hourly(path, n: int, seed: int, start: datetime, nan_at: int | None = None) -> None:
    """Hourly readings: a daily cycle, a slow trend, two drivers; the target (last numeric column) follows them."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    temp = 10 + 5 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.2, n))
    humidity = 60 + 10 * np.cos(2 * np.pi * t / 24) + rng.normal(0, 1, n)
    load = 100 + 0.5 * temp + np.cumsum(rng.normal(0, 0.5, n))
    demand = np.zeros(n)
    for i in range(1, n):
        demand[i] = 0.8 * demand[i - 1] + 0.3 * temp[i - 1] + 0.05 * load[i - 1] + rng.normal(0, 0.3)
    lines = ["timestamp,site,temp,humidity,load,demand"]
    for i in range(n):
        stamp = (start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
        d = "nan" if nan_at == i else f"{demand[i]:.4f}"
        lines.append(f"{stamp},north,{temp[i]:.4f},{humidity[i]:.3f},{load[i]:.3f},{d}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def hourly(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    write_hourly(train, 1500, 1, datetime(2024, 1, 1))
    write_hourly(test, 1200, 2, datetime(2024, 3, 3))
    return train, test


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", "run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_run_scores_all_six_approaches_on_hourly_csvs(hourly, capsys, tmp_path):
    train, test = hourly
    code, out, err = run(
        capsys,
        "--train",
        str(train),
        "--test",
        str(test),
        "--window",
        "300",
        "--epochs",
        "2",
        "--horizon",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--speed-windows",
        "2",
        "--save",
        str(tmp_path / "run.npz"),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    # --speed-windows 2: still one speed model every 300 rows, each on the last 2 windows (the first: the one there is)
    models = RunResult.load(tmp_path / "run.npz").speed_models
    assert [(m["first_row"], m["serves_from"]) for m in models] == [(0, 300), (0, 600), (300, 900)]
    assert "speed model 3 (rows 301-900 of 1200)" in err
    assert set(summary) == {"approaches", "retrains", "rows", "horizon", "counters"}
    assert set(summary["approaches"]) == APPROACHES
    for name, scores in summary["approaches"].items():
        # the edge's intervals (model_contract.conformal) on the dynamic forecast, and the baselines' beside them
        with_intervals = name in ("dynamic", "persistence", "online_linear")
        intervals = {"coverage", "width", "coverage_tenths", "interval_rows"} if with_intervals else set()
        assert set(scores) == {"rmse", "mae"} | intervals
        assert np.isfinite(scores["rmse"]) and 0 < scores["mae"] <= scores["rmse"]
        if with_intervals:
            assert set(scores["coverage"]) == set(scores["width"]) == {"0.8", "0.95"}
            assert 0.5 < scores["coverage"]["0.8"] < 1 and 0 < scores["width"]["0.8"] < scores["width"]["0.95"]
    # speed models after rows 300, 600 and 900 (the stream ends at 1200); lags (1, 2) + horizon 2 -> 3 rows unscored
    assert summary["retrains"] == 3 and summary["horizon"] == 2 and summary["rows"] == 1200 - 3
    # the online learners beat persistence on this autoregressive target
    assert summary["approaches"]["online_linear"]["rmse"] < summary["approaches"]["persistence"]["rmse"]
    assert "timestamp column timestamp" in err and "target demand" in err  # detected, reported on stderr
    assert "site" not in err.split("columns ")[1].split(";")[0]  # the text column is not a feature
    assert "| dynamic |" in out
    # the default dynamic combiner's guard is counted; it started from the batch manifest's warm start, as a new
    # edge device does (every truth of the training file learned)
    counters = summary["counters"]
    assert {"dynamic_muted_batch", "dynamic_muted_speed", "dynamic_fallbacks"} <= set(counters)
    # and the default's correction layer (the truths it learned over the test stream; failed solves: none)
    assert counters["dynamic_correct_learned"] > 0 and counters["dynamic_correct_rejected"] == 0
    assert counters["dynamic_warmup_rows"] > 0
    assert f"starts from the batch model's warm start ({counters['dynamic_warmup_rows']} history rows)" in err


def write(path, text: str):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("train_text", "extra", "message"),
    [
        ("when,name\n2024-01-01 00:00:00,a\n2024-01-01 01:00:00,b\n", [], "no numeric columns"),
        (None, ["--target", "price"], "unknown target 'price'"),
        ("short", [], "5 rows; the batch model needs at least 100"),
        (None, ["--columns", "temp,nope"], "no column 'nope'"),
    ],
)
def test_eval_run_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, hourly, train_text, extra, message):
    train, test = hourly
    if train_text == "short":
        train = tmp_path / "short.csv"
        write_hourly(train, 5, 4, datetime(2024, 1, 1))
    elif train_text is not None:
        train = write(tmp_path / "bad.csv", train_text)
    code, out, err = run(capsys, "--train", str(train), "--test", str(test), *extra)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert out == ""


def test_eval_run_nan_in_the_stream_is_named(tmp_path, capsys, hourly):
    train, _ = hourly
    test = tmp_path / "nan.csv"
    write_hourly(test, 300, 3, datetime(2024, 3, 3), nan_at=41)
    code, _, err = run(capsys, "--train", str(train), "--test", str(test))
    assert code == 2 and "row 42, column 'demand'" in err and "NaN" in err


def test_eval_run_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "--train", str(tmp_path / "nope.csv"), "--test", str(tmp_path / "x.csv"))
    assert code == 2 and "no such file" in err
