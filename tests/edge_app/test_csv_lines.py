"""The window spool's CSV lines (edge_app.csv_lines) are byte for byte what csv.writer writes: the trainer
(training_job) and the forecasts export read the window files with the csv module, and a window written
before the change must read as one written after."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_app.csv_lines import CsvLine, float_cells
from edge_app.forecasts import FORECAST_COLUMNS
from edge_app.records import Reading
from edge_app.state import Pending
from edge_app.windows import WindowSpool
from model_contract import FeatureSpec

TRICKY_FLOATS = [
    -0.0, 0.0, 1e-300, -1e-300, 5e-324, 1.7976931348623157e308, 1e16, 1e15 + 0.5, 0.1, 1 / 3, -2.5e-5,
    123456789.123, float("nan"), float("inf"), float("-inf"), 20.589429016819680,
]  # fmt: skip
TRICKY_TEXT = [
    "", "T1", "a,b", 'say "hi"', '"', ",", "line\nbreak", "cr\rhere", "crlf\r\n", " padded ", "None", "none",
    "tab\there", "nul\x00", "é-ü", "\ud800", "2017-01-14T00:10:00+00:00", "'single'", ";", "\\", "a,\"b\"\n",
]  # fmt: skip
OTHER = [None, True, 0, 1, -7, 10**20, 2**64 + 1, np.float64(0.1), np.float64(1e16), np.float32(0.1), np.int64(3)]


def _csv(row: tuple) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerow(row)
    return buf.getvalue()


@pytest.mark.parametrize("value", TRICKY_FLOATS + TRICKY_TEXT + OTHER, ids=repr)
def test_every_tricky_field_is_written_as_the_csv_module_writes_it(value: object) -> None:
    line = CsvLine(4)
    for row in ((value, "d", 1.5, ""), ("t", value, value, 2.0), ("", "", "", value)):
        assert line(row) == _csv(row)


def test_random_rows_of_tricky_fields_and_other_widths() -> None:
    rng = random.Random(18)
    pool = TRICKY_FLOATS + TRICKY_TEXT + OTHER + [rng.uniform(-1e3, 1e3) for _ in range(50)]
    line = CsvLine(6)
    for _ in range(3000):
        row = tuple(rng.choice(pool) for _ in range(rng.choice((6, 6, 6, 1, 5, 7))))  # other widths too
        assert line(row) == _csv(row), row
    assert line.csv_text(["a", "b,c"]) == _csv(("a", "b,c"))


def _readings(devices: list[str]) -> list[Reading]:
    out = []
    for i in range(40):
        device = devices[i % len(devices)]
        values = [TRICKY_FLOATS[i % 12], 1e-300 * i, -0.0, 10.0**i, i / 7]
        out.append(Reading(device, f"2017-01-14T00:{i:02d}:00+00:00", 1484352000.0 + 60 * i, values, values[-1]))
    return out


def test_the_spools_window_files_equal_the_csv_modules(tmp_path: Path) -> None:
    """Whole window files with forecasts (none yet, finite, NaN, an interval), devices that need quoting."""
    spec = FeatureSpec(columns=("a", "b", "c", "d", "e"), target="e")
    devices = ["T1", 'dev "7", east', "x\ny", "None"]
    closed: list[Path] = []
    spool = WindowSpool(
        tmp_path, spec, max_records=7, max_seconds=None, on_closed=lambda p, m: closed.append(p), forecasts=True
    )
    expected: dict[str, list[tuple]] = {}
    header = (spec.timestamp_column, spec.device_column, *spec.columns, *FORECAST_COLUMNS)
    for i, r in enumerate(_readings(devices)):
        made = None if i % 5 == 0 else Pending(r.target + 0.1, float("nan") if i % 7 == 0 else -0.0, 1e-300, "s,1")
        band = None
        interval: tuple = ("", "", "")
        if made is not None and i % 4 == 1:  # an interval issued with the forecast, the reading flagged or not
            made.band = [0.5, 1e-300]
            band = SimpleNamespace(index=i % 2, run=i % 3, min_run=1)
            interval = (made.hybrid - made.band[i % 2], made.hybrid + made.band[i % 2], 1 if i % 3 else 0)
        spool.add(r, made, 'b"1', band)
        rows = expected.setdefault(r.device, [header])
        cells = ("",) * 8 if made is None else (made.batch, made.speed, made.hybrid, 'b"1', "s,1", *interval)
        rows.append((r.timestamp, r.device, *r.values, *cells))
        if i % 3 == 0:
            assert spool.flush()
    spool.close_all("test")
    assert len(closed) == 8  # 4 devices x 10 readings in windows of 7: 2 windows each
    by_device: dict[str, list[bytes]] = {}
    for path in sorted(closed, key=lambda p: p.name.rsplit("_", 1)[0]):
        with open(path, newline="", encoding="utf-8") as fh:
            device = list(csv.reader(fh))[1][1]
        by_device.setdefault(device, []).append(path.read_bytes())
    for device, rows in expected.items():
        files = by_device[device]
        assert files[0] == "".join(_csv(row) for row in rows[:8]).encode()
        assert files[1] == (_csv(rows[0]) + "".join(_csv(row) for row in rows[8:])).encode()


def test_float_cells_is_the_csv_modules_text_or_none() -> None:
    """One orjson call for a run of floats: where it answers, exactly str() of each joined by commas."""
    rng = random.Random(7)
    pool = TRICKY_FLOATS + OTHER + [2.5e-4, 1e-4, 9.99e-5, 1e-5, 9999999999999998.0, 1e16 - 2, 40.0, -17.7]
    answered = 0
    for _ in range(4000):
        run = [rng.choice(pool) for _ in range(rng.randint(1, 6))]
        run += [rng.uniform(-1e3, 1e3) * 10.0 ** rng.randint(-8, 17) for _ in range(rng.randint(0, 6))]
        got = float_cells(run)
        if got is not None:
            answered += 1
            assert got == _csv(tuple(run))[:-2], run  # the cells without the line end
    assert answered > 100  # the fast path is taken (and checked) often


def test_a_window_of_ordinary_readings_takes_the_fast_rows_and_equals_the_csv_modules(tmp_path: Path) -> None:
    spec = FeatureSpec(columns=("a", "b", "c", "d", "e"), target="e")
    closed: list[Path] = []
    spool = WindowSpool(
        tmp_path, spec, max_records=500, max_seconds=None, on_closed=lambda p, m: closed.append(p), forecasts=True
    )
    rng = random.Random(3)
    rows = [(spec.timestamp_column, spec.device_column, *spec.columns, *FORECAST_COLUMNS)]
    for i in range(500):
        values = [round(rng.uniform(10, 80), rng.randint(0, 4)) for _ in range(5)]
        r = Reading("turbine-1", f"2017-01-14T{i // 60 % 24:02d}:{i % 60:02d}:00+00:00", 1484352000.0 + 60 * i,
                    values, values[-1])  # fmt: skip
        made = Pending(r.target + rng.gauss(0, 1), r.target + rng.gauss(0, 1), r.target + rng.gauss(0, 0.5), "s1")
        band, interval = None, ("", "", "")
        if i % 2:
            made.band = [rng.uniform(0.1, 2), rng.uniform(2, 4)]
            band = SimpleNamespace(index=i % 2, run=i % 3, min_run=2)
            w = made.band[i % 2]
            interval = (made.hybrid - w, made.hybrid + w, 1 if i % 3 >= 2 else 0)
        spool.add(r, made, "b1", band)
        rows.append((r.timestamp, r.device, *values, made.batch, made.speed, made.hybrid, "b1", "s1", *interval))
    assert len(closed) == 1
    assert closed[0].read_bytes() == "".join(_csv(row) for row in rows).encode()
