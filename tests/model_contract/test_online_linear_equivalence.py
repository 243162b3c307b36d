"""The optimised :class:`~model_contract.online_linear.OnlineLinear` forecasts what the frozen reference
(its code before the per-record cost was cut: reference_online_linear.py) forecasts, to 1e-9 relative, on
long streams that exercise every branch: outliers (clipping, winsorising), non-finite and absurd records
(skipped), constant stretches (the covariance trace bound), calendar-like columns, input subsets, resets.

Each test runs on both backends (``linear_backend``: the numpy code and the compiled kernel of
model_contract/online_linear_kernel.c), so the kernel agrees with the numpy code to 1e-9 on these streams;
the one exception is the overflow stream of :func:`test_resets_match_the_reference` (see there)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridstream.datasets import TURBINE as TURBINE_DIR
from model_contract import online_linear_kernel
from model_contract.online_linear import OnlineLinear
from tests.model_contract.reference_online_linear import ReferenceOnlineLinear

TURBINE = TURBINE_DIR / "test.csv"
REL = 1e-9


def close(a: float, b: float) -> bool:
    if a == b or math.isnan(b):
        return a == b or math.isnan(a)
    return abs(a - b) <= REL * max(abs(b), 1e-12)


def random_stream(n: int, seed: int, steps: int = 2, cols: int = 9):
    """(window, truth) pairs: AR drivers, a random-walk target, calendar-like columns (sin/cos of a slow
    clock, a 0/1 weekday flag), outliers, NaN/inf/absurd records and constant stretches."""
    rng = np.random.default_rng(seed)
    total = n + steps
    x = np.zeros((total, cols))
    for t in range(1, total):
        x[t, :4] = 0.9 * x[t - 1, :4] + rng.normal(size=4)
    x[:, 4] = np.cumsum(0.3 * x[:, 0] + rng.normal(0, 0.5, total))  # the target: column 4
    clock = np.arange(total) * 2 * np.pi / 144.0
    x[:, 5], x[:, 6] = np.sin(clock), np.cos(clock)
    x[:, 7] = (np.arange(total) // 144 % 7 < 5).astype(float)
    x[:, 8] = 3.0  # a constant column (variance floor)
    for lo in rng.integers(0, total - 600, 6):  # constant stretches: every input stops varying
        x[lo : lo + 500] = x[lo]
    spikes = rng.integers(0, total, total // 200)
    x[spikes, rng.integers(0, cols, len(spikes))] *= rng.choice([1e3, -1e6, 1e9], len(spikes))
    bad = rng.integers(0, total, total // 500)
    x[bad, rng.integers(0, cols, len(bad))] = rng.choice([np.nan, np.inf, -np.inf, 1e200], len(bad))
    for t in range(steps, total - 1):
        y = float(x[t + 1, 4])
        if t % 997 == 0:
            y = rng.choice([np.nan, np.inf, 1e180])  # a non-finite / absurd truth
        yield x[t - steps + 1 : t + 1], y


def turbine_stream(n: int, seed: int = 0):
    """The turbine test rows (5 temperatures) cycled with small noise, plus 4 time-of-day calendar
    columns: the product's window shape (2, 9)."""
    rows = np.genfromtxt(TURBINE, delimiter=",", skip_header=1, usecols=range(1, 6), max_rows=3000)
    rows = rows[np.isfinite(rows).all(axis=1)]
    rng = np.random.default_rng(seed)
    x = np.zeros((n + 3, 9))
    x[:, :5] = rows[np.arange(n + 3) % len(rows)] + rng.normal(0, 0.01, (n + 3, 5))
    clock = np.arange(n + 3) * 2 * np.pi / 144.0
    x[:, 5], x[:, 6], x[:, 7], x[:, 8] = np.sin(clock), np.cos(clock), np.sin(2 * clock), np.cos(2 * clock)
    for t in range(1, n + 1):
        yield x[t - 1 : t + 1], float(x[t + 1, 4])


def run_both(stream, ours: OnlineLinear, ref: ReferenceOnlineLinear) -> int:
    """Predict, learn, predict again with both; every forecast must agree. Returns the records compared."""
    compared = 0
    for window, y in stream:
        a, b = ours.predict_one(window), ref.predict_one(window)
        assert close(a, b), (compared, a, b)
        ours.learn_one(window, y)
        ref.learn_one(window, y)
        a, b = ours.predict_one(window), ref.predict_one(window)
        assert close(a, b), (compared, a, b)
        compared += 1
    assert (ours.n, ours.skipped, ours.resets) == (ref.n, ref.skipped, ref.resets)
    # the backend the test asked for really ran (no silent fallback to the numpy code with a kernel loaded)
    assert bool(ours._kc) == (online_linear_kernel.kernel() is not None)
    np.testing.assert_allclose(ours.weights, ref.weights, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(ours._P, ref._P, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(ours._mean, ref._mean, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(ours._var, ref._var, rtol=REL, atol=1e-300)
    assert close(ours._dy2, ref._dy2) and close(ours._e2, ref._e2)
    return compared


INPUTS = (0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17)  # the product spec's linear_inputs() shape


@pytest.mark.parametrize(
    ("seed", "params"),
    [
        (0, {}),
        (1, {"inputs": INPUTS}),
        (2, {"half_life": 200, "scale_half_life": 500, "max_trace": 30.0}),  # the trace bound fires often
        (3, {"clip": 3.0, "max_change": 2.0, "prior": 10.0, "inputs": INPUTS}),
    ],
)
def test_random_streams_match_the_reference(seed, params, linear_backend):
    ours, ref = OnlineLinear(4, **params), ReferenceOnlineLinear(4, **params)
    assert run_both(random_stream(20_000, seed), ours, ref) > 19_000
    assert ref.skipped > 20  # the stream did exercise the skips


def test_turbine_like_stream_matches_the_reference(linear_backend):
    ours, ref = OnlineLinear(4, inputs=INPUTS), ReferenceOnlineLinear(4, inputs=INPUTS)
    run_both(turbine_stream(20_000), ours, ref)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflows that make it reset
def test_resets_match_the_reference(numpy_linear):
    """A huge prior, short memory and no trace bound: the covariance overflows in the constant stretches and
    the state resets itself, on the same records in both."""
    params = {"prior": 1e300, "half_life": 20, "max_trace": 1.7e308}
    ours, ref = OnlineLinear(4, **params), ReferenceOnlineLinear(4, **params)
    n = run_both(random_stream(3000, 5), ours, ref)
    assert 0 < ref.resets < n // 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_kernel_on_the_overflow_stream(compiled_linear):
    """The same stream with the compiled kernel: the same skips, resets on about the same records, and a finite
    forecast wherever the newest value is finite. Not 1e-9: with a 1e300 prior the rank-one update cancels
    catastrophically and the order of a dot product's sum decides the digits (numpy's BLAS sums in blocks,
    with fused multiply-adds; the kernel in index order); on sane streams the two agree (the tests above)."""
    params = {"prior": 1e300, "half_life": 20, "max_trace": 1.7e308}
    ours, ref = OnlineLinear(4, **params), ReferenceOnlineLinear(4, **params)
    for window, y in random_stream(3000, 5):
        f = ours.predict_one(window)
        assert math.isfinite(f) or not math.isfinite(window[-1, 4])
        ref.predict_one(window)
        ours.learn_one(window, y)
        ref.learn_one(window, y)
    assert ours._kc and ours.skipped == ref.skipped and ours.n == ref.n
    assert ours.resets > 0 and abs(ours.resets - ref.resets) <= 0.02 * ref.resets


def test_a_different_window_size_matches_the_reference(linear_backend):
    ours, ref = OnlineLinear(1), ReferenceOnlineLinear(1)
    rng = np.random.default_rng(9)
    y = np.cumsum(rng.normal(size=5001))
    stream = ((np.array([[rng.normal(), y[t - 1]], [rng.normal(), y[t]]]), float(y[t + 1])) for t in range(1, 5000))
    run_both(stream, ours, ref)


def test_a_copied_or_pickled_model_goes_on_like_the_reference(linear_backend):
    """The work buffers (views into the state) are rebuilt, not copied: a deep copy or a pickle taken
    mid-stream forecasts and learns on exactly like the reference."""
    import copy
    import pickle

    stream = random_stream(4000, 7)
    ours, ref = OnlineLinear(4, inputs=INPUTS), ReferenceOnlineLinear(4, inputs=INPUTS)
    for _, (window, y) in zip(range(2000), stream, strict=False):
        ours.learn_one(window, y)
        ref.learn_one(window, y)
    rest = list(stream)
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        twin = copy.deepcopy(ref)
        run_both(iter(rest), clone, twin)
