"""``python -m hybridstream.demo`` (what ``make demo`` runs): the whole loop, then the report."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hybridstream.demo import scenarios as sc


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--mode", default=env("MODE") or "edge-cloud", choices=["edge-cloud", "edge", "cloud"],
                   help="deployment mode (env MODE; default edge-cloud)")  # fmt: skip
    p.add_argument("--quick", action="store_true", default=env("QUICK", "") not in ("", "0"),
                   help=f"a short run: {','.join(sc.QUICK_SCENARIOS)}, 1,500 readings each (env QUICK=1)")  # fmt: skip
    p.add_argument("--scenarios", default=env("SCENARIOS") or None,
                   help=f"comma-separated, from {','.join(sc.ALL_SCENARIOS)} (env SCENARIOS; "
                   f"default {','.join(sc.DEFAULT_SCENARIOS)})")  # fmt: skip
    p.add_argument("--rows", type=int, default=int(env("ROWS") or 0) or None,
                   help="readings per scenario (env ROWS; default all 3,000, QUICK 1,500)")  # fmt: skip
    p.add_argument("--rate", type=float, default=float(env("RATE") or 0) or None,
                   help="readings per second into Kafka (env RATE; default 40)")  # fmt: skip
    p.add_argument("--window", type=int, default=int(env("WINDOW") or 0) or None,
                   help="edge window size in readings: a speed model per window (default 250, QUICK 200)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=int(env("EPOCHS") or 0) or None,
                   help="trainer max epochs (default: the trainer's)")  # fmt: skip
    p.add_argument("--tail", type=float, default=None, help="seconds to wait for models in flight after a stream")
    p.add_argument("--until-swaps", type=int, default=None,
                   help="end a scenario's wait for models in flight once this many were swapped in")  # fmt: skip
    p.add_argument("--out", default=env("REPORTS") or None, help="reports folder (default reports/)")
    p.add_argument("--keep-state", action="store_true", help="keep .local/demo-<ts>/ (server state, edge state)")


def options_from(args: argparse.Namespace):
    from pathlib import Path

    from hybridstream.demo.run import DemoOptions

    kw = {"mode": args.mode, "epochs": args.epochs, "keep_state": args.keep_state}
    if args.scenarios:
        kw["scenarios"] = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
        unknown = [s for s in kw["scenarios"] if s not in sc.ALL_SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(sc.ALL_SCENARIOS)}")
    for key, value in (("rows", args.rows), ("rate", args.rate), ("tail_s", args.tail), ("window", args.window),
                       ("until_swaps", args.until_swaps)):  # fmt: skip
        if value is not None:
            kw[key] = value
    if args.out:
        kw["out_root"] = Path(args.out).resolve()
    return DemoOptions.quick(**kw) if args.quick else DemoOptions(**kw)


def run(args: argparse.Namespace) -> int:
    from hybridstream.demo.run import Demo, DemoError

    try:
        demo = Demo(options_from(args))
    except (ValueError, DemoError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    demo.run()
    return 0 if demo.status == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridstream.demo", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edge_app.mqtt").setLevel(logging.ERROR)  # the router's client: no "disconnected" at stop
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
