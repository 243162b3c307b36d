"""The online conformal intervals: coverage under drift, the horizon, state and warm start round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridstream.devtools.interval_selection import scale_step_errors
from model_contract.conformal import ConformalInterval, gaussian_multiplier, warm_start


def _drifting_residuals(n: int = 20_000, seed: int = 0) -> np.ndarray:
    """Heavy tails, volatility clusters and a scale step x5 halfway (the selection's robustness check)."""
    return scale_step_errors(seed, n)


@pytest.mark.parametrize("horizon", [1, 6])
def test_coverage_holds_within_two_points_over_the_stream_and_five_over_each_tenth(horizon):
    r = _drifting_residuals()
    ci = ConformalInterval((0.8, 0.95))
    hits = {k: [] for k in ci.keys}
    flight: list = [None] * (horizon - 1)
    for e in r:
        flight.append(ci.half_widths())
        issued = flight.pop(0)
        if issued is not None:
            for k, w in zip(ci.keys, issued, strict=True):
                hits[k].append(abs(e) <= w)
        ci.learn_one(float(e), issued)
    for k, level in zip(ci.keys, ci.levels, strict=True):
        h = np.asarray(hits[k])
        assert abs(h.mean() - level) < 0.02
        assert all(abs(p.mean() - level) < 0.05 for p in np.array_split(h, 10))
        assert ci.coverage()[k] == pytest.approx(h.mean())


def test_learn_many_scores_each_interval_against_the_truth_horizon_readings_later():
    r = _drifting_residuals(500)
    a, b = ConformalInterval(), ConformalInterval()
    a.learn_many(r, horizon=3)
    issued = [None, None]
    for e in r:
        issued.append(b.half_widths())
        b.learn_one(float(e), issued.pop(0))
    assert a.q == b.q and a.scale == b.scale and a.scored == b.scored == 500 - 3


def test_cold_start_is_gaussian_and_non_finite_residuals_are_ignored():
    ci = ConformalInterval((0.9,))
    assert ci.q == [pytest.approx(1.6449 * math.sqrt(math.pi / 2), rel=1e-4)] and ci.half_widths() is None
    ci.learn_one(math.nan, None)
    ci.learn_one(math.inf, None)
    assert ci.seen == 0
    ci.learn_one(-2.0, None)
    assert ci.half_widths() == (pytest.approx(2.0 * gaussian_multiplier(0.9)),)


def test_state_and_warm_start_round_trip_and_bad_config_is_refused():
    warm = warm_start(_drifting_residuals(3000), horizon=2)
    assert warm["rows"] == 3000 and warm["scale"] > 0
    ci = ConformalInterval.from_state(warm)
    assert ci.q == warm["q"] and ci.scale == warm["scale"]
    other = ConformalInterval.from_state(warm, levels=(0.8, 0.9))  # a new level starts Gaussian, the kept one warm
    assert other.q == [warm["q"][0], pytest.approx(gaussian_multiplier(0.9))]
    for bad in ({"levels": (1.2,)}, {"levels": ()}, {"lr": 0}, {"scale_half_life": -1}, {"gamma": 1.5}):
        with pytest.raises(ValueError):
            ConformalInterval(**bad)
    with pytest.raises(ValueError, match="bad interval state"):
        ConformalInterval.from_state({"levels": [0.8]})


def test_the_band_scale_blends_the_slow_and_the_fast_error_scale():
    ci = ConformalInterval((0.8,), gamma=0.3)
    for e in [1.0] * 50 + [4.0] * 5:  # a burst: the fast scale follows it, the slow one barely moves
        ci.learn_one(e, None)
    assert ci.fast > 1.5 * ci.scale
    assert ci.multiplier() == pytest.approx(ci.scale * (ci.fast / ci.scale) ** 0.3)
    assert ci.half_widths() == (pytest.approx(ci.q[0] * ci.multiplier()),)
    assert math.isnan(ConformalInterval().multiplier())  # before any error
    zero = ConformalInterval((0.8,))
    zero.learn_one(0.0, None)
    assert zero.half_widths() == (0.0,)  # every error so far 0: a zero-width band, no division by zero


def test_a_state_of_the_first_method_starts_its_fast_scale_at_its_scale():
    old = {"levels": [0.8, 0.95], "lr": 0.05, "scale_half_life": 100.0, "q": [1.6, 2.5], "scale": 2.0, "seen": 500}
    ci = ConformalInterval.from_state(old, lr=0.04, scale_half_life=3000.0)
    assert (ci.scale, ci.fast, ci.q, ci.lr, ci.scale_half_life) == (2.0, 2.0, [1.6, 2.5], 0.04, 3000.0)
    assert ci.half_widths() == (pytest.approx(3.2), pytest.approx(5.0))
    assert ConformalInterval.from_state(ci.state()).state() == ci.state()
