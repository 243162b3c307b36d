"""The stack's outputs (CloudFormation ``describe_stacks``): where every fleet resource is.

A missing stack, one that is still being created or updated, or one whose creation failed is refused
with a clear message; an output the command needs but the stack lacks names the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hybridstream.fleet.session import AwsContext, FleetError, error_code, explain

DEFAULT_STACK = "HybridStream"
USABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
BUSY_SUFFIX = "_IN_PROGRESS"
# component outputs are "<Short>Version" (EdgeAppVersion ...); these are not components
NOT_COMPONENTS = {"FleetRelease"}
# the outputs the fleet and models commands read (tests/fleet checks them against the synthesized stack)
REQUIRED = (
    "IotDataEndpointAddress",
    "ModelsBucket",
    "ResultsBucket",
    "FleetThingGroup",
    "CanaryThingGroup",
    "RoleAlias",
    "DevicePolicy",
    "ProvisioningTemplate",
    "ClaimPolicy",
    "EnrollmentTable",
    "ThingNamePrefix",
    "ClaimClientIdPrefix",
    "ComponentRelease",
    "EdgeAppVersion",
)
OPTIONAL = ("DeviceMetricsKey",)  # without it: no per-device metrics (status, rollout gate)


@dataclass
class StackOutputs:
    """Outputs of one deployed stack, plus its account/region/partition (from the stack ARN)."""

    stack_name: str
    stack_id: str
    status: str
    values: dict[str, str] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        return self.stack_id.split(":")[1]

    @property
    def region(self) -> str:
        return self.stack_id.split(":")[3]

    @property
    def account(self) -> str:
        return self.stack_id.split(":")[4]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def require(self, key: str) -> str:
        value = self.values.get(key)
        if not value:
            raise FleetError(
                f"stack {self.stack_name} has no output {key}: it was deployed from an older version of this "
                "project (run `cdk deploy` with this checkout)"
            )
        return value

    def thing_group_arn(self, output: str) -> str:
        """ARN of the thing group named by output ``FleetThingGroup`` / ``CanaryThingGroup``."""
        return f"arn:{self.partition}:iot:{self.region}:{self.account}:thinggroup/{self.require(output)}"

    @property
    def canary_group_arn(self) -> str:
        return self.thing_group_arn("CanaryThingGroup")

    @property
    def fleet_group_arn(self) -> str:
        return self.thing_group_arn("FleetThingGroup")

    @property
    def thing_prefix(self) -> str:
        return self.require("ThingNamePrefix")

    def component_versions(self) -> dict[str, str]:
        """Component -> the version the deployed synth produced: the full names from the
        ``ComponentRelease`` output, else short names (``EdgeApp`` ...) from the ``*Version`` outputs."""
        import json

        try:
            release = json.loads(self.values.get("ComponentRelease") or "{}").get("fleet_component_versions")
        except (ValueError, AttributeError):
            release = None
        if isinstance(release, dict) and release:
            return {str(k): str(v) for k, v in release.items()}
        return {
            key.removesuffix("Version"): value
            for key, value in self.values.items()
            if key.endswith("Version") and key not in NOT_COMPONENTS and value
        }


def load(ctx: AwsContext, stack_name: str = DEFAULT_STACK, *, failed_ok: bool = False) -> StackOutputs:
    """The outputs of ``stack_name``; FleetError if it is missing, busy or half-created.

    ``failed_ok`` (``fleet cleanup``): a failed stack is fine too; a ``DELETE_FAILED`` stack is
    exactly what cleanup unblocks (IoT policies still attached to provisioned certificates)."""
    from botocore.exceptions import BotoCoreError, ClientError

    cfn = ctx.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            region = ctx.region or ctx.session.region_name or "?"
            raise FleetError(
                f"stack {stack_name} does not exist in {region}: deploy it (`cdk deploy`), or check --stack, "
                "--region and --profile"
            ) from exc
        raise explain(exc, f"reading stack {stack_name}") from exc
    except BotoCoreError as exc:
        raise explain(exc, f"reading stack {stack_name}") from exc
    if not stacks:
        raise FleetError(f"stack {stack_name} does not exist")
    stack = stacks[0]
    status = stack.get("StackStatus", "")
    if status.endswith(BUSY_SUFFIX):
        raise FleetError(f"stack {stack_name} is {status}: wait until CloudFormation has finished, then try again")
    if status not in USABLE and not failed_ok:
        raise FleetError(
            f"stack {stack_name} is {status} (half-created or failed): fix it with `cdk deploy` (or delete it) first"
        )
    values = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    return StackOutputs(stack_name=stack["StackName"], stack_id=stack["StackId"], status=status, values=values)
