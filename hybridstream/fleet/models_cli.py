"""``hybridstream models``: list | show | promote | rollback the models published in the stack's models
bucket (output ``ModelsBucket``). Promote and rollback move ``models/<name>/LATEST``, which the stack
announces to the devices as for any new model (see :mod:`hybridstream.fleet.models`)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from hybridstream.fleet.cli import AwsCommands

    cmds = AwsCommands(
        sub,
        "models",
        "models_cmd",
        help="published models: list, show, promote, rollback",
        description="Published models of a deployed HybridStream stack, with their manifests and holdout scores; "
        "promote/rollback point the devices at another published version through the normal announcement.",
    )

    p = cmds.add(
        "list",
        cmd_list,
        help="every model name with its current version and holdout scores",
        description="Every model under models/ in the models bucket: current version (LATEST), kind, holdout "
        "RMSE/MAE, number of versions, when it became current, and any override.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    p = cmds.add(
        "show",
        cmd_show,
        help="versions of one model (or one version's full manifest)",
        description="The versions of NAME, newest window first, with their windows, holdout scores and guardrail "
        "verdicts, plus refused candidates; with --version, that version's whole manifest.",
    )
    p.add_argument("name", help="model name, e.g. speed-hybridstream-pi0001 or batch")
    p.add_argument("--version", help="one version: print its manifest")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = cmds.add(
        "promote",
        cmd_promote,
        help="make a published version current (devices get it announced)",
        description="Point LATEST of NAME at VERSION after checking its model against its manifest. A model of "
        "an older window than the current one needs --override (LATEST otherwise only moves forward); the "
        "override is logged and recorded.",
        action="promote",
    )
    p.add_argument("name", help="model name")
    p.add_argument("--version", required=True, help="the published version to make current")
    p.add_argument("--override", action="store_true", help="allow moving LATEST back to an older window")
    p.add_argument("--reason", default="", help="why (recorded with an override)")

    p = cmds.add(
        "rollback",
        cmd_rollback,
        help="point the devices back to an earlier version",
        description="Point LATEST of NAME back to --version, or to the version before the current one: an explicit "
        "override of LATEST's forward-only rule, logged and recorded. The edge verifies the model like any other.",
        action="rollback",
    )
    p.add_argument("name", help="model name")
    p.add_argument("--version", help="the version to go back to (default: the one before the current)")
    p.add_argument("--reason", default="", help="why (recorded in LATEST and the audit record)")


def _registry(args: argparse.Namespace):
    from hybridstream.fleet.cli import context
    from hybridstream.fleet.models import ModelRegistry

    ctx, outputs = context(args)
    return ctx, ModelRegistry(ctx.client("s3"), outputs.require("ModelsBucket"))


def _guard(fn):
    from hybridstream.fleet.session import guarded

    return guarded("reading the models bucket")(fn)


def cmd_list(args: argparse.Namespace) -> int:
    _, registry = _registry(args)
    rows = _guard(registry.listing)()
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print(f"no models in s3://{registry.bucket}/models/")
        return 0
    table = [("NAME", "CURRENT", "KIND", "RMSE", "MAE", "VERSIONS", "CURRENT SINCE", "OVERRIDE")]
    for r in rows:
        m = r["metrics"]
        table.append(
            (
                r["name"],
                r["current"] or "-",
                r["kind"] or "-",
                f"{m['rmse']:.4f}" if isinstance(m.get("rmse"), int | float) else "-",
                f"{m['mae']:.4f}" if isinstance(m.get("mae"), int | float) else "-",
                str(r["versions"]),
                r["published_at"] or "-",
                (r["override"] or {}).get("action", "") if isinstance(r["override"], dict) else "",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _, registry = _registry(args)
    data = _guard(registry.show)(args.name, args.version)
    if args.json or args.version:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    latest = data["latest"] or {}
    print(
        f"{data['name']}: current {latest.get('version', '-')}"
        + (f" (override: {latest['override']})" if latest.get("override") else "")
    )
    for v in data["versions"]:
        m = v["metrics"]
        rmse = f"rmse {m['rmse']:.4f}" if isinstance(m.get("rmse"), int | float) else "rmse -"
        mark = "*" if v["current"] else " "
        window = v["window"].get("last_ts", "-")
        again = f"  (re-release of {v['rerelease_of']})" if v.get("rerelease_of") else ""
        print(f" {mark} {v['version']}  window to {window}  {rmse}  created {v['created_at'] or '-'}{again}")
    for v in data["rejected"]:
        print(f"   {v['version']}  refused: {v['reason'] or '-'}")
    return 0


def _caller(ctx) -> str:
    from hybridstream.fleet.session import guarded

    return guarded("asking STS who you are")(lambda: ctx.client("sts").get_caller_identity()["Arn"])()


def cmd_promote(args: argparse.Namespace) -> int:
    return _point(args, args.version, override=args.override)


def cmd_rollback(args: argparse.Namespace) -> int:
    return _point(args, args.version, override=True)


def _point(args: argparse.Namespace, version: str | None, override: bool) -> int:
    ctx, registry = _registry(args)
    if version is None:
        version = _guard(registry.previous)(args.name).version
    reason = args.reason or f"hybridstream models {args.action}"
    result = _guard(registry.point)(
        args.name, version, action=args.action, reason=reason, by=_caller(ctx), override=override
    )
    if result["status"] == "current":
        print(f"{args.name}: {version} is already current, nothing changed")
        return 0
    pointer, served = result["pointer"], result["served"]
    print(f"{args.name}: LATEST -> {served}; the stack announces it on hybridstream/models/{args.name}/published")
    if served != version:
        print(f"{served} is {version}'s model published again now (the edge only swaps in models newer than its own)")
    if result["audit"]:
        print(
            f"override of the forward-only rule recorded in s3://{registry.bucket}/{result['audit']}", file=sys.stderr
        )
    if pointer.get("override"):
        print(f"replaced {pointer['override']['from']} ({args.action}: {reason})")
    return 0
