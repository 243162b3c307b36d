"""The batch model's combiner warm start (model_contract.context_stack.warm_start) is the state a context
stack reaches by streaming the same history itself: bit-equal forecasts afterwards; cold when it does not fit."""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest

from edge_app.combiners import make_combiner, warm_start_mismatch
from edge_app.context_stacking import ContextStacking
from model_contract import FeatureBuffer, FeatureSpec, context_stack
from model_contract.online_linear import OnlineLinear

SPECS = [
    FeatureSpec(columns=("a", "b", "y"), target="y", lags=(1, 2, 3)),
    FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), horizon=3, calendar=("day_sin1", "day_cos1")),
]


def _replay(combiners, test: np.ndarray, spec: FeatureSpec, seed: int = 5) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    buf, ti = FeatureBuffer(spec), spec.target_index
    outs: list[list[float]] = [[] for _ in combiners]
    pending: deque = deque()
    for t in range(len(test)):
        while pending and pending[0][0] <= t - 1:
            j, b, s, ctxs = pending.popleft()
            for c, ctx in zip(combiners, ctxs, strict=True):
                c.learn_one(b, s, test[j, ti], ctx)
        if buf.ready and t + spec.horizon - 1 < len(test):
            w = buf.window
            b, s = w[-1, ti] + rng.normal(0, 0.05), w[-1, ti] + rng.normal(0, 0.3)
            for out, c in zip(outs, combiners, strict=True):
                out.append(c.predict_one(b, s, w))
            pending.append((t + spec.horizon - 1, b, s, [c.context() for c in combiners]))
        buf.push_row(test[t])
    return outs


def _data(spec: FeatureSpec, rows: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.cumsum(rng.normal(size=(rows, len(spec.features))), axis=0) * 0.1


@pytest.mark.parametrize("spec", SPECS, ids=["h1", "h3-calendar"])
def test_warm_start_equals_streaming_the_history(spec):
    data = _data(spec)
    history, test = data[:2000], data[2000:]
    stack = {"strategy": "dynamic", "blend": "none"}  # the stack alone (the default pair layer starts fresh weights)
    streamed = make_combiner(stack, spec=spec)
    context_stack.stream(streamed, history, spec)  # as the edge would, batch = speed = last
    twin = OnlineLinear.from_state(context_stack.twin_warm_start(history, spec))  # the baseline streamed through it
    streamed.model = context_stack.fresh_model_inputs(streamed.model, 2, twin)  # its window part, model inputs fresh
    streamed._set_coef()
    warm = json.loads(json.dumps(context_stack.warm_start(history, spec)))  # as shipped in a manifest
    assert warm_start_mismatch(stack, spec, warm) == ""
    loaded = make_combiner(stack, spec=spec, warm=warm)
    cold = make_combiner(stack, spec=spec)
    assert loaded.warm_rows == warm["rows"] == 2000 - spec.max_lag - spec.horizon + 1
    got, d = loaded.model.state(), loaded.model._d  # what the load must give: the twin's window part, and the
    assert got["w"][: d - 3] == twin.state()["w"][:-1] and got["dy2"] == twin.state()["dy2"]  # model inputs fresh
    assert got["var"][d - 3 : d - 1] == [got["dy2"]] * 2 and got["w"][d - 3 : d - 1] == [0.0, 0.0]  # on its scale
    a, b, c = _replay([streamed, loaded, cold], test, spec)
    assert a == b  # bit-equal over the whole test stream
    assert len(a) > 1900 and a != c


def test_the_defaults_agree_with_the_combiner():
    c = ContextStacking()
    assert {k: c.warm_config()[k] for k in context_stack.DEFAULT_CONFIG} == context_stack.DEFAULT_CONFIG


def test_a_warm_start_that_does_not_fit_is_refused_with_the_reason():
    spec = SPECS[0]
    warm = context_stack.warm_start(_data(spec, 500), spec)
    assert "half_life 500 != 1000" in warm_start_mismatch({"method": "context", "half_life": 500}, spec, warm)
    assert "twin" in warm_start_mismatch({"twin": True}, spec, warm)
    assert "no warm start" in warm_start_mismatch({"method": "hedge"}, spec, warm)
    assert "not dynamic" in warm_start_mismatch({"strategy": "static"}, spec, warm)
    assert "feature spec" in warm_start_mismatch({}, FeatureSpec(columns=("a", "b", "y"), target="y"), warm)
    assert "ships no" in warm_start_mismatch({}, spec, None)
    broken = json.loads(json.dumps(warm))
    broken["state"]["model"]["P"][0][0] = float("nan")
    assert "not finite" in warm_start_mismatch({}, spec, broken)
    with pytest.raises(ValueError, match="half_life"):
        make_combiner({"half_life": 500}, spec=spec, warm=warm)


@pytest.mark.parametrize("spec", SPECS, ids=["h1", "h3-calendar"])
def test_ablations_and_the_expert_layer_start_from_the_same_warm_start(spec):
    """The warm start (learned with both model inputs 0) cut to the inputs a variant reads: an ablation's model and
    the expert layer's online linear twin start where the online linear baseline streamed through the history is."""
    from hybridstream.evaluation.baselines import online_linear_forecasts

    data = _data(spec)
    history, test = data[:2000], data[2000:]
    warm = context_stack.warm_start(history, spec)
    cfg = {"strategy": "dynamic", "correct": False}  # the stack and its layers as the baseline starts (no correction)
    neither = make_combiner(cfg | {"use_batch": False, "use_speed": False}, spec=spec, warm=warm)
    no_speed = make_combiner(cfg | {"use_speed": False}, spec=spec, warm=warm)
    experts = make_combiner(cfg | {"blend": "experts"}, spec=spec, warm=warm)
    n = neither.model._d
    assert no_speed.model._d == n + 1 and experts._twin._d == n and warm_start_mismatch(cfg, spec, warm) == ""
    ours, _, _ = _replay([neither, no_speed, experts], test, spec)
    base, _ = online_linear_forecasts(test, spec, warmup=history)
    base = base[np.isfinite(base)]
    assert len(ours) == len(base)
    assert np.max(np.abs(np.array(ours) - base)) < 0.05 * np.std(test[:, spec.target_index])  # the baseline's start


def _baseline(history: np.ndarray, test: np.ndarray, spec: FeatureSpec) -> list[float]:
    """The eval's online_linear forecasts of ``test`` (hybridstream.evaluation.online_run: streamed through the
    history first, then forecast and learn each truth on arrival)."""
    from hybridstream.evaluation.online_run import _warm_linear
    from model_contract.online_linear import OnlineLinear

    model = OnlineLinear.for_spec(spec)
    _warm_linear(model, history, spec)
    buf, ti, out, pending = FeatureBuffer(spec), spec.target_index, [], deque()
    for t in range(len(test)):
        while pending and pending[0][0] <= t - 1:
            j, w = pending.popleft()
            model.learn_one(w, test[j, ti])
        if buf.ready and t + spec.horizon - 1 < len(test):
            out.append(model.predict_one(buf.window))
            pending.append((t + spec.horizon - 1, buf.window.copy()))
        buf.push_row(test[t])
    return out


@pytest.mark.parametrize("spec", SPECS, ids=["h1", "h3-calendar"])
def test_the_pair_layers_twin_is_the_online_linear_baseline(spec, linear_backend):
    """The warm start carries the twin's own state (the baseline streamed through the same history, issue 17):
    the pair layer's twin then forecasts what the eval's online_linear baseline does, on both kernel backends."""
    data = _data(spec, 2400)
    history, test = data[:1200], data[1200:]
    warm = json.loads(json.dumps(context_stack.warm_start(history, spec)))  # as shipped in a manifest
    pair = make_combiner({"method": "context", "blend": "pair"}, spec=spec, warm=warm)
    assert pair.twin_start == "twin" and warm_start_mismatch({"blend": "pair"}, spec, warm) == ""
    twin: list[float] = []
    pair.predict_one = _recording(pair, twin)
    _replay([pair], test, spec)
    base = _baseline(history, test, spec)
    assert len(twin) == len(base) > 1100
    assert (pair._cs is not None) == (linear_backend == "c")  # on C the twin runs in the stack's compiled call
    assert np.max(np.abs(np.array(twin) - np.array(base))) < 1e-9


def _recording(combiner: ContextStacking, out: list[float]):
    """``combiner.predict_one`` that also appends its twin's forecast (the row's slot k + 4) to ``out``."""
    predict = combiner.predict_one

    def wrapped(b: float, s: float, w: np.ndarray) -> float:
        f = predict(b, s, w)
        out.append(float(combiner.context()[0, combiner._k + 4]))  # noqa: SLF001 (the twin's slot)
        return f

    return wrapped


def test_an_older_warm_start_without_the_twin_still_loads_with_the_cut(caplog, monkeypatch):
    """A manifest from before the twin's state: the layers' twin is the stack's model cut (as before); a bad twin
    is logged (once, not once per device) and cut too; the stack's window part is the twin's where there is one,
    else as learned (an older manifest: the trace cap's shrink stays)."""
    from edge_app import context_stacking

    monkeypatch.setattr(context_stacking, "_WARNED", set())  # no earlier test's warning counts
    spec = SPECS[0]
    history, test = _data(spec, 1600)[:800], _data(spec, 1600)[800:]
    warm = json.loads(json.dumps(context_stack.warm_start(history, spec)))
    old = {k: v for k, v in warm.items() if k != context_stack.TWIN_KEY}
    assert warm_start_mismatch({"blend": "pair"}, spec, old) == ""
    cut = make_combiner({"blend": "pair"}, spec=spec, warm=old)
    own = make_combiner({"blend": "pair"}, spec=spec, warm=warm)
    assert (cut.twin_start, own.twin_start) == ("cut", "twin")
    broken = warm | {context_stack.TWIN_KEY: warm[context_stack.TWIN_KEY] | {"d": 3}}
    with caplog.at_level("WARNING"):
        for _device in range(3):
            assert make_combiner({"blend": "experts"}, spec=spec, warm=broken).twin_start == "cut"
    said = [r.getMessage() for r in caplog.records if "twin" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("the combiner's twin starts from the stack's model cut: bad ")
    plain = [make_combiner({"blend": "none"}, spec=spec, warm=w) for w in (warm, old)]
    a, b, c, d = _replay([*plain, cut, own], test, spec)
    assert a != b and c != d and len(c) == len(d) > 700
