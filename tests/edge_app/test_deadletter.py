"""Bad input never stops the app: each kind goes to deadletter with its reason; good readings still flow."""

from __future__ import annotations

import base64
import json

import pytest

from hybridstream.devtools.edge import collect, edge_config, produce, read_rows, reading_json
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka


def test_bad_records_are_routed_with_reasons_and_good_ones_flow(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    rows = read_rows(edge_models.test_csv, 2000, 40)
    good = [reading_json(r, "turbine-a") for r in rows]
    ok = json.loads(good[3])
    bad: list[tuple[bytes, str]] = [
        (b"not json at all", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (json.dumps({k: v for k, v in ok.items() if k != "Gb1t_avg"}).encode(), "missing_field"),
        (json.dumps({**ok, "Ot_avg": "warm"}).encode(), "non_numeric"),
        (json.dumps({**ok, "Db1t_avg": None}).encode(), "non_numeric"),
        (json.dumps({**ok, "Ot_avg": float("nan")}).encode(), "not_finite"),
        (json.dumps({**ok, "Gb2t_avg": "inf"}).encode(), "not_finite"),
        (json.dumps({k: v for k, v in ok.items() if k != "Date_time"}).encode(), "missing_timestamp"),
        (json.dumps({**ok, "Date_time": "yesterday"}).encode(), "bad_timestamp"),
        (json.dumps({**ok, "device": "intruder"}).encode(), "unknown_device"),
        (b"DUPLICATE", "duplicate_timestamp"),  # the reading just sent, again
        (b"OLDER", "out_of_order"),  # a reading from five steps back
    ]
    stream: list[tuple[bytes, str | None]] = []
    for i, value in enumerate(good):
        stream.append((value, None))
        if i >= 9 and bad:
            payload, reason = bad.pop(0)
            payload = {b"DUPLICATE": good[i], b"OLDER": good[i - 5]}.get(payload, payload)
            stream.append((payload, reason))
    assert not bad
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, devices=["turbine-a", "turbine-b"])
    produce(kafka_bootstrap, cfg["topics"]["readings"], [v for v, _ in stream])

    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], len(good), timeout=60)
        dead = collect(kafka_bootstrap, cfg["topics"]["deadletter"], 13, timeout=30)
        counters = running.stop()

    expected = [(offset, value, reason) for offset, (value, reason) in enumerate(stream) if reason]
    assert [d["reason"] for d in dead] == [reason for _, _, reason in expected]
    for d, (offset, value, _) in zip(dead, expected, strict=True):
        assert d["source"] == {"topic": cfg["topics"]["readings"], "partition": 0, "offset": offset}
        if d["payload_encoding"] == "base64":
            assert base64.b64decode(d["payload"]) == value
        else:
            assert d["payload"].encode() == value
        assert d["detail"] or d["reason"] in ("not_an_object",)
    assert [p["timestamp"] for p in preds] == [r["Date_time"] for r in rows]  # every good one, once, in order
    assert counters["deadletter"] == 13 and counters["predictions"] == len(good)
    assert counters["deadletter_reasons"]["invalid_json"] == 2
    assert counters["deadletter_reasons"]["non_numeric"] == 2


def test_hostile_inputs_are_dead_lettered_and_never_stop_the_app(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    """The reviewer's crashers (C1/C2) and the remaining reasons, with no allowlist (max_devices=2)."""
    rows = read_rows(edge_models.test_csv, 3000, 30)
    good = [reading_json(r, "turbine-a") for r in rows]
    ok = json.loads(good[3])
    huge = "1" + "0" * 400  # an integer literal beyond float range

    def raw(rec: dict, **override: str) -> bytes:  # override values are inserted as raw JSON text
        text = json.dumps({k: v for k, v in rec.items() if k not in override})
        extra = ", ".join(f'"{k}": {v}' for k, v in override.items())
        return (text[:-1] + ", " + extra + "}").encode() if extra else text.encode()

    bad: list[tuple[bytes | None, str]] = [
        (None, "empty_value"),
        (b"", "empty_value"),
        (raw(ok, Ot_avg=huge), "not_finite"),
        (raw(ok, Date_time=huge), "bad_timestamp"),
        (raw(ok, device='"\\ud800"'), "bad_device"),
        (b'{"a":' * 100000 + b"1" + b"}" * 100000, "invalid_json"),
        (raw(ok, Date_time="1.7e12"), "future_timestamp"),  # epoch in milliseconds
        (raw(ok, Date_time='"0001-01-01T00:00:00+14:00"'), "bad_timestamp"),
        (raw(ok, Date_time='"1999-12-31T23:59:59+00:00"'), "bad_timestamp"),
        (raw(ok, Date_time='"2999-01-01T00:00:00+00:00"'), "future_timestamp"),
        (raw(ok, Gb1t_avg="1e300"), "out_of_range"),
        (raw(ok, device='""'), "missing_device"),
        (raw(ok, device='"turbine-b"', Date_time='"2018-01-01T00:00:00+00:00"'), None),  # a second device is fine
        (raw(ok, device='"turbine-c"'), "too_many_devices"),
    ]
    expected_reasons = [reason for _, reason in bad if reason]
    stream: list[tuple[bytes | None, str | None]] = []
    for i, value in enumerate(good):
        stream.append((value, None))
        if i >= 5 and bad:
            stream.append(bad.pop(0))
    assert not bad
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, max_devices=2)
    produce(kafka_bootstrap, cfg["topics"]["readings"], [v for v, _ in stream])

    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], len(good) + 1, timeout=60)
        dead = collect(kafka_bootstrap, cfg["topics"]["deadletter"], len(expected_reasons), timeout=30)
        counters = running.stop()

    assert [d["reason"] for d in dead] == expected_reasons
    a = [p for p in preds if p["device"] == "turbine-a"]
    assert [p["timestamp"] for p in a] == [r["Date_time"] for r in rows]  # every good one, once, in order
    assert all(p["forecast"] is not None for p in a[2:])  # no bad record disturbed the device's state
    assert counters["predictions"] == len(good) + 1 and counters["deadletter"] == len(expected_reasons)
    assert "internal_error" not in counters["deadletter_reasons"]


def test_an_unexpected_error_dead_letters_one_record_only(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    """A bug hit by one record (here: the spool raising for one device) -> internal_error, the rest flows."""
    rows = read_rows(edge_models.test_csv, 3100, 20)
    values = [reading_json(r, "t1") for r in rows] + [reading_json(rows[0], "boom")]
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    produce(kafka_bootstrap, cfg["topics"]["readings"], values)
    running = AppThread(cfg)
    add = running.app.spool.add

    def flaky_add(reading, *forecasts):
        if reading.device == "boom":
            raise RuntimeError("simulated bug")
        add(reading, *forecasts)

    running.app.spool.add = flaky_add
    with running:
        dead = collect(kafka_bootstrap, cfg["topics"]["deadletter"], 1, timeout=30)
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], len(rows), timeout=30)
        counters = running.stop()
    assert [d["reason"] for d in dead] == ["internal_error"] and "simulated bug" in dead[0]["detail"]
    assert [p["timestamp"] for p in preds] == [r["Date_time"] for r in rows]
    assert counters["deadletter_reasons"] == {"internal_error": 1}
