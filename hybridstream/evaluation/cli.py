"""``hybridstream eval``: measure the combination strategies and the drift detectors offline."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

SCENARIO_CHOICES = ("all", "none", "gradual", "abrupt", "step")


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "eval",
        help="offline evaluation of model combination and drift detection",
        description="Replay the turbine scenarios through the edge's models (cached), then compare "
        "combiners and drift detectors. See docs/combination.md.",
    )
    group.set_defaults(group_parser=group)
    cmds = group.add_subparsers(dest="eval_cmd", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--window",
            type=int,
            nargs="+",
            default=[1000],
            help="speed-model window(s) in rows (default 1000); several sizes: --window 500 1000 2000",
        )
        p.add_argument("--delay", type=int, default=0, help="rows between a window closing and its model serving")
        p.add_argument("--cache-dir", default=None, help="prediction-stream cache (default .cache/eval)")
        p.add_argument("--refresh", action="store_true", help="re-train and re-cache the prediction streams")
        p.add_argument("--out", default=None, help="where results JSON/Markdown go (default .cache/eval/results)")
        p.add_argument("--plot", default=None, metavar="DIR", help="write PNG plots into DIR (e.g. docs/img)")

    comb = cmds.add_parser(
        "combiners",
        help="compare batch/speed/static/dynamic combiners on the scenarios",
        description="RMSE/MAE of every combiner per scenario; the robust choice is selected on the first "
        "half of each stream and reported on the second. Training the streams takes minutes (cached).",
    )
    comb.add_argument(
        "--scenario",
        choices=SCENARIO_CHOICES,
        default="all",
        help="all (default) = none, gradual, abrupt and step (test.csv with an injected +8 degC step)",
    )
    comb.add_argument(
        "--retrain-on-drift",
        action="store_true",
        help="also run the streams where each drift alarm (default detector on the hybrid residuals) "
        "triggers an early speed model, and compare",
    )
    comb.add_argument(
        "--drift-config",
        default=None,
        metavar="JSON",
        help="detector config for --retrain-on-drift (default: the default detector), e.g. '{\"delta\": 2e-05}'",
    )
    common(comb)
    comb.set_defaults(func=_combiners)

    drift = cmds.add_parser(
        "drift",
        help="compare drift detectors on the residual streams",
        description="Detection delay after known changes (injected steps), false alarms per 10k rows, "
        "and cost per update of ADWIN, Page-Hinkley, KSWIN and CUSUM on the residuals.",
    )
    common(drift)
    drift.set_defaults(func=_drift)

    run = cmds.add_parser(
        "run",
        help="batch/speed/static/dynamic vs persistence and online_linear on any train/test CSV pair",
        description="Train the batch model on TRAIN.csv, then replay TEST.csv record by record as the edge "
        "runs it: TFLite forecasts per record, a speed model re-trained (with the training job's code) on "
        "every W rows and swapped in, the combiners and the online linear model learning each truth when it "
        "arrives (H records later). Prints RMSE/MAE per approach; with --json the last stdout line is "
        'JSON: {"approaches": {name: {"rmse", "mae"}}, "retrains", "rows", "horizon"}. Progress goes to stderr. '
        "Bad input exits with status 2.",
    )
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", metavar="TRAIN.csv", help="history the batch model is trained on")
    src.add_argument(
        "--scenario",
        choices=SCENARIO_CHOICES[1:],
        help="instead of --train/--test: a turbine scenario of docs/combination.md (step = test.csv + 8 degC)",
    )
    run.add_argument("--test", metavar="TEST.csv", help="the stream replayed through the edge (with --train)")
    run.add_argument("--target", help="column to forecast (default: the last numeric column)")
    run.add_argument("--columns", help="comma-separated feature columns (default: every numeric column)")
    run.add_argument(
        "--time-format",
        metavar="FMT",
        help="the timestamps' format if not ISO-8601 (strptime codes, naive = UTC), e.g. '%%m/%%d/%%Y %%H:%%M' "
        "for 1/1/2010 0:00",
    )
    _model_arguments(run)
    run.add_argument(
        "--speed-epochs", type=int, default=None, help="max epochs of each speed model (default: as --epochs)"
    )
    run.add_argument("--limit", type=int, default=None, help="replay only the first N test rows (selection studies)")
    run.add_argument("--save", metavar="FILE.npz", default=None, help="also save every forecast per row (.npz)")
    run.set_defaults(func=_run)

    bench = cmds.add_parser(
        "benchmark",
        help="the FSNet/OneNet online protocol on one CSV: every approach's MSE/MAE per channel, beside the papers'",
        description="Cut FILE.csv as the online-forecasting papers do (ETT: train rows 0-2,880, validation "
        "2,880-3,600, stream 3,600-14,400, x4 for ETTm files; other files 20/5/75 %% in time order), z-score every "
        "numeric column with the train rows' mean and standard deviation, then forecast each channel in turn "
        "(or --target) H readings ahead from all channels: the batch model trained on train + validation, the "
        "stream replayed as 'eval run' replays it (speed models every W rows, the combiners and the online "
        "linear model learning each truth when it arrives). Prints per-channel and mean MSE (MAE) of batch, "
        "speed, static, dynamic, persistence and online_linear, and the published FSNet/OneNet/LSTD MSE when the "
        'file is one of theirs (by name: ETTh2, ETTm1). --json: the last stdout line is {"file", "borders", '
        '"horizon", "window", "targets", "channels": {ch: {approach: {"mse", "mae"}}}, "mean": {approach: '
        '{"mse", "mae"}}, "rows", "published": {method: mse}}. See docs/combination.md.',
    )
    bench.add_argument("file", metavar="FILE.csv", help="one time-ordered CSV (header row; a timestamp column)")
    bench.add_argument("--target", help="forecast only this channel (default: each numeric column in turn)")
    bench.add_argument("--columns", help="comma-separated input channels (default: every numeric column)")
    _model_arguments(bench)
    bench.add_argument(
        "--borders",
        default=None,
        metavar="TRAIN,VAL,END",
        help="override the row borders (end of train, of validation, of the stream), e.g. 2880,3600,14400",
    )
    bench.add_argument("--save-dir", default=None, metavar="DIR", help="save each channel's forecasts as DIR/CH.npz")
    bench.add_argument(
        "--speed-epochs", type=int, default=None, help="max epochs of each speed model (default: as --epochs)"
    )
    bench.add_argument(
        "--validation",
        nargs="?",
        type=_first_row,
        const=-1,
        default=None,
        metavar="FIRST_ROW",
        help="instead of the stream: score each target's batch model on the validation rows only (its trainer "
        "holdout, never fitted), beside persistence and the online linear model with the same lags; the stream is "
        "not scored (no stream value is used), no speed model trained (choose lags or options on history, "
        "hybridstream/evaluation/validation.py)."
        " FIRST_ROW: score from this row (e.g. the holdout start of the longest lag window compared), so runs with "
        'different lags score the same rows. --json: {"file", "borders", "horizon", "targets", "validation": '
        '{"channels", "mean", "rows"}, "lags"}',
    )
    bench.set_defaults(func=_benchmark)

    experts = cmds.add_parser(
        "experts",
        help="which forecasts the dynamic combiner should blend, replayed over saved eval run results",
        description="Replay N-expert online stacking (batch, speed, persistence, online_linear; with and "
        "without the error guard) over .npz files written by 'eval run --save'; rank on the first halves.",
    )
    experts.add_argument("runs", nargs="+", metavar="RUN.npz")
    experts.add_argument("--out", default=None, help="write the tables (Markdown) and scores (JSON) here")
    experts.add_argument(
        "--family",
        choices=("all", "stacking", "weights"),
        default="all",
        help="weights: only the expert-weighting layer's grid (ContextStacking blend=experts); stacking: only "
        "N-expert stacking (default all)",
    )
    experts.set_defaults(func=_experts)

    iv = cmds.add_parser(
        "intervals",
        help="the edge's conformal intervals vs a rolling empirical quantile of the last N errors (saved runs)",
        description="For .npz files written by 'eval run --save': coverage over the stream, over the tenth "
        "furthest from nominal, and mean width of the dynamic forecast's 80 %% and 95 %% intervals, as the edge "
        "issues them (model_contract.conformal, from the run's interval warm start) and as the baseline "
        "(the empirical quantile of the last N absolute errors) on the same rows; beside them persistence's and "
        "the online linear model's forecasts with the same conformal intervals. Prints Markdown tables and the "
        "targets not met.",
    )
    iv.add_argument("runs", nargs="+", metavar="RUN.npz")
    iv.add_argument("--baseline-n", type=int, nargs="+", default=[200, 1000], help="N of the baseline(s)")
    iv.add_argument("--json", default=None, metavar="FILE", help="also write every score (with the tenths) here")
    iv.add_argument("--plot", default=None, metavar="PNG", help="plot the first run's forecast, bands and flags")
    iv.add_argument("--plot-start", type=int, default=0, help="first row of the plotted stretch")
    iv.add_argument("--plot-rows", type=int, default=400, help="rows in the plotted stretch (default 400)")
    iv.set_defaults(func=_intervals)

    table = cmds.add_parser(
        "table",
        help="the six approaches of saved eval run results side by side (Markdown)",
        description="RMSE over the whole stream (first half / second half) and skill vs persistence of every "
        "approach, one column per .npz written by 'eval run --save'.",
    )
    table.add_argument("runs", nargs="+", metavar="RUN.npz")
    table.add_argument("--digits", type=int, default=3, help="decimals of the RMSE cells (default 3)")
    table.add_argument(
        "--check",
        action="store_true",
        help="also a second table: does dynamic beat persistence, online_linear and every approach, "
        "over the whole stream and each half (relative margin, + = dynamic better)",
    )
    table.add_argument(
        "--regret",
        action="store_true",
        help="also a table of MSE / the best single approach's (whole, each half) for dynamic and each variant",
    )
    table.add_argument(
        "--adds",
        action="store_true",
        help="also a table of what each LSTM adds to dynamic (runs saved with --ablation): 1 - MSE(dynamic) / "
        "MSE(dynamic without it), whole and each half, and the speed model's at best (a fixed blend in hindsight)",
    )
    table.add_argument(
        "--headroom",
        action="store_true",
        help="also a table of hindsight ceilings over online_linear for a blend of the experts (not a result, and "
        "no bound on a combiner whose weights move faster): least squares of y on batch, speed, persistence and "
        "online_linear fitted on the scored stream itself, (a) one fixed blend, (b) refitted on every block of "
        "--block rows, each in sample and cross-fitted (with a small ridge), each also without the speed model "
        "(what it can add at best), beside dynamic's actual figures; whole and each half; with several runs also "
        "the mean of their MSEs",
    )
    table.add_argument(
        "--block",
        type=int,
        default=None,
        help="rows per block of --headroom's (b) (default: each run's window, e.g. 1,000)",
    )
    table.add_argument(
        "--intercept", action="store_true", help="--headroom's fits also get a constant term (default: none)"
    )
    table.add_argument(
        "--causal-half-life",
        type=float,
        default=None,
        help="--headroom's (c) causal online layer: its forgetting half-life in rows (default: 2,000)",
    )
    table.add_argument(
        "--causal-ridge",
        type=float,
        default=None,
        help="--headroom's (c) causal online layer: its ridge per weight, relative to the column's weighted sum "
        "of squares (default: 3)",
    )
    table.set_defaults(func=_table)

    plot = cmds.add_parser(
        "plot",
        help="plot one saved eval run: rolling RMSE of every approach and the dynamic blend's speed weight (PNG)",
        description="Two panels for a .npz written by 'eval run --save': the rolling RMSE of each approach "
        "(log scale) and the dynamic blend's weight on the speed model; speed-model swaps marked.",
    )
    plot.add_argument("run", metavar="RUN.npz")
    plot.add_argument("--out", default=None, help="PNG to write (default: RUN.png next to the .npz)")
    plot.add_argument("--roll", type=int, default=1000, help="rolling window in rows (default 1000)")
    plot.add_argument("--title", default="", help="figure title (default: the run's horizon and window)")
    plot.set_defaults(func=_plot)

    streams = cmds.add_parser(
        "streams",
        help="only compute (and cache) the prediction streams",
        description="Train the batch model and one speed model per window; record per-row forecasts.",
    )
    streams.add_argument("--scenario", choices=SCENARIO_CHOICES, default="all")
    common(streams)
    streams.set_defaults(func=_streams)


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``eval run`` and ``eval benchmark`` share (read by :func:`options.model_options`)."""
    from edge_app.config import Windows  # noqa: PLC0415  (the edge's default, which eval replays)
    from training_job.cli import positive_int  # noqa: PLC0415
    from training_job.recent_windows import DEFAULT_SPEED_WINDOWS  # noqa: PLC0415  (the trainer's default)

    p.add_argument(
        "--lags",
        nargs="+",
        default=None,
        help="lags in readings, e.g. --lags 1 2 3, 1,2,3 or 1-24 (default: the trainer's); eval benchmark also takes "
        "auto: each target's lags chosen on its history rows (training_job.lag_choice, as train pretrain --lags auto)",
    )
    p.add_argument("--horizon", type=int, default=1, help="forecast H readings ahead (default 1)")
    p.add_argument(
        "--calendar",
        default="day",
        metavar="day|none|NAMES",
        help="calendar features from each row's timestamp (UTC) at every lag step: day (default, the product's: "
        "time of day, 2 harmonics), year, day+year, none, or names (day_sin1,day_cos1,day_sin2,day_cos2,"
        "year_sin1,year_cos1); needs a timestamp column",
    )
    p.add_argument("--window", type=int, default=1000, help="rows per speed-model re-training (default 1000)")
    p.add_argument("--epochs", type=int, default=None, help="max training epochs (default: the trainer's, 50)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the trainer's)")
    p.add_argument(
        "--train-config",
        default=None,
        metavar="JSON",
        help="TrainConfig changes for the batch and speed models (default: the trainer's, with instance_norm and "
        'shrink on), e.g. \'{"instance_norm": false, "shrink": false}\' for the config before issue 17',
    )
    p.add_argument(
        "--speed-train-config",
        default=None,
        metavar="JSON",
        help="TrainConfig changes for the speed models instead of --train-config's, e.g. '{}' (the trainer's "
        "defaults) beside --train-config '{\"ol_residual\": true}' for the batch model",
    )
    p.add_argument(
        "--variants",
        default=None,
        metavar="JSON",
        help="more dynamic combiners replayed beside dynamic in the same pass (label -> config), e.g. "
        '\'{"experts": {"blend": "experts"}}\'',
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also replay dynamic without the speed model, without the batch model and without both (same pass)",
    )
    p.add_argument(
        "--warm-combiner",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the dynamic combiner starts from the batch model's warm start (its manifest's combiner_warm_start: "
        "the context stack's state after the training file, as every new edge device's; default); "
        "--no-warm-combiner: it starts fresh, as on an edge whose batch model ships none",
    )
    p.add_argument(
        "--warm-variants",
        action="store_true",
        help="a --variants combiner whose half_life, clip, max_change or error_half_life differ from the batch "
        "model's combiner warm start starts from the warm start the trainer would ship for its config (computed "
        "from the training file), as dynamic does from its own; default: cold, as an edge given that config today",
    )
    p.add_argument(
        "--faults",
        default=None,
        metavar="all|KINDS",
        help="inject sensor faults into the target of the stream (hybridstream/evaluation/faults.py): all, or some "
        "of spikes,stuck,alternate,step,gap (deterministic)",
    )
    p.add_argument(
        "--speed-windows",
        type=positive_int,
        default=DEFAULT_SPEED_WINDOWS,
        metavar="K",
        help="train each speed model (still one every --window rows) on the last K windows, K x --window rows "
        f"(fewer at the stream's start; default {DEFAULT_SPEED_WINDOWS}, the trainer's: train worker "
        "--speed-windows; 1: the window that just closed, the speed model before issue 17)",
    )
    p.add_argument(
        "--early-on-drift",
        action=argparse.BooleanOptionalAction,
        default=Windows().early_on_drift,
        help="replay the edge's early close on drift (the edge's windows.early_on_drift, off by default since issue "
        "17's measurement, docs/combination.md): its drift detector (drift.detector, default ADWIN) runs on the "
        "dynamic forecast's residual and an alarm closes the window, so a speed model is trained at once and the "
        "--window count starts again there; --no-early-on-drift (default, the edge's): a speed model every "
        "--window rows",
    )
    p.add_argument(
        "--speed-history",
        choices=("windows", "since-drift"),
        default="windows",
        help="what each speed model trains on: the last --speed-windows windows (default, the trainer's), or "
        "since-drift: only from the newest window that closed on drift while it is among them (issue 17: tried, did "
        "not hold, docs/combination.md)",
    )
    p.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fine-tune each speed model from the batch model's weights and scaler (default, the trainer's: train "
        "worker --batch-model latest); --no-warm-start: from scratch, the speed model before issue 17",
    )
    p.add_argument("--cache-dir", default=None, help="model cache (default .cache/eval; 'none' disables)")
    p.add_argument("--json", action="store_true", help="print the JSON summary as the last stdout line")


def _first_row(text: str) -> int:
    """``--validation FIRST_ROW``: a row number (the option alone, -1 internally, scores the whole holdout)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"FIRST_ROW must be a row number >= 0, not {value}")
    return value


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _input_errors_exit_2(
    command: str, body: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """``body``, printing an EvalInputError as ``hybridstream eval COMMAND: error: ...`` and exiting 2."""

    def handler(args: argparse.Namespace) -> int:
        from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415

        try:
            return body(args)
        except EvalInputError as exc:
            print(f"hybridstream eval {command}: error: {exc}", file=sys.stderr)
            return 2

    return handler


def _streams_of(args: argparse.Namespace, scenarios: list[str]) -> list:
    from edge_app.drift import DEFAULT_DETECTOR  # noqa: PLC0415
    from hybridstream.evaluation.streams import DEFAULT_CACHE, load_streams  # noqa: PLC0415

    on_drift = None
    if getattr(args, "retrain_on_drift", False):
        on_drift = dict(DEFAULT_DETECTOR) | (json.loads(args.drift_config) if args.drift_config else {})
    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    return load_streams(scenarios, args.window, args.delay, cache, _log, refresh=args.refresh, on_drift=on_drift)


def _out_dir(args: argparse.Namespace) -> Path:
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415

    out = Path(args.out) if args.out else DEFAULT_CACHE / "results"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _streams(args: argparse.Namespace) -> int:
    from hybridstream.evaluation.streams import scenario_names  # noqa: PLC0415

    for s in _streams_of(args, scenario_names(args.scenario)):
        print(f"{s.scenario} W={s.window}: {len(s)} rows, {len(s.meta.get('speed_models', []))} speed models")
    return 0


def _combiners(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import combiner_study  # noqa: PLC0415
    from hybridstream.evaluation.streams import drift_tag, scenario_names  # noqa: PLC0415

    streams = _streams_of(args, scenario_names(args.scenario))
    tag = f"{args.scenario}-w{'_'.join(map(str, args.window))}-d{args.delay}"
    if args.retrain_on_drift:
        tag += next((drift_tag(x.meta.get("on_drift")) for x in streams if x.meta.get("on_drift")), "")
    md, ranking, current = combiner_study.run_study(streams, _out_dir(args), tag, _log)
    print(md)
    print(f"robust choice on this run (first halves): {ranking[0][0]}; current default: {current}")
    if args.plot:
        from hybridstream.evaluation.plots import plot_combiner_study  # noqa: PLC0415

        for path in plot_combiner_study(streams, ranking, current, args.plot):
            _log(f"plot {path}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import drift_study, report  # noqa: PLC0415
    from hybridstream.evaluation.data import STEP_SPAN  # noqa: PLC0415

    window = args.window[0]
    args.window = [window]
    residuals = drift_study.residuals_of(_streams_of(args, ["none", "step", "gradual", "abrupt"]))
    _log(f"running {len(drift_study.CANDIDATES)} detectors...")
    results = drift_study.study(residuals, STEP_SPAN, log=_log)
    ranking = drift_study.rank(results)
    current = drift_study.default_label()
    md = report.drift_tables(results, ranking, current)
    print(md)
    print(f"best by this run: {ranking[0][0] if ranking else 'none qualifies'}; current default: {current}")
    out, tag = _out_dir(args), f"w{window}-d{args.delay}"
    drift_study.write_results(out, tag, results, ranking, current, md)
    _log(f"wrote {out}/drift-{tag}.json and .md")
    if args.plot:
        from hybridstream.evaluation.plots import plot_drift_study  # noqa: PLC0415

        path = Path(args.plot) / f"drift-w{window}.png"
        _log(f"plot {plot_drift_study(residuals, results, current, path, STEP_SPAN)}")
    return 0


def _run_checked(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import options, report, run_input  # noqa: PLC0415
    from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415
    from hybridstream.evaluation.online_run import run_stream  # noqa: PLC0415

    opts = options.model_options(args)
    if opts.auto_lags:
        raise EvalInputError("--lags auto: eval benchmark chooses lags on a history; give eval run the lags to use")
    if args.window < 50:
        raise EvalInputError("--window must be at least 50 rows")
    if args.scenario:
        if args.test or args.target or args.columns:
            raise EvalInputError("--scenario replaces --train/--test/--target/--columns")
        train, test, spec, names = run_input.scenario_input(args.scenario, opts.lags, opts.horizon, opts.calendar)
    else:
        if not args.test:
            raise EvalInputError("--test TEST.csv is required with --train")
        train, test, spec, names = run_input.csv_pair_input(
            args.train,
            args.test,
            time_format=args.time_format,
            target=args.target,
            columns=options.parse_columns(args.columns),
            lags=opts.lags,
            horizon=opts.horizon,
            calendar=opts.calendar,
            log=_log,
        )
    run_input.check_lengths(train, test, spec, names, args.window, _log)
    if args.limit:
        test = test[: args.limit]
    if args.faults:
        test = options.inject_faults(test, spec.target_index, args.faults, _log)
    result = run_stream(
        train,
        test,
        spec,
        args.window,
        cfg=opts.cfg,
        speed_cfg=(opts.speed_cfg or opts.cfg).replace(epochs=args.speed_epochs)
        if args.speed_epochs
        else opts.speed_cfg,
        warm_start=args.warm_start,
        speed_windows=args.speed_windows,
        early_on_drift=args.early_on_drift,
        since_drift=args.speed_history == "since-drift",
        warm_combiner=args.warm_combiner,
        cache_dir=opts.cache_dir,
        log=_log,
        variants=opts.variants,
        warm_variants=args.warm_variants,
    )
    if args.save:
        _log(f"forecasts saved to {result.save(args.save)}")
    print(report.run_table(result))
    if args.json:
        print(json.dumps(result.summary()), flush=True)
    return 0


def _benchmark_checked(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import benchmark, csv_input, options  # noqa: PLC0415

    opts = options.model_options(args)
    try:
        override = [int(x) for x in args.borders.split(",")] if args.borders else None
    except ValueError:
        raise csv_input.EvalInputError("--borders: expected integers, e.g. --borders 2880,3600,14400") from None
    _log(f"reading {args.file}...")
    table = csv_input.read_table(args.file)
    columns, targets = benchmark.channels(table, options.parse_columns(args.columns), args.target)
    prep = benchmark.prepare(table, columns, opts.calendar, override)
    ts = table.timestamp_column or "timestamp"

    def make_spec(target: str):
        return benchmark.channel_spec(columns, target, opts.lags, opts.horizon, ts, opts.calendar)

    choices: dict = {}
    if opts.auto_lags:
        from training_job.lag_choice import readings_per_day  # noqa: PLC0415

        make_spec, choices = benchmark.lags_on_history(prep, make_spec, readings_per_day(csv_input.epochs(table)), _log)

    if args.validation is not None:
        return _validation(args, prep, targets, make_spec, opts, choices)
    spec0 = make_spec(targets[0])
    if args.window < 2 * (spec0.max_lag + spec0.horizon) + 10:
        raise csv_input.EvalInputError(
            f"--window {args.window} is too small for lags {spec0.lags} and horizon {spec0.horizon}"
        )
    b = prep.borders
    _log(
        f"borders: train [0, {b[0]}), validation [{b[0]}, {b[1]}), stream [{b[1]}, {b[2]}); channels "
        f"{', '.join(columns)}; targets {', '.join(targets)}; lags {spec0.lags}; horizon {args.horizon}; "
        f"calendar {', '.join(opts.calendar) or 'none'}"
    )
    res = benchmark.run_benchmark(
        prep,
        targets,
        make_spec,
        args.window,
        cfg=opts.cfg,
        speed_cfg=(opts.speed_cfg or opts.cfg).replace(epochs=args.speed_epochs)
        if args.speed_epochs
        else opts.speed_cfg,
        cache_dir=opts.cache_dir,
        log=_log,
        variants=opts.variants,
        stream_hook=(lambda m, ti, lead: options.inject_faults(m, ti, args.faults, _log, lead))
        if args.faults
        else None,
        save_dir=Path(args.save_dir) if args.save_dir else None,
        warm_start=args.warm_start,
        speed_windows=args.speed_windows,
        early_on_drift=args.early_on_drift,
        since_drift=args.speed_history == "since-drift",
        warm_combiner=args.warm_combiner,
        warm_variants=args.warm_variants,
    )
    pub = {} if args.faults else benchmark.published(args.file, args.horizon)
    print(benchmark.table_markdown(res, pub))
    if args.json:
        summary = benchmark.summary(args.file, prep, args.horizon, args.window, targets, res, pub)
        if choices:
            summary["lags"] = {t: c["lags"] for t, c in choices.items()}
        print(json.dumps(summary), flush=True)
    return 0


def _validation(args: argparse.Namespace, prep, targets: list[str], make_spec, opts, choices: dict) -> int:
    """``eval benchmark --validation``: the batch model against the baselines on the validation rows only."""
    from hybridstream.evaluation import validation  # noqa: PLC0415

    b = prep.borders
    _log(f"validation only: train [0, {b[0]}), validation [{b[0]}, {b[1]}); the stream is not scored")
    res = validation.validation_scores(
        prep.matrix,
        b,
        targets,
        make_spec,
        cfg=opts.cfg,
        cache_dir=opts.cache_dir,
        first_row=None if args.validation < 0 else args.validation,
        log=_log,
    )
    print(validation.table_markdown(res))
    if args.json:
        summary = {"file": Path(args.file).name, "borders": list(b), "horizon": args.horizon, "targets": targets}
        summary |= {"validation": res, "lags": {t: list(make_spec(t).lags) for t in targets}}
        print(json.dumps(summary), flush=True)
    return 0


_run = _input_errors_exit_2("run", _run_checked)
_benchmark = _input_errors_exit_2("benchmark", _benchmark_checked)


def _experts(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import expert_study, report  # noqa: PLC0415
    from hybridstream.evaluation.online_run import APPROACHES, RunResult  # noqa: PLC0415

    cands = expert_study.candidates()
    if args.family != "all":
        cands = {k: v for k, v in cands.items() if k.startswith("weights ") == (args.family == "weights")}
    scores = {}
    for path in args.runs:
        result = RunResult.load(path)
        key = Path(path).stem
        _log(f"{key}: replaying {len(cands)} candidates over {len(result.y)} rows...")
        scores[key] = expert_study.score_run(result, cands)
    ranking = expert_study.select(scores, list(cands))
    second = expert_study.select(scores, list(cands), "rmse_second_half")
    md = report.experts_tables(scores, ranking, second, APPROACHES)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "experts.md").write_text(md + "\n")
        (out / "experts.json").write_text(json.dumps({"scores": scores, "ranking": ranking}, indent=1))
        _log(f"wrote {out}/experts.md and .json")
    return 0


def _intervals(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import interval_study  # noqa: PLC0415

    missing = [p for p in args.runs if not Path(p).is_file()]
    if missing:
        print(f"hybridstream eval intervals: error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    res = interval_study.compare(args.runs, args.baseline_n)
    print(interval_study.markdown(res))
    for line in interval_study.targets(res, f"rolling-{max(args.baseline_n)}") or ["every target met"]:
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.plot:
        _log(f"wrote {interval_study.plot(args.runs[0], args.plot, args.plot_start, args.plot_rows)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from hybridstream.evaluation.online_run import RunResult  # noqa: PLC0415
    from hybridstream.evaluation.plots import plot_run  # noqa: PLC0415

    run = Path(args.run)
    if not run.is_file():
        _log(f"error: no such run file: {run}")
        return 2
    if args.roll < 1:
        _log("error: --roll must be >= 1")
        return 2
    out = plot_run(RunResult.load(run), args.out or run.with_suffix(".png"), roll=args.roll, title=args.title)
    print(out)
    return 0


def _table(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import report  # noqa: PLC0415
    from hybridstream.evaluation.online_run import APPROACHES, RunResult  # noqa: PLC0415

    results = {Path(p).stem: RunResult.load(p) for p in args.runs}
    scores = {k: r.scores(variants=True) for k, r in results.items()}
    extra = [
        v
        for v in dict.fromkeys(k for r in results.values() for k in r.variants)
        if all(v in s for s in scores.values())
    ]
    print(report.saved_runs_table(scores, [*APPROACHES, *extra], args.digits))
    if args.check:
        print(
            "\n" + report.beats_table({k: {n: v for n, v in s.items() if n in APPROACHES} for k, s in scores.items()})
        )
    if args.regret:
        print("\n" + report.regret_table(scores, ["dynamic", *extra]))
    if args.adds:
        print("\n" + report.adds_table(results))
    if args.headroom:
        if args.block is not None and args.block < 1:
            _log("error: --block must be >= 1")
            return 2
        from edge_app.correction_layer import check  # noqa: PLC0415
        from hybridstream.evaluation.headroom import CAUSAL_HALF_LIFE, CAUSAL_RIDGE  # noqa: PLC0415

        half_life = CAUSAL_HALF_LIFE if args.causal_half_life is None else args.causal_half_life
        ridge = CAUSAL_RIDGE if args.causal_ridge is None else args.causal_ridge
        try:  # the layer's own check (NaN refused too)
            causal = check(half_life, ridge, ("--causal-half-life", "--causal-ridge"))
        except ValueError as exc:
            _log(f"error: {exc}")
            return 2
        print("\n" + report.headroom_table(_headrooms(results, args.block, args.intercept, causal)))
    return 0


def _headrooms(results: dict, block: int | None, intercept: bool, causal: tuple[float, float]) -> dict:
    """``eval table --headroom``'s results per run; ``causal``: the (c) layer's half-life and ridge."""
    from hybridstream.evaluation.headroom import headroom  # noqa: PLC0415

    half_life, ridge = causal
    out = {}
    for name, r in results.items():
        shown = {"dynamic": r.forecasts["dynamic"]}
        if "dynamic no speed" in r.variants:
            shown["dynamic no speed"] = r.variants["dynamic no speed"]
        out[name] = headroom(
            r.y,
            r.forecasts,
            block or r.window,
            intercept=intercept,
            dynamic=shown,
            horizon=r.spec.horizon,
            causal_half_life=half_life,
            causal_ridge=ridge,
        )
    return out
