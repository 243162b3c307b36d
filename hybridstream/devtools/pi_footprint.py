"""``make bench-footprint``: the memory of what runs on a Pi, measured on this machine.

Starts a real Kafka broker with each ``--heaps`` size (the KafkaBroker component's ``-Xmx``: context
``kafka_heap``), preloads ``--records`` turbine readings, runs the edge app as its own process
(``python -m edge_app run``, both models, as Greengrass runs it) until it has forecast all of them,
and samples the RSS of the broker's JVM and of the edge app every 0.2 s (psutil); then trains one
speed model on a ``--window-rows`` window with the trainer (``python -m hybridstream train window``:
what the Trainer component runs per window in ``edge`` mode) and samples its RSS the same way.

The Greengrass nucleus's own JVM is not measured: its installer is downloaded on the Pi and is not
in the package registries this machine reaches (docs/deploy.md "Which Pi" cites AWS's figure).
Peak RSS on x86_64; an aarch64 Pi's is close for the JVM and Python processes (same heap settings,
same wheels), not identical. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hybridstream.devtools.edge_bench import (
    DATASET,
    REPO,
    RssSampler,
    _high_watermark,
    _start_edge,
    _stop_edge,
    bench_config,
)
from model_contract.kafka_broker import PI_INITIAL_HEAP


def _say(msg: str) -> None:
    print(f"[bench-footprint] {msg}", file=sys.stderr, flush=True)


def _broker_and_edge(work: Path, heap: str, records: int, batch: Path, speed: Path, timeout: float) -> dict:
    from confluent_kafka import Consumer

    from hybridstream.devtools.csv_publisher import csv_records, publish_at_rate
    from hybridstream.servers.kafka import KafkaBroker

    broker = KafkaBroker.for_port(state_root=work / f"kafka-{heap}")
    broker.heap, broker.initial_heap = heap, PI_INITIAL_HEAP  # the KafkaBroker recipe's JVM settings
    edge = None
    try:
        broker.start()
        pid = int(broker.pid_file.read_text())
        broker_rss = RssSampler(pid)
        broker_rss.start()
        _say(f"broker -Xmx{heap} up (pid {pid}); preloading {records} readings")
        loaded = publish_at_rate(
            csv_records(DATASET / "test.csv", ["turbine-1"], limit=records),
            bootstrap=broker.bootstrap,
            topic="sensor.readings",
            rate=None,
        )
        if loaded.sent != records or loaded.errors:
            raise RuntimeError(f"preload failed: {loaded.to_dict()}")
        (work / heap).mkdir(exist_ok=True)
        config = bench_config(work / heap, broker.bootstrap, batch, speed, 50.0)
        edge, log_path = _start_edge(work / heap, config, {**os.environ, "PYTHONPATH": str(REPO)}, "edge.log")
        edge_rss = RssSampler(edge.pid)
        edge_rss.start()
        watcher = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "footprint", "enable.auto.commit": False}
        )
        deadline = time.monotonic() + timeout
        while _high_watermark(watcher, "predictions") < records:
            if edge.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"edge app stopped or timed out:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        watcher.close()
        _stop_edge(edge, log_path)
        edge = None
        return {
            "heap": heap,
            "broker_rss_mb": round(broker_rss.stop(), 1),
            "edge_app_rss_mb": round(edge_rss.stop(), 1),
        }
    finally:
        if edge is not None:
            edge.kill()
        broker.stop()


def _trainer(work: Path, rows: int) -> dict:
    window = work / "window.csv"
    with open(DATASET / "test.csv") as src:  # the edge's window layout: Date_time + the spec's columns
        window.write_text("".join(line for _, line in zip(range(rows + 1), src, strict=False)))
    cmd = [sys.executable, "-m", "hybridstream", "train", "window", "--input", str(window), "--thing", "pi-1",
           "--out", str(work / "trained"), "--no-guardrail"]  # fmt: skip
    _say(f"training one speed model on a {rows}-row window: {' '.join(cmd[1:])}")
    began = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    rss = RssSampler(proc.pid)
    rss.start()
    if proc.wait(1800) != 0:
        raise RuntimeError(f"the trainer exited with {proc.returncode}")
    return {"window_rows": rows, "trainer_rss_mb": round(rss.stop(), 1), "train_s": round(time.monotonic() - began, 1)}


def run(args: argparse.Namespace) -> dict:
    from hybridstream.devtools.edge import read_rows, train_model
    from model_contract import default_spec

    work = Path(tempfile.mkdtemp(prefix="bench-footprint-", dir=args.workdir))
    spec = default_spec()
    _say("training the batch and speed models the edge app loads (as make bench-edge)")
    models = work / "models"
    batch = train_model(read_rows(DATASET / "train.csv", 0, 2000), models, name="batch", kind="batch", units=40,
                        dense=10, spec=spec)  # fmt: skip
    speed = train_model(read_rows(DATASET / "test.csv", 0, 2000), models, name="speed", kind="speed", units=40,
                        dense=10, seed=7, spec=spec)  # fmt: skip
    runs = [_broker_and_edge(work, heap, args.records, batch, speed, args.timeout) for heap in args.heaps]
    for r in runs:
        _say(f"-Xmx{r['heap']}: broker {r['broker_rss_mb']} MB, edge app {r['edge_app_rss_mb']} MB")
    trainer = _trainer(work, args.window_rows)
    _say(f"trainer: {trainer['trainer_rss_mb']} MB peak, {trainer['train_s']} s")
    load = os.getloadavg()[0]
    return {"runs": runs, **trainer, "records": args.records, "cpus": os.cpu_count(), "loadavg_1m": round(load, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybridstream.devtools.pi_footprint", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--heaps", type=lambda s: s.split(","), default=["256m", "384m", "512m"],
                        help="broker heaps to measure, comma-separated (256m,384m,512m)")  # fmt: skip
    parser.add_argument("--records", type=int, default=20000, help="readings the edge app forecasts (20000)")
    parser.add_argument("--window-rows", type=int, default=1000, help="rows of the trainer's window (1000)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up one run after (300 s)")
    parser.add_argument("--workdir", default=None, help="where the broker and models live (a temp dir)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
