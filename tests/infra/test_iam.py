"""Least privilege: no IAM statement grants Resource "*" unless allowlisted here with a reason."""

from __future__ import annotations

import pytest

from tests.infra.conftest import MODES

# Actions with no resource-level permissions in IAM: the only ones allowed on Resource "*".
ALLOW_STAR = {
    # IoT rule -> CloudWatch metrics; the statement is pinned to one namespace by a condition
    "cloudwatch:PutMetricData",
    # deploy-time lookup of the account's IoT data endpoint (AwsCustomResource)
    "iot:DescribeEndpoint",
    # CDK's AwsCustomResource provider and the log-retention/auto-delete helpers write logs
    # through the AWS-managed basic execution role (not inline statements), so nothing else.
}


def _statements(raw):
    for logical_id, res in raw["Resources"].items():
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
            props = res["Properties"]
            docs = [props["PolicyDocument"]] if "PolicyDocument" in props else []
            docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
            for doc in docs:
                for statement in doc["Statement"]:
                    yield logical_id, statement


def _as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("mode", MODES)
def test_no_star_resources_outside_the_allowlist(built, mode):
    offenders = []
    for logical_id, statement in _statements(built[mode].raw):
        if statement["Effect"] == "Allow" and "*" in _as_list(statement.get("Resource", [])):
            actions = set(_as_list(statement["Action"]))
            if not actions <= ALLOW_STAR:
                offenders.append((logical_id, sorted(actions)))
    assert offenders == []


def test_put_metric_data_is_pinned_to_one_namespace(default):
    found = [s for _, s in _statements(default.raw) if "cloudwatch:PutMetricData" in _as_list(s["Action"])]
    assert found and all(
        s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "HybridStream/Edge"}} for s in found
    )


def test_no_wildcard_actions(built):
    for mode, b in built.items():
        for logical_id, statement in _statements(b.raw):
            for action in _as_list(statement["Action"]):
                assert not action.endswith(":*") and action != "*", (mode, logical_id, action)


def test_trainer_role_reads_windows_writes_models_consumes_queue(default):
    roles = [k for k in default.resources("AWS::IAM::Role") if k.startswith("TrainerRole")]
    assert len(roles) == 1
    actions = set()
    for logical_id, statement in _statements(default.raw):
        if logical_id.startswith("TrainerRoleDefaultPolicy"):
            actions |= set(_as_list(statement["Action"]))
    assert {"s3:GetObject", "s3:PutObject", "sqs:ReceiveMessage", "sqs:DeleteMessage"} <= actions
    assert not {a for a in actions if a.startswith(("iot:", "lambda:", "ec2:", "iam:"))}


def test_announcer_reads_only_latest_pointers_and_manifests(default):
    """model_published is triggered by models/<name>/LATEST and reads it, then that version's manifest."""
    reads = [
        s
        for logical_id, s in _statements(default.raw)
        if logical_id.startswith("ModelPublishedHandlerRoleDefaultPolicy") and "s3:GetObject" in _as_list(s["Action"])
    ]
    assert len(reads) == 1
    suffixes = sorted(r["Fn::Join"][1][-1] for r in _as_list(reads[0]["Resource"]))
    assert suffixes == ["/models/*/LATEST", "/models/*/manifest.json"]
    (rule,) = [r for k, r in default.resources("AWS::Events::Rule").items() if k.startswith("ModelPublished")]
    assert rule["Properties"]["EventPattern"]["detail"]["object"] == {"key": [{"wildcard": "models/*/LATEST"}]}
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("ModelPublishedHandlerFunction")
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].startswith("ModelPublishedHandlerDLQ")
