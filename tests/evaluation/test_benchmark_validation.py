"""``eval benchmark --validation``: the batch model against the baselines on the validation rows, stream unread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridstream.cli import main
from tests.evaluation.test_benchmark_lags import write_daily


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """960 hourly rows (train 480, validation 120, stream 360) and a model cache the tests share."""
    root = tmp_path_factory.mktemp("validation")
    write_daily(root / "plant.csv", 40)
    return root


def _run(path, capsys, *extra: str) -> tuple[int, dict | None, str]:
    argv = ["eval", "benchmark", str(path), "--target", "load", "--borders", "480,600,960", "--epochs", "1"]
    code = main([*argv, "--cache-dir", str(path.parent / "cache"), "--json", *extra])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if code == 0 else None), out.err


def persistence_mse(path, first: int, end: int) -> float:
    """Persistence's MSE (H = 1) on rows ``first``..``end - 1`` of the target, z-scored with the train rows 0-479,
    recomputed from the CSV: the rows the command says it scores are the rows it scored."""
    load = np.array([float(ln.rsplit(",", 1)[1]) for ln in path.read_text().splitlines()[1:]])
    z = (load - load[:480].mean()) / load[:480].std()
    e = z[first - 1 : end - 1] - z[first:end]
    return float(np.mean(e * e))


def test_validation_scores_the_holdout_rows_beside_the_baselines_and_never_reads_the_stream(plant, capsys):
    path = plant / "plant.csv"
    code, summary, err = _run(path, capsys, "--validation", "--lags", "1-3")
    assert code == 0, err
    scores = summary["validation"]
    # the trainer's holdout of 597 samples (lags 1-3, H = 1) is the newest 119: rows 481-599
    assert scores["rows"]["load"] == [481, 600]
    assert set(scores["channels"]["load"]) == {"batch", "persistence", "online_linear"}
    assert all(np.isfinite(v["mse"]) and v["mse"] > 0 for v in scores["mean"].values())
    assert summary["lags"] == {"load": [1, 2, 3]}
    # scored on those rows: not from the first forecast row (the fitted training targets)
    assert scores["channels"]["load"]["persistence"]["mse"] == pytest.approx(persistence_mse(path, 481, 600))
    assert "the stream is not scored" in err

    # the stream's rows do not matter: garbage after row 600 scores the same
    lines = path.read_text().splitlines()
    bad = lines[:601] + [ln.rsplit(",", 1)[0] + ",1e6" for ln in lines[601:]]
    (plant / "bad.csv").write_text("\n".join(bad) + "\n")
    code, again, err = _run(plant / "bad.csv", capsys, "--validation", "--lags", "1-3")
    assert code == 0, err
    assert again["validation"]["channels"] == scores["channels"]


def test_validation_first_row_scores_the_same_rows_for_every_lag_set_and_refuses_fitted_rows(plant, capsys):
    path = plant / "plant.csv"
    code, summary, err = _run(path, capsys, "--validation", "520", "--lags", "1-3")  # the model cached above
    assert code == 0, err
    assert summary["validation"]["rows"]["load"] == [520, 600]
    assert summary["validation"]["channels"]["load"]["persistence"]["mse"] == pytest.approx(
        persistence_mse(path, 520, 600)
    )
    # lags 1-100 hold out rows 500-599 only (100 of 500 samples): row 495 was a training target
    code, _, err = _run(path, capsys, "--validation", "495", "--lags", "1-100")
    assert code == 2
    assert "--validation 495" in err and "500-599" in err


def test_validation_refuses_a_negative_first_row(plant, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's usage error, before any data is read
        _run(plant / "plant.csv", capsys, "--validation", "-5", "--lags", "1-3")
    assert stop.value.code == 2
    assert "--validation: FIRST_ROW must be a row number >= 0, not -5" in capsys.readouterr().err
