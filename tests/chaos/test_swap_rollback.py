"""A speed model that passes every check before serving but forecasts absurd values is rolled back
after the swap (edge_app.swap.SwapGuard): the previous model serves again, nothing is dropped."""

from __future__ import annotations

import json

import pytest

from edge_app.admission import value_bounds
from edge_app.models import load_model
from edge_app.swap import SpeedModelSwapper
from hybridstream.devtools.edge import (
    absurd_manifest,
    collect,
    edge_config,
    notice_for,
    produce,
    read_rows,
    reading_json,
    save_model,
    wait_for,
)
from model_contract import FeatureBuffer, Manifest, rows_to_matrix
from model_contract.runtime import TFLiteModel
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka


def test_the_absurd_model_forecasts_out_of_the_guards_range_on_every_window(edge_models):
    """The fault the chaos scenario and the test below swap in is absurd whatever the data: every forecast on
    the chaos stream's rows is outside the guard's range, so the guard rolls it back at the same forecast
    wherever the swap lands (a stretched target scale alone left some swap points under the guard's 20%)."""
    batch = Manifest.load(edge_models.batch.with_name("manifest.json"))
    target = batch.scaler.target_index
    lo, hi = (b[target] for b in value_bounds(batch, 50.0))  # the edge's default (out_of_range_k unset)
    model = TFLiteModel.from_manifest(edge_models.speed2.read_bytes(), absurd_manifest(edge_models.speed2))
    buffer = FeatureBuffer(batch.feature_spec)
    matrix = rows_to_matrix(read_rows(edge_models.test_csv, 0, 3000), batch.feature_spec)
    forecasts = []
    for i, values in enumerate(matrix):
        buffer.push(values, 1.6e9 + 600.0 * i)
        if buffer.ready:
            forecasts.append(model.predict_one(buffer.window))
    inside = [f for f in forecasts if lo <= f <= hi]
    assert len(forecasts) > 2900 and not inside, (len(inside), lo, hi)


def test_absurd_forecasts_after_a_swap_roll_back_to_the_previous_model(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path
):
    rows = read_rows(edge_models.test_csv, 2000, 900)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    topics = cfg["topics"]
    v1 = Manifest.load(edge_models.speed.with_name("manifest.json")).version
    bad = edge_models.speed2
    absurd = notice_for(save_model(bad.read_bytes(), absurd_manifest(bad), tmp_path / "bad"), published_at=2e9)
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
    assert versions.count("absurd") == 20  # each forecast out of range: the 21st trips the guard (> 20 of 100)
    assert versions[-1] == v1 and versions[:300] == [v1] * 300
    (rolled,) = [e for e in events if e["event"] == "model_rolled_back"]
    assert rolled["bad_version"] == "absurd" and rolled["restored_version"] == v1
    rejected = [e for e in events if e["event"] == "model_rejected"]
    assert rejected and "rolled back" in rejected[0]["reason"]
    assert counters["rollbacks"] == 1 and counters["swaps"] == 1
    assert json.loads((tmp_path / "state" / "speed-model.json").read_text())["version"] == v1


def test_a_version_rolled_back_while_its_replayed_notice_was_verified_is_not_swapped_in_again(edge_models, tmp_path):
    """The same notice can come twice (the Kafka topic and MQTT, a redelivery): the second one may be in
    verification while the first swaps in and is rolled back. The loop must not take it and swap the refused
    version in again: it is rejected with the reason and its notice finished."""
    events = []
    batch = Manifest.load(edge_models.batch.with_name("manifest.json"))
    bad = save_model(edge_models.speed2.read_bytes(), absurd_manifest(edge_models.speed2), tmp_path / "bad")
    swapper = SpeedModelSwapper(
        batch.feature_spec,
        model_name="speed",
        events=lambda kind, **fields: events.append((kind, fields)),
        journal=tmp_path / "pending.json",
    )
    try:
        assert swapper.submit(notice_for(bad, published_at=2e9))  # the replay, verified while ...
        assert swapper.wait_idle(30) and swapper.ready is not None
        previous = load_model(str(edge_models.speed), spec=batch.feature_spec)
        swapper.roll_back("absurd", previous, 0.0)  # ... the first one swapped in and was rolled back
        assert swapper.take() is None
        reasons = [fields["reason"] for kind, fields in events if kind == "model_rejected"]
        assert reasons == ["version absurd was rolled back after a swap"]
        assert json.loads((tmp_path / "pending.json").read_text()) == []  # finished: a restart does not replay it
    finally:
        swapper.close()
