"""At-least-once across a crash: SIGKILL the edge process mid-stream, restart, nothing left unpredicted."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from collections import defaultdict

import pytest

from hybridstream.devtools.edge import (
    Collector,
    edge_config,
    notice_for,
    produce,
    read_rows,
    reading_json,
    spawn_edge,
    wait_for,
    write_config,
)
from model_contract import Manifest
from model_contract.conformal import WARM_KEY, ConformalInterval
from tests.edge_app.helpers import committed_offset

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEVICES = ("t1", "t2")


def test_sigkill_mid_stream_then_restart_predicts_every_reading(kafka_bootstrap, topic_prefix, edge_models, tmp_path):
    rows = read_rows(edge_models.test_csv, 8000, 1200)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models, windows={"max_records": 150})
    config_path = write_config(tmp_path / "edge.json", **cfg)
    topics = cfg["topics"]
    inputs = {(d, r["Date_time"]) for d in DEVICES for r in rows}

    def feed() -> None:  # ~600 records/s for 4 s
        for start in range(0, len(rows), 60):
            chunk = rows[start : start + 60]
            produce(kafka_bootstrap, topics["readings"], [reading_json(r, d) for r in chunk for d in DEVICES])
            time.sleep(0.2)

    preds = Collector(kafka_bootstrap, topics["predictions"])
    preds.start()
    first = spawn_edge(config_path, tmp_path / "edge-1.log")
    second = None
    feeder = threading.Thread(target=feed)
    try:
        log1 = tmp_path / "edge-1.log"
        assert wait_for(lambda: "consuming" in log1.read_text(), timeout=30), log1.read_text()
        feeder.start()
        assert wait_for(lambda: len(preds.records) >= 500, timeout=60), log1.read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = len(preds.records)
        assert killed_at < len(inputs)  # really mid-stream
        second = spawn_edge(config_path, tmp_path / "edge-2.log")
        assert feeder.is_alive()  # the stream is still flowing while the app is down
        feeder.join()
        covered = lambda: inputs <= {(p["device"], p["timestamp"]) for p in list(preds.records)}  # noqa: E731
        assert wait_for(covered, timeout=60), (tmp_path / "edge-2.log").read_text()[-3000:]
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "edge-2.log").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        preds.stop()

    by_key = defaultdict(list)
    for p in preds.records:
        by_key[p["key"]].append(p)
    assert set(by_key) == {f"{d}|{ts}" for d, ts in inputs}  # every reading predicted, nothing else
    for dupes in by_key.values():  # replays after the crash carry the same idempotency key and reading
        assert len({(p["device"], p["timestamp"], p["actual"]) for p in dupes}) == 1
    # the restarted app resumed each device's lag window (state_dir/devices): no reading after the
    # first max_lag of a device was left without a forecast, before or after the crash
    max_lag = 2
    for d in DEVICES:
        for r in rows[max_lag - 1 :]:
            outs = by_key[f"{d}|{r['Date_time']}"]
            assert all(p["forecast"] is not None for p in outs), (d, r["Date_time"], outs)
    # the forecast intervals carried on across the crash (state_dir/devices): every interval is the one learner's,
    # from the batch manifest's warm start, over the readings in the order the app processed them (up to its
    # last saved state, then the replay)
    warm = Manifest.load(edge_models.batch.with_name("manifest.json")).extra[WARM_KEY]
    for d in DEVICES:
        _assert_one_interval_learner([p for p in preds.records if p["device"] == d], warm)
    # graceful shutdown printed the counters; the windows (incl. those recovered after the kill) cover every reading
    log2 = (tmp_path / "edge-2.log").read_text()
    assert '"predictions"' in log2.strip().splitlines()[-1]
    uploaded = set()
    for path in (tmp_path / "uploads").rglob("*.csv"):
        with open(path, newline="") as fh:
            uploaded |= {(r["device"], r["Date_time"]) for r in csv.DictReader(fh)}
    assert inputs <= uploaded
    assert not list((tmp_path / "state" / "windows" / "ready").glob("*.csv"))  # all uploaded


def test_a_notice_consumed_before_a_crash_is_finished_after_restart(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path
):
    """The notice's offset is committed while the model is still being fetched; SIGKILL; the restart swaps."""
    rows = read_rows(edge_models.test_csv, 6000, 400)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    config_path = write_config(tmp_path / "edge.json", **cfg)
    topics = cfg["topics"]
    incoming = tmp_path / "incoming" / "model.tflite"
    incoming.parent.mkdir()
    os.mkfifo(incoming)  # the fetch blocks here (a stalled download) until the test puts the model in place
    notice = notice_for(edge_models.speed2, model=str(incoming))
    v2 = Manifest.load(edge_models.speed2.with_name("manifest.json")).version
    pointer = tmp_path / "state" / "speed-model.json"
    first = spawn_edge(config_path, tmp_path / "edge-1.log")
    second = None
    try:
        log1 = tmp_path / "edge-1.log"
        assert wait_for(lambda: "consuming" in log1.read_text(), timeout=30), log1.read_text()
        produce(kafka_bootstrap, topics["notices"], [json.dumps(notice).encode()])
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[:200]])
        committed = lambda: committed_offset(kafka_bootstrap, cfg["group_id"], topics["notices"]) >= 1  # noqa: E731
        assert wait_for(committed, timeout=30), log1.read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert not pointer.exists()  # it never swapped
        incoming.unlink()
        shutil.copyfile(edge_models.speed2, incoming)
        second = spawn_edge(config_path, tmp_path / "edge-2.log")
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[200:]])
        swapped = lambda: pointer.exists() and json.loads(pointer.read_text())["version"] == v2  # noqa: E731
        assert wait_for(swapped, timeout=30), (tmp_path / "edge-2.log").read_text()[-3000:]
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "edge-2.log").read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert json.loads((tmp_path / "state" / "notices-pending.json").read_text()) == []


def _assert_one_interval_learner(records: list[dict], warm: dict) -> None:
    """``records`` of one device in the order they were produced: the first run's, then (from the first key seen
    again) the restarted app's. Replayed through one :class:`ConformalInterval`, each record's interval is the one
    it issued: the restarted app resumed the saved learner and the saved pending forecast's interval."""
    seen: set[str] = set()
    replay_from = next((i for i, p in enumerate(records) if p["key"] in seen or seen.add(p["key"])), len(records))
    first = {p["key"]: i for i, p in enumerate(records[:replay_from])}
    resumed_at = first[records[replay_from]["key"]] if replay_from < len(records) else replay_from
    order = records[:resumed_at] + records[replay_from:]  # what the learner saw
    assert resumed_at > 100 and len(order) > 1000  # the crash came after the device had learned
    ci = ConformalInterval.from_state(warm)
    issued = None
    for prev, p in zip([None, *order], order, strict=False):
        if prev is not None and prev["forecast"]:
            ci.learn_one(prev["forecast"]["hybrid"] - p["actual"], issued)
        issued = ci.half_widths() if p["forecast"] else None
        if issued is not None:
            h = p["forecast"]["hybrid"]
            for k, w in zip(ci.keys, issued, strict=True):
                assert p["interval"][k] == pytest.approx([h - w, h + w], rel=1e-7, abs=1e-9), (p["key"], k)
