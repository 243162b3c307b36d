"""Dashboard, alarms and stack outputs."""

from __future__ import annotations

import json


def test_dashboard_widgets(default):
    (dash,) = default.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dash["Properties"]["DashboardBody"])
    for needle in (
        "HybridRMSE",
        "BatchRMSE",
        "SpeedRMSE",
        "LatencyMs",
        "RecordsPerSecond",
        "TrainingSeconds",
        "model_versions",
        "ApproximateNumberOfMessagesVisible",
        "Errors",
        "Coverage80",  # the forecast intervals per thing (edge_app.intervals, via the ingest Lambda's EMF)
        "Coverage95",
        "Width95",
    ):
        assert needle in body, needle


def test_alarms(default):
    alarms = default.resources("AWS::CloudWatch::Alarm")
    descriptions = " | ".join(a["Properties"].get("AlarmDescription", "") for a in alarms.values())
    assert "dead-letter queue" in descriptions
    assert "failed training" in descriptions
    assert "hybrid RMSE above" in descriptions
    coverage = {
        k: a["Properties"] for k, a in alarms.items() if "interval coverage" in a["Properties"]["AlarmDescription"]
    }
    assert len(coverage) == 2  # 80 % and 95 %: |coverage - nominal| above its band for 2 x 15 min
    for props in coverage.values():
        (expr,) = [m["Expression"] for m in props["Metrics"] if "Expression" in m]
        assert expr.startswith("ABS(c - 0.") and props["EvaluationPeriods"] == 2
    dlq_alarms = [a for a in alarms.values() if "dead-letter" in a["Properties"].get("AlarmDescription", "")]
    assert len(dlq_alarms) == 2  # model_published and ingest
    for logical_id, alarm in alarms.items():
        if logical_id.startswith("Observability"):
            assert alarm["Properties"]["AlarmActions"][0]["Ref"].startswith("Alarms"), logical_id


def test_alarm_topic_key_and_policy_let_cloudwatch_alarms_publish(default):
    """Defect 5: CloudWatch cannot use the AWS-managed SNS key, and a TLS-only topic policy allows
    nobody; the topic needs a customer-managed key that grants cloudwatch.amazonaws.com
    kms:Decrypt + kms:GenerateDataKey*, and a topic policy that allows sns:Publish from this
    account's alarms. Source: https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
    """
    (topic_id, topic) = next(iter(default.resources("AWS::SNS::Topic").items()))
    key_ref = topic["Properties"]["KmsMasterKeyId"]
    assert "alias/aws/sns" not in json.dumps(key_ref)
    key_id = key_ref["Fn::GetAtt"][0]
    key = default.raw["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cloudwatch) == 1 and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert "aws:SourceAccount" in cloudwatch[0]["Condition"]["StringEquals"]
    (policy,) = [
        p["Properties"]
        for p in default.resources("AWS::SNS::TopicPolicy").values()
        if p["Properties"]["Topics"] == [{"Ref": topic_id}]
    ]
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    publish = [s for s in allows if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(publish) == 1 and publish[0]["Action"] == "sns:Publish"
    assert "aws:SourceAccount" in publish[0]["Condition"]["StringEquals"]
    assert ":alarm:*" in json.dumps(publish[0]["Condition"]["ArnLike"]["aws:SourceArn"])
    # the TLS-only deny is still there
    assert any(s["Effect"] == "Deny" for s in policy["PolicyDocument"]["Statement"])


def test_outputs(default):
    outputs = default.raw["Outputs"]
    for key in (
        "IotDataEndpointAddress",
        "WindowsBucket",
        "ModelsBucket",
        "ResultsBucket",
        "TrainingQueueUrl",
        "FleetThingGroup",
        "CanaryThingGroup",
        "RoleAlias",
        "DashboardUrl",
        "EdgeAppVersion",
    ):
        assert key in outputs, key
    assert outputs["RoleAlias"]["Value"] == "hybridstream-tes-alias"
    assert "dashboards:name=hybridstream" in json.dumps(outputs["DashboardUrl"]["Value"])
