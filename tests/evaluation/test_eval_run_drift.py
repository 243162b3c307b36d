"""``hybridstream eval run`` replays the edge's early close on drift: an alarm of the edge's detector on the dynamic
forecast's residual closes the window, a speed model is trained at once, and the window count starts again there."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from edge_app.config import Windows
from hybridstream.cli import main
from hybridstream.evaluation.online_run import DEFAULT_EARLY_ON_DRIFT, RunResult

WINDOW = 300
STEP_AT = 450  # the target's noise steps up eightfold here (mid-window: the short window has >= 100 rows)


def write_stream(path, n: int, seed: int, start: datetime, step_at: int | None = None) -> None:
    """Hourly readings: a daily cycle and a driver; the target follows them (AR), its noise steps up at ``step_at``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    temp = 10 + 5 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.2, n))
    noise = rng.normal(0, 0.3, n) * np.where(t >= (step_at if step_at is not None else n), 8.0, 1.0)
    demand = np.zeros(n)
    for i in range(1, n):
        demand[i] = 0.8 * demand[i - 1] + 0.3 * temp[i - 1] + noise[i]
    lines = ["timestamp,temp,demand"]
    lines += [f"{(start + timedelta(hours=i)):%Y-%m-%d %H:%M:%S},{temp[i]:.4f},{demand[i]:.4f}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same stream with a step replayed with the early close and without it (the default; one model cache)."""
    d = tmp_path_factory.mktemp("drift")
    write_stream(d / "train.csv", 1200, 1, datetime(2024, 1, 1))
    write_stream(d / "test.csv", 1200, 2, datetime(2024, 3, 3), step_at=STEP_AT)
    out = {}
    for name, extra in (("on", ["--early-on-drift"]), ("off", [])):
        args = ["eval", "run", "--train", str(d / "train.csv"), "--test", str(d / "test.csv"), "--epochs", "2"]
        args += ["--window", str(WINDOW), "--cache-dir", str(d / "cache"), "--save", str(d / f"{name}.npz"), *extra]
        assert main(args) == 0
        out[name] = RunResult.load(d / f"{name}.npz")
    return out


def test_an_alarm_after_the_step_trains_a_speed_model_at_once_and_the_count_starts_again_there(runs):
    on = runs["on"]
    assert on.drift_alarms and on.counters["drift_alarms"] == len(on.drift_alarms)
    alarm = next(a for a in on.drift_alarms if a >= STEP_AT)  # the step raises one
    assert alarm < STEP_AT + WINDOW // 2
    models = [(m["reason"], m["serves_from"]) for m in on.speed_models]
    # the window closes before the alarm's reading, its model serves from the next reading; the next window holds
    # WINDOW readings from the alarm's on (the edge's WindowSpool counts from the reading that opened it)
    assert ("drift", alarm + 1) in models
    assert ("count", alarm + WINDOW) in models or alarm + WINDOW >= len(on.y)
    drift_model = next(m for m in on.speed_models if m["serves_from"] == alarm + 1)
    assert drift_model["rows"] == alarm - drift_model["first_row"]  # the last windows, the short one last
    assert on.counters["drift_windows"] >= 1


def test_without_the_early_close_a_speed_model_every_window(runs):
    off = runs["off"]
    assert [(m["reason"], m["serves_from"]) for m in off.speed_models] == [
        ("count", 300),
        ("count", 600),
        ("count", 900),
    ]
    assert off.drift_alarms == [] and off.counters["drift_alarms"] == 0


def test_eval_replays_the_edges_default():
    assert Windows().early_on_drift == DEFAULT_EARLY_ON_DRIFT
