"""Replay combiners over cached prediction streams, as the edge would run them, and score them.

Per row: ``predict_one(batch, speed, window)`` gives the hybrid forecast, then the truth arrives and
``learn_one(batch, speed, y, context)`` updates the combiner; a change of speed model calls
``reset_speed()`` first. A combiner that reads the lag window (``context``) gets the stream's
readings through a :class:`~model_contract.FeatureBuffer` (:func:`~hybridstream.evaluation.streams.readings`).

>>> import numpy as np
>>> from hybridstream.evaluation.streams import PredictionStream, drift_tag
>>> y = np.sin(np.arange(400) / 10.0)
>>> s = PredictionStream("toy", 100, 0, y, y + 0.5, y + 0.1, np.zeros(400, dtype=np.int32))
>>> r = replay_combiner(s, {"strategy": "dynamic", "method": "inverse_mse", "half_life": 10})
>>> round(r.rmse(), 2) < 0.15, bool(r.speed_weight[-1] > 0.9)
(True, True)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.combiners import make_combiner
from hybridstream.evaluation.streams import PredictionStream, drift_tag, readings
from model_contract import FeatureBuffer, FeatureSpec

# label -> combiner config: the study's candidates (baselines first)
BASELINES: dict[str, dict] = {
    "batch": {"strategy": "batch"},
    "speed": {"strategy": "speed"},
    "static 0.3 (prototype)": {"strategy": "static", "speed_weight": 0.3},
}


def candidate_grid() -> dict[str, dict]:
    """Every dynamic method with a few hyperparameters each (about 50 configs)."""
    grid: dict[str, dict] = {}
    dyn = {"strategy": "dynamic"}
    for hl in (6, 24, 96, 384):
        grid[f"inverse_mse hl={hl}"] = dyn | {"method": "inverse_mse", "half_life": hl}
    for hl in (24, 96):
        grid[f"inverse_mse hl={hl} reset"] = dyn | {"method": "inverse_mse", "half_life": hl, "on_swap": "reset"}
    for size in (24, 96, 384):
        grid[f"sliding_mse n={size}"] = dyn | {"method": "sliding_mse", "size": size}
    for eta in (0.1, 0.5, 2.0):
        for hl in (6, 12, 24, 96):
            grid[f"hedge eta={eta} hl={hl}"] = dyn | {"method": "hedge", "eta": eta, "half_life": hl}
    for eta in (0.01, 0.05, 0.2, 0.5, 1.0, 2.0):
        grid[f"eg eta={eta}"] = dyn | {"method": "eg", "eta": eta}
    for hl in (5, 10, 20, 50, 200, 1000):
        grid[f"stacking hl={hl}"] = dyn | {"method": "stacking", "half_life": hl}
        grid[f"stacking hl={hl} unclipped"] = dyn | {"method": "stacking", "half_life": hl, "clip": False}
    grid["eg eta=0.2 reset"] = dyn | {"method": "eg", "eta": 0.2, "on_swap": "reset"}
    grid["stacking hl=5 reset"] = dyn | {"method": "stacking", "half_life": 5, "on_swap": "reset"}
    for hl in (24, 96):
        grid[f"ftl hl={hl}"] = dyn | {"method": "ftl", "half_life": hl}
    for hl in (300, 1000, 3000):
        grid[f"context hl={hl}"] = dyn | {"method": "context", "half_life": hl}
    return grid


def all_candidates() -> dict[str, dict]:
    return BASELINES | candidate_grid()


@dataclass
class CombinerReplay:
    """Hybrid forecasts and speed weights per row (NaN where the stream has no forecast)."""

    hybrid: np.ndarray
    speed_weight: np.ndarray
    y: np.ndarray
    us_per_record: float

    def errors(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        e = (self.hybrid - self.y)[lo:hi]
        return e[np.isfinite(e)]

    def rmse(self, lo: int = 0, hi: int | None = None) -> float:
        e = self.errors(lo, hi)
        return float(np.sqrt(np.mean(e * e))) if len(e) else math.nan

    def mae(self, lo: int = 0, hi: int | None = None) -> float:
        e = self.errors(lo, hi)
        return float(np.mean(np.abs(e))) if len(e) else math.nan


def _windows(stream: PredictionStream) -> tuple[np.ndarray, FeatureSpec]:
    """The lag window before each row of the stream (NaN while it fills), and the readings' spec."""
    matrix, spec = readings(stream)
    buf = FeatureBuffer(spec)
    out = np.full((len(stream), *spec.input_shape), np.nan)
    for t in range(len(stream)):
        if buf.ready:
            out[t] = buf.window
        buf.push_row(matrix[t])
    return out, spec


def _replay_windowed(stream: PredictionStream, config: Mapping) -> CombinerReplay:
    """:func:`replay_combiner` for a combiner that reads the lag window: the edge's calls, horizon 1."""
    windows, spec = _windows(stream)
    combiner = make_combiner(config, spec=spec)
    n = len(stream)
    hybrid = np.full(n, np.nan)
    ws = np.full(n, np.nan)
    ys, bs, ss, ids = stream.y.tolist(), stream.batch.tolist(), stream.speed.tolist(), stream.speed_id.tolist()
    last_id = -1
    count = 0
    started = time.perf_counter()
    for t in range(n):
        b = bs[t]
        s = ss[t]
        window = windows[t]
        if b != b or s != s or window[0, 0] != window[0, 0]:  # no forecast for this row (or no window yet)
            continue
        if ids[t] != last_id:
            last_id = ids[t]
            combiner.reset_speed()
        hybrid[t] = combiner.predict_one(b, s, window)
        ws[t] = combiner.weights[1]
        combiner.learn_one(b, s, ys[t], combiner.context())
        count += 1
    elapsed = time.perf_counter() - started
    return CombinerReplay(hybrid, ws, stream.y, 1e6 * elapsed / max(count, 1))


def replay_combiner(stream: PredictionStream, config: Mapping) -> CombinerReplay:
    """Run one combiner (built by the edge's own ``make_combiner``) over a stream."""
    combiner = make_combiner(config)
    if combiner.uses_window:
        return _replay_windowed(stream, config)
    n = len(stream)
    hybrid = np.full(n, np.nan)
    ws = np.full(n, np.nan)
    ys = stream.y.tolist()
    bs = stream.batch.tolist()
    ss = stream.speed.tolist()
    ids = stream.speed_id.tolist()
    last_id = -1
    out_h = [math.nan] * n
    out_w = [math.nan] * n
    started = time.perf_counter()
    count = 0
    for t in range(n):
        b = bs[t]
        s = ss[t]
        if b != b or s != s:  # NaN: no forecast for this row
            continue
        if ids[t] != last_id:
            last_id = ids[t]
            combiner.reset_speed()
        out_h[t] = combiner.predict_one(b, s)
        out_w[t] = combiner.weights[1]
        combiner.learn_one(b, s, ys[t])
        count += 1
    elapsed = time.perf_counter() - started
    hybrid[:] = out_h
    ws[:] = out_w
    return CombinerReplay(hybrid, ws, stream.y, 1e6 * elapsed / max(count, 1))


def cost_us(config: Mapping, stream: PredictionStream, repeat: int = 3) -> float:
    """Median µs per record of ``predict_one`` + ``weights`` + ``learn_one`` alone (no bookkeeping)."""
    if make_combiner(config).uses_window:
        windows, spec = _windows(stream)
        ok = stream.valid & np.isfinite(windows[:, 0, 0])
        columns = (stream.batch[ok].tolist(), stream.speed[ok].tolist(), stream.y[ok].tolist(), windows[ok])
        data = list(zip(*columns, strict=True))
        times = []
        for _ in range(repeat):
            c = make_combiner(config, spec=spec)
            predict, learn, context = c.predict_one, c.learn_one, c.context
            started = time.perf_counter()
            for b, s, y, w in data:
                predict(b, s, w)
                c.weights  # noqa: B018
                learn(b, s, y, context())
            times.append((time.perf_counter() - started) / max(len(data), 1))
        return 1e6 * float(np.median(times))
    ok = stream.valid
    data = list(zip(stream.batch[ok].tolist(), stream.speed[ok].tolist(), stream.y[ok].tolist(), strict=True))
    times = []
    for _ in range(repeat):
        c = make_combiner(config)
        predict, learn = c.predict_one, c.learn_one
        started = time.perf_counter()
        for b, s, y in data:
            predict(b, s)
            c.weights  # noqa: B018  (the edge reads them for every prediction record)
            learn(b, s, y)
        times.append((time.perf_counter() - started) / max(len(data), 1))
    return 1e6 * float(np.median(times))


def best_constant_weight(stream: PredictionStream, lo: int = 0, hi: int | None = None) -> tuple[float, float]:
    """The constant speed weight with the lowest RMSE in hindsight on rows [lo, hi): (weight, rmse)."""
    ok = stream.valid.copy()
    ok[:lo] = False
    if hi is not None:
        ok[hi:] = False
    b, s, y = stream.batch[ok], stream.speed[ok], stream.y[ok]
    d = s - b
    denom = float(np.dot(d, d))
    w = float(np.clip(np.dot(y - b, d) / denom, 0.0, 1.0)) if denom > 0 else 0.0
    e = b + w * d - y
    return w, float(np.sqrt(np.mean(e * e)))


def rolling_rmse(errors: np.ndarray, size: int = 500) -> np.ndarray:
    """RMSE over the trailing ``size`` rows (NaN rows count as missing)."""
    sq = np.where(np.isfinite(errors), errors * errors, 0.0)
    cnt = np.isfinite(errors).astype(float)
    c1 = np.concatenate([[0.0], np.cumsum(sq)])
    c2 = np.concatenate([[0.0], np.cumsum(cnt)])
    idx = np.arange(1, len(errors) + 1)
    lo = np.maximum(idx - size, 0)
    n = c2[idx] - c2[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt((c1[idx] - c1[lo]) / n)
    out[n < size / 2] = np.nan  # too few rows yet
    return out


def score(streams: Iterable[PredictionStream], candidates: Mapping[str, Mapping]) -> dict:
    """RMSE/MAE of every candidate on every stream: overall, first half (tune), second half (test).

    Returns ``{stream key: {"rows": n, "candidates": {label: metrics}, "oracle": {...}}}``.
    """
    out: dict = {}
    for stream in streams:
        on_drift = stream.meta.get("on_drift")
        tag = drift_tag(on_drift)
        key = f"{stream.scenario}-w{stream.window}-d{stream.delay}{tag}"
        timed = not out  # cost once, on the first stream
        half = len(stream) // 2
        rows: dict = {}
        for label, cfg in candidates.items():
            r = replay_combiner(stream, cfg)
            rows[label] = {
                "rmse": r.rmse(),
                "mae": r.mae(),
                "rmse_first_half": r.rmse(0, half),
                "rmse_second_half": r.rmse(half),
                "mae_second_half": r.mae(half),
                "mean_speed_weight": float(np.nanmean(r.speed_weight)),
                "us_per_record": cost_us(cfg, stream) if timed else None,
            }
        baselines = {}
        for name, pred in getattr(stream, "baselines", {}).items():
            e = pred - stream.y
            ok = stream.valid & np.isfinite(e)
            first, second = ok.copy(), ok.copy()
            first[half:] = False
            second[:half] = False
            baselines[name] = {
                "rmse": float(np.sqrt(np.mean(e[ok] ** 2))),
                "mae": float(np.mean(np.abs(e[ok]))),
                "rmse_first_half": float(np.sqrt(np.mean(e[first] ** 2))),
                "rmse_second_half": float(np.sqrt(np.mean(e[second] ** 2))),
            }
        w_all, rmse_all = best_constant_weight(stream)
        w1, rmse1 = best_constant_weight(stream, 0, half)
        _, rmse2 = best_constant_weight(stream, half)
        out[key] = {
            "scenario": stream.scenario,
            "label": f"{stream.scenario} W={stream.window}"
            + (f" delay={stream.delay}" if stream.delay else "")
            + (" +drift retrain" if on_drift else "")
            + (f" ({tag.removeprefix('-drift-')})" if tag else ""),
            "window": stream.window,
            "delay": stream.delay,
            "rows": int(stream.valid.sum()),
            "speed_models": len(stream.meta.get("speed_models", [])),
            "early_models": sum(1 for m in stream.meta.get("speed_models", []) if m.get("early")),
            "half": half,
            "candidates": rows,
            "baselines": baselines,
            "oracle": {"weight": w_all, "rmse": rmse_all, "weight_first_half": w1, "rmse_second_half": rmse2},
        }
    return out


def select(scores: Mapping, pool: Iterable[str], part: str = "rmse_first_half") -> list[tuple[str, float, float]]:
    """Rank candidates by robustness: worst-case then mean regret (RMSE / best RMSE per stream).

    Returns ``[(label, worst regret, mean regret)]``, best first.
    """
    pool = list(pool)
    regrets: dict[str, list[float]] = {label: [] for label in pool}
    for entry in scores.values():
        cands = entry["candidates"]
        best = min(cands[label][part] for label in cands)
        for label in pool:
            regrets[label].append(cands[label][part] / best)
    ranked = [(label, max(r), sum(r) / len(r)) for label, r in regrets.items()]
    return sorted(ranked, key=lambda x: (round(x[1], 4), x[2]))


def default_label() -> str:
    """The candidate label of the current ``dynamic`` default."""
    from edge_app.combiners import DEFAULT_DYNAMIC  # noqa: PLC0415

    cfg = {"strategy": "dynamic"} | DEFAULT_DYNAMIC
    for label, c in candidate_grid().items():
        if c == cfg:
            return label
    raise RuntimeError(f"the default {cfg} is not among the study's candidates")


def run_study(
    streams: list[PredictionStream], out_dir: Path, tag: str, log: Callable[[str], None]
) -> tuple[str, list[tuple[str, float, float]], str]:
    """Score every candidate on ``streams``, rank them on the first halves, write ``combiners-<tag>.json``
    and ``.md`` into ``out_dir``; returns (the Markdown tables, the ranking, the current default's label)."""
    from hybridstream.evaluation import report  # noqa: PLC0415

    candidates = all_candidates()
    log(f"replaying {len(candidates)} combiners over {len(streams)} streams...")
    scores = score(streams, candidates)
    ranking = select(scores, candidate_grid())
    chosen = ranking[0][0]
    current = default_label()
    md = report.combiner_tables(scores, ranking, chosen, current)
    (out_dir / f"combiners-{tag}.json").write_text(
        json.dumps({"scores": scores, "ranking": ranking, "chosen": chosen, "default": current}, indent=1)
    )
    (out_dir / f"combiners-{tag}.md").write_text(md)
    log(f"wrote {out_dir}/combiners-{tag}.json and .md")
    return md, ranking, current
