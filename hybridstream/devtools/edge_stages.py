"""In-process cost per record and stage of the edge app's processing paths, over real consumed records.

``python -m hybridstream.devtools.edge_stages`` starts its own Kafka broker, trains the two models ``make
bench-edge`` trains (LSTM(40) -> Dense(10) -> Dense(1), the product's feature spec; or takes ``--models DIR`` with
``batch/*/model.tflite`` and ``speed/*/model.tflite``), preloads ``--records`` readings over ``--devices`` devices
(5; each CSV row once per device, in turn), consumes them once, and hands the same records, in batches of
``--batch`` (the app's ``kafka.batch_size``), to an :class:`~edge_app.app.EdgeApp` per path (``--process
batch,record``; its predictions go to the broker), and per ``--blend`` (:data:`BLENDS`, explicit configs: ``none``
the context stack alone, ``pair`` / ``experts`` that layer over it without the correction layer, ``corrected`` the
pair layer and the correction layer, the edge's default since 2026-12-07; each path with each in turn: key ``batch``
for ``none``, ``batch/pair`` for ``pair``, ...; a repeated one gets ``#2``, ...). Per path it prints the app's
``stage_us`` (:mod:`edge_app.stages`: the loop thread's CPU time shared out by the stages), the process's CPU time
per record (every thread: librdkafka's too) and each thread's (``thread_cpu_us``: ``main`` the loop, ``python`` the
window uploader, whose windows of the run are waited for, ``rdk:*`` librdkafka's, ``export`` the forecasts export's
child process, ``windows.forecasts_process``, the default). No consumer in the timed part, so these are the app's
own costs; the machine's load inflates them less than wall time, but still does: the last line (JSON) says the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BLENDS = {
    "none": {"strategy": "dynamic", "blend": "none"},  # the context stack alone
    "pair": {"strategy": "dynamic", "blend": "pair", "correct": False},
    "experts": {"strategy": "dynamic", "blend": "experts", "correct": False},
    "corrected": {"strategy": "dynamic", "blend": "pair", "correct": True},  # the edge's default since 2026-12-07
}
"""``--blend``'s names -> the ``combination`` each runs (explicit: the default config has changed twice)."""


def combination(blend: str) -> dict:
    """The ``combination`` config of ``--blend``'s ``blend``; without ``correct`` for code before the correction
    layer (edge_stages.py run on an older tree, which has no layer: the same combiner)."""
    from edge_app.context_stacking import ContextStacking

    config = dict(BLENDS[blend])
    if "correct" not in inspect.signature(ContextStacking.__init__).parameters:
        config.pop("correct", None)
    return config


def _say(msg: str) -> None:
    print(f"[edge-stages] {msg}", file=sys.stderr, flush=True)


def _models(work: Path, given: str | None) -> tuple[Path, Path]:
    if given:
        root = Path(given)
        return next(root.glob("batch/*/model.tflite")), next(root.glob("speed/*/model.tflite"))
    from hybridstream.datasets import TURBINE
    from hybridstream.devtools.edge import read_rows, train_model
    from model_contract import default_spec

    _say("training the batch and speed models (as make bench-edge)")
    spec, root = default_spec(), work / "models"
    kw = {"units": 40, "dense": 10, "spec": spec}
    batch = train_model(read_rows(TURBINE / "train.csv", 0, 2000), root, name="batch", kind="batch", **kw)
    speed = train_model(read_rows(TURBINE / "test.csv", 0, 2000), root, name="speed", kind="speed", seed=7, **kw)
    return batch, speed


def run(args: argparse.Namespace) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    from edge_app.app import EdgeApp
    from edge_app.config import EdgeConfig
    from hybridstream.datasets import TURBINE
    from hybridstream.devtools.csv_publisher import csv_records, publish_at_rate
    from hybridstream.devtools.thread_cpu import thread_times, times_between, total
    from hybridstream.servers.local import LocalServers

    work = Path(tempfile.mkdtemp(prefix="edge-stages-", dir=args.workdir))
    batch, speed = _models(work, args.models)
    servers = LocalServers.bare(work / "kafka")
    broker = servers.kafka()
    out: dict = {"records": args.records, "batch": args.batch, "devices": args.devices, "paths": {}}
    try:
        devices = [f"turbine-{i + 1}" for i in range(args.devices)]
        records = csv_records(TURBINE / "test.csv", devices, limit=args.records)
        publish_at_rate(  # idempotent: in order whatever the retries (as make bench-edge's preload)
            records, bootstrap=broker.bootstrap, topic="sensor.readings", rate=None,
            producer_conf={"enable.idempotence": True},
        )  # fmt: skip
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "stages", "enable.auto.commit": False})
        consumer.assign([TopicPartition("sensor.readings", 0, 0)])
        msgs: list = []
        deadline = time.monotonic() + 120
        while len(msgs) < args.records and time.monotonic() < deadline:
            msgs += [m for m in consumer.consume(5000, 1.0) if m.error() is None]
        consumer.close()
        knows_process = "process" in {f.name for f in dataclasses.fields(EdgeConfig)}
        runs = [(p, b) for p in args.process.split(",") for b in args.blend.split(",")]
        for i, (process, blend) in enumerate(runs):
            path = process if blend == "none" else f"{process}/{blend}"
            if path in out["paths"]:  # a repeated run (interleaved with the others): its own key
                path += f"#{sum(k.split('#')[0] == path for k in out['paths']) + 1}"
            name = f"{i}-" + path.replace("/", "-").replace("#", "-")  # its own state: a fresh device history
            cfg = {
                "thing_name": f"stages-{name}",
                "bootstrap": broker.bootstrap,
                "topics": {"predictions": f"predictions.{name}"},
                "models": {"batch": str(batch), "speed": str(speed)},
                "state_dir": str(work / name / "state"),
                "windows": {"max_records": 1000, "max_seconds": 600, "local_root": str(work / name / "uploads")},
                "metrics_interval_s": 5.0,
            }
            cfg["combination"] = combination(blend)
            if knows_process:  # code before the batch path has one path only (call it anything)
                cfg["process"] = process
            app = EdgeApp(EdgeConfig.from_dict(cfg))
            _say(f"{path}: {len(msgs)} records in batches of {args.batch}")
            export_pid = getattr(getattr(app.uploads, "_forecasts", None), "pid", None)  # the export's child
            cpu, wall, threads = time.process_time(), time.perf_counter(), thread_times(os.getpid())
            export = thread_times(export_pid) if export_pid else {}
            for i in range(0, len(msgs), args.batch):
                app.process(msgs[i : i + args.batch])
            end = time.perf_counter()
            cpu, wall = time.process_time() - cpu, end - wall
            while app.uploads.pending() and time.perf_counter() - end < 60:  # the windows closed meanwhile
                time.sleep(0.01)
            threads = times_between(threads, thread_times(os.getpid()))
            if export_pid:
                threads["export"] = total(times_between(export, thread_times(export_pid)))
            stages = app.stages.summary()
            out["paths"][path] = {
                "stage_us": stages["p50_us"],
                "stage_sum_us": round(sum(stages["p50_us"].values()), 2),
                "process_cpu_us": round(cpu / len(msgs) * 1e6, 2),
                "wall_us": round(wall / len(msgs) * 1e6, 2),
                # CPU µs per record of each thread (main: the loop; python: the window uploader; rdk:*: librdkafka),
                # the uploader's windows of this run included
                "thread_cpu_us": {k: round(v["cpu_s"] / len(msgs) * 1e6, 2) for k, v in sorted(threads.items())},
            }
            _say(f"{path}: {json.dumps(out['paths'][path])}")
            app._shutdown()  # noqa: SLF001 (as after SIGTERM)
    finally:
        servers.destroy()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    out["cpus"] = os.cpu_count()
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hybridstream.devtools.edge_stages", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--records", type=int, default=30000, help="readings preloaded and processed (30000)")
    parser.add_argument("--devices", type=int, default=5, help="devices the readings are spread over, in turn (5)")
    parser.add_argument("--batch", type=int, default=2000, help="records per processed batch (2000: kafka.batch_size)")
    parser.add_argument("--process", default="record,batch", help="paths, comma-separated (record,batch)")
    parser.add_argument("--models", default=None, help="a folder with batch/*/model.tflite and speed/*/ (else trained)")
    parser.add_argument(
        "--blend",
        default="none",
        help="stack layers, in turn: none (the stack alone), pair, experts, corrected (pair + the correction layer, "
        "the edge's default) (none)",
    )
    parser.add_argument("--workdir", default=None, help="where the broker and models live (a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    unknown = [b for b in args.blend.split(",") if b not in BLENDS]
    if unknown:
        parser.error(f"--blend takes {', '.join(BLENDS)}, not {', '.join(unknown)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
