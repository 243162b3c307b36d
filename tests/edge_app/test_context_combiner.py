"""Context stacking (the default ``dynamic`` method): starts as persistence, learns from the lag window and
both forecasts, learns each truth with the row its forecast was made from, mutes a model gone wild."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from edge_app.combiners import make_combiner
from edge_app.state import Pending
from edge_app.telemetry import Counters
from model_contract.online_linear import OnlineLinear

TI = 1  # the target's column in the toy windows: (driver, target)


def rmse(e) -> float:
    e = np.asarray(e)
    return float(np.sqrt(np.mean(e * e)))


def stream(n: int, seed: int = 0, h: int = 1):
    """A driver ``a`` (AR(1)), a target whose change over ``h`` steps is 0.6 a + noise, and two models:
    batch = the truth + small noise, speed = the truth + large noise. Yields (window, batch, speed, y[t+h])."""
    rng = np.random.default_rng(seed)
    a = np.zeros(n + h + 1)
    for t in range(1, len(a)):
        a[t] = 0.9 * a[t - 1] + rng.normal()
    # y[t + h] = base[t] + 0.6 a[t] + noise, base a slow random walk: the change over h steps follows a[t]
    base = np.cumsum(rng.normal(0, 0.1, n + h + 1))
    y = base.copy()
    y[h:] = base[:-h] + 0.6 * a[:-h] + rng.normal(0, 0.3, n + 1)
    for t in range(1, n):
        window = np.array([[a[t - 1], y[t - 1]], [a[t], y[t]]])
        truth = y[t + h]
        yield window, truth + rng.normal(0, 0.2), truth + rng.normal(0, 0.6), truth


def test_starts_as_persistence():
    c = make_combiner({}, target_index=TI)
    window = np.array([[1.0, 5.0], [2.0, 6.0]])
    assert c.predict_one(9.0, 3.0, window) == 6.0
    assert c.weights == (0.0, 0.0)
    assert c.context().shape == (1, 4 + 7)  # window, 2 model inputs | 3 forecasts | the correction layer's 2


def test_needs_the_window_and_the_target_column():
    with pytest.raises(ValueError, match="lag window"):
        make_combiner({}, target_index=TI).predict_one(1.0, 2.0)
    with pytest.raises(ValueError, match="target_index"):
        make_combiner({}).predict_one(1.0, 2.0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown .* key"):
        make_combiner({"method": "context", "half_lfe": 10})
    with pytest.raises(ValueError, match="mute"):
        make_combiner({"method": "context", "mute": 0.5})


def test_learns_a_linear_truth_and_beats_persistence_and_the_online_linear_model():
    c = make_combiner({}, target_index=TI)
    linear = OnlineLinear(TI, half_life=1000)  # the baseline: the same window, no model forecasts
    errs, pers, lin = [], [], []
    for i, (window, b, s, y) in enumerate(stream(6000)):
        h = c.predict_one(b, s, window)
        f = linear.predict_one(window)
        if i >= 3000:
            errs.append(h - y)
            pers.append(window[-1, TI] - y)
            lin.append(f - y)
        c.learn_one(b, s, y, c.context())
        linear.learn_one(window, y)
    assert rmse(errs) < 0.8 * rmse(lin) < 0.8 * rmse(pers)
    assert rmse(errs) < rmse([0.2]) * 1.1  # about the batch model's own noise: it takes the batch change
    wb, ws = c.weights
    assert 0.7 < wb < 1.1 and abs(ws) < 0.3


def test_a_forecast_h_records_ahead_is_learned_with_its_own_row():
    """Horizon 3: the truth arrives three forecasts later and must be learned with the row it was forecast from
    (no model forecasts help here: batch = speed = persistence, so only the window can explain the change)."""
    h = 3
    right = make_combiner({}, target_index=TI)
    wrong = make_combiner({}, target_index=TI)
    queue: deque = deque()
    e_right, e_wrong = [], []
    for i, (window, _b, _s, y) in enumerate(stream(5000, seed=3, h=h)):
        last = window[-1, TI]
        f_right = right.predict_one(last, last, window)
        f_wrong = wrong.predict_one(last, last, window)
        queue.append((right.context(), y))
        if len(queue) > h:  # the truth of the forecast made h records ago has arrived
            ctx, truth = queue.popleft()
            right.learn_one(last, last, truth, ctx)
            wrong.learn_one(last, last, truth, wrong.context())  # the newest row: the wrong features
        if i >= 2500:
            e_right.append(f_right - y)
            e_wrong.append(f_wrong - y)
    assert rmse(e_right) < 0.75 * rmse(e_wrong)


def test_a_model_gone_wild_is_muted_counted_and_harmless():
    c = make_combiner({}, target_index=TI)
    counters = Counters()

    class Device:
        combiner = c

    counters.watch({"d1": Device})
    errs = []
    for i, (window, b, s, y) in enumerate(stream(4000, seed=5)):
        if i >= 2000:
            b = y + 40.0 * math.sin(i)  # the batch model extrapolates wildly
        f = c.predict_one(b, s, window)
        if i >= 2100:
            errs.append(f - y)
        c.learn_one(b, s, y, c.context())
    counts = c.counts()
    assert counts["muted_batch"] > 1800 and counts["muted_speed"] == 0  # muted from a few records after it broke
    assert c.weights[0] == 0.0  # no weight while muted
    assert rmse(errs) < 1.0  # the hybrid stays sane (the wild model's errors are ~28)
    d = counters.to_dict()
    assert d["combiner_muted_batch"] == counts["muted_batch"] and d["combiner_muted_speed"] == 0
    # the default's correction layer: its counters reach the edge's metrics too
    assert d["combiner_correct_learned"] == counts["correct_learned"] > 3000 and d["combiner_correct_rejected"] == 0
    assert "_devices" not in d


def test_non_finite_inputs_are_skipped_and_the_forecast_stays_finite():
    c = make_combiner({}, target_index=TI)
    data = list(stream(600, seed=7))
    for window, b, s, y in data[:500]:
        c.predict_one(b, s, window)
        c.learn_one(b, s, y, c.context())
    window, b, s, y = data[500]
    for bad_b, bad_s in [(math.nan, s), (b, math.inf), (1e300, -1e300), (math.nan, math.nan)]:
        f = c.predict_one(bad_b, bad_s, window)
        assert math.isfinite(f) and abs(f - y) < 5.0
        c.learn_one(bad_b, bad_s, y, c.context())
    counts = c.counts()  # zeroed as bad inputs, then muted (their errors count as huge)
    assert counts["bad_inputs"] >= 2 and counts["bad_inputs"] + counts["muted_batch"] + counts["muted_speed"] >= 5
    before = c.counts()["skipped"]
    c.learn_one(b, s, math.nan, c.context())  # no truth
    c.learn_one(b, s, y, None)  # no context (a forecast restored after a restart)
    c.learn_one(b, s, y, np.zeros((1, 3)))  # a context of another shape
    assert c.counts()["skipped"] == before + 3
    nan_window = window.copy()
    nan_window[-1, TI] = math.nan
    assert math.isfinite(c.predict_one(b, s, nan_window))  # no newest value: a model's forecast, never NaN
    assert math.isfinite(c.predict_one(b, s, window))  # and the state is not poisoned
    assert all(math.isfinite(w) for w in c.weights)


def test_pending_keeps_the_context_and_old_pendings_still_build():
    c = make_combiner({}, target_index=TI)
    window = np.array([[1.0, 5.0], [2.0, 6.0]])
    c.predict_one(7.0, 6.5, window)
    p = Pending(7.0, 6.5, 6.0, "v1", c.context())
    window[:] = 0.0
    c.predict_one(0.0, 0.0, window)
    assert p.context[0, :4].tolist() == [1.0, 5.0, 2.0, 6.0]  # a copy, not the combiner's live row
    assert Pending(1.0, 2.0, 1.5, "v1").context is None  # what a restart restores


def test_the_twin_guard_follows_the_online_linear_model_when_the_model_inputs_are_noise():
    """``twin=True`` blends in the stack without the model inputs: pure-noise models cost (almost) nothing."""
    rng = np.random.default_rng(11)
    plain = make_combiner({"blend": "none"}, target_index=TI)
    guarded = make_combiner({"twin": True, "blend": "none"}, target_index=TI)
    linear = OnlineLinear(TI, half_life=1000)
    e_plain, e_guarded, e_lin = [], [], []
    for i, (window, _b, _s, y) in enumerate(stream(5000, seed=13)):
        last = window[-1, TI]
        b, s = last + rng.normal(0, 1.0), last + rng.normal(0, 1.0)  # models that know nothing
        fp, fg, fl = plain.predict_one(b, s, window), guarded.predict_one(b, s, window), linear.predict_one(window)
        if i >= 2000:
            e_plain.append(fp - y)
            e_guarded.append(fg - y)
            e_lin.append(fl - y)
        plain.learn_one(b, s, y, plain.context())
        guarded.learn_one(b, s, y, guarded.context())
        linear.learn_one(window, y)
    assert rmse(e_guarded) < 1.02 * rmse(e_lin)
    assert rmse(e_guarded) <= 1.01 * rmse(e_plain)
    assert guarded.params()["twin"] is True and make_combiner({}).twin is False  # opt-in


def test_a_calendar_spec_reads_the_online_linear_models_inputs():
    """With a spec, the stack reads what the online linear baseline reads: the calendar features once."""
    from model_contract import FeatureSpec

    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), calendar=("day_sin1", "day_cos1"))
    c = make_combiner({}, spec=spec)
    window = np.arange(8.0).reshape(2, 4)  # (steps, columns + calendar); the newest target is window[1, 1] = 5
    assert c.predict_one(9.0, 3.0, window) == 5.0
    row = c.context()[0]
    assert row.shape == (len(spec.linear_inputs()) + 7,)  # + the correction layer's 2 slots
    assert row[:6].tolist() == [0.0, 1.0, 4.0, 5.0, 6.0, 7.0]  # the older step's calendar copy left out
    assert row[6:8].tolist() == [4.0, -2.0]  # batch - last, speed - last
    assert make_combiner({}, spec=FeatureSpec(columns=("a", "y"), target="y")).context() is None  # not built yet
    bad = make_combiner({}, target_index=1)
    bad.bind(1, inputs=(0, 1))  # the newest target value (position 5) left out
    with pytest.raises(ValueError, match="newest target"):
        bad.predict_one(1.0, 1.0, window)


def _run_faulty(c, n: int = 6000, seed: int = 21):
    """The toy stream with a sensor alternating between two levels on rows 3000-3070 and the models' forecasts
    running the wrong way there (as the batch and speed models did on an unseen turbine stream)."""
    errors = []
    for i, (window, b, s, y) in enumerate(stream(n, seed=seed)):
        if 3000 <= i < 3070:
            flip = 3.0 if i % 2 == 0 else -3.0
            y = y + flip
            b, s = b - flip, s - flip  # the models err the wrong way
        f = c.predict_one(b, s, window)
        errors.append((f - y, b - y, s - y, window[-1, TI] - y))
        c.learn_one(b, s, y, c.context())
    return np.array(errors)


def test_the_expert_layer_stays_within_one_percent_of_its_best_expert_through_a_fault():
    """``blend="experts"``: exponential weights over the stack, the online linear twin, persistence, batch, speed
    and static; through a fault where the models run the wrong way it is no worse than the best single one."""
    blended = make_combiner({"blend": "experts"}, target_index=TI)
    plain = make_combiner({"blend": "none"}, target_index=TI)
    e = _run_faulty(blended)
    p = _run_faulty(plain)
    mse = (e**2).mean(axis=0)
    best = min(mse[1:].min(), (p[:, 0] ** 2).mean())  # batch, speed, persistence, the plain stack
    assert mse[0] <= 1.01 * best
    for part in (slice(0, 3000), slice(3000, None)):  # and in each half
        best_part = min((e[part, 1:] ** 2).mean(axis=0).min(), (p[part, 0] ** 2).mean())
        assert (e[part, 0] ** 2).mean() <= 1.01 * best_part
    w = blended.expert_weights
    assert len(w) == 6 and abs(sum(w) - 1.0) < 1e-9 and w[3] == max(w)  # the batch model leads on this toy
    assert blended.params()["blend"] == "experts" and make_combiner({}).blend == "pair"  # pair: the default


def test_a_config_with_the_older_twin_guard_still_loads_under_the_pair_default():
    """``twin: true`` without ``blend`` (valid before the pair layer became the default) runs the twin guard alone;
    ``twin`` with an explicit layer is still refused."""
    assert make_combiner({"method": "context", "twin": True}).blend == "none"
    assert make_combiner({"method": "context"}).blend == "pair"
    with pytest.raises(ValueError, match="twin"):
        make_combiner({"method": "context", "twin": True, "blend": "pair"})


def test_the_expert_layer_refuses_bad_settings():
    with pytest.raises(ValueError, match="blend must be"):
        make_combiner({"blend": "mean"})
    with pytest.raises(ValueError, match="twin"):
        make_combiner({"blend": "experts", "twin": True})
    with pytest.raises(ValueError, match="eta"):
        make_combiner({"blend": "experts", "blend_eta": 0})


def test_the_ablation_switches_keep_a_model_input_at_zero():
    c = make_combiner({"use_batch": False, "use_speed": False, "correct": False}, target_index=TI)
    lin = OnlineLinear(TI, half_life=1000)
    for window, b, s, y in stream(2000, seed=5):
        f, g = c.predict_one(b, s, window), lin.predict_one(window)
        c.learn_one(b, s, y, c.context())
        lin.learn_one(window, y)
    assert c.weights == (0.0, 0.0) and f == pytest.approx(g, abs=1e-9)  # neither model: the online linear baseline
    only = make_combiner({"use_speed": False}, target_index=TI)
    for window, b, s, y in stream(500, seed=6):
        only.predict_one(b, s, window)
        only.learn_one(b, s, y, only.context())
    assert only.model._d == 4 + 1 + 1 and only.weights[1] == 0.0 and only.weights[0] > 0.5  # reads the batch model


def test_the_pair_layer_stays_within_one_percent_of_the_stack_and_the_online_linear_model():
    """``blend="pair"``: the layer over the stack and its online linear twin only, through the same fault."""
    pair = make_combiner({}, target_index=TI)  # the default layer
    plain = make_combiner({"blend": "none"}, target_index=TI)
    lin = OnlineLinear(TI, half_life=1000)
    e, p = _run_faulty(pair), _run_faulty(plain)
    el = []
    for i, (window, _b, _s, y) in enumerate(stream(6000, seed=21)):
        if 3000 <= i < 3070:
            y = y + (3.0 if i % 2 == 0 else -3.0)
        el.append(lin.predict_one(window) - y)
        lin.learn_one(window, y)
    el = np.array(el)
    for part in (slice(None), slice(0, 3000), slice(3000, None)):
        best = min((p[part, 0] ** 2).mean(), (el[part] ** 2).mean())
        assert (e[part, 0] ** 2).mean() <= 1.01 * best
    assert len(pair.expert_weights) == 2 and abs(sum(pair.expert_weights) - 1.0) < 1e-9
