"""The eval's dynamic combiner is made as the edge makes a new device's: from the batch manifest's warm start
(or the same function's result when a cached manifest lacks it); its forecasts equal streaming the training
file through a fresh combiner first (the eval's former warm-up), bit for bit. Without TensorFlow."""

from __future__ import annotations

from collections import deque

import numpy as np

from edge_app.combiners import make_combiner
from hybridstream.evaluation.online_run import dynamic_combiner
from model_contract import FeatureBuffer, FeatureSpec, Manifest, Scaler, context_stack
from model_contract.online_linear import OnlineLinear

SPEC = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), horizon=3)


def _matrix(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    y = np.cumsum(rng.normal(0, 0.1, rows))
    y[3:] += 0.8 * a[:-3]  # the change over 3 steps follows the driver
    return np.column_stack([a, y])


def _streamed(train: np.ndarray, spec: FeatureSpec):
    """The former ``online_run._warm_combiner``: stream the history with batch = speed = last; then, as a warm
    start loads, the window's part from the baseline streamed through the history (the warm start's twin) and the
    model inputs' part fresh (the history taught it nothing about them)."""
    c = make_combiner({"strategy": "dynamic", "blend": "none"}, spec=spec)
    context_stack.stream(c, train, spec)
    twin = OnlineLinear.from_state(context_stack.twin_warm_start(train, spec))  # the baseline streamed through it
    c.model = context_stack.fresh_model_inputs(c.model, 2, twin)  # its window part, the model inputs fresh
    c._set_coef()
    return c


def _manifest(extra: dict) -> Manifest:
    scaler = Scaler.identity(2, SPEC.target_index)
    return Manifest("batch", "v", "0" * 64, SPEC, scaler, SPEC.input_shape, kind="batch", extra=extra)


def _forecasts(c, test: np.ndarray) -> list[float]:
    buf, ti, h, out, pending = FeatureBuffer(SPEC), SPEC.target_index, SPEC.horizon, [], deque()
    for t in range(len(test)):
        while pending and pending[0][0] <= t - 1:
            j, b, ctx = pending.popleft()
            c.learn_one(b, b + 0.1, test[j, ti], ctx)
        if buf.ready and t + h - 1 < len(test):
            b = float(test[t - 1, ti]) + 0.05
            out.append(c.predict_one(b, b + 0.1, buf.window))
            pending.append((t + h - 1, b, c.context()))
        buf.push_row(test[t])
    return out


def test_the_eval_warm_start_is_the_manifest_one_and_equals_streaming_the_history():
    train, test = _matrix(2000, 0), _matrix(1000, 1)
    cfg, logs = {"strategy": "dynamic", "blend": "none"}, []  # the stack alone: what streaming the history gives
    shipped = dynamic_combiner(
        cfg, SPEC, _manifest({"combiner_warm_start": context_stack.warm_start(train, SPEC)}), train
    )
    computed = dynamic_combiner(cfg, SPEC, _manifest({}), train, log=logs.append)  # an old cache entry
    cold = dynamic_combiner(cfg, SPEC, _manifest({}), train, warm=False)
    assert shipped.warm_rows == computed.warm_rows == 2000 - (SPEC.max_lag + SPEC.horizon - 1) and cold.warm_rows == 0
    assert "1996 history rows" in logs[-1]
    reference = _forecasts(_streamed(train, SPEC), test)
    assert _forecasts(shipped, test) == reference == _forecasts(computed, test)
    assert _forecasts(cold, test) != reference
    pair = [  # the default layer: the shipped and the computed warm start replay alike too
        dynamic_combiner({"strategy": "dynamic"}, SPEC, m, train, log=logs.append)
        for m in (_manifest({"combiner_warm_start": context_stack.warm_start(train, SPEC)}), _manifest({}))
    ]
    assert pair[0].blend == "pair" and _forecasts(pair[0], test) == _forecasts(pair[1], test)


def test_the_manifest_state_is_used_as_shipped_and_a_config_that_does_not_fit_starts_cold():
    train, other = _matrix(800, 0), _matrix(800, 7)
    manifest = _manifest({"combiner_warm_start": context_stack.warm_start(other, SPEC)})
    used = dynamic_combiner({"strategy": "dynamic"}, SPEC, manifest, train)
    assert np.array_equal(used.model.weights, _streamed(other, SPEC).model.weights)  # not recomputed from train
    logs: list[str] = []
    cold = dynamic_combiner({"strategy": "dynamic", "half_life": 300}, SPEC, manifest, train, log=logs.append)
    assert cold.warm_rows == 0 and "starts cold" in logs[-1] and "half_life 300" in logs[-1]


def test_a_cached_manifest_without_the_twin_gets_the_trainers_twin():
    """A manifest cached before warm starts carried the layers' twin: the eval computes it from the training file
    with the trainer's function, so ``blend: pair`` replays as a new manifest would (not the older cut)."""
    train, test = _matrix(800, 0), _matrix(400, 1)
    warm = context_stack.warm_start(train, SPEC)
    old = {k: v for k, v in warm.items() if k != context_stack.TWIN_KEY}
    cfg = {"strategy": "dynamic", "blend": "pair"}
    new = dynamic_combiner(cfg, SPEC, _manifest({"combiner_warm_start": warm}), train)
    cached = dynamic_combiner(cfg, SPEC, _manifest({"combiner_warm_start": old}), train)
    assert new.twin_start == cached.twin_start == "twin"
    assert _forecasts(new, test) == _forecasts(cached, test)
    default = dynamic_combiner({"strategy": "dynamic"}, SPEC, _manifest({"combiner_warm_start": old}), train)
    assert default.blend == "pair" and default.twin_start == "twin"  # the default layer gets the twin too


def test_own_warm_start_gives_a_variant_of_another_half_life_the_trainers_warm_start_for_its_config():
    """``eval run --warm-variants``: a half-life the manifest's warm start does not fit starts from the warm start
    the trainer would ship for it (computed from the training file), so it compares with dynamic like with like."""
    train, test = _matrix(1200, 0), _matrix(600, 1)
    manifest = _manifest({"combiner_warm_start": context_stack.warm_start(train, SPEC)})
    cfg, logs = {"strategy": "dynamic", "half_life": 3000}, []
    own = dynamic_combiner(cfg, SPEC, manifest, train, own=True, log=logs.append)
    assert own.blend == "pair" and own.half_life == 3000 and own.warm_rows == 1200 - (SPEC.max_lag + SPEC.horizon - 1)
    assert "its own warm start" in logs[-1]
    shipped = make_combiner(cfg, spec=SPEC, warm=context_stack.warm_start(train, SPEC, cfg))  # as if the default
    assert _forecasts(own, test) == _forecasts(shipped, test)
    assert _forecasts(own, test) != _forecasts(dynamic_combiner(cfg, SPEC, manifest, train), test)  # not cold
    same = dynamic_combiner({"strategy": "dynamic"}, SPEC, manifest, train, own=True, log=logs.append)
    assert "the batch model's warm start" in logs[-1] and same.warm_rows == own.warm_rows  # a fitting one is used
    twin = dynamic_combiner({"half_life": 3000, "twin": True}, SPEC, manifest, train, own=True, log=logs.append)
    assert twin.warm_rows == 0 and "starts cold" in logs[-1]  # the twin guard has no warm start


def test_a_cached_manifest_without_the_twin_gives_the_stack_alone_the_twins_window_part():
    """``blend: none`` reads the twin too (``ContextStack.load_warm``: the window's part): a twin-less cached
    manifest loads the stack alone as a manifest with the twin does and as the pair layer's stack, not the older,
    trace-shrunk window part (review of be45c6c: abrupt H = 1's stack alone had replayed without it)."""
    train, test = _matrix(800, 0), _matrix(400, 1)
    warm = context_stack.warm_start(train, SPEC)
    old = _manifest({"combiner_warm_start": {k: v for k, v in warm.items() if k != context_stack.TWIN_KEY}})
    none = {"strategy": "dynamic", "blend": "none"}
    new = dynamic_combiner(none, SPEC, _manifest({"combiner_warm_start": warm}), train)
    cached = dynamic_combiner(none, SPEC, old, train)
    pair = dynamic_combiner({"strategy": "dynamic", "blend": "pair"}, SPEC, old, train)
    stacks = [c.model.state() for c in (new, cached, pair)]
    for s in stacks[1:]:
        assert np.array_equal(np.asarray(s["P"]), np.asarray(stacks[0]["P"]))
        assert s["w"] == stacks[0]["w"] and s["mean"] == stacks[0]["mean"] and s["var"] == stacks[0]["var"]
    assert _forecasts(new, test) == _forecasts(cached, test)
