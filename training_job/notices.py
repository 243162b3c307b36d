"""The worker's queue messages: what a training-queue message says about uploaded windows.

The edge publishes a :class:`~model_contract.messages.WindowNotice` on MQTT
``hybridstream/<thing>/windows``; the IoT rule forwards it to SQS with ``thing`` and
``mqtt_topic`` added. :func:`parse_queue_message` accepts (JSON bodies):

1. the window notice (preferred), parsed by the contract's one parser
   (:func:`model_contract.messages.parse_window_notice`)::

       {"thing": "pi-1", "bucket": "hybridstream-windows",
        "key": "windows/pi-1/2017/06/16/T1_20170616T192000Z_3000.csv", "rows": 3000,
        "first_ts": "2017-06-16T21:20:00+02:00", "last_ts": "...", "window_id": "...", "sha256": "..."}

   ``bucket`` defaults to the worker's windows bucket (``--windows-bucket`` /
   ``HYBRIDSTREAM_WINDOWS_BUCKET``); ``rows`` and ``sha256``, when present, are checked
   against the downloaded window;
2. an S3 event notification (``{"Records": [{"eventSource": "aws:s3", "s3": {...}}]}``) or an
   EventBridge "Object Created" event (``{"detail": {"bucket": {"name"}, "object": {"key"}}}``).
   An ``s3:TestEvent`` yields no windows (the message is simply deleted).

Anything else raises :class:`NoticeError` (the message is left for the dead-letter queue).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from model_contract.layout import thing_from_window_key
from model_contract.messages import NoticeError, WindowNotice, parse_window_notice

__all__ = ["NoticeError", "WindowNotice", "parse_queue_message"]


def parse_queue_message(body: str | bytes, default_bucket: str = "") -> list[WindowNotice]:
    """The windows a queue message names (usually one)."""
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
        return [_object_created(_get(detail, "bucket", "name"), _get(detail, "object", "key"))]
    return [parse_window_notice(msg, default_bucket)]


def _get(obj: dict, *path: str) -> str:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    if not isinstance(obj, str) or not obj:
        raise NoticeError(f"event lacks {'.'.join(path)}")
    return obj


def _object_created(bucket: str, key: str) -> WindowNotice:
    return WindowNotice(bucket=bucket, key=key, thing=thing_from_window_key(key))


def _from_s3_record(record: Any) -> WindowNotice:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise NoticeError("S3 event record without eventSource aws:s3")
    s3 = record.get("s3") or {}
    return _object_created(_get(s3, "bucket", "name"), unquote_plus(_get(s3, "object", "key")))
