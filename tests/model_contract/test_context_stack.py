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


def test_a_loaded_warm_start_keeps_the_window_part_and_starts_the_model_inputs_fresh():
    """The warm start learns the model inputs on a history where both are 0: it ships as learned (pinned above),
    and a stack that loads it keeps the window's part and gives the model inputs a cold model's state (chosen on
    first halves, docs/combination.md, issue 17)."""
    spec = SPECS["h1"]
    warm = context_stack.warm_start(_history(spec), spec, {"half_life": 200})
    shipped = warm["state"]["model"]
    d = shipped["d"]
    assert (
        max(shipped["var"][d - 3 : d - 1]) < 0.01 and min(np.diag(shipped["P"])[d - 3 : d - 1]) > 1
    )  # grown: nothing learned
    stack = ContextStack(half_life=200)
    stack.load_warm(warm, spec)
    got = stack.model.state()
    keep = [*range(d - 3), d - 1]  # the window's inputs and the bias
    for k in ("w", "P"):
        a, b = np.asarray(got[k]), np.asarray(shipped[k])
        assert np.array_equal(
            a[np.ix_(keep, keep)] if k == "P" else a[keep], b[np.ix_(keep, keep)] if k == "P" else b[keep]
        )
    assert got["mean"][: d - 3] == shipped["mean"][: d - 3] and got["var"][: d - 3] == shipped["var"][: d - 3]
    P = np.asarray(got["P"])
    for c in (d - 3, d - 2):  # batch - last, speed - last: a cold model's
        assert got["mean"][c] == 0.0 and got["var"][c] == 1.0 and got["w"][c] == 0.0
        assert P[c, c] == got["config"]["prior"] and np.count_nonzero(P[c]) == np.count_nonzero(P[:, c]) == 1
    no_speed = ContextStack(half_life=200, use_speed=False)
    no_speed.load_warm(warm, spec)  # an ablation: its one model input fresh too
    assert no_speed.model.state()["var"][-1] == 1.0 and no_speed.model._d == d - 1
