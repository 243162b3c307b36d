"""The two messages between the edge and the cloud, each with one name, one schema, one parser.

- :class:`WindowNotice` (edge -> cloud, on ``hybridstream/<thing>/windows``): a window was
  uploaded to the windows bucket. Built by :meth:`WindowNotice.for_window` from the window's
  bytes, parsed by :func:`parse_window_notice` (the trainer, off the SQS queue the IoT rule
  feeds). Schema: :data:`WINDOW_NOTICE_SCHEMA`.
- :class:`ModelNotice` (cloud -> edge, on ``hybridstream/models/<name>/published``): the
  current model of a name. Built by :meth:`ModelNotice.for_manifest` (the ``model_published``
  Lambda), parsed by :func:`parse_model_notice` (the edge app's swapper). Schema:
  :data:`MODEL_NOTICE_SCHEMA`.

:data:`DEVICE_SCHEMAS` holds the schema of every kind a device publishes (the window notice
and the telemetry kinds the ingest Lambda validates): field -> JSON type, ``number`` accepting
integers. Plain Python (stdlib only).

>>> n = WindowNotice.for_window("pi-1", "b", "windows/pi-1/2017/01/14/T1_20170114T000000Z_2.csv",
...                             b"Date_time,device,x\\n2017-01-14T00:00:00Z,T1,1\\n2017-01-14T00:10:00Z,T1,2\\n")
>>> n.rows, n.first_ts, n.last_ts, n.window_id
(2, '2017-01-14T00:00:00Z', '2017-01-14T00:10:00Z', 'T1_20170114T000000Z_2')
>>> parse_window_notice(n.to_json()) == n
True
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from model_contract.layout import parse_manifest_key, thing_from_window_key, window_id_from_key
from model_contract.topics import METRICS, READINGS, RESULTS, WINDOWS

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# field -> JSON type ("number" accepts int and float); what the ingest Lambda checks
WINDOW_NOTICE_SCHEMA: dict[str, dict[str, str]] = {
    "required": {"key": "string"},
    "optional": {
        "window_id": "string",
        "rows": "integer",
        "bucket": "string",
        "first_ts": "string",
        "last_ts": "string",
        "sha256": "string",
    },
}
MODEL_NOTICE_SCHEMA: dict[str, dict[str, str]] = {
    "required": {"name": "string", "sha256": "string", "s3_uri": "string"},
    "optional": {
        "version": "string",
        "kind": "string",
        "manifest_uri": "string",
        "manifest_sha256": "string",
        "metrics": "object",
        "published_at": "number",
    },
}
DEVICE_SCHEMAS: dict[str, dict[str, dict[str, str]]] = {
    WINDOWS: WINDOW_NOTICE_SCHEMA,
    METRICS: {
        "required": {"timestamp": "string", "hybrid_rmse": "number", "batch_rmse": "number", "speed_rmse": "number"},
        "optional": {
            "hybrid_mae": "number",
            "batch_mae": "number",
            "speed_mae": "number",
            "latency_ms": "number",
            "records_per_s": "number",
            "coverage_80": "number",  # the forecast intervals' running coverage and mean width (edge_app.intervals)
            "coverage_95": "number",
            "width_80": "number",
            "width_95": "number",
            "anomalies": "number",
            "models": "object",
            "weights": "object",
        },
    },
    RESULTS: {
        "required": {"timestamp": "string", "predictions": "array"},
        "optional": {"models": "object", "device": "string"},
    },
    READINGS: {
        "required": {"timestamp": "string", "readings": "array"},
        "optional": {"device": "string", "errors": "object"},
    },
}


class NoticeError(ValueError):
    """A message that is not a usable window or model notice; the text says why."""


def _object(body: bytes | str | Mapping[str, Any], what: str) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return dict(body)
    try:
        msg = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NoticeError(f"{what} is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise NoticeError(f"{what} must be a JSON object, got {type(msg).__name__}")
    return msg


def _s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise NoticeError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


# -- edge -> cloud ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowNotice:
    """A window was uploaded: where it is and what it holds (``rows`` / ``sha256`` are checked
    against the downloaded window by the trainer)."""

    bucket: str
    key: str
    thing: str = ""
    rows: int | None = None
    first_ts: str = ""
    last_ts: str = ""
    window_id: str = ""
    sha256: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def for_window(cls, thing: str, bucket: str, key: str, data: bytes) -> WindowNotice:
        """The notice for one uploaded CSV window: rows, first/last timestamps (first column) and
        sha256 from the bytes themselves."""
        rows = [r for r in csv.reader(io.StringIO(data.decode("utf-8", "replace"))) if r][1:]
        return cls(
            thing=thing,
            bucket=bucket,
            key=key,
            rows=len(rows),
            first_ts=rows[0][0] if rows else "",
            last_ts=rows[-1][0] if rows else "",
            window_id=window_id_from_key(key),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (this key order)."""
        return {
            "thing": self.thing,
            "bucket": self.bucket,
            "key": self.key,
            "rows": self.rows,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "window_id": self.window_id,
            "sha256": self.sha256,
        }

    def to_json(self) -> str:
        """Compact JSON, as published on MQTT."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


def parse_window_notice(body: bytes | str | Mapping[str, Any], default_bucket: str = "") -> WindowNotice:
    """The window a notice names; :class:`NoticeError` when it names none.

    ``key`` (with ``bucket``, defaulting to ``default_bucket``) or ``uri`` / ``s3_uri``
    (``s3://bucket/key``) is required; ``thing`` defaults to the key's ``windows/<thing>/``;
    ``rows``, when present, must be a non-negative integer. Extra fields (e.g. ``mqtt_topic``,
    which the IoT rule adds) are ignored.
    """
    msg = _object(body, "window notice")
    uri = msg.get("uri") or msg.get("s3_uri")
    if isinstance(uri, str) and uri:
        bucket, key = _s3_uri(uri)
    else:
        key = msg.get("key")
        if not isinstance(key, str) or not key:
            raise NoticeError("window notice needs 'key' (with 'bucket') or 'uri' = s3://bucket/key")
        bucket = msg.get("bucket") or default_bucket
        if not isinstance(bucket, str) or not bucket:
            raise NoticeError("window notice has no 'bucket' and the worker has no --windows-bucket")
    rows = msg.get("rows")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
        raise NoticeError(f"'rows' must be a non-negative integer, got {rows!r}")
    text = {k: str(msg.get(k) or "") for k in ("first_ts", "last_ts", "sha256", "window_id")}
    thing = str(msg.get("thing") or "") or thing_from_window_key(key)
    return WindowNotice(bucket=bucket, key=key, thing=thing, rows=rows, **text)


# -- cloud -> edge ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelNotice:
    """A model became the current one of its name: what a device needs to fetch and trust it
    without listing the bucket.

    ``s3_uri``: the ``model.tflite`` location (``s3://``; a local notice may give a path or
    ``file://`` URL); ``sha256``: of those bytes; ``manifest_uri`` / ``manifest_sha256``: the
    manifest beside it and the hash of its stored bytes; ``metrics``: the manifest's holdout
    metrics; ``published_at``: epoch seconds (0 when unknown).
    """

    name: str
    sha256: str
    s3_uri: str
    version: str = ""
    kind: str = "speed"
    manifest_uri: str = ""
    manifest_sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    published_at: float = 0

    @classmethod
    def for_manifest(
        cls, bucket: str, key: str, manifest_bytes: bytes, published_at: float | None = None
    ) -> ModelNotice:
        """The notice for the manifest stored at ``key``; NoticeError when key and manifest disagree."""
        try:
            name, version = parse_manifest_key(key)
        except ValueError as exc:
            raise NoticeError(str(exc)) from None
        manifest = _object(manifest_bytes, "manifest")
        for name_field in ("name", "version", "sha256"):
            if not isinstance(manifest.get(name_field), str) or not manifest[name_field]:
                raise NoticeError(f"manifest lacks {name_field}")
        if (manifest["name"], manifest["version"]) != (name, version):
            raise NoticeError(f"manifest {manifest['name']}/{manifest['version']} does not match key {key}")
        if not SHA256_RE.fullmatch(manifest["sha256"]):
            raise NoticeError("manifest sha256 is not a hex SHA-256")
        folder = key.rsplit("/", 1)[0]
        return cls(
            name=name,
            version=version,
            kind=manifest.get("kind", "speed"),
            sha256=manifest["sha256"],
            s3_uri=f"s3://{bucket}/{folder}/model.tflite",
            manifest_uri=f"s3://{bucket}/{key}",
            manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
            metrics=manifest.get("metrics", {}),
            published_at=int(time.time()) if published_at is None else published_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (this key order)."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "sha256": self.sha256,
            "s3_uri": self.s3_uri,
            "manifest_uri": self.manifest_uri,
            "manifest_sha256": self.manifest_sha256,
            "metrics": self.metrics,
            "published_at": self.published_at,
        }

    def to_json(self) -> str:
        """JSON, as published on MQTT (and put on the Pi's ``models.notices`` Kafka topic)."""
        return json.dumps(self.to_dict())


def parse_model_notice(body: bytes | str | Mapping[str, Any], kind: str | None = None) -> ModelNotice:
    """The model a notice names; :class:`NoticeError` when it is unusable.

    ``name``, the model's location and its ``sha256`` (64 hex digits) are required. The
    location is ``s3_uri``; a notice written by hand onto the Pi's notices topic may name it
    ``model``, ``location`` or ``uri`` instead (and ``manifest`` for ``manifest_uri``). With
    ``kind`` (the edge: ``speed``), a notice for another kind of model is refused. A
    ``published_at`` that is not a finite number reads as 0.

    >>> parse_model_notice({"name": "batch", "model": "/m.tflite", "sha256": "a" * 64, "kind": "batch"}, kind="speed")
    Traceback (most recent call last):
    ...
    model_contract.messages.NoticeError: notice is for a batch model, not a speed model
    """
    msg = _object(body, "model notice")
    location = msg.get("s3_uri") or msg.get("model") or msg.get("location") or msg.get("uri")
    if not isinstance(location, str) or not location:
        raise NoticeError("notice has no model location (s3_uri/model/location/uri)")
    sha = msg.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise NoticeError("notice needs the model's sha256 (64 hex digits)")
    name = msg.get("name")
    if not isinstance(name, str) or not name:
        raise NoticeError("notice has no model name")
    own_kind = msg.get("kind") or "speed"
    if kind is not None and own_kind != kind:
        raise NoticeError(f"notice is for a {own_kind} model, not a {kind} model")
    manifest = msg.get("manifest_uri") or msg.get("manifest") or ""
    manifest_sha = msg.get("manifest_sha256") or ""
    if not isinstance(manifest, str) or not isinstance(manifest_sha, str) or len(manifest_sha) not in (0, 64):
        raise NoticeError("manifest_uri must be a string and manifest_sha256 64 hex digits")
    metrics = msg.get("metrics")
    published = msg.get("published_at", 0)
    if isinstance(published, bool) or not isinstance(published, int | float) or not math.isfinite(published):
        published = 0
    return ModelNotice(
        name=name,
        version=str(msg.get("version", "") or ""),
        kind=str(own_kind),
        sha256=sha.lower(),
        s3_uri=location,
        manifest_uri=manifest,
        manifest_sha256=manifest_sha.lower(),
        metrics=dict(metrics) if isinstance(metrics, Mapping) else {},
        published_at=published,
    )
