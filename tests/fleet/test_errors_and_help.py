"""Every fleet/models command's --help, and the failures every command shares: no credentials, a
missing / busy / half-created stack, a missing output, AWS errors and throttling: a clear message on
stderr, no traceback, a non-zero exit."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from hybridstream import cli
from hybridstream.fleet import outputs
from hybridstream.fleet.session import AwsContext, FleetError, explain
from tests.fleet.conftest import REGION, STACK, create_stack, outputs_dict, run_cli

COMMANDS = [
    ["fleet"],
    ["fleet", "enroll"],
    ["fleet", "status"],
    ["fleet", "rollout"],
    ["fleet", "abort"],
    ["fleet", "cleanup"],
    ["models"],
    ["models", "list"],
    ["models", "show"],
    ["models", "promote"],
    ["models", "rollback"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: hybridstream {' '.join(argv)}")
    if len(argv) == 2:
        assert "--stack" in text and "--profile" in text and "--region" in text


def test_group_without_command_prints_help(capsys):
    assert cli.main(["fleet"]) == 0
    assert "enroll" in capsys.readouterr().out


def test_no_credentials(aws_env, monkeypatch, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    assert cli.main(["fleet", "status"]) == 1
    err = capsys.readouterr().err
    assert "no AWS credentials" in err and "--profile" in err and "Traceback" not in err


def test_unknown_profile(aws_env, capsys):
    assert cli.main(["fleet", "status", "--profile", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_missing_stack(aws, capsys):
    assert cli.main(["fleet", "status", "--stack", "Other"]) == 1
    err = capsys.readouterr().err
    assert "stack Other does not exist in eu-west-1" in err and "cdk deploy" in err


def test_missing_output(aws, capsys):
    create_stack("Old", {k: v for k, v in outputs_dict().items() if k != "EnrollmentTable"})
    assert cli.main(["fleet", "enroll", "--stack", "Old", "--thing-name", "hybridstream-x1"]) == 1
    assert "stack Old has no output EnrollmentTable" in capsys.readouterr().err


def stubbed_stack(status: str) -> AwsContext:
    client = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": STACK,
                    "StackId": f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/abc",
                    "CreationTime": datetime.now(UTC),
                    "StackStatus": status,
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs_dict().items()],
                }
            ]
        },
        {"StackName": STACK},
    )
    stubber.activate()
    ctx = AwsContext(region=REGION)
    ctx.clients["cloudformation"] = client
    return ctx


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("CREATE_IN_PROGRESS", "is CREATE_IN_PROGRESS: wait until CloudFormation has finished"),
        ("ROLLBACK_COMPLETE", "is ROLLBACK_COMPLETE (half-created or failed)"),
        ("DELETE_FAILED", "is DELETE_FAILED (half-created or failed)"),
    ],
)
def test_busy_or_half_created_stack(aws_env, capsys, status, message):
    code, _, err = run_cli(["fleet", "status"], ctx=stubbed_stack(status), capsys=capsys)
    assert code == 1 and message in err


def test_usable_stack_outputs(aws_env):
    out = outputs.load(stubbed_stack("UPDATE_ROLLBACK_COMPLETE"), STACK)
    assert (out.account, out.region, out.partition) == ("123456789012", REGION, "aws")
    assert out.canary_group_arn == f"arn:aws:iot:{REGION}:123456789012:thinggroup/hybridstream-canary"
    full = {
        "hybridstream.EdgeApp": "1.0.200",
        "hybridstream.BatchModel": "1.0.201",
        "hybridstream.KafkaBroker": "1.0.202",
    }
    assert out.component_versions() == full  # from ComponentRelease
    assert json.loads(out.require("ComponentRelease"))["fleet_component_versions"] == full
    out.values.pop("ComponentRelease")
    assert out.component_versions() == {"EdgeApp": "1.0.200", "BatchModel": "1.0.201", "KafkaBroker": "1.0.202"}


def error(code: str, op: str = "ListCoreDevices") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, op)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (NoCredentialsError(), "no AWS credentials while x"),
        (error("ThrottlingException"), "AWS throttled ListCoreDevices while x after 8 attempts"),
        (error("TooManyRequestsException"), "AWS throttled"),
        (error("AccessDeniedException"), "access denied to ListCoreDevices while x: m"),
        (error("ExpiredTokenException"), "invalid or expired"),
        (error("InternalServerException"), "ListCoreDevices failed while x: InternalServerException: m"),
        (
            EndpointConnectionError(endpoint_url="https://greengrass.eu-west-1.amazonaws.com"),
            "cannot reach AWS while x",
        ),
    ],
)
def test_explain(exc, text):
    message = str(explain(exc, "x"))
    assert text in message
    assert isinstance(explain(exc), FleetError)


def test_cleanup_accepts_a_delete_failed_stack(aws_env, capsys):
    """`cdk destroy` failed on the IoT policies (DELETE_FAILED): cleanup is what unblocks it."""
    ctx = stubbed_stack("DELETE_FAILED")
    code, _, err = run_cli(["fleet", "cleanup"], ctx=ctx, capsys=capsys)
    assert code == 1 and "pass --yes" in err  # got past the stack check: it asks to confirm
