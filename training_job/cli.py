"""``hybridstream train``: pretrain (history -> batch model), window (one speed model), worker (SQS or folder loop).

TensorFlow and boto3 are imported inside the commands, so ``--help`` is instant. Every
command prints one JSON summary line on stdout when it finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from model_contract import FeatureSpec
from model_contract.calendar import parse_calendar_option
from training_job.guardrail import DEFAULT_MARGIN
from training_job.pipeline import DEFAULT_PARITY_TOLERANCE
from training_job.windows import DEFAULT_MIN_ROWS

EXIT_REFUSED = 3


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _calendar(text: str) -> tuple[str, ...]:
    try:
        return parse_calendar_option(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _train_config(text: str) -> dict:
    """argparse type: ``--train-config`` JSON, checked against ``TrainConfig`` (a clear usage error otherwise)."""
    from training_job.model import parse_config_changes

    try:
        return parse_config_changes(text, option="")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(p: argparse.ArgumentParser, name: str) -> None:
    from training_job.model import TrainConfig

    d = TrainConfig()
    model = p.add_argument_group("model and features")
    model.add_argument(
        "--name", default=name, help=f"model name in models/<name>/ (default {name!r}; may use {{thing}})"
    )
    model.add_argument(
        "--columns", help="comma-separated input columns (default: Db1t_avg,Db2t_avg,Gb1t_avg,Gb2t_avg,Ot_avg)"
    )
    model.add_argument("--target", default="Ot_avg", help="column to forecast (default Ot_avg)")
    model.add_argument(
        "--lags",
        default="1,2",
        help="comma-separated lags (default 1,2); pretrain also takes auto: the lags chosen on the history file "
        "(training_job.lag_choice: the online linear model as the probe). window/worker: a window the edge sent "
        "with its feature spec (S3 metadata or <file>.spec.json; the batch model's spec, which the edge serves) "
        "is trained on that spec, and --columns/--target/--lags/--horizon/--calendar are only for windows "
        "without one",
    )
    model.add_argument(
        "--horizon",
        type=positive_int,
        default=FeatureSpec().horizon,
        metavar="H",
        help=f"forecast the target H readings after the newest one seen (default {FeatureSpec().horizon})",
    )
    model.add_argument("--timestamp-column", default="Date_time", help="default Date_time")
    model.add_argument(
        "--time-format",
        metavar="FMT",
        help="the input's timestamps if not ISO-8601 (strptime, naive = UTC), e.g. '%%m/%%d/%%Y %%H:%%M'",
    )
    model.add_argument(
        "--calendar",
        type=_calendar,
        default="day",
        help="calendar features from each row's timestamp (UTC): day (default: time of day, 2 harmonics), "
        "year, day+year, none, or names (day_sin1,day_cos1,day_sin2,day_cos2,year_sin1,year_cos1)",
    )
    model.add_argument("--epochs", type=int, default=d.epochs, help=f"max epochs (default {d.epochs})")
    model.add_argument("--lstm-units", type=int, default=d.lstm_units, help=f"default {d.lstm_units}")
    model.add_argument("--dense-units", type=int, default=d.dense_units, help=f"default {d.dense_units}")
    model.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    model.add_argument("--patience", type=int, default=d.patience, help=f"early stopping (default {d.patience})")
    model.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction, help="newest share held out")
    model.add_argument("--learning-rate", type=float, default=d.learning_rate, help=f"default {d.learning_rate}")
    model.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    model.add_argument(
        "--members",
        type=positive_int,
        default=d.members,
        metavar="K",
        help=f"a seed ensemble: K networks (seeds --seed, --seed + 1, ...) averaged in one TFLite graph, one invoke "
        f"on the edge; K x the training time (default {d.members}; docs/combination.md has what it buys)",
    )
    model.add_argument("--no-scale", action="store_true", help="train on raw values (no standard scaling)")
    model.add_argument(
        "--train-config",
        type=_train_config,
        default=None,
        metavar="JSON",
        help="TrainConfig changes applied after the flags above (as eval run's --train-config), e.g. "
        '\'{"instance_norm": false, "shrink": false}\' for the config before issue 17 (default: the trainer\'s, '
        f"instance_norm={str(d.instance_norm).lower()} shrink={str(d.shrink).lower()}); unknown fields and wrong "
        "types are refused",
    )
    checks = p.add_argument_group("checks")
    checks.add_argument("--min-rows", type=int, default=DEFAULT_MIN_ROWS, help=f"default {DEFAULT_MIN_ROWS}")
    checks.add_argument(
        "--parity-tolerance",
        type=float,
        default=DEFAULT_PARITY_TOLERANCE,
        help=f"refuse when max |Keras - TFLite| exceeds this (default {DEFAULT_PARITY_TOLERANCE:g})",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, help="also write <out>/<name>/<version>/model.tflite + manifest.json")
    out.add_argument(
        "--bucket",
        default=os.environ.get("HYBRIDSTREAM_MODELS_BUCKET"),
        help="publish to this S3 bucket (env HYBRIDSTREAM_MODELS_BUCKET)",
    )
    out.add_argument("--prefix", default="models", help="key prefix for published models (default models)")
    out.add_argument("--rejected-prefix", default="rejected", help="key prefix for refused models (default rejected)")
    out.add_argument(
        "--s3-endpoint",
        default=os.environ.get("HYBRIDSTREAM_S3_ENDPOINT"),
        help="S3 endpoint URL (env HYBRIDSTREAM_S3_ENDPOINT; default AWS). Credentials: boto3's standard chain",
    )


def _guardrail(p: argparse.ArgumentParser, default_on: bool) -> None:
    g = p.add_argument_group("guardrail")
    if default_on:
        g.add_argument("--no-guardrail", dest="guardrail", action="store_false", help="publish without comparing")
    else:
        g.add_argument("--guardrail", action="store_true", help="compare with the current model before publishing")
    g.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"refuse if RMSE > current RMSE x (1 + margin) (default {DEFAULT_MARGIN:g})",
    )


def _fine_tune(p: argparse.ArgumentParser) -> None:
    from model_contract.layout import BATCH_MODEL_NAME
    from training_job.fine_tune import DEFAULT_BATCH_MODEL
    from training_job.recent_windows import DEFAULT_SPEED_WINDOWS

    g = p.add_argument_group("speed model: fine-tune on the last windows (docs/training.md)")
    g.add_argument(
        "--speed-windows",
        type=positive_int,
        default=DEFAULT_SPEED_WINDOWS,
        metavar="K",
        help=f"train each speed model on the thing's last K windows: the one announced and the K-1 before it "
        f"(--queue: listed under windows/<thing>/ in the windows bucket; --watch: under DIR/done/windows/<thing>/); "
        f"missing or bad earlier windows are skipped and counted (default {DEFAULT_SPEED_WINDOWS}; 1: the window "
        "alone, the behaviour before issue 17)",
    )
    g.add_argument(
        "--batch-model",
        default=DEFAULT_BATCH_MODEL,
        metavar="latest|DIR|none",
        help="fine-tune each speed model from this batch model's weights (weights.npz) and scaler when its feature "
        "spec is the window's: latest (default: <prefix>/batch/LATEST in --bucket), a folder of train pretrain "
        "--out, or none (from scratch, the behaviour before issue 17). A batch model that is missing or does not "
        "fit: from scratch, the reason in the manifest's extra.fine_tune",
    )
    g.add_argument(
        "--batch-name",
        default=os.environ.get("HYBRIDSTREAM_BATCH_MODEL_NAME", BATCH_MODEL_NAME),
        metavar="NAME",
        help=f"--batch-model latest: the batch model's name in the bucket (env HYBRIDSTREAM_BATCH_MODEL_NAME, "
        f"default {BATCH_MODEL_NAME})",
    )


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "train",
        help="train LSTM models and publish them as TFLite to S3",
        description="Windows of readings -> validated float32 builtin-op TFLite models, published to S3 "
        "(models/<name>/<version>/model.tflite + manifest.json). See docs/training.md.",
    )
    group.set_defaults(group_parser=group)
    cmds = group.add_subparsers(dest="train_cmd", metavar="COMMAND")

    pre = cmds.add_parser(
        "pretrain",
        help="the batch model from historical data",
        description="Train the batch model on a history CSV (local path or s3:// URI) and write it to --out "
        "and/or publish it to --bucket as models/batch/<version>/.",
    )
    pre.add_argument("--csv", required=True, help="history CSV: Date_time + the feature columns (path or s3://)")
    pre.add_argument(
        "--duplicate-timestamps",
        choices=["keep-first", "reject"],
        default="keep-first",
        help="history rows whose instant repeats an earlier row's (e.g. relabelled at a DST change): keep the "
        "first and drop the rest, counted in the manifest's window.dropped_duplicate_rows (default), or reject "
        "the file. Windows (train window/worker) always reject them",
    )
    _common(pre, "batch")
    _guardrail(pre, default_on=False)
    pre.set_defaults(func=_pretrain, kind="batch")

    win = cmds.add_parser(
        "window",
        help="one speed model from one window",
        description="Train a speed model on one window (CSV or JSONL; local path or s3:// URI), check parity and "
        "the guardrail, and publish it (exit 3 if refused).",
    )
    win.add_argument("--input", required=True, help="window file: path, file:// or s3://bucket/key")
    win.add_argument("--thing", default="", help="thing (Pi) the window came from (default: from windows/<thing>/...)")
    win.add_argument("--format", choices=["auto", "csv", "jsonl"], default=None, help="default: from the file name")
    _common(win, "speed")
    _guardrail(win, default_on=True)
    win.set_defaults(func=_window, kind="speed")

    work = cmds.add_parser(
        "worker",
        help="train each window announced on the SQS training queue (--queue) or written to a folder (--watch)",
        description="Cloud: receive window notices from SQS (--queue), train, publish; delete a message only once "
        "its model is published (or refused). Bad windows are left for the queue's dead-letter queue. Edge: train "
        "every window CSV that appears under a folder (--watch DIR, recursively; DIR/done/ and DIR/rejected/ "
        "excluded), oldest first, then move it to DIR/done/ or DIR/rejected/ (with a .reason.txt). "
        "SIGTERM stops gracefully.",
    )
    source = work.add_argument_group("source (exactly one)")
    source.add_argument(
        "--queue",
        default=None,
        help="queue URL (env QUEUE_URL / HYBRIDSTREAM_QUEUE_URL when --watch is not given)",
    )
    source.add_argument(
        "--watch",
        type=Path,
        metavar="DIR",
        help="edge mode: train the window CSVs written under DIR (e.g. DIR/windows/<thing>/<yyyy>/<mm>/<dd>/*.csv)",
    )
    source.add_argument("--poll", type=float, default=5.0, help="--watch: seconds between folder scans (default 5)")
    source.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="--watch: only pick files unmodified for this many seconds (default 2)",
    )
    work.add_argument(
        "--sqs-endpoint",
        default=os.environ.get("HYBRIDSTREAM_SQS_ENDPOINT"),
        help="SQS endpoint (env HYBRIDSTREAM_SQS_ENDPOINT; default: from a non-AWS queue URL, else AWS)",
    )
    work.add_argument(
        "--windows-bucket",
        default=os.environ.get("HYBRIDSTREAM_WINDOWS_BUCKET", ""),
        help="bucket for notices without one (env HYBRIDSTREAM_WINDOWS_BUCKET)",
    )
    work.add_argument("--wait", type=int, default=20, help="long-poll seconds (default 20)")
    work.add_argument("--lease", type=int, default=300, help="visibility while training, renewed (default 300)")
    work.add_argument("--bad-visibility", type=int, default=0, help="bad window: seconds until retried (default 0)")
    work.add_argument(
        "--error-visibility", type=int, default=60, help="other failure: seconds until retried (also --watch)"
    )
    work.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="--queue: trainings at once, one process each (default: env HYBRIDSTREAM_TRAINER_WORKERS, else one "
        "per vCPU). With N > 1 each process's TensorFlow gets --threads-per-worker intra-op threads and 1 inter-op",
    )
    work.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=None,
        metavar="T",
        help="--queue with N > 1: TensorFlow intra-op threads per worker (default: vCPUs // N, at least 1)",
    )
    _fine_tune(work)
    work.add_argument("--max-messages", type=int, help="exit after this many messages in all (--watch: files)")
    work.add_argument("--idle-exit", action="store_true", help="exit when a poll (--watch: a scan) finds nothing")
    _common(work, "speed")
    _guardrail(work, default_on=True)
    work.set_defaults(func=_worker, kind="speed")


def _options(args: argparse.Namespace):
    from training_job.model import TrainConfig
    from training_job.pipeline import TrainOptions

    if args.lags.strip() == "auto" and getattr(args, "func", None) is not _pretrain:
        raise ValueError("--lags auto is for pretrain (the history); a speed model takes the batch model's lags")
    lags = (1, 2) if args.lags.strip() == "auto" else tuple(int(x) for x in args.lags.split(",") if x.strip())
    kwargs: dict[str, Any] = {"target": args.target, "lags": lags}
    kwargs["horizon"] = args.horizon
    if args.columns:
        kwargs["columns"] = tuple(c.strip() for c in args.columns.split(",") if c.strip())
    kwargs["timestamp_column"] = args.timestamp_column
    kwargs["calendar"] = args.calendar
    spec = FeatureSpec(**kwargs)
    cfg = TrainConfig(
        lstm_units=args.lstm_units,
        dense_units=args.dense_units,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        scale=not args.no_scale,
        members=args.members,
    )
    if args.train_config:
        cfg = cfg.replace(**args.train_config)
    return TrainOptions(
        name=args.name,
        kind=args.kind,
        spec=spec,
        cfg=cfg,
        parity_tolerance=args.parity_tolerance,
        guardrail=bool(getattr(args, "guardrail", False)),
        margin=args.margin,
        speed_windows=getattr(args, "speed_windows", 1),
        batch_model=getattr(args, "batch_model", "none"),
        batch_name=getattr(args, "batch_name", "batch"),
    )


def _store(args: argparse.Namespace):
    if not args.bucket:
        return None
    from training_job.publish import ModelStore
    from training_job.storage import s3_client

    return ModelStore(s3_client(args.s3_endpoint), args.bucket, args.prefix, args.rejected_prefix)


def _run_one(args: argparse.Namespace, location: str, fmt: str, thing: str, duplicates: str = "reject") -> int:
    from training_job.pipeline import train_window
    from training_job.storage import read_input, s3_client
    from training_job.windows import parse_window

    if not args.bucket and not args.out:
        raise ValueError("nothing to do: give --out DIR and/or --bucket BUCKET (or HYBRIDSTREAM_MODELS_BUCKET)")
    opts = _options(args)
    store = _store(args)
    s3 = store.s3 if store else (s3_client(args.s3_endpoint) if location[:5] == "s3://" else None)
    data = read_input(location, s3)
    spec_source = ""
    if opts.kind == "speed":  # the spec the edge sent with the window (its batch model's), when it did
        from training_job.storage import input_metadata
        from training_job.windows import window_spec

        opts.spec, spec_source = window_spec(input_metadata(location, s3), opts.spec)
        print(f"hybridstream train: feature spec from the {spec_source}: {opts.spec.to_dict()}", file=sys.stderr)
    window = parse_window(
        data,
        opts.spec,
        fmt=fmt,
        min_rows=args.min_rows,
        source=location,
        thing=thing,
        duplicates=duplicates,
        time_format=getattr(args, "time_format", None),
    )
    window.spec_source = spec_source
    if window.dropped_duplicates:
        print(
            f"hybridstream train: {location}: dropped {window.dropped_duplicates} row(s) whose timestamp repeats "
            "an earlier row's (--duplicate-timestamps keep-first)",
            file=sys.stderr,
        )
    choice = None
    if args.lags.strip() == "auto":  # pretrain: the data set's lags, chosen on this history
        from dataclasses import replace

        from training_job.lag_choice import choose_lags, readings_per_day

        choice = choose_lags(window.matrix, opts.spec, readings_per_day(window.epochs))
        opts.spec = replace(opts.spec, lags=choice.lags)
        print(
            f"hybridstream train: lags chosen on the history: {','.join(map(str, choice.lags))} ({choice.label}; "
            "the edge sends its batch model's spec with every window, so the speed models follow)",
            file=sys.stderr,
        )
    outcome = train_window(window, opts, store=store, out_dir=args.out)
    summary = outcome.summary() | ({"lag_choice": choice.to_dict()} if choice is not None else {})
    print(json.dumps(summary, default=str))
    return EXIT_REFUSED if outcome.status == "rejected" else 0


def _pretrain(args: argparse.Namespace) -> int:
    from training_job.storage import format_of

    fmt = "csv" if format_of(args.csv) == "auto" else "jsonl"
    return _run_one(args, args.csv, fmt, "", duplicates=args.duplicate_timestamps)


def _window(args: argparse.Namespace) -> int:
    from model_contract.layout import thing_from_window_key
    from training_job.storage import format_of

    fmt = args.format or format_of(args.input)
    thing = args.thing or thing_from_window_key(args.input.split("://", 1)[-1].split("/", 1)[-1])
    return _run_one(args, args.input, fmt, thing)


def sqs_client(queue_url: str, endpoint: str | None = None) -> Any:
    """An SQS client for ``queue_url``: explicit endpoint, else the URL's own host unless it is AWS."""
    from urllib.parse import urlparse

    import boto3

    parsed = urlparse(queue_url)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    host = parsed.hostname or ""
    if host.endswith("amazonaws.com"):
        region = region or host.split(".")[1]
    elif not endpoint and parsed.scheme in ("http", "https"):
        endpoint = f"{parsed.scheme}://{parsed.netloc}"
    # a session of its own: boto3's default session caches the first credentials it resolved
    return boto3.session.Session().client("sqs", endpoint_url=endpoint or None, region_name=region or "us-east-1")


@contextlib.contextmanager
def _stop_on_signals(stop):
    """SIGTERM/SIGINT call ``stop()`` (a second one ends the process); the old handlers come back after."""
    import signal

    def _graceful(signum: int, _frame: object) -> None:
        print(f"hybridstream train worker: signal {signum}, stopping after the current step", file=sys.stderr)
        stop()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    saved = {sig: signal.signal(sig, _graceful) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _watch(args: argparse.Namespace) -> int:
    from training_job.watch import FolderWatcher, WatchConfig

    store = _store(args)
    if store is None and not args.out:
        raise ValueError("--watch needs --bucket BUCKET (or HYBRIDSTREAM_MODELS_BUCKET) and/or --out DIR")
    config = WatchConfig(
        root=args.watch,
        out_dir=args.out,
        poll_seconds=args.poll,
        settle_seconds=args.settle,
        error_retry_seconds=args.error_visibility,
        min_rows=args.min_rows,
    )
    watcher = FolderWatcher(_options(args), config, store=store)
    with _stop_on_signals(watcher.stop):
        stats = watcher.run(max_files=args.max_messages, idle_exit=args.idle_exit)
    counts = {k: v for k, v in stats.__dict__.items() if k != "outcomes"}
    print(json.dumps({"worker": "stopped", "watch": str(args.watch), **counts}))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from training_job.storage import s3_client
    from training_job.worker import Worker, WorkerConfig

    if args.queue and args.watch:
        raise ValueError("give either --queue URL or --watch DIR, not both")
    if args.watch:
        return _watch(args)
    args.queue = args.queue or os.environ.get("QUEUE_URL") or os.environ.get("HYBRIDSTREAM_QUEUE_URL")
    if not args.queue:
        raise ValueError("--queue URL (or QUEUE_URL) or --watch DIR is required")
    store = _store(args)
    if store is None:
        raise ValueError("--bucket (or HYBRIDSTREAM_MODELS_BUCKET) is required: the worker publishes to S3")
    config = WorkerConfig(
        queue_url=args.queue,
        windows_bucket=args.windows_bucket,
        wait_seconds=args.wait,
        lease_seconds=args.lease,
        bad_visibility=args.bad_visibility,
        error_visibility=args.error_visibility,
        min_rows=args.min_rows,
    )
    from training_job.pool import BusyWorker, WorkerPool, WorkerSpec, default_workers, threads_per_worker
    from training_job.protection import ScaleInProtection

    workers = args.workers or default_workers()
    protection = ScaleInProtection.from_environment()
    if workers == 1:  # in this process, as before the pool existed
        worker = BusyWorker(
            protection.set if protection else (lambda _busy: None),
            sqs_client(args.queue, args.sqs_endpoint),
            s3_client(args.s3_endpoint),
            store,
            _options(args),
            config,
        )
        with _stop_on_signals(worker.stop):
            worker.check_queue()
            stats = worker.run(max_messages=args.max_messages, idle_exit=args.idle_exit)
        counts = {k: v for k, v in stats.__dict__.items() if k != "outcomes"}
        print(json.dumps({"worker": "stopped", "workers": 1, **counts}))
        return 0
    spec = WorkerSpec(
        queue_url=args.queue,
        bucket=store.bucket,
        opts=_options(args),
        config=config,
        sqs_endpoint=args.sqs_endpoint,
        s3_endpoint=args.s3_endpoint,
        prefix=store.prefix,
        rejected_prefix=store.rejected_prefix,
        intra_op_threads=args.threads_per_worker or threads_per_worker(workers),
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    Worker(sqs_client(args.queue, args.sqs_endpoint), None, store, spec.opts, config).check_queue()
    pool = WorkerPool(spec, workers, protection=protection)
    print(
        f"hybridstream train worker: {workers} workers, {spec.intra_op_threads} TensorFlow thread(s) each",
        file=sys.stderr,
    )
    with _stop_on_signals(pool.stop):
        stats = pool.run(max_messages=args.max_messages, idle_exit=args.idle_exit)
    print(json.dumps({"worker": "stopped", **stats.counts()}))
    return 0
