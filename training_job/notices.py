"""The worker's message contract: "a window was uploaded" notices on the training queue.

The edge publishes a small notice on MQTT ``hybridstream/<thing>/windows``; the IoT rule
forwards it to SQS with ``thing`` added. Accepted bodies (JSON):

1. The window notice (preferred)::

       {"thing": "pi-1", "bucket": "hybridstream-windows",
        "key": "windows/pi-1/2017/06/16/T1_20170616T192000Z_3000.csv", "rows": 3000,
        "first_ts": "2017-06-16T21:20:00+02:00", "last_ts": "...", "window_id": "...", "sha256": "..."}

   ``key`` (or ``uri``/``s3_uri`` = ``s3://bucket/key``) is required. ``bucket`` defaults to
   the worker's windows bucket (``--windows-bucket`` / ``HYBRIDSTREAM_WINDOWS_BUCKET``);
   ``thing`` defaults to the second segment of ``windows/<thing>/...``. ``rows`` and
   ``sha256``, when present, are checked against the downloaded window.
2. An S3 event notification (``{"Records": [{"eventSource": "aws:s3", "s3": {...}}]}``) or an
   EventBridge "Object Created" event (``{"detail": {"bucket": {"name"}, "object": {"key"}}}``).
   An ``s3:TestEvent`` yields no windows (the message is simply deleted).

Anything else raises :class:`NoticeError` (the message is left for the dead-letter queue).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from training_job.storage import parse_s3_uri, thing_from_key


class NoticeError(ValueError):
    """A queue message that is not a usable window notice."""


@dataclass(frozen=True)
class WindowRef:
    """Where one uploaded window is, plus what the notice claims about it."""

    bucket: str
    key: str
    thing: str = ""
    rows: int | None = None
    first_ts: str = ""
    last_ts: str = ""
    sha256: str = ""
    window_id: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_notice(body: str | bytes, default_bucket: str = "") -> list[WindowRef]:
    """The windows a message announces (usually one)."""
    try:
        msg = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NoticeError(f"message body is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise NoticeError(f"message body must be a JSON object, got {type(msg).__name__}")
    if msg.get("Event") == "s3:TestEvent":
        return []
    if isinstance(msg.get("Records"), list):
        return [_from_s3_record(r) for r in msg["Records"]]
    if isinstance(msg.get("detail"), dict) and "object" in msg["detail"]:
        detail = msg["detail"]
        return [_ref(_get(detail, "bucket", "name"), _get(detail, "object", "key"))]
    return [_from_window_notice(msg, default_bucket)]


def _get(obj: dict, *path: str) -> str:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    if not isinstance(obj, str) or not obj:
        raise NoticeError(f"event lacks {'.'.join(path)}")
    return obj


def _from_s3_record(record: Any) -> WindowRef:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise NoticeError("S3 event record without eventSource aws:s3")
    s3 = record.get("s3") or {}
    return _ref(_get(s3, "bucket", "name"), unquote_plus(_get(s3, "object", "key")))


def _ref(bucket: str, key: str, **extra: Any) -> WindowRef:
    return WindowRef(bucket=bucket, key=key, thing=extra.pop("thing", "") or thing_from_key(key), **extra)


def _from_window_notice(msg: dict, default_bucket: str) -> WindowRef:
    uri = msg.get("uri") or msg.get("s3_uri")
    if isinstance(uri, str) and uri:
        try:
            bucket, key = parse_s3_uri(uri)
        except ValueError as exc:
            raise NoticeError(str(exc)) from None
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
    fields = {k: str(msg.get(k) or "") for k in ("thing", "first_ts", "last_ts", "sha256", "window_id")}
    return _ref(bucket, key, rows=rows, **fields)
