"""Windows of recent readings for re-training, spooled to disk as they arrive.

Each device has one open window: a CSV file in ``<state>/windows/open/`` (header = the
spec's timestamp column, device column, then its columns; with ``forecasts``, then
:data:`edge_app.forecasts.FORECAST_COLUMNS`: the forecasts made for the reading) that every
valid reading is appended to. The loop calls :meth:`WindowSpool.flush` before it commits offsets, so every
committed reading is in the OS page cache (``fsync=True``: on disk). A window closes after
``max_records`` readings and/or ``max_seconds`` (wall clock since it opened), on a drift
event, or at shutdown; it is then renamed into ``ready/`` and handed to the uploader thread.
After a crash, :meth:`WindowSpool.recover` closes the windows left open.

Window id: ``<device>_<first reading, UTC yyyymmddTHHMMSSZ>_<rows>``; the upload key is
``windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.csv`` (the S3 layout), see :func:`model_contract.layout.window_key`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from edge_app.csv_lines import CsvLine, float_cells
from edge_app.forecasts import FORECAST_COLUMNS, NO_FORECAST, NO_INTERVAL, interval_cells
from edge_app.records import Reading
from model_contract import FeatureSpec
from model_contract.layout import window_key  # the S3 layout is the contract's (re-exported for the uploader)

__all__ = ["WindowSpool", "file_device", "safe_name", "utc_stamp", "window_id", "window_key"]

_SAFE = re.compile(r"[^A-Za-z0-9.-]")
log = logging.getLogger("edge_app.windows")

Closed = Callable[[Path, dict[str, Any]], None]  # (ready file, meta)


def safe_name(device: str) -> str:
    """A device id usable in file names and S3 keys (``_`` separates id fields, so it is replaced too).

    >>> safe_name("turbine 7/a_b")
    'turbine-7-a-b'
    """
    return _SAFE.sub("-", device) or "-"


def file_device(device: str) -> str:
    """:func:`safe_name` plus a short hash of the raw id, so "a b" and "a-b" never share a file.

    >>> file_device("T1"), file_device("a b") != file_device("a-b")
    ('T1.1f9360', True)
    """
    return f"{safe_name(device)[:80]}.{hashlib.sha256(device.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


def utc_stamp(epoch: float) -> str:
    """``yyyymmddTHHMMSSZ`` of an epoch; an unrepresentable one gives ``00000000T000000Z`` (never raises)."""
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")
    except (ValueError, OverflowError, OSError):
        return "00000000T000000Z"


def window_id(device: str, first_epoch: float, rows: int) -> str:
    """The window's id from its device, first reading and size.

    >>> window_id("T1", 1484352000.0, 1000)
    'T1.1f9360_20170114T000000Z_1000'
    >>> window_id("T1", 1e20, 1)
    'T1.1f9360_00000000T000000Z_1'
    """
    return f"{file_device(device)}_{utc_stamp(first_epoch)}_{rows}"


@dataclass
class _Open:
    path: Path
    fh: IO[bytes]  # unbuffered: rows wait in ``lines`` until a flush writes them (and can be taken back)
    lines: list[str]  # CSV lines (csv.writer's text, edge_app.csv_lines) not yet in the file
    device: str
    first_epoch: float
    first_ts: str
    last_ts: str
    opened: float
    rows: int = 0
    written: int = 0  # bytes of the file known to be complete (a failed write is truncated back to this)
    held: int = 0  # rows in ``lines`` not yet in the file


class WindowSpool:
    """Per-device open windows on disk; closed windows go to ``on_closed`` (the upload queue)."""

    def __init__(
        self,
        root: Path,
        spec: FeatureSpec,
        *,
        max_records: int | None,
        max_seconds: float | None,
        on_closed: Closed,
        fsync: bool = False,
        forecasts: bool = False,
    ) -> None:
        self.open_dir = root / "open"
        self.ready_dir = root / "ready"
        self.quarantine_dir = root / "quarantine"  # spool files that could not be read back (kept for a human)
        self.open_dir.mkdir(parents=True, exist_ok=True)
        self.ready_dir.mkdir(parents=True, exist_ok=True)
        self._header = [spec.timestamp_column, spec.device_column, *spec.columns]
        self._forecasts = forecasts  # rows carry the forecasts made for them (FORECAST_COLUMNS)
        if forecasts:
            self._header += FORECAST_COLUMNS
        self._line = CsvLine(len(self._header))  # a row's CSV text, as csv.writer writes it
        self._max_records = max_records
        self._max_seconds = max_seconds
        self._on_closed = on_closed
        self._fsync = fsync
        self._open: dict[str, _Open] = {}
        self.closed = 0
        self.write_errors = 0  # failed writes of the spool (disk full, I/O error): rows kept in memory, retried
        self.degraded = ""  # the last write error while the spool cannot write ("" when it can)
        self._retry_at = 0.0

    def recover(self) -> list[Path]:
        """Close the windows a crash left open; return every ready window not yet uploaded (oldest first)."""
        for part in sorted(self.open_dir.glob("*.part")):
            try:
                self._recover_one(part)
            except (OSError, ValueError, OverflowError, IndexError, UnicodeError, csv.Error) as exc:
                self.quarantine(part, f"unreadable spool file: {type(exc).__name__}: {exc}")
        return sorted(self.ready_dir.glob("*.csv"), key=lambda p: p.stat().st_mtime)

    def _recover_one(self, part: Path) -> None:
        with open(part, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        data = [r for r in rows[1:] if len(r) == len(rows[0])]  # a torn last line is dropped
        if not data:
            part.unlink()
            return
        first_epoch = float(part.stem.rsplit("_", 1)[1]) / 1000.0
        wid = window_id(data[0][1], first_epoch, len(data))
        with open(self.ready_dir / f"{wid}.csv", "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows([rows[0], *data])
        part.unlink()

    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move a spool file aside (``quarantine/``) instead of failing on it at every start."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / path.name
        try:
            os.replace(path, target)
        except OSError as exc:
            log.error("cannot quarantine %s (%s): %s", path, reason, exc)
            return None
        log.warning("quarantined %s: %s", path.name, reason)
        return target

    def add(self, reading: Reading, made: Any = None, batch_version: str = "", band: Any = None) -> None:
        """Append one valid reading to its device's open window (closing it when full).

        ``made``: the :class:`~edge_app.state.Pending` forecasts made for this reading (None: none),
        written with ``batch_version`` and, with the device's interval ``band`` (after it scored this
        reading), the interval and anomaly flag (:func:`edge_app.forecasts.interval_cells`) when the
        spool keeps forecasts."""
        w = self._open.get(reading.device)
        if w is None:
            w = self._start(reading)
        if not self._forecasts:
            w.lines.append(self._line((reading.timestamp, reading.device, *reading.values)))
        elif made is None:
            w.lines.append(self._line((reading.timestamp, reading.device, *reading.values, *NO_FORECAST)))
        else:
            cells = interval_cells(made, band)
            # the numbers in one orjson call (float_cells), the interval's three cut off its end, the line checked
            # as CsvLine checks its lines
            line = None
            if cells is NO_INTERVAL:
                nums = float_cells([*reading.values, made.batch, made.speed, made.hybrid])
                if nums is not None:
                    line = f"{reading.timestamp},{reading.device},{nums},{batch_version},{made.speed_version},,,\r\n"
            else:
                nums = float_cells([*reading.values, made.batch, made.speed, made.hybrid, *cells])
                if nums is not None:
                    nums, lower, upper, flag = nums.rsplit(",", 3)
                    line = (
                        f"{reading.timestamp},{reading.device},{nums},{batch_version},{made.speed_version},"
                        f"{lower},{upper},{flag}\r\n"
                    )
            if line is None or not self._line.plain(line):
                line = self._line(
                    (reading.timestamp, reading.device, *reading.values, made.batch, made.speed, made.hybrid,
                     batch_version, made.speed_version, *cells)
                )  # fmt: skip
            w.lines.append(line)
        w.rows += 1
        w.held += 1
        w.last_ts = reading.timestamp
        if self._max_records is not None and w.rows >= self._max_records and not self.degraded:
            self.close(reading.device, "count")

    def tick(self, now: float | None = None) -> None:
        """Close windows older than ``max_seconds`` (call about once per batch)."""
        if self._max_seconds is None or not self._open:
            return
        now = time.monotonic() if now is None else now
        for device in [d for d, w in self._open.items() if now - w.opened >= self._max_seconds]:
            self.close(device, "age")

    @property
    def held_rows(self) -> int:
        """Rows accepted but not yet written to the spool files (grows while the disk is full)."""
        return sum(w.held for w in self._open.values())

    def flush(self) -> bool:
        """Write every open window's pending rows to the OS (and the disk with ``fsync``).

        False if a write failed (disk full, I/O error): the file is cut back to its last complete
        row, the rows stay in memory for the next flush, and the caller must not commit.
        """
        if self.degraded and time.monotonic() < self._retry_at:
            return False  # still failing a moment ago: retry at most once a second
        ok = True
        for w in self._open.values():
            ok = self._write(w) and ok
        if ok and self.degraded:
            log.warning("window spool writable again: the rows held in memory are written")
            self.degraded = ""
        elif not ok:
            self._retry_at = time.monotonic() + 1.0
        return ok

    def _write(self, w: _Open) -> bool:
        if w.held == 0 and not self._fsync:
            return True
        data = "".join(w.lines).encode("utf-8", "surrogatepass")
        try:
            view = memoryview(data)
            while view:
                view = view[w.fh.write(view) :]
            if self._fsync:
                os.fsync(w.fh.fileno())
        except OSError as exc:
            self._write_failed(w, exc)
            return False
        w.written += len(data)
        w.lines.clear()
        w.held = 0
        return True

    def _write_failed(self, w: _Open, exc: OSError) -> None:
        """Cut the file back to its last complete row (a torn row must not stay in the middle)."""
        self.write_errors += 1
        try:
            os.ftruncate(w.fh.fileno(), w.written)
            w.fh.seek(w.written)
        except OSError as again:
            log.debug("truncating %s: %s", w.path, again)
        if not self.degraded:
            log.error(
                "window spool cannot write %s (%s): keeping %d rows in memory, offsets are not committed until "
                "it can (free space under the state folder)",
                w.path.name,
                exc,
                self.held_rows,
            )
        self.degraded = str(exc)

    def close(self, device: str, reason: str) -> Path | None:
        """Close a device's window now and hand it to ``on_closed``; None if it had none, or if its
        rows cannot be written yet (it stays open and is closed by a later call)."""
        w = self._open.get(device)
        if w is None or not self._write(w):
            return None
        del self._open[device]
        w.fh.close()
        wid = window_id(device, w.first_epoch, w.rows)
        ready = self.ready_dir / f"{wid}.csv"
        os.replace(w.path, ready)
        self.closed += 1
        meta = {"device": device, "rows": w.rows, "first": w.first_ts, "last": w.last_ts, "reason": reason}
        self._on_closed(ready, meta)
        return ready

    def close_all(self, reason: str) -> int:
        devices = list(self._open)
        for device in devices:
            self.close(device, reason)
        return len(devices)

    def _start(self, reading: Reading) -> _Open:
        path = self.open_dir / f"{file_device(reading.device)}_{int(reading.epoch * 1000)}.part"
        fh = open(path, "wb", buffering=0)  # noqa: SIM115 (kept open while the window is)
        lines = [self._line.csv_text(self._header)]
        w = _Open(
            path, fh, lines, reading.device, reading.epoch, reading.timestamp, reading.timestamp, time.monotonic()
        )
        self._open[reading.device] = w
        return w
