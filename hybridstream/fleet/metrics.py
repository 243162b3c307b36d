"""The latest metrics message each Pi reported (``hybridstream/<thing>/metrics``, once a minute).

The stack's ``edge_metrics_latest`` topic rule keeps the newest message of each thing in the
results bucket at the key named by output ``DeviceMetricsKey`` (``metrics/{thing}/latest.json``:
the edge's message with rolling ``hybrid_rmse`` / ``batch_rmse`` / ``speed_rmse``, the ``models``
{batch, speed} versions it serves, ``timestamp``; plus ``thing`` and ``received_at``). The object's
LastModified is when IoT Core received it. A stack without that output keeps no per-device
metrics: :func:`available` is False, status shows none and the rollout gate skips them (it says so).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hybridstream.fleet.outputs import StackOutputs
from hybridstream.fleet.session import error_code

KEY = "metrics/{thing}/latest.json"


def available(outputs: StackOutputs) -> bool:
    return bool(outputs.get("DeviceMetricsKey") and outputs.get("ResultsBucket"))


def latest(s3: Any, outputs: StackOutputs, thing: str) -> dict[str, Any] | None:
    """The thing's newest metrics (with ``received``: a datetime), or None if none arrived yet."""
    from botocore.exceptions import ClientError

    if not available(outputs):
        return None
    key = (outputs.get("DeviceMetricsKey") or KEY).replace("{thing}", thing)
    try:
        obj = s3.get_object(Bucket=outputs.require("ResultsBucket"), Key=key)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    try:
        body = json.loads(obj["Body"].read())
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    body["received"] = obj.get("LastModified")
    return body


def fresh(message: dict[str, Any] | None, since: Any) -> bool:
    """The message was received at or after ``since`` (a datetime: e.g. a deployment's creation)."""
    received = (message or {}).get("received")
    return bool(received is not None and since is not None and received >= since)


def hybrid_rmse(message: dict[str, Any] | None) -> float | None:
    """The message's rolling hybrid RMSE, None when absent or not a finite number."""
    rmse = (message or {}).get("hybrid_rmse")
    if isinstance(rmse, bool) or not isinstance(rmse, int | float) or not math.isfinite(rmse):
        return None
    return float(rmse)
