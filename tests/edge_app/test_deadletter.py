"""Bad input never stops the app: each kind goes to deadletter with its reason; good readings still flow."""

from __future__ import annotations

import base64
import json

import pytest

from edge_app.devtools import read_rows, reading_json
from tests.edge_app.helpers import AppThread, collect, edge_config, produce

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
