"""Accuracy, latency and freshness from the records the edge app produced (nothing recomputed offline).

Each prediction record carries the actual value just observed and the forecasts of the reading
``horizon`` readings ahead (1, the next one, when the record has no ``horizon``): batch, speed,
hybrid = the dynamic blend, and any further approach the edge emits. A reading's error for an
approach is the forecast of the record ``horizon`` readings before it minus this record's actual.
``static`` is the prototype's fixed 0.3 speed / 0.7 batch blend of the two forecasts in the
record; ``persistence`` forecasts the actual value of that earlier record (the truth stream's naive baseline).

The one approach computed offline is ``online_linear`` (:func:`online_linear_errors`): the
project's :class:`~model_contract.online_linear.OnlineLinear` run over the replayed readings
with the batch model's feature spec, exactly as ``hybridstream eval`` runs it
(:func:`hybridstream.evaluation.baselines.online_linear_forecasts`), unless the edge's records
already carry an ``online_linear`` forecast.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from model_contract import FeatureSpec, rows_to_matrix

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


def band_series(preds: list[dict[str, Any]], levels: tuple[str, ...] = ("0.8", "0.95")) -> dict[str, Any]:
    """Per reading: its actual, the hybrid forecast and the intervals the edge forecast for it (``horizon``
    records back, same device; NaN where none), and whether the edge flagged it (``anomaly``).

    >>> recs = [{"device": "d", "actual": 1.0, "horizon": 1, "forecast": {"hybrid": 2.0},
    ...          "interval": {"0.8": [1.5, 2.5], "0.95": [1.0, 3.0]}, "anomaly": None},
    ...         {"device": "d", "actual": 4.0, "horizon": 1, "forecast": None, "interval": None,
    ...          "anomaly": {"level": 0.95, "distance": 1.0, "run": 4}}]
    >>> b = band_series(recs); float(b["hybrid"][1]), float(b["hi"]["0.95"][1]), b["flagged"], b["coverage"]["0.95"]
    (2.0, 3.0, [1], 0.0)
    """
    n = len(preds)
    actual = np.array([p["actual"] if isinstance(p.get("actual"), int | float) else np.nan for p in preds])
    hybrid = np.full(n, np.nan)
    lo = {k: np.full(n, np.nan) for k in levels}
    hi = {k: np.full(n, np.nan) for k in levels}
    for j, p in enumerate(preds):
        i = j + int(p.get("horizon") or 1)  # the reading this record's forecast and interval are for
        if i >= n or preds[i].get("device") != p.get("device"):
            continue
        fc, iv = p.get("forecast") or {}, p.get("interval") or {}
        if isinstance(fc.get("hybrid"), int | float):
            hybrid[i] = fc["hybrid"]
        for k in levels:
            if isinstance(iv.get(k), list) and len(iv[k]) == 2:
                lo[k][i], hi[k][i] = iv[k]
    coverage = {}
    for k in levels:
        ok = np.isfinite(actual) & np.isfinite(lo[k])
        inside = (actual[ok] >= lo[k][ok]) & (actual[ok] <= hi[k][ok])
        coverage[k] = float(inside.mean()) if ok.any() else None
    flagged = [i for i, p in enumerate(preds) if p.get("anomaly")]
    return {"actual": actual, "hybrid": hybrid, "lo": lo, "hi": hi, "flagged": flagged, "coverage": coverage}


def reading_key(reading: dict[str, Any], spec: FeatureSpec) -> str:
    """The key the edge gives a reading's prediction record: ``device|timestamp``."""
    return f"{reading.get(spec.device_column)}|{reading.get(spec.timestamp_column)}"


def online_linear_errors(
    preds: list[dict[str, Any]],
    readings: list[dict[str, Any]],
    spec: FeatureSpec,
    warmup: np.ndarray | None = None,
) -> np.ndarray:
    """Per prediction record: the online linear forecast of its reading minus its actual (NaN where none).

    ``readings`` are the clean readings as replayed (dicts, stream order); each device's are
    streamed through :func:`~hybridstream.evaluation.baselines.online_linear_forecasts` (the
    :class:`~model_contract.FeatureBuffer` window of ``spec``, a forecast ``spec.horizon``
    readings ahead, each truth learnt when it arrives). ``warmup`` (a features matrix, e.g. the
    batch model's history) is streamed first, unscored, for every device.
    """
    from hybridstream.evaluation.baselines import online_linear_forecasts  # noqa: PLC0415

    by_device: dict[Any, list[dict[str, Any]]] = {}
    for reading in readings:
        by_device.setdefault(reading.get(spec.device_column), []).append(reading)
    forecast: dict[str, float] = {}
    for rows in by_device.values():
        fc, _ = online_linear_forecasts(rows_to_matrix(rows, spec), spec, warmup=warmup)
        forecast.update((reading_key(r, spec), float(f)) for r, f in zip(rows, fc, strict=True) if math.isfinite(f))
    out = np.full(len(preds), np.nan)
    for i, rec in enumerate(preds):
        f, actual = forecast.get(str(rec.get("key"))), rec.get("actual")
        if f is not None and isinstance(actual, int | float):
            out[i] = f - actual
    return out


def with_online_linear(
    errors: dict[str, np.ndarray],
    preds: list[dict[str, Any]],
    readings: list[dict[str, Any]],
    spec: FeatureSpec | None,
    warmup: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``errors`` plus ``online_linear`` computed offline, unless the edge's records carried it (or no spec)."""
    if spec is None or np.isfinite(errors.get("online_linear", np.full(1, np.nan))).any():
        return errors
    return {**errors, "online_linear": online_linear_errors(preds, readings, spec, warmup)}


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


# ---- one scenario's summary ----------------------------------------------------------------------
@dataclass
class Observed:
    """What one scenario's run saw: the records it collected and what it measured while it ran."""

    predictions: list[dict[str, Any]]  # every prediction record as received (replays included)
    predicted_keys: set[str]  # distinct prediction keys (device|timestamp)
    replayed: int  # prediction records of a key seen before
    deadletter: list[dict[str, Any]]
    events: list[dict[str, Any]]  # the edge's events (drift, window uploaded, model swapped/rejected, ...)
    swaps: list[tuple[float, str]]  # (when, version) of each speed model that started serving
    send_times: dict[str, float]  # key -> when its reading was produced (epoch seconds)
    began: float  # when the replay began (epoch seconds)
    crash: dict[str, Any]  # the SIGKILL and restart, if the scenario has one
    models: tuple[int, int]  # speed models (published, refused) in the models bucket
    exit_code: int | None  # the edge app's at the end
    freshness: list[float]  # seconds from a window's upload to its model serving, per swap
    collector_error: str | None = None

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]


def summarise(scenario: Any, seen: Observed, spec: FeatureSpec | None, warmup: np.ndarray | None):
    """One scenario's figures for results.json and its series for the report's plots: ``(result, series)``.

    ``scenario`` is a :class:`hybridstream.demo.scenarios.Scenario`; ``spec`` and ``warmup`` feed the
    offline ``online_linear`` row (None: the row is missing).
    """
    preds = unique_predictions(seen.predictions)
    errors = error_series(preds)
    baseline_error = None
    try:
        readings = [json.loads(m.value) for m in scenario.messages if m.key is not None]
        errors = with_online_linear(errors, preds, readings, spec, warmup)
    except Exception as exc:  # a missing baseline row must not cost the run's other figures
        baseline_error = f"{type(exc).__name__}: {exc}"
    approaches = accuracy(errors)
    latency, kafka_in, app_us = [], [], []
    for rec in preds:
        sent_at = seen.send_times.get(rec.get("key"))
        if sent_at is not None and rec.get("_ts_ms"):
            latency.append(rec["_ts_ms"] - sent_at * 1000)
        if isinstance(rec.get("lag_ms"), int | float):
            kafka_in.append(float(rec["lag_ms"]))
        if isinstance(rec.get("latency_us"), int | float):
            app_us.append(rec["latency_us"] / 1000)
    expected_keys = {m.key for m in scenario.messages if m.key is not None}
    index = {rec["key"]: i for i, rec in enumerate(preds)}
    drift_rows = [index.get(f"{e.get('device')}|{e.get('timestamp')}") for e in seen.events_of("drift")]
    swap_rows, last = [], None
    for i, rec in enumerate(preds):
        version = (rec.get("models") or {}).get("speed")
        if last is not None and version != last:
            swap_rows.append(i)
        last = version
    result = {
        "approaches": {k: {"rmse": v["rmse"], "mae": v["mae"]} for k, v in approaches.items()},
        "readings": scenario.clean,
        "predicted": len(expected_keys & seen.predicted_keys),
        "model_swaps": len(seen.swaps),
        "deadletter": len(seen.deadletter),
        "latency_ms": percentiles(latency, 50, 99),
        "model_freshness_s": freshness_summary(seen.freshness),
        "unpredicted": len(expected_keys - seen.predicted_keys),
        "malformed_sent": scenario.malformed,
        "replayed": seen.replayed,
        "scored_readings": approaches["dynamic"]["n"],
        "models_published": seen.models[0],
        "models_refused": seen.models[1],
        "models_rejected_by_edge": len(seen.events_of("model_rejected")),
        "windows_uploaded": len(seen.events_of("window_uploaded")),
        "drift_events": len(drift_rows),
        "deadletter_reasons": reasons(seen.deadletter),
        "latency_stages_ms": {
            "reading_to_prediction": percentiles(latency, 50, 90, 99),
            "kafka_to_edge_loop": percentiles(kafka_in, 50, 90, 99),
            "edge_processing": percentiles(app_us, 50, 90, 99),
        },
        "edge_exit_code": seen.exit_code,
        "seconds": round(time.time() - seen.began, 1),
        "description": scenario.description,
    }
    band = band_series(preds)
    result["interval_coverage"] = band["coverage"]  # of the dynamic forecast's intervals, from the records
    result["anomalies"] = len(band["flagged"])
    if seen.crash:
        result["crash"] = seen.crash
    if baseline_error:
        result["online_linear_error"] = baseline_error
    if seen.collector_error:
        result["collector_error"] = seen.collector_error
    series = {
        "errors": errors,
        "weights": [((r.get("weights") or {}).get("speed")) for r in preds],
        "swap_rows": swap_rows,
        "drift_rows": [r for r in drift_rows if r is not None],
        "change_points": list(scenario.change_points),
        "latency": {"reading_to_prediction": latency, "kafka_to_edge_loop": kafka_in, "edge_processing": app_us},
        "freshness": seen.freshness,
        "band": band,  # the forecast with its intervals and the flagged readings (report plot)
    }
    return result, series


def freshness_summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None}
    return {"p50": percentiles(values, 50)["p50"], "max": round(max(values), 3)}


def reasons(records: list[dict[str, Any]]) -> dict[str, int]:
    """Dead letters per reason."""
    out: dict[str, int] = {}
    for r in records:
        out[str(r.get("reason"))] = out.get(str(r.get("reason")), 0) + 1
    return out
