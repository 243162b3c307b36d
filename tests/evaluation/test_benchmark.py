"""``hybridstream eval benchmark`` on a generated CSV: the protocol's cut, the JSON shape, every approach scored."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from hybridstream.cli import main
from hybridstream.evaluation import benchmark
from hybridstream.evaluation.csv_input import EvalInputError

APPROACHES = {"batch", "speed", "static", "dynamic", "persistence", "online_linear"}


def write_channels(path, n: int, seed: int = 3) -> None:
    """Hourly readings of two coupled channels with a daily cycle."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    a = 5 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.3, n))
    b = np.zeros(n)
    for i in range(1, n):
        b[i] = 0.7 * b[i - 1] + 0.4 * a[i - 1] + rng.normal(0, 0.5)
    start = datetime(2024, 1, 1)
    lines = ["date,load,temp"] + [
        f"{(start + timedelta(hours=i)):%Y-%m-%d %H:%M:%S},{a[i]:.4f},{b[i]:.4f}" for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_borders_follow_the_papers_loaders():
    assert benchmark.borders("ETTh1.csv", 17420) == (2880, 3600, 14400)
    assert benchmark.borders("x/ETTm2.csv", 69680) == (2880, 3600, 14400)  # OneNet keeps the rows for ETTm
    assert benchmark.borders("wth.csv", 1000) == (200, 250, 1000)  # 20 / 5 / 75 %
    assert benchmark.borders("wth.csv", 1000, [100, 200, 900]) == (100, 200, 900)
    with pytest.raises(EvalInputError, match="do not fit"):
        benchmark.borders("ETTh1.csv", 5000)  # too short for the ETT borders
    assert benchmark.published("data/ETTh2.csv", 1)["OneNet"] == 0.380
    assert benchmark.published("ETTh1.csv", 1) == {}


def test_benchmark_scores_every_approach_on_every_channel(tmp_path, capsys):
    path = tmp_path / "plant.csv"
    write_channels(path, 600)  # train 120, validation 30, stream 450 rows
    code = main(["eval", "benchmark", str(path), "--window", "300", "--epochs", "1", "--cache-dir", "none", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert set(summary) == {"file", "borders", "horizon", "window", "targets", "channels", "mean", "rows", "published"}
    assert summary["borders"] == [120, 150, 600] and summary["targets"] == ["load", "temp"]
    assert summary["rows"] == 450 and summary["published"] == {}
    for scores in [*summary["channels"].values(), summary["mean"]]:
        assert set(scores) == APPROACHES
        for v in scores.values():
            assert {"mse", "mae"} <= set(v) and np.isfinite(v["mse"]) and v["mse"] > 0
    with_intervals = ("dynamic", "persistence", "online_linear")  # model_contract.conformal's, the baselines' too
    for ch in summary["channels"].values():
        assert all(set(ch[k]["coverage"]) == set(ch[k]["width"]) == {"0.8", "0.95"} for k in with_intervals)
        assert all(set(v) == {"mse", "mae"} for k, v in ch.items() if k not in with_intervals)
    mean_dyn = np.mean([summary["channels"][c]["dynamic"]["mse"] for c in ("load", "temp")])
    assert summary["mean"]["dynamic"]["mse"] == pytest.approx(mean_dyn)
    assert "| **mean** |" in out.out and "No published figures" in out.out


def test_benchmark_errors_are_clear(tmp_path, capsys):
    path = tmp_path / "plant.csv"
    write_channels(path, 600)
    assert main(["eval", "benchmark", str(path), "--target", "nope"]) == 2
    assert "target 'nope'" in capsys.readouterr().err
    assert main(["eval", "benchmark", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_study_options_refuse_bad_values_before_any_training(tmp_path, capsys):
    path = tmp_path / "plant.csv"
    write_channels(path, 600)
    base = ["eval", "benchmark", str(path), "--cache-dir", "none"]
    assert main([*base, "--faults", "melted"]) == 2
    assert "unknown fault" in capsys.readouterr().err
    assert main([*base, "--variants", "{not json"]) == 2
    assert "--variants: not JSON" in capsys.readouterr().err
    assert main([*base, "--train-config", '{"lstm_unitz": 3}']) == 2
    assert "--train-config" in capsys.readouterr().err
    assert main([*base, "--borders", "100,200"]) == 2
    assert "three row numbers" in capsys.readouterr().err
