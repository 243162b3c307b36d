"""Unit tests of the combiners (pure Python, no TensorFlow, no Kafka)."""

from __future__ import annotations

import random

import pytest

from edge_app.combiners import DEFAULT_DYNAMIC, METHODS, make_combiner
from edge_app.convex_combiners import Fixed

# the convex blends (weights sum to 1); ``context`` (the default) has tests of its own below
DYNAMIC = [{"strategy": "dynamic", "method": m} for m in METHODS if not METHODS.classes[m].uses_window]
ALL = [{"strategy": s} for s in ("batch", "speed", "static")] + DYNAMIC


def synthetic(n: int, sd_batch: float, sd_speed: float, seed: int = 1):
    """(batch, speed, y) with independent Gaussian errors of the given spreads."""
    rng = random.Random(seed)
    for i in range(n):
        y = 10.0 + (i % 50) / 10.0
        yield y + rng.gauss(0.0, sd_batch), y + rng.gauss(0.0, sd_speed), y


def run(combiner, stream) -> list[float]:
    ws = []
    for b, s, y in stream:
        combiner.predict_one(b, s)
        ws.append(combiner.weights[1])
        combiner.learn_one(b, s, y)
    return ws


@pytest.mark.parametrize("config", ALL, ids=lambda c: c.get("method", c["strategy"]))
def test_weights_sum_to_one_and_prediction_is_the_blend(config):
    c = make_combiner(config)
    for b, s, y in synthetic(300, 1.0, 0.5):
        wb, ws = c.weights
        assert wb + ws == pytest.approx(1.0)
        assert c.predict_one(b, s) == pytest.approx(wb * b + ws * s)
        c.learn_one(b, s, y)


@pytest.mark.parametrize("config", DYNAMIC, ids=lambda c: c["method"])
@pytest.mark.parametrize("better", ["batch", "speed"])
def test_dynamic_favours_the_better_model(config, better):
    sd_b, sd_s = (0.2, 2.0) if better == "batch" else (2.0, 0.2)
    c = make_combiner(config)
    ws = run(c, synthetic(2000, sd_b, sd_s))
    tail = sum(ws[-500:]) / 500
    assert (tail < 0.3) if better == "batch" else (tail > 0.7)


@pytest.mark.parametrize("config", DYNAMIC, ids=lambda c: c["method"])
def test_dynamic_follows_a_switch(config):
    c = make_combiner(config)
    run(c, synthetic(2000, 0.2, 2.0, seed=2))
    ws = run(c, synthetic(3000, 2.0, 0.2, seed=3))
    assert sum(ws[-500:]) / 500 > 0.7


@pytest.mark.parametrize("config", DYNAMIC, ids=lambda c: c["method"])
def test_dynamic_beats_the_worse_model(config):
    c = make_combiner(config)
    se = se_b = se_s = 0.0
    for b, s, y in synthetic(3000, 1.0, 0.6, seed=4):
        h = c.predict_one(b, s)
        se += (h - y) ** 2
        se_b += (b - y) ** 2
        se_s += (s - y) ** 2
        c.learn_one(b, s, y)
    assert se < se_b and se < 1.15 * se_s


def test_static_reproduces_the_prototype():
    c = make_combiner({"strategy": "static", "speed_weight": 0.3})
    assert c.weights == (0.7, 0.3)
    assert c.predict_one(10.0, 20.0) == pytest.approx(13.0)
    assert make_combiner({"strategy": "static"}).weights == (0.7, 0.3)  # 0.3 is the default
    c.learn_one(10.0, 20.0, 20.0)
    c.reset_speed()
    assert c.weights == (0.7, 0.3)
    assert make_combiner({"strategy": "batch"}).predict_one(1.0, 2.0) == 1.0
    assert make_combiner({"strategy": "speed"}).predict_one(1.0, 2.0) == 2.0


def test_default_is_dynamic_and_names():
    assert make_combiner({}).name == "dynamic"
    assert make_combiner({"strategy": "dynamic", "method": "eg"}).name == "dynamic"
    assert make_combiner({"strategy": "batch"}).name == "batch"


@pytest.mark.parametrize("method", ["inverse_mse", "sliding_mse", "hedge", "eg", "ftl"])
def test_reset_speed_keep_and_reset(method):
    keep = make_combiner({"strategy": "dynamic", "method": method, "on_swap": "keep"})
    reset = make_combiner({"strategy": "dynamic", "method": method, "on_swap": "reset"})
    for c in (keep, reset):
        run(c, synthetic(1000, 0.2, 2.0))
    before = keep.weights
    keep.reset_speed()
    assert keep.weights == before  # keep: the new model inherits the old one's record
    reset.reset_speed()
    if method != "ftl":
        assert reset.weights == (0.5, 0.5)  # reset: equal trust
    # either way the combiner then learns again
    ws = run(reset, synthetic(1000, 2.0, 0.2, seed=5))
    assert ws[-1] > 0.5


def test_stacking_reset_speed_reopens_the_estimate():
    c = make_combiner({"strategy": "dynamic", "method": "stacking", "half_life": 5000})
    run(c, synthetic(3000, 0.2, 2.0))
    w = c.weights
    c.reset_speed()
    assert c.weights == w
    ws = run(c, synthetic(300, 2.0, 0.2, seed=6))
    assert ws[-1] > 0.7  # moves fast after the reset


@pytest.mark.parametrize(
    "config",
    [
        {"strategy": "blend"},
        {"strategy": "static", "speed_weight": 1.5},
        {"strategy": "static", "speed_weight": "heavy"},
        {"strategy": "dynamic", "method": "magic"},
        {"strategy": "dynamic", "method": "inverse_mse", "half_life": 0},
        {"strategy": "dynamic", "method": "hedge", "eta": -1},
        {"strategy": "dynamic", "method": "sliding_mse", "size": 0},
        {"strategy": "dynamic", "method": "eg", "on_swap": "forget"},
    ],
)
def test_bad_config_raises(config):
    with pytest.raises(ValueError):
        make_combiner(config)


def test_fixed_rejects_out_of_range():
    with pytest.raises(ValueError):
        Fixed(-0.1)


def test_constant_errors_do_not_break_anything():
    for config in DYNAMIC:
        c = make_combiner(config)
        for _ in range(100):
            c.learn_one(5.0, 5.0, 5.0)  # both perfect: no division by zero, no NaN
        h = c.predict_one(5.0, 5.0)
        assert h == pytest.approx(5.0)
        assert all(0.0 <= w <= 1.0 for w in c.weights)


@pytest.mark.parametrize("config", DYNAMIC, ids=lambda c: c["method"])
def test_wild_records_do_not_poison_the_state(config):
    c = make_combiner(config)
    run(c, synthetic(200, 1.0, 1.0, seed=8))  # a wild record mid-stream (the scale estimates are warm)
    wild = [(1e300, -1e300, 0.0), (float("inf"), 1.0, 2.0), (1.0, float("nan"), 2.0), (1e70, 1.0, 2.0)]
    for b, s, y in wild:
        c.predict_one(b, s)
        c.learn_one(b, s, y)
        assert all(0.0 <= w <= 1.0 for w in c.weights)
    ws = run(c, synthetic(3000, 2.0, 0.2, seed=7))  # afterwards it still learns which model is better
    assert sum(ws[-500:]) / 500 > 0.7
    assert c.predict_one(1.0, 2.0) == c.predict_one(1.0, 2.0)  # not NaN


# ---- typed configuration (issue 7, item 5) ---------------------------------------------------
def test_the_measured_default_lives_in_the_signature():
    """``{"method": "context"}`` gets the measured half-life (1000), not another default."""
    assert make_combiner({"strategy": "dynamic", "method": "context"}).half_life == DEFAULT_DYNAMIC["half_life"] == 1000
    assert make_combiner({}).params() == make_combiner({"method": "context"}).params()
    assert type(make_combiner({})).__name__ == "CorrectedContextStacking"  # the correction layer, default since 12-07
    assert make_combiner({"method": "stacking"}).half_life == 5  # the previous default keeps its measured one


@pytest.mark.parametrize(
    ("config", "bad", "valid"),
    [
        ({"method": "stacking", "half_lfe": 5}, "half_lfe", "clip, delta, half_life, method, on_swap"),
        ({"strategy": "static", "speed_wieght": 0.3}, "speed_wieght", "speed_weight, strategy"),
        ({"strategy": "batch", "speed_weight": 0.3}, "speed_weight", "strategy"),
        ({"method": "hedge", "size": 10}, "size", "eta, half_life, method, on_swap"),
    ],
)
def test_an_unknown_key_is_refused_with_the_valid_ones(config, bad, valid):
    with pytest.raises(ValueError, match=rf"unknown .* key\(s\) for \w+: {bad} \(valid: {valid}\)"):
        make_combiner(config)


def test_a_typo_is_a_clear_error_at_config_load():
    from edge_app.config import ConfigError, EdgeConfig

    with pytest.raises(ConfigError, match=r"combination: .*half_lfe.*valid: .*half_life"):
        EdgeConfig.from_dict({"models": {"batch": "b"}, "combination": {"strategy": "dynamic", "half_lfe": 5}})


@pytest.mark.parametrize("config", [*ALL, {"method": "context"}], ids=lambda c: c.get("method", c.get("strategy")))
def test_constructor_arguments_stay_inspectable(config):
    """river's convention: every argument is an attribute; ``params()`` rebuilds an equal combiner."""
    c = make_combiner(config)
    params = c.params()
    assert params == {k: getattr(c, k) for k in params}
    twin = type(c)(**params)
    assert twin.params() == params and twin.weights == c.weights
    assert make_combiner({**config, **params}).params() == params  # the config keys are the parameters


def test_inverse_mse_and_ftl_share_one_forgotten_mse_update():
    """Both track the same exponentially forgotten MSE (one helper): fed the same stream, same state."""
    inv = make_combiner({"method": "inverse_mse", "half_life": 20, "prior": 2.0})
    ftl = make_combiner({"method": "ftl", "half_life": 20, "prior": 2.0})
    for b, s, y in list(synthetic(300, 1.0, 0.5, seed=3)) + [(1e300, 0.0, 1.0)]:
        inv.learn_one(b, s, y)
        ftl.learn_one(b, s, y)
    assert (inv._mb, inv._ms) == (ftl._mb, ftl._ms)  # noqa: SLF001
    assert inv._ms < inv._mb  # noqa: SLF001 (speed is the better model here)
