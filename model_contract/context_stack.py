"""The context stack's shared pieces: its row layout, its guard's error update, its warm start.

The edge's default dynamic combiner (``edge_app.combiners.ContextStacking``) forecasts with one
:class:`~model_contract.online_linear.OnlineLinear` over the row ``[lag-window inputs, batch - last,
speed - last]`` (:func:`layout`) and guards it with forgotten squared errors (:func:`guard_update`).
Both live here so the trainer can compute, from the batch model's own history, the state a
combiner reaches by streaming that history (:func:`warm_start`: no model forecasts exist there, so
batch = speed = last and both model inputs read 0; only the linear part learns). The trainer ships
it in the batch manifest (``extra["combiner_warm_start"]``); every new device's combiner starts from
it (docs/edge.md), and ``hybridstream eval run`` replays exactly that.

>>> import numpy as np
>>> from model_contract import FeatureSpec
>>> spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2))
>>> rng = np.random.default_rng(0)
>>> history = np.cumsum(rng.normal(size=(300, 2)), axis=0)
>>> warm = warm_start(history, spec)
>>> warm["rows"], warm["method"], len(warm["state"]["model"]["w"])  # 298 truths; 4 window inputs + 2 + bias
(298, 'context', 7)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from model_contract.features import FeatureBuffer, FeatureSpec
from model_contract.online_linear import OnlineLinear

HUGE = 1e150
BIG = 1e75  # errors beyond this (or NaN/inf) count as the winsorised maximum (their square would overflow)
WILD = 1e4  # one error's square counts at most WILD x (persistence's forgotten MSE + its own)

# ContextStacking's defaults for the keys that shape what it learns (edge_app checks they agree)
DEFAULT_CONFIG: dict = {"half_life": 1000.0, "clip": 8.0, "max_change": 8.0, "error_half_life": 24.0}
WARM_KEY = "combiner_warm_start"  # the batch manifest's extra field


def decay(half_life: float) -> float:
    if not half_life > 0:
        raise ValueError("half_life must be > 0 (records)")
    return 0.5 ** (1.0 / half_life)


def layout(shape: tuple[int, int], target_index: int, inputs: Sequence[int] | None = None) -> tuple[int, int]:
    """``(n, last)`` of the row for lag windows of ``shape``: the row is ``[n window inputs (the flattened
    window, or its ``inputs`` positions), batch - last, speed - last]``; ``last`` is the newest target
    value's position in it. ValueError if ``inputs`` leave the newest target value out."""
    steps, cols = shape
    last = (steps - 1) * cols + int(target_index)
    if inputs is None:
        return steps * cols, last
    hits = np.flatnonzero(np.asarray(inputs) == last)
    if not len(hits):
        raise ValueError("context stacking's inputs must include the newest target value")
    return len(inputs), int(hits[0])


def guard_update(mse: list[float], seen: int, ed: float, errors: tuple[float, float, float, float]) -> int:
    """Forget-and-add the squared errors (batch, speed, persistence, the stack) into ``mse`` (in place,
    winsorised); ``ed`` the decay; a plain mean over the first records. Returns the new record count."""
    ep = errors[2]
    cap = WILD * (mse[2] + ep * ep) + 1e-300  # winsorised: one absurd forecast is muted, not for ages
    n = seen + 1
    d = ed if n * (1.0 - ed) > 1.0 else 1.0 - 1.0 / n
    for i, e in enumerate(errors):
        sq = e * e if -BIG < e < BIG else cap  # also NaN
        if sq > cap:
            sq = cap
        mse[i] = d * mse[i] + (1.0 - d) * sq
    return n


def config_of(config: Mapping | None = None) -> dict:
    """The learning keys of a context config (defaults filled in, floats): what a warm state must match."""
    cfg = dict(DEFAULT_CONFIG)
    for k in DEFAULT_CONFIG:
        if config is not None and config.get(k) is not None:
            cfg[k] = float(config[k])
    return cfg


def warm_start(
    history: np.ndarray, spec: FeatureSpec, config: Mapping | None = None, residuals: list[float] | None = None
) -> dict:
    """The state a fresh context stack reaches by streaming ``history`` (rows x ``spec.features``, oldest first)
    record by record as the edge does (forecast when the window is full, learn each truth ``horizon`` rows
    later, the last forecasts' truths too), with batch = speed = last (both model inputs 0).

    Returns ``{"method": "context", "config": ..., "spec": ..., "rows": truths learned, "state": {"model":
    OnlineLinear state, "guard": {"mse": [4], "seen": n}}}`` (JSON-friendly; ~d^2 floats, d = inputs + 3).
    ``residuals``: if a list, the stack's forecast - truth of every learned truth is appended to it (in the
    order the truths arrive: what :func:`model_contract.conformal.warm_start` streams).
    """
    cfg = config_of(config)
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 2 or history.shape[1] != len(spec.features):
        raise ValueError(f"history must be rows x {len(spec.features)} features, got shape {history.shape}")
    ti = spec.target_index
    inputs = np.asarray(spec.linear_inputs(), dtype=np.intp) if spec.calendar else None
    n, last_pos = layout(spec.input_shape, ti, inputs)
    model = OnlineLinear(last_pos, half_life=cfg["half_life"], clip=cfg["clip"], max_change=cfg["max_change"])
    ed = decay(cfg["error_half_life"])
    mse = [0.0, 0.0, 0.0, 0.0]
    seen = 0
    buf = FeatureBuffer(spec)
    h = spec.horizon
    pending: deque = deque()  # (target row, row, the stack's forecast)

    def learn(row: np.ndarray, f: float, y: float) -> None:
        nonlocal seen
        last = float(row[0, last_pos])
        ep = last - y
        if not -HUGE < ep < HUGE:
            return
        seen = guard_update(mse, seen, ed, (ep, ep, ep, f - y))  # batch = speed = last
        if residuals is not None:
            residuals.append(f - y)
        model.learn_one(row, y)

    for t in range(len(history)):
        while pending and pending[0][0] <= t - 1:
            j, row, f = pending.popleft()
            learn(row, f, float(history[j, ti]))
        if buf.ready and t + h - 1 < len(history):
            flat = buf.window.reshape(-1)
            row = np.zeros((1, n + 2))
            row[0, :n] = flat if inputs is None else flat[inputs]
            pending.append((t + h - 1, row, model.predict_one(row)))
        buf.push_row(history[t])
    for j, row, f in pending:  # the truths of the last forecasts are in the history too
        learn(row, f, float(history[j, ti]))
    state = {"model": model.state(), "guard": {"mse": [float(v) for v in mse], "seen": seen}}
    return {"method": "context", "config": cfg, "spec": spec.to_dict(), "rows": seen, "state": state}


def mismatch(warm: Mapping | None, spec: FeatureSpec, config: Mapping | None) -> str:
    """Why ``warm`` (a :func:`warm_start` dict) cannot start a context stack with ``config`` on ``spec``
    ('' if it can)."""
    if not warm:
        return "the batch model ships no combiner warm start"
    if not isinstance(warm, Mapping) or warm.get("method") != "context":
        return "the warm start is not a context stack's"
    if config is not None and config.get("twin"):
        return "the combiner has twin=true (the warm start is for the stack alone)"
    want = config_of(config)
    got = warm.get("config") or {}
    diff = [k for k in want if not (isinstance(got.get(k), int | float) and math.isclose(got[k], want[k]))]
    if diff:
        return "the combiner config differs from the warm start's: " + ", ".join(
            f"{k} {want[k]:g} != {got.get(k)}" for k in diff
        )
    if warm.get("spec") != spec.to_dict():
        return "the warm start was computed for another feature spec"
    return ""


def parse(warm: Mapping, spec: FeatureSpec) -> tuple[OnlineLinear, list[float], int]:
    """(model, guard mse, guard count) of a warm start; ValueError if malformed or not for this spec's rows."""
    try:
        state = warm["state"]
        model = OnlineLinear.from_state(state["model"])
        mse = [float(v) for v in state["guard"]["mse"]]
        seen = int(state["guard"]["seen"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad combiner warm start: {type(exc).__name__}: {exc}") from None
    inputs = spec.linear_inputs() if spec.calendar else None
    n, last_pos = layout(spec.input_shape, spec.target_index, inputs)
    if model.target_index != last_pos or model._d not in (0, n + 3):  # noqa: SLF001
        raise ValueError(f"bad combiner warm start: size {model._d} / target {model.target_index} != rows of this spec")  # noqa: SLF001
    if len(mse) != 4 or seen < 0 or not all(math.isfinite(v) and v >= 0 for v in mse):
        raise ValueError("bad combiner warm start: the guard's errors must be 4 finite values >= 0")
    return model, mse, seen
