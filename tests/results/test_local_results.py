"""``hybridstream results --local``: the forecasts objects in the local stack's S3 (the real radosgw),
mirrored and queried with DuckDB, give the demo report's RMSEs for the same readings."""

from __future__ import annotations

import json

import pytest

from hybridstream.cli import main
from model_contract.forecasts import decode_lines, encode_lines
from tests.results.synthetic import demo_rmse, edge_run, forecasts_records, window_objects

APPROACHES = ("batch", "speed", "static", "dynamic", "persistence")


@pytest.fixture
def uploaded(s3_client, s3_bucket):
    """Two things' forecasts in the bucket: pi-1 at horizon 1, pi-2 at horizon 2 (with crash-replay duplicates)."""
    runs = {"pi-1": edge_run(horizon=1, seed=1), "pi-2": edge_run(horizon=2, seed=2, n=250)}
    for thing, preds in runs.items():
        for key, body in window_objects(thing, forecasts_records(preds)).items():
            s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    s3_client.put_object(Bucket=s3_bucket, Key="windows/pi-1/2017/01/14/x.csv", Body=b"not a forecast")
    return runs


def _cli(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["results", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_local_rmse_equals_the_demo_reports(uploaded, s3_server, s3_bucket, s3_env, tmp_path, capsys):
    local = ("--local", "--endpoint", s3_server.endpoint, "--bucket", s3_bucket, "--cache", str(tmp_path / "c"))
    rows = _cli(capsys, "rmse", *local)
    assert [(r["thing"], r["device"]) for r in rows] == [
        (t, d) for t in ("pi-1", "pi-2") for d in ("turbine-1", "turbine-2")
    ]
    for r in rows:
        preds = [p for p in uploaded[r["thing"]] if p["device"] == r["device"]]
        assert r["readings"] == len(preds)  # every predicted reading, once (replayed duplicates dropped)
        want = demo_rmse(preds)
        assert {a: round(r[a], 4) for a in APPROACHES} == {a: want[a] for a in APPROACHES}

    # every predicted reading comes back, reading by reading; a second run reuses the mirror
    readings = _cli(capsys, "readings", *local, "--thing", "pi-1")
    assert len(readings) == sum(1 for _ in uploaded["pi-1"])
    assert readings[5]["persistence"] == readings[4]["actual"] and readings[5]["static"] == pytest.approx(
        0.7 * readings[5]["batch"] + 0.3 * readings[5]["speed"]
    )
    # --from the mirrored folder: the same answers without S3
    assert _cli(capsys, "rmse", "--from", str(tmp_path / "c")) == rows
    # a time range and --by-day: the days' rows add up to the range's readings
    by_day = _cli(
        capsys,
        "rmse",
        *local,
        "--thing",
        "pi-1",
        "--device",
        "turbine-1",
        "--since",
        "2017-01-14",
        "--until",
        "2017-01-15T12:00Z",
        "--by-day",
    )
    assert [r["day_utc"] for r in by_day] == ["2017-01-14", "2017-01-15"] and sum(r["readings"] for r in by_day) == 216
    worst = _cli(capsys, "worst", *local, "--limit", "2")
    assert len(worst) == 2 and worst[0]["skill"] <= worst[1]["skill"]
    # an object in the cache that the bucket no longer has (another stack's) is not read
    stale = tmp_path / "c" / "forecasts" / "pi-gone" / "2017" / "01" / "14" / "x_20170114T000000Z_1.jsonl.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(encode_lines(forecasts_records(edge_run(n=5))))
    assert _cli(capsys, "rmse", *local) == rows


def test_optional_interval_fields_band_plot_and_anomalies(tmp_path, capsys):
    """Fields a producer adds later (the interval and anomaly flag) are read by name; absent ones are null."""
    preds = edge_run(devices=("turbine-1",), n=120)
    records = forecasts_records(preds)
    for i, r in enumerate(records):
        if r["dynamic"] is not None:
            r.update(lower=r["dynamic"] - 0.5, upper=r["dynamic"] + 0.5, anomaly=i % 40 == 0, extra_field="ignored")
    for key, body in window_objects("pi-9", records, replay=0).items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)
    flagged = _cli(capsys, "anomalies", "--from", str(tmp_path))
    assert [r["time_utc"] for r in flagged] == [records[i]["time_utc"] for i in (40, 80)]
    png = tmp_path / "plot.png"
    assert main(["results", "readings", "--from", str(tmp_path), "--device", "turbine-1", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode_lines(encode_lines(records[5:6]))[0]["extra_field"] == "ignored"  # written, and ignored above


def test_clear_errors(tmp_path, capsys):
    assert main(["results", "--from", str(tmp_path)]) == 1
    assert "no forecasts objects" in capsys.readouterr().err
    assert main(["results", "--from", str(tmp_path), "--since", "yesterday"]) == 1
    assert "not a date or time" in capsys.readouterr().err
    assert main(["results", "--from", str(tmp_path), "--thing", "pi'; DROP"]) == 1
    assert "only letters, digits" in capsys.readouterr().err
