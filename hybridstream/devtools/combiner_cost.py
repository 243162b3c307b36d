"""In-process cost per record of the context stack (the default dynamic combiner), no broker, no models.

``python -m hybridstream.devtools.combiner_cost`` times, in CPU time (``time.process_time``),
``--records`` records of

* ``online_linear_us``: :class:`~model_contract.online_linear.OnlineLinear` ``predict_one`` + ``learn_one``
  on ``--width`` inputs (d = width + 1 with the bias), a random-walk target;
* ``context_us``: :class:`~edge_app.context_stacking.ContextStacking` alone (``{"blend": "none"}``) on the
  product's feature spec (a (2, 9) calendar window, 14 inputs read + the 2 model inputs): ``predict_one`` +
  ``context`` + ``weights`` + ``learn_one``, what the edge's hot loop calls per record;
* ``experts_us``: the same with the expert-weighting layer (``{"blend": "experts", "correct": false}``: the
  stack, its online linear twin, persistence, batch, speed and static, exponentially weighted); ``pair_us``: the
  layer over the stack and its twin only (``{"blend": "pair", "correct": false}``);
* ``corrected_us``: the pair layer and the correction layer over it (``{"blend": "pair", "correct": true}``, the
  edge's default since 2026-12-07).

Each config is explicit (:data:`CONFIGS`): the default combiner has changed twice.

The last line is JSON (BENCHMARKS.md, "Context stacking's cost"): those figures for the backend this process runs
(the compiled kernel, or the numpy code with ``HYBRIDSTREAM_LINEAR_KERNEL=numpy``). ``--backends c,numpy`` times
each backend in turn in one process, the repetitions interleaved (a ratio from one run holds on a busy machine), and
prints ``{"backends": {"c": {...}, "numpy": {...}}, ...}`` with each backend's ``pair_extra_us`` (``pair_us -
context_us``) and ``corrected_extra_us`` (``corrected_us - pair_us``: the correction layer's). Other work on the
machine inflates CPU time less than wall time, but still: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

CONFIGS = {
    "context_us": {"blend": "none"},  # the stack alone
    "experts_us": {"blend": "experts", "correct": False},
    "pair_us": {"blend": "pair", "correct": False},
    "corrected_us": {"blend": "pair", "correct": True},  # the edge's default since 2026-12-07
}
"""Each timed combiner's config (explicit: the default config has changed twice)."""


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


def combiners_us(records: int, width: int) -> dict[str, float]:
    """One timing of each combiner on the backend the kernel module chose (µs per record)."""
    from model_contract import online_linear_kernel

    online_linear_kernel.kernel()  # loaded (or built) before any clock starts
    return {
        "online_linear_us": online_linear_us(records, width),
        **{key: context_us(records, config=config) for key, config in CONFIGS.items()},
    }


def use_backend(name: str) -> None:
    """Make models built from now on run ``name`` ("c": the compiled kernel, "numpy": the numpy code)."""
    from model_contract import online_linear_kernel

    if name == "numpy":
        os.environ[online_linear_kernel.ENV_BACKEND] = "numpy"
    else:
        os.environ.pop(online_linear_kernel.ENV_BACKEND, None)
    online_linear_kernel.reset_for_tests()  # the next model decides again, from the environment just set
    if name == "c" and online_linear_kernel.kernel() is None:
        raise SystemExit(f"combiner_cost: no compiled kernel: {online_linear_kernel.status()['reason']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="combiner_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records timed (100000)")
    parser.add_argument("--width", type=int, default=17, help="online_linear inputs (17: d = 18 with the bias)")
    parser.add_argument("--repeat", type=int, default=2, help="repetitions; the lowest is reported (2)")
    parser.add_argument(
        "--backends",
        default="",
        help="comma-separated backends timed in turn in this process: c, numpy (default: the one this process runs)",
    )
    args = parser.parse_args(argv)
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    if any(b not in ("c", "numpy") for b in names):
        parser.error(f"--backends takes c and/or numpy, not {args.backends!r}")
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name in names or [""]:
            if name:
                use_backend(name)
            got = combiners_us(args.records, args.width)
            mine = best.setdefault(name, got)
            for key, value in got.items():
                mine[key] = min(mine[key], value)
    tail = {"records": args.records, "width": args.width, "loadavg_1m": round(os.getloadavg()[0], 2)}
    if not names:
        print(json.dumps({k: round(v, 2) for k, v in best[""].items()} | tail))
        return 0
    out = {
        name: {k: round(v, 2) for k, v in got.items()}
        | {
            "pair_extra_us": round(got["pair_us"] - got["context_us"], 2),
            "corrected_extra_us": round(got["corrected_us"] - got["pair_us"], 2),
        }
        for name, got in best.items()
    }
    print(json.dumps({"backends": out} | tail))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
