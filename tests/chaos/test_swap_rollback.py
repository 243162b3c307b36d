"""A speed model that passes every check before serving but forecasts absurd values is rolled back
after the swap (edge_app.swap.SwapGuard): the previous model serves again, nothing is dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hybridstream.devtools.edge import (
    collect,
    edge_config,
    notice_for,
    produce,
    read_rows,
    reading_json,
    save_model,
    wait_for,
)
from model_contract import Manifest
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka


def _absurd(model, root):
    """speed2's bytes under a manifest whose target mean is 1,000 scales off and scale 10,000x: finite
    forecasts (the probe passes) around 5,000 degC."""
    good = Manifest.load(model.with_name("manifest.json")).to_dict()
    scaler = dict(good["scaler"])
    scale = list(scaler["scale"])
    target = int(scaler.get("target_index", len(scale) - 1))
    mean = list(scaler["mean"])
    mean[target] += 1000 * scale[target]
    scale[target] *= 1e4
    now = datetime.now(UTC).isoformat()
    bad = {**good, "version": "absurd", "scaler": {**scaler, "scale": scale, "mean": mean}, "created_at": now}
    return save_model(model.read_bytes(), Manifest.from_dict(bad), root)


def test_absurd_forecasts_after_a_swap_roll_back_to_the_previous_model(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path
):
    rows = read_rows(edge_models.test_csv, 2000, 900)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    topics = cfg["topics"]
    v1 = Manifest.load(edge_models.speed.with_name("manifest.json")).version
    absurd = notice_for(_absurd(edge_models.speed2, tmp_path / "bad"), published_at=2e9)
    with AppThread(cfg) as running:
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[:300]])
        assert wait_for(lambda: running.app.counters.predictions >= 300, timeout=30)
        produce(kafka_bootstrap, topics["notices"], [json.dumps(absurd).encode()])
        assert wait_for(lambda: running.app.counters.swaps >= 1, timeout=30)
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[300:600]])
        assert wait_for(lambda: running.app.counters.rollbacks >= 1, timeout=30)
        produce(kafka_bootstrap, topics["notices"], [json.dumps(absurd).encode()])  # announced again: refused
        assert wait_for(lambda: running.app.counters.rejected_models >= 1, timeout=30)
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[600:]])
        preds = collect(kafka_bootstrap, topics["predictions"], len(rows), timeout=60)
        events = collect(kafka_bootstrap, topics["events"], 5, timeout=10)
        counters = running.stop()
    assert [p["timestamp"] for p in preds] == [r["Date_time"] for r in rows]  # nothing dropped
    versions = [p["models"]["speed"] for p in preds]
    assert 0 < versions.count("absurd") <= 100  # rolled back within the guard's window of 100 forecasts
    assert versions[-1] == v1 and versions[:300] == [v1] * 300
    (rolled,) = [e for e in events if e["event"] == "model_rolled_back"]
    assert rolled["bad_version"] == "absurd" and rolled["restored_version"] == v1
    rejected = [e for e in events if e["event"] == "model_rejected"]
    assert rejected and "rolled back" in rejected[0]["reason"]
    assert counters["rollbacks"] == 1 and counters["swaps"] == 1
    assert json.loads((tmp_path / "state" / "speed-model.json").read_text())["version"] == v1
