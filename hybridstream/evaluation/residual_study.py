"""The LSTM on what the online linear model misses: its forecast + a learned correction, selected on the history.

``python -m hybridstream.evaluation.residual_study FILE.csv [--horizon H] [--lags auto|1-24] [--targets a,b]``
(the benchmark protocol's cut and z-scoring, :mod:`hybridstream.evaluation.benchmark`, each channel in turn) or
``... --scenario gradual`` (a turbine scenario: its train file is the history, its test file the stream).

Per target channel:

1. the online linear model (:func:`model_contract.online_linear.stream_forecasts`, as the edge runs it) is
   streamed through the history, then on through the stream: its forecast ``r_t`` of every row;
2. the network of the batch model (:func:`training_job.model.fit`, ``residual=False``: LSTM -> Dense ->
   Dense(1), the same lag window and feature spec) learns ``(y_t - r_t) / scale`` on the history's training
   rows after a burn-in (the online linear model's first rows are not what it forecasts like later), early
   stopping on the history's chronological holdout (for the ETT borders: the validation span);
3. on the holdout only (history): the shrink factor ``a`` in [0, 1] (least squares of the holdout's residuals
   on the correction) and the choice per variant between ``online_linear`` and ``online_linear + a * model``;
4. over the stream: MSE of persistence, online_linear, each variant's ``+ model`` and ``+ a * model``, the
   holdout's choice (``selected``), and the edge's dynamic stack (the context stack from the history's warm
   start, no speed model) fed the online linear forecast (``stack_ol``) or the selected corrected one
   (``stack_res``) as both its model inputs, or the newest target value + the selected correction
   (``stack_last_res``: what the edge would serve unchanged from a residual model trained on ``y - r``:
   the stack's own linear part stands in for the online linear model).

``--window W``: also a correction re-trained every ``W`` stream rows on the last ``W`` (``rolling``); ``--product W``:
also the product's models (``eval benchmark``'s replay) and stacks mixing them with the correction. Keras forecasts
(no TFLite: a study). The last stdout line is JSON; progress goes to stderr. Figures: docs/combination.md ("What
was tried and did not work").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_contract import FeatureSpec, Scaler, build_supervised
from model_contract.online_linear import stream_forecasts

# label -> TrainConfig changes from the config before issue 17 (training_job.model.BEFORE_ISSUE_17; always
# residual=False: the network's output is the correction itself)
VARIANTS: dict[str, dict] = {
    "mae": {},
    "mse": {"loss": "mse"},
    "inorm mse": {"instance_norm": True, "loss": "mse"},
}
DEFAULT_BURN_IN = 240  # history rows before the first residual learned


@dataclass
class Channel:
    """One study input: history and stream rows (features of ``spec``) and the stream's unscored lead-in rows."""

    spec: FeatureSpec
    history: np.ndarray
    stream: np.ndarray
    lead: int


def ol_forecasts(ch: Channel) -> tuple[np.ndarray, np.ndarray]:
    """The online linear forecast per row of the history, and of the stream after streaming the history."""
    r_hist, _ = stream_forecasts(ch.history, ch.spec)
    r_stream, _ = stream_forecasts(ch.stream, ch.spec, warmup=ch.history)
    return r_hist, r_stream


def residual_samples(matrix: np.ndarray, r: np.ndarray, spec: FeatureSpec, scaler: Scaler):
    """(X, scaled residual y - r, target row) of every sample of ``matrix`` (``r``: NaN where there is none)."""
    X, _ = build_supervised(matrix, spec, scaler)
    first = spec.max_lag + spec.horizon - 1
    rows = np.arange(first, first + len(X))
    ti = spec.target_index
    d = ((matrix[rows, ti] - r[rows]) / scaler.scale[ti]).astype(np.float32)
    return X, d, rows


def train_correction(ch: Channel, r_hist: np.ndarray, cfg, burn_in: int):
    """(Keras model, scaler, holdout target rows) of the correction network trained on the history's residuals."""
    from training_job.model import fit, holdout_size, training_rows  # noqa: PLC0415  (TensorFlow)

    spec = ch.spec
    n_fit = training_rows(len(ch.history), spec, cfg.holdout_fraction)
    scaler = Scaler.fit(ch.history[:n_fit], spec.target_index)
    X, d, rows = residual_samples(ch.history, r_hist, spec, scaler)
    n_hold = holdout_size(len(X), cfg.holdout_fraction)
    train = np.isfinite(d) & (rows >= burn_in)
    train[len(X) - n_hold :] = False
    hold = np.zeros(len(X), bool)
    hold[len(X) - n_hold :] = np.isfinite(d[len(X) - n_hold :])
    model = fit(
        X[train], d[train], cfg, X[hold], d[hold], target_index=spec.target_index, value_columns=len(spec.columns)
    )
    return model, scaler, rows[hold]


def corrections(model, scaler: Scaler, matrix: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The model's correction (target units) per row of ``matrix`` (NaN before the first sample's row)."""
    X, _ = build_supervised(matrix, spec, scaler)
    out = np.full(len(matrix), np.nan)
    first = spec.max_lag + spec.horizon - 1
    if len(X):
        pred = np.asarray(model.predict(X, batch_size=2048, verbose=0), dtype=np.float64).reshape(-1)
        out[first : first + len(X)] = pred * scaler.scale[spec.target_index]
    return out


def shrink_factor(c: np.ndarray, want: np.ndarray) -> float:
    """The least-squares ``a`` in [0, 1] of ``want ~ a * c`` (1 if ``c`` is all zero)."""
    den = float(c @ c)
    return float(np.clip((c @ want) / den, 0.0, 1.0)) if den > 0 else 1.0


def rolling_corrections(ch: Channel, r_stream: np.ndarray, cfg, window: int, log) -> np.ndarray:
    """The correction of a model re-trained every ``window`` stream rows on the last ``window`` rows' residuals (a
    speed model of the online linear model's residual), shrunk by its own holdout's ``a``; 0 before the first.

    The model trained after row ``t`` arrived serves the forecasts whose window ends at row ``t`` or later
    (target rows ``>= t + horizon``), as ``eval run`` serves its speed models."""
    spec, h = ch.spec, ch.spec.horizon
    out = np.zeros(len(ch.stream))
    ends = list(range(ch.lead + window - 1, len(ch.stream) - h, window))
    for k, t in enumerate(ends):
        rows = slice(t + 1 - window, t + 1)
        part = Channel(spec, ch.stream[rows], ch.stream[:0], 0)
        model, scaler, hold_rows = train_correction(part, r_stream[rows], cfg, burn_in=0)
        c = corrections(model, scaler, part.history, spec)
        want = (part.history[:, spec.target_index] - r_stream[rows])[hold_rows]
        a = shrink_factor(c[hold_rows], want)
        upto = ends[k + 1] + h if k + 1 < len(ends) else len(ch.stream)
        out[t + h : upto] = (
            a * corrections(model, scaler, ch.stream[t + 1 - spec.max_lag : upto], spec)[spec.max_lag + h - 1 :]
        )
        log(f"    rolling model {k + 1}/{len(ends)} (rows {t + 1 - window}-{t}): a {a:.2f}")
    return out


def stack_forecasts(ch: Channel, batch: np.ndarray, speed: np.ndarray | None = None) -> np.ndarray:
    """The edge's dynamic stack over the stream (from the history's warm start) with ``batch`` and ``speed`` as its
    model inputs (``speed`` None: ``batch`` as both, no speed model); NaN where there is no forecast."""
    from edge_app.combiners import make_combiner  # noqa: PLC0415
    from model_contract import context_stack  # noqa: PLC0415
    from model_contract.features import FeatureBuffer  # noqa: PLC0415

    spec, data = ch.spec, ch.stream
    comb = make_combiner({"strategy": "dynamic"}, spec=spec, warm=context_stack.warm_start(ch.history, spec))
    h, ti, n = spec.horizon, spec.target_index, len(data)
    out = np.full(n, np.nan)
    buf = FeatureBuffer(spec)
    pending: deque = deque()
    for t in range(n):
        while pending and pending[0][0] <= t - 1:
            j, b, s, ctx = pending.popleft()
            comb.learn_one(b, s, float(data[j, ti]), ctx)
        if buf.ready and t + h - 1 < n:
            j = t + h - 1
            b = float(batch[j])
            s = b if speed is None else float(speed[j])
            out[j] = comb.predict_one(b, s, buf.window)
            pending.append((j, b, s, comb.context() if comb.uses_window else None))
        buf.push_row(data[t])
    return out


def product_rows(
    ch: Channel, res: np.ndarray, last_res: np.ndarray, roll: np.ndarray | None, window: int, mse, log
) -> dict[str, float]:
    """The product's models beside the residual one: ``eval benchmark``'s replay (:func:`~hybridstream.evaluation.
    online_run.run_stream`, speed models every ``window`` rows, models cached in ``.cache/eval``): its batch, speed
    and dynamic forecasts, and this module's stack replay with (batch, speed), (OL + correction, speed),
    (newest value + correction, speed), (batch, OL + correction) and (batch, OL + re-trained correction) as its
    two model inputs."""
    from hybridstream.evaluation.online_run import run_stream  # noqa: PLC0415
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415

    run = run_stream(ch.history, ch.stream, ch.spec, window, cache_dir=DEFAULT_CACHE, log=log, progress_every=0)
    b, s = run.forecasts["batch"], run.forecasts["speed"]
    out = {k: mse(run.forecasts[k]) for k in ("batch", "speed", "dynamic")}
    out["stack_batch_speed"] = mse(stack_forecasts(ch, b, s))
    out["stack_res_speed"] = mse(stack_forecasts(ch, res, s))
    out["stack_last_res_speed"] = mse(stack_forecasts(ch, last_res, s))
    out["stack_batch_res"] = mse(stack_forecasts(ch, b, res))
    if roll is not None:
        out["stack_batch_rolling"] = mse(stack_forecasts(ch, b, roll))
    return out


def study_channel(
    ch: Channel,
    variants: dict[str, dict],
    seed: int,
    epochs: int | None,
    burn_in: int,
    log,
    window: int = 0,
    rolling: str = "inorm mse",
    product: int = 0,
) -> dict:
    """Every approach's stream MSE (and the holdout's MSE and choices) for one target channel."""
    from training_job.model import BEFORE_ISSUE_17, TrainConfig  # noqa: PLC0415

    spec, ti = ch.spec, ch.spec.target_index
    r_hist, r_stream = ol_forecasts(ch)
    y_hist, y = ch.history[:, ti], ch.stream[:, ti]
    ok = np.isfinite(r_stream)
    ok[: ch.lead] = False
    pers = np.full(len(y), np.nan)
    pers[spec.horizon :] = y[: -spec.horizon]

    def mse(f: np.ndarray) -> float:
        return float(np.mean((f - y)[ok] ** 2))

    row: dict = {"persistence": mse(pers), "online_linear": mse(r_stream)}
    hold_info: dict = {}
    best = ("online_linear", np.inf, r_stream)
    for label, changes in variants.items():
        kw = {"seed": seed, "residual": False} | BEFORE_ISSUE_17 | changes | ({"epochs": epochs} if epochs else {})
        cfg = TrainConfig(**kw)
        t0 = time.perf_counter()
        model, scaler, hold_rows = train_correction(ch, r_hist, cfg, burn_in)
        c_hist = corrections(model, scaler, ch.history, spec)
        c_stream = corrections(model, scaler, ch.stream, spec)
        want = (y_hist - r_hist)[hold_rows]
        a = shrink_factor(c_hist[hold_rows], want)
        ho = {
            "online_linear": float(np.mean(want**2)),
            "+model": float(np.mean((want - c_hist[hold_rows]) ** 2)),
            "+a*model": float(np.mean((want - a * c_hist[hold_rows]) ** 2)),
            "a": a,
            "epochs_run": len(model.history.epoch),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        hold_info[label] = ho
        row[f"{label} +model"] = mse(r_stream + c_stream)
        row[f"{label} +a*model"] = mse(r_stream + a * c_stream)
        if ho["+a*model"] < best[1]:
            best = (f"{label} +a*model", ho["+a*model"], r_stream + a * c_stream)
        if ho["+model"] < best[1]:
            best = (f"{label} +model", ho["+model"], r_stream + c_stream)
        log(f"    {label}: holdout {ho}; stream +model {row[f'{label} +model']:.4f}")
    if best[1] >= hold_info[next(iter(hold_info))]["online_linear"]:
        best = ("online_linear", 0.0, r_stream)
    row["selected"] = mse(best[2])
    row["stack_ol"] = mse(stack_forecasts(ch, r_stream))
    row["stack_res"] = mse(stack_forecasts(ch, best[2]))
    last_res = pers + (best[2] - r_stream)  # the newest value + the correction: a model the edge serves unchanged
    row["stack_last_res"] = mse(stack_forecasts(ch, last_res))
    roll = None
    if window:
        kw = (
            {"seed": seed, "residual": False}
            | BEFORE_ISSUE_17
            | VARIANTS[rolling]
            | ({"epochs": epochs} if epochs else {})
        )
        roll = r_stream + rolling_corrections(ch, r_stream, TrainConfig(**kw), window, log)
        row["rolling"] = mse(roll)
        row["stack_res_rolling"] = mse(stack_forecasts(ch, best[2], roll))
    if product:
        row |= product_rows(ch, best[2], last_res, roll, product, mse, log)
    return {"mse": row, "selected": best[0], "holdout": hold_info, "lags": list(spec.lags), "rows": int(ok.sum())}


def csv_channels(path: str, horizon: int, lags: list[str] | None, calendar: str, targets: list[str] | None, log):
    """(target, Channel) pairs of the benchmark protocol on ``path`` (lags 'auto': chosen on each history)."""
    from hybridstream.evaluation import benchmark, csv_input  # noqa: PLC0415
    from hybridstream.evaluation.options import parse_lags  # noqa: PLC0415
    from model_contract.calendar import parse_calendar_option  # noqa: PLC0415

    table = csv_input.read_table(path)
    columns = list(table.numeric)
    cal = parse_calendar_option(calendar)
    prep = benchmark.prepare(table, columns, cal)
    auto = [v.strip() for v in lags or []] == ["auto"]
    fixed = FeatureSpec().lags if auto else parse_lags(lags) or FeatureSpec().lags
    ts = table.timestamp_column or "t"

    def make_spec(target: str) -> FeatureSpec:
        return benchmark.channel_spec(columns, target, fixed, horizon, ts, cal)

    if auto:
        from training_job.lag_choice import readings_per_day  # noqa: PLC0415

        make_spec, _ = benchmark.lags_on_history(prep, make_spec, readings_per_day(csv_input.epochs(table)), log)
    for target in targets or columns:
        spec = make_spec(target)
        history, stream, lead = benchmark.channel_split(prep, spec)
        yield target, Channel(spec, history, stream, lead)


def scenario_channel(name: str, horizon: int, lags: list[str] | None, calendar: str) -> Channel:
    """The turbine scenario's Channel (as ``eval run --scenario``: train file = history, test file = stream)."""
    from hybridstream.evaluation.options import parse_lags  # noqa: PLC0415
    from hybridstream.evaluation.run_input import scenario_input  # noqa: PLC0415
    from model_contract.calendar import parse_calendar_option  # noqa: PLC0415

    train, test, spec, _ = scenario_input(
        name, parse_lags(lags) or FeatureSpec().lags, horizon, parse_calendar_option(calendar)
    )
    return Channel(spec, train, test, 0)


def mean_row(channels: dict[str, dict]) -> dict[str, float]:
    names = list(next(iter(channels.values()))["mse"])
    return {n: float(np.mean([c["mse"][n] for c in channels.values()])) for n in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="residual_study", description=__doc__.split("\n\n")[0])
    p.add_argument("file", nargs="?", help="a CSV (the benchmark protocol); or --scenario")
    p.add_argument("--scenario", default=None, help="a turbine scenario (none, gradual, step, abrupt) instead")
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--lags", nargs="+", default=None, help="1-24, 1,2,24 or auto (CSV only: chosen on the history)")
    p.add_argument("--calendar", default="day")
    p.add_argument("--targets", default=None, help="comma-separated target channels (default: every one)")
    p.add_argument("--variants", default="mae,mse", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=None, help="max epochs (default: the trainer's)")
    p.add_argument("--burn-in", type=int, default=DEFAULT_BURN_IN, help="history rows whose residuals are not learned")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--window", type=int, default=0, help="also a correction re-trained every WINDOW stream rows on the last WINDOW"
    )
    p.add_argument("--rolling", default="inorm mse", help="the variant of the re-trained correction")
    p.add_argument(
        "--product",
        type=int,
        default=0,
        metavar="W",
        help="also the product's batch, speed (every W rows) and dynamic forecasts, and stacks mixing them with the "
        "residual model (eval benchmark's replay; models cached in .cache/eval)",
    )
    args = p.parse_args(argv)
    if bool(args.file) == bool(args.scenario):
        p.error("give a CSV file or --scenario (one of them)")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    variants = {v: VARIANTS[v] for v in args.variants.split(",")}
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.scenario:
        pairs = iter([(args.scenario, scenario_channel(args.scenario, args.horizon, args.lags, args.calendar))])
    else:
        targets = args.targets.split(",") if args.targets else None
        pairs = csv_channels(args.file, args.horizon, args.lags, args.calendar, targets, log)
    out: dict = {}
    for target, ch in pairs:
        log(f"{target}: lags {ch.spec.lags}, history {len(ch.history)} rows, stream {len(ch.stream) - ch.lead} rows")
        out[target] = study_channel(
            ch, variants, args.seed, args.epochs, args.burn_in, log, args.window, args.rolling, args.product
        )
        log(f"  {target}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[target]["mse"].items()))
    mean = mean_row(out)
    log("mean: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()))
    source = Path(args.file).name if args.file else f"scenario {args.scenario}"
    print(json.dumps({"input": source, "horizon": args.horizon, "channels": out, "mean": mean}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
