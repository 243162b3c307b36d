"""``hybridstream local demo`` and ``local experiment``: the demo's commands, added to the ``local``
group (:data:`hybridstream.cli.GROUP_EXTENSIONS`) so the servers package needs nothing of the demo."""

from __future__ import annotations

import argparse


def extend(cmds: argparse._SubParsersAction) -> None:
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
