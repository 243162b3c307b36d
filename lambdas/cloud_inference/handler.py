"""``cloud`` mode inference: forwarded readings in, batch/speed/hybrid forecast out.

The ``cloud_readings`` topic rule sends each ``hybridstream/<thing>/readings`` message here:
``{"timestamp", "readings": [row, ...] (oldest first, at least the feature spec's max lag),
"errors": {"batch": rmse, "speed": rmse} (optional, the device's recent errors)}``. The current
model of each name (the trainer's ``models/<name>/LATEST`` pointer, read with
:func:`model_contract.layout.parse_latest` -> its ``manifest.json``, the model checked against its
sha256; the pointer is cached for a minute) is loaded with the same
:mod:`model_contract` runtime the edge uses, and the forecast is published to
``hybridstream/<thing>/results`` (which the results rule stores in S3).

Blend: weights are inversely proportional to each model's recent error (equal when the
device sends none), the same rule as the edge's dynamic blend.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from lambdas.shared import cached_client
from model_contract.layout import (
    LatestPointer,
    latest_key,
    model_key,
    parse_latest,
    parse_manifest_key,
    speed_model_name,
)
from model_contract.topics import MAX_MESSAGE_BYTES, RESULTS, TOPIC_ROOT, device_topic

MANIFEST_TTL_SECONDS = 60.0

_clients: dict[str, Any] = {}
_client = partial(cached_client, _clients)
_models: dict[str, LoadedModel] = {}


@dataclass
class LoadedModel:
    name: str
    version: str
    spec: Any  # model_contract.features.FeatureSpec
    model: Any  # model_contract.runtime.TFLiteModel (or a test double with predict_one)
    checked_at: float


class Rejected(ValueError):
    """A readings message that cannot be served; ``reason`` is a short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def latest_pointer(bucket: str, name: str) -> LatestPointer | None:
    """The trainer's ``models/<name>/LATEST`` pointer (:func:`model_contract.layout.parse_latest`), or
    None while nothing is published. No listing: the trainer alone decides which version is
    current (a refused candidate never becomes it)."""
    try:
        body = _client("s3").get_object(Bucket=bucket, Key=latest_key(name))["Body"].read()
    except _client("s3").exceptions.NoSuchKey:
        return None
    return parse_latest(body, name=name)


def load_model(bucket: str, manifest_key: str) -> tuple[Any, Any, str]:
    """(TFLiteModel, FeatureSpec, version) for one manifest; the model file beside it must match
    its sha256."""
    from model_contract.manifest import Manifest
    from model_contract.runtime import TFLiteModel

    s3 = _client("s3")
    manifest = Manifest.from_json(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    content = s3.get_object(Bucket=bucket, Key=model_key(*parse_manifest_key(manifest_key)))["Body"].read()
    if hashlib.sha256(content).hexdigest() != manifest.sha256:
        raise ValueError(f"{manifest_key}: model.tflite does not match the manifest's sha256")
    return TFLiteModel.from_manifest(content, manifest), manifest.feature_spec, manifest.version


def model(name: str) -> LoadedModel | None:
    """The current version of a model (its ``LATEST`` pointer), cached: the pointer is re-read at
    most once a minute, the model itself only when the pointer names another version."""
    bucket = os.environ["MODELS_BUCKET"]
    cached = _models.get(name)
    if cached and time.monotonic() - cached.checked_at < MANIFEST_TTL_SECONDS:
        return cached
    pointer = latest_pointer(bucket, name)
    if pointer is None:
        return cached
    if cached and cached.version == pointer.version:
        cached.checked_at = time.monotonic()
        return cached
    loaded, spec, version = load_model(bucket, pointer.manifest_key)
    _models[name] = LoadedModel(name, version, spec, loaded, time.monotonic())
    return _models[name]


def blend_weights(errors: dict[str, Any] | None, available: list[str]) -> dict[str, float]:
    """Inverse-error weights over the available models (equal without usable errors).

    >>> blend_weights({"batch": 1.0, "speed": 3.0}, ["batch", "speed"])
    {'batch': 0.75, 'speed': 0.25}
    >>> blend_weights(None, ["batch"])
    {'batch': 1.0}
    """
    errs = {k: (errors or {}).get(k) for k in available}
    if all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in errs.values()):
        inv = {k: 1.0 / float(v) for k, v in errs.items()}
        total = sum(inv.values())
        return {k: v / total for k, v in inv.items()}
    return {k: 1.0 / len(available) for k in available}


def parse(event: Any) -> tuple[str, str, list[dict[str, Any]]]:
    """(thing, timestamp, readings) of a readings message, or :class:`Rejected`."""
    if not isinstance(event, dict):
        raise Rejected("not_json_object")
    if len(json.dumps(event, separators=(",", ":")).encode()) > MAX_MESSAGE_BYTES:
        raise Rejected("oversized")
    thing = event.get("thing")
    readings = event.get("readings")
    if not isinstance(thing, str) or not thing:
        raise Rejected("missing:thing")
    if not isinstance(event.get("timestamp"), str):
        raise Rejected("missing:timestamp")
    if not isinstance(readings, list) or not readings or not all(isinstance(r, dict) for r in readings):
        raise Rejected("type:readings")
    return thing, event["timestamp"], readings


def predict(thing: str, timestamp: str, readings: list[dict[str, Any]], errors: Any) -> dict[str, Any]:
    """Forecast the next target value with every available model and blend them."""
    import numpy as np

    from model_contract.bad_record import BadRecord
    from model_contract.features import rows_to_matrix

    # per-device speed models: "{thing}" in a name is the thing the readings came from
    names = {
        kind: speed_model_name(thing, os.environ[var])
        for kind, var in (("batch", "BATCH_MODEL"), ("speed", "SPEED_MODEL"))
    }
    loaded = {kind: m for kind, name in names.items() if (m := model(name)) is not None}
    if not loaded:
        raise Rejected("no_model")
    preds: dict[str, float] = {}
    for kind, m in loaded.items():
        max_lag = m.spec.max_lag
        if len(readings) < max_lag:
            raise Rejected("too_few_readings")
        try:
            matrix = rows_to_matrix(readings[-max_lag:], m.spec)
        except BadRecord as exc:
            raise Rejected(f"bad_reading:{exc.reason}") from None
        order = sorted(m.spec.lags, reverse=True)  # oldest lag first, as FeatureBuffer builds it
        window = np.stack([matrix[max_lag - k] for k in order])
        preds[kind] = float(m.model.predict_one(window))
    weights = blend_weights(errors if isinstance(errors, dict) else None, list(preds))
    return {
        "timestamp": timestamp,
        "device": thing,
        "predictions": [
            {
                "for": "next",
                **preds,
                "hybrid": sum(weights[k] * v for k, v in preds.items()),
                "weights": weights,
            }
        ],
        "models": {kind: f"{m.name}/{m.version}" for kind, m in loaded.items()},
        "idempotency_key": f"{thing}:{timestamp}",
    }


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """One readings message -> one result published to ``hybridstream/<thing>/results``."""
    try:
        thing, timestamp, readings = parse(event)
        result = predict(thing, timestamp, readings, event.get("errors"))
    except Rejected as exc:
        print(
            json.dumps(
                {
                    "rejected": True,
                    "reason": exc.reason,
                    "thing": event.get("thing") if isinstance(event, dict) else None,
                }
            )
        )
        return {"accepted": False, "reason": exc.reason}
    root = os.environ.get("TOPIC_ROOT", TOPIC_ROOT)
    _client("iot-data").publish(topic=device_topic(thing, RESULTS, root), qos=1, payload=json.dumps(result).encode())
    return {"accepted": True, "result": result}
