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


def healthy(message: dict[str, Any] | None, max_rmse: float | None = None) -> tuple[bool, str]:
    """(ok, why not): the message has finite RMSEs (and hybrid_rmse <= ``max_rmse`` when given)."""
    if message is None:
        return False, "no metrics yet"
    rmse = message.get("hybrid_rmse")
    if not isinstance(rmse, int | float) or isinstance(rmse, bool) or not math.isfinite(rmse):
        return False, f"hybrid_rmse is {rmse!r}"
    if max_rmse is not None and rmse > max_rmse:
        return False, f"hybrid_rmse {rmse:.3f} > {max_rmse}"
    return True, ""
