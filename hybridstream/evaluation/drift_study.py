"""Compare drift detectors on residual streams: detection delay, false alarms, cost per update.

Three kinds of evidence:

* **controlled injections** into a real residual stream (the hybrid residuals of the
  no-drift scenario): a bias step of ``k`` residual RMSEs, or a doubled spread, on
  ``[cp, cp + length)`` at known change points; delay = rows from ``cp`` to the first alarm
  within the segment, a miss if none; alarms outside the segments are counted too (the
  real residuals are not stationary: some of those alarms are genuine changes);
* **model-level scenarios**: the ``step`` scenario (every column shifted at known rows,
  streamed through the real models), and the ``gradual``/``abrupt`` files (alarm rates);
* **stationary noise** (Gaussian and Student-t with 3 degrees of freedom, fixed seed):
  every alarm is false.

>>> import numpy as np
>>> alarms = run_detector({"detector": "cusum"}, np.r_[np.zeros(500) + 0.1 * (np.arange(500) % 3), np.full(500, 2.0)])
>>> alarms[:1]
[500]
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge_app.drift import make_detector

CANDIDATES: dict[str, dict] = {
    "adwin d=2e-3 clock=32 (river)": {"detector": "adwin", "delta": 0.002, "clock": 32},
    "adwin d=2e-3": {"detector": "adwin", "delta": 0.002},
    "adwin d=2e-4": {"detector": "adwin", "delta": 0.0002},
    "adwin d=2e-5": {"detector": "adwin", "delta": 0.00002},
    "adwin d=2e-3 both": {"detector": "adwin", "delta": 0.002, "direction": "both"},
    "ph thr=10": {"detector": "ph", "threshold": 10.0},
    "ph thr=25": {"detector": "ph", "threshold": 25.0},
    "ph thr=50": {"detector": "ph", "threshold": 50.0},
    "kswin a=5e-3": {"detector": "kswin", "alpha": 0.005},
    "kswin a=1e-4": {"detector": "kswin", "alpha": 0.0001},
    "kswin a=1e-6 w=300": {"detector": "kswin", "alpha": 1e-6, "window_size": 300, "stat_size": 50},
    "cusum h=5": {"detector": "cusum", "h": 5.0},
    "cusum h=10": {"detector": "cusum", "h": 10.0},
    "cusum h=20": {"detector": "cusum", "h": 20.0},
}

CHANGE_POINTS = (5_000, 15_000, 25_000)
SEGMENT = 3_000  # rows each injected change lasts
MAX_DELAY = 2_000  # an alarm later than this after a change point is a miss


def run_detector(config: Mapping, residuals: np.ndarray) -> list[int]:
    """Rows at which the detector fires (NaN residuals are skipped)."""
    det = make_detector(config)
    update = det.update
    return [t for t, r in enumerate(residuals.tolist()) if r == r and update(r)]


def cost_us(config: Mapping, residuals: np.ndarray, repeat: int = 3) -> float:
    """Median microseconds per ``update`` over the stream."""
    data = [r for r in residuals.tolist() if r == r]
    times = []
    for _ in range(repeat):
        det = make_detector(config)
        update = det.update
        started = time.perf_counter()
        for r in data:
            update(r)
        times.append((time.perf_counter() - started) / len(data))
    return 1e6 * float(np.median(times))


def inject(residuals: np.ndarray, kind: str, size: float, points: Sequence[int] = CHANGE_POINTS, length: int = SEGMENT):
    """A copy of ``residuals`` with a change on each ``[cp, cp + length)``.

    ``kind="bias"`` adds ``size`` times the residual RMSE; ``kind="spread"`` multiplies by ``size``.

    >>> inject(np.ones(10), "spread", 2.0, points=(2,), length=3).tolist()
    [1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    out = residuals.copy()
    rmse = float(np.sqrt(np.nanmean(residuals**2)))
    for cp in points:
        if kind == "bias":
            out[cp : cp + length] += size * rmse
        elif kind == "spread":
            out[cp : cp + length] *= size
        else:
            raise ValueError("kind must be 'bias' or 'spread'")
    return out


def delays(alarms: Sequence[int], points: Sequence[int], max_delay: int = MAX_DELAY) -> list[int | None]:
    """Per change point: rows to the first alarm at or after it (None: missed).

    >>> delays([120, 900, 5010], [100, 5000])
    [20, 10]
    """
    out: list[int | None] = []
    for cp in points:
        hit = next((a - cp for a in alarms if cp <= a < cp + max_delay), None)
        out.append(hit)
    return out


def false_alarms(alarms: Sequence[int], points: Sequence[int], n: int, length: int = SEGMENT) -> float:
    """Alarms outside every ``[cp, cp + length)``, per 10,000 rows."""
    outside = [a for a in alarms if not any(cp <= a < cp + length for cp in points)]
    covered = min(n, len(points) * length)
    return 1e4 * len(outside) / max(n - covered, 1)


def _summary(ds: list[int | None]) -> dict:
    hits = [d for d in ds if d is not None]
    return {
        "delays": ds,
        "detected": len(hits),
        "changes": len(ds),
        "mean_delay": float(np.mean(hits)) if hits else None,
    }


def study(
    residual_streams: Mapping[str, np.ndarray],
    step_points: Sequence[int],
    candidates: Mapping[str, Mapping] = CANDIDATES,
    seed: int = 7,
    log=print,
) -> dict:
    """Run every candidate on every kind of evidence.

    ``residual_streams`` maps ``"<scenario>/<model>"`` (model = hybrid, batch or speed) to
    signed residuals; ``none/hybrid`` is the base of the controlled injections and
    ``step/*`` carry the change points ``step_points``.
    """
    base = residual_streams["none/hybrid"]
    n = len(base)
    rng = np.random.default_rng(seed)
    noise = {"gauss": rng.normal(0.0, 1.0, n), "student-t3": rng.standard_t(3, n)}
    injections = {
        "bias +1 rmse": inject(base, "bias", 1.0),
        "bias +2 rmse": inject(base, "bias", 2.0),
        "spread x2": inject(base, "spread", 2.0),
    }
    results: dict = {}
    for label, cfg in candidates.items():
        log(f"  drift: {label}")
        row: dict = {"config": dict(cfg), "us_per_update": cost_us(cfg, base)}
        row["injected"] = {}
        for name, res in injections.items():
            alarms = run_detector(cfg, res)
            row["injected"][name] = _summary(delays(alarms, CHANGE_POINTS)) | {
                "false_per_10k": false_alarms(alarms, CHANGE_POINTS, n)
            }
        row["noise_false_per_10k"] = {k: 1e4 * len(run_detector(cfg, v)) / len(v) for k, v in noise.items()}
        row["streams"] = {}
        for key, res in residual_streams.items():
            alarms = run_detector(cfg, res)
            entry = {"alarms": alarms, "alarms_per_10k": 1e4 * len(alarms) / int(np.isfinite(res).sum())}
            if key.startswith("step/"):
                entry |= _summary(delays(alarms, step_points))
            row["streams"][key] = entry
        results[label] = row
    return results


def rank(results: Mapping, max_false: float = 1.0, max_us: float = 3.0) -> list[tuple[str, int, float, float, float]]:
    """Detectors with at most ``max_false`` alarms per 10k rows on both stationary noises and at
    most ``max_us`` µs per update (the edge's per-record budget), ranked by injected changes
    missed, then mean delay: ``[(label, missed, mean delay, noise false/10k, alarms/10k on the
    real no-drift hybrid residuals)]``."""
    ranked = []
    for label, row in results.items():
        noise = max(row["noise_false_per_10k"].values())
        if noise > max_false or row["us_per_update"] > max_us:
            continue
        inj = list(row["injected"].values())
        missed = sum(r["changes"] - r["detected"] for r in inj)
        hits = [d for r in inj for d in r["delays"] if d is not None]
        mean_delay = float(np.mean(hits)) if hits else float("inf")
        nuisance = row["streams"].get("none/hybrid", {}).get("alarms_per_10k", float("nan"))
        ranked.append((label, missed, mean_delay, noise, nuisance))
    return sorted(ranked, key=lambda x: (x[1], x[2]))


def residuals_of(streams: Sequence) -> dict[str, np.ndarray]:
    """``"<scenario>/<model>"`` -> signed residuals of the hybrid (the default dynamic combiner), batch and speed
    forecasts of each prediction stream."""
    from hybridstream.evaluation.combiner_study import replay_combiner  # noqa: PLC0415

    out = {}
    for s in streams:
        out[f"{s.scenario}/hybrid"] = replay_combiner(s, {"strategy": "dynamic"}).hybrid - s.y
        out[f"{s.scenario}/batch"] = s.batch - s.y
        out[f"{s.scenario}/speed"] = s.speed - s.y
    return out


def default_label() -> str:
    """The candidate label of the edge's default detector."""
    from edge_app.drift import DEFAULT_DETECTOR  # noqa: PLC0415

    return next(label for label, cfg in CANDIDATES.items() if cfg == DEFAULT_DETECTOR)


def write_results(out_dir: Path, tag: str, results: Mapping, ranking: Sequence, current: str, md: str) -> None:
    """``drift-<tag>.json`` (every figure but the alarm rows) and ``drift-<tag>.md`` into ``out_dir``."""
    slim = {
        label: row
        | {"streams": {k: {kk: vv for kk, vv in v.items() if kk != "alarms"} for k, v in row["streams"].items()}}
        for label, row in results.items()
    }
    (out_dir / f"drift-{tag}.json").write_text(
        json.dumps({"results": slim, "ranking": ranking, "default": current}, indent=1)
    )
    (out_dir / f"drift-{tag}.md").write_text(md)
