"""``hybridstream eval``: measure the combination strategies and the drift detectors offline."""

from __future__ import annotations

import argparse
import json
import sys
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
        "--lags", nargs="+", default=None, help="lags in readings, e.g. --lags 1 2 3 or 1,2,3 (default: the trainer's)"
    )
    run.add_argument("--horizon", type=int, default=1, help="forecast H readings ahead (default 1)")
    run.add_argument(
        "--calendar",
        default="day",
        metavar="day|none|NAMES",
        help="calendar features from each row's timestamp (UTC) at every lag step: day (default, the product's: "
        "time of day, 2 harmonics), year, day+year, none, or names (day_sin1,day_cos1,day_sin2,day_cos2,"
        "year_sin1,year_cos1); needs a timestamp column",
    )
    run.add_argument(
        "--time-format",
        metavar="FMT",
        help="the timestamps' format if not ISO-8601 (strptime codes, naive = UTC), e.g. '%%m/%%d/%%Y %%H:%%M' "
        "for 1/1/2010 0:00",
    )
    run.add_argument("--window", type=int, default=1000, help="rows per speed-model re-training (default 1000)")
    run.add_argument("--epochs", type=int, default=None, help="max training epochs (default: the trainer's, 50)")
    run.add_argument(
        "--speed-epochs", type=int, default=None, help="max epochs of each speed model (default: as --epochs)"
    )
    run.add_argument("--seed", type=int, default=None, help="training seed (default: the trainer's)")
    run.add_argument(
        "--train-config",
        default=None,
        metavar="JSON",
        help='TrainConfig changes for the batch and speed models, e.g. \'{"instance_norm": true, "shrink": true}\'',
    )
    run.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fine-tune each speed model from the batch model's weights (default: the study's choice)",
    )
    run.add_argument(
        "--warm-combiner",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the dynamic combiner starts from the batch model's warm start (its manifest's combiner_warm_start: "
        "the context stack's state after the training file, as every new edge device's; default); "
        "--no-warm-combiner: it starts fresh, as on an edge whose batch model ships none",
    )
    run.add_argument("--cache-dir", default=None, help="batch-model cache (default .cache/eval; 'none' disables)")
    run.add_argument("--json", action="store_true", help="print the JSON summary as the last stdout line")
    run.add_argument("--limit", type=int, default=None, help="replay only the first N test rows (selection studies)")
    run.add_argument("--save", metavar="FILE.npz", default=None, help="also save every forecast per row (.npz)")
    run.add_argument(
        "--faults",
        default=None,
        metavar="all|KINDS",
        help="inject sensor faults into the target of the stream (hybridstream/evaluation/faults.py): all, or some "
        "of spikes,stuck,alternate,step,gap (deterministic)",
    )
    run.add_argument(
        "--variants",
        default=None,
        metavar="JSON",
        help="more dynamic combiners replayed beside dynamic in the same pass (label -> config), e.g. "
        '\'{"experts": {"blend": "experts"}}\'',
    )
    run.add_argument(
        "--ablation",
        action="store_true",
        help="also replay dynamic without the speed model, without the batch model and without both (same pass)",
    )
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
    bench.add_argument("--horizon", type=int, default=1, help="forecast H readings ahead (default 1)")
    bench.add_argument(
        "--lags", nargs="+", default=None, help="lags in readings, e.g. --lags 1-24 (default: the trainer's)"
    )
    bench.add_argument(
        "--calendar", default="day", metavar="day|none|NAMES", help="calendar features (as eval run; default day)"
    )
    bench.add_argument("--window", type=int, default=1000, help="rows per speed-model re-training (default 1000)")
    bench.add_argument("--epochs", type=int, default=None, help="max training epochs (default: the trainer's)")
    bench.add_argument("--seed", type=int, default=None, help="training seed (default: the trainer's)")
    bench.add_argument(
        "--train-config",
        default=None,
        metavar="JSON",
        help='TrainConfig changes for the batch and speed models, e.g. \'{"instance_norm": true, "shrink": true}\'',
    )
    bench.add_argument(
        "--borders",
        default=None,
        metavar="TRAIN,VAL,END",
        help="override the row borders (end of train, of validation, of the stream), e.g. 2880,3600,14400",
    )
    bench.add_argument(
        "--variants",
        default=None,
        metavar="JSON",
        help="more dynamic combiners replayed beside dynamic in the same pass (label -> config), e.g. "
        '\'{"experts": {"blend": "experts"}}\'',
    )
    bench.add_argument(
        "--ablation",
        action="store_true",
        help="also score dynamic without the speed model, without the batch model and without both",
    )
    bench.add_argument(
        "--faults",
        default=None,
        metavar="all|KINDS",
        help="inject sensor faults into the target of the stream (hybridstream/evaluation/faults.py): all, or some "
        "of spikes,stuck,alternate,step,gap (deterministic)",
    )
    bench.add_argument("--save-dir", default=None, metavar="DIR", help="save each channel's forecasts as DIR/CH.npz")
    bench.add_argument("--cache-dir", default=None, help="model cache (default .cache/eval; 'none' disables)")
    bench.add_argument("--json", action="store_true", help="print the JSON summary as the last stdout line")
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
        "(the empirical quantile of the last N absolute errors) on the same rows. Prints Markdown tables and "
        "the targets not met.",
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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _scenarios(choice: str) -> list[str]:
    from hybridstream.evaluation.data import MAIN_SCENARIOS  # noqa: PLC0415

    return [*MAIN_SCENARIOS, "step"] if choice == "all" else [choice]


def _load(args: argparse.Namespace, scenarios: list[str]):
    from edge_app.drift import DEFAULT_DETECTOR  # noqa: PLC0415
    from hybridstream.evaluation.streams import DEFAULT_CACHE, attach_baselines, get_stream  # noqa: PLC0415

    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    detector = dict(DEFAULT_DETECTOR)
    if getattr(args, "drift_config", None):
        detector |= json.loads(args.drift_config)
    variants = [None] + ([detector] if getattr(args, "retrain_on_drift", False) else [])
    out = []
    for window in args.window:
        for name in scenarios:
            for on_drift in variants:
                extra = " with early retraining on drift" if on_drift else ""
                _log(f"stream {name} W={window} delay={args.delay}{extra} (cached in {cache})")
                stream = get_stream(name, window, args.delay, cache, log=_log, refresh=args.refresh, on_drift=on_drift)
                out.append(attach_baselines(stream))
    return out


def _out_dir(args: argparse.Namespace) -> Path:
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415

    out = Path(args.out) if args.out else DEFAULT_CACHE / "results"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _streams(args: argparse.Namespace) -> int:
    for s in _load(args, _scenarios(args.scenario)):
        print(f"{s.scenario} W={s.window}: {len(s)} rows, {len(s.meta.get('speed_models', []))} speed models")
    return 0


def default_label() -> str:
    """The candidate label of the current ``dynamic`` default."""
    from edge_app.combiners import DEFAULT_DYNAMIC  # noqa: PLC0415
    from hybridstream.evaluation.replay import candidate_grid  # noqa: PLC0415

    cfg = {"strategy": "dynamic"} | DEFAULT_DYNAMIC
    for label, c in candidate_grid().items():
        if c == cfg:
            return label
    raise RuntimeError(f"the default {cfg} is not among the study's candidates")


def _combiners(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import report  # noqa: PLC0415
    from hybridstream.evaluation.replay import all_candidates, candidate_grid, replay, score, select  # noqa: PLC0415
    from hybridstream.evaluation.streams import drift_tag  # noqa: PLC0415

    streams = _load(args, _scenarios(args.scenario))
    candidates = all_candidates()
    _log(f"replaying {len(candidates)} combiners over {len(streams)} streams...")
    scores = score(streams, candidates)
    ranking = select(scores, candidate_grid())
    chosen = ranking[0][0]
    current = default_label()
    md = report.combiner_tables(scores, ranking, chosen, current)
    print(md)
    print(f"robust choice on this run (first halves): {chosen}; current default: {current}")
    out = _out_dir(args)
    tag = f"{args.scenario}-w{'_'.join(map(str, args.window))}-d{args.delay}"
    if args.retrain_on_drift:
        tag += next((drift_tag(x.meta.get("on_drift")) for x in streams if x.meta.get("on_drift")), "")
    (out / f"combiners-{tag}.json").write_text(
        json.dumps({"scores": scores, "ranking": ranking, "chosen": chosen, "default": current}, indent=1)
    )
    (out / f"combiners-{tag}.md").write_text(md)
    _log(f"wrote {out}/combiners-{tag}.json and .md")
    if args.plot:
        from hybridstream.evaluation.plots import plot_scenario  # noqa: PLC0415

        # the default, and the best other families (by the ranking) for contrast
        others = []
        for label, *_ in ranking:
            fam = report.family(label)
            if fam != report.family(current) and fam not in [report.family(o) for o in others]:
                others.append(label)
            if len(others) == 2:
                break
        shown = ["batch", "speed", "static 0.3 (prototype)", current, *others]
        for s in streams:
            results = {label: replay(s, candidates[label]) for label in shown}
            results[f"{current} (default)"] = results.pop(current)
            suffix = drift_tag(s.meta.get("on_drift"))
            path = plot_scenario(
                s,
                results,
                Path(args.plot) / f"combiners-{s.scenario}-w{s.window}{suffix}.png",
                weight_labels=[f"{current} (default)", *others],
                title=f"{s.scenario}: {s.meta.get('description', '')} — speed window {s.window} rows"
                + (" + early re-training on drift" if s.meta.get("on_drift") else ""),
            )
            _log(f"plot {path}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from edge_app.drift import DEFAULT_DETECTOR  # noqa: PLC0415
    from hybridstream.evaluation import drift_study, report  # noqa: PLC0415
    from hybridstream.evaluation.data import STEP_SPAN  # noqa: PLC0415
    from hybridstream.evaluation.replay import replay  # noqa: PLC0415

    window = args.window[0]
    args.window = [window]
    streams = {s.scenario: s for s in _load(args, ["none", "step", "gradual", "abrupt"])}
    residuals = {}
    for name, s in streams.items():
        residuals[f"{name}/hybrid"] = replay(s, {"strategy": "dynamic"}).hybrid - s.y
        residuals[f"{name}/batch"] = s.batch - s.y
        residuals[f"{name}/speed"] = s.speed - s.y
    _log(f"running {len(drift_study.CANDIDATES)} detectors...")
    results = drift_study.study(residuals, STEP_SPAN, log=_log)
    ranking = drift_study.rank(results)
    current = next(label for label, cfg in drift_study.CANDIDATES.items() if cfg == DEFAULT_DETECTOR)
    md = report.drift_tables(results, ranking, current)
    print(md)
    print(f"best by this run: {ranking[0][0] if ranking else 'none qualifies'}; current default: {current}")
    out = _out_dir(args)
    tag = f"w{window}-d{args.delay}"
    slim = {
        label: row
        | {"streams": {k: {kk: vv for kk, vv in v.items() if kk != "alarms"} for k, v in row["streams"].items()}}
        for label, row in results.items()
    }
    (out / f"drift-{tag}.json").write_text(
        json.dumps({"results": slim, "ranking": ranking, "default": current}, indent=1)
    )
    (out / f"drift-{tag}.md").write_text(md)
    _log(f"wrote {out}/drift-{tag}.json and .md")
    if args.plot:
        from hybridstream.evaluation.plots import plot_drift  # noqa: PLC0415

        shown = [current, "adwin d=2e-3", "cusum h=20", "ph thr=25"]
        keys = ["none/hybrid", "step/hybrid", "step/batch", "gradual/hybrid", "abrupt/hybrid"]
        alarms = {
            label: {k: results[label]["streams"][k]["alarms"] for k in keys}
            for label in dict.fromkeys(shown)
            if label in results
        }
        path = plot_drift({k: residuals[k] for k in keys}, alarms, Path(args.plot) / f"drift-w{window}.png", STEP_SPAN)
        _log(f"plot {path}")
        del np
    return 0


def _parse_lags(values: list[str] | None) -> tuple[int, ...] | None:
    if not values:
        return None
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                out += list(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    return tuple(out)


def _run(args: argparse.Namespace) -> int:
    from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415

    try:
        return _run_checked(args)
    except EvalInputError as exc:
        print(f"hybridstream eval run: error: {exc}", file=sys.stderr)
        return 2


def _run_checked(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import csv_input, report  # noqa: PLC0415
    from hybridstream.evaluation.data import SCENARIOS, load_scenario  # noqa: PLC0415
    from hybridstream.evaluation.online_run import DEFAULT_WARM_START, run_stream  # noqa: PLC0415
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415
    from model_contract import FeatureSpec  # noqa: PLC0415
    from model_contract.calendar import parse_calendar_option  # noqa: PLC0415

    err = csv_input.EvalInputError
    try:
        lags = _parse_lags(args.lags)
    except ValueError:
        raise err(f"--lags: expected integers, e.g. --lags 1 2 3 (got {' '.join(args.lags)})") from None
    lags = lags or FeatureSpec().lags
    try:
        calendar = parse_calendar_option(args.calendar)
    except ValueError as exc:
        raise err(f"--calendar: {exc}") from None
    if args.horizon < 1:
        raise err("--horizon must be >= 1")
    if args.window < 50:
        raise err("--window must be at least 50 rows")
    if args.scenario:
        if args.test or args.target or args.columns:
            raise err("--scenario replaces --train/--test/--target/--columns")
        try:
            spec = FeatureSpec(lags=lags, horizon=args.horizon, calendar=calendar)
        except ValueError as exc:
            raise err(str(exc)) from None
        train, test = load_scenario(SCENARIOS[args.scenario], spec)
        names = (f"scenario {args.scenario}", SCENARIOS[args.scenario].description)
    else:
        if not args.test:
            raise err("--test TEST.csv is required with --train")
        _log(f"reading {args.train} and {args.test}...")
        t_train, t_test = (csv_input.read_table(f, args.time_format) for f in (args.train, args.test))
        columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
        spec = csv_input.choose_spec(t_train, t_test, args.target, columns, lags, args.horizon, calendar)
        train, test = csv_input.to_matrix(t_train, spec), csv_input.to_matrix(t_test, spec)
        for table in (t_train, t_test):
            problem = csv_input.timestamp_order_problem(table)
            if problem:
                _log(f"warning: {problem}")
        names = (args.train, args.test)
        _log(
            f"columns {', '.join(spec.columns)}; target {spec.target}; timestamp column "
            f"{t_train.timestamp_column or '(none detected)'}; lags {spec.lags}; horizon {spec.horizon}; "
            f"calendar {', '.join(spec.calendar) or 'none'}"
        )
    need = spec.max_lag + spec.horizon
    min_train = max(100, 10 * need)
    if len(train) < min_train:
        raise err(f"{names[0]}: {len(train)} rows; the batch model needs at least {min_train} (lags and horizon)")
    if len(test) < need + 10:
        raise err(f"{names[1]}: {len(test)} rows; at least {need + 10} are needed to score forecasts")
    if args.window >= len(test):
        _log(f"warning: the test stream ({len(test)} rows) is shorter than one window: no speed model is re-trained")
    from training_job.model import TrainConfig  # noqa: PLC0415

    cfg = TrainConfig()
    if args.epochs:
        cfg = cfg.replace(epochs=args.epochs)
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)
    cfg = _train_config(args, cfg)
    cache = None if args.cache_dir == "none" else (Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)
    warm = DEFAULT_WARM_START if args.warm_start is None else args.warm_start
    speed_cfg = cfg.replace(epochs=args.speed_epochs) if args.speed_epochs else None
    if args.limit:
        test = test[: args.limit]
    if args.faults:
        test = _with_faults(test, spec.target_index, args.faults)
    result = run_stream(
        train,
        test,
        spec,
        args.window,
        cfg=cfg,
        speed_cfg=speed_cfg,
        warm_start=warm,
        warm_combiner=args.warm_combiner,
        cache_dir=cache,
        log=_log,
        variants=_variants(args),
    )
    if args.save:
        _log(f"forecasts saved to {result.save(args.save)}")
    print(report.run_table(result))
    if args.json:
        print(json.dumps(result.summary()), flush=True)
    return 0


ABLATION = {
    "dynamic no speed": {"strategy": "dynamic", "use_speed": False},
    "dynamic no batch": {"strategy": "dynamic", "use_batch": False},
    "dynamic neither": {"strategy": "dynamic", "use_batch": False, "use_speed": False},
}


def _train_config(args: argparse.Namespace, cfg):
    """``cfg`` with ``--train-config`` applied (EvalInputError on bad JSON or an unknown key)."""
    from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415

    if not args.train_config:
        return cfg
    try:
        return cfg.replace(**json.loads(args.train_config))
    except (json.JSONDecodeError, TypeError) as exc:
        raise EvalInputError(f"--train-config: {exc}") from None


def _variants(args: argparse.Namespace) -> dict | None:
    from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415

    out = dict(ABLATION) if args.ablation else {}
    if args.variants:
        try:
            extra = json.loads(args.variants)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"--variants: not JSON ({exc})") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise EvalInputError(
                '--variants: a JSON object of label -> combiner config, e.g. {"x": {"blend": "experts"}}'
            )
        out |= {f"dynamic {k}": {"strategy": "dynamic"} | v for k, v in extra.items()}
    return out or None


def _with_faults(test, target_index: int, option: str, skip: int = 0):
    from hybridstream.evaluation import faults  # noqa: PLC0415
    from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415

    try:
        out, where = faults.inject(test, target_index, faults.parse_kinds(option), skip=skip)
    except ValueError as exc:
        raise EvalInputError(f"--faults: {exc}") from None
    _log("faults injected (stream rows): " + ", ".join(f"{k} {a}-{b}" for k, (a, b) in where.items()))
    return out


def _benchmark(args: argparse.Namespace) -> int:
    from hybridstream.evaluation.csv_input import EvalInputError  # noqa: PLC0415

    try:
        return _benchmark_checked(args)
    except EvalInputError as exc:
        print(f"hybridstream eval benchmark: error: {exc}", file=sys.stderr)
        return 2


def _benchmark_checked(args: argparse.Namespace) -> int:
    from hybridstream.evaluation import benchmark, csv_input  # noqa: PLC0415
    from hybridstream.evaluation.streams import DEFAULT_CACHE  # noqa: PLC0415
    from model_contract import FeatureSpec  # noqa: PLC0415
    from model_contract.calendar import parse_calendar_option  # noqa: PLC0415
    from training_job.model import TrainConfig  # noqa: PLC0415

    err = csv_input.EvalInputError
    try:
        lags = _parse_lags(args.lags) or FeatureSpec().lags
        override = [int(x) for x in args.borders.split(",")] if args.borders else None
    except ValueError:
        raise err("--lags and --borders take integers, e.g. --lags 1-24 --borders 2880,3600,14400") from None
    try:
        calendar = parse_calendar_option(args.calendar)
    except ValueError as exc:
        raise err(f"--calendar: {exc}") from None
    if args.horizon < 1:
        raise err("--horizon must be >= 1")
    _log(f"reading {args.file}...")
    table = csv_input.read_table(args.file)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else list(table.numeric)
    bad = [c for c in columns if c not in table.numeric]
    if bad or not columns:
        raise err(f"{args.file}: not numeric column(s) {bad or columns} (numeric: {table.numeric})")
    if args.target and args.target not in columns:
        raise err(f"{args.file}: target {args.target!r} is not one of the input channels {columns}")
    targets = [args.target] if args.target else columns
    prep = benchmark.prepare(table, columns, calendar, override)
    ts = table.timestamp_column or "timestamp"

    def make_spec(target: str) -> FeatureSpec:
        try:
            return FeatureSpec(
                columns=tuple(columns),
                target=target,
                lags=lags,
                horizon=args.horizon,
                timestamp_column=ts,
                calendar=calendar,
            )
        except ValueError as exc:
            raise err(str(exc)) from None

    spec0 = make_spec(targets[0])
    if args.window < 2 * (spec0.max_lag + spec0.horizon) + 10:
        raise err(f"--window {args.window} is too small for lags {spec0.lags} and horizon {spec0.horizon}")
    b = prep.borders
    _log(
        f"borders: train [0, {b[0]}), validation [{b[0]}, {b[1]}), stream [{b[1]}, {b[2]}); channels "
        f"{', '.join(columns)}; targets {', '.join(targets)}; lags {spec0.lags}; horizon {args.horizon}; "
        f"calendar {', '.join(calendar) or 'none'}"
    )
    cfg = TrainConfig()
    if args.epochs:
        cfg = cfg.replace(epochs=args.epochs)
    if args.seed is not None:
        cfg = cfg.replace(seed=args.seed)
    cfg = _train_config(args, cfg)
    cache = None if args.cache_dir == "none" else (Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)
    res = benchmark.run_benchmark(
        prep,
        targets,
        make_spec,
        args.window,
        cfg=cfg,
        cache_dir=cache,
        log=_log,
        variants=_variants(args),
        stream_hook=(lambda m, ti, lead: _with_faults(m, ti, args.faults, lead)) if args.faults else None,
        save_dir=Path(args.save_dir) if args.save_dir else None,
    )
    pub = {} if args.faults else benchmark.published(args.file, args.horizon)
    print(benchmark.table_markdown(res, pub))
    if args.json:
        summary = {
            "file": Path(args.file).name,
            "borders": list(b),
            "horizon": args.horizon,
            "window": args.window,
            "targets": targets,
            "channels": res["channels"],
            "mean": res["mean"],
            "rows": res["rows"],
            "published": pub,
        }
        print(json.dumps(summary), flush=True)
    return 0


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
    keys = list(scores)
    head = ["approach", *keys]
    top = [label for label, *_ in ranking[:8]]
    rows = [[name] + [scores[k][name]["rmse"] for k in keys] for name in [*APPROACHES, *top]]
    md = "### RMSE over the whole stream\n\n" + report.md_table(head, rows)
    rank_rows = []
    for label, worst, mean in ranking[:15]:
        second = expert_study.select(scores, list(cands), "rmse_second_half")
        w2 = next(r for r in second if r[0] == label)
        rank_rows.append([label, worst, mean, w2[1], w2[2]])
    md += "\n\n### Selection (regret on the first halves; second halves beside)\n\n" + report.md_table(
        ["candidate", "worst (1st)", "mean (1st)", "worst (2nd)", "mean (2nd)"], rank_rows
    )
    halves = [
        [name] + [f"{scores[k][name]['rmse_first_half']:.3f} / {scores[k][name]['rmse_second_half']:.3f}" for k in keys]
        for name in [*APPROACHES, *top[:3]]
    ]
    md += "\n\n### RMSE first half / second half\n\n" + report.md_table(head, halves)
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
    head = ["approach", *scores]
    d = max(0, int(args.digits))
    rows = []
    extra = [
        v
        for v in dict.fromkeys(k for r in results.values() for k in r.variants)
        if all(v in s for s in scores.values())
    ]
    for name in [*APPROACHES, *extra]:
        cells = [name]
        for k in scores:
            v, base = scores[k][name], scores[k]["persistence"]["rmse"]
            cells.append(
                f"{v['rmse']:.{d}f} ({v['rmse_first_half']:.{d}f} / {v['rmse_second_half']:.{d}f}) "
                f"{100 * (1 - v['rmse'] / base):+.1f} %"
            )
        rows.append(cells)
    print(
        "RMSE over the whole stream (first half / second half), skill vs persistence\n\n" + report.md_table(head, rows)
    )
    if args.check:
        print(
            "\n" + report.beats_table({k: {n: v for n, v in s.items() if n in APPROACHES} for k, s in scores.items()})
        )
    if args.regret:
        print("\n" + report.regret_table(scores, ["dynamic", *extra]))
    return 0
