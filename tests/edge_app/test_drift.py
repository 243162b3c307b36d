"""Unit tests of the drift detectors (river and our CUSUM; no TensorFlow, no Kafka)."""

from __future__ import annotations

import random

import pytest

from edge_app.drift import DEFAULT_DETECTOR, DETECTORS, make_detector

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


# ---- typed configuration (issue 7, item 5) ---------------------------------------------------
def test_the_measured_default_lives_in_the_signature():
    d = make_detector({})
    assert type(d).__name__ == "AdwinDetector" and d.delta == DEFAULT_DETECTOR["delta"] and d.clock == 4
    assert make_detector({"detector": "adwin"}).params() == d.params() == make_detector(DEFAULT_DETECTOR).params()


def test_an_unknown_key_is_refused_with_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"for adwin: delt \(valid: clock, cooldown, delta, detector, direction, input\)"
    ):
        make_detector({"detector": "adwin", "delt": 0.1})
    with pytest.raises(ValueError, match=r"for ph: window_size \(valid: .*threshold"):
        make_detector({"detector": "ph", "window_size": 10})


def test_a_typo_is_a_clear_error_at_config_load():
    from edge_app.config import ConfigError, EdgeConfig

    with pytest.raises(ConfigError, match=r"drift: .*tresh.*valid: .*threshold"):
        EdgeConfig.from_dict({"models": {"batch": "b"}, "drift": {"detector": "ph", "tresh": 5, "residual": "batch"}})


@pytest.mark.parametrize("name", list(DETECTORS))
def test_constructor_arguments_stay_inspectable(name):
    d = make_detector({"detector": name, "cooldown": 7})
    params = d.params()
    assert params["cooldown"] == 7 and params == {k: getattr(d, k) for k in params}
    assert type(d)(**params).params() == params
    assert make_detector({"detector": name, **params}).params() == params


@pytest.mark.parametrize("direction", ["up", "both"])
def test_adwin_calling_rivers_helper_alarms_as_its_public_api(direction):
    """The direct calls into river's ADWIN helper (edge_app.drift.AdwinDetector) take this river's shape, and give
    the public API's alarms, window and estimate at every step: several drifts up and down, resets after each,
    a cooldown shorter than the gaps between them, NaN in between."""
    stream = []
    for k, (level, sd) in enumerate([(0.0, 0.3), (2.0, 0.3), (0.5, 0.1), (3.0, 0.6), (0.0, 0.3), (4.0, 0.2)]):
        stream += [r + level for r in residuals(700, seed=10 + k, sd=sd)]
        stream.append(float("nan"))
    config = {"detector": "adwin", "delta": 0.002, "direction": direction, "cooldown": 20}
    direct, public = make_detector(config), make_detector(config)
    public._direct = False  # noqa: SLF001
    assert direct._direct  # noqa: SLF001 (the river in requirements has the shape; else this test says so)
    got = []
    for x in stream:
        got.append(direct.update(x))
        assert got[-1] == public.update(x)
        assert direct._adwin.width == public._adwin.width  # noqa: SLF001
        assert direct._adwin.estimation == public._adwin.estimation  # noqa: SLF001
    assert sum(got) >= 3 and direct.n_detections == public.n_detections == sum(got)
