"""A window's forecasts, for the fleet's forecast history (Athena table, ``hybridstream results``).

The hot loop appends, to the row it already spools for each reading, the forecasts it already
holds for that reading (:class:`edge_app.state.Pending`) and the model versions: the window CSV
gets the columns :data:`FORECAST_COLUMNS` after the spec's (the trainer reads columns by name and
ignores them). Off the hot path, when the window is uploaded, :class:`ForecastExport` turns those
rows into the forecasts object (:mod:`model_contract.forecasts`), which the upload worker puts to
``forecasts/<thing>/<yyyy>/<mm>/<dd>/<window-id>.jsonl.gz`` before the window itself: same
spool, same retries, same idempotent key (the window id).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from edge_app.csv_lines import ORJSON_FLOATS_AS_REPR
from model_contract.bad_record import BadRecord
from model_contract.calendar import parse_timestamp
from model_contract.forecasts import encode_lines  # noqa: F401 (the reference encoding ForecastExport.text equals)

log = logging.getLogger("edge_app.forecasts")

# the window CSV's columns after the spec's: forecasts made for the row's reading, by which models, and the
# dynamic forecast's interval at the anomaly level with the edge's anomaly flag (issue 22; empty without intervals)
BASE_COLUMNS = ("forecast_batch", "forecast_speed", "forecast_dynamic", "model_batch", "model_speed")
INTERVAL_COLUMNS = ("interval_lower", "interval_upper", "anomaly")
FORECAST_COLUMNS = BASE_COLUMNS + INTERVAL_COLUMNS
NO_FORECAST = ("",) * len(FORECAST_COLUMNS)
NO_INTERVAL = ("", "", "")
CONTENT_TYPE = "application/gzip"
# level 1, not zlib's default 6 nor gzip.compress's 9: a 1,000-row window in 1.5 ms of the upload thread instead
# of 5.9 (6) or 10.4 (9), for objects ~16 % larger (67,249 vs 57,793 bytes; BENCHMARKS.md, issue 18): the Pi's
# cores are what is scarce, not S3 bytes; any level decodes alike (model_contract.forecasts.decode_lines)
GZIP_LEVEL = 1


def interval_cells(made: Any, band: Any) -> tuple:
    """``(lower, upper, anomaly)`` of a forecast ``made`` for a reading, after the device's
    :class:`~edge_app.intervals.DeviceBand` scored that reading: the interval issued with the forecast at
    the anomaly level, and 1 if the reading was flagged (its run outside reached ``min_run``), else 0."""
    issued = made.band
    if band is None or issued is None:
        return NO_INTERVAL
    w = issued[band.index]
    return made.hybrid - w, made.hybrid + w, 1 if band.run >= band.min_run else 0


def _float(text: str) -> float | None:
    if not text:
        return None
    x = float(text)
    return x if math.isfinite(x) else None


def _json_num(text: str) -> str:
    """The JSON of :func:`_float` ``(text)`` as :func:`model_contract.forecasts.encode_lines` writes it (ValueError
    when ``text`` is no number: the row is skipped)."""
    if not text:
        return "null"
    x = float(text)
    return _repr(x) if _isfinite(x) else "null"


def _json_column(cells: Sequence[str]) -> list[str | None]:
    """:func:`_json_num` of every cell of a column (None where a cell is no number). In bulk when orjson reads the
    column (an empty cell as null) as floats and writes each back as the very cell: the spool's own cells are
    ``repr`` text, which orjson writes alike wherever neither writes an exponent (|x| >= 1e-4, below 1e16, or 0);
    any other column goes cell by cell.

    >>> _json_column(["1.5", "", "-0.0", "17.70123456789012"]), _json_column(["1.50", "nan", "abc", "0", "null"])
    (['1.5', 'null', '-0.0', '17.70123456789012'], ['1.5', 'null', None, '0.0', None])
    """
    if _loads is not None and cells and "null" not in cells:  # a cell "null" is no number (orjson would read None)
        full = "" not in cells  # no empty cell (null): the cells come back as they are
        joined = ",".join(cells if full else [c or "null" for c in cells])
        try:
            values = _loads("[" + joined + "]")
        except ValueError:
            values = None
        if values is not None and len(values) == len(cells) and set(map(type, values)) <= _FLOAT_OR_NULL:
            back = _dumps(values)
            if b"e" not in back and b"0.0000" not in back and back[1:-1].decode() == joined:
                return list(cells) if full else joined.split(",")
    return [_json_num_or_none(c) for c in cells]


def _json_num_or_none(text: str) -> str | None:
    try:
        return _json_num(text)
    except ValueError:
        return None


try:  # orjson reads and writes a whole column of the spool's floats at C speed (where it writes floats as repr)
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - cell by cell
    _dumps = _loads = None
if not ORJSON_FLOATS_AS_REPR:  # pragma: no cover
    _loads = None
_FLOAT_OR_NULL = frozenset((float, type(None)))
_repr = float.__repr__
_isfinite = math.isfinite
_esc = encode_basestring_ascii  # json's own (C) string encoder, ensure_ascii as encode_lines' encoder
_days: dict[int, str] = {}  # utc_text's date part by day number (whole-second epochs)
_repeat = itertools.repeat
_chain = itertools.chain.from_iterable
# timestamps whose line start ForecastExport keeps (~2 MB): a few windows of each of a farm's turbines in step
STAMP_CACHE = 8192


def _id_or_null(text: str) -> str:
    return _esc(text) if text else "null"


def _flag(text: str) -> str:
    return "null" if not text else ("true" if text == "1" else "false")


def _csv_rows(text: str) -> list[list[str]]:
    """``list(csv.reader(text))`` of a spool file's text: split at "\\r\\n" and "," when nothing is quoted (no ``"``)
    and every line ends "\\r\\n" (a lone CR or LF is a line end to the csv module), else the csv module's.

    >>> _csv_rows("a,b\\r\\n1,\\r\\n\\r\\n"), _csv_rows('a,"b\\nc"\\r\\n')
    ([['a', 'b'], ['1', ''], []], [['a', 'b\\nc']])
    """
    lines = text.split("\r\n")
    ends = len(lines) - 1
    if '"' in text or text.count("\r") != ends or text.count("\n") != ends:
        return list(csv.reader(io.StringIO(text, newline="")))
    if lines[-1] == "":
        lines.pop()
    return [line.split(",") if line else [] for line in lines]


def utc_text(epoch: float) -> str:
    """``yyyy-mm-dd hh:mm:ss.ffffff`` (UTC): sorts as text, parses as a timestamp in Athena and DuckDB.

    >>> utc_text(1484352000.25)
    '2017-01-14 00:00:00.250000'
    """
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _utc_text(epoch: float) -> str:
    """:func:`utc_text`, the date part cached by day for whole-second epochs (readings' usual timestamps)."""
    if epoch >= 0.0 and epoch.is_integer() and epoch < 253402300800.0:  # before year 10000
        secs = int(epoch)
        day, rest = divmod(secs, 86400)
        date = _days.get(day)
        if date is None:
            if len(_days) > 4096:
                _days.clear()
            date = _days[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
        hour, rest = divmod(rest, 3600)
        return f"{date} {hour:02d}:{rest // 60:02d}:{rest % 60:02d}.000000"
    return utc_text(epoch)


class ForecastExport:
    """Window CSV (with :data:`FORECAST_COLUMNS`) -> forecasts records / the object's bytes."""

    def __init__(self, target: str, horizon: int = 1) -> None:
        self.target = target
        self.horizon = int(horizon)
        self.errors = 0  # windows whose forecasts could not be read (the window itself still uploads)
        self._stamp_cache: dict[str, str] = {}  # timestamp cell -> its line start (_stamp), of the last windows

    def _columns(self, header: list[str] | None) -> tuple | None:
        """A window header's width and the positions of the target, :data:`BASE_COLUMNS` and
        :data:`INTERVAL_COLUMNS` (None each for older windows without them); None without forecast columns."""
        if header is None or not set(BASE_COLUMNS) <= set(header) or self.target not in header:
            return None
        base = tuple(header.index(c) for c in BASE_COLUMNS)
        bands = tuple(header.index(c) if c in header else None for c in INTERVAL_COLUMNS)
        return (len(header), header.index(self.target), *base, *bands)

    def records(self, path: Path) -> list[dict[str, Any]] | None:
        """One record per spooled reading; None if the window has no forecast columns (e.g. spooled by
        ``edge forward``, or before the upgrade). A row that cannot be read is skipped."""
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            cols = self._columns(next(reader, None))
            if cols is None:
                return None
            width, ti, fb, fs, fd, mb, ms, lo, up, an = cols
            out = []
            for row in reader:
                if len(row) != width:
                    continue
                try:
                    epoch = parse_timestamp(row[0])
                    out.append(
                        {
                            "timestamp": row[0],
                            "epoch": epoch,
                            "time_utc": utc_text(epoch),
                            "device": row[1],
                            "target": self.target,
                            "actual": _float(row[ti]),
                            "batch": _float(row[fb]),
                            "speed": _float(row[fs]),
                            "dynamic": _float(row[fd]),
                            "model_batch": row[mb] or None,
                            "model_speed": row[ms] or None,
                            "horizon": self.horizon,
                            "lower": None if lo is None else _float(row[lo]),
                            "upper": None if up is None else _float(row[up]),
                            "anomaly": None if an is None or not row[an] else row[an] == "1",
                        }
                    )
                except (BadRecord, ValueError, OverflowError, OSError):
                    continue
        return out

    def text(self, path: Path) -> str | None:
        """The JSON Lines of :meth:`records`, character for character ``encode_lines``' (the same fields, order,
        floats and escapes), written from the row's cells without the dicts, a column at a time: the upload thread's
        Python holds the GIL the hot loop needs, so a window's lines are joined in C from the columns
        (tests/edge_app/test_forecast_text.py compares them on tricky windows). The numeric cells go through
        :func:`_json_column`, each distinct timestamp's part of the line once (:meth:`_stamps`: a farm's turbines
        report in step, so their windows share their timestamps), each distinct device and model id once."""
        with open(path, newline="", encoding="utf-8") as fh:
            rows = _csv_rows(fh.read())
        cols = self._columns(rows[0] if rows else None)
        if cols is None:
            return None
        width, ti, fb, fs, fd, mb, ms, lo, up, an = cols
        rows = [row for row in rows[1:] if len(row) == width]
        if not rows:
            return ""
        cells = list(zip(*rows, strict=True))  # the window's columns
        n = len(rows)
        nulls = ["null"] * n
        stamps = self._stamps(cells[0])  # '{"timestamp":..,"epoch":..,"time_utc":"..","device":' or "" (no time)
        numbers = [_json_column(cells[i]) if i is not None else nulls for i in (ti, fb, fs, fd, lo, up)]
        keep = None  # a row with a cell that is no number, or no timestamp, is skipped (records() skips it too)
        if "" in stamps or any(None in column for column in numbers):
            keep = [k for k in range(n) if stamps[k] and all(column[k] is not None for column in numbers)]
            stamps = [stamps[k] for k in keep]
            numbers = [[column[k] for k in keep] for column in numbers]
        actual, batch, speed, dynamic, lower, upper = numbers

        def column(i: int | None, text: Any) -> Any:
            """Column ``i``'s cells (the kept rows) through ``text``, once per distinct cell."""
            if i is None:
                return _repeat(text(""))
            values = cells[i] if keep is None else [cells[i][k] for k in keep]
            return map({v: text(v) for v in set(values)}.__getitem__, values)

        parts = (
            stamps, column(1, _esc), _repeat(f',"target":{_esc(self.target)},"actual":'), actual,
            _repeat(',"batch":'), batch, _repeat(',"speed":'), speed, _repeat(',"dynamic":'), dynamic,
            _repeat(',"model_batch":'), column(mb, _id_or_null), _repeat(',"model_speed":'), column(ms, _id_or_null),
            _repeat(f',"horizon":{self.horizon},"lower":'), lower, _repeat(',"upper":'), upper,
            _repeat(',"anomaly":'), column(an, _flag), _repeat("}\n"),
        )  # fmt: skip
        return "".join(_chain(zip(*parts, strict=False)))  # the repeats are endless

    def _stamps(self, timestamps: tuple[str, ...]) -> list[str]:
        """Each row's line start up to the device (:meth:`_stamp`), from a cache of the last few windows' timestamps."""
        cache = self._stamp_cache
        if len(cache) > STAMP_CACHE:
            cache.clear()
        out = list(map(cache.get, timestamps))
        if None in out:
            stamp = self._stamp
            for k, got in enumerate(out):
                if got is None:
                    out[k] = stamp(timestamps[k])
        return out

    def _stamp(self, ts: str) -> str:
        """``{"timestamp":<ts>,"epoch":..,"time_utc":"..","device":`` of a timestamp cell ("" if it is no time: the
        row is skipped), cached."""
        try:
            epoch = parse_timestamp(ts)
            utc = _utc_text(epoch) if type(epoch) is float else utc_text(epoch)
            number = _repr(epoch) if type(epoch) is float else epoch
            text = f'{{"timestamp":{_esc(ts)},"epoch":{number},"time_utc":"{utc}","device":'
        except (BadRecord, ValueError, OverflowError, OSError):
            text = ""
        self._stamp_cache[ts] = text
        return text

    def encode(self, path: Path) -> bytes | None:
        """The forecasts object of a window (``encode_lines(records(path))``'s lines, byte for byte, gzip at
        :data:`GZIP_LEVEL`), or None (no forecast columns, or unreadable: logged, counted). A missing file raises
        FileNotFoundError (the upload worker's "vanished" case)."""
        try:
            text = self.text(path)
        except FileNotFoundError:
            raise
        except (OSError, UnicodeError, csv.Error) as exc:
            self.errors += 1
            log.warning("forecasts of window %s not readable (%s): the window uploads without them", path.name, exc)
            return None
        return None if text is None else gzip.compress(text.encode(), GZIP_LEVEL, mtime=0)
