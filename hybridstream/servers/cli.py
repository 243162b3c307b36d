"""``hybridstream local``: start and stop the local servers (Kafka, radosgw for S3, ElasticMQ for SQS,
mosquitto with mutual TLS for IoT Core, toxiproxy for network faults)."""

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

    rgw = cmds.add_parser(
        "radosgw",
        help="S3: Ceph radosgw (one mon, one memstore OSD)",
        description="Start or stop a single-node Ceph cluster + radosgw on 127.0.0.1; start prints the "
        "endpoint and the access/secret keys generated at run time (also in .local/radosgw-<port>/keys.json).",
    )
    rgw.add_argument("action", choices=["start", "stop"])
    rgw.add_argument("--port", type=int, default=7480, help="S3 port (default 7480)")
    rgw.add_argument("--wipe", action="store_true", help="with stop: delete its state folder too")
    rgw.set_defaults(func=_radosgw)

    sqs = cmds.add_parser(
        "sqs",
        help="SQS: ElasticMQ (moto server mode with HYBRIDSTREAM_SQS_BACKEND=moto)",
        description="Fetch (mvn), start or stop a local SQS server on 127.0.0.1; start creates a queue and "
        "its <name>-dlq with a redrive policy and prints their URLs.",
    )
    sqs.add_argument("action", choices=["fetch", "start", "stop"])
    sqs.add_argument("--port", type=int, default=9324, help="SQS port (default 9324)")
    sqs.add_argument("--queue", default="training", help="with start: queue to create (default training)")
    sqs.add_argument("--max-receive-count", type=int, default=3, help="with start: receives before the DLQ")
    sqs.add_argument("--wipe", action="store_true", help="with stop: delete its state folder too")
    sqs.set_defaults(func=_sqs)

    mqtt = cmds.add_parser(
        "mosquitto",
        help="IoT Core stand-in: mosquitto with mutual TLS",
        description="Start or stop mosquitto on 127.0.0.1 with mutual TLS; start generates a CA, a server "
        "certificate and a client certificate with openssl (in .local/mosquitto-<port>/certs/, never committed) "
        "and prints the endpoint and the file paths.",
    )
    mqtt.add_argument("action", choices=["start", "stop"])
    mqtt.add_argument("--port", type=int, default=8883, help="MQTT over TLS port (default 8883)")
    mqtt.add_argument("--wipe", action="store_true", help="with stop: delete its state folder (certificates too)")
    mqtt.set_defaults(func=_mosquitto)

    up = cmds.add_parser(
        "up",
        help="start the whole local stack (Kafka, radosgw, ElasticMQ, mosquitto) for development",
        description="Start Kafka, radosgw (S3, buckets hybridstream-windows/-models/-results), ElasticMQ (SQS, queue "
        "training + DLQ) and mosquitto (mutual TLS) on 127.0.0.1, in parallel. A port already in use, or a server "
        "that does not come up, is named and everything started is stopped. State in .local/stack/.",
    )
    for name, port in (("kafka", 9092), ("radosgw", 7480), ("sqs", 9324), ("mosquitto", 8883)):
        up.add_argument(f"--{name}-port", type=int, default=port, help=f"default {port} (0: a free port)")
    up.add_argument("--free-ports", action="store_true", help="pick free ports for every server")
    up.set_defaults(func=_up)
    down = cmds.add_parser("down", help="stop the stack `local up` started (by PID)")
    down.set_defaults(func=_down)
    st = cmds.add_parser("status", help="each server of the stack: port, PID, running, listening")
    st.add_argument("--json", action="store_true", help="JSON instead of a table")
    st.set_defaults(func=_status)
    router = cmds.add_parser(
        "router",
        help="the local IoT rule router on the stack `local up` started (runs until Ctrl-C)",
        description="Subscribe to hybridstream/+/+ on the local mosquitto, evaluate the CDK stack's topic rules "
        "(infra.topic_rules) and run their actions locally (SQS, S3, the Lambda handlers in-process).",
    )
    router.add_argument("--mode", default="edge-cloud", choices=["edge-cloud", "edge", "cloud"])
    router.set_defaults(func=_router)
    demo = cmds.add_parser(
        "demo",
        help="the whole edge-cloud loop on this machine, with a report (what `make demo` runs)",
        description="Start the local stack, pre-train the batch model, run the IoT router, the trainer and the edge "
        "app on each scenario, write reports/demo-<timestamp>/ and stop everything.",
    )
    from hybridstream.demo.__main__ import add_arguments

    add_arguments(demo)
    demo.set_defaults(func=_demo)

    exp = cmds.add_parser(
        "experiment",
        help="the three deployment modes over an emulated edge-cloud link (toxiproxy), latency per stage",
        description="Run the same stream in edge, edge-cloud and cloud mode, the edge side reaching MQTT and S3 "
        "through toxiproxy (latency + bandwidth toxics), optionally under a cgroup v1 CPU quota; write "
        "reports/experiment-<timestamp>/ with reading -> prediction and window -> model serving per mode.",
    )
    exp.add_argument("what", choices=["modes"])
    exp.add_argument("--modes", default="edge,edge-cloud,cloud", help="comma-separated (default all three)")
    exp.add_argument("--rtt-ms", type=float, default=40.0, help="round trip added by the link (default 40)")
    exp.add_argument("--mbit", type=float, default=20.0, help="link bandwidth each way, Mbit/s (default 20)")
    exp.add_argument("--edge-cpu", type=float, default=None, help="CPU quota of the edge side in cores (cgroup v1)")
    exp.add_argument("--scenario", default="none", help="scenario (default none)")
    exp.add_argument("--rows", type=int, default=900, help="readings (default 900)")
    exp.add_argument("--rate", type=float, default=20.0, help="readings per second (default 20)")
    exp.add_argument("--window", type=int, default=150, help="window size in readings (default 150)")
    exp.add_argument("--tail", type=float, default=90.0, help="seconds to wait for models in flight (default 90)")
    exp.set_defaults(func=_experiment)

    tox = cmds.add_parser(
        "toxiproxy",
        help="network fault proxy (Shopify toxiproxy) for the chaos scenarios",
        description="Build (go install, cached in .cache/), start or stop toxiproxy's server on 127.0.0.1; "
        "proxies and toxics are made through its HTTP API (hybridstream.servers.toxiproxy).",
    )
    tox.add_argument("action", choices=["fetch", "start", "stop"])
    tox.add_argument("--port", type=int, default=8474, help="API port (default 8474)")
    tox.add_argument("--wipe", action="store_true", help="with stop: delete its state folder too")
    tox.set_defaults(func=_toxiproxy)


def _kafka(args: argparse.Namespace) -> int:
    from hybridstream.servers import kafka

    argv = [args.action]
    if args.action == "start":
        argv += ["--port", str(args.port), "--controller-port", str(args.controller_port)]
    elif args.action == "stop":
        argv += ["--port", str(args.port)] + (["--wipe"] if args.wipe else [])
    return kafka.main(argv)


def _radosgw(args: argparse.Namespace) -> int:
    from hybridstream.servers import radosgw

    argv = [args.action, "--port", str(args.port)] + (["--wipe"] if args.action == "stop" and args.wipe else [])
    return radosgw.main(argv)


def _sqs(args: argparse.Namespace) -> int:
    from hybridstream.servers import sqs

    argv = [args.action]
    if args.action == "start":
        argv += ["--port", str(args.port), "--queue", args.queue, "--max-receive-count", str(args.max_receive_count)]
    elif args.action == "stop":
        argv += ["--port", str(args.port)] + (["--wipe"] if args.wipe else [])
    return sqs.main(argv)


def _mosquitto(args: argparse.Namespace) -> int:
    from hybridstream.servers import mosquitto

    argv = [args.action, "--port", str(args.port)] + (["--wipe"] if args.action == "stop" and args.wipe else [])
    return mosquitto.main(argv)


def _toxiproxy(args: argparse.Namespace) -> int:
    from hybridstream.servers import toxiproxy

    argv = [args.action, "--port", str(args.port)] + (["--wipe"] if args.action == "stop" and args.wipe else [])
    return toxiproxy.main(argv)


def _up(args: argparse.Namespace) -> int:
    import sys

    from hybridstream.servers.local import LocalServers, ServersError, status

    ports = {n: 0 if args.free_ports else getattr(args, f"{n}_port") for n in ("kafka", "radosgw", "sqs", "mosquitto")}
    stack = LocalServers(ports=ports)
    if stack.stack_file.exists() and any(r["running"] for r in status(stack.state_root)):
        print(f"a local stack is running ({stack.stack_file}): `hybridstream local down` first", file=sys.stderr)
        return 1
    try:
        stack.start()
    except ServersError as exc:
        print(f"hybridstream local up: {exc}", file=sys.stderr)
        return 1
    _print_status(status(stack.state_root))
    print(f"\ndescribed in {stack.stack_file}; S3 keys in {stack.info['radosgw']['keys_file']}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from hybridstream.servers.local import down

    stopped = down()
    print("stopped: " + ", ".join(stopped) if stopped else "no local stack running")
    return 0


def _print_status(rows: list[dict]) -> None:
    print(f"{'server':<10} {'daemon':<10} {'port':>6} {'pid':>8}  {'state':<8} endpoint")
    for r in rows:
        state = "running" if r["running"] and r["listening"] else ("no port" if r["running"] else "stopped")
        print(f"{r['server']:<10} {r['daemon']:<10} {r['port']:>6} {r['pid']:>8}  {state:<8} {r['endpoint']}")


def _status(args: argparse.Namespace) -> int:
    import json

    from hybridstream.servers.local import status

    rows = status()
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no local stack (start one with `hybridstream local up`)")
    else:
        _print_status(rows)
    return 0 if rows and all(r["running"] for r in rows) else 3


def _router(args: argparse.Namespace) -> int:
    from hybridstream.servers import iot_router

    return iot_router.main(["--mode", args.mode])


def _demo(args: argparse.Namespace) -> int:
    import logging

    from hybridstream.demo.__main__ import run

    logging.getLogger("edge_app.mqtt").setLevel(logging.ERROR)
    return run(args)


def _experiment(args: argparse.Namespace) -> int:
    import logging

    from hybridstream.demo.experiment import run_modes

    logging.getLogger("edge_app.mqtt").setLevel(logging.ERROR)
    run_modes(
        modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
        rtt_ms=args.rtt_ms,
        mbit=args.mbit,
        edge_cpu=args.edge_cpu,
        scenario=args.scenario,
        rows=args.rows,
        rate=args.rate,
        window=args.window,
        tail_s=args.tail,
    )
    return 0
