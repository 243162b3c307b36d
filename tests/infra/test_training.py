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
    """One message in flight must fire only the wake-up alarm (no flapping): the boundary sits
    at 0.5, so "at least one instance" is backlog >= 1 and "back to the minimum" is backlog == 0."""
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
    # relative to the alarm threshold: [<= 0.5] -> min (0); [>= 0.5] -> max(1, min): a floor, the
    # target tracking adds the rest (the group takes the largest capacity of its policies)
    assert sorted(bounds, key=str) == sorted([(None, 0, 0), (0, None, 1)], key=str)


def _target_tracking(default) -> dict:
    (policy,) = [
        p["Properties"]
        for p in default.resources("AWS::AutoScaling::ScalingPolicy").values()
        if p["Properties"].get("PolicyType") == "TargetTrackingScaling"
    ]
    return policy


def _cloudwatch_math(expression: str, **values: float) -> float:
    """Evaluate the metric math expression the way CloudWatch does for the functions it uses
    (IF(cond, a, b): a where cond is non-zero, else b; https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html#metric-math-syntax)."""
    return eval(expression.replace("IF(", "_if("), {"_if": lambda c, a, b: a if c else b}, dict(values))  # noqa: S307


def test_scaling_tracks_the_backlog_per_instance(default):
    """Target tracking on (visible + in flight) / in-service instances against the messages one
    instance clears in the acceptable delay (AWS's scheme for SQS-driven groups,
    https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-target-tracking-metric-math.html),
    within CloudWatch's documented limits for a target tracking metric: at most 10 metrics, one
    time series returned, ids starting with a lowercase letter, every referenced id defined."""
    import re

    from infra.training import backlog_target, instance_vcpus

    policy = _target_tracking(default)
    config = policy["TargetTrackingConfiguration"]
    queries = config["CustomizedMetricSpecification"]["Metrics"]
    assert len(queries) <= 10
    assert [q["Id"] for q in queries if q.get("ReturnData", True)] == ["backlog_per_instance"]
    ids = {q["Id"] for q in queries}
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9_]*", i) for i in ids)
    (expr,) = [q["Expression"] for q in queries if "Expression" in q]
    assert set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", expr)) <= ids
    stats = {q["Id"]: q["MetricStat"] for q in queries if "MetricStat" in q}
    assert stats["visible"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert stats["inflight"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesNotVisible"
    assert stats["instances"]["Metric"]["MetricName"] == "GroupInServiceInstances"
    assert stats["instances"]["Metric"]["Dimensions"][0]["Value"] == {"Ref": policy["AutoScalingGroupName"]["Ref"]}
    # the expression means what it says, and survives an empty group (no division by zero)
    assert _cloudwatch_math(expr, visible=30, inflight=2, instances=2) == 16
    assert _cloudwatch_math(expr, visible=3, inflight=0, instances=0) == 3
    # the target: c5.4xlarge -> 16 workers, each a window per WINDOW_SECONDS, within 600 s
    assert config["TargetValue"] == backlog_target(instance_vcpus("c5.4xlarge"))
    assert policy["EstimatedInstanceWarmup"] >= 300  # boot + pip install of TensorFlow
    assert config.get("DisableScaleIn", False) is False
    (asg,) = default.resources("AWS::AutoScaling::AutoScalingGroup").values()
    assert asg["Properties"]["MaxSize"] == "2"  # trainer_max_capacity (context) default


def test_workers_and_group_reach_the_worker(default):
    """The user data tells the worker its workers per instance and its group (scale-in protection)."""
    (lt,) = default.resources("AWS::EC2::LaunchTemplate").values()
    text = json.dumps(lt["Properties"]["LaunchTemplateData"]["UserData"])
    (asg,) = default.resources("AWS::AutoScaling::AutoScalingGroup").values()
    name = asg["Properties"]["AutoScalingGroupName"]
    assert "HYBRIDSTREAM_TRAINER_WORKERS=16" in text and f"HYBRIDSTREAM_TRAINER_GROUP={name}" in text
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("TrainerRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (protect,) = [s for s in statements if s.get("Sid") == "ProtectSelfWhileTraining"]
    assert protect["Action"] == "autoscaling:SetInstanceProtection"
    assert json.dumps(protect["Resource"]).endswith(f':autoScalingGroupName/{name}"]]}}')


def test_scale_in_spares_busy_trainers(default):
    """docs/deploy.md "Scaling": the group terminates only instances without scale-in protection, and
    a trainer is protected while any of its workers trains (training_job.protection; "If all
    instances in an Auto Scaling group are protected from scale in, and a scale-in event occurs, its
    desired capacity is decremented. However, the Auto Scaling group can't terminate the required
    number of instances until their instance scale-in protection settings are disabled",
    https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html).
    New instances start unprotected (an idle one may go); the backlog must stay at 0 for 3
    one-minute periods before the wake-up policy sets the minimum."""
    (asg,) = default.resources("AWS::AutoScaling::AutoScalingGroup").values()
    props = asg["Properties"]
    assert "NewInstancesProtectedFromScaleIn" not in props and "LifecycleHookSpecificationList" not in props
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


def test_context_defaults_match_the_construct():
    from infra.config import AppConfig
    from infra.training import MAX_DELAY_SECONDS, WINDOW_SECONDS

    cfg = AppConfig()
    assert (cfg.trainer_window_seconds, cfg.trainer_max_delay_seconds) == (WINDOW_SECONDS, MAX_DELAY_SECONDS)


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


def test_the_fine_tune_needs_no_new_permission(default):
    """Issue 17: each speed model is fine-tuned from models/<batch>/LATEST's weights.npz (WriteModels'
    s3:GetObject on models/*) on the thing's last windows, listed under windows/<thing>/ (ListWindows, the
    bucket holds only windows) and read with ReadWindows; the worker is told the batch model's name."""
    (lt,) = default.resources("AWS::EC2::LaunchTemplate").values()
    assert "HYBRIDSTREAM_BATCH_MODEL_NAME=batch" in json.dumps(lt["Properties"]["LaunchTemplateData"]["UserData"])
    statements = [
        s
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("TrainerRoleDefaultPolicy")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    assert "s3:GetObject" in by_sid["WriteModels"]["Action"] and "/models/*" in json.dumps(by_sid["WriteModels"])
    assert by_sid["ReadWindows"]["Action"] == "s3:GetObject" and "/windows/*" in json.dumps(by_sid["ReadWindows"])
    listing = [s for s in statements if "s3:ListBucket" in json.dumps(s["Action"])]
    assert sorted(s["Sid"] for s in listing) == ["ListModels", "ListWindows"]


@pytest.mark.parametrize("instance_type", ["c5.2xlarge"])
def test_instance_type_comes_from_context(tmp_path, infra_assets, instance_type):
    from tests.infra.conftest import build

    b = build(
        {"trainer_instance_type": instance_type, "batch_model_dir": str(infra_assets["batch_model"])},
        tmp_path,
    )
    (lt,) = b.resources("AWS::EC2::LaunchTemplate").values()
    assert lt["Properties"]["LaunchTemplateData"]["InstanceType"] == instance_type
