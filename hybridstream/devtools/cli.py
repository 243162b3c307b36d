"""Dev-only commands added to the ``edge`` group of the ``hybridstream`` CLI (not to ``python -m edge_app``)."""

from __future__ import annotations

import argparse
import json

from model_contract.topics import KAFKA_TOPICS


def extend(cmds: argparse._SubParsersAction) -> None:
    """Add ``replay`` to the ``edge`` group's commands."""
    rp = cmds.add_parser(
        "replay",
        help="publish a CSV of readings into Kafka at a steady rate (dev tool)",
        description="Publish a CSV (header row; the timestamp and the feature columns) as JSON readings "
        "with one producer, batching and schedule-based rate control.",
    )
    rp.add_argument("--csv", required=True, help="CSV file, e.g. data/turbine/test.csv")
    rp.add_argument("--rate", type=float, default=1000.0, help="records per second; 0 = as fast as possible (1000)")
    rp.add_argument("--device", action="append", help="device id (repeat for several; default: turbine-1)")
    rp.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (127.0.0.1:9092)")
    rp.add_argument("--topic", default=KAFKA_TOPICS["readings"], help=f"topic ({KAFKA_TOPICS['readings']})")
    rp.add_argument("--limit", type=int, help="stop after this many records (default: the whole file)")
    rp.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from hybridstream.devtools.csv_publisher import csv_records, publish_at_rate

    devices = args.device or ["turbine-1"]
    result = publish_at_rate(
        csv_records(args.csv, devices, args.limit),
        bootstrap=args.bootstrap,
        topic=args.topic,
        rate=args.rate if args.rate > 0 else None,
    )
    print(json.dumps(result.to_dict()), flush=True)
    return 0 if result.errors == 0 else 1
