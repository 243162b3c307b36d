"""``eval intervals``: the edge's conformal intervals vs the rolling-quantile baseline on saved runs.

For every ``.npz`` written by ``eval run --save``, the dynamic forecast's intervals are replayed as
the edge issues them (:meth:`~hybridstream.evaluation.online_run.RunResult.intervals`: the shared
``model_contract.conformal`` learner from the run's interval warm start) and, on the same rows, the
baseline's: the empirical level quantile of the last ``N`` absolute errors (:class:`RollingQuantile`);
beside them, the forecasts of persistence and the online linear model with the same conformal intervals
(``persistence+conformal``, ``online_linear+conformal``: is the hybrid's band narrower than theirs?).
Table cells: coverage over the stream, the worst tenth's coverage and the mean width, per level.
:func:`plot` draws a stretch of one run: the forecast with both bands and the flagged readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybridstream.evaluation.intervals import RollingQuantile, issued_half_widths, score
from hybridstream.evaluation.online_run import INTERVAL_APPROACHES, RunResult
from model_contract.conformal import LEVELS, level_key

BASELINE_N = (200, 1000)


def compare(paths: Sequence[str | Path], baseline_n: Sequence[int] = BASELINE_N) -> dict[str, dict]:
    """``{run name: {"conformal": scores, "rolling-N": scores, ..., "persistence+conformal": scores, ...}}``
    (scores: :func:`intervals.score`): the dynamic forecast's intervals by each method, then the baselines'
    forecasts with the same conformal intervals (each from its own training-file warm start), on the same rows."""
    out: dict[str, dict] = {}
    for p in paths:
        r = RunResult.load(p)
        f = r.forecasts["dynamic"]
        hws = {"conformal": (f, r.intervals(LEVELS)[0])}
        for n in baseline_n:
            hws[f"rolling-{n}"] = (f, issued_half_widths(r.y, f, RollingQuantile(LEVELS, n), r.spec.horizon))
        for a in INTERVAL_APPROACHES:
            if a != "dynamic" and a in r.forecasts:
                hws[f"{a}+conformal"] = (r.forecasts[a], r.intervals(LEVELS, approach=a)[0])
        ok = np.logical_and.reduce([np.all(np.isfinite(h), axis=1) & np.isfinite(fc) for fc, h in hws.values()])
        res = {}
        for name, (fc, hw) in hws.items():
            hw[~ok] = np.nan  # the same rows for every method
            res[name] = score(r.y, fc, hw, LEVELS)
        out[Path(p).stem] = res
    return out


def _cell(s: dict, key: str) -> str:
    tenths = s["coverage_tenths"][key]
    worst = max(tenths, key=lambda c: abs(c - float(key)))
    return f"{100 * s['coverage'][key]:.1f} / {100 * worst:.1f} / {s['width'][key]:.3g}"


def markdown(results: dict[str, dict]) -> str:
    """One table per level: rows = runs, columns = methods; cells coverage % / worst tenth % / mean width."""
    methods = list(dict.fromkeys(m for res in results.values() for m in res))  # a run saved before may lack some
    md = []
    for level in LEVELS:
        key = level_key(level)
        md.append(
            f"**{100 * level:g} % intervals**: coverage % over the stream / the tenth furthest from "
            f"{100 * level:g} % / mean width (target units)\n"
        )
        md.append("| run | " + " | ".join(methods) + " |")
        md.append("|---|" + "---|" * len(methods))
        for name, res in results.items():
            md.append(f"| {name} | " + " | ".join(_cell(res[m], key) if m in res else "-" for m in methods) + " |")
        md.append("")
    return "\n".join(md)


def targets(results: dict[str, dict], baseline: str = "rolling-1000") -> list[str]:
    """The issue's targets per run and level, in words: coverage +-2 points (stream), +-5 (each tenth), width
    <= the baseline's when its coverage is at least as close to nominal."""
    lines = []
    for name, res in results.items():
        c, b = res["conformal"], res[baseline]
        for level in LEVELS:
            k = level_key(level)
            cov_ok = abs(c["coverage"][k] - level) <= 0.02
            tenth_ok = all(abs(t - level) <= 0.05 for t in c["coverage_tenths"][k])
            b_close = abs(b["coverage"][k] - level) < abs(c["coverage"][k] - level) - 0.002
            width_ok = c["width"][k] <= b["width"][k] or b_close
            miss = [w for w, ok in (("coverage", cov_ok), ("tenths", tenth_ok), ("width", width_ok)) if not ok]
            if miss:
                rel = c["width"][k] / b["width"][k] - 1.0
                lines.append(f"{name} {100 * level:g} %: NOT met: {', '.join(miss)} (width {rel:+.1%} vs {baseline})")
    return lines


def flagged(y: np.ndarray, f: np.ndarray, hw: np.ndarray, min_run: int = 4) -> np.ndarray:
    """Rows the edge flags: the ``min_run``-th and later of rows in a row outside the widest interval
    (``edge_app.intervals.DeviceBand``'s rule; horizon 1)."""
    d = y - f
    w = hw[:, -1]
    out = np.zeros(len(y), bool)
    run = 0
    for i in range(len(y)):
        if not (np.isfinite(d[i]) and np.isfinite(w[i])):
            continue
        run = run + 1 if abs(d[i]) > w[i] else 0
        out[i] = run >= min_run
    return out


def plot(path: str | Path, out: str | Path, start: int, rows: int = 400, title: str = "") -> Path:
    """The dynamic forecast of rows ``[start, start + rows)`` of a saved run with its 80 % and 95 % bands, the
    readings, and the flagged ones (PNG)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = RunResult.load(path)
    f = r.forecasts["dynamic"]
    hw, _ = r.intervals(LEVELS)
    flags = flagged(r.y, f, hw)
    s = slice(start, start + rows)
    x = np.arange(len(r.y))[s]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.fill_between(x, (f - hw[:, 1])[s], (f + hw[:, 1])[s], color="tab:blue", alpha=0.18, label="95 % interval")
    ax.fill_between(x, (f - hw[:, 0])[s], (f + hw[:, 0])[s], color="tab:blue", alpha=0.35, label="80 % interval")
    ax.plot(x, f[s], color="tab:blue", lw=1, label="dynamic forecast")
    ax.plot(x, r.y[s], ".", color="k", ms=2.5, label="reading")
    fx = x[flags[s]]
    ax.plot(fx, r.y[s][flags[s]], "o", mfc="none", color="tab:red", ms=7, label="flagged (anomaly)")
    ax.set_xlabel("row of the stream")
    ax.set_title(title or f"{Path(path).stem}: rows {start}-{start + rows}")
    ax.legend(loc="upper left", fontsize=8, ncol=5)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
