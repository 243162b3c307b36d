"""``hybridstream local``: start and stop the local servers (Kafka, radosgw for S3, ElasticMQ for SQS,
mosquitto with mutual TLS for IoT Core, toxiproxy for network faults), one at a time or as a unit.

The commands call the server classes (:mod:`hybridstream.servers.kafka`, ...) and
:class:`~hybridstream.servers.local.LocalServers` directly; default ports come from
:data:`~hybridstream.servers.local.DEFAULT_PORTS`. The demo adds ``local demo`` and
``local experiment`` (:mod:`hybridstream.demo.cli`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridstream.servers.local import DEFAULT_CONTROLLER_PORT, DEFAULT_PORTS, STACK_ROOT, UP


@dataclass(frozen=True)
class ServerCommand:
    """One server's ``hybridstream local <name> ACTION``."""

    name: str
    help: str
    description: str
    port_help: str
    can_fetch: bool
    start: Callable[[argparse.Namespace], tuple[Any, dict[str, Any]]]  # the started server, what to print
    options: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def _kafka(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from hybridstream.servers.kafka import KafkaBroker

    broker = KafkaBroker.for_port(args.port)
    if args.action != "start":
        return broker, {}
    broker.controller_port = args.controller_port
    broker.start()
    return broker, {"bootstrap": broker.bootstrap, "pid": broker.pid_file.read_text(), "log": str(broker.log_file)}


def _radosgw(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from hybridstream.servers.radosgw import RadosGateway

    gw = RadosGateway.for_port(args.port)
    if args.action != "start":
        return gw, {}
    gw.start()
    return gw, {**gw.credentials(), "keys_file": str(gw.keys_file)}


def _sqs(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from hybridstream.servers.sqs import SqsServer

    server = SqsServer.for_port(args.port)
    if args.action != "start":
        return server, {}
    server.start()
    url, dlq = server.create_queue(args.queue, max_receive_count=args.max_receive_count)
    return server, {"backend": server.backend, "endpoint": server.endpoint, "queue_url": url, "dlq_url": dlq}


def _mosquitto(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from hybridstream.servers.mosquitto import Mosquitto

    broker = Mosquitto.for_port(args.port)
    if args.action != "start":
        return broker, {}
    broker.start()
    return broker, broker.info()


def _toxiproxy(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from hybridstream.servers.toxiproxy import Toxiproxy

    server = Toxiproxy.for_port(args.port)
    if args.action != "start":
        return server, {}
    server.start()
    return server, {"api": server.url, "version": server.version(), "log": str(server.log_file)}


def _kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--controller-port",
        type=int,
        default=DEFAULT_CONTROLLER_PORT,
        help=f"KRaft controller port (default {DEFAULT_CONTROLLER_PORT})",
    )


def _sqs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", default="training", help="with start: queue to create (default training)")
    parser.add_argument("--max-receive-count", type=int, default=3, help="with start: receives before the DLQ")


SERVER_COMMANDS = (
    ServerCommand(
        "kafka",
        "Apache Kafka broker (KRaft, single node)",
        "Fetch (mvn), start or stop a single-node Kafka broker on 127.0.0.1.",
        "client port",
        True,
        _kafka,
        _kafka_options,
    ),
    ServerCommand(
        "radosgw",
        "S3: Ceph radosgw (one mon, one memstore OSD)",
        "Start or stop a single-node Ceph cluster + radosgw on 127.0.0.1; start prints the endpoint and the "
        "access/secret keys generated at run time (also in .local/radosgw-<port>/keys.json).",
        "S3 port",
        False,
        _radosgw,
    ),
    ServerCommand(
        "sqs",
        "SQS: ElasticMQ (moto server mode with HYBRIDSTREAM_SQS_BACKEND=moto)",
        "Fetch (mvn), start or stop a local SQS server on 127.0.0.1; start creates a queue and its <name>-dlq "
        "with a redrive policy and prints their URLs.",
        "SQS port",
        True,
        _sqs,
        _sqs_options,
    ),
    ServerCommand(
        "mosquitto",
        "IoT Core stand-in: mosquitto with mutual TLS",
        "Start or stop mosquitto on 127.0.0.1 with mutual TLS; start generates a CA, a server certificate and a "
        "client certificate with openssl (in .local/mosquitto-<port>/certs/, never committed) and prints the "
        "endpoint and the file paths.",
        "MQTT over TLS port",
        False,
        _mosquitto,
    ),
    ServerCommand(
        "toxiproxy",
        "network fault proxy (Shopify toxiproxy) for the chaos scenarios",
        "Build (go install, cached in .cache/), start or stop toxiproxy's server on 127.0.0.1; proxies and toxics "
        "are made through its HTTP API (hybridstream.servers.toxiproxy).",
        "API port",
        True,
        _toxiproxy,
    ),
)


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    group = sub.add_parser(
        "local",
        help="run the local stack on 127.0.0.1 (no AWS account)",
        description="Start/stop real local servers for the demo and the tests.",
    )
    group.set_defaults(group_parser=group)
    cmds = group.add_subparsers(dest="local_cmd", metavar="COMMAND")
    for command in SERVER_COMMANDS:
        parser = cmds.add_parser(command.name, help=command.help, description=command.description)
        parser.add_argument("action", choices=["fetch", "start", "stop"] if command.can_fetch else ["start", "stop"])
        port = DEFAULT_PORTS[command.name]
        parser.add_argument("--port", type=int, default=port, help=f"{command.port_help} (default {port})")
        command.options(parser)
        parser.add_argument("--wipe", action="store_true", help="with stop: delete its state folder too")
        parser.set_defaults(func=_server, server_command=command)

    up = cmds.add_parser(
        "up",
        help="start the whole local stack (Kafka, radosgw, ElasticMQ, mosquitto) for development",
        description="Start Kafka, radosgw (S3, buckets hybridstream-windows/-models/-results), ElasticMQ (SQS, queue "
        "training + DLQ) and mosquitto (mutual TLS) on 127.0.0.1, in parallel. A port already in use, or a server "
        "that does not come up, is named and everything started is stopped. State in .local/stack/.",
    )
    for name in UP:
        port = DEFAULT_PORTS[name]
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
    router.add_argument(
        "--stack", type=Path, default=STACK_ROOT / "stack.json", help="the stack's description (default: local up's)"
    )
    router.set_defaults(func=_router)
    return cmds


def _server(args: argparse.Namespace) -> int:
    """fetch / start / stop one server."""
    command: ServerCommand = args.server_command
    try:
        if args.action == "fetch":
            from importlib import import_module

            print(import_module(f"hybridstream.servers.{command.name}").fetch())
            return 0
        began = time.monotonic()
        server, described = command.start(args)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"hybridstream local {command.name}: {exc}", file=sys.stderr)
        return 1
    if args.action == "start":
        print(f"{command.name} up on 127.0.0.1:{server.port} in {time.monotonic() - began:.1f}s")
        print(json.dumps(described, indent=1))
        return 0
    was_running = server.stop()
    if args.wipe:
        server.destroy()
    print("stopped" if was_running else "not running")
    return 0


def _up(args: argparse.Namespace) -> int:
    from hybridstream.servers.local import LocalServers, ServersError, status

    ports = {n: 0 if args.free_ports else getattr(args, f"{n}_port") for n in UP}
    servers = LocalServers(ports=ports)
    if servers.stack_file.exists() and any(r["running"] for r in status(servers.state_root)):
        print(f"a local stack is running ({servers.stack_file}): `hybridstream local down` first", file=sys.stderr)
        return 1
    try:
        servers.start()
    except ServersError as exc:
        print(f"hybridstream local up: {exc}", file=sys.stderr)
        return 1
    _print_status(status(servers.state_root))
    print(f"\ndescribed in {servers.stack_file}; S3 keys in {servers.info['radosgw']['keys_file']}")
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
    from hybridstream.servers.iot_router import run

    return run(args.stack, args.mode)
