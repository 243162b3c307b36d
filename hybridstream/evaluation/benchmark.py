"""``hybridstream eval benchmark``: the FSNet/OneNet online protocol on one CSV, every channel in turn.

The protocol of the online-forecasting papers' data loaders (FSNet, Pham et al., ICLR 2023; OneNet,
Zhang et al., NeurIPS 2023; LSTD): one time-ordered file is cut into train / validation / stream,

* ETT files (name starting ``ETTh`` or ``ETTm``): rows [0, 2,880) train, [2,880, 3,600) validation,
  [3,600, 14,400) the stream (4 / 1 / 15 months of 30 days for the hourly files); the 15-minute files
  keep the same row borders (OneNet's ``Dataset_ETT_minute`` in ``data/data_loader.py`` does: 4*30*24,
  5*30*24, 20*30*24 rows), so the published ETTm figures are on those rows;
* any other file: 20 % / 5 % / 75 % of the rows, in time order;

every numeric column is z-scored with the mean and standard deviation of the train rows, and each
channel in turn (or ``--target``) is forecast ``H`` readings ahead from all channels. Here the batch
model is trained on train + validation (its chronological 20 % holdout is the validation span for the
ETT borders), the online linear model is streamed through the same rows, and the stream is replayed
record by record by :func:`hybridstream.evaluation.online_run.run_stream`, the machinery of
``eval run`` (speed models re-trained every ``window`` rows, the combiners learning each truth on
arrival). The first stream row scored is the first row of the stream span (the lag window before it
comes from the validation rows). MSE and MAE are in z-units, per channel and averaged over channels.

Published figures (``PUBLISHED``) are shown beside ours when the file is one of the papers'. They
forecast all channels jointly and, for ``H`` > 1, average the error over the 1..H steps ahead; we
forecast each channel from all and score the H-th step only (harder). At ``H`` = 1 the two agree.

>>> borders("data/ETTh2.csv", 17420)
(2880, 3600, 14400)
>>> borders("ETTm1.csv", 69680)
(2880, 3600, 14400)
>>> borders("weather.csv", 1000)
(200, 250, 1000)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridstream.evaluation.csv_input import EvalInputError, Table, epochs
from model_contract import FeatureSpec
from model_contract.features import add_calendar

ETT_HOURLY = (2880, 3600, 14400)

# Published online-protocol MSE (all channels jointly, mean over the 1..H steps), by file stem and H.
# FSNet and OneNet: OneNet paper (Zhang et al., "OneNet: Enhancing Time Series Forecasting Models under
# Concept Drift by Online Ensembling", NeurIPS 2023), Table 2; LSTD ETTh2 H = 1 as quoted in issue 17.
PUBLISHED_SOURCE = "OneNet (NeurIPS 2023) Table 2; LSTD as quoted in issue 17"
PUBLISHED: dict[tuple[str, int], dict[str, float]] = {
    ("ETTh2", 1): {"FSNet": 0.466, "OneNet": 0.380, "LSTD": 0.377},
    ("ETTh2", 24): {"FSNet": 0.687, "OneNet": 0.532},
    ("ETTh2", 48): {"FSNet": 0.846, "OneNet": 0.609},
    ("ETTm1", 1): {"FSNet": 0.085, "OneNet": 0.082},
    ("ETTm1", 24): {"FSNet": 0.115, "OneNet": 0.098},
    ("ETTm1", 48): {"FSNet": 0.127, "OneNet": 0.108},
}


def borders(path: str | Path, rows: int, override: Sequence[int] | None = None) -> tuple[int, int, int]:
    """(end of train, end of validation, end of stream) rows of the protocol for this file."""
    stem = Path(path).stem
    if override:
        b = tuple(int(x) for x in override)
        if len(b) != 3:
            raise EvalInputError("--borders needs three row numbers: TRAIN_END,VAL_END,STREAM_END")
    elif stem.startswith(("ETTh", "ETTm")):
        b = ETT_HOURLY
    else:
        n_train, n_test = int(rows * 0.2), int(rows * 0.75)
        b = (n_train, rows - n_test, rows)
    if not 0 < b[0] <= b[1] < b[2] <= rows:
        raise EvalInputError(f"{path}: {rows} rows, borders {b} do not fit (0 < train <= validation < stream <= rows)")
    return b  # type: ignore[return-value]


def published(path: str | Path, horizon: int) -> dict[str, float]:
    """The papers' MSE for this file and horizon ({} if it is not one of theirs)."""
    return dict(PUBLISHED.get((Path(path).stem, horizon), {}))


@dataclass
class Prepared:
    """The z-scored matrix (columns, then calendar features), the spec template and the borders."""

    matrix: np.ndarray
    columns: tuple[str, ...]
    borders: tuple[int, int, int]
    mean: np.ndarray
    std: np.ndarray


def prepare(
    table: Table,
    columns: Sequence[str],
    calendar: tuple[str, ...],
    override: Sequence[int] | None = None,
) -> Prepared:
    """Cut, check and z-score (train statistics) the table's ``columns``; append the calendar features."""
    from hybridstream.evaluation.csv_input import to_matrix  # noqa: PLC0415

    if calendar and not table.timestamp_column:
        raise EvalInputError(
            f"{table.path}: no timestamp column detected; the calendar features need one (--calendar none)"
        )
    b = borders(table.path, table.rows, override)
    spec = FeatureSpec(columns=tuple(columns), target=columns[-1], timestamp_column=table.timestamp_column or "t")
    raw = to_matrix(table, spec)  # finite numbers or a clear error
    mean = raw[: b[0]].mean(axis=0)
    std = raw[: b[0]].std(axis=0)
    flat = [c for c, s in zip(columns, std, strict=True) if not s > 0]
    if flat:
        raise EvalInputError(
            f"{table.path}: column(s) {', '.join(flat)} are constant over the train rows (cannot z-score)"
        )
    z = (raw - mean) / std
    if calendar:
        z = add_calendar(z, epochs(table), FeatureSpec(columns=tuple(columns), target=columns[-1], calendar=calendar))
    return Prepared(z, tuple(columns), b, mean, std)


def channel_split(prep: Prepared, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """(history: train + validation rows, stream with the lag window before it, rows of that lead-in)."""
    _, val_end, end = prep.borders
    lead = spec.max_lag + spec.horizon - 1
    if val_end - lead < 0:
        raise EvalInputError(f"lags {spec.lags} and horizon {spec.horizon} need {lead} rows before the stream")
    return prep.matrix[:val_end], prep.matrix[val_end - lead : end], lead


def lags_on_history(
    prep: Prepared, make_spec: Callable[[str], FeatureSpec], period: int | None, log: Callable[[str], None] = print
) -> tuple[Callable[[str], FeatureSpec], dict[str, dict]]:
    """``make_spec`` with each target's lags chosen on its history rows only (train + validation; the
    trainer's :func:`training_job.lag_choice.choose_lags`, as ``train pretrain --lags auto`` chooses them), and
    the choices (target -> :meth:`~training_job.lag_choice.LagChoice.to_dict`, filled as targets are asked for)."""
    from dataclasses import replace  # noqa: PLC0415

    from training_job.lag_choice import choose_lags  # noqa: PLC0415

    choices: dict[str, dict] = {}

    def spec_for(target: str) -> FeatureSpec:
        spec = make_spec(target)
        if target not in choices:
            choice = choose_lags(prep.matrix[: prep.borders[1]], spec, period)
            choices[target] = choice.to_dict()
            log(f"  {target}: lags {','.join(map(str, choice.lags))} ({choice.label}) chosen on the history")
        return replace(spec, lags=tuple(choices[target]["lags"]))

    return spec_for, choices


def channels(table: Table, columns: list[str] | None, target: str | None) -> tuple[list[str], list[str]]:
    """(input channels, target channels): ``columns`` (default every numeric column) and ``target`` checked."""
    columns = list(table.numeric) if columns is None else columns
    bad = [c for c in columns if c not in table.numeric]
    if bad or not columns:
        raise EvalInputError(f"{table.path}: not numeric column(s) {bad or columns} (numeric: {table.numeric})")
    if target and target not in columns:
        raise EvalInputError(f"{table.path}: target {target!r} is not one of the input channels {columns}")
    return columns, [target] if target else columns


def channel_spec(
    columns: Sequence[str],
    target: str,
    lags: tuple[int, ...],
    horizon: int,
    timestamp_column: str,
    calendar: tuple[str, ...],
) -> FeatureSpec:
    """The spec forecasting ``target`` from every channel (EvalInputError if the contract refuses it)."""
    try:
        return FeatureSpec(
            columns=tuple(columns),
            target=target,
            lags=lags,
            horizon=horizon,
            timestamp_column=timestamp_column,
            calendar=calendar,
        )
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None


def errors(forecast: np.ndarray, y: np.ndarray, ok: np.ndarray) -> dict[str, float]:
    e = (forecast - y)[ok]
    return (
        {"mse": float(np.mean(e * e)), "mae": float(np.mean(np.abs(e)))}
        if len(e)
        else {"mse": math.nan, "mae": math.nan}
    )


def run_benchmark(
    prep: Prepared,
    targets: Sequence[str],
    make_spec: Callable[[str], FeatureSpec],
    window: int,
    *,
    cfg=None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
    variants: dict | None = None,
    stream_hook: Callable[[np.ndarray, int, int], np.ndarray] | None = None,
    save_dir: Path | None = None,
    speed_cfg=None,
    warm_start: bool | None = None,
    speed_windows: int | None = None,
    warm_combiner: bool = True,
    warm_variants: bool = False,
    early_on_drift: bool | None = None,
    since_drift: bool | None = None,
) -> dict:
    """Per target channel: every approach's MSE and MAE over the stream; their mean over channels.

    ``save_dir``: each channel's run is saved there as ``<channel>.npz`` (``eval table|experts|plot`` read it).
    ``speed_cfg``, ``warm_start``, ``speed_windows``, ``early_on_drift``, ``since_drift``: as
    :func:`~hybridstream.evaluation.online_run.run_stream`'s
    (None: its defaults, the trainer's); ``warm_combiner`` and ``warm_variants`` as its own.
    """
    from hybridstream.evaluation.online_run import INTERVAL_APPROACHES, run_stream  # noqa: PLC0415

    given = {"warm_start": warm_start, "speed_windows": speed_windows}
    given |= {"early_on_drift": early_on_drift, "since_drift": since_drift}
    speed = {k: v for k, v in given.items() if v is not None}

    channels: dict[str, dict] = {}
    counters: dict[str, dict] = {}
    rows = 0
    for i, target in enumerate(targets, 1):
        spec = make_spec(target)
        history, stream, lead = channel_split(prep, spec)
        if stream_hook is not None:  # e.g. faults injected into the stream (its lead-in rows left alone)
            stream = stream_hook(stream, spec.target_index, lead)
        log(f"[{i}/{len(targets)}] target {target}: history {len(history)} rows, stream {len(stream) - lead} rows")
        result = run_stream(
            history,
            stream,
            spec,
            window,
            cfg=cfg,
            speed_cfg=speed_cfg,
            cache_dir=cache_dir,
            log=log,
            progress_every=0,
            variants=variants,
            warm_combiner=warm_combiner,
            warm_variants=warm_variants,
            **speed,
        )
        if save_dir is not None:
            result.save(Path(save_dir) / f"{target}.npz")
        ok = result.scored
        ok[:lead] = False
        rows = int(ok.sum())
        forecasts = result.forecasts | result.variants
        channels[target] = {name: errors(f, result.y, ok) for name, f in forecasts.items()}
        for name in INTERVAL_APPROACHES:  # coverage, width (model_contract.conformal; the baselines' beside it)
            channels[target][name] |= result.intervals(skip=lead, approach=name)[1]
        counters[target] = result.counters
        log(f"  {target}: " + ", ".join(f"{k} {v['mse']:.4f}" for k, v in channels[target].items()))
    names = list(next(iter(channels.values())))
    mean = {
        name: {m: float(np.mean([channels[c][name][m] for c in channels])) for m in ("mse", "mae")} for name in names
    }
    return {"channels": channels, "mean": mean, "rows": rows, "counters": counters}


def table_markdown(res: dict, pub: dict[str, float]) -> str:
    """Per channel MSE (MAE) of every approach, the mean over channels, and the published figures."""
    from hybridstream.evaluation.report import md_table  # noqa: PLC0415

    names = list(res["mean"])
    head = ["channel", *names]
    rows = [[c] + [f"{v[n]['mse']:.4f} ({v[n]['mae']:.4f})" for n in names] for c, v in res["channels"].items()]
    rows.append(["**mean**"] + [f"**{res['mean'][n]['mse']:.4f}** ({res['mean'][n]['mae']:.4f})" for n in names])
    md = "MSE (MAE) over the stream, z-scored units\n\n" + md_table(head, rows)
    if pub:
        md += f"\n\nPublished MSE ({PUBLISHED_SOURCE}; all channels jointly, mean over steps 1..H): " + ", ".join(
            f"{k} {v:.3f}" for k, v in pub.items()
        )
    else:
        md += "\n\nNo published figures for this file and horizon (FSNet/OneNet/LSTD report ETTh2, ETTm1, WTH, ECL)."
    return md


def summary(
    path: str | Path, prep: Prepared, horizon: int, window: int, targets: Sequence[str], res: dict, pub: dict
) -> dict:
    """The ``--json`` line of ``eval benchmark``."""
    return {
        "file": Path(path).name,
        "borders": list(prep.borders),
        "horizon": horizon,
        "window": window,
        "targets": list(targets),
        "channels": res["channels"],
        "mean": res["mean"],
        "rows": res["rows"],
        "published": pub,
    }
