"""The two baselines over a whole stream: persistence and the online linear model.

Both are run as the edge would run them: one record at a time, through the same
:class:`~model_contract.FeatureBuffer` window as the LSTMs, learning a forecast's truth
only when it arrives ``horizon`` records later.

>>> import numpy as np
>>> from model_contract import FeatureSpec
>>> spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1,), horizon=2)
>>> m = np.column_stack([np.zeros(6), np.arange(6.0)])
>>> persistence_forecasts(m, spec).tolist()
[nan, nan, 0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import numpy as np

from model_contract import FeatureSpec
from model_contract.online_linear import OnlineLinear, stream_forecasts


def first_forecast_row(spec: FeatureSpec) -> int:
    """The first row of a stream that gets a forecast: ``max_lag`` readings seen, ``horizon`` ahead."""
    return spec.max_lag + spec.horizon - 1


def persistence_forecasts(matrix: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Per target row ``j``: the target at ``j - horizon`` (NaN before the first forecast)."""
    y = matrix[:, spec.target_index].astype(np.float64)
    out = np.full(len(y), np.nan)
    start = first_forecast_row(spec)
    out[start:] = y[start - spec.horizon : len(y) - spec.horizon]
    return out


def online_linear_forecasts(
    matrix: np.ndarray, spec: FeatureSpec, warmup: np.ndarray | None = None, **params
) -> tuple[np.ndarray, OnlineLinear]:
    """Per target row: the online linear forecast made ``horizon`` rows earlier; learns each truth on arrival.

    ``warmup`` (e.g. the training file) is streamed first, unscored, so the model starts
    where a model trained on the history would (:func:`model_contract.online_linear.stream_forecasts`).
    """
    return stream_forecasts(matrix, spec, warmup, **params)
