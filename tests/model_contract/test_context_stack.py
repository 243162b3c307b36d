"""The context stack's warm start is pinned: the state (and the residuals) streaming a history through a fresh
stack gives equal today's to 1e-9 (data/context_stack_warm_start.json, written by the warm start's own loop before
the stack moved into model_contract), on a history with a lost reading, a wild input and a spike."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from model_contract import FeatureSpec, context_stack
from model_contract.context_stack import ContextStack

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the wild input
PINNED = json.loads((Path(__file__).parent / "data" / "context_stack_warm_start.json").read_text())
SPECS = {
    "h1": FeatureSpec(columns=("a", "b", "y"), target="y", lags=(1, 2, 3)),
    "h3-calendar": FeatureSpec(
        columns=("a", "y"), target="y", lags=(1, 2), horizon=3, calendar=("day_sin1", "day_cos1")
    ),
}


def _history(spec: FeatureSpec) -> np.ndarray:
    rng = np.random.default_rng(11)
    history = np.cumsum(rng.normal(size=(600, len(spec.features))), axis=0) * 0.1
    history[300, spec.target_index] = np.nan  # a lost reading
    history[400, 0] = 1e200  # a wild input
    history[450, spec.target_index] += 50.0  # a spike in the target
    return history


def _close(got, want, where: str = "") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, where


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_warm_start_equals_the_pinned_one(name):
    residuals: list[float] = []
    warm = context_stack.warm_start(_history(SPECS[name]), SPECS[name], {"half_life": 200}, residuals=residuals)
    shipped = json.loads(json.dumps(warm))
    twin = shipped.pop(context_stack.TWIN_KEY)  # the layers' twin: pinned to the baseline in test_warm_start
    _close(shipped, PINNED[name]["warm"])
    assert context_stack.parse_twin(warm, SPECS[name]).n == twin["n"] > 0
    _close(residuals, PINNED[name]["residuals"])
    assert warm["rows"] == len(residuals) and warm["state"]["model"]["skipped"] > 0  # the wild rows were met


def test_the_warm_start_is_the_state_of_a_stack_streamed_through_the_history():
    spec = SPECS["h1"]
    history = _history(spec)
    stack = ContextStack(half_life=200)
    stack.bind_spec(spec)
    context_stack.stream(stack, history, spec)
    warm = context_stack.warm_start(history, spec, {"half_life": 200})
    assert warm["state"] == stack.state() and warm["config"] == stack.warm_config()


def test_the_default_config_is_the_stacks_signature():
    assert {k: float(v) for k, v in ContextStack().warm_config().items()} == context_stack.DEFAULT_CONFIG


def test_an_empty_history_gives_a_cold_start():
    spec = SPECS["h1"]
    warm = context_stack.warm_start(np.zeros((0, len(spec.features))), spec)
    assert warm["rows"] == 0 and warm["state"]["model"]["d"] == 0
    assert context_stack.mismatch(warm, spec, None) == ""


def test_a_loaded_warm_start_takes_the_window_part_from_the_twin_and_starts_the_model_inputs_fresh():
    """The warm start learns the model inputs on a history where both are 0: it ships as learned (pinned above).
    A stack that loads it takes the window's part from the warm start's twin (the same config on the window's
    inputs only: the trace cap's rescaling, driven by the model inputs' grown covariance, never shrank it) and
    starts the model inputs fresh: mean 0, variance the running mean square of the target's changes (dy2), weight
    0, covariance the prior on the diagonal only (chosen on first halves, docs/combination.md, issue 17)."""
    spec = SPECS["h1"]
    warm = context_stack.warm_start(_history(spec), spec, {"half_life": 200})
    shipped, twin = warm["state"]["model"], warm[context_stack.TWIN_KEY]
    d = shipped["d"]
    assert (
        max(shipped["var"][d - 3 : d - 1]) < 0.01 and min(np.diag(shipped["P"])[d - 3 : d - 1]) > 1
    )  # grown: nothing learned
    stack = ContextStack(half_life=200)
    stack.load_warm(warm, spec)
    got = stack.model.state()
    keep = [*range(d - 3), d - 1]  # the window's inputs and the bias
    assert np.array_equal(np.asarray(got["P"])[np.ix_(keep, keep)], twin["P"])
    assert [got["w"][i] for i in keep] == twin["w"] and got["mean"][: d - 3] == twin["mean"]
    assert got["var"][: d - 3] == twin["var"] and all(got[k] == twin[k] for k in ("dy2", "e2", "n"))
    P = np.asarray(got["P"])
    for c in (d - 3, d - 2):  # batch - last, speed - last: fresh, on the target's change scale
        assert got["mean"][c] == 0.0 and got["var"][c] == got["dy2"] > 0 and got["w"][c] == 0.0
        assert P[c, c] == got["config"]["prior"] and np.count_nonzero(P[c]) == np.count_nonzero(P[:, c]) == 1
    no_speed = ContextStack(half_life=200, use_speed=False)
    no_speed.load_warm(warm, spec)  # an ablation: its one model input fresh too, the window part the twin's
    state = no_speed.model.state()
    assert state["var"][-1] == state["dy2"] and no_speed.model._d == d - 1 and state["w"][: d - 3] == twin["w"][:-1]
    older = {k: v for k, v in warm.items() if k != context_stack.TWIN_KEY}  # a manifest from before the twin
    stack.load_warm(older, spec)
    got = stack.model.state()
    assert got["var"][: d - 3] == shipped["var"][: d - 3] and got["var"][d - 3] == shipped["dy2"]  # as learned


def _scaled(warm: dict, spec: FeatureSpec, s: float) -> dict:
    """``warm`` as a history with the target x ``s`` teaches it (the cold model's first records' var = 1 prior
    aside): the target's and the model inputs' means x s and variances x s^2, the weights x s (a change in the
    target's units per standardised input), the running squares x s^2; covariances are scale-free."""
    warm = json.loads(json.dumps(warm))
    steps, cols = spec.input_shape
    target = [i for i in range(steps * cols) if i % cols == spec.target_index]
    for state, models in ((warm["state"]["model"], 2), (warm[context_stack.TWIN_KEY], 0)):
        d = state["d"]
        for i in [*target, *range(d - 1 - models, d - 1)]:
            state["mean"][i] *= s
            state["var"][i] *= s * s
        state["w"] = [v * s for v in state["w"]]
        state["dy2"] *= s * s
        state["e2"] *= s * s
    warm["state"]["guard"]["mse"] = [v * s * s for v in warm["state"]["guard"]["mse"]]
    return warm


@pytest.mark.usefixtures("linear_backend")
def test_a_loaded_warm_start_is_scale_invariant():
    """The target in other units (x1000) gives the same forecasts in those units, to 1e-9: the model inputs'
    fresh variance is on the target's change scale (a variance of 1, in the target's units, lingered for
    thousands of records: MSE +40 % over the first 1,000 at x1000, issue 17)."""
    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2))
    rng = np.random.default_rng(0)
    a, noise, y = rng.normal(size=3000), rng.normal(size=(3000, 2)), np.zeros(3000)
    for t in range(1, 3000):
        y[t] = 0.9 * y[t - 1] + 0.3 * a[t - 1] + rng.normal(0, 0.3)
    data = np.column_stack([a, y])
    warm = context_stack.warm_start(data[:1500], spec, {"half_life": 300})

    def forecasts(warm: dict, s: float) -> np.ndarray:
        stack, live = ContextStack(half_life=300), data[1500:] * [1.0, s]
        stack.load_warm(warm, spec)
        out, pending = [], None  # (batch, speed, the forecast's context)
        for t in range(spec.max_lag, len(live) - 1):
            window, last, truth = live[t - spec.max_lag + 1 : t + 1], live[t, 1], live[t + 1, 1]
            if pending is not None:
                stack.learn_one(pending[0], pending[1], last, pending[2])
            b = last + 0.8 * (truth - last) + 0.1 * s * noise[t, 0]  # the models know part of the next change
            sp = last + 0.5 * (truth - last) + 0.3 * s * noise[t, 1]
            out.append(stack.predict_one(b, sp, np.ascontiguousarray(window)) / s)
            pending = (b, sp, stack.context())
        return np.asarray(out)

    x1, x1000 = forecasts(warm, 1.0), forecasts(_scaled(warm, spec, 1000.0), 1000.0)
    assert len(x1) > 1400 and np.allclose(x1000, x1, rtol=1e-9, atol=0)


@pytest.mark.usefixtures("linear_backend")
@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_loaded_stack_with_model_inputs_at_0_forecasts_as_its_twin_bit_for_bit(name):
    """The splice means what it says: after ``load_warm`` the stack with both model inputs 0 (batch = speed =
    last) forecasts exactly what the warm start's twin forecasts from the stack's row's window part, on a plain
    and a calendar spec (the twin's columns are the stack's, the bias moved to the end; review of be45c6c)."""
    spec = SPECS[name]
    history = _history(spec)[:250]  # before the wild rows: a plain history
    warm = context_stack.warm_start(history, spec, {"half_life": 200})
    stack = ContextStack(half_life=200)
    stack.load_warm(warm, spec)
    twin = context_stack.parse_twin(warm, spec)
    live = _history(spec)[250:290] + 0.05
    got, want = [], []
    for t in range(spec.max_lag, len(live)):
        window = np.ascontiguousarray(live[t - spec.max_lag : t])
        last = float(window[-1, spec.target_index])
        got.append(stack.predict_one(last, last, window))
        want.append(twin.predict_one(stack.context()[:, : stack._k]))  # noqa: SLF001 (the window's inputs)
    assert len(got) > 30 and got == want


def _stack_logs(caplog) -> list:
    return [r for r in caplog.records if r.name == "model_contract.context_stack"]


def test_a_twin_of_another_config_is_not_spliced_and_the_fallback_is_logged(caplog):
    """A twin whose learning config differs from the stack's (a hand-edited manifest: another half-life, prior or
    trace cap) is not spliced in: the window's part stays as learned, with one log line (under ``blend: none``
    there is no layer to log it)."""
    spec = SPECS["h3-calendar"]  # the stack's config has input positions, the twin's none: not a difference
    warm = context_stack.warm_start(_history(spec)[:250], spec, {"half_life": 200})
    spliced = ContextStack(half_life=200)
    with caplog.at_level("WARNING", logger="model_contract.context_stack"):
        spliced.load_warm(warm, spec)
    assert not _stack_logs(caplog)
    older = ContextStack(half_life=200)
    older.load_warm({k: v for k, v in warm.items() if k != context_stack.TWIN_KEY}, spec)
    for key, value in (("lam", 0.999), ("prior", 2.0), ("max_trace", 1e3)):
        edited = json.loads(json.dumps(warm))
        edited[context_stack.TWIN_KEY]["config"][key] = value
        stack = ContextStack(half_life=200)
        caplog.clear()
        with caplog.at_level("WARNING", logger="model_contract.context_stack"):
            stack.load_warm(edited, spec)
        logs = _stack_logs(caplog)  # only this module's: e.g. the kernel's one-time fallback line may come too
        assert len(logs) == 1 and key in logs[0].getMessage()
        assert stack.model.state() == older.model.state() != spliced.model.state()
