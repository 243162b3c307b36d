"""What the local Java servers (Apache Kafka, ElasticMQ) share: the JVM command line and the
``fetch`` / ``start`` / ``stop`` command-line interface of their modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def java_command(libs: Path, main: str, *args: str, heap: str, options: Sequence[str] = ()) -> list[str]:
    """``java`` with a fixed heap, the serial GC (small, single-node servers) and ``libs/*`` on the
    class path, running ``main`` with ``args``; ``options`` are extra JVM options."""
    return ["java", f"-Xmx{heap}", *options, "-XX:+UseSerialGC", "-cp", str(Path(libs) / "*"), main, *args]


def server_parser(
    prog: str, doc: str | None, *, jars: str, default_port: int, start_help: str
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The parser of ``python -m hybridstream.servers.<server>``: ``fetch``, ``start --port``,
    ``stop --port [--wipe]``; returns (parser, the ``start`` sub-parser for server-specific options)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help=f"download the {jars} jars with mvn (cached)")
    start = sub.add_parser("start", help=start_help)
    start.add_argument("--port", type=int, default=default_port)
    stop = sub.add_parser("stop", help="stop the server started on --port, by PID")
    stop.add_argument("--port", type=int, default=default_port)
    stop.add_argument("--wipe", action="store_true", help="also delete its state (data, config, log)")
    return parser, start


def run_server_cli(
    args: argparse.Namespace,
    *,
    fetch: Callable[[], Path],
    server: Callable[[argparse.Namespace], Any],
    start: Callable[[Any, argparse.Namespace], None],
) -> int:
    """Run a parsed ``fetch`` / ``start`` / ``stop``: ``server(args)`` builds the server object,
    ``start(server, args)`` starts it and prints where it is."""
    if args.cmd == "fetch":
        print(fetch())
        return 0
    instance = server(args)
    if args.cmd == "start":
        start(instance, args)
        return 0
    stopped = instance.stop()
    if args.wipe:
        instance.destroy()
    print("stopped" if stopped else "not running")
    return 0
