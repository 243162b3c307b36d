"""Train -> convert -> parity -> guardrail -> publish, against the real local S3 (Ceph radosgw)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from model_contract import Manifest, Scaler, sha256_bytes
from model_contract.runtime import TFLiteModel
from training_job.pipeline import train_window
from training_job.windows import parse_window, window_to_csv

from .conftest import SPEC

pytestmark = pytest.mark.s3


def _get(s3, bucket, key) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _keys(s3, bucket) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_happy_path_publishes_model_manifest_and_latest(turbine_rows, tiny_options, store, tmp_path):
    window = parse_window(turbine_rows.csv(0, 300), SPEC, source="s3://w/windows/pi-1/x.csv")
    out = train_window(window, tiny_options, store=store, out_dir=tmp_path)
    assert out.status == "published", out.reason
    s3, bucket, v = store.s3, store.bucket, out.version
    # order-independent check of the layout; publication order is asserted in test_publish_order
    assert _keys(s3, bucket) == [
        f"models/speed/{v}/manifest.json",
        f"models/speed/{v}/model.tflite",
        "models/speed/LATEST",
    ]
    tflite = _get(s3, bucket, f"models/speed/{v}/model.tflite")
    raw = json.loads(_get(s3, bucket, f"models/speed/{v}/manifest.json"))
    for field in ("version", "sha256", "created_at", "window", "feature_spec", "scaler", "metrics",
                  "parity_max_abs_diff", "packages", "training_seconds", "hyperparameters"):  # fmt: skip
        assert raw.get(field) not in (None, "", {}), field
    manifest = Manifest.from_dict(raw)
    assert manifest.version == v and manifest.sha256 == sha256_bytes(tflite) and manifest.kind == "speed"
    assert manifest.window["rows"] == 300 and manifest.window["device"] == "T1"
    assert manifest.window["first_ts"] == turbine_rows.timestamps[0]
    assert manifest.window["last_ts"] == turbine_rows.timestamps[299]
    assert manifest.feature_spec == SPEC and manifest.metrics["holdout_rows"] == 60
    # scaler fitted on the training rows only: 298 samples - 60 held out = 238, using rows 0..239
    assert manifest.scaler == Scaler.fit(turbine_rows.matrix[:240], SPEC.target_index)
    assert manifest.scaler != Scaler.fit(turbine_rows.matrix[:300], SPEC.target_index)
    assert manifest.metrics["rmse"] > 0 and manifest.metrics["mae"] > 0
    assert 0 <= manifest.parity_max_abs_diff <= 1e-4
    assert "tensorflow-cpu" in manifest.packages or "tensorflow" in manifest.packages
    assert manifest.extra["guardrail"]["status"] == "first"
    assert json.loads(_get(s3, bucket, "models/speed/LATEST"))["version"] == v
    # the edge's lightweight runtime serves it, with the manifest's scaler
    model = TFLiteModel.from_manifest(tflite, manifest)
    pred = model.predict_one(turbine_rows.matrix[298:300])
    assert np.isfinite(pred) and abs(pred - turbine_rows.matrix[300, 4]) < 15
    assert (tmp_path / "speed" / v / "model.tflite").read_bytes() == tflite


def test_same_window_twice_gives_one_version(turbine_rows, tiny_options, store):
    data = turbine_rows.csv(300, 200)
    first = train_window(parse_window(data, SPEC), tiny_options, store=store)
    latest = _get(store.s3, store.bucket, "models/speed/LATEST")
    second = train_window(parse_window(data, SPEC), tiny_options, store=store)
    assert first.status == "published" and second.status == "exists"
    assert second.version == first.version and "already published" in second.reason
    assert second.seconds < 2  # decided before training
    assert len([k for k in _keys(store.s3, store.bucket) if k.endswith("manifest.json")]) == 1
    assert _get(store.s3, store.bucket, "models/speed/LATEST") == latest


def test_parity_above_tolerance_is_refused(turbine_rows, tiny_options, store):
    strict = dataclasses.replace(tiny_options, parity_tolerance=1e-12)
    out = train_window(parse_window(turbine_rows.csv(500, 200), SPEC), strict, store=store)
    assert out.status == "rejected" and out.reason.startswith("parity: max |Keras - TFLite|")
    keys = _keys(store.s3, store.bucket)
    assert keys == [f"rejected/speed/{out.version}/manifest.json", f"rejected/speed/{out.version}/model.tflite"]
    manifest = json.loads(_get(store.s3, store.bucket, keys[0]))
    assert manifest["extra"]["refused"] == out.reason and manifest["extra"]["parity_tolerance"] == 1e-12


def _garbage_targets(matrix: np.ndarray, seed: int, holdout_rows: int) -> np.ndarray:
    """The same readings, but the target column of the training part replaced by noise."""
    out = matrix.copy()
    rng = np.random.default_rng(seed)
    n_train = len(out) - holdout_rows
    out[:n_train, 4] = rng.normal(out[:, 4].mean() + 15, 10, n_train)
    return out


def test_guardrail_accepts_better_and_refuses_worse(turbine_rows, tiny_options, store, caplog):
    opts = dataclasses.replace(tiny_options, cfg=tiny_options.cfg.replace(epochs=12, lstm_units=16, patience=4))
    m, ts = turbine_rows.window(1000, 400)
    good = parse_window(turbine_rows.csv(1000, 400), SPEC)
    bad1 = parse_window(window_to_csv(_garbage_targets(m, 1, 80), ts, SPEC), SPEC)
    bad2 = parse_window(window_to_csv(_garbage_targets(m, 2, 80), ts, SPEC), SPEC)
    first = train_window(bad1, opts, store=store)  # nothing published yet: accepted as the first model
    assert first.status == "published" and first.manifest["extra"]["guardrail"]["status"] == "first"
    better = train_window(good, opts, store=store)
    g = better.manifest["extra"]["guardrail"]
    assert better.status == "published" and g["status"] == "accepted" and g["current_version"] == first.version
    assert g["candidate_rmse"] < g["current_rmse"]
    worse = train_window(bad2, opts, store=store)
    assert worse.status == "rejected" and worse.reason.startswith("guardrail: candidate RMSE")
    rejected = json.loads(_get(store.s3, store.bucket, f"rejected/speed/{worse.version}/manifest.json"))
    g = rejected["extra"]["guardrail"]
    assert g["status"] == "refused" and g["current_version"] == better.version
    assert g["candidate_rmse"] > g["current_rmse"] * (1 + g["margin"])  # both scores recorded
    assert json.loads(_get(store.s3, store.bucket, "models/speed/LATEST"))["version"] == better.version
    assert not store.is_published("speed", worse.version)
    assert any("refused" in r.getMessage() and worse.version in r.getMessage() for r in caplog.records)


def test_publish_order_is_model_then_manifest_then_latest(store, turbine_rows, tiny_options):
    calls = []
    real_put = store.s3.put_object

    def spy(**kw):
        calls.append(kw["Key"].rsplit("/", 1)[-1])
        return real_put(**kw)

    store.s3.put_object = spy
    out = train_window(parse_window(turbine_rows.csv(700, 150), SPEC), tiny_options, store=store)
    assert out.status == "published" and calls == ["model.tflite", "manifest.json", "LATEST"]
