"""``--plot``: forecast against actual for one device over a time range, with the interval band when present."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any


def plot_readings(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Actual, dynamic, batch and speed forecasts over time (one device's readings rows, time order)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    devices = sorted({(r["thing"], r["device"]) for r in rows})
    if len(devices) != 1:
        raise ValueError(f"--plot draws one device: the rows have {len(devices)} (pick one with --thing and --device)")
    t = [datetime.fromisoformat(r["time_utc"]) for r in rows]

    def series(name: str) -> list[float]:
        return [float("nan") if r.get(name) is None else r[name] for r in rows]

    fig, ax = plt.subplots(figsize=(9, 3.6))
    lower, upper = series("lower"), series("upper")
    if any(v == v for v in lower) and any(v == v for v in upper):
        ax.fill_between(t, lower, upper, color="tab:blue", alpha=0.15, lw=0, label="interval")
    ax.plot(t, series("actual"), color="black", lw=1.3, label="actual")
    ax.plot(t, series("dynamic"), color="tab:blue", lw=1.1, label="dynamic")
    ax.plot(t, series("batch"), color="tab:green", lw=0.7, alpha=0.8, label="batch")
    ax.plot(t, series("speed"), color="tab:orange", lw=0.7, alpha=0.8, label="speed")
    flagged = [(x, r["actual"]) for x, r in zip(t, rows, strict=True) if r.get("anomaly") is True]
    if flagged:
        ax.scatter(*zip(*flagged, strict=True), color="red", s=14, zorder=3, label="anomaly")
    thing, device = devices[0]
    target = rows[0].get("target") or "target"
    ax.set(title=title or f"{thing} / {device}: forecast vs actual", xlabel="time (UTC)", ylabel=str(target))
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
