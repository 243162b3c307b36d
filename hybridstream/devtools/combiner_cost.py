"""In-process cost per record of the context stack (the default dynamic combiner), no broker, no models.

``python -m hybridstream.devtools.combiner_cost`` times, in CPU time (``time.process_time``),
``--records`` records of

* ``online_linear_us``: :class:`~model_contract.online_linear.OnlineLinear` ``predict_one`` + ``learn_one``
  on ``--width`` inputs (d = width + 1 with the bias), a random-walk target;
* ``context_us``: :class:`~edge_app.context_stacking.ContextStacking` on the product's feature spec (a (2, 9)
  calendar window, 14 inputs read + the 2 model inputs): ``predict_one`` + ``context`` + ``weights`` +
  ``learn_one``, what the edge's hot loop calls per record;
* ``experts_us``: the same with the expert-weighting layer (``{"blend": "experts"}``: the stack, its online
  linear twin, persistence, batch, speed and static, exponentially weighted); ``pair_us``: the layer over the
  stack and its twin only (``{"blend": "pair"}``).

The last line is JSON (BENCHMARKS.md, "Context stacking's cost"). Other work on the machine inflates
CPU time less than wall time, but still: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def online_linear_us(records: int, width: int, seed: int = 0) -> float:
    from model_contract.online_linear import OnlineLinear

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(records + 1, 1, width))
    x[:, 0, min(4, width - 1)] = np.cumsum(rng.normal(size=records + 1))
    y = x[1:, 0, min(4, width - 1)].copy()
    model = OnlineLinear(min(4, width - 1))
    t0 = time.process_time()
    for i in range(records):
        window = x[i]
        model.predict_one(window)
        model.learn_one(window, y[i])
    return (time.process_time() - t0) / records * 1e6


def context_us(records: int, seed: int = 0, config: dict | None = None) -> float:
    from edge_app.combiners import make_combiner
    from model_contract import default_spec

    spec = default_spec()
    rng = np.random.default_rng(seed)
    combiner = make_combiner(config or {}, spec=spec)
    steps, cols = spec.input_shape
    w = rng.normal(size=(records + 1, steps, cols))
    w[:, :, spec.target_index] = np.cumsum(rng.normal(size=records + 1))[:, None]
    y = w[1:, -1, spec.target_index].copy()
    t0 = time.process_time()
    for i in range(records):
        b, s = y[i] + 0.1 * rng.standard_normal(), y[i] + 0.3 * rng.standard_normal()
        combiner.predict_one(b, s, w[i])
        context = combiner.context()
        combiner.weights  # noqa: B018 (the loop reads them per record)
        combiner.learn_one(b, s, y[i], context)
    return (time.process_time() - t0) / records * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="combiner_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records timed (100000)")
    parser.add_argument("--width", type=int, default=17, help="online_linear inputs (17: d = 18 with the bias)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions; the lowest is reported (2)")
    args = parser.parse_args(argv)
    ol = min(online_linear_us(args.records, args.width) for _ in range(args.repeat))
    ctx = min(context_us(args.records) for _ in range(args.repeat))
    exp = min(context_us(args.records, config={"blend": "experts"}) for _ in range(args.repeat))
    pair = min(context_us(args.records, config={"blend": "pair"}) for _ in range(args.repeat))
    out = {
        "online_linear_us": round(ol, 2),
        "context_us": round(ctx, 2),
        "experts_us": round(exp, 2),
        "pair_us": round(pair, 2),
        "records": args.records,
        "width": args.width,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
