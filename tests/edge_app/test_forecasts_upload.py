"""Each window's forecasts reach S3 beside it (forecasts/<thing>/<day>/<window-id>.jsonl.gz): written by
the spool with the reading, turned into the forecasts object by the upload thread, put before the
window, retried with it (same key: idempotent); against the real radosgw."""

from __future__ import annotations

import csv
from pathlib import Path

from edge_app.forecasts import BASE_COLUMNS, FORECAST_COLUMNS, ForecastExport
from edge_app.intervals import DeviceBand, IntervalConfig
from edge_app.records import Reading
from edge_app.state import Pending
from edge_app.uploaders import LocalFolderUploader, S3Uploader, UploadWorker
from edge_app.windows import WindowSpool
from model_contract import FeatureSpec
from model_contract.forecasts import ALL_FIELDS, decode_lines
from model_contract.layout import forecasts_key, forecasts_partition

SPEC = FeatureSpec(columns=("a", "Ot_avg"), target="Ot_avg", lags=(1, 2))


def _reading(i: int, device: str = "T1") -> Reading:
    return Reading(device, f"2017-01-14T00:{i:02d}:00+00:00", 1484352000.0 + 60 * i, [float(i), 40.0 + i], 40.0 + i)


def _spool(root: Path, closed: list, forecasts: bool = True, rows: int = 3) -> WindowSpool:
    return WindowSpool(root, SPEC, max_records=rows, max_seconds=None,
                       on_closed=lambda p, m: closed.append(p), forecasts=forecasts)  # fmt: skip


def test_the_spool_writes_each_readings_forecasts_after_the_spec_columns(tmp_path):
    closed: list[Path] = []
    spool = _spool(tmp_path / "w", closed)
    spool.add(_reading(0))  # no forecast for it: empty cells
    spool.add(_reading(1), Pending(41.5, 41.25, 41.125, "s1"), "b1")
    band = DeviceBand(IntervalConfig())  # levels 0.8 and 0.95, flags at 0.95 after min_run readings outside
    spool.add(_reading(2), Pending(42.5, float("nan"), 42.0, "s1", band=[0.5, 1.5]), "b1", band)
    assert spool.flush() and len(closed) == 1
    with open(closed[0], newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["Date_time", "device", "a", "Ot_avg", *FORECAST_COLUMNS]
    assert rows[1][4:] == [""] * 8 and rows[2][4:] == ["41.5", "41.25", "41.125", "b1", "s1", "", "", ""]
    assert rows[3][4:] == ["42.5", "nan", "42.0", "b1", "s1", "40.5", "43.5", "0"]  # the 0.95 interval, not flagged

    records = ForecastExport("Ot_avg").records(closed[0])
    assert [r["dynamic"] for r in records] == [None, 41.125, 42.0]
    assert records[2]["speed"] is None  # a non-finite forecast is null, never NaN in JSON
    assert records[1] | {"epoch": 0} == {
        "timestamp": "2017-01-14T00:01:00+00:00", "epoch": 0, "time_utc": "2017-01-14 00:01:00.000000",
        "device": "T1", "target": "Ot_avg", "actual": 41.0, "batch": 41.5, "speed": 41.25, "dynamic": 41.125,
        "model_batch": "b1", "model_speed": "s1", "horizon": 1, "lower": None, "upper": None, "anomaly": None,
    }  # fmt: skip
    assert (records[2]["lower"], records[2]["upper"], records[2]["anomaly"]) == (40.5, 43.5, False)
    assert set(records[0]) == {name for name, _, _ in ALL_FIELDS}
    # a window spooled before the interval columns existed still gives its forecasts (interval fields null)
    old = tmp_path / "old.csv"
    old.write_text("\n".join(",".join(r[: 4 + len(BASE_COLUMNS)]) for r in rows) + "\n")
    assert [(r["dynamic"], r["lower"]) for r in ForecastExport("Ot_avg").records(old)] == [
        (None, None),
        (41.125, None),
        (42.0, None),
    ]

    # a window spooled without forecasts (edge forward, or before the upgrade) has no forecasts object
    plain: list[Path] = []
    spool = _spool(tmp_path / "plain", plain, forecasts=False, rows=1)
    spool.add(_reading(0))
    assert ForecastExport("Ot_avg").encode(plain[0]) is None


def test_a_crash_left_window_keeps_its_forecasts(tmp_path):
    closed: list[Path] = []
    spool = _spool(tmp_path / "w", closed, rows=100)
    spool.add(_reading(0))
    spool.add(_reading(1), Pending(41.5, 41.25, 41.125, "s1"), "b1")
    assert spool.flush()
    with open(next((tmp_path / "w" / "open").glob("*.part")), "a") as fh:
        fh.write("2017-01-14T00:02:00+00:00,T1,2.0,42")  # a torn last row
    ready = _spool(tmp_path / "w", []).recover()
    assert [r["batch"] for r in ForecastExport("Ot_avg").records(ready[0])] == [None, 41.5]


def test_forecasts_are_put_beside_the_window_and_retried_with_it(s3_server, s3_client, s3_bucket, s3_env, tmp_path):
    closed: list[Path] = []
    spool = _spool(tmp_path / "w", closed)
    for i in range(3):
        spool.add(_reading(i), Pending(40.5 + i, 40.25 + i, 40.125 + i, "s1") if i else None, "b1")
    window = closed[0]
    fkey = forecasts_key("pi-1", window.stem)
    assert forecasts_partition(fkey) == ("pi-1", "2017/01/14")

    class FailsOnce(S3Uploader):
        tries = 0

        def upload(self, key, path, meta):
            self.tries += 1
            if self.tries == 1:
                raise ConnectionError("link down")
            return super().upload(key, path, meta)

    uploader = FailsOnce(s3_bucket, "pi-1", endpoint_url=s3_server.endpoint)
    events = []
    worker = UploadWorker(uploader, "pi-1", events=lambda kind, **f: events.append((kind, f)), max_backoff=0.05,
                          forecasts=ForecastExport("Ot_avg"))  # fmt: skip
    worker.submit(window, {"rows": 3})
    assert worker.close(timeout=30) and uploader.tries == 2 and worker.failures == 1
    body = s3_client.get_object(Bucket=s3_bucket, Key=fkey)["Body"].read()
    records = decode_lines(body)
    assert [r["timestamp"] for r in records] == [f"2017-01-14T00:0{i}:00+00:00" for i in range(3)]
    assert [r["dynamic"] for r in records] == [None, 41.125, 42.125] and records[1]["model_speed"] == "s1"
    assert events == [("window_uploaded", events[0][1])] and events[0][1]["forecasts_key"] == fkey
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted([fkey, f"windows/pi-1/2017/01/14/{window.stem}.csv"])


def test_the_local_uploader_writes_the_same_layout(tmp_path):
    closed: list[Path] = []
    spool = _spool(tmp_path / "w", closed, rows=1)
    spool.add(_reading(0))
    worker = UploadWorker(LocalFolderUploader(tmp_path / "out"), "pi-1", forecasts=ForecastExport("Ot_avg"))
    worker.submit(closed[0], {})
    assert worker.close(timeout=10)
    out = tmp_path / "out" / forecasts_key("pi-1", closed[0].stem)
    assert [r["actual"] for r in decode_lines(out.read_bytes())] == [40.0]
