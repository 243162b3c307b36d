"""cloud_inference: newest model per name from S3, forecast published to the device's results topic."""

from __future__ import annotations

import hashlib
import json

import boto3
import numpy as np
import pytest

from model_contract.features import FeatureSpec
from model_contract.manifest import Manifest
from model_contract.scaling import Scaler
from tests.lambdas.conftest import load_handler, published

BUCKET = "hybridstream-models"
SPEC = FeatureSpec()


class LastTarget:
    """Stand-in for TFLiteModel: forecasts the newest target value plus an offset."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def predict_one(self, window: np.ndarray) -> float:
        assert window.shape == SPEC.input_shape
        return float(window[-1, SPEC.target_index]) + self.offset


@pytest.fixture
def inference(aws, monkeypatch):
    module = load_handler("cloud_inference")
    module._clients.clear()
    module._models.clear()
    monkeypatch.setenv("MODELS_BUCKET", BUCKET)
    monkeypatch.setenv("BATCH_MODEL", "turbine-batch")
    monkeypatch.setenv("SPEED_MODEL", "turbine-speed")
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    offsets = {"turbine-batch": 1.0, "turbine-speed": 3.0}
    monkeypatch.setattr(
        module,
        "load_model",
        lambda bucket, key: (LastTarget(offsets[key.split("/")[1]]), SPEC, key.split("/")[2]),
    )
    return module


def put_model(name: str, version: str, content: bytes = b"TFL3", sha: str | None = None, latest: bool = True) -> str:
    """Write a version the way training_job.publish.ModelStore does: model, manifest, then LATEST."""
    manifest = Manifest(
        name=name,
        version=version,
        sha256=sha or hashlib.sha256(content).hexdigest(),
        feature_spec=SPEC,
        scaler=Scaler.identity(len(SPEC.columns), SPEC.target_index),
        input_shape=SPEC.input_shape,
    )
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"models/{name}/{version}/model.tflite", Body=content)
    key = f"models/{name}/{version}/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=manifest.to_json().encode())
    if latest:
        pointer = {
            "name": name,
            "version": version,
            "sha256": manifest.sha256,
            "kind": "speed",
            "model_key": f"models/{name}/{version}/model.tflite",
            "manifest_key": key,
            "published_at": "2026-11-26T10:00:00Z",
        }
        s3.put_object(Bucket=BUCKET, Key=f"models/{name}/LATEST", Body=json.dumps(pointer).encode())
    return key


def readings(n: int = 3, target: float = 20.0) -> list[dict]:
    rows = []
    for i in range(n):
        row = {c: 10.0 + i for c in SPEC.columns}
        row[SPEC.target] = target + i
        rows.append(row)
    return rows


def event(**overrides) -> dict:
    msg = {
        "timestamp": "2026-11-26T10:00:00Z",
        "readings": readings(),
        "errors": {"batch": 1.0, "speed": 3.0},
        "thing": "pi-1",
        "mqtt_topic": "hybridstream/pi-1/readings",
    }
    msg.update(overrides)
    return msg


def test_valid_readings_give_a_blended_forecast(inference):
    put_model("turbine-batch", "b1")
    put_model("turbine-speed", "s1")
    verdict = inference.handler(event())
    assert verdict["accepted"] is True
    ((topic, payload),) = published("hybridstream/pi-1/")
    assert topic == "hybridstream/pi-1/results"
    result = json.loads(payload)
    (pred,) = result["predictions"]
    newest_target = 22.0
    assert pred["batch"] == newest_target + 1.0 and pred["speed"] == newest_target + 3.0
    assert pred["weights"] == {"batch": 0.75, "speed": 0.25}  # inverse recent error
    assert pred["hybrid"] == pytest.approx(0.75 * 23.0 + 0.25 * 25.0)
    assert result["models"] == {"batch": "turbine-batch/b1", "speed": "turbine-speed/s1"}
    assert result["idempotency_key"] == "pi-1:2026-11-26T10:00:00Z"


def test_the_latest_pointer_names_the_model_not_the_listing(inference):
    put_model("turbine-speed", "current")
    put_model("turbine-speed", "written-later-not-current", latest=False)  # e.g. a refused candidate
    pointer = inference.latest_pointer(BUCKET, "turbine-speed")
    assert pointer.manifest_key == "models/turbine-speed/current/manifest.json" and pointer.version == "current"
    assert inference.latest_pointer(BUCKET, "never-published") is None


def test_pointer_without_manifest_key_falls_back_to_the_version_folder(inference):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="models/m/LATEST", Body=json.dumps({"name": "m", "version": "v7"}).encode())
    assert inference.latest_pointer(BUCKET, "m").manifest_key == "models/m/v7/manifest.json"


def test_pointer_is_cached_for_a_minute(inference, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(inference.time, "monotonic", lambda: clock[0])
    put_model("turbine-speed", "s1")
    assert inference.model("turbine-speed").version == "s1"
    put_model("turbine-speed", "s2")
    clock[0] += 30
    assert inference.model("turbine-speed").version == "s1"  # pointer not re-read yet
    clock[0] += 31
    assert inference.model("turbine-speed").version == "s2"


def test_per_device_speed_model_name(inference, monkeypatch):
    monkeypatch.setenv("SPEED_MODEL", "speed-{thing}")
    put_model("turbine-batch", "b1")
    put_model("speed-pi-1", "s1")
    with monkeypatch.context() as mp:
        mp.setattr(inference, "load_model", lambda bucket, key: (LastTarget(0.0), SPEC, key.split("/")[2]))
        verdict = inference.handler(event())
    assert verdict["accepted"] is True
    assert verdict["result"]["models"] == {"batch": "turbine-batch/b1", "speed": "speed-pi-1/s1"}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("a string", "not_json_object"),
        (event(readings="x"), "type:readings"),
        (event(readings=[]), "type:readings"),
        (event(timestamp=5), "missing:timestamp"),
        (event(readings=readings(1)), "too_few_readings"),
        (event(readings=[{**readings(1)[0], SPEC.target: "hot"}] * 2), "bad_reading:non_numeric"),
    ],
)
def test_malformed_readings_are_rejected(inference, bad, reason):
    put_model("turbine-batch", "b1")
    assert inference.handler(bad) == {"accepted": False, "reason": reason}
    assert published("hybridstream/pi-1/") == []


def test_oversized_message_is_rejected(inference):
    assert inference.handler(event(padding="x" * (128 * 1024))) == {"accepted": False, "reason": "oversized"}


def test_no_model_yet_is_a_rejection_not_a_crash(inference):
    assert inference.handler(event()) == {"accepted": False, "reason": "no_model"}


def test_model_file_must_match_its_manifest(aws, monkeypatch):
    module = load_handler("cloud_inference")
    module._clients.clear()
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    key = put_model("turbine-speed", "s1", content=b"TFL3 real", sha="0" * 64)
    with pytest.raises(ValueError, match="does not match"):
        module.load_model(BUCKET, key)


def test_blend_weights_doctest():
    import doctest

    assert doctest.testmod(load_handler("cloud_inference")).failed == 0


class Recorder:
    """Stand-in for TFLiteModel that keeps the windows it was given."""

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []

    def predict_one(self, window: np.ndarray) -> float:
        self.windows.append(window.copy())
        return 0.0


def test_a_calendar_model_gets_the_time_of_day_of_each_reading(inference, monkeypatch):
    from model_contract import default_spec

    spec, recorder = default_spec(), Recorder()
    monkeypatch.setattr(inference, "load_model", lambda bucket, key: (recorder, spec, key.split("/")[2]))
    put_model("turbine-batch", "b1")
    rows = readings(2)
    rows[0]["Date_time"], rows[1]["Date_time"] = "2026-11-26T08:00:00+02:00", "2026-11-26 12:00:00"  # 06:00, 12:00 UTC
    assert inference.handler(event(readings=rows))["accepted"] is True
    (window,) = recorder.windows
    assert window.shape == spec.input_shape == (2, 9)
    np.testing.assert_allclose(window[:, 5:], [[1, 0, 0, -1], [0, -1, 0, 1]], atol=1e-12)
    del rows[1]["Date_time"]
    assert inference.handler(event(readings=rows)) == {"accepted": False, "reason": "bad_reading:bad_timestamp"}
