"""The forecast intervals' parameters, selected on the training files' errors (issue 22).

``python -m hybridstream.devtools.interval_selection`` streams each training file through a fresh context
stack (:func:`model_contract.context_stack.warm_start`: the errors the interval warm start learns from; the
turbine ``train``, ``train_gradual`` and ``train_abrupt`` files, and with ``--etth1-history`` that CSV), then
replays :class:`~model_contract.conformal.ConformalInterval` over each error stream (cold) for every
configuration of the grid, beside the baseline (the empirical quantile of the last 1,000 absolute errors).
It never reads a stream that ``eval intervals`` scores.

The rule (docs/combination.md, "Forecast intervals under drift"): the smallest largest width relative to
the baseline over streams x levels (ties within 0.1 point: the best mean), among the configurations whose
coverage is within 0.3 points of nominal and every tenth within 3 points on every selection stream, and
every tenth within 4 points on a synthetic stream whose error scale steps x5 halfway (seeds 0 and 1).
Prints a Markdown table, then the chosen configuration as JSON (last line). About 3 minutes for the
grid with ETTh1 on 2 shared cores (progress on stderr).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from hybridstream.evaluation.intervals import RollingQuantile, issued_half_widths, score
from model_contract.conformal import LEVELS, ConformalInterval, level_key

TURBINE = ("none", "gradual", "abrupt")  # their training files (``step`` trains on ``none``'s)
GRID = {"scale_half_life": (500.0, 1000.0, 2000.0), "lr": (0.03, 0.04, 0.05), "gamma_gain": (0.0, 0.6)}


def training_errors(etth1_history: str | None = None) -> dict[str, np.ndarray]:
    """``{name: forecast - truth}`` of a fresh context stack over each training file, in arrival order."""
    from hybridstream.evaluation import csv_input
    from hybridstream.evaluation.data import SCENARIOS, load_scenario
    from model_contract import FeatureSpec, context_stack
    from model_contract.calendar import parse_calendar_option

    out: dict[str, np.ndarray] = {}
    spec = FeatureSpec()
    for name in TURBINE:
        train, _ = load_scenario(SCENARIOS[name], spec)
        residuals: list[float] = []
        context_stack.warm_start(train, spec, residuals=residuals)
        out[f"train-{name}"] = np.asarray(residuals)
    if etth1_history:
        table = csv_input.read_table(etth1_history)
        spec = csv_input.choose_spec(table, table, None, None, spec.lags, 1, parse_calendar_option("none"))
        residuals = []
        context_stack.warm_start(csv_input.to_matrix(table, spec), spec, residuals=residuals)
        out["train-etth1"] = np.asarray(residuals)
    return out


def scale_step_errors(seed: int, n: int = 20_000) -> np.ndarray:
    """Heavy tails, volatility clusters and a x5 step of the error scale halfway (the robustness check)."""
    rng = np.random.default_rng(seed)
    vol = np.exp(np.convolve(rng.normal(size=n), np.ones(50) / 7, mode="same"))
    vol[n // 2 :] *= 5.0
    return rng.standard_t(3, size=n) * vol


def scores(errors: np.ndarray, make: Callable[[], object]) -> dict:
    """Coverage, worst tenth's distance from nominal and mean width per level of one learner over ``errors``."""
    y = -errors
    f = np.zeros(len(errors))
    s = score(y, f, issued_half_widths(y, f, make(), 1), LEVELS)
    out = {}
    for level in LEVELS:
        k = level_key(level)
        worst = max(abs(t - level) for t in s["coverage_tenths"][k])
        out[k] = {"coverage": s["coverage"][k], "worst_tenth": worst, "width": s["width"][k]}
    return out


def evaluate(streams: Mapping[str, np.ndarray], grid: Mapping[str, Iterable], log=print) -> list[dict]:
    """One row per configuration: relative widths vs the baseline per stream and level, and the checks."""
    base = {name: scores(e, lambda: RollingQuantile(LEVELS, 1000)) for name, e in streams.items()}
    synthetic = [scale_step_errors(seed) for seed in (0, 1)]
    rows = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = dict(zip(keys, values, strict=True))
        make = lambda cfg=cfg: ConformalInterval(**cfg)  # noqa: E731
        res = {name: scores(e, make) for name, e in streams.items()}
        rel = {f"{n} {k}": res[n][k]["width"] / base[n][k]["width"] - 1.0 for n in res for k in res[n]}
        calibrated = all(
            abs(v["coverage"] - float(k)) <= 0.003 and v["worst_tenth"] <= 0.03
            for r in res.values()
            for k, v in r.items()
        )
        step_tenth = max(v["worst_tenth"] for e in synthetic for v in scores(e, make).values())
        row = {
            "config": cfg,
            "relative_width": rel,
            "max": max(rel.values()),
            "mean": float(np.mean(list(rel.values()))),
        }
        row |= {"calibrated": calibrated, "scale_step_worst_tenth": step_tenth}
        row["eligible"] = calibrated and step_tenth <= 0.04
        log(f"{cfg}: largest {row['max']:+.1%}, mean {row['mean']:+.1%}, eligible {row['eligible']}")
        rows.append(row)
    return rows


def choose(rows: list[dict]) -> dict | None:
    """The rule: among the eligible, the smallest largest relative width; within 0.1 point of it, the best mean."""
    ok = [r for r in rows if r["eligible"]]
    if not ok:
        return None
    best = min(r["max"] for r in ok)
    return min((r for r in ok if r["max"] <= best + 0.001), key=lambda r: r["mean"])


def markdown(rows: list[dict]) -> str:
    cols = list(rows[0]["relative_width"])
    md = ["| config | " + " | ".join(cols) + " | largest | mean | x5 step: worst tenth | eligible |"]
    md.append("|---|" + "---|" * (len(cols) + 4))
    for r in rows:
        cfg = ", ".join(f"{k} {v:g}" for k, v in r["config"].items())
        cells = " | ".join(f"{100 * v:+.1f} %" for v in r["relative_width"].values())
        md.append(
            f"| {cfg} | {cells} | {100 * r['max']:+.1f} % | {100 * r['mean']:+.1f} % | "
            f"{100 * r['scale_step_worst_tenth']:.1f} | {'yes' if r['eligible'] else 'no'} |"
        )
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hybridstream.devtools.interval_selection", description=__doc__.split("\n")[0]
    )
    p.add_argument("--etth1-history", default=None, metavar="CSV", help="the ETTh1 history (the first 40 %% of hours)")
    args = p.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    log("context stack errors over the training files...")
    streams = training_errors(args.etth1_history)
    rows = evaluate(streams, GRID, log)
    print(markdown(rows))
    chosen = choose(rows)
    print(json.dumps({"chosen": None if chosen is None else chosen["config"], "streams": list(streams)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
