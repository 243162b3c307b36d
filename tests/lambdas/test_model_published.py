"""model_published: models/<name>/LATEST written -> the model notice (model_contract.messages.ModelNotice)
of the version LATEST names, on hybridstream/models/<name>/published (moto)."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from tests.lambdas.conftest import load_handler, published

BUCKET = "hybridstream-models"
MODEL = b"TFL3 speed model bytes"
NAME = "turbine-speed"
FIELDS = {"name", "version", "kind", "sha256", "s3_uri", "manifest_uri", "manifest_sha256", "metrics", "published_at"}


@pytest.fixture
def handler(aws):
    module = load_handler("model_published")
    module._clients.clear()
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return module


def put_manifest(
    name=NAME, version="0123456789abcdef", model=MODEL, overrides: dict | None = None
) -> tuple[str, bytes]:
    """model.tflite, then manifest.json (the trainer's order); ``overrides`` change the manifest's
    fields, not its key."""
    manifest = {
        "name": name,
        "version": version,
        "sha256": hashlib.sha256(model).hexdigest(),
        "kind": "speed",
        "metrics": {"rmse": 0.42},
        "training_seconds": 11.5,
    }
    manifest.update(overrides or {})
    body = json.dumps(manifest).encode()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"models/{name}/{version}/model.tflite", Body=model)
    key = f"models/{name}/{version}/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return key, body


def put_latest(name=NAME, version="0123456789abcdef", sha256: str | None = None, overrides: dict | None = None) -> str:
    """The pointer as training_job.publish writes it; ``overrides`` change its fields, not its key."""
    folder = f"models/{name}/{version}"
    pointer = {
        "name": name,
        "version": version,
        "sha256": sha256 or hashlib.sha256(MODEL).hexdigest(),
        "kind": "speed",
        "model_key": f"{folder}/model.tflite",
        "manifest_key": f"{folder}/manifest.json",
        "window_last_ts": "2017-01-01T10:00:00+00:00",
        "published_at": "2026-11-26T10:00:00Z",
        **(overrides or {}),
    }
    key = f"models/{NAME}/LATEST"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(pointer, indent=2).encode())
    return key


def eventbridge(key: str, size: int = 100) -> dict:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": size}},
    }


def test_latest_write_announces_the_version_it_names(handler, capsys):
    key, body = put_manifest()
    latest = put_latest()
    assert handler.handler(eventbridge(latest)) == {"published": [f"{NAME}/0123456789abcdef"]}
    ((topic, payload),) = published("hybridstream/models/")
    assert topic == f"hybridstream/models/{NAME}/published"
    note = json.loads(payload)
    # the contract the edge side reads (s3_uri / manifest_uri): exactly these fields
    assert set(note) == FIELDS
    assert note["name"] == NAME and note["version"] == "0123456789abcdef" and note["kind"] == "speed"
    assert note["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert note["s3_uri"] == f"s3://{BUCKET}/models/{NAME}/0123456789abcdef/model.tflite"
    assert note["manifest_uri"] == f"s3://{BUCKET}/{key}"
    assert note["manifest_sha256"] == hashlib.sha256(body).hexdigest()
    assert note["metrics"] == {"rmse": 0.42} and isinstance(note["published_at"], int)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert emf[0]["TrainingSeconds"] == 11.5 and emf[0]["HoldoutRMSE"] == 0.42 and emf[0]["Model"] == NAME


def test_s3_notification_format_is_accepted_too(handler):
    put_manifest(version="v2")
    latest = put_latest(version="v2")
    event = {"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": latest, "size": 10}}}]}
    assert handler.handler(event) == {"published": [f"{NAME}/v2"]}


def test_a_manifest_write_is_not_an_announcement(handler):
    """A manifest alone (an older window's model, or LATEST not written yet) announces nothing."""
    key, _ = put_manifest()
    with pytest.raises(ValueError, match="not a model LATEST key"):
        handler.handler(eventbridge(key))
    assert published("hybridstream/models/") == []


def test_a_delayed_event_announces_what_is_current_not_what_was_written(handler):
    put_manifest(version="v1")
    first = put_latest(version="v1")
    newer_model = b"TFL3 newer"
    put_manifest(version="v2", model=newer_model)
    put_latest(version="v2", sha256=hashlib.sha256(newer_model).hexdigest())
    # the event of the first write arrives after LATEST moved on: v2 is announced, never v1
    assert handler.handler(eventbridge(first)) == {"published": [f"{NAME}/v2"]}
    ((_, payload),) = published("hybridstream/models/")
    assert json.loads(payload)["sha256"] == hashlib.sha256(newer_model).hexdigest()


def test_with_the_trainers_model_store_only_the_current_model_is_announced(handler):
    """training_job.publish.ModelStore writes the keys; the rule's pattern picks the events."""
    from fnmatch import fnmatchcase

    from model_contract import FeatureSpec, Manifest, Scaler, sha256_bytes
    from training_job.publish import ModelStore

    s3 = boto3.client("s3")
    written: list[str] = []
    real_put = s3.put_object

    def put_object(**kwargs):
        out = real_put(**kwargs)
        written.append(kwargs["Key"])
        return out

    s3.put_object = put_object
    store = ModelStore(s3, BUCKET)
    spec = FeatureSpec()

    def publish(version: str, last_ts: str) -> str:
        tflite = f"model-{version}".encode()
        manifest = Manifest(
            name=NAME,
            version=version,
            sha256=sha256_bytes(tflite),
            feature_spec=spec,
            scaler=Scaler.identity(len(spec.columns), spec.columns.index(spec.target)),
            input_shape=spec.input_shape,
            window={"last_ts": last_ts},
        )
        written.clear()
        result = store.publish(tflite, manifest)
        announced = []
        for key in written:  # the LatestWritten rule's wildcard (EventBridge: '*' spans '/')
            if fnmatchcase(key, "models/*/LATEST"):
                announced += handler.handler(eventbridge(key))["published"]
        return f"{result.latest}:{','.join(announced)}"

    assert publish("newer", "2017-01-02T00:00:00+00:00") == f"updated:{NAME}/newer"
    # an older window's model, published later: its manifest is written, LATEST is not
    assert publish("older", "2017-01-01T00:00:00+00:00") == "kept:"
    topics = [json.loads(p)["version"] for _, p in published("hybridstream/models/")]
    assert topics == ["newer"]


@pytest.mark.parametrize(
    ("latest_overrides", "manifest_overrides", "message"),
    [
        ({"name": "other-model"}, {}, "names model"),
        ({"version": "../x"}, {}, "valid version"),
        ({"manifest_key": "models/other/v1/manifest.json"}, {}, "manifest_key"),
        ({"model_key": "windows/x/model.tflite"}, {}, "model_key"),
        ({"sha256": "f" * 64}, {}, "LATEST of turbine-speed says sha256"),
        ({}, {"version": "another"}, "does not match key"),
        ({}, {"sha256": "not-a-digest"}, "sha256"),
        ({}, {"sha256": None}, "lacks sha256"),
    ],
)
def test_inconsistent_pointer_or_manifest_raises_and_publishes_nothing(
    handler, latest_overrides, manifest_overrides, message
):
    put_manifest(overrides=manifest_overrides)
    latest = put_latest(overrides=latest_overrides)
    with pytest.raises(ValueError, match=message):
        handler.handler(eventbridge(latest))
    assert published("hybridstream/models/") == []


def test_latest_or_manifest_that_is_not_json_raises(handler):
    latest = f"models/{NAME}/LATEST"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=latest, Body=b"{not json")
    with pytest.raises(ValueError, match="LATEST is not JSON"):
        handler.handler(eventbridge(latest))
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"models/{NAME}/v3/manifest.json", Body=b"{not json")
    put_latest(version="v3")
    with pytest.raises(ValueError, match="manifest is not JSON"):
        handler.handler(eventbridge(latest))
    assert published("hybridstream/models/") == []


def test_latest_pointing_at_a_missing_manifest_raises(handler):
    latest = put_latest(version="not-there")
    with pytest.raises(Exception, match="NoSuchKey"):
        handler.handler(eventbridge(latest))
    assert published("hybridstream/models/") == []


def test_keys_outside_the_contract_raise(handler):
    for key in ("models/LATEST", "models/a/b/LATEST", "rejected/x/LATEST"):
        with pytest.raises(ValueError, match="not a model LATEST key"):
            handler.handler(eventbridge(key))


def test_oversized_pointer_or_manifest_is_refused(handler):
    put_manifest()
    latest = put_latest()
    with pytest.raises(ValueError, match="larger than"):
        handler.handler(eventbridge(latest, size=2 * 1024 * 1024))
    boto3.client("s3").put_object(Bucket=BUCKET, Key=latest, Body=b" " * (64 * 1024 + 10))
    with pytest.raises(ValueError, match="larger than"):
        handler.handler(eventbridge(latest, size=0))  # size missing from the event: checked on read
    big = "models/turbine-speed/v9/manifest.json"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=big, Body=b" " * (1024 * 1024 + 10))
    put_latest(version="v9")
    with pytest.raises(ValueError, match="manifest .* larger than"):
        handler.handler(eventbridge(latest))
    assert published("hybridstream/models/") == []
