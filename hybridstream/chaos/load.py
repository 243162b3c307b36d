"""Sustained load: 100 devices at 2x the nominal rate (nominal = 1,000 readings/s, the rate of the
bench's latency phase), 10 minutes (quick: 30 s). Expected: RSS flat after warm-up (no growth beyond
10 %), the backlog drains when the load stops, every reading predicted; p99 reported."""

from __future__ import annotations

import threading
import time

from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import finish_stream, guarded, start_stream

NOMINAL_RPS = 1000.0


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile.

    >>> _pct([1, 2, 3, 4], 0.5), _pct([], 0.99)
    (2, None)
    """
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s))) - 1))]


def load(ctx: Context) -> Result:
    def body(result: Result) -> None:
        devices = [f"dev{i:03d}" for i in range(100)]
        rate = 2 * NOMINAL_RPS
        duration = ctx.pick(30.0, 600.0)
        per_device = int(rate * duration / len(devices))
        run = start_stream(ctx, "load", devices, per_device, rate, windows={"max_records": 1000})
        samples: list[tuple[float, float, int]] = []  # (t, rss MB, backlog = sent - predicted)
        halt = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not halt.wait(1.0):
                try:
                    samples.append((time.monotonic() - t0, run.edge.rss_mb(), len(run.feeder.sent) - run.predicted()))
                except Exception:  # the process may be between restarts
                    continue

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run.feeder.join(duration + 120)
        stopped_at = time.monotonic()
        finish_stream(run, result, timeout=ctx.pick(120, 300))
        halt.set()
        sampler.join(5)
        drain_s = result.figures.get("catch_up_s")
        warm = [s for s in samples if s[0] >= duration * 0.2 and s[0] <= duration and s[1] > 0]
        rss_base = warm[0][1] if warm else None
        rss_max = max((s[1] for s in warm), default=None)
        growth = (rss_max / rss_base - 1) if rss_base else None
        preds = run.predictions.records
        lag = [p["lag_ms"] for p in preds if isinstance(p.get("lag_ms"), int | float)]
        inapp = [p["latency_us"] for p in preds if isinstance(p.get("latency_us"), int | float)]
        sent_rate = len(run.feeder.sent) / max((run.feeder.finished_at or stopped_at) - (stopped_at - duration), 1e-9)
        result.recovery_s = drain_s
        result.figures.update(
            {
                "devices": len(devices),
                "target_rps": rate,
                "offered_rps": round(sent_rate),
                "duration_s": duration,
                "rss_mb_after_warmup": rss_base,
                "rss_mb_max": rss_max,
                "rss_growth_pct": round(growth * 100, 1) if growth is not None else None,
                "backlog_max": max((s[2] for s in samples), default=None),
                "pickup_lag_ms": {"p50": _pct(lag, 0.5), "p99": _pct(lag, 0.99), "max": max(lag, default=None)},
                "in_app_us": {"p50": _pct(inapp, 0.5), "p99": _pct(inapp, 0.99)},
                "rss_series": [(round(t), round(r, 1)) for t, r, _ in samples[:: max(1, len(samples) // 20)]],
            }
        )
        # 10 % of a ~150 MB app was the bound; the app now starts at ~75 MB (no scipy via river.drift, issue 18), so
        # the same absolute allowance (15 MB) is kept beside the 10 %: a leak shows in the full 10-minute run either way
        grown_mb = (rss_max - rss_base) if rss_base else None
        result.check(
            "RSS flat after warm-up (growth <= 10 % or <= 15 MB)",
            growth is not None and (growth <= 0.10 or grown_mb <= 15.0),
        )
        result.check("the backlog drained after the load stopped", result.readings_lost == 0)
        result.notes.append(
            "latency: pickup_lag_ms = reading CreateTime -> picked up by the loop (the prediction's lag_ms), "
            "in_app_us = parse -> produce inside the edge process (latency_us); shared 2-core machine"
        )

    return guarded("load", "load: 100 devices at 2x nominal", body)


SCENARIOS = [("load", load)]
