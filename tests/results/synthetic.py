"""A synthetic edge run: prediction records as the edge emits them, and the forecasts objects its windows carry."""

from __future__ import annotations

import math
import random
from typing import Any

from model_contract.forecasts import encode_lines
from model_contract.layout import forecasts_key

T0 = 1484352000.0  # 2017-01-14T00:00:00Z


def _ts(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def edge_run(devices=("turbine-1", "turbine-2"), n: int = 300, horizon: int = 1, seed: int = 1) -> list[dict]:
    """Prediction records (the edge's shape): per reading its actual and the forecasts of the reading
    ``horizon`` ahead; none for the first two readings of a device (the lag window filling)."""
    rnd = random.Random(seed)
    out = []
    for d, device in enumerate(devices):
        level = 40.0 + d
        for i in range(n):
            epoch = T0 + 600 * i
            level += rnd.gauss(0, 0.3)
            fc = None
            if i >= 2:
                fc = {
                    "batch": level + rnd.gauss(0, 0.4),
                    "speed": level + rnd.gauss(0, 0.35),
                    "hybrid": level + rnd.gauss(0, 0.3),
                }
            ts = _ts(epoch)
            out.append(
                {
                    "key": f"{device}|{ts}",
                    "device": device,
                    "timestamp": ts,
                    "epoch": epoch,
                    "actual": level,
                    "forecast": fc,
                    "models": {"batch": "b1", "speed": f"s{i // 100}"},
                    "horizon": horizon,
                }
            )
    return out


def forecasts_records(preds: list[dict]) -> list[dict[str, Any]]:
    """What the edge spools for each reading: the forecasts made for it (``horizon`` records back)."""
    from edge_app.forecasts import utc_text

    out = []
    by_device: dict[str, list[dict]] = {}
    for p in preds:
        by_device.setdefault(p["device"], []).append(p)
    for rows in by_device.values():
        for i, p in enumerate(rows):
            h = p["horizon"]
            made = rows[i - h]["forecast"] if i >= h else None
            out.append(
                {
                    "timestamp": p["timestamp"],
                    "epoch": p["epoch"],
                    "time_utc": utc_text(p["epoch"]),
                    "device": p["device"],
                    "target": "Ot_avg",
                    "actual": p["actual"],
                    "batch": made and made["batch"],
                    "speed": made and made["speed"],
                    "dynamic": made and made["hybrid"],
                    "model_batch": made and "b1",
                    "model_speed": made and rows[i - h]["models"]["speed"],
                    "horizon": h,
                }
            )
    return out


def window_objects(thing: str, records: list[dict], size: int = 100, replay: int = 5) -> dict[str, bytes]:
    """Forecasts objects as the edge uploads them: windows of ``size`` readings per device; the first
    ``replay`` readings of each window after the first are also at the end of the previous one (a crash replay)."""
    out = {}
    by_device: dict[str, list[dict]] = {}
    for r in records:
        by_device.setdefault(r["device"], []).append(r)
    for device, rows in by_device.items():
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size + (replay if start + size < len(rows) else 0)]
            stamp = chunk[0]["time_utc"].replace("-", "").replace(" ", "T").replace(":", "")[:15] + "Z"
            wid = f"{device}.abcdef_{stamp}_{len(chunk)}"
            out[forecasts_key(thing, wid)] = encode_lines(chunk)
    return out


def demo_rmse(preds: list[dict]) -> dict[str, float]:
    """The demo report's RMSEs for these prediction records (hybridstream.demo.results)."""
    from hybridstream.demo.results import accuracy, error_series, unique_predictions

    acc = accuracy(error_series(unique_predictions(preds)))
    return {k: v["rmse"] for k, v in acc.items() if not (isinstance(v["rmse"], float) and math.isnan(v["rmse"]))}
