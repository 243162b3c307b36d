"""The LSTM as a correction of the online linear model: its training targets (``TrainConfig.ol_residual``).

With ``ol_residual`` the residual network (output = newest target value + its change) is trained on
``newest value + (y - r)`` instead of ``y``, where ``r`` is the online linear model's forecast of that row made as
the edge runs it (:func:`model_contract.online_linear.stream_forecasts` over the training rows): its change is
what the online linear model misses. The graph, the TFLite file and the edge are unchanged. The edge's context
stack reads a model through its change from the newest value (``batch - last``), beside the lag window its own
linear part forecasts from, so what it reads is the correction. The model alone is then not a forecast of the
target (persistence + the correction); its holdout RMSE is that of ``r`` + the correction, and ``shrink`` fits the
correction to the holdout's misses. Opt-in and not recommended: measured no better than the same LSTM options
without it, and where the shrink factor is 0 the model is persistence, which the context stack handles badly
(docs/combination.md, "What was tried and did not work").

>>> import numpy as np
>>> from model_contract import FeatureSpec, Scaler, build_supervised
>>> spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), calendar=())
>>> m = np.cumsum(np.random.default_rng(0).normal(size=(50, 2)), axis=0)
>>> scaler = Scaler.fit(m, 1)
>>> X, y = build_supervised(m, spec, scaler)
>>> t = targets(m, spec, scaler, X, y)
>>> bool(np.allclose(t[:2], y[:2]))  # before the online linear model has learned, it is persistence: y itself
True
"""

from __future__ import annotations

import numpy as np

from model_contract import FeatureSpec, Scaler
from model_contract.online_linear import stream_forecasts

BURN_IN_ROWS = 240  # rows whose residuals are not trained on: the online linear model is still learning there


def targets(matrix: np.ndarray, spec: FeatureSpec, scaler: Scaler, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The scaled targets ``newest value + (y - r) / scale`` of the samples ``X, y`` of
    :func:`~model_contract.build_supervised` ``(matrix, spec, scaler)`` (``y`` where there is no ``r``)."""
    r, _ = stream_forecasts(matrix, spec)
    first = spec.max_lag + spec.horizon - 1
    rows = np.arange(first, first + len(y))
    ti = spec.target_index
    miss = (matrix[rows, ti] - r[rows]) / scaler.scale[ti]
    out = X[:, -1, ti].astype(np.float64) + miss
    return np.where(np.isfinite(out), out, y).astype(np.float32)


def burn_in_samples(spec: FeatureSpec, n_train: int) -> int:
    """How many of the oldest training samples to leave out (their targets' rows < ``BURN_IN_ROWS``; one kept)."""
    return int(min(max(0, BURN_IN_ROWS - (spec.max_lag + spec.horizon - 1)), max(0, n_train - 1)))
