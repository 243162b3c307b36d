"""Which batch LSTM: variants selected on the history's holdout, then scored alone on the stream beside persistence.

``python -m hybridstream.evaluation.lstm_study FILE.csv [--variants base,inorm,...] [--lags 1-24]``: the
benchmark protocol's cut and z-scoring (:mod:`hybridstream.evaluation.benchmark`), each channel in turn;
per variant the batch model is trained on train + validation (cached by content version) and reports its
holdout RMSE (the validation span: *history only*, what a selection may use) and its MSE alone over the
stream (TFLite, the whole stream at once), beside persistence's. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# label -> TrainConfig changes from the config before issue 17 (training_job.model.BEFORE_ISSUE_17: "base" is it,
# "inorm shrink" is today's default)
VARIANTS: dict[str, dict] = {
    "base": {},
    "inorm": {"instance_norm": True},
    "mse": {"loss": "mse"},
    "inorm mse": {"instance_norm": True, "loss": "mse"},
    "shrink": {"shrink": True},
    "inorm shrink": {"instance_norm": True, "shrink": True},
    "ens3": {"members": 3},  # a seed ensemble: 3 networks (seeds s, s+1, s+2) averaged in one graph
    "inorm ens3": {"instance_norm": True, "members": 3},
    "inorm shrink ens3": {"instance_norm": True, "shrink": True, "members": 3},
}


def main(argv: list[str] | None = None) -> int:
    from hybridstream.evaluation import benchmark, csv_input  # noqa: PLC0415
    from hybridstream.evaluation.baselines import persistence_forecasts  # noqa: PLC0415
    from hybridstream.evaluation.model_study import cached_model, model_forecasts  # noqa: PLC0415
    from hybridstream.evaluation.options import parse_lags  # noqa: PLC0415
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415
    from model_contract import FeatureSpec  # noqa: PLC0415
    from model_contract.calendar import parse_calendar_option  # noqa: PLC0415
    from training_job.model import BEFORE_ISSUE_17, TrainConfig  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="lstm_study", description=__doc__.split("\n\n")[0])
    p.add_argument("file")
    p.add_argument("--variants", default="base,inorm", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--lags", nargs="+", default=None)
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--calendar", default="day")
    p.add_argument("--target", default=None)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    table = csv_input.read_table(args.file)
    columns = list(table.numeric)
    calendar = parse_calendar_option(args.calendar)
    prep = benchmark.prepare(table, columns, calendar)
    lags = parse_lags(args.lags) or FeatureSpec().lags
    out: dict = {}
    for target in [args.target] if args.target else columns:
        spec = FeatureSpec(
            columns=tuple(columns),
            target=target,
            lags=lags,
            horizon=args.horizon,
            timestamp_column=table.timestamp_column or "t",
            calendar=calendar,
        )
        history, stream, lead = benchmark.channel_split(prep, spec)
        y = stream[:, spec.target_index]
        ok = np.zeros(len(y), bool)
        ok[lead:] = True
        pers = persistence_forecasts(stream, spec)
        row = {"persistence": float(np.mean((pers - y)[ok] ** 2))}
        for label in args.variants.split(","):
            cfg = TrainConfig(seed=args.seed, **(BEFORE_ISSUE_17 | VARIANTS[label]))
            tfl, man, _ = cached_model(history, spec, cfg, DEFAULT_CACHE, log)
            f = model_forecasts(tfl, man, stream)
            row[label] = {"holdout_rmse": man.metrics["holdout_rmse"], "stream_mse": float(np.mean((f - y)[ok] ** 2))}
            if "shrink" in man.extra:
                row[label]["shrink"] = man.extra["shrink"]
        out[target] = row
        log(f"{target}: {row}")
    print(json.dumps({"file": Path(args.file).name, "lags": list(lags), "horizon": args.horizon, "channels": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
