"""Destroy and operations (issue 10, defects 16 and 17): what `cdk destroy` and day-2 operations
need from the template, and the regions synth refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.test_fleet import _flat


def test_policy_detacher_runs_before_the_policies_are_deleted(default):
    """Defect 16: DeletePolicy fails while the policy is attached to a certificate (every provisioned
    Pi's, the claim certificate). A custom resource that depends on both policies is deleted
    first, and its Delete detaches them. Source: https://docs.aws.amazon.com/iot/latest/apireference/API_DeletePolicy.html
    """
    policies = {r["Properties"]["PolicyName"]: k for k, r in default.resources("AWS::IoT::Policy").items()}
    (resource,) = default.resources("AWS::CloudFormation::CustomResource").values()
    assert sorted(resource["Properties"]["PolicyNames"]) == sorted(policies)
    assert set(policies.values()) <= set(resource["DependsOn"])
    token = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    assert token.startswith("PolicyDetacherHandlerFunction")
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("PolicyDetacherHandlerRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    statements = [s for s in statements if s.get("Sid") in ("ReleasePolicies", "DetachFromCertificates")]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {
        "iot:ListTargetsForPolicy",
        "iot:DetachPolicy",
        "iot:ListPolicyVersions",
        "iot:DeletePolicyVersion",
    } == actions


def test_every_lambda_logs_to_a_group_with_retention(built):
    """Defect 17: CDK's helper Lambdas (S3 auto-delete, AwsCustomResource) got implicit log groups
    that never expire and survive destroy. Every function names its log group (LoggingConfig),
    and every log group has a retention and is deleted with the stack.
    Source: https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-loggroups.html
    """
    for mode, b in built.items():
        groups = b.resources("AWS::Logs::LogGroup")
        for logical_id, group in groups.items():
            assert group["Properties"].get("RetentionInDays"), (mode, logical_id)
            assert group["DeletionPolicy"] == "Delete", (mode, logical_id)
        for logical_id, fn in b.resources("AWS::Lambda::Function").items():
            ref = fn["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
            assert ref in groups, (mode, logical_id)


def test_rules_role_may_describe_log_streams(default):
    """Defect 17: the IoT CloudWatch Logs (error) action needs logs:CreateLogStream,
    logs:DescribeLogStreams and logs:PutLogEvents.
    Source: https://docs.aws.amazon.com/iot/latest/developerguide/cloudwatch-logs-rule-action.html
    """
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("RulesRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (logs,) = [s for s in statements if s.get("Sid") == "WriteRuleErrors"]
    assert set(logs["Action"]) == {"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"}
    assert logs["Resource"]["Fn::GetAtt"][0].startswith("RulesRuleErrors")


def test_deployments_wait_for_the_token_exchange_policy(built):
    """Defect 17: a deployment created before the token exchange role's policy grants the artifacts
    gives devices a job whose downloads fail (403)."""
    for mode, b in built.items():
        policy = next(k for k in b.resources("AWS::IAM::Policy") if k.startswith("FleetTokenExchangeRoleDefaultPolicy"))
        for logical_id, deployment in b.resources("AWS::GreengrassV2::Deployment").items():
            assert policy in deployment.get("DependsOn", []), (mode, logical_id)


def test_trainer_ships_its_logs_to_cloudwatch(default):
    """Defect 17: trainers scale to zero and their journal dies with them: the CloudWatch agent ships
    the worker's log (and cloud-init's) to a log group with retention, through a Logs VPC endpoint.
    Source: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-Agent-Configuration-File-Details.html
    """
    from infra.training import TRAINER_LOG

    (lt,) = default.resources("AWS::EC2::LaunchTemplate").values()
    text = json.dumps(lt["Properties"]["LaunchTemplateData"]["UserData"])
    assert "dnf install -y amazon-cloudwatch-agent" in text and "amazon-cloudwatch-agent-ctl -a fetch-config" in text
    assert f"StandardOutput=append:{TRAINER_LOG}" in text
    assert text.index("amazon-cloudwatch-agent-ctl") < text.index("pip install")  # install failures ship too
    group_id = default.stack.get_logical_id(default.stack.trainer.log_group.node.default_child)
    assert group_id in text  # the agent's config names the stack's log group
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("TrainerRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (ship,) = [s for s in statements if s.get("Sid") == "ShipLogs"]
    assert ship["Resource"]["Fn::GetAtt"][0] == group_id
    endpoints = {
        json.dumps(e["Properties"]["ServiceName"]) for e in default.resources("AWS::EC2::VPCEndpoint").values()
    }
    assert any(".logs" in n for n in endpoints)


def test_trainer_agent_config_is_valid():
    from infra.training import cloudwatch_agent_config

    files = cloudwatch_agent_config("g")["logs"]["logs_collected"]["files"]["collect_list"]
    assert [f["log_stream_name"] for f in files] == ["{instance_id}/trainer", "{instance_id}/cloud-init"]
    assert {f["log_group_name"] for f in files} == {"g"}


# -- regions ---------------------------------------------------------------------------------------
CFN_LINT_SCHEMAS = Path(__import__("cfnlint").__file__).parent / "data" / "schemas"


def _cfn_lint_regions() -> tuple[set[str], set[str]]:
    no_gg, no_c5 = set(), set()
    ec2 = json.loads((CFN_LINT_SCHEMAS / "extensions" / "aws_ec2_instance" / "instancetype_enum.json").read_text())
    for path in (CFN_LINT_SCHEMAS / "providers").glob("*.json"):
        region = path.stem
        if region == "sam":
            continue
        types = json.loads(path.read_text())
        if "AWS::GreengrassV2::ComponentVersion" not in types or "AWS::GreengrassV2::Deployment" not in types:
            no_gg.add(region)
        offered = ec2.get(region, {}).get("enum")
        if offered is not None and "c5.4xlarge" not in offered:
            no_c5.add(region)
    return no_gg, no_c5


def test_refused_regions_are_the_ones_cloudformation_lacks():
    """Defect 17: the region lists in infra/regions.py are what cfn-lint's bundled CloudFormation
    schemas say (E3006 resource type not in region, E3628 instance type not offered): an upgrade
    that changes them fails here. Sources: https://docs.aws.amazon.com/general/latest/gr/greengrassv2.html,
    https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-regions.html
    """
    from infra.regions import NO_C5_4XLARGE, NO_GREENGRASS_V2

    no_gg, no_c5 = _cfn_lint_regions()
    assert set(NO_GREENGRASS_V2) == no_gg
    assert set(NO_C5_4XLARGE) == no_c5


@pytest.mark.parametrize(
    "context, message",
    [
        ({"region": "sa-east-1"}, "has no AWS IoT Greengrass V2"),
        ({"region": "ap-southeast-5"}, "has no c5.4xlarge"),
    ],
)
def test_synth_refuses_regions_it_cannot_deploy_to(infra_assets, tmp_path, context, message):
    from infra.app_builder import build_app

    with pytest.raises(ValueError, match=message):
        build_app(
            {
                "promote": True,
                "account": "123456789012",
                "batch_model_dir": str(infra_assets["batch_model"]),
                "kafka_libs_dir": str(infra_assets["kafka_libs"]),
                **context,
            },
            outdir=str(tmp_path),
        )


def test_region_checks_allow_what_works():
    from infra.regions import check_region

    check_region("eu-west-1", has_trainer=True, instance_type="c5.4xlarge")
    check_region("ap-southeast-5", has_trainer=False, instance_type="c5.4xlarge")  # edge mode: no trainer
    check_region("ap-southeast-5", has_trainer=True, instance_type="m7i.4xlarge")
    check_region(None, has_trainer=True, instance_type="c5.4xlarge")  # environment-agnostic


def test_outputs_name_what_fleet_tooling_reads(default):
    outputs = default.raw["Outputs"]
    for key in ("EnrollmentTable", "ThingNamePrefix", "ProvisioningTemplate", "ClaimPolicy", "DevicePolicy"):
        assert key in outputs, key
    assert _flat(outputs["ThingNamePrefix"]["Value"]) == "hybridstream"
