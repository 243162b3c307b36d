"""Lags chosen on the history: seasonal lags where a day repeats itself, the default where it does not."""

import numpy as np
import pytest

from model_contract import FeatureSpec
from training_job.lag_choice import DEFAULT_LAGS, candidate_lags, choose_lags, readings_per_day

SPEC = FeatureSpec(columns=("a", "y"), target="y", lags=DEFAULT_LAGS, timestamp_column="t")


def _daily(days: int, per_day: int, seed: int = 0) -> np.ndarray:
    """A target that repeats yesterday's shape (a slowly changing random daily profile) plus noise."""
    rng = np.random.default_rng(seed)
    profile = rng.normal(size=per_day)
    rows = []
    for _ in range(days):
        profile = 0.9 * profile + 0.1 * rng.normal(size=per_day)
        rows.append(3.0 * profile + 0.3 * rng.normal(size=per_day))
    y = np.concatenate(rows)
    return np.column_stack([rng.normal(size=len(y)), y])


def test_a_repeating_day_gets_the_seasonal_lags():
    choice = choose_lags(_daily(40, 24), SPEC, period=24)
    assert choice.label.startswith("seasonal"), choice.scores
    assert {23, 24, 25} <= set(choice.lags)
    assert choice.scores[choice.label] < 0.99 * choice.scores["default"]


def test_a_random_walk_keeps_the_default():
    rng = np.random.default_rng(1)
    walk = np.column_stack([rng.normal(size=960), np.cumsum(rng.normal(size=960))])
    choice = choose_lags(walk, SPEC, period=24)
    assert choice.lags == DEFAULT_LAGS and choice.label == "default"
    assert set(choice.scores) == set(candidate_lags(24, 1))


def test_windows_longer_than_a_tenth_of_the_history_are_not_tried():
    choice = choose_lags(_daily(8, 24), SPEC, period=24)  # 192 rows: at most lag 18
    assert not any(k.startswith("seasonal") for k in choice.scores)


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [(np.arange(50) * 600.0, 144), (np.arange(50) * 3600.0, 24), (np.arange(50) * 86_400.0, None), ([0.0], None)],
)
def test_readings_per_day(epochs, expected):
    assert readings_per_day(epochs) == expected


def test_pretrain_lags_auto_trains_on_the_chosen_lags(tmp_path, capsys):
    import json
    from datetime import UTC, datetime, timedelta

    from hybridstream.cli import main
    from model_contract import Manifest

    data = _daily(30, 24)
    start = datetime(2017, 1, 1, tzinfo=UTC)
    lines = ["Date_time,a,y"] + [
        f"{(start + timedelta(hours=i)).isoformat()},{a:.5f},{y:.5f}" for i, (a, y) in enumerate(data)
    ]
    history = tmp_path / "history.csv"
    history.write_text("\n".join(lines) + "\n")
    argv = ["train", "pretrain", "--csv", str(history), "--out", str(tmp_path / "out"), "--columns", "a,y"]
    argv += ["--target", "y", "--lags", "auto", "--epochs", "1", "--lstm-units", "4", "--dense-units", "2"]
    assert main(argv) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert "lags chosen on the history" in out.err
    lags = tuple(summary["lag_choice"]["lags"])
    assert {23, 24, 25} <= set(lags)
    manifest = Manifest.from_json((tmp_path / "out" / "batch" / summary["version"] / "manifest.json").read_text())
    assert manifest.feature_spec.lags == lags and manifest.input_shape[0] == len(lags)


def test_a_speed_model_cannot_choose_its_own_lags(tmp_path, capsys):
    from hybridstream.cli import main

    window = tmp_path / "w.csv"
    window.write_text("Date_time,a,y\n")
    assert main(["train", "window", "--input", str(window), "--out", str(tmp_path), "--lags", "auto"]) != 0
    assert "--lags auto is for pretrain" in capsys.readouterr().err
