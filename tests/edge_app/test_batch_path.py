"""The batch path (each polled batch stage by stage, both models invoked once per batch) gives what the
per-record path gives, on the real broker: the same predictions in the same order (forecasts to 1e-9),
dead letters, drift and swap events, windows spooled for re-training, device states and counters.

Both apps get the same real consumed records in the same batches (sizes from 1 to 400), with what
changes state inside a batch: several devices interleaved unevenly (a device's lag windows built from
its earlier readings of the same batch), bad records (dead-lettered), a duplicate and an out-of-order
reading, a gap that restarts a lag window, a level shift that sets off drift alarms (early window
closes), full windows closing, a speed model swapped in between two batches whose absurd forecasts roll
it back in the middle of one, and a good swap later (pending forecasts of the old model not learned).
The product's default spec (calendar features) and combiner (context stacking). Their linear models run the
compiled kernel (model_contract/online_linear_kernel.py); with the numpy code instead (``numpy``: a Pi without
a compiler) the batch path steps the linear models of several devices together (edge_app.rounds), in a bank
that grows on the way (6 devices, 4 rows at first).
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from edge_app import loop
from edge_app.app import EdgeApp
from edge_app.config import EdgeConfig
from edge_app.device_store import save_device_state
from edge_app.models import load_model
from hybridstream.devtools.edge import (
    absurd_manifest,
    collect,
    edge_config,
    produce,
    read_rows,
    reading_json,
    save_model,
)
from model_contract import Manifest

pytestmark = pytest.mark.kafka
BATCHES = (1, 3, 120, 2, 97, 40, 1, 250, 5, 128, 64, 1, 200)  # record counts of the consumed batches, cycled
ABSURD_AT, GOOD_AT = 0.15, 0.75  # swaps at the first batch boundary after this share of the records
TIMING = ("latency_us", "lag_ms")  # the only fields allowed to differ (time measured, not computed)


def _variant(model: Path, root: Path, version: str, shift: float, stretch: float) -> Path:
    """``model``'s bytes under a new version whose target mean moves ``shift`` scales and scale ``stretch``x."""
    good = Manifest.load(model.with_name("manifest.json")).to_dict()
    scaler = dict(good["scaler"])
    scale, mean = list(scaler["scale"]), list(scaler["mean"])
    target = int(scaler["target_index"])
    mean[target] += shift * scale[target]
    scale[target] *= stretch
    now = datetime.now(UTC).isoformat()
    new = {**good, "version": version, "scaler": {**scaler, "scale": scale, "mean": mean}, "created_at": now}
    return save_model(model.read_bytes(), Manifest.from_dict(new), root)


def _stream(turbine_dir: Path, devices: int, per_device: int) -> list[tuple[bytes, bytes]]:
    """(value, key) of every reading, devices interleaved unevenly, with bad records and state changes."""
    rng = random.Random(devices)
    rows = read_rows(turbine_dir / "test.csv", 3000, per_device + 20)
    queues = []
    for d in range(devices):
        device = f"dev-{d}"
        mine = [dict(r) for r in rows[: per_device + 12]]
        if d == 0:
            del mine[60:72]  # a two-hour gap (readings 10 min apart; max_gap_s 3600): the lag window restarts
        if d == devices - 1:
            for r in mine[per_device // 2 :]:  # a level shift: the hybrid residual grows, drift alarms
                r["Ot_avg"] = str(float(r["Ot_avg"]) + 6.0)
        values = [reading_json(r, device) for r in mine[:per_device]]
        values.insert(30, values[29])  # a duplicate timestamp and an out-of-order reading: dead-lettered
        values.insert(41, values[20])
        queues.append([(v, device.encode()) for v in values])
    out: list[tuple[bytes, bytes]] = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        for _ in range(rng.randint(1, 12)):  # runs of one device, then another
            if q:
                out.append(q.pop(0))
    for i in range(17, len(out), 151):  # bad records here and there: invalid JSON, a value out of range
        out.insert(i, (b'{"device": "dev-0", "Date_time": ', b"dev-0"))
    out.insert(333, (out[333][0].replace(b'"Ot_avg": ', b'"Ot_avg": 1e9, "x": '), out[333][1]))
    return out


def _config(tmp_path: Path, bootstrap: str, prefix: str, readings: str, models: Any, process: str) -> dict:
    cfg = edge_config(
        tmp_path / process,
        bootstrap,
        f"{prefix}{process}.",
        models,
        process=process,
        max_gap_s=3600,
        drift={"detector": "cusum", "warmup": 20, "h": 4.0, "cooldown": 20, "residual": "hybrid"},
        windows={"max_records": 37, "early_on_drift": True, "local_root": str(tmp_path / process / "uploads")},
    )
    cfg["topics"]["readings"] = readings
    return cfg


def _consume_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    msgs: list = []
    try:
        for _ in range(200):
            msgs += [m for m in consumer.consume(1000, 0.2) if m.error() is None]
            if len(msgs) >= count:
                break
    finally:
        consumer.close()
    assert len(msgs) == count
    return msgs


def _drive(cfg: dict, msgs: list, absurd: Path, good: Path) -> tuple[EdgeApp, dict]:
    """One app through the records in the fixed batches, a commit point after each, the swaps between two."""
    app = EdgeApp(EdgeConfig.from_dict(cfg))
    swaps = [(int(ABSURD_AT * len(msgs)), absurd), (int(GOOD_AT * len(msgs)), good)]
    i = k = 0
    while i < len(msgs):
        if swaps and i >= swaps[0][0]:  # between two batches, as the loop swaps
            app.swap_speed(load_model(str(swaps.pop(0)[1]), spec=app.spec))
        size = BATCHES[k % len(BATCHES)]
        app.process(msgs[i : i + size])
        loop.commit_point(app)
        i += size
        k += 1
    states = {
        d: (
            save_device_state(s, ("b", "s")),
            {"stack": s.combiner.model.state(), "layer": s.combiner.expert_weights},  # the pair layer's weights
            (s.stats.snapshot(), s.band.snapshot()),
        )
        for d, s in app.devices.items()
    }
    app._shutdown()  # noqa: SLF001 (as after SIGTERM: windows closed, outputs delivered)
    return app, states


def _close(a, b, path: str = "") -> None:
    """Equal, floats to 1e-9."""
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[str(path.relative_to(root))] = gzip.decompress(data) if path.suffix == ".gz" else data
    return out


@pytest.mark.parametrize(
    ("devices", "backend", "blend"),
    [(6, "c", "none"), (1, "c", "none"), (6, "numpy", "none"), (6, "c", "pair"), (6, "numpy", "pair")],
)
def test_the_batch_path_equals_the_per_record_path(
    kafka_bootstrap, topic_prefix, calendar_models, turbine_dir, tmp_path, devices, backend, blend, request
):
    request.getfixturevalue("compiled_linear" if backend == "c" else "numpy_linear")
    stream = _stream(turbine_dir, devices, 420 // devices + 120)
    readings = topic_prefix + "readings"
    produce(kafka_bootstrap, readings, [v for v, _ in stream], [k for _, k in stream])
    msgs = _consume_all(kafka_bootstrap, readings, len(stream))
    models = calendar_models
    absurd = save_model(models.speed.read_bytes(), absurd_manifest(models.speed), tmp_path / "absurd")
    good = _variant(models.speed, tmp_path / "good", "speed-b", 0.05, 1.01)
    runs = {}
    for process in ("record", "batch"):
        cfg = _config(tmp_path, kafka_bootstrap, topic_prefix, readings, models, process)
        cfg["combination"] = {"strategy": "dynamic", "blend": blend}  # pair: the layer over the stack and its twin
        app, states = _drive(cfg, msgs, absurd, good)
        if process == "batch":  # numpy, several devices: their linear models stepped together (rounds of one: alone)
            assert len(app.batch_buffers.bank) == (devices if devices > 1 and backend == "numpy" else 0)
        topics = cfg["topics"]
        counters = app.counters.to_dict()
        n_out = counters["predictions"]
        preds = collect(kafka_bootstrap, topics["predictions"], n_out, timeout=60)
        dead = collect(kafka_bootstrap, topics["deadletter"], counters["deadletter"], timeout=30)
        n_events = 1 + sum(counters[k] for k in ("drift_events", "swaps", "rollbacks", "windows_uploaded"))
        events = collect(
            kafka_bootstrap, topics["events"], n_events, timeout=30
        )  # + stopped (run() sends started: not called)
        runs[process] = {
            "preds": [{k: v for k, v in p.items() if k not in TIMING} for p in preds],
            "dead": [{k: v for k, v in d.items() if k != "at"} for d in dead],
            "events": [
                {k: v for k, v in e.items() if k != "at"}
                for e in events
                if e["event"]
                in ("drift", "anomaly", "model_swapped", "model_rolled_back")  # the loop's (the uploader's: files)
            ],
            "counters": {k: v for k, v in counters.items() if k not in ("stage_us", "batches")},
            "states": states,
            "files": _files(Path(cfg["windows"]["local_root"])),
        }
    record, batch = runs["record"], runs["batch"]
    # the stream exercised what it is meant to
    c = record["counters"]
    assert c["predictions"] == len(record["preds"]) > 300 and c["records_in"] == len(stream)
    assert c["deadletter_reasons"].keys() >= {"invalid_json", "duplicate_timestamp", "out_of_order", "out_of_range"}
    assert c["drift_events"] >= 1 and c["windows_closed"] >= 5 and c["rollbacks"] == 1 and c["swaps"] == 2, c
    assert c["gap_resets"] == 1
    versions = [p["models"]["speed"] for p in record["preds"]]
    assert 20 <= versions.count("absurd") <= 30 and "speed-b" in versions  # rolled back inside a batch
    # ... and the batch path did all of it the same way
    assert len(batch["preds"]) == len(record["preds"])
    for i, (a, b) in enumerate(zip(batch["preds"], record["preds"], strict=True)):
        _close(a, b, f"prediction {i}")
    assert batch["dead"] == record["dead"]
    _close(batch["events"], record["events"], "events")
    assert batch["counters"] == record["counters"]
    assert batch["states"].keys() == record["states"].keys()
    for device in record["states"]:
        saved_b, model_b, stats_b = batch["states"][device]
        saved_r, model_r, stats_r = record["states"][device]
        assert json.loads(saved_b) == json.loads(saved_r)
        _close(model_b, model_r, device)
        assert len(model_r["layer"]) == (2 if blend == "pair" else 0)
        assert stats_b == stats_r
    assert batch["files"] == record["files"]


def test_a_batched_invoke_forecasts_each_window_as_a_batch_of_one(calendar_models, turbine_dir):
    """TFLiteModel.predict_batch (one invoke per chunk of rows) against predict_one, bit for bit, in chunks
    of every size the edge uses (one, a few, a full chunk and a remainder) and back to one at a time."""
    import numpy as np

    from model_contract import FeatureBuffer, default_spec
    from model_contract.calendar import parse_timestamp
    from model_contract.runtime import CHUNK, TFLiteModel

    spec = default_spec()
    buf = FeatureBuffer(spec)
    windows = []
    for row in read_rows(turbine_dir / "test.csv", 500, CHUNK + 60):
        buf.push(spec.parse_values(row), parse_timestamp(row["Date_time"]))
        if buf.ready:
            windows.append(buf.window.copy())
    windows = np.asarray(windows)
    for path in (calendar_models.batch, calendar_models.speed):
        model = TFLiteModel.from_files(path)
        one = np.asarray([model.predict_one(w) for w in windows])
        for n in (1, 2, 7, CHUNK, len(windows)):
            out = np.full(n, np.nan)
            assert np.array_equal(model.predict_batch(windows[:n], out), one[:n])
        assert model.batched and model.predict_one(windows[3]) == one[3]


def test_padded_batches_forecast_each_window_as_a_batch_of_one(calendar_models, turbine_dir):
    """predict_batch pads a partial chunk to its interpreter's size (model_contract.runtime.bucket): every
    size from 1 to a chunk and back, in an order that pads (small after big, sizes within PAD_SLACK), gives
    each window predict_one's forecast bit for bit, writes only ``out[:n]``, and resizes rarely (at 1,000/s
    the batches of 1-5 rows settle on one size)."""
    import numpy as np

    from model_contract import FeatureBuffer, default_spec
    from model_contract.calendar import parse_timestamp
    from model_contract.runtime import CHUNK, PAD_SLACK, TFLiteModel, bucket

    assert [bucket(r) for r in (1, 2, 3, 5, 16, 17, 33, 250, 255)] == [1, 2, 4, 8, 16, 32, 48, 256, 256]
    spec = default_spec()
    buf = FeatureBuffer(spec)
    windows = []
    for row in read_rows(turbine_dir / "test.csv", 900, 2 * CHUNK + 40):
        buf.push(spec.parse_values(row), parse_timestamp(row["Date_time"]))
        if buf.ready:
            windows.append(buf.window.copy())
    windows = np.asarray(windows)
    sizes = [5, 2, 3, 4, 2, 5] * 3 + list(range(6, 40)) + [CHUNK - 1, CHUNK - PAD_SLACK + 1, 100, 90, 2]
    sizes += [CHUNK, len(windows), CHUNK + 3, 2 * CHUNK, 7, 1, 9]
    for path in (calendar_models.batch, calendar_models.speed):
        model = TFLiteModel.from_files(path)
        one = np.asarray([model.predict_one(w) for w in windows])
        model.predict_batch(windows[:3], np.empty(3))  # the probe (part interpreter at 4 rows)
        model.resizes = 0
        for k, n in enumerate(sizes):
            lo = (k * 37) % (len(windows) - n + 1)  # other windows each time: stale rows would show
            out = np.full(n + 4, np.nan)
            model.predict_batch(windows[lo : lo + n], out)
            assert np.array_equal(out[:n], one[lo : lo + n]), n
            assert np.isnan(out[n:]).all()
        assert model.batched
        model.resizes = 0
        for n in [2, 5, 3, 4, 2, 5, 1, 3] * 20:  # the 1,000/s pattern: one size (8) serves them all
            model.predict_batch(windows[:n], np.empty(n))
        assert model.resizes <= 1
