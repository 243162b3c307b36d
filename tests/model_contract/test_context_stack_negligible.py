"""A model that forecasts persistence up to float32 rounding (an ``ol_residual`` batch model whose shrink factor
is 0) costs the context stack nothing: its forecast change, far below the target's change scale, is read as
exactly 0 (``context_stack.NEGLIGIBLE``), as if the model were absent.

Before, on the turbine's gradual scenario (docs/combination.md, issue 17) the stack learned a weight on that
rounding (its standardised value ~1e-5 in a direction the warm start never excited), and when the first speed
model replaced the batch model's forecast on the speed input the weight met a real-scale input: dynamic MSE
0.137 against 0.062, 4,296 fallbacks. Here the same on a generated drifting series with heavy-tailed noise (a
short half-life so a short warm start shrinks the inputs' scales as the turbine's 20,000 rows do): before the
fix the rounded run scored ~4.6 x the exact one's MSE with ~1,200 fallbacks; now both are the same. (The replay
starts from the streamed history's state, not a loaded warm start: a load starts the model inputs fresh, which
would hide the guard.)"""

from __future__ import annotations

import numpy as np
import pytest

from model_contract import FeatureSpec
from model_contract.context_stack import ContextStack
from model_contract.context_stack import stream as stream_history
from model_contract.features import FeatureBuffer

SPEC = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2))
HALF_LIFE = 200.0
SWITCH = 1000  # the first speed model serves from here; before, the speed input is the batch model's forecast


def _series(n: int, seed: int) -> np.ndarray:
    """A drifting level around 30 (float32 rounds it to ~1e-6) with heavy-tailed noise, and a noisy covariate."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 30 + 8 * np.sin(2 * np.pi * t / 700) + np.cumsum(rng.normal(0, 0.05, n)) + 0.1 * rng.standard_t(3, n)
    return np.column_stack([y + rng.normal(0, 0.3, n), y])


def _replay(rounded: bool) -> tuple[float, ContextStack]:
    """The stack's MSE over a stream after a warm start, with batch = the newest value (float32-rounded if
    ``rounded``) and speed = the batch forecast until SWITCH, then a real forecast (the truth + noise)."""
    stack = ContextStack(half_life=HALF_LIFE)
    stack.bind_spec(SPEC)  # the warm start's state before a load starts its model inputs fresh: their variances
    stream_history(stack, _series(3000, 1), SPEC)  # ~0, as a model serving persistence for long shrinks them again
    stream = _series(3000, 2)
    y = stream[:, SPEC.target_index]
    rng = np.random.default_rng(5)
    buf, pending, errors = FeatureBuffer(SPEC), None, []
    for t in range(len(stream)):
        if pending is not None:  # the truth of the last forecast (horizon 1) arrived
            stack.learn_one(*pending[:2], y[t - 1], pending[2])
            pending = None
        if buf.ready:
            last = float(y[t - 1])
            batch = float(np.float32(last)) if rounded else last
            speed = float(y[t] + rng.normal(0, 0.15)) if t >= SWITCH else batch
            errors.append((stack.predict_one(batch, speed, buf.window) - y[t]) ** 2)
            pending = (batch, speed, stack.context())
        buf.push_row(stream[t])
    return float(np.mean(errors)), stack


@pytest.mark.usefixtures("linear_backend")
def test_a_batch_model_serving_rounded_persistence_costs_nothing():
    exact, plain = _replay(rounded=False)
    rounded, stack = _replay(rounded=True)
    assert rounded <= exact * 1.01, (rounded, exact)
    assert stack.fallbacks <= plain.fallbacks + 10, stack.counts()
    assert stack.coefficients[0] == 0.0  # read as absent: no weight on the rounding
    assert stack.coefficients[1] > 0.1  # the speed input, rounding until SWITCH, is read once it is real
