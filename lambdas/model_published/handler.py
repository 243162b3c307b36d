"""Announce the CURRENT model of a name: S3 ``models/<name>/LATEST`` written -> MQTT
``hybridstream/models/<name>/published`` through IoT data (cloud -> edge).

Why LATEST and not ``manifest.json``: the trainer (``training_job.publish``) writes
``<version>/model.tflite``, then ``<version>/manifest.json``, then moves the ``LATEST`` pointer,
and ``LATEST`` only moves forward (to the model of the newest window). A model of an older
window published after a newer one gets its manifest but not ``LATEST``: it must not be
announced. And when ``manifest.json`` lands, ``LATEST`` may not be written yet. So the trigger
is the pointer's write, and the handler announces the version ``LATEST`` names **when it
runs** (it reads the pointer again rather than trusting the event's object version): if the
pointer moved on meanwhile, the newer version is announced (possibly twice, once per write),
never an older one.

Checks: the pointer names this ``<name>``; its ``manifest_key`` / ``model_key`` (when present)
are the version's canonical keys; the manifest's ``name``/``version`` equal the pointer's and
its ``sha256`` equals the pointer's (when present). A failed check raises (-> retries, DLQ).

Announcement contract (JSON on ``hybridstream/models/<name>/published``, QoS 1): what a device
needs to fetch and trust the model without listing the bucket.

- ``name``, ``version``: from ``LATEST`` (equal to the manifest's own); ``kind``: the manifest's
  (``speed`` when absent).
- ``sha256``: of ``model.tflite`` (from the manifest); ``s3_uri``: ``s3://<bucket>/models/<name>/<version>/model.tflite``.
- ``manifest_uri``: ``s3://<bucket>/models/<name>/<version>/manifest.json``; ``manifest_sha256``:
  of the manifest bytes as stored.
- ``metrics``: the manifest's holdout metrics (``{}`` when absent); ``published_at``: epoch seconds.

It also emits the announced model's training duration and holdout RMSE as CloudWatch metrics
(EMF): models that became current, not every model trained.
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
LATEST_RE = re.compile(r"^models/(?P<name>[A-Za-z0-9._-]+)/LATEST$")
VERSION_RE = re.compile(r"^[A-Za-z0-9._-]+$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_POINTER_BYTES = 64 * 1024
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
    if not SHA256_RE.fullmatch(manifest["sha256"]):
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


def _read(bucket: str, key: str, limit: int, what: str) -> bytes:
    body = _client("s3").get_object(Bucket=bucket, Key=key)["Body"].read(limit + 1)
    if len(body) > limit:
        raise ValueError(f"{what} {key} is larger than {limit} bytes")
    return body


def current_manifest_key(latest_key: str, pointer_bytes: bytes) -> tuple[str, dict[str, Any]]:
    """(manifest key, pointer) of the version a ``LATEST`` pointer names; ValueError when it is
    not a pointer of this name or names keys outside the version's folder."""
    match = LATEST_RE.match(latest_key)
    if not match:
        raise ValueError(f"not a model LATEST key: {latest_key}")
    name = match["name"]
    pointer = json.loads(pointer_bytes)
    if not isinstance(pointer, dict):
        raise ValueError("LATEST is not a JSON object")
    version = pointer.get("version")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ValueError(f"LATEST of {name} lacks a valid version")
    if pointer.get("name", name) != name:
        raise ValueError(f"LATEST of {name} names model {pointer.get('name')!r}")
    folder = f"models/{name}/{version}"
    manifest_key = f"{folder}/manifest.json"
    for field, expected in (("manifest_key", manifest_key), ("model_key", f"{folder}/model.tflite")):
        if pointer.get(field) not in (None, "", expected):
            raise ValueError(f"LATEST of {name}: {field} {pointer[field]!r} is not {expected}")
    return manifest_key, pointer


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """LATEST written -> one MQTT announcement of the version it names now. Bad pointers or
    manifests raise (-> retries, DLQ)."""
    published = []
    for bucket, key, size in objects(event):
        if size > MAX_POINTER_BYTES:
            raise ValueError(f"LATEST {key} is larger than {MAX_POINTER_BYTES} bytes")
        if not LATEST_RE.match(key):
            raise ValueError(f"not a model LATEST key: {key}")
        manifest_key, pointer = current_manifest_key(key, _read(bucket, key, MAX_POINTER_BYTES, "LATEST"))
        body = _read(bucket, manifest_key, MAX_MANIFEST_BYTES, "manifest")
        note = announcement(bucket, manifest_key, body)
        if pointer.get("sha256") not in (None, "", note["sha256"]):
            raise ValueError(f"LATEST of {note['name']} says sha256 {pointer['sha256']}, its manifest {note['sha256']}")
        _client("iot-data").publish(topic=topic_for(note["name"]), qos=1, payload=json.dumps(note).encode())
        _emit_metrics(note, json.loads(body))
        published.append(f"{note['name']}/{note['version']}")
    return {"published": published}
