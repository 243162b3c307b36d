"""``hybridstream fleet``: enroll | status | redeploy | rollout | abort | cleanup (see docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridstream.fleet.outputs import DEFAULT_STACK

EXIT_FAILED, EXIT_TIMEOUT = 1, 3
STATUS_PROBLEM = 4  # fleet status: a group's deployment was cancelled or failed (fleet redeploy recovers)


def aws_options() -> argparse.ArgumentParser:
    """--stack/--profile/--region, shared by every fleet and models command."""
    common = argparse.ArgumentParser(add_help=False)
    aws = common.add_argument_group("AWS")
    aws.add_argument("--stack", default=DEFAULT_STACK, help=f"CloudFormation stack name (default {DEFAULT_STACK})")
    aws.add_argument("--profile", help="named profile from ~/.aws/config (as in the aws CLI)")
    aws.add_argument("--region", help="AWS region (default: the profile's / AWS_REGION)")
    return common


class AwsCommands:
    """A command group (``hybridstream GROUP COMMAND``) whose every command takes :func:`aws_options`."""

    def __init__(self, sub: argparse._SubParsersAction, name: str, dest: str, help: str, description: str) -> None:
        group = sub.add_parser(name, help=help, description=description)
        group.set_defaults(group_parser=group)  # a bare ``hybridstream GROUP`` prints this group's help
        self._cmds = group.add_subparsers(dest=dest, metavar="COMMAND")
        self._common = aws_options()

    def add(
        self, name: str, func: Callable[[argparse.Namespace], int], help: str, description: str, **defaults: Any
    ) -> argparse.ArgumentParser:
        """The parser of command ``name``, which runs ``func(args)`` (``defaults``: more parsed values)."""
        p = self._cmds.add_parser(name, parents=[self._common], help=help, description=description)
        p.set_defaults(func=func, **defaults)
        return p


def context(args: argparse.Namespace, failed_ok: bool = False):
    """(AwsContext, StackOutputs) for the command's --profile/--region/--stack."""
    from hybridstream.fleet import outputs
    from hybridstream.fleet.session import AwsContext

    ctx = getattr(args, "aws_context", None) or AwsContext(profile=args.profile, region=args.region)
    return ctx, outputs.load(ctx, args.stack, failed_ok=failed_ok)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def register(sub: argparse._SubParsersAction) -> None:
    cmds = AwsCommands(
        sub,
        "fleet",
        "fleet_cmd",
        help="enrol Pis, fleet status, staged rollouts and rollback, clean-up",
        description="Manage the Raspberry Pi fleet of a deployed HybridStream stack: every resource is found "
        "from the stack's outputs.",
    )

    p = cmds.add(
        "enroll",
        cmd_enroll,
        help="allow a Pi to provision and write its device bundle",
        description="Put THING-NAME (<prefix>-<serial>) on the stack's enrollment allow-list and write a device "
        "bundle (tar: Greengrass config for fleet provisioning by claim, the claim certificate, install.sh). "
        "On the Pi: tar xf NAME.tar && cd NAME && sudo ./install.sh. Running it again changes nothing.",
    )
    p.add_argument("--thing-name", required=True, help="the Pi's thing name: <ThingNamePrefix>-<serial>")
    p.add_argument("--group", choices=["canary", "fleet"], default="fleet", help="thing group (default fleet)")
    p.add_argument(
        "--arch",
        choices=["aarch64", "arm", "amd64"],
        default="aarch64",
        help="the Pi's architecture, as Greengrass names it (default aarch64: 64-bit Raspberry Pi OS; "
        "arm, a 32-bit OS, is refused: the edge needs Python >= 3.11)",
    )
    p.add_argument(
        "--os",
        dest="os_release",
        choices=["bookworm", "trixie", "bullseye"],
        help="the Pi's Raspberry Pi OS release, checked before anything is made (bullseye is refused: Python 3.9)",
    )
    p.add_argument(
        "--device-cert",
        action="store_true",
        help="give the Pi its own certificate (thing created now) instead of the shared claim certificate",
    )
    p.add_argument("--out", type=Path, help="bundle path (default build/fleet/<thing>.tar)")
    p.add_argument("--nucleus-version", default="latest", help="Greengrass nucleus release for the Pi (default latest)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = cmds.add(
        "status",
        cmd_status,
        help="core devices per group: health, deployment, versions, models, accuracy",
        description="Per thing group: its deployment, and per core device its health, effective deployment, "
        "component versions, the models it serves, its rolling accuracy (from its metrics) and when it was last "
        "seen; plus enrolled devices that have not connected yet. Exit 4 when a group's deployment was cancelled "
        "or failed (it reaches no device added later): the output says what to do.",
    )
    p.add_argument("--thing", help="one device only (an unknown name is an error)")
    p.add_argument("--json", action="store_true", help="everything, as JSON")

    p = cmds.add(
        "redeploy",
        cmd_redeploy,
        help="deploy a group's latest deployment again (after an abort cancelled it)",
        description="Create a new revision of the thing group's latest deployment with the same components, "
        "configuration and policies. A cancelled or failed group deployment reaches no device added to the group "
        "later, and an unchanged `cdk deploy` does not recreate it: `fleet status` says when to run this (exit "
        f"{STATUS_PROBLEM}). Fix what made the deployment fail first.",
    )
    p.add_argument("--group", choices=["canary", "fleet"], required=True, help="the thing group")

    p = cmds.add(
        "rollout",
        cmd_rollout,
        help="deploy component versions to the canaries, gate on their health, then the fleet",
        description="Revise the canary group's deployment with the new component versions, wait until every "
        "canary runs them and sends fresh metrics (timeout: abort, previous versions back), then revise the "
        "fleet group's deployment. Versions default to the stack's <Component>Version outputs (what the last "
        "`cdk deploy` built). Exit 1: failed and rolled back; 3: timed out.",
    )
    p.add_argument(
        "--version",
        action="append",
        default=[],
        metavar="[COMPONENT=]VERSION",
        help="component version to roll out (repeatable; a bare VERSION means EdgeApp); "
        "default: every <Component>Version output",
    )
    p.add_argument("--no-canary", action="store_true", help="no gate: canary and fleet groups at once")
    p.add_argument("--wait", action="store_true", help="also wait for the fleet's devices (and roll back on failure)")
    p.add_argument("--timeout", type=float, default=1800.0, help="canary gate timeout, seconds (default 1800)")
    p.add_argument("--fleet-timeout", type=float, default=3600.0, help="with --wait: fleet timeout (default 3600)")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between status checks (default 15)")
    p.add_argument(
        "--no-metrics-gate",
        action="store_true",
        help="gate on the deployment status and component states only (no fresh-metrics check)",
    )
    p.add_argument("--max-rmse", type=float, help="also require each canary's rolling hybrid RMSE <= this")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    cmds.add(
        "abort",
        cmd_abort,
        help="cancel the running rollout and put the previous versions back",
        description="On each group whose latest deployment is a rollout by this CLI: cancel it and deploy the "
        "components of the deployment it replaced.",
    )

    p = cmds.add(
        "cleanup",
        cmd_cleanup,
        help="remove provisioned things, certificates, core devices and the claim certificate (before cdk destroy)",
        description="Delete what fleet provisioning and this CLI created outside the stack: core devices, "
        "their certificates (policies detached) and things, enrollments, the CLI's deployments and the claim "
        "certificate with its SSM parameters. Run it before `cdk destroy`, which otherwise fails on the IoT "
        "policies. --thing removes one device only.",
    )
    p.add_argument("--thing", help="remove this one device only")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def cmd_enroll(args: argparse.Namespace) -> int:
    from hybridstream.fleet import enroll

    ctx, outputs = context(args)
    result = enroll.enroll(
        ctx,
        outputs,
        args.thing_name,
        group=args.group,
        arch=args.arch,
        device_cert=args.device_cert,
        out=args.out,
        nucleus_version=args.nucleus_version,
        os_release=args.os_release,
    )
    if args.json:
        _print_json(result.to_dict())
        return 0
    for note in result.notes:
        print(note)
    if result.status == "enrolled":
        print(f"enrolled {result.thing_name} (group {result.group}, {result.arch}, {result.provisioning})")
    if result.bundle:
        name = result.thing_name
        print(f"bundle: {result.bundle} (holds a private key: copy it over SSH only)")
        print(f"on the Pi: tar xf {result.bundle.name} && cd {name} && sudo ./install.sh")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from hybridstream.fleet import status
    from hybridstream.fleet.session import guarded

    ctx, outputs = context(args)
    data = guarded("reading the fleet's status")(status.gather)(ctx, outputs)
    if args.thing:
        data = status.only(data, args.thing)
    if args.json:
        _print_json(data)
    else:
        sys.stdout.write(status.table(data))
    return STATUS_PROBLEM if data["problems"] else 0


def cmd_redeploy(args: argparse.Namespace) -> int:
    from hybridstream.fleet import deployments as dep
    from hybridstream.fleet.session import guarded

    ctx, outputs = context(args)
    arn = outputs.canary_group_arn if args.group == "canary" else outputs.fleet_group_arn
    base, new_id = guarded(f"redeploying the {args.group} group")(dep.redeploy)(ctx.client("greengrassv2"), arn)
    print(
        f"{args.group}: deployment {new_id} deploys {base.deployment_id}'s components again "
        f"(that one was {base.status}); follow it with `hybridstream fleet status`"
    )
    return 0


def _rollout(args: argparse.Namespace):
    from hybridstream.fleet.rollout import Rollout

    ctx, outputs = context(args)
    return Rollout(ctx, outputs, poll_seconds=getattr(args, "poll", 15.0), clock=getattr(args, "clock", None))


def cmd_rollout(args: argparse.Namespace) -> int:
    from hybridstream.fleet.rollout import parse_versions
    from hybridstream.fleet.session import guarded

    if args.timeout <= 0 or args.fleet_timeout <= 0 or args.poll <= 0:
        raise ValueError("--timeout, --fleet-timeout and --poll must be positive")
    requested = parse_versions(args.version)
    engine = _rollout(args)
    result = guarded("rolling out")(engine.run)(
        requested,
        canary=not args.no_canary,
        wait=args.wait,
        timeout=args.timeout,
        fleet_timeout=args.fleet_timeout,
        metrics_gate=not args.no_metrics_gate,
        max_rmse=args.max_rmse,
    )
    if args.json:
        _print_json(result.to_dict())
    else:
        print(f"rollout: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if result.ok:
        return 0
    return EXIT_TIMEOUT if result.status.endswith("timeout") else EXIT_FAILED


def cmd_abort(args: argparse.Namespace) -> int:
    from hybridstream.fleet.session import guarded

    engine = _rollout(args)
    restored = guarded("aborting the rollout")(engine.abort)()
    print("abort: " + (", ".join(f"{g} -> {d}" for g, d in restored.items()) if restored else "nothing to abort"))
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from hybridstream.fleet import cleanup, enroll
    from hybridstream.fleet.session import FleetError, guarded

    ctx, outputs = context(args, failed_ok=True)  # DELETE_FAILED: what cleanup unblocks
    if args.thing:
        enroll.serial_of(args.thing, outputs.thing_prefix)
        known = guarded("looking up the thing")(
            lambda: enroll.enrolled_item(ctx, outputs, args.thing) or enroll.thing_exists(ctx.client("iot"), args.thing)
        )()
        if not known:
            raise FleetError(f"unknown thing {args.thing}: it is neither enrolled nor an IoT thing")
        what = f"device {args.thing}"
    else:
        what = f"EVERY device of stack {outputs.stack_name}, the CLI's deployments and the claim certificate"
    if not args.yes:
        if not sys.stdin.isatty():
            raise FleetError(f"cleanup removes {what}: pass --yes to confirm (stdin is not a terminal)")
        if input(f"remove {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    names = cleanup.cleanup(ctx, outputs, thing=args.thing)
    print(f"cleanup done ({len(names)} device(s)); `cdk destroy` can run now" if not args.thing else "cleanup done")
    return 0
