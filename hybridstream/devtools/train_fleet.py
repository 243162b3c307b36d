"""The trainer at fleet scale on the local servers: windows per second and a burst of a fleet's windows (issue 23).

Both run the real path: windows uploaded to radosgw, one notice each on an ElasticMQ queue
(with its dead-letter queue), a :class:`~training_job.pool.WorkerPool` of N worker processes
training, checking and publishing every window to the models bucket.

* :func:`throughput`: the same windows with 1 worker, then with N (a fresh queue and models
  bucket each), in one run: windows per second each, and their ratio. The clock starts once the
  workers are up (TensorFlow imported: a running trainer has it loaded) and stops at the last
  publication.
* :func:`burst`: ``windows`` windows from ``things`` simulated things (each thing's windows are
  consecutive slices of the turbine stream) arrive at once; reports the time to drain, each
  window's time from upload to published model (p50/p95/max), and checks that none is lost
  (every window has an outcome), none trained twice, and every thing has one published model
  version per window it sent (idempotent publish), with the queue and its DLQ empty.

With ``opts.speed_windows`` K > 1 each thing also has K-1 earlier windows in the bucket (uploaded first,
never announced) and with ``batch`` (a batch model's files) that model is published with its weights first:
the workers then run the product's path (each speed model fine-tuned from the batch model on the thing's last
K windows, training_job.recent_windows / fine_tune).

``make bench-train`` runs both (hybridstream.devtools.train_bench); the tests run a small burst.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_contract import FeatureSpec
from model_contract.layout import BATCH_MODEL_NAME
from training_job.pipeline import TrainOptions
from training_job.pool import WorkerPool, WorkerSpec, threads_per_worker
from training_job.windows import window_to_csv
from training_job.worker import WorkerConfig

log = logging.getLogger(__name__)

TRAINED = ("published", "rejected")  # a training ran (an "exists" is a redelivery found already done)


@dataclass
class Window:
    thing: str
    key: str
    body: bytes
    uploaded_at: float = 0.0
    announced: bool = True  # False: an earlier window, in the bucket before the run (read, never announced)


@dataclass(frozen=True)
class BatchFiles:
    """A batch model as published: ``model.tflite``, its manifest, ``weights.npz``."""

    tflite: bytes
    manifest_json: str
    weights: bytes


@dataclass
class FleetServers:
    """The radosgw and SQS servers the fleet runs on (started by the caller) and their clients."""

    s3_server: Any
    sqs_server: Any

    def __post_init__(self) -> None:
        self.s3, self.sqs = self.s3_server.client(), self.sqs_server.client()
        # the worker processes' boto3 clients take radosgw's keys from the environment they inherit
        # (ElasticMQ accepts any)
        os.environ.update(self.s3_server.env())


def make_windows(
    matrix: np.ndarray, stamps: list[str], spec: FeatureSpec, things: int, windows: int, rows: int, earlier: int = 0
):
    """``windows`` windows of ``rows`` rows from ``things`` things, round-robin; a thing's windows
    are consecutive slices of the stream (slices wrap around when the stream is too short), named as
    the edge names them (``<device>_<start stamp>_<rows>``). ``earlier``: each thing's ``earlier`` windows
    before its first, not announced (:attr:`Window.announced` False), first in the list."""
    out: list[Window] = []
    before: list[Window] = []
    per_thing: Counter[str] = Counter()
    lead = earlier * rows
    span = max(1, len(matrix) - rows - lead)
    for i in range(windows):
        thing = f"sim-{i % things:04d}"
        n = per_thing[thing]
        per_thing[thing] += 1
        start = lead + ((i % things) * 97 + n * rows) % span  # things start at different points of the stream
        if n == 0:
            before += [
                _window(thing, matrix, stamps, spec, start - j * rows, rows, False) for j in range(earlier, 0, -1)
            ]
        out.append(_window(thing, matrix, stamps, spec, start, rows))
    return before + out


def _window(thing, matrix, stamps, spec: FeatureSpec, start: int, rows: int, announced: bool = True) -> Window:
    from edge_app.windows import window_id  # noqa: PLC0415
    from model_contract.calendar import parse_timestamp  # noqa: PLC0415
    from model_contract.layout import window_key  # noqa: PLC0415

    body = window_to_csv(matrix[start : start + rows], stamps[start : start + rows], spec, device="sim")
    key = window_key(thing, window_id("sim", parse_timestamp(stamps[start]), rows))
    return Window(thing, key, body, announced=announced)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _rss_mib(pids: dict[int, int]) -> list[float]:
    """Peak resident memory (VmHWM) of the worker processes, MiB (Linux)."""
    out = []
    for pid in pids.values():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out.append(round(int(line.split()[1]) / 1024, 1))
        except OSError:
            continue
    return out


def run_windows(
    servers: FleetServers,
    windows: list[Window],
    opts: TrainOptions,
    workers: int,
    timeout: float = 1800.0,
    lease: int = 300,
    threads: int | None = None,
    batch: BatchFiles | None = None,
) -> dict[str, Any]:
    """Start a pool of ``workers``, wait until it is up, send ``windows`` as a burst, wait until
    every one has an outcome; the figures and the checks (see the module docstring). The earlier
    windows (not announced) and ``batch`` are in the buckets before the pool starts."""
    tag = uuid.uuid4().hex[:8]
    windows_bucket, models_bucket = f"fleet-win-{tag}", f"fleet-mod-{tag}"
    for bucket in (windows_bucket, models_bucket):
        servers.s3.create_bucket(Bucket=bucket)
    queue_url, dlq_url = servers.sqs_server.create_queue(f"fleet-{tag}", max_receive_count=6, visibility_timeout=lease)
    spec = WorkerSpec(
        queue_url=queue_url,
        bucket=models_bucket,
        opts=dataclasses.replace(opts, name="speed-{thing}"),
        config=WorkerConfig(queue_url=queue_url, windows_bucket=windows_bucket, wait_seconds=1, lease_seconds=lease),
        s3_endpoint=servers.s3_server.endpoint,
        intra_op_threads=threads or threads_per_worker(workers),
        log_level=logging.WARNING,
    )
    if batch is not None:
        from model_contract import Manifest  # noqa: PLC0415
        from training_job.fine_tune import WEIGHTS_FILE  # noqa: PLC0415
        from training_job.publish import ModelStore  # noqa: PLC0415

        manifest = Manifest.from_json(batch.manifest_json)
        ModelStore(servers.s3, models_bucket).publish(batch.tflite, manifest, files={WEIGHTS_FILE: batch.weights})
    for w in windows:
        if not w.announced:
            servers.s3.put_object(Bucket=windows_bucket, Key=w.key, Body=w.body)
    windows = [w for w in windows if w.announced]
    pool = WorkerPool(spec, workers)
    began = time.monotonic()
    pool.start()
    try:
        while not pool.ready():
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"the {workers} workers did not start in {timeout:.0f}s")
            pool.pump(0.2)
        startup = time.monotonic() - began
        print(f"train-fleet: {workers} worker(s) up in {startup:.1f}s; sending {len(windows)} windows", file=sys.stderr)
        sent = time.time()
        for w in windows:  # each simulated thing: upload, then notice (as the edge app does)
            servers.s3.put_object(Bucket=windows_bucket, Key=w.key, Body=w.body)
            w.uploaded_at = time.time()
            body = f'{{"thing": "{w.thing}", "bucket": "{windows_bucket}", "key": "{w.key}"}}'
            servers.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        done: set[str] = set()
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while len(done) < len(windows) and time.monotonic() < deadline:
            pool.pump(0.5)
            done = {o["window"] for o in pool.stats.outcomes}
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                print(f"train-fleet: {len(done)}/{len(windows)} windows done", file=sys.stderr, flush=True)
        drained = max((o["at"] for o in pool.stats.outcomes), default=time.time()) - sent
        rss = _rss_mib(pool.pids())
    finally:
        pool.close()
    return _report(servers, windows, pool, windows_bucket, models_bucket, queue_url, dlq_url, drained, startup, rss)


def _report(servers, windows, pool, windows_bucket, models_bucket, queue_url, dlq_url, drained, startup, rss):
    by_window: dict[str, list[dict]] = {}
    for o in pool.stats.outcomes:
        by_window.setdefault(o["window"], []).append(o)
    uris = {f"s3://{windows_bucket}/{w.key}": w for w in windows}
    lost = [u for u in uris if u not in by_window]
    twice = [u for u, os_ in by_window.items() if sum(o["status"] in TRAINED for o in os_) > 1]
    latency = [
        min(o["at"] for o in by_window[u] if o["status"] in ("published", "rejected", "exists")) - w.uploaded_at
        for u, w in uris.items()
        if u in by_window
    ]
    statuses = Counter(o["status"] for o in pool.stats.outcomes)
    manifests = Counter(
        o["Key"].split("/")[1]
        for page in servers.s3.get_paginator("list_objects_v2").paginate(Bucket=models_bucket, Prefix="models/")
        for o in page.get("Contents", [])
        if o["Key"].endswith("/manifest.json")
    )
    manifests.pop(BATCH_MODEL_NAME, None)  # the batch model the speed models start from (``batch``)
    expected = Counter(o["name"] for o in pool.stats.outcomes if o["status"] == "published")
    left = servers.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    dead = servers.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    return {
        "workers": pool.workers,
        "windows": len(windows),
        "things": len({w.thing for w in windows}),
        "drain_seconds": round(drained, 2),
        "windows_per_second": round(len(windows) / drained, 4) if drained > 0 else None,
        "latency_seconds": {
            "p50": round(statistics.median(latency), 2) if latency else None,
            "p95": round(_percentile(latency, 0.95), 2) if latency else None,
            "max": round(max(latency), 2) if latency else None,
        },
        "outcomes": dict(statuses),
        "lost": len(lost),
        "trained_twice": len(twice),
        "published_versions_match": manifests == expected,
        "queue_left": int(left["ApproximateNumberOfMessages"]) + int(left["ApproximateNumberOfMessagesNotVisible"]),
        "dead_letters": int(dead["Attributes"]["ApproximateNumberOfMessages"]),
        "restarts": pool.stats.restarts,
        "worker_startup_seconds": round(startup, 1),
        "worker_peak_rss_mib": max(rss) if rss else None,
    }


def throughput(
    servers: FleetServers,
    matrix: np.ndarray,
    stamps: list[str],
    opts: TrainOptions,
    workers: int,
    windows: int,
    rows: int,
    threads: int | None = None,
    batch: BatchFiles | None = None,
) -> dict[str, Any]:
    """Windows per second with 1 worker, then with ``workers``: the same ``windows`` windows (one
    per thing, as a fleet's arrive), a fresh queue and models bucket each; their ratio.
    ``threads``: TensorFlow intra-op threads of every worker in both runs (default: 1 worker
    TensorFlow's own, N workers :func:`~training_job.pool.threads_per_worker`)."""
    earlier = opts.speed_windows - 1
    sent = make_windows(matrix, stamps, opts.spec, things=windows, windows=windows, rows=rows, earlier=earlier)
    runs = {}
    for n in (1, workers):
        print(f"train-fleet: throughput with {n} worker(s), {windows} windows of {rows} rows", file=sys.stderr)
        copies = [dataclasses.replace(w) for w in sent]
        runs[str(n)] = run_windows(servers, copies, opts, n, threads=threads, batch=batch)
    one, many = runs["1"]["windows_per_second"], runs[str(workers)]["windows_per_second"]
    return {
        "windows_per_second": {k: v["windows_per_second"] for k, v in runs.items()},
        "ratio": round(many / one, 2) if one and many else None,
        "runs": runs,
    }


def burst(
    servers: FleetServers,
    matrix: np.ndarray,
    stamps: list[str],
    opts: TrainOptions,
    workers: int,
    things: int,
    windows: int,
    rows: int,
    lease: int = 300,
    batch: BatchFiles | None = None,
) -> dict[str, Any]:
    """``windows`` windows from ``things`` simulated things at once through ``workers`` workers."""
    print(f"train-fleet: burst of {windows} windows from {things} things, {workers} worker(s)", file=sys.stderr)
    earlier = opts.speed_windows - 1
    sent = make_windows(matrix, stamps, opts.spec, things=things, windows=windows, rows=rows, earlier=earlier)
    return run_windows(servers, sent, opts, workers, lease=lease, batch=batch)
