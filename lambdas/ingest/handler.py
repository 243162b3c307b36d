"""Validate every edge message the IoT rule hands over; count accepted and rejected ones.

The ``edge_validation`` topic rule sends ``SELECT *, topic(2) AS thing, topic() AS mqtt_topic``
of each ``hybridstream/<thing>/<kind>`` message here; the schemas are the wire contract's
(``model_contract.messages.DEVICE_SCHEMAS``). A message is rejected with reasons
(size, JSON shape, schema, a window key outside the thing's prefix); the counts go to CloudWatch through the
embedded metric format (namespace ``HybridStream/Ingest``, dimensions Kind and Reason), and
each rejection is logged as one JSON line. Metrics messages also yield per-device metrics and
a ``model_versions`` log line for the dashboard.
"""

from __future__ import annotations

import json
import time
from typing import Any

from model_contract.layout import WINDOWS_PREFIX
from model_contract.messages import DEVICE_SCHEMAS as MESSAGE_SCHEMAS
from model_contract.topics import DEVICE_KINDS, MAX_MESSAGE_BYTES, WINDOWS, parse_device_topic

NAMESPACE = "HybridStream/Ingest"
ADDED_FIELDS = ("thing", "mqtt_topic")  # added by the rule's SELECT, not part of the message

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
}


# per-thing interval metrics (edge_app.intervals): CloudWatch name, metrics message field
INTERVAL_FIELDS = (
    ("Coverage80", "coverage_80"),
    ("Coverage95", "coverage_95"),
    ("Width80", "width_80"),
    ("Width95", "width_95"),
)


def _is(value: Any, json_type: str) -> bool:
    if isinstance(value, bool):  # bool is an int in Python, never a JSON number here
        return False
    return isinstance(value, _TYPES[json_type])


def validate(event: Any) -> tuple[str, str, list[str]]:
    """Return (thing, kind, reasons); no reasons means the message is accepted."""
    if not isinstance(event, dict):
        return "", "unknown", ["not_json_object"]
    size = len(json.dumps(event, separators=(",", ":")).encode())
    try:
        thing, kind = parse_device_topic(event.get("mqtt_topic"))
    except ValueError:
        return "", "unknown", ["bad_topic"] + (["oversized"] if size > MAX_MESSAGE_BYTES else [])
    reasons: list[str] = []
    if size > MAX_MESSAGE_BYTES:
        reasons.append("oversized")
    if kind not in DEVICE_KINDS:
        return thing, "unknown", reasons + ["unknown_kind"]
    schema = MESSAGE_SCHEMAS[kind]
    for name, json_type in schema["required"].items():
        if name not in event:
            reasons.append(f"missing:{name}")
        elif not _is(event[name], json_type):
            reasons.append(f"type:{name}")
    for name, json_type in schema.get("optional", {}).items():
        if name in event and event[name] is not None and not _is(event[name], json_type):
            reasons.append(f"type:{name}")
    # no device == thing check: one Pi (thing) serves several sensor devices, so ``device`` is
    # the sensor's id and legitimately differs from the thing name
    key = event.get("key")
    if kind == WINDOWS and isinstance(key, str) and not key.startswith(f"{WINDOWS_PREFIX}/{thing}/"):
        reasons.append("key_outside_prefix")
    return thing, kind, reasons


def _emf(dimensions: list[list[str]], values: dict[str, float], props: dict[str, Any], unit: str = "Count") -> str:
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": dimensions,
                        "Metrics": [{"Name": k, "Unit": unit} for k in values],
                    }
                ],
            },
            **props,
            **values,
        }
    )


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """One IoT rule invocation = one message. Returns the verdict (for tests and the local router)."""
    thing, kind, reasons = validate(event)
    if reasons:
        print(json.dumps({"rejected": True, "thing": thing, "kind": kind, "reasons": reasons}))
        for reason in reasons:
            print(
                _emf([["Kind"], ["Kind", "Reason"]], {"Rejected": 1.0}, {"Kind": kind, "Reason": reason.split(":")[0]})
            )
        return {"accepted": False, "thing": thing, "kind": kind, "reasons": reasons}
    print(_emf([["Kind"]], {"Accepted": 1.0}, {"Kind": kind}))
    if kind == "metrics":
        per_device = {
            name: float(event[field])
            for name, field in (("HybridRMSE", "hybrid_rmse"), ("BatchRMSE", "batch_rmse"), ("SpeedRMSE", "speed_rmse"))
        }
        for name, field in INTERVAL_FIELDS:  # the forecast intervals' coverage and width, when the edge sends them
            if isinstance(event.get(field), int | float):
                per_device[name] = float(event[field])
        print(_emf([["Thing"]], per_device, {"Thing": thing}, unit="None"))
        if isinstance(event.get("models"), dict):
            print(
                json.dumps(
                    {"model_versions": True, "thing": thing, **{f"model_{k}": v for k, v in event["models"].items()}}
                )
            )
    return {"accepted": True, "thing": thing, "kind": kind, "reasons": []}
