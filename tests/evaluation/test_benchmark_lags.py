"""``eval benchmark --lags auto``: each target's lags chosen on its history rows, reported in the JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np

from hybridstream.cli import main


def write_daily(path, days: int, seed: int = 5) -> None:
    """Hourly readings: a target repeating yesterday's (slowly changing) shape, and a noise channel."""
    rng = np.random.default_rng(seed)
    profile = rng.normal(size=24)
    y = []
    for _ in range(days):
        profile = 0.9 * profile + 0.1 * rng.normal(size=24)
        y.extend(3.0 * profile + 0.3 * rng.normal(size=24))
    start = datetime(2024, 1, 1)
    lines = ["date,noise,load"] + [
        f"{(start + timedelta(hours=i)):%Y-%m-%d %H:%M:%S},{rng.normal():.4f},{v:.4f}" for i, v in enumerate(y)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_benchmark_lags_auto_chooses_on_the_history(tmp_path, capsys):
    path = tmp_path / "plant.csv"
    write_daily(path, 40)  # 960 rows: history 600 (train 480 + validation 120), stream 360
    argv = ["eval", "benchmark", str(path), "--target", "load", "--lags", "auto", "--borders", "480,600,960"]
    code = main([*argv, "--window", "200", "--epochs", "1", "--cache-dir", "none", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert {23, 24, 25} <= set(summary["lags"]["load"])
    assert "load: lags" in out.err and "chosen on the history" in out.err
    assert all(np.isfinite(v["mse"]) for v in summary["channels"]["load"].values())


def test_eval_run_refuses_lags_auto(capsys):
    assert main(["eval", "run", "--scenario", "none", "--lags", "auto"]) == 2
    assert "--lags auto" in capsys.readouterr().err
