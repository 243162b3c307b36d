"""The opt-in correction layer (``correct: true``): learns what the forecast misses from the experts, causally, on
every path the context stack runs, and is the layer ``eval table --headroom``'s "(c) causal online" measures."""

from __future__ import annotations

import copy
import pickle
from collections import deque

import numpy as np
import pytest

from edge_app.combiners import make_combiner
from edge_app.context_stacking import ContextStacking, CorrectedContextStacking
from edge_app.correction_layer import CorrectionLayer
from hybridstream.evaluation.headroom import causal_layer

TI = 1  # the target's column in the toy windows: (driver, target)


def stream(n: int, seed: int = 0, h: int = 1):
    """A driver, a target that follows it with noise, a batch model that knows the truth up to small noise but is
    biased by +0.5, a speed model with large noise. Yields (window, batch, speed, y[t + h])."""
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.normal(0, 0.3, n + h + 1))
    y = a + rng.normal(0, 0.5, n + h + 1)
    for t in range(1, n):
        window = np.array([[a[t - 1], y[t - 1]], [a[t], y[t]]])
        truth = y[t + h]
        yield window, truth + 0.5 + rng.normal(0, 0.1), truth + rng.normal(0, 1.0), truth


def replay(c, h: int, n: int = 3000, seed: int = 0, change: int | None = None, banked: bool = False) -> np.ndarray:
    """Forecasts of ``c`` over :func:`stream`, each truth learned ``h`` records later with its context (the edge's
    order); ``change``: that record's truth is 5 higher; ``banked``: the edge's banked halves (prepare / the linear
    model / finish, learn_row / the linear model / learned) instead of predict_one / learn_one."""
    queue: deque = deque()
    out = []
    for i, (window, b, s, y) in enumerate(stream(n, seed, h)):
        if change is not None and i == change:
            y += 5.0
        if len(queue) >= h:  # the truth of the forecast made h records ago arrives first
            ctx, pb, ps, truth = queue.popleft()
            if banked:
                x = c.learn_row(pb, ps, truth, ctx)
                if x is not None:
                    c.model.learn_one(x, truth)
                    c.learned(pb, ps, truth, ctx)
            else:
                c.learn_one(pb, ps, truth, ctx)
        if banked:
            verdict = c.prepare(b, s, window)
            out.append(c.finish(c.model.predict_one(c.model_row), verdict, b, s))
        else:
            out.append(c.predict_one(b, s, window))
        queue.append((c.context(), b, s, y))
    return np.array(out)


def test_correct_is_opt_in_and_needs_the_online_linear_twin():
    assert type(make_combiner({}, target_index=TI)) is ContextStacking  # the default pays nothing
    c = make_combiner({"method": "context", "correct": True}, target_index=TI)
    assert type(c) is CorrectedContextStacking
    assert (c.correct, c.correct_half_life, c.correct_ridge) == (True, 2000.0, 3.0)
    assert c.params()["correct"] is True
    assert c.predict_one(9.0, 3.0, np.array([[1.0, 5.0], [2.0, 6.0]])) == 6.0  # untrained: persistence, uncorrected
    assert c.context().shape == (1, 4 + 6)  # one more slot: the forecast before the correction
    with pytest.raises(ValueError, match="twin"):
        make_combiner({"method": "context", "correct": True, "blend": "none"}, target_index=TI)
    assert make_combiner({"correct": True, "blend": "none", "twin": True}, target_index=TI).correct
    with pytest.raises(ValueError, match="ridge"):
        CorrectionLayer(ridge=-1.0)


def test_the_layer_takes_a_shrunk_share_of_what_the_forecast_misses():
    layer = CorrectionLayer(half_life=500, ridge=3.0)
    rng = np.random.default_rng(1)
    for _ in range(3000):
        y = rng.normal()
        f = y + 1.0 + rng.normal(0, 0.1)  # the forecast runs 1 too high; batch has it right
        layer.learn_one(f, (y + rng.normal(0, 0.1), f + rng.normal(), f + rng.normal(), f + rng.normal()), y)
    # x = batch - f ~ -1 explains y - f ~ -1 fully: least squares takes 1, the ridge of 3 about 1 / (1 + 3) of it
    assert 0.2 < layer.w[0] < 0.3 and all(abs(w) < 0.05 for w in layer.w[1:])
    assert layer.predict_one(2.0, (1.0, 2.0, 2.0, 2.0)) == pytest.approx(2.0 - layer.w[0])
    before = list(layer.w)
    layer.learn_one(2.0, (1.0, float("inf"), 2.0, 2.0), 1.0)  # non-finite: not learned
    layer.learn_one(2.0, (1.0, 2.0, 2.0, 2.0), float("nan"))
    assert layer.w == before and layer.learned == 3000


def test_the_corrected_forecast_beats_the_uncorrected_one_on_a_biased_model():
    h = 3
    plain = replay(make_combiner({}, target_index=TI), h)
    fixed = replay(make_combiner({"correct": True, "correct_half_life": 500}, target_index=TI), h)
    truths = np.array([y for *_, y in stream(3000, 0, h)])
    late = slice(1500, None)
    assert np.mean((fixed[late] - truths[late]) ** 2) < 0.99 * np.mean((plain[late] - truths[late]) ** 2)


def test_a_truth_changes_only_the_forecasts_made_after_it_arrived():
    for h in (1, 6):
        config = {"correct": True, "correct_half_life": 50, "correct_ridge": 0.1}
        before = replay(make_combiner(config, target_index=TI), h, n=400)
        after = replay(make_combiner(config, target_index=TI), h, n=400, change=200)
        assert np.array_equal(before[: 200 + h], after[: 200 + h])  # learned at record 200 + h, before its forecast
        assert before[200 + h] != after[200 + h]


def test_the_banked_halves_forecast_as_predict_one_does():
    config = {"correct": True, "correct_half_life": 200}
    one = replay(make_combiner(config, target_index=TI), 2, n=1500)
    banked = replay(make_combiner(config, target_index=TI), 2, n=1500, banked=True)
    np.testing.assert_allclose(banked, one, rtol=1e-9, atol=1e-9)  # the compiled step (if any) vs the Python halves


def test_a_pickled_or_copied_combiner_carries_on_identically():
    c = make_combiner({"correct": True, "correct_half_life": 100}, target_index=TI)
    data = list(stream(800, seed=4, h=1))
    prev = None
    for window, b, s, y in data[:400]:
        if prev is not None:
            c.learn_one(*prev)
        c.predict_one(b, s, window)
        prev = (b, s, y, c.context())
    twins = [pickle.loads(pickle.dumps(c)), copy.deepcopy(c)]
    assert all(type(t) is CorrectedContextStacking and t._correction.w == c._correction.w for t in twins)  # noqa: SLF001
    outs = []
    for k in (c, *twins):
        p, f = prev, []
        for window, b, s, y in data[400:]:
            k.learn_one(*p)
            f.append(k.predict_one(b, s, window))
            p = (b, s, y, k.context())
        outs.append(f)
    assert outs[1] == outs[0] and outs[2] == outs[0]


def test_the_product_layer_is_the_headroom_column():
    """Fed in eval's order (row j forecast after the truths of rows <= j - H), the layer gives what
    ``eval table --headroom``'s "(c) causal online" computes on a saved run, to rounding."""
    rng = np.random.default_rng(7)
    n, h = 2000, 6
    y = np.cumsum(rng.normal(size=n))
    experts = y[:, None] + rng.normal(0, [0.5, 0.8, 1.0, 0.6], (n, 4))
    f = y + 0.3 + rng.normal(0, 0.5, n)
    experts[0, 2] = np.nan  # not learned, not corrected (the first row: the product forgets per truth learned, the
    # column per row, so a row left out later would shift the weights a little, ~1e-6 here)
    ok = np.isfinite(experts).all(axis=1)
    layer, out = CorrectionLayer(), np.empty(n)
    for j in range(n):
        if j >= h and ok[j - h]:
            layer.learn_one(f[j - h], experts[j - h].tolist(), y[j - h])
        out[j] = layer.predict_one(f[j], experts[j].tolist())
    ref = causal_layer(f, experts, y, ok, h)
    np.testing.assert_allclose(out[ok], ref[ok], rtol=1e-12)
    assert out[0] == f[0]
