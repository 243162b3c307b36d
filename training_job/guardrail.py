"""The guardrail: never replace the current speed model with a worse one.

Before a speed model is published, the candidate and the current model (the one
``models/<name>/LATEST`` points to) both forecast the *newest holdout* of the window (the
last ``holdout_fraction`` of its rows, which the candidate never trained on), each with
its own feature spec and scaler, through the same lightweight TFLite runtime the edge
uses. The candidate is refused if

    candidate_rmse > current_rmse * (1 + margin)

(``margin`` default 0.10). The decision and both scores go into the manifest's
``extra["guardrail"]``. With no current model, or one whose feature columns the window
lacks, the candidate passes (status ``first`` / ``skipped``) and the manifest says why.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from model_contract import Manifest, build_supervised
from model_contract.runtime import TFLiteModel
from training_job.model import quiet_native_output

log = logging.getLogger(__name__)

DEFAULT_MARGIN = 0.10


@dataclass
class Verdict:
    """The guardrail's decision. ``status``: accepted, refused, first (nothing to compare), skipped."""

    status: str
    metric: str = "rmse"
    margin: float = DEFAULT_MARGIN
    candidate_rmse: float | None = None
    candidate_mae: float | None = None
    current_rmse: float | None = None
    current_mae: float | None = None
    current_version: str = ""
    holdout_rows: int = 0
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.status == "refused"

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(tflite: bytes, manifest: Manifest, rows: np.ndarray, n_targets: int) -> tuple[float, float, int]:
    """(RMSE, MAE, n) of a model forecasting the last ``n_targets`` rows of a raw (rows, features) matrix.

    ``rows`` must be in the model's feature order (its columns, then its calendar features). Each
    model sees its own lags, horizon and scaling.
    """
    spec, scaler = manifest.feature_spec, manifest.scaler
    reach = spec.max_lag + spec.horizon - 1  # rows before a sample's target: its lags and the horizon
    n = min(n_targets, rows.shape[0] - reach)
    if n <= 0:
        raise ValueError(
            f"not enough rows ({rows.shape[0]}) to evaluate a model with lags {spec.lags} and horizon {spec.horizon}"
        )
    X, y = build_supervised(rows[-(n + reach) :], spec, scaler)
    with quiet_native_output():
        model = TFLiteModel(tflite, scaler, tuple(manifest.input_shape))
    pred = np.asarray(scaler.inverse_target(model.predict_scaled(X)), dtype=np.float64)
    truth = rows[-n:, spec.target_index]
    err = pred - truth
    return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), int(n)


def judge(
    candidate_tflite: bytes,
    candidate: Manifest,
    current_tflite: bytes | None,
    current: Manifest | None,
    window_columns: dict[str, np.ndarray],
    holdout_rows: int,
    margin: float = DEFAULT_MARGIN,
) -> Verdict:
    """Compare candidate and current on the newest ``holdout_rows`` targets of the window.

    ``window_columns`` maps column name -> values (oldest first) for every column of the window,
    and calendar feature name -> values (:func:`model_contract.features.calendar_columns` of the
    window's timestamps): each model's rows are its spec's ``features``, as it was trained.
    """

    def matrix_for(manifest: Manifest) -> np.ndarray:
        return np.column_stack([window_columns[c] for c in manifest.feature_spec.features])

    cand_rmse, cand_mae, n = evaluate(candidate_tflite, candidate, matrix_for(candidate), holdout_rows)
    verdict = Verdict(status="first", margin=margin, candidate_rmse=cand_rmse, candidate_mae=cand_mae, holdout_rows=n)
    if current is None or current_tflite is None:
        verdict.reason = "no current model to compare with"
        return verdict
    verdict.current_version = current.version
    missing = [c for c in current.feature_spec.features if c not in window_columns]
    other_horizon = current.feature_spec.horizon != candidate.feature_spec.horizon
    if missing or current.feature_spec.target != candidate.feature_spec.target or other_horizon:
        what = ", ".join(missing) or ("horizon" if other_horizon else "target")
        verdict.status = "skipped"
        verdict.reason = f"current model {current.version} uses other columns/target/horizon ({what})"
        log.warning("guardrail skipped: %s", verdict.reason)
        return verdict
    cur_rmse, cur_mae, _ = evaluate(current_tflite, current, matrix_for(current), n)
    verdict.current_rmse, verdict.current_mae = cur_rmse, cur_mae
    limit = cur_rmse * (1.0 + margin)
    if cand_rmse > limit:
        verdict.status = "refused"
        verdict.reason = (
            f"candidate RMSE {cand_rmse:.4f} > current {current.version} RMSE {cur_rmse:.4f} x (1 + {margin:g}) "
            f"on the newest {n} rows"
        )
    else:
        verdict.status = "accepted"
        verdict.reason = f"candidate RMSE {cand_rmse:.4f} <= current RMSE {cur_rmse:.4f} x (1 + {margin:g})"
    return verdict
