"""``hybridstream``: one CLI for the edge app, the trainer, the local stack and the fleet.

Each subcommand group lives beside the code it drives and registers itself through a
``register(subparsers)`` function; heavy imports (TensorFlow, boto3, Kafka clients) happen
inside the commands, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from hybridstream import __version__

# group name -> module with register(subparsers); a group appears iff its module exists
GROUPS: dict[str, str] = {
    "edge": "edge_app.cli",
    "train": "training_job.cli",
    "local": "hybridstream.servers.cli",
    "fleet": "hybridstream.fleet.cli",
    "models": "hybridstream.fleet.models_cli",
    "eval": "hybridstream.evaluation.cli",
    "results": "hybridstream.results.cli",
}


# group name -> modules with extend(commands) adding dev-only commands to a group whose own
# module ships to devices (e.g. `edge replay`: edge_app/ stays free of dev tools)
GROUP_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "edge": ("hybridstream.devtools.cli",),
    "local": ("hybridstream.demo.cli",),  # `local demo`, `local experiment`: the servers import no demo
}


def module_exists(name: str) -> bool:
    """True if ``name`` can be imported: its file exists (a missing parent package counts as missing).

    Only a missing module hides a group: a module that exists but fails to import is a bug and raises.

    >>> module_exists("hybridstream.cli"), module_exists("hybridstream.no_such_group.cli")
    (True, False)
    """
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridstream",
        description="Edge-cloud stream analytics for Raspberry Pi fleets: hybrid LSTM forecasting "
        "that stays accurate under concept drift.",
    )
    parser.add_argument("--version", action="version", version=f"hybridstream {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    for name, module_name in GROUPS.items():
        if not module_exists(module_name):
            continue  # group not built (or not shipped in this artifact)
        cmds = importlib.import_module(module_name).register(sub)
        for extension in GROUP_EXTENSIONS.get(name, ()):
            if cmds is not None and module_exists(extension):
                importlib.import_module(extension).extend(cmds)
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
