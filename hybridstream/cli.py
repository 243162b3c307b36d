"""``hybridstream``: one CLI for the edge app, the trainer, the local stack and the fleet.

Each subcommand group lives beside the code it drives and registers itself through a
``register(subparsers)`` function; heavy imports (TensorFlow, boto3, Kafka clients) happen
inside the commands, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hybridstream import __version__

# group name -> module with register(subparsers); groups appear as their issues land
GROUPS: dict[str, str] = {
    "edge": "edge_app.cli",
    "train": "training_job.cli",
    "local": "hybridstream.localstack.cli",
    "fleet": "hybridstream.fleet.cli",
    "models": "hybridstream.models_cli",
    "eval": "hybridstream.evaluation.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridstream",
        description="Edge-cloud stream analytics for Raspberry Pi fleets: hybrid LSTM forecasting "
        "that stays accurate under concept drift.",
    )
    parser.add_argument("--version", action="version", version=f"hybridstream {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    for module_name in GROUPS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        # a group without a subcommand prints its own help
        target = getattr(args, "group_parser", parser)
        target.print_help()
        return 2 if args.group is None else 0
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"hybridstream: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
