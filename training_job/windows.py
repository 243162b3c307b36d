"""Windows of readings: parse (CSV or JSONL), validate, and hand over a clean matrix.

A window is what the edge uploads to ``windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.csv``:
a header with the spec's timestamp column (``Date_time``), optionally the device column,
and the spec's columns; one reading per row. JSON Lines (one object per line with the
same fields) is accepted too. Any problem raises :class:`WindowError` whose ``reason`` is
one of :data:`REASONS` and whose message says what and where (row numbers are 1-based
data rows).

>>> spec = FeatureSpec(columns=("a", "b"), target="b", lags=(1,))
>>> w = parse_window(b"Date_time,a,b\\n2017-01-01T00:00:00Z,1,2\\n2017-01-01T00:10:00Z,3,4\\n", spec, min_rows=2)
>>> w.rows, w.first_ts, w.matrix.tolist()
(2, '2017-01-01T00:00:00Z', [[1.0, 2.0], [3.0, 4.0]])

With calendar features in the spec, ``matrix`` holds them too (computed from each row's
timestamp, parsed by the contract's one parser, :func:`model_contract.calendar.parse_timestamp`):

>>> cal = FeatureSpec(columns=("a", "b"), target="b", lags=(1,), calendar=("day_sin1", "day_cos1"))
>>> data = b"Date_time,a,b\\n2017-01-01 06:00:00,1,2\\n2017-01-01 12:00:00,3,4\\n"
>>> parse_window(data, cal, min_rows=2).matrix.round(6)
array([[ 1.,  2.,  1.,  0.],
       [ 3.,  4.,  0., -1.]])
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from model_contract import FeatureSpec, sha256_bytes
from model_contract.bad_record import BadRecord
from model_contract.calendar import TIME_FORMAT_HINT, to_iso
from model_contract.calendar import parse_timestamp as parse_epoch
from model_contract.features import add_calendar
from model_contract.window_spec import SpecMismatch, carried_spec

REASONS = (
    "empty",
    "bad_format",
    "missing_columns",
    "non_numeric",
    "not_finite",
    "bad_timestamp",
    "duplicate_timestamps",
    "too_few_rows",
    "missing_object",
    "notice_mismatch",
    "spec_mismatch",
)
DEFAULT_MIN_ROWS = 100
MAX_ERRORS_SHOWN = 5


class WindowError(ValueError):
    """A window that cannot be trained on; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass
class Window:
    """A validated window: ``matrix`` is (rows, spec features) float64, oldest row first.

    The spec's features are its columns, then its calendar features (from each row's timestamp).
    """

    matrix: np.ndarray = field(repr=False)
    timestamps: list[str] = field(repr=False)
    spec: FeatureSpec
    device: str = ""
    source: str = ""
    sha256: str = ""
    thing: str = ""  # the IoT thing (Pi) that uploaded it, when known
    dropped_duplicates: int = 0  # rows dropped by duplicates="keep-first" (history files only)
    epochs: list[float] = field(default_factory=list, repr=False)  # each row's timestamp, epoch seconds (UTC)
    spec_source: str = ""  # where the spec came from: "window" (the edge sent its own) or "trainer" (the flags)

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def first_ts(self) -> str:
        return self.timestamps[0]

    @property
    def last_ts(self) -> str:
        return self.timestamps[-1]

    def describe(self) -> dict[str, Any]:
        """The manifest's ``window`` field."""
        out = {
            "device": self.device,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "rows": self.rows,
            "source": self.source,
            "sha256": self.sha256,
        }
        if self.thing:
            out["thing"] = self.thing
        if self.dropped_duplicates:
            out["dropped_duplicate_rows"] = self.dropped_duplicates
        if self.spec_source:
            out["feature_spec_from"] = self.spec_source
        return out


def window_spec(metadata: Any, own: FeatureSpec) -> tuple[FeatureSpec, str]:
    """The spec to train a window on: the one the edge sent with it (:mod:`model_contract.window_spec`), else the
    trainer's ``own``; a window whose spec is unreadable or differs from the digest it came with is a
    :class:`WindowError` (``spec_mismatch``): the edge would refuse its model."""
    try:
        return carried_spec(metadata, own)
    except SpecMismatch as exc:
        raise WindowError("spec_mismatch", str(exc)) from None


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 with or without offset (no offset = UTC) as an aware datetime; raises ValueError.

    The contract's one parser (:func:`model_contract.calendar.parse_timestamp`) decides.
    """
    return datetime.fromtimestamp(parse_epoch(text.strip()), UTC)


def _epoch(raw: Any) -> float:
    """A window cell's timestamp as epoch seconds (text stripped; JSON numbers are epoch seconds)."""
    return parse_epoch(raw.strip() if isinstance(raw, str) else raw)


def _records(data: bytes, fmt: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(field names, records) from CSV or JSONL bytes."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WindowError("bad_format", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise WindowError("empty", "the window has no content")
    if fmt == "auto":
        fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        names = [n.strip() for n in (reader.fieldnames or [])]
        reader.fieldnames = names
        return names, list(reader)
    if fmt != "jsonl":
        raise WindowError("bad_format", f"unknown window format {fmt!r} (csv or jsonl)")
    records, names = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WindowError("bad_format", f"line {lineno} is not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise WindowError("bad_format", f"line {lineno} is not a JSON object")
        names.update(dict.fromkeys(obj))
        records.append(obj)
    return list(names), records


def _value_problem(raw: Any) -> str | None:
    """None if ``raw`` is a finite number; else ``non_numeric`` or ``not_finite``."""
    if raw is None or isinstance(raw, bool):
        return "non_numeric"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return "non_numeric"
    return None if math.isfinite(value) else "not_finite"


def parse_window(
    data: bytes,
    spec: FeatureSpec,
    *,
    fmt: str = "auto",
    min_rows: int = DEFAULT_MIN_ROWS,
    device: str = "",
    source: str = "",
    thing: str = "",
    duplicates: str = "reject",
    time_format: str | None = None,
) -> Window:
    """Parse and validate one window; raises :class:`WindowError` with a clear message.

    ``device`` defaults to the window's device column (if it holds one value), else ``thing``.
    ``duplicates``: ``reject`` (windows: a duplicated timestamp is an error) or ``keep-first``
    (history files, e.g. readings relabelled at a DST change: later rows with an instant
    already seen are dropped, counted in ``dropped_duplicates`` and logged by the caller).
    ``time_format`` (strptime, e.g. ``%m/%d/%Y %H:%M``): the timestamps' format when not ISO-8601
    (history files from elsewhere); they are kept as ISO-8601.
    """
    if duplicates not in ("reject", "keep-first"):
        raise ValueError(f"duplicates must be 'reject' or 'keep-first', not {duplicates!r}")
    names, records = _records(data, fmt)
    ts_col = spec.timestamp_column
    missing = [c for c in (ts_col, *spec.columns) if c not in names]
    if missing:
        raise WindowError(
            "missing_columns", f"missing column(s) {', '.join(missing)}; the window has {', '.join(names) or 'none'}"
        )
    if not records:
        raise WindowError("too_few_rows", f"no rows (at least {min_rows} needed)")
    problems: dict[str, list[str]] = {}
    matrix = np.empty((len(records), len(spec.columns)), dtype=np.float64)
    for i, rec in enumerate(records):
        for j, col in enumerate(spec.columns):
            raw = rec.get(col)
            kind = _value_problem(raw)
            if kind is None:
                matrix[i, j] = float(raw)
            else:
                problems.setdefault(kind, []).append(f"row {i + 1} {col}={raw!r}")
    for kind, what in (("non_numeric", "not a number"), ("not_finite", "NaN or infinite")):
        if kind in problems:
            shown = problems[kind]
            more = f" (+{len(shown) - MAX_ERRORS_SHOWN} more)" if len(shown) > MAX_ERRORS_SHOWN else ""
            raise WindowError(kind, f"{len(shown)} value(s) {what}: {'; '.join(shown[:MAX_ERRORS_SHOWN])}{more}")
    stamps, parsed = [], []
    for i, rec in enumerate(records):
        raw = rec.get(ts_col)
        try:
            if time_format:
                raw = to_iso(str(raw), time_format)
            parsed.append(_epoch(raw))
        except (BadRecord, ValueError):
            expected = (
                f"in --time-format {time_format!r}" if time_format else f"an ISO-8601 timestamp; {TIME_FORMAT_HINT}"
            )
            raise WindowError("bad_timestamp", f"row {i + 1} {ts_col}={rec.get(ts_col)!r} is not {expected}") from None
        stamps.append(str(raw).strip())
    seen: dict[float, int] = {}
    dups = []
    for i, t in enumerate(parsed):
        if t in seen:
            dups.append(f"rows {seen[t] + 1} and {i + 1} ({stamps[i]})")
        else:
            seen[t] = i
    dropped = 0
    if dups and duplicates == "keep-first":
        keep = sorted(seen.values())
        dropped = len(parsed) - len(keep)
        matrix, records = matrix[keep], [records[i] for i in keep]
        stamps, parsed = [stamps[i] for i in keep], [parsed[i] for i in keep]
    elif dups:
        more = f" (+{len(dups) - MAX_ERRORS_SHOWN} more)" if len(dups) > MAX_ERRORS_SHOWN else ""
        raise WindowError(
            "duplicate_timestamps", f"{len(dups)} duplicated timestamp(s): {'; '.join(dups[:MAX_ERRORS_SHOWN])}{more}"
        )
    if len(records) < min_rows:
        raise WindowError("too_few_rows", f"{len(records)} rows, at least {min_rows} needed")
    order = sorted(range(len(parsed)), key=parsed.__getitem__)
    if order != list(range(len(parsed))):
        matrix = matrix[order]
        stamps = [stamps[i] for i in order]
        parsed = [parsed[i] for i in order]
    matrix = add_calendar(matrix, parsed, spec)
    if not device:
        devices = {str(r.get(spec.device_column, "")) for r in records} - {""}
        device = devices.pop() if len(devices) == 1 else thing
    digest = sha256_bytes(data)
    window = Window(matrix, stamps, spec, device=device, source=source, sha256=digest, thing=thing, epochs=parsed)
    window.dropped_duplicates = dropped
    return window


def window_to_csv(matrix: np.ndarray, timestamps: list[str], spec: FeatureSpec, device: str = "") -> bytes:
    """The edge's CSV layout for a window (tests, the benchmark and tooling write windows with it).

    ``matrix`` holds the spec's columns first (a full-width matrix's calendar features are not written).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([spec.timestamp_column, spec.device_column, *spec.columns])
    n = len(spec.columns)
    for ts, row in zip(timestamps, matrix, strict=True):
        writer.writerow([ts, device, *(repr(float(v)) for v in row[:n])])
    return out.getvalue().encode()
