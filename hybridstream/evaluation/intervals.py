"""Forecast intervals replayed over a forecast stream, scored, and their baseline.

:func:`issued_half_widths` streams ``(truth, forecast)`` rows through an interval learner as the edge does
(the half-widths issued when a forecast is made, scored when its truth arrives ``horizon`` rows
later) and returns the half-widths issued per row; :func:`score` gives coverage per level, mean
width and coverage over each tenth of the stream (drift shows there). :class:`RollingQuantile` is
the baseline: the empirical ``level`` quantile of the last ``n`` absolute errors.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=3000); f = np.zeros(3000)
>>> hw = issued_half_widths(y, f, ConformalInterval())
>>> s = score(y, f, hw, (0.8, 0.95))
>>> abs(s["coverage"]["0.8"] - 0.8) < 0.02, len(s["coverage_tenths"]["0.95"])
(True, 10)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from model_contract.conformal import ConformalInterval, level_key  # noqa: F401 (the doctest uses it)


class RollingQuantile:
    """Baseline: half-width = the empirical ``level`` quantile of the last ``n`` absolute errors."""

    def __init__(self, levels: Sequence[float] = (0.8, 0.95), n: int = 1000) -> None:
        self.levels = tuple(float(v) for v in levels)
        self.n = int(n)
        self._errors: deque = deque(maxlen=self.n)

    def half_widths(self) -> tuple[float, ...] | None:
        if not self._errors:
            return None
        return tuple(float(v) for v in np.quantile(np.fromiter(self._errors, float), self.levels))

    def learn_one(self, residual: float, issued: Sequence[float] | None = None) -> None:
        if math.isfinite(residual):
            self._errors.append(abs(residual))


def issued_half_widths(y: np.ndarray, forecast: np.ndarray, learner, horizon: int = 1) -> np.ndarray:
    """Half-widths issued per row (rows x levels; NaN where no forecast or no interval yet).

    Row ``j``'s forecast was made when row ``j - horizon`` had arrived, so its interval is issued after the
    truths of rows ``<= j - horizon`` were learned, and scored (learned) when row ``j`` arrives.
    """
    n = len(y)
    k = len(learner.levels)
    out = np.full((n, k), np.nan)
    issued: list = [None] * n
    ok = np.isfinite(forecast)
    for j in range(n):
        i = j - horizon  # its truth has arrived before row j's forecast was made
        if i >= 0 and ok[i] and math.isfinite(y[i]):
            learner.learn_one(float(forecast[i] - y[i]), issued[i])
            issued[i] = None
        if ok[j]:
            hw = learner.half_widths()
            issued[j] = hw
            if hw is not None:
                out[j] = hw
    return out


def score(y: np.ndarray, forecast: np.ndarray, half_widths: np.ndarray, levels: Sequence[float]) -> dict:
    """Coverage and mean full width per level over the rows with an interval, and coverage per tenth of them."""
    ok = np.isfinite(y) & np.isfinite(forecast) & np.all(np.isfinite(half_widths), axis=1)
    a = np.abs(forecast - y)[ok]
    hw = half_widths[ok]
    out: dict = {"coverage": {}, "width": {}, "coverage_tenths": {}, "interval_rows": int(ok.sum())}
    for i, lv in enumerate(levels):
        key = level_key(lv)
        hit = a <= hw[:, i]
        out["coverage"][key] = float(hit.mean()) if len(hit) else math.nan
        out["width"][key] = float(2.0 * hw[:, i].mean()) if len(hit) else math.nan
        out["coverage_tenths"][key] = [float(p.mean()) if len(p) else math.nan for p in np.array_split(hit, 10)]
    return out
