"""Hindsight ceilings of a saved run: how far any linear blend of the experts could get past online_linear.

Least squares of the truth on the forecasts of batch, speed, persistence and online_linear (``static`` is a fixed
blend of batch and speed, in their span: left out), fitted **on the scored stream itself**: a ceiling for a blend
of these experts with hindsight weights, not a result, and no bound on a combiner whose weights move faster than the
fit's (an online blend can beat the fixed ceiling). Per part of the stream (whole, first half, second half, each
fitted on its own rows):

* ``fixed``: one blend for the whole part;
* ``block``: the blend refitted on every block of ``block`` scored rows (the run's window by default): a generous
  ceiling for a combiner that adapts at the window's pace (in-sample: each block's 4 weights also fit some noise);
* ``fixed xfit`` / ``block xfit``: the same two, cross-fitted: rows in alternate chunks (of a block for ``fixed``,
  of a tenth of a block for ``block``) are scored with the weights fitted on the other chunks, so the ceiling does
  not count the noise its own weights fit (forecast errors are autocorrelated at longer horizons: the in-sample
  fit's optimism is then far above ``4 / rows``); still hindsight: the weights come from the scored stretch. NaN
  when the part is a single chunk (nothing to score out of sample);
* ``... no speed``: the same without the speed model, so "what the speed model can add at best" is
  ``1 - MSE(fixed) / MSE(fixed no speed)``.

Every fit is of ``y - online_linear`` on the other experts' differences from online_linear and online_linear itself
(the same span, so in sample the same least squares). The cross-fitted fits add a small ridge penalty towards
online_linear (weights 0 here): ``RIDGE`` times the rows times each column's mean square, so it does not depend on
units. Experts that are nearly one another (at H = 24 the speed model is almost persistence) make the plain fit
ill-conditioned: its weights on their difference fit the training chunks' noise (hundreds of thousands and minus as
much), and the other chunks' scores then blow up. The in-sample ceilings stay plain least squares: ridge only
lowers an in-sample fit, and they are meant as upper bounds for a blend.

Beside the ceilings, a **measured causal combiner** (``causal``, shown as "(c) causal online" when ``horizon`` is
given): :func:`causal_layer` on the dynamic forecast, the edge's correction layer (its default)
(:mod:`edge_app.correction_layer`, run here on the saved forecasts): it regresses ``y - dynamic`` on the four
experts' differences from dynamic by least squares with exponential forgetting (half-life ``CAUSAL_HALF_LIFE``
truths) and a ridge towards dynamic (``CAUSAL_RIDGE`` x each column's forgetting-weighted sum of squares, so it does
not depend on units), winsorised and capped as the layer is, where the forecast for row ``j`` uses only rows
``<= j - horizon``: at horizon H the truth of row ``j - H`` is the last one that has arrived when row ``j`` is
forecast (``online_run.run_stream``'s rule). It runs once over the whole stream, cold at row 0; each part is
scored on its rows (the second half's weights have learned from the first half, as online). Its half-life and
ridge were chosen on the first halves of 30 saved runs (docs/combination.md, "Causal adaptive blends, measured").

Rows where the truth or any of the forecasts used (and ``dynamic``) is NaN are left out and counted.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edge_app.correction_layer import CorrectionLayer
from edge_app.correction_layer import N as N_EXPERTS

EXPERTS = ("batch", "speed", "persistence", "online_linear")
PARTS = ("whole", "first_half", "second_half")
KINDS = ("fixed", "fixed xfit", "block", "block xfit")
RIDGE = 1e-3
"""The cross-fitted fits' penalty per weight, relative to the rows times the column's mean square (see the module)."""
CAUSAL_HALF_LIFE = 2000.0
"""Rows after which a row's weight in :func:`causal_layer`'s fit has halved."""
CAUSAL_RIDGE = 3.0
""":func:`causal_layer`'s penalty per weight, relative to its column's forgetting-weighted sum of squares."""


def causal_layer(
    base: np.ndarray,
    experts: np.ndarray,
    y: np.ndarray,
    ok: np.ndarray,
    delay: int,
    half_life: float = CAUSAL_HALF_LIFE,
    ridge: float = CAUSAL_RIDGE,
) -> np.ndarray:
    """``base`` corrected by the edge's own layer (:class:`edge_app.correction_layer.CorrectionLayer`: ridge
    regression with forgetting of ``y - base`` on ``experts - base`` (columns), bounded), where row ``j``'s forecast
    uses the rows ``i <= j - delay`` with ``ok`` (the others are not learned); before any, ``base``. ``delay`` is the
    horizon for a causal forecast (``0`` lets each row see its own truth: not causal, only for tests that show what
    a leak looks like; ``delay`` >= the rows: nothing learned). Rows where a column is NaN get NaN. A saved run does
    not record the guard's verdicts: no model is muted and no fallback skipped here, as the edge's layer does."""
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")
    layer = CorrectionLayer(half_life, ridge)
    base, experts = np.asarray(base, dtype=float), np.asarray(experts, dtype=float)
    if experts.shape[1] > N_EXPERTS:
        raise ValueError(f"the layer takes at most {N_EXPERTS} experts, got {experts.shape[1]}")
    pad = np.repeat(base[:, None], N_EXPERTS - experts.shape[1], axis=1)  # fewer: the rest = base (weight 0)
    f = base.tolist()
    ex = np.hstack([experts, pad]).tolist()
    truth = np.asarray(y, dtype=float).tolist()
    learn = np.asarray(ok, dtype=bool).tolist()
    out = []
    for j, fj in enumerate(f):
        i = j - delay
        if i >= 0 and learn[i]:
            layer.learn_one(f[i], ex[i], truth[i])
        out.append(layer.predict_one(fj, ex[j]))
    res = np.array(out)
    res[~(np.isfinite(base) & np.isfinite(experts).all(axis=1))] = np.nan
    return res


def weights(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Least squares of ``y`` on the columns of ``x``; with ``ridge`` > 0 each weight is penalised by ``ridge`` times
    the rows times its column's mean square (a constant column, the intercept, is left free)."""
    if ridge <= 0:
        return np.linalg.lstsq(x, y, rcond=None)[0]
    scale = np.where(np.ptp(x, axis=0) > 0, np.mean(x**2, axis=0), 0.0)
    penalty = np.diag(np.sqrt(ridge * len(y) * scale))
    return np.linalg.lstsq(np.vstack([x, penalty]), np.concatenate([y, np.zeros(x.shape[1])]), rcond=None)[0]


def fitted_mse(x: np.ndarray, y: np.ndarray) -> float:
    """MSE of the least-squares fit of ``y`` on the columns of ``x`` (in sample, no penalty)."""
    return float(np.mean((y - x @ weights(x, y)) ** 2))


def blocks(n: int, block: int) -> list[slice]:
    """Consecutive slices of ``block`` rows over ``n``; a last remnant shorter than half a block joins the one before.

    >>> blocks(2300, 1000)
    [slice(0, 1000, None), slice(1000, 2300, None)]
    >>> blocks(2600, 1000)
    [slice(0, 1000, None), slice(1000, 2000, None), slice(2000, 2600, None)]
    """
    edges = list(range(0, n, block)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] < block / 2:
        del edges[-2]
    return [slice(a, b) for a, b in zip(edges, edges[1:], strict=False)]


def cross_fitted_mse(x: np.ndarray, y: np.ndarray, chunk: int, ridge: float = RIDGE) -> float:
    """MSE when the rows of alternate ``chunk``-row chunks are forecast with the weights fitted (penalised by
    ``ridge``, see :func:`weights`) on the others: two folds; NaN with a single chunk (no row out of sample).

    >>> cross_fitted_mse(np.ones((10, 1)), np.ones(10), 10)
    nan
    """
    fold = (np.arange(len(y)) // max(1, chunk)) % 2
    if fold.all() or not fold.any():
        return float("nan")
    sq = 0.0
    for k in (0, 1):
        w = weights(x[fold != k], y[fold != k], ridge)
        sq += float(np.sum((y[fold == k] - x[fold == k] @ w) ** 2))
    return sq / len(y)


def block_mses(x: np.ndarray, y: np.ndarray, block: int, ridge: float = RIDGE) -> dict[str, float]:
    """MSE refitted on every block in hindsight (``block``) and the same cross-fitted in chunks of a tenth of a
    block (``block xfit``, penalised by ``ridge``)."""
    sq = {"block": 0.0, "block xfit": 0.0}
    for s in blocks(len(y), block):
        n = s.stop - s.start
        sq["block"] += n * fitted_mse(x[s], y[s])
        sq["block xfit"] += n * cross_fitted_mse(x[s], y[s], max(1, block // 10), ridge)
    return {k: v / len(y) for k, v in sq.items()}


def headroom(
    y: np.ndarray,
    forecasts: Mapping[str, np.ndarray],
    block: int,
    *,
    intercept: bool = False,
    dynamic: Mapping[str, np.ndarray] | None = None,
    ridge: float = RIDGE,
    horizon: int | None = None,
    causal_half_life: float = CAUSAL_HALF_LIFE,
    causal_ridge: float = CAUSAL_RIDGE,
) -> dict:
    """MSE per part of online_linear, every ceiling, and each forecast in ``dynamic`` (e.g. the dynamic forecast and
    its ablations; None: ``forecasts["dynamic"]``), on the rows where all of them are finite, and the rows used and
    left out. ``intercept`` adds a constant column to every fit; ``ridge`` is the cross-fitted fits' penalty.
    With ``horizon``, also ``causal``: :func:`causal_layer` on ``forecasts["dynamic"]`` over the four experts,
    delayed by ``horizon`` rows, with ``causal_half_life`` and ``causal_ridge``."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    shown = dict(dynamic) if dynamic is not None else {"dynamic": forecasts["dynamic"]}
    base = np.asarray(forecasts["online_linear"], dtype=float)
    # y - online_linear on (expert - online_linear) for the others, online_linear and the constant: the span of the
    # experts (and the constant), so the same in-sample fit; weights 0 = online_linear, where the ridge pulls
    x_all = np.column_stack(
        [forecasts[k] - base if k != "online_linear" else base for k in EXPERTS]
        + ([np.ones(len(y))] if intercept else [])
    )
    truth = np.asarray(y, dtype=float)
    y = truth - base
    ok = np.isfinite(y) & np.isfinite(x_all).all(axis=1)
    for f in shown.values():
        ok &= np.isfinite(f)
    causal = None
    if horizon is not None:
        ok &= np.isfinite(forecasts["dynamic"])
        experts = np.column_stack([forecasts[k] for k in EXPERTS])
        causal = causal_layer(forecasts["dynamic"], experts, truth, ok, horizon, causal_half_life, causal_ridge)
    half = len(y) // 2
    ranges = {"whole": slice(0, len(y)), "first_half": slice(0, half), "second_half": slice(half, len(y))}
    keep = [i for i in range(x_all.shape[1]) if i != EXPERTS.index("speed")]
    out: dict = {
        "rows": int(ok.sum()),
        "left_out": int((~ok).sum()),
        "block": block,
        "intercept": intercept,
        "ridge": ridge,
    }
    if causal is not None:
        out |= {"horizon": horizon, "causal_half_life": causal_half_life, "causal_ridge": causal_ridge}
    mse: dict[str, dict[str, float]] = {}
    for part, r in ranges.items():
        m = ok[r]
        yp, xp = y[r][m], x_all[r][m]
        if len(yp) == 0:
            raise ValueError(f"no scored rows in the {part.replace('_', ' ')}")
        cells = {"online_linear": float(np.mean(yp**2))}
        cells |= {name: float(np.mean((truth[r][m] - f[r][m]) ** 2)) for name, f in shown.items()}
        if causal is not None:
            cells["causal"] = float(np.mean((truth[r][m] - causal[r][m]) ** 2))
        for suffix, cols in (("", list(range(x_all.shape[1]))), (" no speed", keep)):
            xs = xp[:, cols]
            cells["fixed" + suffix] = fitted_mse(xs, yp)
            cells["fixed xfit" + suffix] = cross_fitted_mse(xs, yp, block, ridge)
            cells |= {k + suffix: v for k, v in block_mses(xs, yp, block, ridge).items()}
        for name, v in cells.items():
            mse.setdefault(name, {})[part] = v
    out["mse"] = mse
    return out


def _gain(v: float, ref: float) -> float:
    """``1 - v / ref``; a zero ``ref``: -inf (or NaN when ``v`` is zero too), no ZeroDivisionError."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(1 - np.float64(v) / np.float64(ref))


def gains(mse: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``1 - MSE / MSE(online_linear)`` per forecast and part (+ = better than online_linear), and the speed model's
    at best: ``speed adds <kind>`` = ``1 - MSE(c) / MSE(c no speed)``. A zero MSE to divide by gives -inf or NaN.

    >>> gains({"online_linear": dict.fromkeys(PARTS, 0.0), "fixed": dict.fromkeys(PARTS, 0.0)})["fixed"]["whole"]
    nan
    """
    ol = mse["online_linear"]
    out = {name: {p: _gain(v[p], ol[p]) for p in PARTS} for name, v in mse.items() if name != "online_linear"}
    for c in KINDS:
        if c in mse and f"{c} no speed" in mse:
            out[f"speed adds {c}"] = {p: _gain(mse[c][p], mse[f"{c} no speed"][p]) for p in PARTS}
    if "dynamic no speed" in mse:
        out["speed adds dynamic"] = {p: _gain(mse["dynamic"][p], mse["dynamic no speed"][p]) for p in PARTS}
    return out


def mean_of(results: Mapping[str, Mapping]) -> dict:
    """The runs' MSEs averaged (as ``eval benchmark`` averages its channels' MSE), rows summed: meaningful for runs
    on one scale, e.g. the channels of one benchmark folder. ``block`` is None when the runs' blocks differ."""
    runs = list(results.values())
    sizes = {r["block"] for r in runs}
    names = [n for n in runs[0]["mse"] if all(n in r["mse"] for r in runs)]
    mse = {n: {p: float(np.mean([r["mse"][n][p] for r in runs])) for p in PARTS} for n in names}
    return {
        "rows": sum(r["rows"] for r in runs),
        "left_out": sum(r["left_out"] for r in runs),
        "block": sizes.pop() if len(sizes) == 1 else None,
        "intercept": runs[0]["intercept"],
        "ridge": runs[0].get("ridge", RIDGE),
        **{k: runs[0][k] for k in ("causal_half_life", "causal_ridge") if k in runs[0]},
        "mse": mse,
    }
