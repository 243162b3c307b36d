"""ingest: valid edge messages pass, malformed and oversized ones are rejected with reasons and counted."""

from __future__ import annotations

import json

import pytest

from tests.lambdas.conftest import load_handler

ingest = load_handler("ingest")


def _emf(out: str) -> list[dict]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def metrics_message(**extra) -> dict:
    msg = {
        "timestamp": "2026-11-26T10:00:00Z",
        "hybrid_rmse": 0.41,
        "batch_rmse": 0.52,
        "speed_rmse": 0.47,
        "latency_ms": 0.8,
        "records_per_s": 950.0,
        "models": {"batch": "turbine-batch/abc", "speed": "turbine-speed/def"},
    }
    msg.update(extra)
    return {**msg, "thing": "pi-1", "mqtt_topic": "hybridstream/pi-1/metrics"}


def window_notice(key: str = "windows/pi-1/2026/11/26/w1.csv") -> dict:
    return {
        "window_id": "w1",
        "key": key,
        "rows": 1000,
        "thing": "pi-1",
        "mqtt_topic": "hybridstream/pi-1/windows",
    }


def test_valid_metrics_are_accepted_and_counted(capsys):
    verdict = ingest.handler(metrics_message())
    assert verdict == {"accepted": True, "thing": "pi-1", "kind": "metrics", "reasons": []}
    out = capsys.readouterr().out
    emf = _emf(out)
    accepted = [e for e in emf if "Accepted" in e]
    assert accepted and accepted[0]["Kind"] == "metrics"
    assert accepted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "HybridStream/Ingest"
    per_device = [e for e in emf if e.get("Thing") == "pi-1"]
    assert per_device and per_device[0]["HybridRMSE"] == 0.41
    versions = [json.loads(line) for line in out.splitlines() if '"model_versions"' in line]
    assert versions[0]["model_speed"] == "turbine-speed/def"


def test_valid_window_notice_is_accepted():
    assert ingest.handler(window_notice())["accepted"] is True


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("not an object", "not_json_object"),
        ({**metrics_message(), "mqtt_topic": "other/pi-1/metrics"}, "bad_topic"),
        ({**metrics_message(), "mqtt_topic": "hybridstream/pi-1/selfies"}, "unknown_kind"),
        ({k: v for k, v in metrics_message().items() if k != "hybrid_rmse"}, "missing:hybrid_rmse"),
        (metrics_message(batch_rmse="0.5"), "type:batch_rmse"),
        (metrics_message(speed_rmse=True), "type:speed_rmse"),
        (metrics_message(latency_ms=[1]), "type:latency_ms"),
        (window_notice(key="windows/pi-2/2026/11/26/w1.csv"), "key_outside_prefix"),
    ],
)
def test_malformed_messages_are_rejected_with_reasons(capsys, event, reason):
    verdict = ingest.handler(event)
    assert verdict["accepted"] is False
    assert reason in verdict["reasons"]
    out = capsys.readouterr().out
    rejected = [e for e in _emf(out) if "Rejected" in e]
    assert {e["Reason"] for e in rejected} == {r.split(":")[0] for r in verdict["reasons"]}
    log = [json.loads(line) for line in out.splitlines() if '"rejected": true' in line]
    assert log and reason in log[0]["reasons"]


@pytest.mark.parametrize("kind", ["metrics", "results"])
def test_a_thing_may_speak_for_several_sensor_devices(kind):
    # one Pi (thing pi-1) serves several sensors: their ids differ from the thing name
    event = (
        metrics_message(device="turbine-7")
        if kind == "metrics"
        else {
            "timestamp": "2026-11-26T10:00:00Z",
            "predictions": [],
            "device": "turbine-7",
            "thing": "pi-1",
            "mqtt_topic": "hybridstream/pi-1/results",
        }
    )
    verdict = ingest.handler(event)
    assert verdict["accepted"] is True, verdict
    assert "device_mismatch" not in verdict["reasons"]


def test_oversized_message_is_rejected(capsys):
    event = metrics_message(padding="x" * (128 * 1024))
    verdict = ingest.handler(event)
    assert verdict["accepted"] is False and "oversized" in verdict["reasons"]
    reasons = {e["Reason"] for e in _emf(capsys.readouterr().out) if "Rejected" in e}
    assert "oversized" in reasons


def test_schema_is_the_shared_definition():
    """The Lambda and the IoT rules (infra.topic_rules) check with the wire contract's schemas, one per device
    kind; the Lambda rejects every required field of every kind when it is missing or of another JSON type."""
    from infra import topic_rules
    from model_contract.messages import DEVICE_SCHEMAS
    from model_contract.topics import DEVICE_KINDS, device_topic

    assert ingest.MESSAGE_SCHEMAS is DEVICE_SCHEMAS and topic_rules.MESSAGE_SCHEMAS is DEVICE_SCHEMAS
    assert sorted(DEVICE_SCHEMAS) == sorted(DEVICE_KINDS)
    other_type = {"string": 1, "number": "1", "integer": 1.5, "object": [], "array": {}}
    for kind, schema in DEVICE_SCHEMAS.items():
        topic = device_topic("pi-1", kind)
        missing = ingest.handler({"mqtt_topic": topic})["reasons"]
        assert [r for r in missing if r.startswith("missing:")] == [f"missing:{f}" for f in schema["required"]]
        wrong = {f: other_type[t] for f, t in schema["required"].items()}
        reasons = ingest.handler({"mqtt_topic": topic, **wrong})["reasons"]
        assert [r for r in reasons if r.startswith("type:")] == [f"type:{f}" for f in schema["required"]], kind
    assert ingest.MAX_MESSAGE_BYTES == 128 * 1024


def test_interval_coverage_and_width_become_per_thing_metrics(capsys):
    """The edge's forecast intervals (edge_app.intervals): coverage_80/95 and width_80/95 in the metrics message
    become Coverage80/95 and Width80/95 with the Thing dimension (the dashboard's per-thing widgets)."""
    msg = metrics_message(coverage_80=0.801, coverage_95=0.949, width_80=0.45, width_95=0.95, anomalies=3)
    assert ingest.handler(msg)["accepted"]
    (per_thing,) = [e for e in _emf(capsys.readouterr().out) if e.get("Thing") == "pi-1"]
    assert (per_thing["Coverage80"], per_thing["Coverage95"], per_thing["Width95"]) == (0.801, 0.949, 0.95)
    names = {m["Name"] for m in per_thing["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"HybridRMSE", "Coverage80", "Width80"} <= names
    assert ingest.handler(metrics_message(coverage_80="high"))["reasons"] == ["type:coverage_80"]
