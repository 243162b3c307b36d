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
    # a level model: a residual model's Keras and TFLite outputs can agree exactly (max diff 0.0)
    strict = dataclasses.replace(tiny_options, parity_tolerance=1e-12, cfg=tiny_options.cfg.replace(residual=False))
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
    # level models: a residual model (the default) trained on garbage targets is still ~persistence, not worse
    cfg = tiny_options.cfg.replace(epochs=12, lstm_units=16, patience=4, residual=False)
    opts = dataclasses.replace(tiny_options, cfg=cfg)
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


# -- LATEST only moves forward -------------------------------------------------------------


def _fake_model(version: str, last_ts: str, name: str = "speed") -> tuple[bytes, Manifest]:
    """Stand-in model bytes + manifest: LATEST's rules depend on the window, not on the weights."""
    tflite = f"not-a-real-model-{version}".encode()
    manifest = Manifest(
        name=name,
        version=version,
        sha256=sha256_bytes(tflite),
        feature_spec=SPEC,
        scaler=Scaler.identity(5, 4),
        input_shape=SPEC.input_shape,
        window={"first_ts": "2017-01-01T00:00:00+00:00", "last_ts": last_ts, "rows": 150},
    )
    return tflite, manifest


def _latest(store) -> dict:
    return json.loads(_get(store.s3, store.bucket, "models/speed/LATEST"))


def test_an_older_window_published_after_a_newer_one_does_not_move_latest_back(turbine_rows, tiny_options, store):
    opts = dataclasses.replace(tiny_options, guardrail=False)  # only the order matters here
    newer = train_window(parse_window(turbine_rows.csv(600, 150), SPEC), opts, store=store)
    assert newer.status == "published" and newer.published.latest == "updated"
    assert _latest(store)["window_last_ts"] == turbine_rows.timestamps[749]
    older = train_window(parse_window(turbine_rows.csv(400, 150), SPEC), opts, store=store)
    assert older.status == "published" and older.published.latest == "kept"  # published, but not current
    assert store.is_published("speed", older.version)
    assert _latest(store)["version"] == newer.version
    # the same older window again (a retry): still no step back
    again = train_window(parse_window(turbine_rows.csv(400, 150), SPEC), opts, store=store)
    assert again.status == "exists" and again.published.latest == "kept"
    assert _latest(store)["version"] == newer.version


def test_missing_or_stale_latest_is_repaired_on_the_exists_path(turbine_rows, tiny_options, store):
    from training_job.model import model_version

    old_t, old_m = _fake_model("0000000000000001", "2017-01-01T10:00:00+00:00")
    assert store.publish(old_t, old_m).latest == "updated"
    # the real window's version, published by an attempt that died between manifest.json and LATEST
    window = parse_window(turbine_rows.csv(0, 150), SPEC)
    version = model_version(window.matrix, SPEC, tiny_options.cfg, "speed")
    tflite, manifest = _fake_model(version, window.last_ts)
    store.publish(tflite, manifest, update_latest=False)
    assert _latest(store)["version"] == old_m.version  # stale
    out = train_window(window, tiny_options, store=store)  # the retry: exists, decided before training
    assert out.status == "exists" and out.published.latest == "repaired" and out.seconds < 2
    assert _latest(store)["version"] == version and _latest(store)["window_last_ts"] == window.last_ts
    store.s3.delete_object(Bucket=store.bucket, Key="models/speed/LATEST")  # missing
    out = train_window(window, tiny_options, store=store)
    assert out.status == "exists" and out.published.latest == "repaired"
    assert _latest(store)["version"] == version
    assert train_window(window, tiny_options, store=store).published.latest == "current"
    # the exists path never moves LATEST back either
    assert store.published_result("speed", old_m.version).latest == "kept"
    assert _latest(store)["version"] == version


def test_latest_update_is_conditional_a_concurrent_newer_pointer_wins(store):
    """Worker B reads LATEST, worker A moves it to a newer window, B's write must not land."""
    t1, m1 = _fake_model("00000000000000a1", "2017-01-01T10:00:00+00:00")
    store.publish(t1, m1)
    t2, m2 = _fake_model("00000000000000b2", "2017-01-02T10:00:00+00:00")
    t3, m3 = _fake_model("00000000000000c3", "2017-01-03T10:00:00+00:00")
    store.publish(t3, m3, update_latest=False)
    real_put = store.s3.put_object
    raced = []

    def racing_put(**kw):
        if kw["Key"].endswith("/LATEST") and not raced:  # A lands between B's read and B's write
            raced.append(kw)
            pointer = {"name": "speed", "version": m3.version, "window_last_ts": m3.window["last_ts"],
                       "manifest_key": f"models/speed/{m3.version}/manifest.json"}  # fmt: skip
            real_put(Bucket=store.bucket, Key=kw["Key"], Body=json.dumps(pointer).encode())
        return real_put(**kw)

    store.s3.put_object = racing_put
    try:
        result = store.publish(t2, m2)
    finally:
        store.s3.put_object = real_put
    assert raced and ("IfMatch" in raced[0] or "IfNoneMatch" in raced[0])
    assert result.status == "published" and result.latest == "kept"
    assert _latest(store)["version"] == m3.version
