"""Unit tests of the drift detectors (river and our CUSUM; no TensorFlow, no Kafka)."""

from __future__ import annotations

import random

import pytest

from edge_app.drift import DETECTORS, make_detector

LIVE = [{"detector": k} for k in DETECTORS if k != "none"]


def residuals(n: int, seed: int, step_at: int | None = None, step: float = 0.0, sd: float = 0.3):
    rng = random.Random(seed)
    for i in range(n):
        yield rng.gauss(0.0, sd) + (step if step_at is not None and i >= step_at else 0.0)


def alarms(config, stream) -> list[int]:
    d = make_detector(config)
    return [i for i, r in enumerate(stream) if d.update(r)]


@pytest.mark.parametrize("config", LIVE, ids=lambda c: c["detector"])
def test_detects_an_injected_step(config):
    found = alarms(config, residuals(4000, seed=1, step_at=3000, step=1.0))
    assert any(3000 <= a < 3300 for a in found), found


@pytest.mark.parametrize(
    "config",
    [
        {"detector": "adwin"},
        {"detector": "adwin", "delta": 0.0002},
        {"detector": "cusum"},
        {"detector": "ph", "threshold": 25.0},
        {"detector": "kswin", "alpha": 1e-6, "window_size": 300, "stat_size": 50},
    ],
    ids=lambda c: "-".join(str(v) for v in c.values()),
)
def test_few_false_alarms_on_stationary_noise(config):
    found = alarms(config, residuals(20_000, seed=2))
    assert len(found) <= 2, found


def test_default_detector_is_quiet_then_fires():
    found = alarms({}, residuals(12_000, seed=3, step_at=10_000, step=1.0))
    assert found and all(a >= 10_000 for a in found)
    assert found[0] < 10_200


def test_adwin_up_ignores_falling_errors():
    stream = list(residuals(2000, seed=4, sd=0.6)) + list(residuals(2000, seed=5, sd=0.1))  # errors shrink
    assert not any(a >= 2000 for a in alarms({"detector": "adwin"}, stream))
    assert any(a >= 2000 for a in alarms({"detector": "adwin", "direction": "both"}, stream))


def test_cooldown_limits_alarm_rate():
    stream = list(residuals(3000, seed=5, step_at=1000, step=3.0))
    found = alarms({"detector": "cusum", "cooldown": 500}, stream)
    assert all(b - a > 500 for a, b in zip(found, found[1:], strict=False))


def test_nan_is_ignored_and_none_never_fires():
    d = make_detector({"detector": "adwin"})
    assert d.update(float("nan")) is False
    assert alarms({"detector": "none"}, residuals(2000, seed=6, step_at=1000, step=5.0)) == []


@pytest.mark.parametrize(
    "config",
    [
        {"detector": "ddm"},
        {"detector": "adwin", "direction": "sideways"},
        {"detector": "adwin", "input": "cubed"},
        {"detector": "cusum", "warmup": 1},
        {"detector": "cusum", "cooldown": -1},
    ],
)
def test_bad_config_raises(config):
    with pytest.raises(ValueError):
        make_detector(config)
