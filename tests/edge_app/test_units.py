"""Fast tests of the pure parts: config, records, metrics, windows, uploads, notices, model checks."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.config import ConfigError, EdgeConfig, load_config
from edge_app.metrics import ErrorStats
from edge_app.records import (
    encode_deadletter,
    encode_prediction,
    encode_prediction_text,
    parse_reading,
    prediction_dict,
)
from edge_app.uploaders import LocalFolderUploader, UploadWorker
from edge_app.windows import WindowSpool, file_device, window_key
from model_contract import FeatureSpec
from model_contract.bad_record import BadRecord
from model_contract.messages import parse_model_notice

SPEC = FeatureSpec()


def _reading(ts: str, device: str = "d1", ot: float = 10.0):
    rec = {"device": device, "Date_time": ts, "Db1t_avg": 1, "Db2t_avg": 2, "Gb1t_avg": 3, "Gb2t_avg": 4, "Ot_avg": ot}
    return parse_reading(json.dumps(rec).encode(), None, SPEC)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": {"batch": "b"}, "bogus": 1}, "unknown config key(s): bogus"),
        ({"models": {"batch": "b", "speeed": "x"}}, "unknown config key(s): models.speeed"),
        ({"models": {"batch": ""}}, "models.batch must be"),
        ({"models": {"batch": "b"}, "topics": {"predictions": "sensor.readings"}}, "topics must all be different"),
        ({"models": {"batch": "b"}, "windows": {"max_records": None, "max_seconds": None}}, "max_records and/or"),
        ({"models": {"batch": "b"}, "windows": {"uploader": "ftp"}}, "windows.uploader 'ftp' unknown"),
        ({"models": {"batch": "b"}, "combination": {"strategy": "magic"}}, "combination:"),
        ({"models": {"batch": "b"}, "drift": {"residual": "both"}}, "drift.residual"),
        ({"models": {"batch": "b"}, "thing_name": "a/b"}, "thing_name"),
        ({"models": {"batch": "b"}, "process": "stream"}, "process must be batch or record, got 'stream'"),
        ({"models": {"batch": "b"}, "forward": {"max_bytes": 200 * 1024}}, "forward.max_bytes must be"),
        ({"models": {"batch": "b"}, "forward": {"interval_s": 0}}, "forward.interval_s must be"),
        ({"models": {"batch": "b"}, "forward": {"max_readings": 0}}, "forward.max_readings must be"),
        ({"models": {"batch": "b"}, "forward": {"feature_spec": {"columns": ["a"]}}}, "forward.feature_spec"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EdgeConfig.from_dict(data)


def test_forward_needs_no_batch_model_but_an_mqtt_transport(tmp_path):
    from edge_app.forward import Forwarder, forward_spec

    cfg = EdgeConfig.from_dict({"forward": {"feature_spec": {"columns": ["a", "b"], "target": "b", "lags": [3]}}},
                               require_batch_model=False)  # fmt: skip
    assert cfg.models.batch == "" and forward_spec(cfg)[0].max_lag == 3
    assert forward_spec(EdgeConfig.from_dict({}, require_batch_model=False)) == (FeatureSpec(), None)
    with pytest.raises(ConfigError, match="needs mqtt.transport"):
        Forwarder(cfg)
    with pytest.raises(ConfigError, match="cannot read the batch manifest"):
        forward_spec(EdgeConfig.from_dict({"models": {"batch": str(tmp_path / "model.tflite")}}))


def test_config_files_json_and_toml_with_overrides(tmp_path):
    (tmp_path / "e.toml").write_text(
        'thing_name = "pi-9"\n[models]\nbatch = "/m/model.tflite"\n[windows]\nmax_records = 50\n'
    )
    cfg = load_config(tmp_path / "e.toml", {"bootstrap": "10.0.0.1:9092", "thing_name": None})
    assert (cfg.thing_name, cfg.bootstrap, cfg.windows.max_records, cfg.group_id) == (
        "pi-9",
        "10.0.0.1:9092",
        50,
        "hybridstream-edge-pi-9",
    )
    (tmp_path / "e.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "e.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")


def test_reading_parsing_reasons():
    assert _reading("2017-01-01T00:00:00").epoch == 1483228800.0  # naive = UTC
    key_only = json.dumps({"Date_time": 0, **{c: 1 for c in SPEC.columns}}).encode()
    assert parse_reading(key_only, b"from-key", SPEC).device == "from-key"
    cases = {
        b'"just a string"': "not_an_object",
        json.dumps({"Date_time": "2017-01-01", **{c: 1 for c in SPEC.columns}}).encode(): "missing_device",
        json.dumps({"device": "d", "Date_time": True, **{c: 1 for c in SPEC.columns}}).encode(): "bad_timestamp",
    }
    for raw, reason in cases.items():
        with pytest.raises(BadRecord) as err:
            parse_reading(raw, None, SPEC)
        assert err.value.reason == reason
    with pytest.raises(BadRecord, match="empty_value"):
        parse_reading(None, None, SPEC)


def test_prediction_and_deadletter_encoding_are_strict_json():
    r = _reading("2017-01-01T00:10:00+00:00")
    rec = json.loads(encode_prediction(r, (1.0, float("nan"), 2.0), None, (0.6, 0.4), ("b1", "s1"), 12.34))
    assert rec["key"] == "d1|2017-01-01T00:10:00+00:00" and rec["forecast"]["speed"] is None
    assert rec["weights"] == {"batch": 0.6, "speed": 0.4} and rec["models"] == {"batch": "b1", "speed": "s1"}
    dead = json.loads(encode_deadletter(b"\xff", "invalid_json", "x", "t", 0, 7, None))
    assert dead["payload_encoding"] == "base64" and dead["source"]["offset"] == 7


def test_error_stats_match_numpy():
    rng = np.random.default_rng(3)
    errs = rng.normal(size=(300, 3))
    stats = ErrorStats(window=100)
    for e in errs:
        stats.update(*e)
    snap = stats.snapshot()
    for i, name in enumerate(("batch", "speed", "hybrid")):
        assert snap["rolling"][name]["rmse"] == pytest.approx(math.sqrt(np.mean(errs[-100:, i] ** 2)), abs=1e-4)
        assert snap["cumulative"][name]["mae"] == pytest.approx(np.mean(np.abs(errs[:, i])), abs=1e-4)
    assert ErrorStats(5).snapshot()["rolling"]["batch"]["rmse"] is None


def test_window_spool_closes_by_count_age_and_recovers_after_a_crash(tmp_path):
    closed: list[tuple[Path, dict]] = []
    spool = WindowSpool(tmp_path, SPEC, max_records=3, max_seconds=60, on_closed=lambda p, m: closed.append((p, m)))
    for i in range(4):
        spool.add(_reading(f"2017-03-0{i + 1}T00:00:00+00:00"))
    assert len(closed) == 1 and closed[0][1]["rows"] == 3 and closed[0][1]["reason"] == "count"
    d1 = file_device("d1")
    assert closed[0][0].name == f"{d1}_20170301T000000Z_3.csv"
    assert window_key("pi", closed[0][0].stem) == f"windows/pi/2017/03/01/{d1}_20170301T000000Z_3.csv"
    spool.tick(time.monotonic() + 61)
    assert [m["reason"] for _, m in closed] == ["count", "age"]
    # a crash: an open window with a torn last line is recovered as a closed window
    spool.add(_reading("2017-03-09T00:00:00+00:00", device="d 2"))
    spool.add(_reading("2017-03-10T00:00:00+00:00", device="d 2"))
    spool.flush()
    part = next((tmp_path / "open").glob("*.part"))
    with open(part, "a") as fh:
        fh.write("2017-03-11T00:00:00+00:00,d 2,1")  # torn write
    fresh = WindowSpool(tmp_path, SPEC, max_records=3, max_seconds=60, on_closed=lambda p, m: None)
    ready = fresh.recover()
    names = sorted(p.name for p in ready)
    d2 = file_device("d 2")
    assert f"{d2}_20170309T000000Z_2.csv" in names and not list((tmp_path / "open").glob("*.part"))
    with open(tmp_path / "ready" / f"{d2}_20170309T000000Z_2.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Date_time"] for r in rows] == ["2017-03-09T00:00:00+00:00", "2017-03-10T00:00:00+00:00"]


def test_upload_worker_retries_and_keeps_the_file_until_uploaded(tmp_path):
    class Flaky(LocalFolderUploader):
        calls = 0

        def upload(self, key, path, meta):
            Flaky.calls += 1
            if Flaky.calls < 3:
                raise OSError("network down")
            return super().upload(key, path, meta)

    src = tmp_path / "ready" / "d1_20170301T000000Z_3.csv"
    src.parent.mkdir()
    src.write_text("Date_time,device\n")
    events = []
    worker = UploadWorker(Flaky(tmp_path / "out"), "pi", events=lambda kind, **f: events.append((kind, f)))
    worker.submit(src, {"rows": 3})
    assert worker.close(timeout=10)
    assert (tmp_path / "out" / "windows/pi/2017/03/01/d1_20170301T000000Z_3.csv").read_text() == "Date_time,device\n"
    assert not src.exists() and worker.failures == 2 and events[0][0] == "window_uploaded"


def test_upload_worker_quarantines_stray_files_and_permanent_failures(tmp_path):
    class Broken(LocalFolderUploader):
        def upload(self, key, path, meta):
            raise PermissionError("access denied")

    ready = tmp_path / "ready"
    ready.mkdir()
    stray, doomed, good = ready / "notes.csv", ready / "d1_20170301T000000Z_3.csv", ready / "d2_20170301T000000Z_3.csv"
    for path in (stray, doomed, good):
        path.write_text("Date_time,device\n")
    events = []
    worker = UploadWorker(
        Broken(tmp_path / "out"), "pi", events=lambda kind, **f: events.append(kind), max_backoff=0.01
    )
    worker._max_tries = 2
    worker.submit(stray, {})  # before the fix: window_key raised outside the try and killed the thread
    worker.submit(doomed, {})  # ...and a permanent error was retried forever
    assert worker.close(timeout=10)
    assert events == ["window_quarantined", "window_quarantined"]
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == [doomed.name, stray.name]
    ok = UploadWorker(LocalFolderUploader(tmp_path / "out"), "pi")
    ok.submit(good, {})
    assert ok.close(timeout=10) and ok.uploaded == 1


def test_spool_recovery_quarantines_unreadable_files_and_window_ids_never_raise(tmp_path):
    spool = WindowSpool(tmp_path, SPEC, max_records=3, max_seconds=60, on_closed=lambda p, m: None)
    header = ",".join(["Date_time", "device", *SPEC.columns]) + "\n"
    (tmp_path / "open" / "weird_notanumber.part").write_text(header + "2017-03-01T00:00:00+00:00,d1,1,2,3,4,5\n")
    (tmp_path / "open" / "far_99999999999999999999.part").write_text(header + "x,d1,1,2,3,4,5\n")
    (tmp_path / "open" / "bytes_1000.part").write_bytes(b"\xff\xfe" * 10)
    spool.recover()  # before the fix: ValueError / OverflowError at every start (a crash loop)
    assert not list((tmp_path / "open").iterdir())
    quarantined = sorted(p.name for p in (tmp_path / "quarantine").iterdir())
    assert quarantined == ["bytes_1000.part", "weird_notanumber.part"]
    assert [p.name for p in (tmp_path / "ready").iterdir()] == [f"{file_device('d1')}_00000000T000000Z_1.csv"]


def parse_speed_notice(notice):
    """How the edge app reads a model notice (one parser: model_contract.messages)."""
    return parse_model_notice(notice, kind="speed")


def test_notice_validation():
    with pytest.raises(ValueError, match="sha256"):
        parse_speed_notice({"model": "file:///m.tflite", "sha256": "abc"})
    with pytest.raises(ValueError, match="no model location"):
        parse_speed_notice({"sha256": "a" * 64})
    with pytest.raises(ValueError, match="no model name"):
        parse_speed_notice({"uri": "s3://b/k", "sha256": "A" * 64})
    with pytest.raises(ValueError, match="not a speed model"):
        parse_speed_notice({"name": "speed", "uri": "s3://b/k", "sha256": "A" * 64, "kind": "batch"})
    with pytest.raises(ValueError, match="manifest_sha256"):
        parse_speed_notice({"name": "speed", "uri": "s3://b/k", "sha256": "A" * 64, "manifest_sha256": "x"})
    assert parse_speed_notice({"name": "speed", "uri": "s3://b/k", "sha256": "A" * 64}).sha256 == "a" * 64


@pytest.mark.parametrize(
    ("device", "forecast", "errors"),
    [
        ("d1", None, None),
        ('we"ird\\ dév\n', (1.5, -2.25e-7, 3.0), (0.1, float("inf"), -1e300)),
        ("d2", (float("nan"), 2.0, 1e16), None),
    ],
)
@pytest.mark.parametrize("encode", [encode_prediction, encode_prediction_text])
def test_fast_prediction_encoder_matches_the_reference_structure(device, forecast, errors, encode):
    r = _reading("2017-01-01T00:10:00+00:00", device=device, ot=-3.5)
    args = (r, forecast, errors, (np.float64(0.25), 0.75), ("b\u00e9", "s1"), 12.345, 3.04)
    assert json.loads(encode(*args)) == prediction_dict(*args)


_COLS = b'"Db1t_avg": 1, "Db2t_avg": 2, "Gb1t_avg": 3, "Gb2t_avg": 4'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"device": 123456789012345678901234567890, "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 5}',
        b'{"device": "d", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 18446744073709551617}',  # > 64 bits
        b'{"device": "d", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": NaN}',  # json's extensions
        b'{"device": "d", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 1e400}',
        b'\xef\xbb\xbf{"device": "d", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 5}',
        b'{"device": "\\ud800", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 5}',
        b'{"device": "d", "device": "e", "Date_time": "2017-01-14T00:00:00Z", ' + _COLS + b', "Ot_avg": -0.0}',
        b'{"device": "d", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 2.4703282292062328e-324}',
        b'{"device": "d", "Date_time": 1484352000.123456789, ' + _COLS + b', "Ot_avg": 0.1000000000000000055511}',
        b'{"device": "d", "Date_time": 1484352000, ' + _COLS + b', "Ot_avg": 5',
    ],
)
def test_readings_parse_as_with_the_json_module(raw, monkeypatch):
    """orjson reads the usual reading; whatever it refuses or reads otherwise (integers beyond 64 bits) is
    json.loads's to read: the same Reading or the same dead-letter reason as without orjson."""
    from edge_app import records

    def outcome():
        try:
            return parse_reading(raw, None, SPEC)
        except BadRecord as exc:
            return exc.reason

    fast = outcome()
    monkeypatch.setattr(records, "_fast_loads", None)
    slow = outcome()
    assert repr(fast) == repr(slow)


def test_the_edge_runtime_imports_neither_tensorflow_nor_the_hybridstream_package():
    import subprocess
    import sys

    code = (
        "import sys, edge_app.app, edge_app.cli, edge_app.swap, edge_app.uploaders\n"
        "heavy = ('tensorflow', 'keras', 'hybridstream', 'training_job')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_example_config_loads():
    cfg = load_config(Path(__file__).resolve().parents[2] / "edge_app" / "edge.example.json")
    assert cfg.thing_name == "pi-turbine-1" and cfg.models.speed_name == "speed-pi-turbine-1"
    assert cfg.windows.local_root == "/var/lib/hybridstream/outbox" and cfg.devices is None


def test_the_interval_fragment_parses_to_the_reference_structure_and_bad_interval_configs_fail_at_load():
    from edge_app.config import ConfigError, EdgeConfig
    from edge_app.intervals import DeviceBand, IntervalConfig
    from edge_app.state import Pending

    r = _reading("2017-01-01T00:10:00+00:00")
    band = DeviceBand(
        IntervalConfig(min_run=1),
        {"levels": [0.8, 0.95], "lr": 0.05, "scale_half_life": 100.0, "q": [1.5, 2.5], "scale": 0.5, "seen": 10},
    )
    made = Pending(2.0, 2.0, 2.0, "s1")
    args = (r, (2.0, 2.0, 2.0), None, (0.5, 0.5), ("b1", "s1"), 1.0, 0.0, 1)
    rec = json.loads(encode_prediction(*args, band.step(None, 1.0, made, "t")))
    assert rec == prediction_dict(*args, interval={"0.8": [1.25, 2.75], "0.95": [0.75, 3.25]})
    rec = json.loads(encode_prediction(*args, band.step(made, 4.0, None, "t")))
    assert rec == prediction_dict(*args, anomaly={"level": 0.95, "distance": 0.75, "run": 1})
    for bad, match in (
        ({"levels": [0.8, 1.5]}, "levels"),
        ({"min_run": 0}, "min_run"),
        ({"x": 1}, "unknown"),
        ({"anomaly_level": 0.9}, "anomaly_level"),
    ):
        with pytest.raises(ConfigError, match=f"intervals: .*{match}"):
            EdgeConfig.from_dict({"models": {"batch": "m.tflite"}, "intervals": bad})


def test_a_timestamp_shared_by_readings_in_a_row_is_parsed_once_and_checked_each_time() -> None:
    """parse_reading keeps the last timestamp text's epoch (devices reporting in step share it): the bounds
    still apply to every reading, with the same reasons."""
    spec = FeatureSpec(columns=("a", "b"), target="b")
    raw = b'{"device": "d%d", "Date_time": "2017-01-14T01:00:00+01:00", "a": 1, "b": 2}'
    first = parse_reading(raw % 1, None, spec, max_epoch=2e9)
    again = parse_reading(raw % 2, None, spec, max_epoch=2e9)
    assert (first.epoch, again.epoch, again.device) == (1484352000.0, 1484352000.0, "d2")
    with pytest.raises(BadRecord, match="future_timestamp"):
        parse_reading(raw % 3, None, spec, max_epoch=1484351999.0)
    with pytest.raises(BadRecord, match="bad_timestamp"):
        parse_reading(raw % 4, None, spec, min_epoch=1484352001.0)
    other = parse_reading(raw.replace(b"01:00:00+01", b"02:00:00+01") % 5, None, spec)
    assert other.epoch == 1484355600.0
