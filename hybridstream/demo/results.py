"""Accuracy, latency and freshness from the records the edge app produced (nothing recomputed offline).

Each prediction record carries the actual value just observed and the forecasts of the reading
``horizon`` readings ahead (1, the next one, when the record has no ``horizon``): batch, speed,
hybrid = the dynamic blend, and any further approach the edge emits. A reading's error for an
approach is the forecast of the record ``horizon`` readings before it minus this record's actual.
``static`` is the prototype's fixed 0.3 speed / 0.7 batch blend of the two forecasts in the
record; ``persistence`` forecasts the actual value of that earlier record (the truth stream's naive baseline).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

STATIC_SPEED_WEIGHT = 0.3
EDGE_APPROACHES = {"batch": "batch", "speed": "speed", "dynamic": "hybrid"}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def unique_predictions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First prediction of each key (device|timestamp), in stream order per device."""
    seen: dict[str, dict[str, Any]] = {}
    for rec in records:
        key = rec.get("key")
        if key and key not in seen:
            seen[key] = rec
    return sorted(seen.values(), key=lambda r: (str(r.get("device")), _ts(r["timestamp"])))


def error_series(preds: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per approach, forecast - actual for each reading that had a forecast (NaN where none)."""
    names = ["batch", "speed", "static", "dynamic", "persistence"]
    extra = sorted({k for p in preds for k in (p.get("forecast") or {}) if k not in ("batch", "speed", "hybrid")})
    names += extra
    out = {name: np.full(len(preds), np.nan) for name in names}
    for i in range(1, len(preds)):
        cur = preds[i]
        # the record whose forecast targets this reading: ``horizon`` readings back (1: the previous one)
        back = [k for k in range(max(0, i - 24), i) if i - k == int(preds[k].get("horizon") or 1)]
        if not back:
            continue
        prev = preds[back[-1]]
        if prev.get("device") != cur.get("device"):
            continue
        actual, fc = cur.get("actual"), prev.get("forecast")
        if not isinstance(actual, int | float):
            continue
        if isinstance(prev.get("actual"), int | float):
            out["persistence"][i] = prev["actual"] - actual
        if not fc:
            continue
        for name, field in EDGE_APPROACHES.items():
            if isinstance(fc.get(field), int | float):
                out[name][i] = fc[field] - actual
        b, s = fc.get("batch"), fc.get("speed")
        if isinstance(b, int | float) and isinstance(s, int | float):
            out["static"][i] = (1 - STATIC_SPEED_WEIGHT) * b + STATIC_SPEED_WEIGHT * s - actual
        for name in extra:
            if isinstance(fc.get(name), int | float):
                out[name][i] = fc[name] - actual
    return out


def accuracy(errors: dict[str, np.ndarray]) -> dict[str, dict[str, float | int]]:
    """RMSE and MAE per approach over the readings where every edge approach had a forecast."""
    common = np.isfinite(errors["dynamic"]) & np.isfinite(errors["batch"]) & np.isfinite(errors["speed"])
    out = {}
    for name, err in errors.items():
        mask = common & np.isfinite(err)
        e = err[mask]
        out[name] = {
            "rmse": round(float(np.sqrt(np.mean(e**2))), 4) if len(e) else None,
            "mae": round(float(np.mean(np.abs(e))), 4) if len(e) else None,
            "n": int(len(e)),
        }
    return out


def rolling_rmse(err: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(err), np.nan)
    sq = np.where(np.isfinite(err), err**2, 0.0)
    ok = np.isfinite(err).astype(float)
    csum, ccount = np.concatenate([[0], np.cumsum(sq)]), np.concatenate([[0], np.cumsum(ok)])
    for i in range(len(err)):
        lo = max(0, i + 1 - window)
        n = ccount[i + 1] - ccount[lo]
        if n >= max(1, window // 4):
            out[i] = math.sqrt((csum[i + 1] - csum[lo]) / n)
    return out


def percentiles(values: list[float], *qs: int) -> dict[str, float | None]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    return {f"p{q}": (round(float(np.percentile(arr, q)), 3) if len(arr) else None) for q in qs}
