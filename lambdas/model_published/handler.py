"""Announce a newly published model: S3 ``models/<name>/<version>/manifest.json`` created ->
MQTT ``hybridstream/models/<name>/published`` through IoT data (cloud -> edge).

Announcement contract (JSON on ``hybridstream/models/<name>/published``, QoS 1): what a device
needs to fetch and trust the model without listing the bucket.

- ``name``, ``version``: from the key ``models/<name>/<version>/manifest.json`` (must equal the
  manifest's own); ``kind``: the manifest's (``speed`` when absent).
- ``sha256``: of ``model.tflite`` (from the manifest); ``s3_uri``: ``s3://<bucket>/models/<name>/<version>/model.tflite``.
- ``manifest_uri``: ``s3://<bucket>/models/<name>/<version>/manifest.json``; ``manifest_sha256``:
  of the manifest bytes as stored.
- ``metrics``: the manifest's holdout metrics (``{}`` when absent); ``published_at``: epoch seconds.

It also emits the model's training duration and holdout RMSE as CloudWatch metrics (EMF).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.parse
from typing import Any

import boto3

KEY_RE = re.compile(r"^models/(?P<name>[A-Za-z0-9._-]+)/(?P<version>[A-Za-z0-9._-]+)/manifest\.json$")
MAX_MANIFEST_BYTES = 1024 * 1024
NAMESPACE = "HybridStream/Training"

_clients: dict[str, Any] = {}


def _client(name: str) -> Any:
    if name not in _clients:
        kwargs = {}
        if name == "iot-data" and os.environ.get("IOT_DATA_ENDPOINT"):
            kwargs["endpoint_url"] = "https://" + os.environ["IOT_DATA_ENDPOINT"].removeprefix("https://")
        _clients[name] = boto3.client(name, **kwargs)
    return _clients[name]


def announcement(bucket: str, key: str, manifest_bytes: bytes) -> dict[str, Any]:
    """The announcement for one manifest; raises ValueError when key and manifest disagree."""
    match = KEY_RE.match(key)
    if not match:
        raise ValueError(f"not a model manifest key: {key}")
    manifest = json.loads(manifest_bytes)
    if not isinstance(manifest, dict):
        raise ValueError("manifest is not a JSON object")
    for field in ("name", "version", "sha256"):
        if not isinstance(manifest.get(field), str) or not manifest[field]:
            raise ValueError(f"manifest lacks {field}")
    if (manifest["name"], manifest["version"]) != (match["name"], match["version"]):
        raise ValueError(f"manifest {manifest['name']}/{manifest['version']} does not match key {key}")
    if not re.fullmatch(r"[0-9a-f]{64}", manifest["sha256"]):
        raise ValueError("manifest sha256 is not a hex SHA-256")
    prefix = key.rsplit("/", 1)[0]
    return {
        "name": manifest["name"],
        "version": manifest["version"],
        "kind": manifest.get("kind", "speed"),
        "sha256": manifest["sha256"],
        "s3_uri": f"s3://{bucket}/{prefix}/model.tflite",
        "manifest_uri": f"s3://{bucket}/{key}",
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "metrics": manifest.get("metrics", {}),
        "published_at": int(time.time()),
    }


def topic_for(name: str) -> str:
    return f"{os.environ.get('TOPIC_ROOT', 'hybridstream')}/models/{name}/published"


def _emit_metrics(note: dict[str, Any], manifest: dict[str, Any]) -> None:
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
                "Model": note["name"],
                "Version": note["version"],
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


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Manifest created -> one MQTT announcement per manifest. Bad manifests raise (-> retries, DLQ)."""
    published = []
    s3 = _client("s3")
    for bucket, key, size in objects(event):
        if size > MAX_MANIFEST_BYTES:
            raise ValueError(f"manifest {key} is larger than {MAX_MANIFEST_BYTES} bytes")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_MANIFEST_BYTES + 1)
        if len(body) > MAX_MANIFEST_BYTES:
            raise ValueError(f"manifest {key} is larger than {MAX_MANIFEST_BYTES} bytes")
        note = announcement(bucket, key, body)
        _client("iot-data").publish(topic=topic_for(note["name"]), qos=1, payload=json.dumps(note).encode())
        _emit_metrics(note, json.loads(body))
        published.append(f"{note['name']}/{note['version']}")
    return {"published": published}
