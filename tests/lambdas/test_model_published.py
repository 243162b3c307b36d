"""model_published: manifest created -> announcement on hybridstream/models/<name>/published (moto)."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from tests.lambdas.conftest import load_handler, published

BUCKET = "hybridstream-models"
MODEL = b"TFL3 speed model bytes"


@pytest.fixture
def handler(aws):
    module = load_handler("model_published")
    module._clients.clear()
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return module


def put_manifest(name="turbine-speed", version="0123456789abcdef", **overrides) -> tuple[str, bytes]:
    manifest = {
        "name": name,
        "version": version,
        "sha256": hashlib.sha256(MODEL).hexdigest(),
        "kind": "speed",
        "metrics": {"rmse": 0.42},
        "training_seconds": 11.5,
    }
    manifest.update(overrides)
    body = json.dumps(manifest).encode()
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"models/{name}/{version}/model.tflite", Body=MODEL)
    key = f"models/{name}/{version}/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return key, body


def eventbridge(key: str, size: int = 100) -> dict:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": size}},
    }


def test_valid_manifest_is_announced(handler, capsys):
    key, body = put_manifest()
    assert handler.handler(eventbridge(key)) == {"published": ["turbine-speed/0123456789abcdef"]}
    ((topic, payload),) = published("hybridstream/models/")
    assert topic == "hybridstream/models/turbine-speed/published"
    note = json.loads(payload)
    assert note["version"] == "0123456789abcdef"
    assert note["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert note["s3_uri"] == f"s3://{BUCKET}/models/turbine-speed/0123456789abcdef/model.tflite"
    assert note["manifest_sha256"] == hashlib.sha256(body).hexdigest()
    # the contract the edge side reads (s3_uri / manifest_uri): exactly these fields
    assert set(note) == {
        "name",
        "version",
        "kind",
        "sha256",
        "s3_uri",
        "manifest_uri",
        "manifest_sha256",
        "metrics",
        "published_at",
    }
    assert note["manifest_uri"] == f"s3://{BUCKET}/{key}"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert emf[0]["TrainingSeconds"] == 11.5 and emf[0]["HoldoutRMSE"] == 0.42 and emf[0]["Model"] == "turbine-speed"


def test_s3_notification_format_is_accepted_too(handler):
    key, _ = put_manifest(version="v2")
    event = {"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 10}}}]}
    assert handler.handler(event) == {"published": ["turbine-speed/v2"]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sha256": "not-a-digest"}, "sha256"),
        ({"name": "other-model"}, "does not match key"),
        ({"sha256": None}, "lacks sha256"),
    ],
)
def test_malformed_manifests_raise_and_publish_nothing(handler, overrides, message):
    key, _ = put_manifest(**overrides) if "name" not in overrides else _mismatched(overrides["name"])
    with pytest.raises(ValueError, match=message):
        handler.handler(eventbridge(key))
    assert published("hybridstream/models/") == []


def _mismatched(name: str) -> tuple[str, bytes]:
    key, _ = put_manifest()
    body = json.dumps({"name": name, "version": "0123456789abcdef", "sha256": "0" * 64}).encode()
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return key, body


def test_manifest_that_is_not_json_raises(handler):
    key = "models/turbine-speed/v3/manifest.json"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"{not json")
    with pytest.raises(json.JSONDecodeError):
        handler.handler(eventbridge(key))


def test_key_outside_the_contract_raises(handler):
    boto3.client("s3").put_object(Bucket=BUCKET, Key="models/manifest.json", Body=b"{}")
    with pytest.raises(ValueError, match="not a model manifest key"):
        handler.handler(eventbridge("models/manifest.json"))


def test_oversized_manifest_is_refused(handler):
    key, _ = put_manifest()
    with pytest.raises(ValueError, match="larger than"):
        handler.handler(eventbridge(key, size=2 * 1024 * 1024))
    big_key = "models/turbine-speed/v9/manifest.json"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=big_key, Body=b" " * (1024 * 1024 + 10))
    with pytest.raises(ValueError, match="larger than"):
        handler.handler(eventbridge(big_key, size=0))  # size missing from the event: checked on read
    assert published("hybridstream/models/") == []
