"""The demo report: ``results.json``, ``report.md``, PNG plots, and the summary table on stdout."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from hybridstream.demo.results import rolling_rmse

APPROACH_ORDER = ("batch", "speed", "static", "dynamic", "persistence", "online_linear")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def summary_table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per scenario, RMSE per approach, counts, latency, freshness."""
    scen = results.get("scenarios", {})
    extra = sorted({a for s in scen.values() for a in s["approaches"] if a not in APPROACH_ORDER})
    names = [*APPROACH_ORDER, *extra]
    head = (
        ["scenario"]
        + [f"{n} RMSE" for n in names]
        + ["readings", "predicted", "deadletter", "replayed", "models published", "swaps", "latency p50/p99 ms"]
        + ["freshness p50/max s"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in scen.items():
        rmse = [_fmt((s["approaches"].get(n) or {}).get("rmse")) for n in names]
        best = min((v["rmse"] for v in s["approaches"].values() if v.get("rmse") is not None), default=None)
        rmse = [f"**{r}**" if best is not None and r == _fmt(best) else r for r in rmse]
        lat, fr = s["latency_ms"], s["model_freshness_s"]
        row = [name, *rmse, str(s["readings"]), str(s["predicted"]), str(s["deadletter"]), str(s.get("replayed", 0))]
        row += [str(s.get("models_published", "-")), str(s["model_swaps"])]
        row += [f"{_fmt(lat['p50'], 1)} / {_fmt(lat['p99'], 1)}", f"{_fmt(fr['p50'], 1)} / {_fmt(fr['max'], 1)}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _plots(out: Path, series: dict[str, dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for name, s in series.items():
        errors = s["errors"]
        n = len(next(iter(errors.values()))) if errors else 0
        if n == 0:
            continue
        window = max(20, min(200, n // 10))
        fig, ax = plt.subplots(figsize=(10, 4))
        for approach in (*APPROACH_ORDER, *[a for a in errors if a not in APPROACH_ORDER]):
            if approach in errors:
                ax.plot(rolling_rmse(errors[approach], window), label=approach, lw=1.6 if approach == "dynamic" else 1)
        for i, row in enumerate(s["swap_rows"]):
            ax.axvline(row, color="grey", lw=0.6, ls=":", label="speed model swapped" if i == 0 else None)
        for i, row in enumerate(s["drift_rows"]):
            ax.axvline(row, color="red", lw=0.8, ls="--", label="drift detected" if i == 0 else None)
        for i, row in enumerate(s["change_points"]):
            ax.axvline(row, color="black", lw=1.2, label="injected change" if i == 0 else None)
        ax.set(xlabel="reading", ylabel=f"rolling RMSE (degC, {window} readings)", title=f"{name}: RMSE over time")
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        path = out / f"rmse-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)

        weights = np.array([w if isinstance(w, int | float) else np.nan for w in s["weights"]], dtype=float)
        fig, ax = plt.subplots(figsize=(10, 3))
        ax.plot(weights, color="tab:orange", lw=1)
        for row in s["swap_rows"]:
            ax.axvline(row, color="grey", lw=0.6, ls=":")
        for row in s["change_points"]:
            ax.axvline(row, color="black", lw=1.2)
        title = f"{name}: the dynamic blend's weight on the speed model"
        # a convex blend's weight is within [0, 1]; context stacking's coefficient on the speed model's change is not
        ax.set(xlabel="reading", ylabel="speed weight", title=title)
        if np.isfinite(weights).any() and np.nanmin(weights) >= 0.0 and np.nanmax(weights) <= 1.0:
            ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.0, color="grey", lw=0.5)
        fig.tight_layout()
        path = out / f"weights-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)

        band = s.get("band")
        if band is not None and np.isfinite(band["lo"]["0.95"]).any():
            files.append(_band_plot(plt, out, name, band))

    stages = ("reading_to_prediction", "kafka_to_edge_loop", "edge_processing")
    if series:
        fig, axes = plt.subplots(1, len(stages), figsize=(12, 3.5))
        for ax, stage in zip(axes, stages, strict=True):
            for name, s in series.items():
                values = np.asarray([v for v in s["latency"].get(stage, []) if v is not None], dtype=float)
                values = values[np.isfinite(values) & (values > 0)]
                if len(values):
                    bins = np.logspace(np.log10(max(values.min(), 1e-3)), np.log10(values.max() + 1e-3), 40)
                    ax.hist(values, bins=bins, histtype="step", label=name)
            ax.set_xscale("log")
            ax.set(title=stage.replace("_", " "), xlabel="ms")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "not measured in this mode", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    return files


def _band_plot(plt: Any, out: Path, name: str, band: dict[str, Any], rows: int = 400) -> str:
    """The last ``rows`` readings (or those around the first flagged one): the hybrid forecast with its 80 %
    and 95 % intervals as the edge issued them, the readings, and the flagged readings."""
    n = len(band["actual"])
    first = band["flagged"][0] if band["flagged"] else None
    start = max(0, first - rows // 2) if first is not None else max(0, n - rows)
    s = slice(start, min(n, start + rows))
    x = np.arange(n)[s]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.fill_between(x, band["lo"]["0.95"][s], band["hi"]["0.95"][s], color="tab:blue", alpha=0.18, label="95 %")
    ax.fill_between(x, band["lo"]["0.8"][s], band["hi"]["0.8"][s], color="tab:blue", alpha=0.35, label="80 %")
    ax.plot(x, band["hybrid"][s], color="tab:blue", lw=1, label="dynamic forecast")
    ax.plot(x, band["actual"][s], ".", color="k", ms=2.5, label="reading")
    flagged = [i for i in band["flagged"] if s.start <= i < s.stop]
    ax.plot(flagged, band["actual"][flagged], "o", mfc="none", color="tab:red", ms=7, label="flagged (anomaly)")
    cov = ", ".join(
        f"{float(k) * 100:g} % {_fmt(v * 100 if v is not None else None, 1)} %" for k, v in band["coverage"].items()
    )
    ax.set(xlabel="reading", title=f"{name}: forecast, intervals and anomaly flags (coverage {cov})")
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.tight_layout()
    path = out / f"band-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_report(out: Path, results: dict[str, Any], series: dict[str, dict[str, Any]], opts: Any) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    try:
        plots = _plots(out, series)
    except Exception as exc:  # the numbers matter more than the pictures
        plots = []
        results["plot_error"] = str(exc)
    table = summary_table(results)
    lines = [
        f"# Demo report: mode {results['mode']}",
        "",
        f"Status: **{results.get('status')}**, wall time {results.get('wall_seconds')} s. "
        f"Options: rows per scenario {opts.rows or 'all'}, {opts.rate:g} readings/s, "
        f"windows of {opts.window} readings.",
        "",
        "Every figure below comes from the records the edge app produced during this run (Kafka `predictions`, "
        "`deadletter`, `edge.events`); `static` is the prototype's 0.3 speed / 0.7 batch blend of the record's two "
        "forecasts, `persistence` forecasts the last actual value. `online_linear` (the second baseline) is the one "
        "approach computed offline: the project's online linear model (RLS) over the replayed readings, with the "
        "batch model's feature spec, warmed on its history, learning each truth when it arrives. "
        "Latency: reading produced to Kafka -> prediction record's CreateTime. "
        "Freshness: window uploaded -> the model trained on it serving on the edge.",
        "",
        table,
        "",
    ]
    history = results.get("forecast_history")
    if history:
        from hybridstream.demo.forecast_history import markdown

        lines += markdown(history)
    for name, s in results.get("scenarios", {}).items():
        lines += [f"## {name}", "", s.get("description", ""), ""]
        keys = ("readings", "predicted", "unpredicted", "deadletter", "malformed_sent", "replayed", "windows_uploaded",
                "models_published", "models_refused", "model_swaps", "drift_events", "windows_not_trained")  # fmt: skip
        lines += [", ".join(f"{k} {s.get(k)}" for k in keys), ""]
        if s.get("deadletter_reasons"):
            lines += ["Deadletter reasons: " + ", ".join(f"{k} {v}" for k, v in s["deadletter_reasons"].items()), ""]
        if s.get("crash"):
            lines += [f"Crash: {json.dumps(s['crash'])}", ""]
        stages = s.get("latency_stages_ms", {})
        lines += ["| stage | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|"]
        for stage, q in stages.items():
            lines.append(f"| {stage} | {_fmt(q.get('p50'), 2)} | {_fmt(q.get('p90'), 2)} | {_fmt(q.get('p99'), 2)} |")
        lines.append("")
        for plot in plots:
            if plot.endswith(f"-{name}.png"):
                lines += [f"![{plot}]({plot})", ""]
    if "latency.png" in plots:
        lines += ["## Latency per stage", "", "![latency](latency.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    latest = out.parent / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    os.symlink(out.name, latest)
    print("\n" + table + "\n", flush=True)
    if history and history.get("rows"):
        from hybridstream.results.query import table_text

        print(f"{history['command']}:\n{table_text(history['rows'], digits=3)}\n", flush=True)
    print(f"demo: report in {out} (also {latest})", flush=True)
    return out
