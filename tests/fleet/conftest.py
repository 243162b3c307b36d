"""Fleet CLI tests: moto for CloudFormation (a stack with the real output names), IoT, S3, DynamoDB
and SSM; botocore's Stubber for greengrassv2 (moto has none). The Stubber validates every request
and response against botocore's service model (botocore/data/greengrassv2/2020-11-30/service-2.json),
so the shapes below are the real API's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "HybridStream"
PREFIX = "hybridstream"
CANARY_GROUP, FLEET_GROUP = f"{PREFIX}-canary", f"{PREFIX}-fleet"
CANARY_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{CANARY_GROUP}"
FLEET_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{FLEET_GROUP}"
TABLE = f"{PREFIX}-enrollment"
MODELS_BUCKET, RESULTS_BUCKET = "hs-models", "hs-results"
VERSIONS = {"EdgeApp": "1.0.200", "BatchModel": "1.0.201", "KafkaBroker": "1.0.202"}
OLD = {"EdgeApp": "1.0.100", "BatchModel": "1.0.201", "KafkaBroker": "1.0.102"}


def outputs_dict() -> dict[str, str]:
    """The stack's outputs, as infra/stack.py names them (+ EnrollmentTable, ThingNamePrefix)."""
    out = {
        "IotDataEndpointAddress": "abc123-ats.iot.eu-west-1.amazonaws.com",
        "WindowsBucket": "hs-windows",
        "ModelsBucket": MODELS_BUCKET,
        "ResultsBucket": RESULTS_BUCKET,
        "FleetThingGroup": FLEET_GROUP,
        "CanaryThingGroup": CANARY_GROUP,
        "RoleAlias": f"{PREFIX}-tes-alias",
        "DevicePolicy": f"{PREFIX}-device",
        "ProvisioningTemplate": f"{PREFIX}-fleet-provisioning",
        "ClaimPolicy": f"{PREFIX}-provisioning-claim",
        "EnrollmentTable": TABLE,
        "ThingNamePrefix": PREFIX,
        "ClaimClientIdPrefix": f"{PREFIX}-claim-",
        "DeviceMetricsKey": "metrics/{thing}/latest.json",
        "FleetRelease": "pinned",
        "ComponentRelease": json.dumps({"fleet_component_versions": {f"{PREFIX}.{k}": v for k, v in VERSIONS.items()}}),
    }
    out.update({f"{k}Version": v for k, v in VERSIONS.items()})
    return out


def create_stack(name: str = STACK, outputs: dict[str, str] | None = None) -> None:
    import boto3

    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{name}/marker", "Type": "String", "Value": "x"},
            }
        },
        "Outputs": {k: {"Value": v} for k, v in (outputs if outputs is not None else outputs_dict()).items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials and region; no real profile, config or metadata service is consulted."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def aws(aws_env):
    """moto with the stack's account-side resources: stack + outputs, groups, policies, table, buckets."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        create_stack()
        iot = boto3.client("iot", region_name=REGION)
        for group in (CANARY_GROUP, FLEET_GROUP):
            iot.create_thing_group(thingGroupName=group)
        policy = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
        )
        iot.create_policy(policyName=f"{PREFIX}-device", policyDocument=policy)
        iot.create_policy(policyName=f"{PREFIX}-provisioning-claim", policyDocument=policy)
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "thingName", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "thingName", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (MODELS_BUCKET, RESULTS_BUCKET):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield


@dataclass
class GG:
    """A Stubber-wrapped greengrassv2 client with builders for real-API-shaped responses."""

    client: Any
    stubber: Any
    created: list[dict[str, Any]] = field(default_factory=list)

    def deployment(
        self,
        dep_id: str,
        target: str,
        versions: dict[str, str],
        *,
        status: str = "ACTIVE",
        tags: dict[str, str] | None = None,
        created: datetime | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """A GetDeployment response."""
        group = target.rsplit("/", 1)[-1]
        components = {f"{PREFIX}.{short}": {"componentVersion": v} for short, v in versions.items()}
        if f"{PREFIX}.EdgeApp" in components:
            components[f"{PREFIX}.EdgeApp"]["configurationUpdate"] = {"merge": '{"s3":{"windowsBucket":"hs-windows"}}'}
        return {
            "targetArn": target,
            "revisionId": "1",
            "deploymentId": dep_id,
            "deploymentName": name or group,
            "deploymentStatus": status,
            "iotJobId": f"job-{dep_id}",
            "iotJobArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:job/job-{dep_id}",
            "components": components,
            "deploymentPolicies": {
                "failureHandlingPolicy": "ROLLBACK",
                "componentUpdatePolicy": {"timeoutInSeconds": 120, "action": "NOTIFY_COMPONENTS"},
                "configurationValidationPolicy": {"timeoutInSeconds": 60},
            },
            "iotJobConfiguration": {"timeoutConfig": {"inProgressTimeoutInMinutes": 30}},
            "creationTimestamp": created or datetime.now(UTC) - timedelta(hours=1),
            "isLatestForTarget": True,
            "tags": tags or {},
        }

    def latest(self, target: str, deployment: dict[str, Any] | None) -> None:
        """ListDeployments(LATEST_ONLY) then GetDeployment."""
        items = []
        if deployment is not None:
            items = [
                {
                    "targetArn": target,
                    "revisionId": "1",
                    "deploymentId": deployment["deploymentId"],
                    "deploymentName": deployment["deploymentName"],
                    "creationTimestamp": deployment["creationTimestamp"],
                    "deploymentStatus": deployment["deploymentStatus"],
                    "isLatestForTarget": True,
                }
            ]
        self.stubber.add_response(
            "list_deployments", {"deployments": items}, {"targetArn": target, "historyFilter": "LATEST_ONLY"}
        )
        if deployment is not None:
            self.get(deployment)

    def history(self, target: str, deployments: list[dict[str, Any]]) -> None:
        items = [
            {
                "targetArn": target,
                "revisionId": str(i + 1),
                "deploymentId": d["deploymentId"],
                "deploymentName": d["deploymentName"],
                "creationTimestamp": d["creationTimestamp"],
                "deploymentStatus": d["deploymentStatus"],
                "isLatestForTarget": i == len(deployments) - 1,
            }
            for i, d in enumerate(deployments)
        ]
        self.stubber.add_response(
            "list_deployments", {"deployments": items}, {"targetArn": target, "historyFilter": "ALL"}
        )

    def get(self, deployment: dict[str, Any]) -> None:
        self.stubber.add_response("get_deployment", deployment, {"deploymentId": deployment["deploymentId"]})

    def create(self, new_id: str, expected: dict[str, Any] | None = None) -> None:
        from botocore.stub import ANY

        params = expected or {
            "targetArn": ANY,
            "deploymentName": ANY,
            "components": ANY,
            "tags": ANY,
            "deploymentPolicies": ANY,
            "iotJobConfiguration": ANY,
        }
        self.stubber.add_response(
            "create_deployment",
            {
                "deploymentId": new_id,
                "iotJobId": f"job-{new_id}",
                "iotJobArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:job/job-{new_id}",
            },
            params,
        )

    def cancel(self, dep_id: str, error: str | None = None) -> None:
        if error:
            self.stubber.add_client_error(
                "cancel_deployment", error, "not active", 409, expected_params={"deploymentId": dep_id}
            )
        else:
            self.stubber.add_response("cancel_deployment", {"message": "canceled"}, {"deploymentId": dep_id})

    def core_devices(self, group_arn: str, things: list[str], status: str = "HEALTHY") -> None:
        devices = [
            {
                "coreDeviceThingName": t,
                "status": status,
                "lastStatusUpdateTimestamp": datetime.now(UTC) - timedelta(minutes=2),
                "platform": "linux",
                "architecture": "aarch64",
                "runtime": "aws_nucleus_classic",
            }
            for t in things
        ]
        self.stubber.add_response("list_core_devices", {"coreDevices": devices}, {"thingGroupArn": group_arn})

    def effective(self, thing: str, dep_id: str, status: str, target: str = CANARY_ARN, reason: str = "") -> None:
        entry: dict[str, Any] = {
            "deploymentId": dep_id,
            "deploymentName": target.rsplit("/", 1)[-1],
            "iotJobId": f"job-{dep_id}",
            "targetArn": target,
            "coreDeviceExecutionStatus": status,
            "creationTimestamp": datetime.now(UTC) - timedelta(minutes=5),
            "modifiedTimestamp": datetime.now(UTC) - timedelta(minutes=1),
        }
        if reason:
            entry["reason"] = reason
            entry["statusDetails"] = {
                "errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"],
                "errorTypes": ["COMPONENT_ERROR"],
            }
        self.stubber.add_response(
            "list_effective_deployments", {"effectiveDeployments": [entry]}, {"coreDeviceThingName": thing}
        )

    def installed(self, thing: str, versions: dict[str, str], state: str = "RUNNING") -> None:
        items = [
            {
                "componentName": f"{PREFIX}.{short}",
                "componentVersion": v,
                "lifecycleState": state,
                "isRoot": True,
                "lastStatusChangeTimestamp": datetime.now(UTC) - timedelta(minutes=1),
                "lastReportedTimestamp": datetime.now(UTC),
            }
            for short, v in versions.items()
        ]
        self.stubber.add_response(
            "list_installed_components", {"installedComponents": items}, {"coreDeviceThingName": thing}
        )


@pytest.fixture
def gg(aws_env):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("greengrassv2", region_name=REGION)
    stubber = Stubber(client)
    stubber.activate()
    yield GG(client, stubber)
    stubber.deactivate()


@pytest.fixture
def ctx(aws, gg):
    """An AwsContext whose greengrassv2 client is the stubbed one (the rest: moto)."""
    from hybridstream.fleet.session import AwsContext

    context = AwsContext(region=REGION)
    context.clients["greengrassv2"] = gg.client
    return context


class FakeClock:
    """Monotonic time that only moves when the code sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def put_metrics(thing: str, **fields: Any) -> None:
    """What the edge_metrics_latest topic rule stores for a thing."""
    import boto3

    body = {
        "timestamp": datetime.now(UTC).isoformat(),
        "hybrid_rmse": 0.31,
        "batch_rmse": 0.34,
        "speed_rmse": 0.8,
        "models": {"batch": "b-1", "speed": "s-7"},
        "thing": thing,
        **fields,
    }
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=RESULTS_BUCKET, Key=f"metrics/{thing}/latest.json", Body=json.dumps(body).encode()
    )


def run_cli(argv: list[str], ctx=None, clock=None, capsys=None) -> tuple[int, str, str]:
    """``hybridstream <argv>`` in-process with the test's AwsContext; (exit code, stdout, stderr)."""
    from hybridstream import cli

    parser = cli.build_parser()
    args = parser.parse_args(argv)
    if ctx is not None:
        args.aws_context = ctx
    if clock is not None:
        args.clock = clock
    code = cli.run_args(args) if hasattr(cli, "run_args") else _run(args)
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def _run(args) -> int:
    """The error handling of hybridstream.cli.main, for a parsed Namespace."""
    import sys

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"hybridstream: error: {exc}", file=sys.stderr)
        return 1
