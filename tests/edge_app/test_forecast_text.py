"""ForecastExport.encode writes the window's forecasts object from the CSV cells (ForecastExport.text): its lines
byte for byte encode_lines(records())'s (the same fields in the same order, floats, escapes, nulls and skipped
rows), on windows with what a spool file can hold (written by the spool or by hand, old and new columns); gzip at
the edge's level, the same bytes for the same window."""

from __future__ import annotations

import csv
import gzip
import io
import random
from pathlib import Path

import pytest

from edge_app.forecasts import (
    BASE_COLUMNS,
    FORECAST_COLUMNS,
    ForecastExport,
    _csv_rows,
    _json_column,
    _json_num_or_none,
    _utc_text,
    utc_text,
)
from model_contract.forecasts import decode_lines, encode_lines

TIMESTAMPS = [
    "2017-01-14T00:10:00+00:00", "2017-01-14T01:10:00+01:00", "2017-01-14 00:00:00", "2017-01-14T00:00:00.25Z",
    "1484352000", "1484352000.5", "1969-12-31T23:59:59+00:00", "1970-01-01T00:00:00+00:00", "9999-12-31T23:59:59",
    "not a time", "", "2017-13-01T00:00:00", "2017-06-16T21:20:00+02:00", "2017-01-14T00:00:00.0000005+00:00",
]  # fmt: skip
NUMBERS = [
    "", "1.5", "-0.0", "0", "1e-300", "5e-324", "1e16", "1e+16", "1.7976931348623157e308", "1e999", "-inf", "nan",
    "NaN", "1.50", " 2.5", "+3", "1_000", "0x10", "abc", "20.589429016819680", "12345678901234567890", ".5", "5.",
    "null", " null", "true", "[1]", "1,2", "-0", "5e-05", "0.00005", "0.0001", "17.70123456789012", "40.56",
]  # fmt: skip
TEXT = ["T1", "a,b", 'q"uote', "é", "\u2028", "tab\t", "back\\slash", "nul\x00", "None", ""]
FLAGS = ["", "0", "1", "yes", "true"]


def _window(path: Path, rows: int, seed: int, columns: tuple[str, ...] = FORECAST_COLUMNS) -> Path:
    rng = random.Random(seed)
    header = ["Date_time", "device", "a", "Ot_avg", *columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(rows):
            row = [rng.choice(TIMESTAMPS), rng.choice(TEXT), "1.0", rng.choice(NUMBERS)]
            for c in columns:
                if c in ("model_batch", "model_speed"):
                    row.append(rng.choice(TEXT))
                elif c == "anomaly":
                    row.append(rng.choice(FLAGS))
                else:
                    row.append(rng.choice(NUMBERS))
            if i % 17 == 5:
                row = row[:-1]  # a short row: skipped by both
            w.writerow(row)
    return path


@pytest.mark.parametrize("columns", [FORECAST_COLUMNS, BASE_COLUMNS], ids=["with intervals", "before intervals"])
def test_the_forecasts_object_is_byte_for_byte_encode_lines_of_the_records(tmp_path: Path, columns: tuple) -> None:
    export = ForecastExport("Ot_avg", horizon=3)
    for seed in range(4):
        window = _window(tmp_path / f"w{seed}.csv", 400, seed, columns)
        records = export.records(window)
        assert records, "some rows are valid"
        body = export.encode(window)
        assert gzip.decompress(body) == gzip.decompress(encode_lines(records))
        assert body == export.encode(window) and decode_lines(body) == records


def test_a_spooled_window_of_ordinary_readings(tmp_path: Path) -> None:
    window = tmp_path / "w.csv"
    rng = random.Random(7)
    with open(window, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Date_time", "device", "a", "Ot_avg", *FORECAST_COLUMNS])
        for i in range(1000):
            x = rng.uniform(15, 25)
            ts = f"2017-07-{3 + i // 144:02d}T{i // 6 % 24:02d}:{i % 6 * 10:02d}:00+02:00"
            w.writerow([ts, "turbine-2", 49.58, x, x + rng.random(), x - rng.random(), x, "05ba", "f527",
                        x - 0.4, x + 0.4, i % 50 == 0])  # fmt: skip
    export = ForecastExport("Ot_avg")
    assert gzip.decompress(export.encode(window)) == gzip.decompress(encode_lines(export.records(window)))


def test_utc_text_of_whole_seconds_from_the_day_cache() -> None:
    rng = random.Random(3)
    epochs = [0.0, -0.0, 86399.0, 86400.0, 951782400.0, 4107542399.0, 253402300799.0, 1484352000.0]
    epochs += [float(rng.randrange(0, 253402300800)) for _ in range(2000)]
    epochs += [1484352000.25, -1.0, 1e-7, 253402300800.0]  # not whole, negative, beyond year 9999: utc_text's own
    for e in epochs:
        try:
            expected = utc_text(e)
        except (ValueError, OverflowError, OSError) as exc:
            with pytest.raises(type(exc)):
                _utc_text(e)
            continue
        assert _utc_text(e) == expected, e


def test_a_column_of_numbers_in_bulk_equals_cell_by_cell() -> None:
    """_json_column (one orjson read and write of a column) gives exactly _json_num's text for every cell, on columns
    the spool writes (repr of floats, empty cells) and on columns with any of NUMBERS among them."""
    rng = random.Random(11)
    for k in range(600):
        cells = [repr(rng.uniform(-1e3, 1e3) * 10.0 ** rng.randint(-7, 17)) for _ in range(rng.randint(1, 40))]
        cells += [""] * rng.randint(0, 3)
        if k % 3 == 0:
            cells.insert(rng.randrange(len(cells)), rng.choice(NUMBERS))
        rng.shuffle(cells)
        assert _json_column(cells) == [_json_num_or_none(c) for c in cells], cells
    spooled = [repr(20.0 + i / 7) for i in range(1000)]
    assert _json_column(spooled) == spooled  # the spool's own cells come back as they are


def test_a_spool_files_rows_split_as_the_csv_module_reads_them() -> None:
    """_csv_rows (split at "\\r\\n" and "," when nothing is quoted) gives list(csv.reader(...))'s rows on any text of
    commas, quotes, line ends, empty lines and fields, and on a spooled window's."""
    rng = random.Random(5)
    pieces = ["a", "1.5", ",", ",", "\r\n", "\r\n", "\r", "\n", '"', "", "x y"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert _csv_rows(text) == list(csv.reader(io.StringIO(text, newline=""))), repr(text)
    spooled = "Date_time,device,a\r\n" + "".join(f"2017-01-14T00:{i:02d}:00,T1,{i / 7!r}\r\n" for i in range(60))
    assert _csv_rows(spooled) == list(csv.reader(io.StringIO(spooled, newline="")))
