"""In-process cost per record of the forecast intervals, no broker, no models (``timeit``).

``python -m hybridstream.devtools.interval_cost`` times, best of ``--repeat`` runs of ``--records`` records:

* ``conformal_us``: :class:`~model_contract.conformal.ConformalInterval` at 80 % and 95 %: ``half_widths``
  for a new forecast + ``learn_one`` of a truth (the learner alone: what eval and the edge share);
* ``edge_step_us``: :meth:`edge_app.intervals.DeviceBand.step`, what the edge's hot loop calls per record:
  score the pending interval, the anomaly run, issue the new one and encode the record's ``interval`` and
  ``anomaly`` members (JSON).

The last line is JSON (BENCHMARKS.md, "Forecast intervals' cost"). The issue's target: <= 3 us a record.
Other work on the machine inflates the figures: say so beside them.
"""

from __future__ import annotations

import argparse
import json
import timeit

import numpy as np


def conformal_us(records: int, repeat: int) -> float:
    from model_contract.conformal import ConformalInterval

    errors = np.random.default_rng(0).standard_t(4, records).tolist()
    ci = ConformalInterval()
    ci.learn_one(1.0)

    def run() -> None:
        for e in errors:
            ci.learn_one(e, ci.half_widths())

    return min(timeit.repeat(run, number=1, repeat=repeat)) / records * 1e6


def edge_step_us(records: int, repeat: int) -> float:
    from edge_app.intervals import DeviceBand, IntervalConfig
    from edge_app.state import Pending

    y = (10.0 + np.random.default_rng(1).standard_t(4, records)).tolist()
    band = DeviceBand(IntervalConfig())
    band.ci.learn_one(1.0)
    made = [Pending(10.0, 10.0, 10.0, "v") for _ in range(records + 1)]  # allocated outside the timing

    def run() -> None:
        step = band.step
        pending = None
        for i, v in enumerate(y):
            m = made[i]
            step(pending, v, m, "t")
            pending = m

    return min(timeit.repeat(run, number=1, repeat=repeat)) / records * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hybridstream.devtools.interval_cost", description=__doc__.split("\n")[0]
    )
    p.add_argument("--records", type=int, default=100_000, help="records per timed run (default 100,000)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs; the best counts (default 5)")
    args = p.parse_args(argv)
    out = {
        "records": args.records,
        "conformal_us": round(conformal_us(args.records, args.repeat), 3),
        "edge_step_us": round(edge_step_us(args.records, args.repeat), 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
