"""The spool's policy when full (windows.max_spool_mb): the oldest waiting windows are dropped, each
reported; the newest is always kept; nothing is dropped under the bound."""

from __future__ import annotations

import os
import time

import pytest

from edge_app.config import ConfigError, EdgeConfig
from edge_app.uploaders import UploadWorker


class Offline:
    """An uploader whose link is down: every upload fails."""

    def upload(self, key, path, meta):
        raise ConnectionError("link down")


def test_the_oldest_windows_go_when_the_spool_is_over_its_bound(tmp_path):
    ready = tmp_path / "windows" / "ready"
    ready.mkdir(parents=True)
    events = []
    worker = UploadWorker(Offline(), "pi-1", events=lambda kind, **f: events.append((kind, f)), max_spool_bytes=5000)
    try:
        names = []
        for i in range(8):  # 8 windows of 1,000 bytes, oldest first
            path = ready / f"T1.1f9360_20170616T19{i:02d}00Z_10.csv"
            path.write_bytes(b"x" * 1000)
            os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
            names.append(path.name)
            worker.submit(path, {"reason": "count"})
        left = sorted(p.name for p in ready.glob("*.csv"))
        assert left == names[3:]  # 5 x 1,000 bytes fit; the three oldest were dropped
        dropped = [f["file"] for kind, f in events if kind == "window_dropped"]
        assert dropped == names[:3] and worker.dropped == 3
    finally:
        worker.close(timeout=0.1)


def test_the_newest_window_is_kept_even_alone_over_the_bound(tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    worker = UploadWorker(Offline(), "pi-1", max_spool_bytes=10)
    try:
        path = ready / "T1.1f9360_20170616T190000Z_10.csv"
        path.write_bytes(b"x" * 1000)
        worker.submit(path, {})
        assert path.exists() and worker.dropped == 0
    finally:
        worker.close(timeout=0.1)


def test_max_spool_mb_is_validated():
    base = {"thing_name": "x", "models": {"batch": "b.tflite"}}
    assert EdgeConfig.from_dict(base).windows.max_spool_mb == 512.0
    assert EdgeConfig.from_dict({**base, "windows": {"max_spool_mb": None}}).windows.max_spool_mb is None
    with pytest.raises(ConfigError, match="max_spool_mb"):
        EdgeConfig.from_dict({**base, "windows": {"max_spool_mb": 0}})
