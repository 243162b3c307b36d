"""``eval benchmark --validation``: the batch model against the baselines on the validation rows only.

A choice made on history (lags, a training option) must not read the stream it is later reported on. Here each
target's batch model is trained on train + validation exactly as ``eval benchmark`` trains it (the same model
cache key), and scored on the validation rows that are in its trainer holdout (the newest 20 % of its samples,
which it never fitted; ``shrink`` and early stopping did read them, as they do in the product), beside
persistence and the online linear model with the same lags, streamed through the history from its first row as
the edge runs it. The stream is not scored and no stream value is used (the whole file is parsed, and ``--lags
auto`` reads its timestamps); no speed model is trained.

Lag sets with different longest lags have slightly different holdouts; ``first_row`` scores every run on the same
rows (e.g. the holdout of the longest window compared), and is refused if it would score a row the model was
fitted on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hybridstream.evaluation.csv_input import EvalInputError
from model_contract import FeatureSpec

APPROACHES = ("batch", "persistence", "online_linear")


def holdout_start(rows: int, spec: FeatureSpec, fraction: float) -> int:
    """The first history row whose target is in the trainer's holdout (``training_job.model.split_holdout``).

    >>> holdout_start(3600, FeatureSpec(lags=(1, 2), horizon=24), 0.2)
    2885
    """
    from training_job.model import holdout_size  # noqa: PLC0415  (no TensorFlow at import)

    n_samples = rows - spec.max_lag - spec.horizon + 1
    return rows - holdout_size(n_samples, fraction)


def score_rows(prep_borders: tuple[int, int, int], spec: FeatureSpec, fraction: float, first_row: int | None) -> range:
    """The rows scored: ``first_row`` (default: the holdout's first row, not before the validation span) to the
    end of validation; EvalInputError if ``first_row`` would score a row the model was fitted on."""
    train_end, val_end, _ = prep_borders
    start = max(train_end, holdout_start(val_end, spec, fraction))
    if start >= val_end:
        raise EvalInputError(f"no validation rows in the batch model's holdout (borders {prep_borders})")
    if first_row is not None:
        if not start <= first_row < val_end:
            raise EvalInputError(
                f"--validation {first_row}: lags {spec.lags} at horizon {spec.horizon} hold out rows {start}-"
                f"{val_end - 1} of the validation span; give a first row in that range"
            )
        start = first_row
    return range(start, val_end)


def validation_scores(
    matrix: np.ndarray,
    prep_borders: tuple[int, int, int],
    targets: Sequence[str],
    make_spec: Callable[[str], FeatureSpec],
    *,
    cfg=None,
    cache_dir: Path | None = None,
    first_row: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Per target: MSE and MAE of batch, persistence and online_linear on the validation rows; their mean.

    Returns ``{"channels": {ch: {approach: {"mse", "mae"}}}, "mean": {...}, "rows": {ch: [first, end]}}``.
    """
    from hybridstream.evaluation.baselines import persistence_forecasts  # noqa: PLC0415
    from hybridstream.evaluation.model_study import cached_model, model_forecasts  # noqa: PLC0415
    from model_contract.online_linear import stream_forecasts  # noqa: PLC0415
    from training_job.model import TrainConfig  # noqa: PLC0415

    cfg = cfg or TrainConfig()
    history = matrix[: prep_borders[1]]
    channels: dict[str, dict] = {}
    rows: dict[str, list[int]] = {}
    specs = {target: make_spec(target) for target in targets}
    # every target's rows first: a refused first_row stops the command before any model is trained
    ranges = {t: score_rows(prep_borders, spec, cfg.holdout_fraction, first_row) for t, spec in specs.items()}
    for i, target in enumerate(targets, 1):
        spec, scored = specs[target], ranges[target]
        log(f"[{i}/{len(targets)}] target {target}: lags {spec.lags}, validation rows {scored.start}-{scored.stop - 1}")
        tflite, manifest, _ = cached_model(history, spec, cfg, cache_dir, log, kind="batch")
        forecasts = {
            "batch": model_forecasts(tflite, manifest, history),
            "persistence": persistence_forecasts(history, spec),
            "online_linear": stream_forecasts(history, spec)[0],
        }
        y = history[scored.start : scored.stop, spec.target_index]
        channels[target] = {}
        for name, f in forecasts.items():
            e = f[scored.start : scored.stop] - y
            channels[target][name] = {"mse": float(np.mean(e * e)), "mae": float(np.mean(np.abs(e)))}
        rows[target] = [scored.start, scored.stop]
        log(f"  {target}: " + ", ".join(f"{k} {v['mse']:.4f}" for k, v in channels[target].items()))
    mean = {
        name: {m: float(np.mean([channels[c][name][m] for c in channels])) for m in ("mse", "mae")}
        for name in APPROACHES
    }
    return {"channels": channels, "mean": mean, "rows": rows}


def table_markdown(res: dict) -> str:
    """Per channel MSE (MAE) on the validation rows, the mean, and batch / persistence, batch / online_linear."""
    from hybridstream.evaluation.report import md_table  # noqa: PLC0415

    def line(label: str, v: dict) -> list:
        ratios = [v["batch"]["mse"] / v[k]["mse"] if v[k]["mse"] > 0 else float("nan") for k in APPROACHES[1:]]
        return [label] + [f"{v[n]['mse']:.4f} ({v[n]['mae']:.4f})" for n in APPROACHES] + [f"{r:.3f}" for r in ratios]

    head = ["channel", *APPROACHES, "batch / persistence", "batch / online_linear"]
    body = [line(c, v) for c, v in res["channels"].items()] + [line("**mean**", res["mean"])]
    return "MSE (MAE) on the validation rows only (the batch model's trainer holdout), z-scored units\n\n" + md_table(
        head, body
    )
