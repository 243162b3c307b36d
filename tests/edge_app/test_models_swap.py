"""Speed-model hot swap under load, and bad models rejected while the old one keeps serving."""

from __future__ import annotations

import json
import threading
import time

import pytest

from hybridstream.devtools.edge import (
    collect,
    edge_config,
    expected_forecasts,
    notice_for,
    produce,
    read_rows,
    reading_json,
    save_model,
    train_model,
    wait_for,
)
from model_contract import FeatureSpec, Manifest, sha256_bytes
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka


def _version(model_path) -> str:
    return Manifest.load(model_path.with_name("manifest.json")).version


def test_hot_swap_under_load_drops_nothing(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    rows = read_rows(edge_models.test_csv, 3000, 2500)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    topics = cfg["topics"]
    v1, v2 = _version(edge_models.speed), _version(edge_models.speed2)

    def feed() -> None:  # ~2,500 records/s for one second, the notice in the middle of it
        for start in range(0, len(rows), 250):
            produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[start : start + 250]])
            if start == 1000:
                produce(kafka_bootstrap, topics["notices"], [json.dumps(notice_for(edge_models.speed2)).encode()])
            time.sleep(0.1)

    with AppThread(cfg) as running:
        feeder = threading.Thread(target=feed)
        feeder.start()
        feeder.join()
        preds = collect(kafka_bootstrap, topics["predictions"], len(rows), timeout=60)
        events = collect(kafka_bootstrap, topics["events"], 2, timeout=10)
        counters = running.stop()

    assert [p["timestamp"] for p in preds] == [r["Date_time"] for r in rows]  # no drop, no duplicate
    speed_versions = [p["models"]["speed"] for p in preds]
    first_new = speed_versions.index(v2)
    assert 0 < first_new < len(rows) - 100
    assert set(speed_versions[:first_new]) == {v1} and set(speed_versions[first_new:]) == {v2}
    # each record was forecast entirely by the model it names (the swap happens between two records)
    old, new = expected_forecasts(rows, edge_models.speed), expected_forecasts(rows, edge_models.speed2)
    for i, p in enumerate(preds[1:], start=1):
        want = old[i] if p["models"]["speed"] == v1 else new[i]
        assert p["forecast"]["speed"] == pytest.approx(want, rel=1e-5, abs=1e-5)
    swapped = [e for e in events if e["event"] == "model_swapped"]
    assert swapped and swapped[0]["old_version"] == v1 and swapped[0]["new_version"] == v2
    assert counters["swaps"] == 1
    # a restart resumes the swapped-in model (kept in the state folder), not the configured one
    pointer = json.loads((tmp_path / "state" / "speed-model.json").read_text())
    assert pointer["version"] == v2


def test_bad_models_are_rejected_and_the_old_one_keeps_serving(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    spec = FeatureSpec()
    good = Manifest.load(edge_models.speed2.with_name("manifest.json"))
    bad_root = tmp_path / "bad"

    # 1. checksum in the notice does not match the file
    bad_checksum = notice_for(edge_models.speed2, sha256="0" * 64)
    # 2. a real model with a different input shape (3 lags) under a manifest that claims the running spec
    three = train_model(
        read_rows(edge_models.test_csv, 0, 300),
        bad_root / "three",
        name="speed",
        kind="speed",
        spec=FeatureSpec(lags=(1, 2, 3)),
    )
    tflite = three.read_bytes()
    shape_manifest = Manifest.from_dict({**good.to_dict(), "version": "wrongshape", "sha256": sha256_bytes(tflite)})
    wrong_shape = notice_for(save_model(tflite, shape_manifest, bad_root))
    # 3. garbage bytes with a matching checksum
    junk = b"\x00not a flatbuffer" * 100
    junk_manifest = Manifest.from_dict({**good.to_dict(), "version": "garbage", "sha256": sha256_bytes(junk)})
    garbage = notice_for(save_model(junk, junk_manifest, bad_root))
    # 4. a sound model whose feature spec differs from the running one (lags 1 and 3)
    content = edge_models.speed2.read_bytes()
    other = {**good.to_dict(), "version": "otherspec"}
    other["feature_spec"] = {**spec.to_dict(), "lags": [1, 3]}
    other_spec = notice_for(save_model(content, Manifest.from_dict(other), bad_root))
    # 5. a notice that is not even a notice
    notices = [bad_checksum, wrong_shape, garbage, other_spec]

    rows = read_rows(edge_models.test_csv, 5000, 300)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    topics = cfg["topics"]
    with AppThread(cfg) as running:
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[:150]])
        produce(kafka_bootstrap, topics["notices"], [json.dumps(n).encode() for n in notices] + [b"{oops"])
        assert wait_for(lambda: running.app.counters.rejected_models >= 5, timeout=30)
        nowhere = {"name": "speed", "model": "/nowhere/model.tflite", "sha256": "a" * 64}
        assert running.app.submit_notice(nowhere) is True
        assert wait_for(lambda: running.app.counters.rejected_models >= 6, timeout=30)
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[150:]])
        preds = collect(kafka_bootstrap, topics["predictions"], len(rows), timeout=60)
        events = collect(kafka_bootstrap, topics["events"], 7, timeout=10)
        counters = running.stop()

    rejected = {_which(e["notice"]): e["reason"] for e in events if e["event"] == "model_rejected"}
    assert len(rejected) == 6, rejected
    assert "sha256 mismatch" in rejected[good.version]
    assert "input shape" in rejected["wrongshape"]
    assert "not a loadable TFLite model" in rejected["garbage"]
    assert "feature spec differs" in rejected["otherspec"]
    assert "no model location" in rejected["invalid"]
    assert "cannot fetch" in rejected["nowhere"]
    assert len(preds) == len(rows)
    assert {p["models"]["speed"] for p in preds} == {_version(edge_models.speed)}
    assert counters["swaps"] == 0 and counters["rejected_models"] == 6


def _which(notice: dict) -> str:
    if "invalid" in notice:
        return "invalid"
    if notice.get("model", "").startswith("/nowhere"):
        return "nowhere"
    return notice["version"]
