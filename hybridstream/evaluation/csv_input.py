"""Read a user's train/test CSV pair for ``hybridstream eval run``: columns, target, timestamps, checks.

Defaults: the timestamp column is detected (ISO-8601 or ``YYYY-MM-DD HH:MM:SS`` in every
row), the feature columns are every numeric column, the target is the last of them.
Anything unusable raises :class:`EvalInputError` with a message naming the file, row and
column (the CLI prints it and exits 2).

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> p = os.path.join(d, "a.csv")
>>> _ = open(p, "w").write("time,x,label,y\\n2024-01-01 00:00:00,1,a,2\\n2024-01-01 01:00:00,3,b,4\\n")
>>> t = read_table(p)
>>> t.timestamp_column, t.numeric, t.rows
('time', ['x', 'y'], 2)
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from model_contract import FeatureSpec
from model_contract.bad_record import BadRecord
from model_contract.calendar import TIME_FORMAT_HINT, parse_timestamp, to_iso
from model_contract.features import add_calendar


class EvalInputError(ValueError):
    """A CSV that cannot be evaluated (the message says why); exit code 2."""


@dataclass
class Table:
    path: str
    header: list[str]
    cells: dict[str, list[str]]
    timestamp_column: str | None
    numeric: list[str]

    @property
    def rows(self) -> int:
        return len(next(iter(self.cells.values()), []))


def _is_timestamp(value: str) -> bool:
    value = value.strip()
    if len(value) < 10 or not value[:4].isdigit() or value[4] != "-":
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _reformat(cells: dict[str, list[str]], header: list[str], time_format: str) -> str | None:
    """The first column whose every cell matches ``time_format``, rewritten in place as ISO-8601."""
    for h in header:
        try:
            iso = [to_iso(v, time_format) for v in cells[h]]
        except ValueError:
            continue
        cells[h] = iso
        return h
    return None


def read_table(path: str | Path, time_format: str | None = None) -> Table:
    """Parse a CSV with a header row; classify its columns (timestamp, numeric, other).

    ``time_format`` (strptime): the timestamp column is the first whose every cell matches it
    (its cells become ISO-8601); else it is detected (ISO-8601 or ``YYYY-MM-DD HH:MM:SS``).
    """
    path = str(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise EvalInputError(f"{path}: empty file (a header row and data rows are needed)")
            header = [h.strip() for h in header]
            if len(set(header)) != len(header):
                raise EvalInputError(f"{path}: duplicate column names in the header")
            cols: list[list[str]] = [[] for _ in header]
            for i, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise EvalInputError(f"{path}: line {i} has {len(row)} fields, the header has {len(header)}")
                for c, v in zip(cols, row, strict=True):
                    c.append(v.strip())
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise EvalInputError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise EvalInputError(f"{path}: not a readable CSV ({exc})") from None
    cells = dict(zip(header, cols, strict=True))
    if not cols or not cols[0]:
        raise EvalInputError(f"{path}: no data rows")
    if time_format:
        timestamp = _reformat(cells, header, time_format)
        if timestamp is None:
            raise EvalInputError(f"{path}: no column has every value in the --time-format {time_format!r}")
    else:
        timestamp = next((h for h in header if all(_is_timestamp(v) for v in cells[h])), None)
    # numeric: every non-empty cell is a number and most cells are non-empty (a NaN is reported later)
    numeric = [
        h
        for h in header
        if h != timestamp
        and sum(1 for v in cells[h] if v) >= 0.5 * len(cells[h])
        and all(_is_number(v) for v in cells[h] if v)
    ]
    return Table(path, header, cells, timestamp, numeric)


def choose_spec(
    train: Table,
    test: Table,
    target: str | None = None,
    columns: list[str] | None = None,
    lags: tuple[int, ...] = (1, 2),
    horizon: int = 1,
    calendar: tuple[str, ...] = (),
) -> FeatureSpec:
    """The feature spec of the run: columns (default every numeric one), target (default the last).

    ``calendar`` features (``hybridstream eval run``'s default: the product's, the time of day)
    need a timestamp column in both files.
    """
    if columns:
        unknown = [c for c in columns if c not in train.header]
        if unknown:
            raise EvalInputError(f"{train.path}: no column {', '.join(map(repr, unknown))} (have {train.header})")
        bad = [c for c in columns if c not in train.numeric]
        if bad:
            raise EvalInputError(f"{train.path}: column(s) {', '.join(map(repr, bad))} are not numeric")
    else:
        columns = list(train.numeric)
        if target and target in train.numeric and target not in columns:
            columns.append(target)
    if not columns:
        raise EvalInputError(f"{train.path}: no numeric columns (header: {train.header})")
    if target is None:
        target = columns[-1]
    elif target not in train.header:
        raise EvalInputError(f"{train.path}: unknown target {target!r} (numeric columns: {train.numeric})")
    elif target not in train.numeric:
        raise EvalInputError(f"{train.path}: target {target!r} is not numeric")
    elif target not in columns:
        columns = [*columns, target]
    missing = [c for c in columns if c not in test.header]
    if missing:
        raise EvalInputError(f"{test.path}: missing column(s) {', '.join(map(repr, missing))} of the train file")
    if calendar:
        for table in (train, test):
            if not table.timestamp_column:
                raise EvalInputError(
                    f"{table.path}: no timestamp column detected (ISO-8601 or YYYY-MM-DD HH:MM:SS in every row), "
                    f"which the calendar features need; if it has another format, {TIME_FORMAT_HINT}; "
                    "or run with --calendar none"
                )
        if test.timestamp_column != train.timestamp_column:
            raise EvalInputError(
                f"{test.path}: timestamp column {test.timestamp_column!r}, "
                f"the train file's is {train.timestamp_column!r}"
            )
    try:
        return FeatureSpec(
            columns=tuple(columns),
            target=target,
            lags=tuple(lags),
            horizon=horizon,
            timestamp_column=train.timestamp_column or "Date_time",
            calendar=tuple(calendar),
        )
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None


def epochs(table: Table) -> list[float]:
    """The detected timestamp column as epoch seconds (the contract's one parser; naive = UTC)."""
    if not table.timestamp_column:
        raise EvalInputError(
            f"{table.path}: no timestamp column detected; if it has another format, {TIME_FORMAT_HINT}"
        )
    out = []
    for i, raw in enumerate(table.cells[table.timestamp_column]):
        try:
            out.append(parse_timestamp(raw.replace("Z", "+00:00")))
        except BadRecord:
            raise EvalInputError(f"{table.path}: row {i + 1}: {raw[:40]!r} is not a timestamp") from None
    return out


def to_matrix(table: Table, spec: FeatureSpec) -> np.ndarray:
    """The spec's features as a finite float matrix: its columns, then its calendar features (from the
    timestamp column); the first empty/NaN/inf/non-numeric cell is an error."""
    out = np.empty((table.rows, len(spec.columns)))
    for j, name in enumerate(spec.columns):
        for i, raw in enumerate(table.cells[name]):
            try:
                value = float(raw)
            except ValueError:
                raise EvalInputError(
                    f"{table.path}: row {i + 1}, column {name!r}: {raw[:40]!r} is not a number"
                    + (" (empty cell)" if not raw else "")
                ) from None
            if not math.isfinite(value):
                raise EvalInputError(
                    f"{table.path}: row {i + 1}, column {name!r}: {raw!r} (NaN/inf values cannot be evaluated; "
                    "fill or drop those rows)"
                )
            out[i, j] = value
    return add_calendar(out, epochs(table), spec) if spec.calendar else out


def timestamp_order_problem(table: Table) -> str | None:
    """A warning if the detected timestamps are not increasing (the stream would be replayed out of order)."""
    if not table.timestamp_column:
        return None
    stamps = [datetime.fromisoformat(v.replace("Z", "+00:00")) for v in table.cells[table.timestamp_column]]
    aware = {s.tzinfo is not None for s in stamps}
    if len(aware) > 1:
        return f"{table.path}: mixed timestamps with and without a time zone"
    for i in range(1, len(stamps)):
        if stamps[i] <= stamps[i - 1]:
            return f"{table.path}: timestamps not increasing at row {i + 1} ({stamps[i - 1]} then {stamps[i]})"
    return None
