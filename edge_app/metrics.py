"""Rolling and cumulative accuracy per approach (batch, speed, hybrid).

The app's counters are in :mod:`edge_app.telemetry`.

The per-record update is a list store and three additions; RMSE/MAE over the sliding window
are computed only when a metrics record is produced.

>>> s = ErrorStats(window=2)
>>> for e in [(1.0, 2.0, 1.5), (3.0, -2.0, 0.5), (-3.0, 2.0, -0.5)]:
...     s.update(*e)
>>> snap = s.snapshot()
>>> snap["rolling"]["batch"]["mae"], snap["rolling"]["speed"]["rmse"], snap["cumulative"]["batch"]["mae"]
(3.0, 2.0, 2.3333)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

APPROACHES = ("batch", "speed", "hybrid")


class ErrorStats:
    """Forecast errors (forecast - actual) of the three approaches: a sliding window and running totals."""

    __slots__ = ("_ring", "_size", "_pos", "_ab", "_as", "_ah", "_qb", "_qs", "_qh", "count")

    def __init__(self, window: int = 500) -> None:
        self._size = window
        self._ring: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * window
        self._pos = 0
        # running sums of |error| and error^2 per approach: floats in slots (cheaper to update than list items)
        self._ab = self._as = self._ah = 0.0
        self._qb = self._qs = self._qh = 0.0
        self.count = 0

    def update(self, batch: float, speed: float, hybrid: float) -> None:
        self.add((batch, speed, hybrid))

    def add(self, errors: tuple[float, float, float]) -> None:
        """:meth:`update` with the errors as one (batch, speed, hybrid) tuple, kept as it is in the window (the hot
        path's: the same sums in the same order, without a call's packing and unpacking)."""
        b, s, h = errors
        p = self._pos
        self._ring[p] = errors
        p += 1
        self._pos = p if p < self._size else 0
        self._ab += abs(b)
        self._as += abs(s)
        self._ah += abs(h)
        self._qb += b * b
        self._qs += s * s
        self._qh += h * h
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"rolling": {approach: {rmse, mae, n}}, "cumulative": {...}}`` in target units (4 decimals)."""
        rolling: dict[str, Any] = {}
        cumulative: dict[str, Any] = {}
        filled = min(self.count, self._size)  # errors in the window
        if filled:
            errs = np.asarray(self._ring[:filled] if filled < self._size else self._ring)
            rmse = np.sqrt(np.mean(errs**2, axis=0))
            mae = np.mean(np.abs(errs), axis=0)
        cum_abs, cum_sq = (self._ab, self._as, self._ah), (self._qb, self._qs, self._qh)
        for i, name in enumerate(APPROACHES):
            if filled:
                rolling[name] = {"rmse": _r(rmse[i]), "mae": _r(mae[i]), "n": filled}
                cumulative[name] = {
                    "rmse": _r(math.sqrt(cum_sq[i] / self.count)),
                    "mae": _r(cum_abs[i] / self.count),
                    "n": self.count,
                }
            else:
                rolling[name] = cumulative[name] = {"rmse": None, "mae": None, "n": 0}
        return {"rolling": rolling, "cumulative": cumulative}


def _r(x: float) -> float | None:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None
