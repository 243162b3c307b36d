"""Where the edge's combiner stage goes per reading, in process: the steps around the compiled combiner, apart.

``python -m hybridstream.devtools.combiner_stage`` runs the batch path's per-reading combiner steps
(:func:`edge_app.steps.score` then :func:`edge_app.steps.forecast`, as ``edge_app.batch_path`` calls them) on
``--devices`` devices of the product's feature spec and default combiner (the context stack), over a synthetic
random walk (every 7th reading of the second half off by 6: anomalies and drift alarms), no broker, no models,
and times it in CPU time (``time.thread_time``) three ways, the repetitions interleaved (a difference from one
run holds on a busy machine):

* ``stage_us``: score + forecast with the interval band (``intervals`` on, the default);
* ``no_band_us``: the same without the band (``"intervals": null``);
* ``combiner_us``: the combiner's own calls only (``predict_one``, ``context``, ``weights``, ``learn_one``).

and derives ``band_us`` (stage - no band: the interval band's learn, widths and JSON fragment) and
``glue_us`` (no band - combiner: errors, checks, accuracy sums, drift detector, the pending forecast).
The last line is JSON with the machine's load. The combiner stage of ``edge_stages`` / ``make bench-edge``
also holds the batch loop around these and the window spool's time is reported apart (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types
from typing import Any

import numpy as np


def _stream(records: int, seed: int = 0) -> tuple[Any, np.ndarray, list, list, list]:
    from model_contract import default_spec

    spec = default_spec()
    rng = np.random.default_rng(seed)
    steps, cols = spec.input_shape
    windows = rng.normal(size=(records + 1, steps, cols))
    windows[:, :, spec.target_index] = np.cumsum(rng.normal(size=records + 1))[:, None]
    y = windows[1:, -1, spec.target_index].copy()
    half = records // 2
    y[half:] += np.where(np.arange(records - half) % 7 == 0, 6.0, 0.0)
    batch = (y + 0.1 * rng.standard_normal(records)).tolist()
    speed = (y + 0.3 * rng.standard_normal(records)).tolist()
    return spec, windows, batch, speed, y.tolist()


def _app() -> Any:
    """What :func:`edge_app.steps.score` reads of the app (a drift alarm's event is dropped)."""
    from edge_app.metrics import ErrorStats

    return types.SimpleNamespace(
        residual_index=2,
        totals=ErrorStats(500),
        counters=types.SimpleNamespace(drift_events=0, combiner_resets=0),
        cfg=types.SimpleNamespace(windows=types.SimpleNamespace(early_on_drift=False), drift_residual="hybrid"),
        telemetry=types.SimpleNamespace(event=lambda *a, **k: None),
        spool=None,
    )


def _states(spec: Any, devices: int, band: bool) -> list:
    from edge_app.drift import DEFAULT_DETECTOR
    from edge_app.intervals import DeviceBand, IntervalConfig
    from edge_app.state import DeviceState

    states = []
    for d in range(devices):
        state = DeviceState(f"turbine-{d + 1}", spec, {}, DEFAULT_DETECTOR, 500)
        state.band = DeviceBand(IntervalConfig(), on_anomaly=lambda *a: None) if band else None
        states.append(state)
    return states


def stage_us(data: tuple, devices: int, band: bool) -> float:
    """CPU µs a reading of score + forecast (and the weights read), as the batch path's combiner stage."""
    from edge_app.steps import forecast, score

    spec, windows, batch, speed, y = data
    app, states = _app(), _states(spec, devices, band)
    t0 = time.thread_time()
    for i in range(len(y)):
        state = states[i % devices]
        pending = state.pending
        score(app, state, y[i], "t", "v1")
        forecast(state, batch[i], speed[i], windows[i], "v1", 1, pending, y[i], "t")
        state.combiner.weights  # noqa: B018 (the loop reads them for the record)
    return (time.thread_time() - t0) / len(y) * 1e6


def combiner_us(data: tuple, devices: int) -> float:
    """CPU µs a reading of the combiner's calls only (no errors, accuracy, drift, band)."""
    spec, windows, batch, speed, y = data
    combiners = [state.combiner for state in _states(spec, devices, band=False)]
    contexts: list = [None] * devices
    t0 = time.thread_time()
    for i in range(len(y)):
        d = i % devices
        c = combiners[d]
        if contexts[d] is not None:
            c.learn_one(contexts[d][0], contexts[d][1], y[i], contexts[d][2])
            c.weights  # noqa: B018
        c.predict_one(batch[i], speed[i], windows[i])
        contexts[d] = (batch[i], speed[i], c.context())
        c.weights  # noqa: B018
    return (time.thread_time() - t0) / len(y) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybridstream.devtools.combiner_stage", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--records", type=int, default=30000, help="readings timed (30000)")
    parser.add_argument("--devices", type=int, default=5, help="devices the readings go to, in turn (5)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, interleaved; the lowest is reported (3)")
    args = parser.parse_args(argv)
    if args.records < 1 or args.devices < 1 or args.repeat < 1:
        parser.error("--records, --devices and --repeat must be >= 1")
    from model_contract import online_linear_kernel

    backend = "c" if online_linear_kernel.kernel() is not None else "numpy"  # loaded (or built) before any clock
    data = _stream(args.records)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        got = {
            "stage_us": stage_us(data, args.devices, band=True),
            "no_band_us": stage_us(data, args.devices, band=False),
            "combiner_us": combiner_us(data, args.devices),
        }
        for k, v in got.items():
            best[k] = min(best.get(k, v), v)
    out = {k: round(v, 2) for k, v in best.items()}
    out["band_us"] = round(best["stage_us"] - best["no_band_us"], 2)
    out["glue_us"] = round(best["no_band_us"] - best["combiner_us"], 2)
    out |= {"backend": backend, "records": args.records, "devices": args.devices}
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
