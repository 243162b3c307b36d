"""The two streaming baselines: persistence, and the online linear model (must never diverge)."""

from __future__ import annotations

import math

import numpy as np

from model_contract.online_linear import OnlineLinear
from model_contract.persistence_forecast import Persistence


def ar_stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A driver x and a target that follows it: windows (n, 1, 2) and the next target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.9 * y[t - 1] + 0.5 * x[t - 1] + rng.normal(0, 0.1)
    windows = np.stack([np.column_stack([x[:-1], y[:-1]])[:, None, :]], axis=0)[0]
    return windows, y[1:]


def test_online_linear_learns_and_beats_persistence():
    windows, target = ar_stream(5000)
    model, pers = OnlineLinear(target_index=1, half_life=1000), Persistence(1)
    e_lin, e_pers = [], []
    for w, y in zip(windows, target, strict=True):
        e_lin.append(model.predict_one(w) - y)
        e_pers.append(pers.predict_one(w) - y)
        model.learn_one(w, y)
    rmse = lambda e: math.sqrt(np.mean(np.square(e[1000:])))  # noqa: E731
    assert rmse(e_lin) < 0.5 * rmse(e_pers)
    assert rmse(e_lin) < 0.15  # close to the noise (0.1)


def test_online_linear_survives_wild_inputs_and_stays_sane():
    windows, target = ar_stream(6000, seed=1)
    model = OnlineLinear(target_index=1, half_life=200)
    span = float(np.ptp(target))
    wild = {
        1000: (np.full((1, 2), np.nan), 1.0),
        1001: (np.full((1, 2), np.inf), 1.0),
        1002: (np.array([[1e300, 0.0]]), 0.0),
        1003: (np.array([[0.0, 0.0]]), 1e300),
        1004: (np.array([[1e12, 1.0]]), 1.0),  # finite but absurd: clipped
    }
    preds = []
    for t, (w, y) in enumerate(zip(windows, target, strict=True)):
        if t in wild:
            w, y = wild[t]
        p = model.predict_one(w)
        preds.append(p)
        model.learn_one(w, y)
        if 2000 <= t < 4000:  # the inputs stop varying: no covariance wind-up
            model.learn_one(np.array([[0.0, 1.0]]), 1.0)
    # a window with a NaN/inf target has no sane forecast; every other forecast is finite
    assert [t for t, p in enumerate(preds) if not math.isfinite(p)] == [1000, 1001]
    assert model.skipped >= 3  # NaN, inf and 1e300 records were skipped, and counted
    # a window far outside the data moves the forecast by a bounded amount, never absurdly
    far = model.predict_one(np.array([[1e9, 0.0]]))
    assert abs(far) < 10 * span
    # and it still forecasts well afterwards
    tail = [p - y for p, y in zip(preds[5000:], target[5000:], strict=True)]
    assert math.sqrt(np.mean(np.square(tail))) < 0.2


def test_persistence_and_a_cold_online_linear_forecast_the_newest_value():
    w = np.array([[1.0, 5.0], [2.0, 7.0]])
    assert Persistence(1).predict_one(w) == 7.0
    assert OnlineLinear(target_index=1).predict_one(w) == 7.0  # untrained: the change is 0
