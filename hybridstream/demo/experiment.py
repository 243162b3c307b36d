"""``hybridstream local experiment modes``: the same stream in the three deployment modes over an
emulated edge-cloud link (toxiproxy: latency + bandwidth toxics between the edge side and MQTT/S3),
optionally with the edge side under a CPU quota; latency per stage per mode in one report.

Stages, per mode:

* reading -> prediction: the reading produced into the Pi's Kafka -> its forecast exists (edge modes:
  the edge app's prediction record; cloud: the cloud inference result reaching the cloud's broker);
* window -> model serving: a window uploaded (edge-cloud, cloud) or written locally (edge) -> the
  model trained on it serving (edge modes: the edge's swap; cloud: the Lambda's first result with it).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridstream.demo.modes import MODES
from hybridstream.demo.run import Demo, DemoOptions


def run_modes(
    modes: tuple[str, ...] = ("edge", "edge-cloud", "cloud"),
    rtt_ms: float = 40.0,
    mbit: float = 20.0,
    edge_cpu: float | None = None,
    scenario: str = "none",
    rows: int = 900,
    rate: float = 20.0,
    window: int = 150,
    tail_s: float = 90.0,
    out_root: Path | None = None,
) -> Path:
    """Run each mode in turn (a fresh stack each); write ``experiment-<ts>/`` and return it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = (out_root or Path(__file__).resolve().parents[2] / "reports") / f"experiment-{stamp}"
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "link": {"rtt_ms": rtt_ms, "mbit_per_s": mbit},
        "edge_cpu_cores": edge_cpu,
        "scenario": scenario,
        "rows": rows,
        "rate": rate,
        "window": window,
        "modes": {},
    }
    series = {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        print(f"experiment: mode {mode}", flush=True)
        opts = DemoOptions(
            mode=mode, scenarios=(scenario,), rows=rows, rate=rate, window=window, tail_s=tail_s,
            out_root=root, link={"rtt_ms": rtt_ms, "mbit": mbit}, edge_cpu=edge_cpu,
        )  # fmt: skip
        demo = Demo(opts)
        report = demo.run()
        (root / mode).unlink(missing_ok=True)
        os.symlink(report.name, root / mode)
        res = demo.results["scenarios"].get(scenario, {})
        out["modes"][mode] = {
            "status": demo.status,
            "report": report.name,
            "reading_to_prediction_ms": (res.get("latency_stages_ms") or {}).get("reading_to_prediction"),
            "window_to_model_serving_s": res.get("model_freshness_s"),
            "predicted": res.get("predicted"),
            "readings": res.get("readings"),
            "models_published": res.get("models_published"),
            "model_swaps": res.get("model_swaps"),
            "dynamic_rmse": (res.get("approaches", {}).get("dynamic") or {}).get("rmse"),
        }
        series[mode] = demo.series.get(scenario, {})
    (root / "latest").unlink(missing_ok=True)
    (root / "results.json").write_text(json.dumps(out, indent=1))
    _write(root, out, series)
    return root


def table(out: dict[str, Any]) -> str:
    def f(v: Any, d: int = 1) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    lines = [
        "| mode | reading -> prediction p50 / p99 ms | window -> model serving p50 / max s | predicted | models | "
        "swaps | dynamic RMSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, m in out["modes"].items():
        lat = m.get("reading_to_prediction_ms") or {}
        fr = m.get("window_to_model_serving_s") or {}
        lines.append(
            f"| {mode} | {f(lat.get('p50'))} / {f(lat.get('p99'))} | {f(fr.get('p50'))} / {f(fr.get('max'))} | "
            f"{m.get('predicted')}/{m.get('readings')} | {m.get('models_published')} | {m.get('model_swaps')} | "
            f"{f(m.get('dynamic_rmse'), 3)} |"
        )
    return "\n".join(lines)


def _write(root: Path, out: dict[str, Any], series: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for mode, s in series.items():
        values = np.asarray(s.get("latency", {}).get("reading_to_prediction", []), dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values):
            bins = np.logspace(np.log10(values.min()), np.log10(values.max() + 1e-3), 40)
            ax.hist(values, bins=bins, histtype="step", label=mode)
    ax.set_xscale("log")
    ax.set(xlabel="reading -> prediction (ms)", ylabel="readings", title="latency per mode")
    ax.legend()
    fig.tight_layout()
    fig.savefig(root / "latency-modes.png", dpi=110)
    plt.close(fig)
    cpu = out["edge_cpu_cores"]
    text = [
        "# Experiment: deployment modes over an emulated edge-cloud link",
        "",
        f"Link: toxiproxy, {out['link']['rtt_ms']:g} ms round trip, {out['link']['mbit_per_s']:g} Mbit/s each way, "
        "between the edge side (edge app, on-Pi trainer) and the cloud servers (MQTT, S3). "
        + (f"Edge CPU quota: {cpu:g} core(s) (cgroup v1). " if cpu else "No CPU quota. ")
        + f"Scenario {out['scenario']}, {out['rows']} readings at {out['rate']:g}/s, windows of {out['window']}.",
        "",
        table(out),
        "",
        "![latency per mode](latency-modes.png)",
        "",
        "Per-mode reports: " + ", ".join(f"[{m}]({m}/report.md)" for m in out["modes"]),
        "",
    ]
    (root / "report.md").write_text("\n".join(text))
    print("\n" + table(out) + "\n", flush=True)
    print(f"experiment: report in {root}", flush=True)
