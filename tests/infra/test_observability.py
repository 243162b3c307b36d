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
    ):
        assert needle in body, needle


def test_alarms(default):
    alarms = default.resources("AWS::CloudWatch::Alarm")
    descriptions = " | ".join(a["Properties"].get("AlarmDescription", "") for a in alarms.values())
    assert "dead-letter queue" in descriptions
    assert "failed training" in descriptions
    assert "hybrid RMSE above" in descriptions
    dlq_alarms = [a for a in alarms.values() if "dead-letter" in a["Properties"].get("AlarmDescription", "")]
    assert len(dlq_alarms) == 2  # model_published and ingest
    for logical_id, alarm in alarms.items():
        if logical_id.startswith("Observability"):
            assert alarm["Properties"]["AlarmActions"][0]["Ref"].startswith("Alarms"), logical_id


def test_alarm_topic_is_encrypted(default):
    (topic,) = default.resources("AWS::SNS::Topic").values()
    assert "alias/aws/sns" in json.dumps(topic["Properties"]["KmsMasterKeyId"])


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
