"""``hybridstream edge ...`` and ``python -m edge_app ...`` (the Greengrass entry point).

Only the standard library is imported at module level, so ``--help`` is instant and the
component needs neither the ``hybridstream`` package nor TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``edge`` group to the ``hybridstream`` CLI; returns its commands (dev tools add theirs)."""
    group = sub.add_parser(
        "edge",
        help="the edge app: per-record hybrid inference on Kafka",
        description="Run the edge app (run), or forward readings to the cloud (forward).",
    )
    group.set_defaults(group_parser=group)
    cmds = group.add_subparsers(dest="edge_cmd", metavar="COMMAND")
    add_commands(cmds)
    return cmds


def add_commands(cmds: argparse._SubParsersAction) -> None:
    run = cmds.add_parser(
        "run",
        help="consume readings, predict, publish (until SIGTERM/SIGINT)",
        description="Consume sensor readings, forecast with the batch and speed TFLite models, blend, and "
        "publish predictions, metrics, drift events and windows. See docs/edge.md for the config.",
    )
    run.add_argument("--config", required=True, help="JSON or TOML config file (docs/edge.md lists every key)")
    run.add_argument("--bootstrap", help="override the config's Kafka bootstrap servers")
    run.add_argument("--thing", dest="thing_name", help="override the config's thing name")
    run.add_argument("--max-seconds", type=float, help="stop after this long (default: run until a signal)")
    run.set_defaults(func=cmd_run)

    fw = cmds.add_parser(
        "forward",
        help="mode=cloud: forward valid readings to hybridstream/<thing>/readings over MQTT",
        description="Consume sensor readings, validate them like `run` (bad ones to the deadletter topic), "
        "and publish them in batches to hybridstream/<thing>/readings; offsets are committed after the "
        "broker's PUBACK; re-training windows are spooled and uploaded as `run` does. Same config file as "
        "`run` (models.batch is optional). See docs/edge.md.",
    )
    fw.add_argument("--config", required=True, help="JSON or TOML config file (docs/edge.md lists every key)")
    fw.add_argument("--bootstrap", help="override the config's Kafka bootstrap servers")
    fw.add_argument("--thing", dest="thing_name", help="override the config's thing name")
    fw.add_argument("--max-seconds", type=float, help="stop after this long (default: run until a signal)")
    fw.set_defaults(func=cmd_forward)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT (a second signal ends the process at once)."""
    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        logging.getLogger("edge_app").info("signal %d: finishing the batch, then shutting down", signum)
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    from edge_app.app import EdgeApp
    from edge_app.config import load_config

    cfg = load_config(args.config, {"bootstrap": args.bootstrap, "thing_name": args.thing_name})
    stop = _stop_on_signals()  # before loading models: a stop during start-up is clean too
    app = EdgeApp(cfg)
    app.stop = stop
    counters = app.run(max_seconds=args.max_seconds)
    print(json.dumps(counters), flush=True)
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    from edge_app.config import load_config
    from edge_app.forward import Forwarder

    overrides = {"bootstrap": args.bootstrap, "thing_name": args.thing_name}
    cfg = load_config(args.config, overrides, require_batch_model=False)
    stop = _stop_on_signals()
    forwarder = Forwarder(cfg)
    forwarder.stop = stop
    counters = forwarder.run(max_seconds=args.max_seconds)
    print(json.dumps(counters), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_app`` without the hybridstream package."""
    parser = argparse.ArgumentParser(prog="edge_app", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    add_commands(parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"edge_app: error: {exc}", file=sys.stderr)
        return 1
