"""Topic rules come from the one definition (infra/topic_rules.py) with the right actions."""

from __future__ import annotations

import doctest

import pytest

import infra.topic_rules as topic_rules
from infra.topic_rules import rule_named, rules_for_mode
from model_contract.topics import topic_matches
from tests.infra.conftest import MODES


def _rules(b) -> dict[str, dict]:
    return {
        r["Properties"]["RuleName"]: r["Properties"]["TopicRulePayload"]
        for r in b.resources("AWS::IoT::TopicRule").values()
    }


def test_topic_rules_doctests():
    assert doctest.testmod(topic_rules).failed == 0


def test_rule_definition_has_no_cdk_imports():
    source = topic_rules.__file__
    with open(source) as fh:
        text = fh.read()
    assert "aws_cdk" not in text and "constructs" not in text


@pytest.mark.parametrize("mode", MODES)
def test_synthesized_sql_is_the_shared_definition(built, mode):
    rules = _rules(built[mode])
    expected = {f"hybridstream_{r.name}": r.sql() for r in rules_for_mode(mode)}
    assert {name: payload["Sql"] for name, payload in rules.items()} == expected
    for payload in rules.values():
        assert payload["AwsIotSqlVersion"] == "2016-03-23"
        assert "CloudwatchLogs" in payload["ErrorAction"]


def test_window_notices_go_to_the_training_queue(default):
    payload = _rules(default)["hybridstream_window_notices"]
    (action,) = payload["Actions"]
    assert action["Sqs"]["QueueUrl"]["Ref"].startswith("TrainingQueue")
    assert "startswith(key, concat('windows/', topic(2), '/'))" in payload["Sql"]


def test_metrics_go_to_cloudwatch_one_rule_per_field(default):
    rules = _rules(default)
    metrics = {}
    for field_name in ("hybrid_rmse", "batch_rmse", "speed_rmse", "latency_ms", "records_per_s"):
        payload = rules[f"hybridstream_edge_metrics_{field_name}"]
        # a message without the field does not fire the rule (no failed action -> error action)
        assert payload["Sql"].endswith(f"WHERE isUndefined({field_name}) = false")
        (action,) = payload["Actions"]
        metrics[action["CloudwatchMetric"]["MetricName"]] = action["CloudwatchMetric"]
        assert action["CloudwatchMetric"]["MetricValue"] == "${" + field_name + "}"
    assert set(metrics) == {"HybridRMSE", "BatchRMSE", "SpeedRMSE", "LatencyMs", "RecordsPerSecond"}
    assert {m["MetricNamespace"] for m in metrics.values()} == {"HybridStream/Edge"}


def test_optional_metrics_match_locally_like_in_iot_sql():
    message = {"timestamp": "t", "hybrid_rmse": 0.4, "batch_rmse": 0.5, "speed_rmse": 0.6}
    fired = {r.name for r in rules_for_mode("edge-cloud") if r.match("hybridstream/pi-1/metrics", message)}
    assert fired == {
        "edge_metrics_hybrid_rmse",
        "edge_metrics_batch_rmse",
        "edge_metrics_speed_rmse",
        "edge_metrics_latest",
        "edge_validation",
    }
    full = {**message, "latency_ms": 0.8, "records_per_s": 900.0}
    fired = {r.name for r in rules_for_mode("edge-cloud") if r.match("hybridstream/pi-1/metrics", full)}
    assert {"edge_metrics_latency_ms", "edge_metrics_records_per_s"} <= fired


def test_results_go_to_s3_under_results_thing(default):
    (action,) = _rules(default)["hybridstream_edge_results"]["Actions"]
    assert action["S3"]["Key"].startswith("results/${topic(2)}/")
    assert action["S3"]["BucketName"]["Ref"].startswith("StorageResults")


def test_every_edge_message_is_validated_by_ingest(default):
    payload = _rules(default)["hybridstream_edge_validation"]
    assert "FROM 'hybridstream/+/+'" in payload["Sql"]
    (action,) = payload["Actions"]
    assert action["Lambda"]["FunctionArn"]["Fn::GetAtt"][0].startswith("IngestFunction")
    default.template.has_resource_properties(
        "AWS::Lambda::Permission", {"Principal": "iot.amazonaws.com", "Action": "lambda:InvokeFunction"}
    )


def test_local_router_semantics():
    rule = rule_named("window_notices")
    assert rule.match("hybridstream/pi-1/windows", {"window_id": "w", "key": "windows/pi-1/a.csv"})
    assert rule.match("hybridstream/pi-1/metrics", {"window_id": "w", "key": "windows/pi-1/a.csv"}) is None
    assert rule.match("hybridstream/pi-1/windows", {"window_id": "w"}) is None
    assert rule.match("hybridstream/pi-1/windows", {"key": "windows/pi-2/a.csv"}) is None
    assert topic_matches("hybridstream/#", "hybridstream/a/b/c")
    assert not topic_matches("hybridstream/+/windows", "hybridstream/models/x/published")
    with pytest.raises(ValueError):
        rules_for_mode("nope")


def test_window_notices_pass_only_the_selected_fields(default):
    """Defect 13: the trainer prefers a notice's ``uri``/``s3_uri``/``bucket``; with ``SELECT *``
    device A could make it read ``windows/B/...``. The rule selects explicit fields (the key is
    guarded to the publisher's own ``windows/<thing>/``) and takes ``thing`` from the topic.
    Source: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-reference.html
    """
    payload = _rules(default)["hybridstream_window_notices"]
    assert payload["Sql"].startswith("SELECT key AS key, window_id AS window_id, rows AS rows, first_ts AS first_ts")
    assert "sha256 AS sha256, topic(2) AS thing" in payload["Sql"]
    assert "*" not in payload["Sql"].split(" FROM ")[0]
    from hybridstream.servers.iot_sql import parse

    rule = rule_named("window_notices")
    forged = {"key": "windows/pi-1/a.csv", "uri": "s3://w/windows/pi-2/b.csv", "bucket": "other", "thing": "pi-2"}
    assert rule.match("hybridstream/pi-1/windows", forged) == {
        "key": "windows/pi-1/a.csv",
        "thing": "pi-1",
        "mqtt_topic": "hybridstream/pi-1/windows",
    }
    # the local router evaluates the deployed SQL text itself: same result
    assert parse(rule.sql()).evaluate("hybridstream/pi-1/windows", forged) == rule.match(
        "hybridstream/pi-1/windows", forged
    )


def test_trainer_takes_the_thing_from_the_key():
    """Defect 13, worker side: the speed model trained is the key's device's, and a notice whose
    ``thing`` disagrees with its key is refused."""
    from model_contract.messages import WindowNotice
    from training_job.windows import WindowError
    from training_job.worker import window_thing

    assert window_thing(WindowNotice(bucket="w", key="windows/pi-1/2026/a.csv", thing="pi-1")) == "pi-1"
    assert window_thing(WindowNotice(bucket="w", key="windows/pi-1/2026/a.csv", thing="")) == "pi-1"
    with pytest.raises(WindowError, match="the key says 'pi-1'"):
        window_thing(WindowNotice(bucket="w", key="windows/pi-1/2026/a.csv", thing="pi-2"))
    with pytest.raises(WindowError, match="not under windows/<thing>/"):
        window_thing(WindowNotice(bucket="w", key="elsewhere/a.csv", thing="pi-1"))


def test_latest_metrics_land_per_device_in_the_results_bucket(default):
    """fleet status reads metrics/<thing>/latest.json (FLEET's request): one S3 key per device."""
    payload = _rules(default)["hybridstream_edge_metrics_latest"]
    assert "timestamp() AS received_at" in payload["Sql"] and "FROM 'hybridstream/+/metrics'" in payload["Sql"]
    (action,) = payload["Actions"]
    assert action["S3"]["Key"] == "metrics/${topic(2)}/latest.json"
    assert action["S3"]["BucketName"]["Ref"].startswith("StorageResults")
    assert default.raw["Outputs"]["DeviceMetricsKey"]["Value"] == "metrics/{thing}/latest.json"
    local = rule_named("edge_metrics_latest").match("hybridstream/pi-1/metrics", {"hybrid_rmse": 0.4})
    assert local["thing"] == "pi-1" and isinstance(local["received_at"], int)
