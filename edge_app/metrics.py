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

    __slots__ = ("_ring", "_size", "_pos", "_filled", "_cum_abs", "_cum_sq", "count")

    def __init__(self, window: int = 500) -> None:
        self._size = window
        self._ring: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * window
        self._pos = 0
        self._filled = 0
        self._cum_abs = [0.0, 0.0, 0.0]
        self._cum_sq = [0.0, 0.0, 0.0]
        self.count = 0

    def update(self, batch: float, speed: float, hybrid: float) -> None:
        self._ring[self._pos] = (batch, speed, hybrid)
        self._pos = (self._pos + 1) % self._size
        if self._filled < self._size:
            self._filled += 1
        ca, cs = self._cum_abs, self._cum_sq
        ca[0] += abs(batch)
        ca[1] += abs(speed)
        ca[2] += abs(hybrid)
        cs[0] += batch * batch
        cs[1] += speed * speed
        cs[2] += hybrid * hybrid
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        """``{"rolling": {approach: {rmse, mae, n}}, "cumulative": {...}}`` in target units (4 decimals)."""
        rolling: dict[str, Any] = {}
        cumulative: dict[str, Any] = {}
        if self._filled:
            errs = np.asarray(self._ring[: self._filled] if self._filled < self._size else self._ring)
            rmse = np.sqrt(np.mean(errs**2, axis=0))
            mae = np.mean(np.abs(errs), axis=0)
        for i, name in enumerate(APPROACHES):
            if self._filled:
                rolling[name] = {"rmse": _r(rmse[i]), "mae": _r(mae[i]), "n": self._filled}
                cumulative[name] = {
                    "rmse": _r(math.sqrt(self._cum_sq[i] / self.count)),
                    "mae": _r(self._cum_abs[i] / self.count),
                    "n": self.count,
                }
            else:
                rolling[name] = cumulative[name] = {"rmse": None, "mae": None, "n": 0}
        return {"rolling": rolling, "cumulative": cumulative}


def _r(x: float) -> float | None:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None
