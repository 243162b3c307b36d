"""``make bench-train``: wall seconds from a window to a published model, against a real local S3.

Starts its own Ceph radosgw (memstore, tmp dir), then for windows of 1,000 / 3,000 /
10,000 rows of the turbine stream (``test.csv``) measures, with the default settings
(LSTM(40) -> Dense(10) -> Dense(1), 50 epochs max, early stopping, batch 64): parse +
validate the window CSV, train, convert to TFLite, parity-check with the edge runtime,
run the guardrail against the current model and publish (or keep under ``rejected/``).
TensorFlow is imported once before the clock starts (a running worker has it loaded);
that import time is reported separately. The last line of stdout is one JSON object.

Then the product's speed model (issue 17, ``--fine-tune-windows``, default 6; 0 skips): a batch model
pre-trained on the first 10,000 rows of ``train.csv`` and published with its weights (outside the clock),
6 windows of 1,000 rows of ``test.csv`` uploaded as an edge names them; the clock covers what the worker does
for the newest window (:meth:`training_job.worker.Worker.train`): reading it, listing and reading the 5
before it, the batch model's weights, the fine-tune on the 6,000 rows, conversion, parity, guardrail, publish.

Then, on radosgw + ElasticMQ with a pool of worker processes (training_job.pool; issue 23):
``windows_per_second`` with 1 worker and with N (default: one per CPU) on the same
``--windows`` windows of ``--rows`` rows, in one run, with their ``ratio``; and a fleet
``burst`` (``--burst-windows`` windows from ``--burst-things`` simulated things at once): the
time to drain, each window's upload -> published latency, lost and trained-twice counts
(hybridstream.devtools.train_fleet). ``0`` skips a part. With ``--fine-tune-windows`` K > 0 (the default)
these run the product's path too: each thing has K-1 earlier windows in the bucket and every speed model
is fine-tuned from the batch model on the last K (``--fine-tune-windows 0``: from scratch on the window
alone, as before issue 17's fine-tune).

    .venv/bin/python -m hybridstream.devtools.train_bench [--sizes 1000,3000,10000] [--workers 2 --windows 8]
        [--burst-things 20 --burst-windows 40] [--train-config '{"members": 3}']
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hybridstream.datasets import TURBINE
from hybridstream.devtools.edge import read_rows
from model_contract import FeatureSpec
from training_job.pool import cpu_count
from training_job.recent_windows import DEFAULT_SPEED_WINDOWS

SIZES = (1000, 3000, 10000)


def load_rows(n: int, spec: FeatureSpec) -> tuple[np.ndarray, list[str]]:
    """The first ``n`` rows of the turbine stream (``data/turbine/test.csv``): the spec's columns, timestamps."""
    rows = read_rows(TURBINE / "test.csv", count=n)
    if len(rows) < n:
        raise ValueError(f"test.csv has only {len(rows)} rows")
    return np.array([[float(r[c]) for c in spec.columns] for r in rows]), [r[spec.timestamp_column] for r in rows]


def run_fleet(args: argparse.Namespace, batch=None) -> dict:
    """Throughput with 1 and N workers, then the burst, on one radosgw + ElasticMQ; with ``batch`` (its files)
    the product's speed models: fine-tuned from it on each thing's last ``--fine-tune-windows`` windows."""
    from hybridstream.devtools.train_fleet import FleetServers, burst, throughput
    from hybridstream.servers.local import LocalServers
    from training_job.pipeline import TrainOptions

    spec = FeatureSpec()
    opts = TrainOptions(name="speed", kind="speed", spec=spec)
    if batch is not None:
        opts = TrainOptions(
            name="speed", kind="speed", spec=spec, speed_windows=args.fine_tune_windows, batch_model="latest"
        )
    matrix, stamps = load_rows(min(30000, max(args.rows * 4, 20000)), spec)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        local = LocalServers.bare(Path(tmp) / "servers")
        try:
            servers = FleetServers(local.radosgw(), local.sqs())
            if args.windows:
                out |= throughput(
                    servers, matrix, stamps, opts, args.workers, args.windows, args.rows, args.threads_per_worker, batch
                )
            if args.burst_windows:
                out["burst"] = burst(
                    servers,
                    matrix,
                    stamps,
                    opts,
                    args.workers,
                    args.burst_things,
                    args.burst_windows,
                    args.rows,
                    batch=batch,
                )
        finally:
            local.destroy()
    return out


def bench_batch(spec: FeatureSpec, cfg, history_rows: int = 10000):
    """(the batch model's files, seconds): ``train pretrain`` on the first ``history_rows`` rows of ``train.csv``."""
    from hybridstream.devtools.train_fleet import BatchFiles
    from training_job.fine_tune import WEIGHTS_FILE
    from training_job.pipeline import TrainOptions, train_window
    from training_job.windows import parse_window, window_to_csv

    hist = read_rows(TURBINE / "train.csv", count=history_rows)
    matrix = np.array([[float(r[c]) for c in spec.columns] for r in hist])
    data = window_to_csv(matrix, [r[spec.timestamp_column] for r in hist], spec)
    print(f"bench-train: batch model on {len(hist)} rows of train.csv (not timed) ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    opts = TrainOptions(name="batch", kind="batch", spec=spec, cfg=cfg, guardrail=False)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(train_window(parse_window(data, spec, source="train.csv"), opts, out_dir=Path(tmp)).local_dir)
        files = BatchFiles(
            (folder / "model.tflite").read_bytes(),
            (folder / "manifest.json").read_text(),
            (folder / WEIGHTS_FILE).read_bytes(),
        )
    return files, time.perf_counter() - began


def fine_tune(s3, store, spec: FeatureSpec, cfg, windows: int, batch, rows: int = 1000) -> dict:
    """Seconds of the worker's product path for one window: ``windows`` windows joined, fine-tuned (module doc)."""
    from edge_app.windows import window_id
    from model_contract import Manifest
    from model_contract.calendar import parse_timestamp
    from model_contract.layout import window_key
    from training_job.fine_tune import WEIGHTS_FILE
    from training_job.notices import WindowNotice
    from training_job.pipeline import TrainOptions
    from training_job.windows import window_to_csv
    from training_job.worker import Worker, WorkerConfig

    store.publish(batch.tflite, Manifest.from_json(batch.manifest_json), files={WEIGHTS_FILE: batch.weights})
    s3.create_bucket(Bucket="bench-windows")
    matrix, stamps = load_rows(windows * rows, spec)
    key = ""
    for i in range(windows):
        part, ts = matrix[i * rows : (i + 1) * rows], stamps[i * rows : (i + 1) * rows]
        key = window_key("bench", window_id("T1", parse_timestamp(ts[0]), rows))
        s3.put_object(Bucket="bench-windows", Key=key, Body=window_to_csv(part, ts, spec, device="T1"))
    opts = TrainOptions(name="speed-ft", spec=spec, cfg=cfg, speed_windows=windows, batch_model="latest")
    worker = Worker(None, s3, store, opts, WorkerConfig(queue_url="", windows_bucket="bench-windows"))
    print(f"bench-train: the newest of {windows} windows, fine-tuned ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    outcome = worker.train(WindowNotice(bucket="bench-windows", key=key))
    seconds = time.perf_counter() - began
    extra = outcome.manifest.get("extra", {})
    out = {
        "seconds": round(seconds, 3),
        "status": outcome.status,
        "rows": outcome.manifest.get("window", {}).get("rows"),
        "windows_used": extra.get("speed_windows", {}).get("used"),
        "fine_tune": extra.get("fine_tune", {}).get("from"),
        "epochs_run": extra.get("epochs_run"),
        "holdout_rmse": outcome.manifest.get("metrics", {}).get("rmse"),
        "batch_weights_bytes": len(batch.weights),
    }
    print(f"bench-train: fine-tune -> {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def run(sizes: tuple[int, ...], cfg_changes: dict | None = None, fine_tune_windows: int = 0, batch=None) -> dict:
    from hybridstream.servers.radosgw import RadosGateway
    from training_job.model import TrainConfig, _keras
    from training_job.pipeline import TrainOptions, train_window
    from training_job.publish import ModelStore
    from training_job.windows import parse_window, window_to_csv

    spec = FeatureSpec()
    opts = TrainOptions(name="speed", kind="speed", spec=spec, cfg=TrainConfig(**(cfg_changes or {})))
    began = time.perf_counter()
    _keras()
    tf_import = time.perf_counter() - began
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        gw = RadosGateway.for_port(state_root=Path(tmp))
        began = time.perf_counter()
        gw.start()
        rgw_start = time.perf_counter() - began
        try:
            s3 = gw.client()
            s3.create_bucket(Bucket="bench-models")
            store = ModelStore(s3, "bench-models")
            results: dict[str, dict] = {}
            for n in sizes:
                matrix, stamps = load_rows(n, spec)
                data = window_to_csv(matrix, stamps, spec, device="bench")
                print(f"bench-train: {n} rows ...", file=sys.stderr, flush=True)
                began = time.perf_counter()
                window = parse_window(data, spec, device="bench", source=f"bench-{n}")
                outcome = train_window(window, opts, store=store)
                seconds = time.perf_counter() - began
                results[str(n)] = {
                    "seconds": round(seconds, 3),
                    "status": outcome.status,
                    "model_bytes": outcome.model_bytes,
                    "parity_max_abs_diff": outcome.manifest.get("parity_max_abs_diff"),
                    "holdout_rmse": outcome.manifest.get("metrics", {}).get("rmse"),
                    "epochs_run": outcome.manifest.get("extra", {}).get("epochs_run"),
                    "guardrail": outcome.manifest.get("extra", {}).get("guardrail", {}).get("status"),
                }
                print(f"bench-train: {n} rows -> {json.dumps(results[str(n)])}", file=sys.stderr, flush=True)
            tuned = fine_tune(s3, store, spec, opts.cfg, fine_tune_windows, batch) if batch is not None else None
        finally:
            gw.destroy()
    out: dict = {}
    if results:
        ref = results.get("3000") or next(iter(results.values()))
        out = {
            "train_seconds": {k: v["seconds"] for k, v in results.items()},
            "model_bytes": ref["model_bytes"],
            "parity_max_abs_diff": max(v["parity_max_abs_diff"] for v in results.values()),
            "details": results,
        }
    if tuned is not None:
        out[f"fine_tune_{fine_tune_windows}x1000_seconds"] = tuned["seconds"]
        out["fine_tune"] = tuned
    return out | {"tf_import_seconds": round(tf_import, 2), "radosgw_start_seconds": round(rgw_start, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybridstream.devtools.train_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="window sizes in rows ('' skips)")
    parser.add_argument(
        "--workers", type=int, default=cpu_count(), help=f"N for the pool runs (default: CPUs, {cpu_count()})"
    )
    parser.add_argument("--windows", type=int, default=8, help="windows for the 1 vs N throughput (default 8; 0 skips)")
    parser.add_argument(
        "--threads-per-worker", type=int, default=None, help="TensorFlow intra-op threads of every worker (both runs)"
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows per window in the pool runs (default 1000)")
    parser.add_argument("--burst-things", type=int, default=20, help="simulated things in the burst (default 20)")
    parser.add_argument("--burst-windows", type=int, default=40, help="windows in the burst (default 40; 0 skips)")
    parser.add_argument(
        "--fine-tune-windows",
        type=int,
        default=DEFAULT_SPEED_WINDOWS,
        help=f"the product's speed model: fine-tuned on this many 1,000-row windows (default {DEFAULT_SPEED_WINDOWS}, "
        "the trainer's; 0 skips)",
    )
    parser.add_argument(
        "--train-config",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="TrainConfig changes for the --sizes runs, e.g. '{\"members\": 3}' (default: the trainer's defaults)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    began = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the final JSON line
        batch = None
        if args.fine_tune_windows:  # the product's speed models start from it (not timed)
            from training_job.model import TrainConfig

            batch, batch_seconds = bench_batch(FeatureSpec(), TrainConfig(**(args.train_config or {})))
        todo = sizes or batch is not None
        result = run(sizes, args.train_config, args.fine_tune_windows, batch) if todo else {}
        result |= run_fleet(args, batch)
        if batch is not None:
            result["batch_model_seconds"] = round(batch_seconds, 1)
            result["fleet_speed_models"] = f"fine-tuned on the last {args.fine_tune_windows} windows"
    if args.train_config:
        result["train_config"] = args.train_config
    result["machine"] = {"cpus": cpu_count(), "python": platform.python_version(), "arch": platform.machine()}
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["bench_seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
