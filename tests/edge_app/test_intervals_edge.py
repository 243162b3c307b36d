"""Against the real broker: every prediction carries calibrated intervals around its hybrid forecast (from the
first forecast on: the batch manifest's interval warm start), exactly the shared
:class:`~model_contract.conformal.ConformalInterval` replayed offline; readings outside the interval forecast
for them are flagged once the run reaches ``min_run`` (field, one event, counters); metrics carry coverage."""

from __future__ import annotations

import json

import pytest

from hybridstream.devtools.edge import collect, edge_config, produce, read_rows, reading_json
from model_contract import Manifest
from model_contract.conformal import WARM_KEY, ConformalInterval
from tests.edge_app.helpers import AppThread

pytestmark = pytest.mark.kafka

N = 160
GLITCH = 10.0  # degC added to the target: far outside any interval
LONE, RUN = 100, (130, 131, 132, 133, 134)  # one glitch (it spoils a few forecasts: not a run of 4), then a ramp


def test_predictions_carry_intervals_and_flag_runs_outside_them(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    rows = read_rows(edge_models.test_csv, 3000, N)
    for k, i in enumerate((LONE, *RUN)):
        rows[i] = dict(rows[i], Ot_avg=str(float(rows[i]["Ot_avg"]) + GLITCH * max(k, 1)))
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, metrics_interval_s=0.2)
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "T1") for r in rows], [b"T1"] * N)
    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], N, timeout=60)
        counters = running.stop()
    assert len(preds) == N and counters["interval_warm_starts"] == 1
    warm = Manifest.load(edge_models.batch.with_name("manifest.json")).extra[WARM_KEY]
    assert warm["rows"] == 600 - 2 and warm["scale"] > 0

    # the intervals are the shared learner's, replayed offline over the records' own forecasts and truths
    ci = ConformalInterval.from_state(warm)
    issued = None
    for i, p in enumerate(preds):
        if i > 0 and preds[i - 1]["forecast"]:
            ci.learn_one(preds[i - 1]["forecast"]["hybrid"] - p["actual"], issued)
        if not p["forecast"]:
            assert p["interval"] is None
            continue
        issued = ci.half_widths()
        h = p["forecast"]["hybrid"]
        want = {k: [h - w, h + w] for k, w in zip(ci.keys, issued, strict=True)}
        assert set(p["interval"]) == {"0.8", "0.95"}
        for k in want:
            assert p["interval"][k] == pytest.approx(want[k], rel=1e-7, abs=1e-9)
        assert p["interval"]["0.95"][0] < p["interval"]["0.8"][0] < h < p["interval"]["0.8"][1]
    assert preds[1]["interval"] is not None  # the first forecast already has one (warm start)

    assert all(p["anomaly"] is None for p in preds[LONE : LONE + 10])  # a glitch: not flagged
    assert all(p["anomaly"] is None for p in preds[RUN[0] : RUN[3]])
    flagged = preds[RUN[3]]["anomaly"]  # the 4th reading outside in a row (min_run 4)
    assert flagged["level"] == 0.95 and flagged["run"] == 4
    assert flagged["distance"] == pytest.approx(preds[RUN[3]]["actual"] - preds[RUN[3] - 1]["interval"]["0.95"][1])
    assert counters["anomaly_events"] >= 1 and counters["anomalies"] >= 1

    events = [e for e in collect(kafka_bootstrap, cfg["topics"]["events"], 100, timeout=5) if e["event"] == "anomaly"]
    assert any(e["device"] == "T1" and e["timestamp"] == rows[RUN[3]]["Date_time"] for e in events)
    metrics = collect(kafka_bootstrap, cfg["topics"]["metrics"], 1000, timeout=5)
    last_all = [m for m in metrics if m["scope"] == "all"][-1]
    assert set(last_all["intervals"]["coverage"]) == {"0.8", "0.95"} and last_all["intervals"]["n"] > 100
    assert 0.5 < last_all["intervals"]["coverage"]["0.8"] <= last_all["intervals"]["coverage"]["0.95"] <= 1
    device = [m for m in metrics if m["scope"] == "device"][-1]
    assert device["intervals"]["anomalies"] == counters["anomalies"]


def test_intervals_can_be_switched_off(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    rows = read_rows(edge_models.test_csv, 0, 5)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, intervals=None)
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "T1") for r in rows], [b"T1"] * 5)
    with AppThread(cfg) as running:
        preds = collect(kafka_bootstrap, cfg["topics"]["predictions"], 5, timeout=60)
        running.stop()
    assert [p["interval"] for p in preds] == [None] * 5 and all(p["anomaly"] is None for p in preds)
    assert json.loads(json.dumps(preds[-1]))["forecast"] is not None
