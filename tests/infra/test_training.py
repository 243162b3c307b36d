"""Trainer: queue + DLQ, VPC endpoints, launch template hardening, user data, scaling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match


def test_training_queue_redrives_to_an_encrypted_dlq(default):
    queues = default.resources("AWS::SQS::Queue")
    main = [q for k, q in queues.items() if k.startswith("TrainingQueue")]
    assert len(main) == 1
    props = main[0]["Properties"]
    # 6, not 3: a trainer stopped by SIGTERM during scale-in releases its message, and that
    # receive counts; bad windows still fail fast at parsing
    assert props["RedrivePolicy"]["maxReceiveCount"] == 6
    assert props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].startswith("TrainingDLQ")
    assert all(q["Properties"].get("SqsManagedSseEnabled") for q in queues.values())


def test_launch_template_is_hardened(default):
    (lt,) = default.resources("AWS::EC2::LaunchTemplate").values()
    data = lt["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "c5.4xlarge"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["Monitoring"] == {"Enabled": True}
    (device,) = data["BlockDeviceMappings"]
    assert device["Ebs"]["Encrypted"] is True and device["Ebs"]["VolumeType"] == "gp3"


def test_user_data_runs_the_worker_as_a_service(default):
    (lt,) = default.resources("AWS::EC2::LaunchTemplate").values()
    text = json.dumps(lt["Properties"]["LaunchTemplateData"]["UserData"])
    # one speed model per device: the worker fills in {thing} from each window notice
    assert "hybridstream train worker --queue ${QUEUE_URL} --name speed-{thing}" in text
    assert "systemctl enable --now hybridstream-trainer.service" in text
    assert "pip install" in text and "training_job/requirements.txt" in text
    assert "QUEUE_URL=" in text and "HYBRIDSTREAM_MODELS_BUCKET=" in text
    staged = default.outdir / f"asset.{default.stack.trainer.source_asset.asset_hash}"
    assert (staged / "pyproject.toml").is_file() and (staged / "training_job").is_dir()
    # the unit the user data installs ships in the asset
    assert (staged / "training_job" / "deploy" / "hybridstream-trainer.service").is_file()


def test_ssm_managed_and_no_inbound(default):
    default.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "ManagedPolicyArns": Match.array_with(
                [
                    {
                        "Fn::Join": [
                            "",
                            ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/AmazonSSMManagedInstanceCore"],
                        ]
                    }
                ]
            )
        },
    )
    groups = [
        g for k, g in default.resources("AWS::EC2::SecurityGroup").items() if k.startswith("TrainerSecurityGroup")
    ]
    assert len(groups) == 1 and "SecurityGroupIngress" not in groups[0]["Properties"]


def test_vpc_endpoints(default):
    endpoints = default.resources("AWS::EC2::VPCEndpoint").values()
    names = {json.dumps(e["Properties"]["ServiceName"]) for e in endpoints}
    for service in ("s3", "sqs", "ssm", "ssmmessages", "ec2messages"):
        assert any(f".{service}" in n for n in names), service
    assert len(default.resources("AWS::EC2::NatGateway")) == 1
    assert len(default.resources("AWS::EC2::FlowLog")) == 1


def test_scales_on_queue_depth_down_to_zero(default):
    (asg,) = default.resources("AWS::AutoScaling::AutoScalingGroup").values()
    assert asg["Properties"]["MinSize"] == "0"
    policies = default.resources("AWS::AutoScaling::ScalingPolicy").values()
    exact = [p for p in policies if p["Properties"].get("AdjustmentType") == "ExactCapacity"]
    assert exact
    alarms = [a for a in default.resources("AWS::CloudWatch::Alarm").values() if "Metrics" in a["Properties"]]
    backlog = [
        a for a in alarms if any(m.get("Expression") == "visible + inflight" for m in a["Properties"]["Metrics"])
    ]
    assert len(backlog) == 2  # scale-out and scale-in alarms


def test_scaling_boundary_is_half_a_message(default):
    """One message in flight must fire only the scale-out alarm (no flapping): the boundary
    sits at 0.5, so scale-out is backlog >= 1 and scale-in is backlog == 0."""
    alarms = [
        a["Properties"]
        for a in default.resources("AWS::CloudWatch::Alarm").values()
        if any(m.get("Expression") == "visible + inflight" for m in a["Properties"].get("Metrics", []))
    ]
    by_op = {a["ComparisonOperator"]: a["Threshold"] for a in alarms}
    assert by_op == {"GreaterThanOrEqualToThreshold": 0.5, "LessThanOrEqualToThreshold": 0.5}

    def fires(op: str, backlog: int) -> bool:
        return backlog >= by_op[op] if op.startswith("Greater") else backlog <= by_op[op]

    assert fires("GreaterThanOrEqualToThreshold", 1) and not fires("LessThanOrEqualToThreshold", 1)
    assert fires("LessThanOrEqualToThreshold", 0) and not fires("GreaterThanOrEqualToThreshold", 0)
    bounds = [
        (s.get("MetricIntervalLowerBound"), s.get("MetricIntervalUpperBound"), s["ScalingAdjustment"])
        for p in default.resources("AWS::AutoScaling::ScalingPolicy").values()
        for s in p["Properties"].get("StepAdjustments", [])
    ]
    # relative to the alarm threshold: in-policy: [<= 0.5] -> 0; [0.5, 5) -> 1; [>= 5] -> max (2)
    assert (None, 0, 0) in bounds and (0, 4.5, 1) in bounds and (4.5, None, 2) in bounds


def test_scale_in_behaviour_is_the_documented_one(default):
    """docs/deploy.md "Known limitations": no instance protection and no lifecycle hook (a
    partial scale-in may stop a busy trainer, whose SIGTERM releases the message), the backlog
    must stay at 0 for 3 one-minute periods before the group scales in to its minimum."""
    (asg,) = default.resources("AWS::AutoScaling::AutoScalingGroup").values()
    props = asg["Properties"]
    assert "NewInstancesProtectedFromScaleIn" not in props and "LifecycleHookSpecificationList" not in props
    assert "TerminationPolicies" not in props  # the default policy picks the instance
    assert not default.resources("AWS::AutoScaling::LifecycleHook")
    scale_in = [
        a["Properties"]
        for a in default.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("ComparisonOperator") == "LessThanOrEqualToThreshold"
        and any(m.get("Expression") == "visible + inflight" for m in a["Properties"].get("Metrics", []))
    ]
    assert [(a["EvaluationPeriods"], a.get("DatapointsToAlarm", a["EvaluationPeriods"])) for a in scale_in] == [(3, 3)]
    periods = {m["MetricStat"]["Period"] for a in scale_in for m in a["Metrics"] if "MetricStat" in m}
    assert periods == {60}
    repo = Path(__file__).parents[2]
    docs = (repo / "docs" / "deploy.md").read_text()
    unit = (repo / "training_job" / "deploy" / "hybridstream-trainer.service").read_text()
    assert "`maxReceiveCount` (**6**)" in docs
    for setting in ("TimeoutStopSec=120", "KillMode=mixed"):  # what the docs say about the unit
        assert setting in docs and setting in unit


def test_trainer_lists_the_models_bucket_without_a_prefix_condition(default):
    """A prefix condition on s3:ListBucket turns a missing key's 404 into 403 (publish.py fails)."""
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("TrainerRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["ListModels"]["Action"] == "s3:ListBucket"
    assert "Condition" not in by_sid["ListModels"]
    assert by_sid["ListModels"]["Resource"]["Fn::GetAtt"][0].startswith("StorageModels")
    writes = json.dumps(by_sid["WriteModels"]["Resource"])
    assert "/models/*" in writes and "/rejected/*" in writes and writes.count("Fn::Join") == 2


def test_trainer_lists_the_windows_bucket_without_a_prefix_condition(default):
    """Without s3:ListBucket S3 answers a GET of a missing window with 403, not 404 ("If you don't
    have the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403",
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html), and an s3:prefix condition
    does not count for a GET (radosgw behaves the same: tests/training_job/test_worker.py)."""
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("TrainerRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["ListWindows"]["Action"] == "s3:ListBucket"
    assert "Condition" not in by_sid["ListWindows"]
    assert by_sid["ListWindows"]["Resource"]["Fn::GetAtt"][0].startswith("StorageWindows")


@pytest.mark.parametrize("instance_type", ["c5.2xlarge"])
def test_instance_type_comes_from_context(tmp_path, infra_assets, instance_type):
    from tests.infra.conftest import build

    b = build(
        {"trainer_instance_type": instance_type, "batch_model_dir": str(infra_assets["batch_model"])},
        tmp_path,
    )
    (lt,) = b.resources("AWS::EC2::LaunchTemplate").values()
    assert lt["Properties"]["LaunchTemplateData"]["InstanceType"] == instance_type
