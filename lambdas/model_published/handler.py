"""Send the model notice of the CURRENT model of a name: S3 ``models/<name>/LATEST`` written ->
:class:`~model_contract.messages.ModelNotice` on MQTT ``hybridstream/models/<name>/published``
through IoT data (cloud -> edge).

Why LATEST and not ``manifest.json``: the trainer (``training_job.publish``) writes
``<version>/model.tflite``, then ``<version>/manifest.json``, then moves the ``LATEST`` pointer,
and ``LATEST`` only moves forward (to the model of the newest window). A model of an older
window published after a newer one gets its manifest but not ``LATEST``: no notice may be sent
for it. And when ``manifest.json`` lands, ``LATEST`` may not be written yet. So the trigger
is the pointer's write, and the handler sends the notice of the version ``LATEST`` names **when
it runs** (it reads the pointer again rather than trusting the event's object version): if the
pointer moved on meanwhile, the newer version's notice is sent (possibly twice, once per write),
never an older one's.

Checks (:func:`model_contract.layout.parse_latest`, :meth:`ModelNotice.for_manifest`): the
pointer names this ``<name>``; its ``manifest_key`` / ``model_key`` (when present) are the
version's canonical keys; the manifest's ``name``/``version`` equal the pointer's and its
``sha256`` equals the pointer's (when present). A failed check raises (-> retries, DLQ).

The model notice (JSON on ``hybridstream/models/<name>/published``, QoS 1; its schema is
``model_contract.messages.MODEL_NOTICE_SCHEMA``): what a device needs to fetch and trust the
model without listing the bucket.

- ``name``, ``version``: from ``LATEST`` (equal to the manifest's own); ``kind``: the manifest's
  (``speed`` when absent).
- ``sha256``: of ``model.tflite`` (from the manifest); ``s3_uri``: ``s3://<bucket>/models/<name>/<version>/model.tflite``.
- ``manifest_uri``: ``s3://<bucket>/models/<name>/<version>/manifest.json``; ``manifest_sha256``:
  of the manifest bytes as stored.
- ``metrics``: the manifest's holdout metrics (``{}`` when absent); ``published_at``: epoch seconds.

It also emits the notified model's training duration and holdout RMSE as CloudWatch metrics
(EMF): models that became current, not every model trained.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from functools import partial
from typing import Any

from lambdas.shared import cached_client
from model_contract.layout import parse_latest, parse_latest_key
from model_contract.messages import ModelNotice
from model_contract.topics import TOPIC_ROOT, model_notice_topic

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_POINTER_BYTES = 64 * 1024
NAMESPACE = "HybridStream/Training"

_clients: dict[str, Any] = {}
_client = partial(cached_client, _clients)


def _emit_metrics(notice: ModelNotice, manifest: dict[str, Any]) -> None:
    """CloudWatch embedded metric format: training seconds and holdout RMSE per model name."""
    values = {
        "TrainingSeconds": manifest.get("training_seconds"),
        "HoldoutRMSE": (manifest.get("metrics") or {}).get("rmse"),
    }
    values = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
    values["ModelsPublished"] = 1.0
    print(
        json.dumps(
            {
                "_aws": {
                    "Timestamp": int(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": NAMESPACE,
                            "Dimensions": [["Model"]],
                            "Metrics": [
                                {"Name": k, "Unit": "Seconds" if k == "TrainingSeconds" else "None"} for k in values
                            ],
                        }
                    ],
                },
                "Model": notice.name,
                "Version": notice.version,
                **values,
            }
        )
    )


def objects(event: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(bucket, key, size) of each created object, from an EventBridge "Object Created" event
    (what the stack wires) or an S3 notification event (``Records``)."""
    if isinstance(event.get("detail"), dict):
        detail = event["detail"]
        return [(detail["bucket"]["name"], detail["object"]["key"], int(detail["object"].get("size", 0)))]
    return [
        (
            r["s3"]["bucket"]["name"],
            urllib.parse.unquote_plus(r["s3"]["object"]["key"]),
            int(r["s3"]["object"].get("size", 0)),
        )
        for r in event.get("Records", [])
    ]


def _read(bucket: str, key: str, limit: int, what: str) -> bytes:
    body = _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read(limit + 1)
    if len(body) > limit:
        raise ValueError(f"{what} {key} is larger than {limit} bytes")
    return body


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """LATEST written -> one model notice of the version it names now. Bad pointers or manifests
    raise (-> retries, DLQ)."""
    root = os.environ.get("TOPIC_ROOT", TOPIC_ROOT)
    sent = []
    for bucket, key, size in objects(event):
        if size > MAX_POINTER_BYTES:
            raise ValueError(f"LATEST {key} is larger than {MAX_POINTER_BYTES} bytes")
        name = parse_latest_key(key)  # before reading: a manifest write is no trigger
        pointer = parse_latest(_read(bucket, key, MAX_POINTER_BYTES, "LATEST"), name=name)
        body = _read(bucket, pointer.manifest_key, MAX_MANIFEST_BYTES, "manifest")
        notice = ModelNotice.for_manifest(bucket, pointer.manifest_key, body)
        if pointer.sha256 not in ("", notice.sha256):
            raise ValueError(f"LATEST of {notice.name} says sha256 {pointer.sha256}, its manifest {notice.sha256}")
        _client("iot-data").publish(
            topic=model_notice_topic(notice.name, root), qos=1, payload=notice.to_json().encode()
        )
        _emit_metrics(notice, json.loads(body))
        sent.append(f"{notice.name}/{notice.version}")
    return {"published": sent}  # the models whose notice was sent (the local IoT router reads this)
