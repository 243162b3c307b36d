"""``hybridstream local``: start and stop the local servers (Kafka, and more as they land)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "local",
        help="run the local stack on 127.0.0.1 (no AWS account)",
        description="Start/stop real local servers for the demo and the tests.",
    )
    group.set_defaults(group_parser=group)
    cmds = group.add_subparsers(dest="local_cmd", metavar="COMMAND")

    kafka = cmds.add_parser(
        "kafka",
        help="Apache Kafka broker (KRaft, single node)",
        description="Fetch (mvn), start or stop a single-node Kafka broker on 127.0.0.1.",
    )
    kafka.add_argument("action", choices=["fetch", "start", "stop"])
    kafka.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
    kafka.add_argument("--controller-port", type=int, default=9093, help="KRaft controller port (default 9093)")
    kafka.add_argument("--wipe", action="store_true", help="with stop: delete the broker's data too")
    kafka.set_defaults(func=_kafka)


def _kafka(args: argparse.Namespace) -> int:
    from hybridstream.localstack import kafka

    argv = [args.action]
    if args.action == "start":
        argv += ["--port", str(args.port), "--controller-port", str(args.controller_port)]
    elif args.action == "stop":
        argv += ["--port", str(args.port)] + (["--wipe"] if args.wipe else [])
    return kafka.main(argv)
