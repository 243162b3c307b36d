"""Plots of a combiner study: rolling RMSE per approach and the speed weight over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hybridstream.evaluation.combiner_study import CombinerReplay, rolling_rmse
from hybridstream.evaluation.streams import PredictionStream

CREDIT = "Data: turbine SCADA (ENGIE La Haute Borne columns) via the Hybrid-Streaming-Analytics prototype"


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(plt, fig, path: str | Path, top: float = 1.0) -> Path:
    """The data credit, a tight layout, the PNG written (folders made), the figure closed."""
    fig.text(0.01, 0.005, CREDIT, fontsize=6.5, color="grey")
    fig.tight_layout(rect=(0, 0.02, 1, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_scenario(
    stream: PredictionStream,
    results: Mapping[str, CombinerReplay],
    path: str | Path,
    roll: int = 1000,
    weight_labels: Sequence[str] = (),
    title: str = "",
) -> Path:
    """Two panels: rolling RMSE of each approach; speed weight of the dynamic ones. Speed-model
    swaps are the faint vertical lines."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, height_ratios=(3, 2))
    x = np.arange(len(stream))
    styles = ["-", "--", "-.", ":"]
    for i, (label, r) in enumerate(results.items()):
        ax1.plot(x, rolling_rmse(r.hybrid - r.y, roll), styles[i % 4], lw=1.4 if i > 2 else 1.1, label=label)
    ax1.set_ylabel(f"rolling RMSE ({roll} rows), °C")
    ax1.set_yscale("log")
    ax1.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=8, ncol=2, loc="upper left")
    for label in weight_labels:
        if label in results:
            ws = results[label].speed_weight
            smooth = np.convolve(np.nan_to_num(ws, nan=0.0), np.ones(300) / 300, mode="same")
            ax2.plot(x, smooth, lw=1.1, label=f"{label} (300-row mean)")
    ax2.set_ylabel("speed-model weight")
    lines = [ln.get_ydata() for ln in ax2.get_lines()]
    if lines and all(np.nanmin(v) >= 0.0 and np.nanmax(v) <= 1.0 for v in lines if np.isfinite(v).any()):
        ax2.set_ylim(-0.02, 1.02)  # convex blends; context stacking's coefficients are not bounded to [0, 1]
    ax2.set_xlabel("row of the test stream (10-minute readings)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper left")
    swaps = np.flatnonzero(np.diff(stream.speed_id) != 0) + 1
    for ax in (ax1, ax2):
        for s in swaps:
            ax.axvline(s, color="grey", lw=0.4, alpha=0.3)
        for cp in stream.meta.get("change_points", []):
            ax.axvline(cp, color="red", lw=1.0, ls="--", alpha=0.7)
    fig.suptitle(title or f"scenario {stream.scenario}, window {stream.window} rows", fontsize=11)
    return _save(plt, fig, path)


def plot_drift(
    residuals: Mapping[str, np.ndarray],
    alarms: Mapping[str, Mapping[str, Sequence[int]]],
    path: str | Path,
    change_points: Sequence[int] = (),
    roll: int = 200,
) -> Path:
    """Per residual stream: rolling mean |residual| with each detector's alarms as ticks."""
    plt = _plt()
    keys = list(residuals)
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 1.9 * len(keys) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys, strict=True):
        r = np.abs(residuals[key])
        ok = np.isfinite(r)
        c = np.concatenate([[0.0], np.cumsum(np.where(ok, r, 0.0))])
        k = np.concatenate([[0.0], np.cumsum(ok)])
        idx = np.arange(1, len(r) + 1)
        lo = np.maximum(idx - roll, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ax.plot(idx - 1, (c[idx] - c[lo]) / (k[idx] - k[lo]), color="black", lw=0.8)
        ax.set_ylabel(f"{key}\n|res| ({roll})", fontsize=8)
        top = ax.get_ylim()[1]
        for j, (det, per_key) in enumerate(alarms.items()):
            a = per_key.get(key, [])
            ax.plot(a, [top * (0.97 - 0.08 * j)] * len(a), "|", ms=7, label=det)
        for cp in change_points:
            if key.startswith("step/"):
                ax.axvline(cp, color="red", ls="--", lw=1.0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=len(alarms), loc="upper center", title="alarms (ticks) of")
    axes[-1].set_xlabel("row of the test stream")
    return _save(plt, fig, path, top=0.95)


def plot_run(result, path: str | Path, roll: int = 1000, title: str = "") -> Path:
    """Two panels for one ``eval run --save`` result: the rolling RMSE of each approach, and the
    dynamic blend's weight on the speed model (for context stacking: its coefficient on the speed
    model's forecast change). Speed-model swaps are the faint vertical lines."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, height_ratios=(3, 2))
    x = np.arange(len(result.y))
    styles = {"persistence": ":", "online_linear": "--", "dynamic": "-"}
    for name, f in result.forecasts.items():
        bold = name in ("dynamic", "online_linear", "persistence")
        ax1.plot(x, rolling_rmse(f - result.y, roll), styles.get(name, "-."), lw=1.6 if bold else 0.9, label=name)
    ax1.set_ylabel(f"rolling RMSE ({roll} rows), °C")
    ax1.set_yscale("log")
    ax1.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=8, ncol=3, loc="upper left")
    ws = np.nan_to_num(result.speed_weight, nan=0.0)
    ax2.plot(x, np.convolve(ws, np.ones(300) / 300, mode="same"), lw=1.1, label="dynamic (300-row mean)")
    ax2.axhline(0.0, color="grey", lw=0.5)
    ax2.set_ylabel("weight on the speed model")
    ax2.set_xlabel("row of the test stream")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper left")
    for m in result.speed_models:
        for ax in (ax1, ax2):
            ax.axvline(m["serves_from"], color="grey", lw=0.4, alpha=0.3)
    h = result.spec.horizon
    fig.suptitle(title or f"eval run: horizon {h}, a speed model every {result.window} rows", fontsize=11)
    return _save(plt, fig, path)


def plot_combiner_study(
    streams: Sequence[PredictionStream], ranking: Sequence, current: str, out_dir: str | Path
) -> list[Path]:
    """``plot_scenario`` per stream: the baselines, the default and the best two other families (by the ranking)."""
    from hybridstream.evaluation.combiner_study import all_candidates, replay_combiner  # noqa: PLC0415
    from hybridstream.evaluation.report import family  # noqa: PLC0415
    from hybridstream.evaluation.streams import drift_tag  # noqa: PLC0415

    others: list[str] = []
    for label, *_ in ranking:
        fam = family(label)
        if fam != family(current) and fam not in [family(o) for o in others]:
            others.append(label)
        if len(others) == 2:
            break
    candidates = all_candidates()
    shown = ["batch", "speed", "static 0.3 (prototype)", current, *others]
    paths = []
    for s in streams:
        results = {label: replay_combiner(s, candidates[label]) for label in shown}
        results[f"{current} (default)"] = results.pop(current)
        suffix = drift_tag(s.meta.get("on_drift"))
        paths.append(
            plot_scenario(
                s,
                results,
                Path(out_dir) / f"combiners-{s.scenario}-w{s.window}{suffix}.png",
                weight_labels=[f"{current} (default)", *others],
                title=f"{s.scenario}: {s.meta.get('description', '')} — speed window {s.window} rows"
                + (" + early re-training on drift" if s.meta.get("on_drift") else ""),
            )
        )
    return paths


# the drift study's plot: the default detector and three others, on these residual streams
DRIFT_SHOWN = ("adwin d=2e-3", "cusum h=20", "ph thr=25")
DRIFT_STREAMS = ("none/hybrid", "step/hybrid", "step/batch", "gradual/hybrid", "abrupt/hybrid")


def plot_drift_study(
    residuals: Mapping[str, np.ndarray], results: Mapping, current: str, path: str | Path, change_points: Sequence[int]
) -> Path:
    """``plot_drift`` of the shown detectors' alarms on the shown residual streams."""
    alarms = {
        label: {k: results[label]["streams"][k]["alarms"] for k in DRIFT_STREAMS}
        for label in dict.fromkeys([current, *DRIFT_SHOWN])
        if label in results
    }
    return plot_drift({k: residuals[k] for k in DRIFT_STREAMS}, alarms, path, change_points)
