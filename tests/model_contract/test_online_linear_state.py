"""OnlineLinear.state() / from_state(): a JSON round trip forecasts and learns identically; bad states refused."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from model_contract.online_linear import OnlineLinear


def _trained(n: int = 1500, inputs=None) -> tuple[OnlineLinear, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2 * n, 3, 2))
    y = x[:, -1, 1] + 0.3 * x[:, -1, 0] + rng.normal(0, 0.1, size=2 * n)
    model = OnlineLinear(1, half_life=300, inputs=inputs)
    for i in range(n):
        model.learn_one(x[i], y[i])
    return model, x[n:], y[n:]


@pytest.mark.parametrize("inputs", [None, (0, 2, 4, 5)])
def test_round_trip_forecasts_and_learns_identically(inputs):
    model, x, y = _trained(inputs=inputs)
    state = model.state()
    twin = OnlineLinear.from_state(json.loads(json.dumps(state)))
    assert twin.state() == state
    a, b = [], []
    for xi, yi in zip(x, y, strict=True):
        a.append(model.predict_one(xi))
        b.append(twin.predict_one(xi))
        model.learn_one(xi, yi)
        twin.learn_one(xi, yi)
    assert a == b  # bit-equal
    assert twin.n == model.n == 3000 and np.array_equal(twin.weights, model.weights)


def test_an_untrained_model_round_trips():
    state = OnlineLinear(0).state()
    assert OnlineLinear.from_state(state).predict_one(np.array([[2.5]])) == 2.5


def _broken(state: dict, path: tuple, value) -> dict:
    bad = copy.deepcopy(state)
    node = bad
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return bad


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("w",), [0.0, 1.0], "shape"),
        (("P",), [[0.0]], "shape"),
        (("mean", 0), float("nan"), "not finite"),
        (("P", 0, 0), float("inf"), "not finite"),
        (("var", 0), 0.0, "variances"),
        (("e2",), -1.0, "running squares"),
        (("config", "lam"), 1.5, "decays"),
        (("config", "clip"), -1.0, "clip"),
        (("n",), -3, "negative"),
        (("d",), KeyError, "KeyError"),
        (("config",), "x", "TypeError"),
    ],
)
def test_bad_states_are_refused(path, value, message):
    state, *_ = _trained(200)
    with pytest.raises(ValueError, match=message):
        OnlineLinear.from_state(_broken(state.state(), path, value))
