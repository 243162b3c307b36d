"""``fleet cleanup``: remove what fleet provisioning and this CLI made outside the stack, so that
``cdk destroy`` succeeds (IoT refuses to delete a policy attached to certificates:
DeleteConflictException) and nothing is left behind.

Per device (``--thing`` NAME, or every enrolled thing and every thing in the canary/fleet groups):
the Greengrass core device, its certificates (policies detached, deactivated, deleted), the thing,
its enrollment item. Then (all devices only) the CLI's own deployments on the two groups, and the claim
certificate with its SSM parameters. Each step says what it removed; a failing step does not stop
the others, and the command fails at the end listing what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridstream.fleet import claim
from hybridstream.fleet import deployments as dep
from hybridstream.fleet.enroll import thing_exists
from hybridstream.fleet.outputs import StackOutputs
from hybridstream.fleet.session import AwsContext, FleetError, error_code, explain
from hybridstream.fleet.status import enrolled


def _things_in(iot: Any, group: str) -> list[str]:
    out: list[str] = []
    kwargs: dict[str, Any] = {"thingGroupName": group}
    while True:
        page = iot.list_things_in_thing_group(**kwargs)
        out.extend(page.get("things", []))
        if not page.get("nextToken"):
            return out
        kwargs["nextToken"] = page["nextToken"]


def targets(ctx: AwsContext, outputs: StackOutputs) -> list[str]:
    """Every thing this fleet made or allowed: enrolled, or in the canary/fleet group with the prefix."""
    iot = ctx.client("iot")
    prefix = outputs.thing_prefix + "-"
    names = set(enrolled(ctx, outputs))
    for output in ("CanaryThingGroup", "FleetThingGroup"):
        members = [t for t in _things_in(iot, outputs.require(output)) if t.startswith(prefix) and t not in names]
        names.update(t for t in members if thing_exists(iot, t))  # group listings can lag a deletion
    return sorted(names)


def remove_thing(ctx: AwsContext, outputs: StackOutputs, thing: str) -> list[str]:
    """Delete one device's core device, certificates, thing and enrollment; what was removed."""
    from botocore.exceptions import ClientError

    iot, gg, done = ctx.client("iot"), ctx.client("greengrassv2"), []
    try:
        gg.delete_core_device(coreDeviceThingName=thing)
        done.append(f"core device {thing}")
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
    try:
        principals = iot.list_thing_principals(thingName=thing).get("principals", [])
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        principals = None
    for arn in principals or []:
        iot.detach_thing_principal(thingName=thing, principal=arn)
        # waits for the asynchronous detach before deleting (claim.delete_certificate): one run suffices
        if ":cert/" in arn and claim.delete_certificate(iot, arn.rsplit("/", 1)[-1], arn):
            done.append(f"certificate {arn.rsplit('/', 1)[-1][:12]}... of {thing}")
    if principals is not None:
        iot.delete_thing(thingName=thing)
        done.append(f"thing {thing}")
    table = outputs.get("EnrollmentTable")
    if table:
        old = ctx.client("dynamodb").delete_item(
            TableName=table, Key={"thingName": {"S": thing}}, ReturnValues="ALL_OLD"
        )
        if old.get("Attributes"):
            done.append(f"enrollment of {thing}")
    return done


def remove_cli_deployments(ctx: AwsContext, outputs: StackOutputs) -> list[str]:
    """Cancel and delete the deployments this CLI made on the two groups."""
    gg, done = ctx.client("greengrassv2"), []
    for arn in (outputs.canary_group_arn, outputs.fleet_group_arn):
        for item in dep.list_all(gg, arn):
            d = dep.get(gg, item["deploymentId"])
            if not d.by_cli:
                continue
            dep.cancel(gg, d.deployment_id)
            gg.delete_deployment(deploymentId=d.deployment_id)
            done.append(f"deployment {d.deployment_id} ({d.tags.get(dep.ACTION, 'cli')})")
    return done


def cleanup(
    ctx: AwsContext, outputs: StackOutputs, thing: str | None = None, say: Callable[[str], None] = print
) -> list[str]:
    """Run every step; FleetError at the end if any failed (after trying all)."""
    from botocore.exceptions import BotoCoreError, ClientError

    failures: list[str] = []

    def step(what: str, fn: Callable[[], list[str]]) -> None:
        try:
            for line in fn():
                say(f"removed {line}")
        except (BotoCoreError, ClientError, FleetError) as exc:
            failures.append(str(explain(exc, what)))
            say(f"FAILED {what}: {failures[-1]}")

    if thing is not None:
        names = [thing]
    else:
        try:
            names = targets(ctx, outputs)
        except (BotoCoreError, ClientError) as exc:
            raise explain(exc, "listing the fleet's things") from exc
    for name in names:
        step(f"removing {name}", lambda n=name: remove_thing(ctx, outputs, n))
    if thing is None:
        step("removing the CLI's deployments", lambda: remove_cli_deployments(ctx, outputs))
        step("removing the claim certificate", lambda: claim.delete(ctx, outputs.stack_name))
    if failures:
        raise FleetError(f"cleanup incomplete ({len(failures)} step(s) failed, run it again): " + "; ".join(failures))
    return names
