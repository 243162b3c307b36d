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
def streams(tmp_path_factory):
    """A training stream and a test stream with a step; the model cache the runs share."""
    d = tmp_path_factory.mktemp("drift")
    write_stream(d / "train.csv", 1200, 1, datetime(2024, 1, 1))
    write_stream(d / "test.csv", 1200, 2, datetime(2024, 3, 3), step_at=STEP_AT)
    return d


def _run(d, name: str, *extra: str) -> RunResult:
    args = ["eval", "run", "--train", str(d / "train.csv"), "--test", str(d / "test.csv"), "--epochs", "2"]
    args += ["--window", str(WINDOW), "--cache-dir", str(d / "cache"), "--save", str(d / f"{name}.npz"), *extra]
    assert main(args) == 0
    return RunResult.load(d / f"{name}.npz")


@pytest.fixture(scope="module")
def runs(streams):
    """The same stream with a step replayed with the early close and without it (the default; one model cache)."""
    return {name: _run(streams, name, *extra) for name, extra in (("on", ["--early-on-drift"]), ("off", []))}


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


class Recorder:
    """A detector injected in place of the edge's: records every residual it is fed and fires at given calls."""

    def __init__(self, fire_at_calls: set[int]) -> None:
        self.inputs: list[float] = []
        self.fire_at_calls = fire_at_calls

    def update(self, residual: float) -> bool:
        self.inputs.append(residual)
        return len(self.inputs) - 1 in self.fire_at_calls


def test_the_detector_is_fed_the_dynamic_residual_on_its_row_and_closes_rejects_or_skips_as_the_edge(runs, streams):
    """Alarms at chosen rows (the review of drift3, item 3): 450 mid-window (a drift close); 750, the reading
    right after the count close at 750 (nothing to close); 800, 50 rows after it (a window the trainer rejects)."""
    import edge_app.drift

    dyn_off = runs["off"].forecasts["dynamic"]
    first = int(np.flatnonzero(np.isfinite(dyn_off))[0])  # the first reading with a dynamic forecast
    alarms = [450, 750, 800]
    recorder = Recorder({r - first for r in alarms})  # the detector sees one residual a reading from ``first`` on
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(edge_app.drift, "make_detector", lambda config: recorder)
        res = _run(streams, "rows", "--early-on-drift")
    dyn, y = res.forecasts["dynamic"], res.y
    finite = np.isfinite(dyn)
    assert int(np.flatnonzero(finite)[0]) == first and finite[first:].all()
    # the dynamic (hybrid) forecast's residual, not the batch model's, on the reading whose truth it is, in order
    assert recorder.inputs == pytest.approx(list(dyn[finite] - y[finite]), abs=1e-12)
    assert res.drift_alarms == alarms, "the detector's n-th residual is reading first + n's"
    assert res.counters["drift_alarms"] == 3
    models = [(m["reason"], m["first_row"], m["rows"], m["serves_from"]) for m in res.speed_models]
    assert models == [
        ("count", 0, 300, 300),
        ("drift", 0, 450, 451),  # [0, 300) and the short window [300, 450); serves from the next reading
        ("count", 0, 750, 750),  # the count restarted at 450: [450, 750) closes at 750
        # the alarm at 750 closes nothing (the window opened on that reading); [750, 800) is rejected; the count
        # restarted at 800 closes [800, 1100), trained on the earlier windows without the rejected one
        ("count", 0, 1050, 1100),
    ]
    assert res.counters["windows_rejected"] == 1 and res.counters["drift_windows"] == 2
