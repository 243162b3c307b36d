"""Which batch model to train: level vs change (residual) target, horizons, seeds, vs the baselines.

For each scenario's history a batch model is trained per (variant, horizon, seed) with the
training job's own :func:`~training_job.model.train_matrix` (cached by content version in
``.cache/eval/models``); its TFLite forecasts of the whole test stream are scored beside
persistence and the online linear model (RMSE over the stream and each half).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hybridstream.evaluation.baselines import first_forecast_row, online_linear_forecasts, persistence_forecasts
from hybridstream.evaluation.data import SCENARIOS, load_scenario
from model_contract import FeatureSpec, Manifest, build_supervised

# label -> TrainConfig changes from the config before issue 17 (training_job.model.BEFORE_ISSUE_17), and
# FeatureSpec changes under "lags"
VARIANTS: dict[str, dict] = {
    "level": {"residual": False},
    "residual": {"residual": True},
    "residual mse": {"residual": True, "loss": "mse"},
    "residual lags1-6": {"residual": True, "lags": (1, 2, 3, 4, 5, 6)},
    "residual mse lags1-6": {"residual": True, "loss": "mse", "lags": (1, 2, 3, 4, 5, 6)},
    "residual mse lags1-3": {"residual": True, "loss": "mse", "lags": (1, 2, 3)},
    "level mse": {"residual": False, "loss": "mse"},
    "residual linear": {"residual": True, "linear_skip": True},
    "residual linear mse": {"residual": True, "linear_skip": True, "loss": "mse"},
}


def cached_model(
    matrix: np.ndarray,
    spec: FeatureSpec,
    cfg,
    cache_dir: Path | None,
    log: Callable[[str], None],
    kind: str = "batch",
    init_weights: list | None = None,
    scaler=None,
):
    """(tflite bytes, manifest, Keras weights) of ``train_matrix(matrix, spec, cfg, ...)``, cached by version.

    ``cache_dir=None``: no cache.
    """
    from training_job.model import model_version, train_matrix  # noqa: PLC0415  (TensorFlow)

    version = model_version(matrix, spec, cfg, kind, init_weights, scaler if init_weights is not None else None)
    stem = cache_dir / "models" / version if cache_dir is not None else None
    files = [stem.with_suffix(x) for x in (".tflite", ".json", ".npz")] if stem is not None else []
    if files and all(f.exists() for f in files):
        with np.load(files[2]) as w:
            weights = [w[f"arr_{i}"] for i in range(len(w.files))]
        return files[0].read_bytes(), Manifest.from_json(files[1].read_text()), weights
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        trained = train_matrix(matrix, spec, cfg, name=kind, kind=kind, init_weights=init_weights, scaler=scaler)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        files[0].write_bytes(trained.tflite)
        files[1].write_text(trained.manifest.to_json())
        np.savez(files[2], *trained.weights)
    log(
        f"  trained {kind} {version} on {len(matrix)} rows in {time.perf_counter() - started:.1f} s "
        f"({trained.manifest.extra.get('epochs_run')} epochs, holdout RMSE {trained.manifest.metrics['rmse']:.4g})"
    )
    return trained.tflite, trained.manifest, trained.weights


def model_forecasts(tflite: bytes, manifest: Manifest, stream: np.ndarray) -> np.ndarray:
    """Per target row of ``stream``: the model's TFLite forecast (NaN before the first one)."""
    from model_contract.runtime import TFLiteModel  # noqa: PLC0415
    from training_job.model import quiet_native_output  # noqa: PLC0415

    spec, scaler = manifest.feature_spec, manifest.scaler
    X, _ = build_supervised(stream, spec, scaler)
    with quiet_native_output():
        lite = TFLiteModel.from_manifest(tflite, manifest)
    out = np.full(len(stream), np.nan)
    out[first_forecast_row(spec) :] = scaler.inverse_target(lite.predict_scaled(X).astype(np.float64))
    return out


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    """RMSE / MAE over the stream and RMSE over each half (rows with a forecast)."""
    half = len(y) // 2
    e = pred - y

    def rmse(a):
        a = a[np.isfinite(a)]
        return float(np.sqrt(np.mean(a * a)))

    return {
        "rmse": rmse(e),
        "mae": float(np.nanmean(np.abs(e))),
        "rmse_first_half": rmse(e[:half]),
        "rmse_second_half": rmse(e[half:]),
    }


def study(
    scenarios: Sequence[str],
    horizons: Sequence[int],
    variants: Mapping[str, dict],
    seeds: Sequence[int],
    cache_dir: Path,
    log: Callable[[str], None] = print,
    epochs: int | None = None,
    base_spec: FeatureSpec | None = None,
) -> dict:
    """``{scenario: {H: {approach: scores}}}`` for persistence, online_linear and each ``variant seed=s``."""
    from training_job.model import BEFORE_ISSUE_17, TrainConfig  # noqa: PLC0415

    out: dict = {}
    base_spec = base_spec or FeatureSpec()
    for name in scenarios:
        for h in horizons:
            spec = FeatureSpec(**(base_spec.to_dict() | {"horizon": h}))
            train, test = load_scenario(SCENARIOS[name], spec)
            y = test[:, spec.target_index]
            row: dict = {"persistence": scores(persistence_forecasts(test, spec), y)}
            lin, _ = online_linear_forecasts(test, spec, warmup=train)
            row["online_linear"] = scores(lin, y)
            for label, changes in variants.items():
                changes = dict(changes)
                vspec = FeatureSpec(**(spec.to_dict() | {"lags": changes.pop("lags", spec.lags)}))
                for seed in seeds:
                    cfg = TrainConfig(seed=seed, **(BEFORE_ISSUE_17 | changes))
                    if epochs:
                        cfg = cfg.replace(epochs=epochs)
                    log(f"[{name} H={h}] {label} seed={seed}")
                    tflite, manifest, _ = cached_model(train, vspec, cfg, cache_dir, log)
                    row[f"{label} seed={seed}"] = scores(model_forecasts(tflite, manifest, test), y)
            out.setdefault(name, {})[h] = row
            log(f"[{name} H={h}] " + ", ".join(f"{k}: {v['rmse']:.3f}" for k, v in row.items()))
    return out
