"""The window spool on a full disk (a real 1 MB tmpfs; needs root): writes fail without a torn row,
rows wait in memory, nothing is lost once space returns."""

from __future__ import annotations

import csv
import os
import subprocess

import pytest

from edge_app.records import Reading
from edge_app.windows import WindowSpool
from hybridstream.chaos.disk import fill
from model_contract import FeatureSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def tiny_disk(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _reading(i: int) -> Reading:
    values = [40.0 + i % 7, 39.0, 66.0, 65.0, 17.0 + i % 3]
    return Reading("t1", f"2020-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00", 1577836800.0 + i, values, values[-1])


def test_a_full_disk_holds_rows_in_memory_and_loses_none(tiny_disk):
    closed = []
    spool = WindowSpool(tiny_disk / "windows", FeatureSpec(), max_records=5000, max_seconds=None,
                        on_closed=lambda path, meta: closed.append(path))  # fmt: skip
    for i in range(100):
        spool.add(_reading(i))
    assert spool.flush() and spool.held_rows == 0
    fill(tiny_disk)  # the disk is full now
    for i in range(100, 2000):
        spool.add(_reading(i))
    assert spool.flush() is False
    assert spool.degraded and spool.write_errors == 1 and spool.held_rows == 1900
    assert spool.flush() is False and spool.write_errors == 1  # retried at most once a second
    (part,) = (tiny_disk / "windows" / "open").glob("*.part")
    rows = list(csv.reader(part.read_text().splitlines()))
    assert len(rows) == 101 and all(len(r) == 7 for r in rows)  # header + the 100 written; no torn row
    assert spool.close("t1", "drift") is None  # cannot close yet: it stays open
    (tiny_disk / "filler.bin").unlink()
    spool._retry_at = 0.0  # do not wait out the one-second retry pause in a test
    assert spool.flush() and not spool.degraded and spool.held_rows == 0
    ready = spool.close("t1", "count")
    with open(ready, newline="") as fh:
        got = [r["Date_time"] for r in csv.DictReader(fh)]
    assert got == [_reading(i).timestamp for i in range(2000)]
