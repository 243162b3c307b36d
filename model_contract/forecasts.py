"""The forecasts record: what reaches S3 per reading (``forecasts/<thing>/<day>/<window-id>.jsonl.gz``).

One JSON object per line, one line per reading the edge spooled: the reading (``timestamp`` as
sent, ``epoch``, ``time_utc``, ``device``, the ``target`` column's name and its ``actual``
value), the forecast each approach made *for this reading* (``batch``, ``speed``, ``dynamic``;
null where none was made: the lag window still filling, after a gap), the models that made them
(``model_batch``, ``model_speed``) and the ``horizon`` (readings ahead).

The schema is open: readers match fields by name, a missing field reads as null and an unknown
one is ignored, so a producer may add fields (:data:`OPTIONAL_FIELDS`: a prediction interval and
an anomaly flag) without breaking a reader or the Athena table. The table, the edge's writer and
``hybridstream results`` all take the columns from here. Plain Python (stdlib only).

>>> rec = {"timestamp": "2017-01-14T00:00:00+00:00", "epoch": 1484352000.0, "device": "T1", "actual": 1.5}
>>> decode_lines(encode_lines([rec])) == [rec]
True
>>> encode_lines([rec]) == encode_lines([rec])  # the same window gives the same bytes (idempotent puts)
True
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import Any

# (name, Athena/Glue type, meaning): every record has these (values may be null)
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("timestamp", "string", "the reading's timestamp as sent"),
    ("epoch", "double", "the reading's time, seconds since 1970 UTC"),
    ("time_utc", "string", "the reading's time, UTC, yyyy-mm-dd hh:mm:ss.ffffff"),
    ("device", "string", "the sensor/device id"),
    ("target", "string", "the forecast column's name"),
    ("actual", "double", "the target's value in this reading"),
    ("batch", "double", "the batch model's forecast made for this reading"),
    ("speed", "double", "the speed model's forecast made for this reading"),
    ("dynamic", "double", "the dynamic blend's forecast made for this reading"),
    ("model_batch", "string", "the batch model version that made it"),
    ("model_speed", "string", "the speed model version that made it"),
    ("horizon", "int", "the forecasts were made this many readings before this one"),
)
# fields a producer may add (null until it does)
OPTIONAL_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("lower", "double", "the dynamic forecast's prediction interval, lower bound"),
    ("upper", "double", "the dynamic forecast's prediction interval, upper bound"),
    ("anomaly", "boolean", "the actual value fell outside the interval"),
)
ALL_FIELDS = FIELDS + OPTIONAL_FIELDS
# the table's partitions (the key's path, projected by Athena; no crawler)
PARTITIONS: tuple[tuple[str, str, str], ...] = (
    ("thing", "string", "the Pi (IoT thing) that uploaded the window"),
    ("day", "string", "yyyy/MM/dd (UTC) of the window's first reading"),
)
APPROACHES = ("batch", "speed", "dynamic")

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, sort_keys=False).encode


def encode_lines(records: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines, gzip with a zero mtime (the same records always give the same bytes)."""
    text = "".join(_dumps(r) + "\n" for r in records).encode()
    return gzip.compress(text, mtime=0)


def decode_lines(data: bytes) -> list[dict[str, Any]]:
    """The records of one forecasts object (gzip or plain JSON Lines)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.splitlines() if line.strip()]
