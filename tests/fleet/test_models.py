"""``hybridstream models``: list/show published models (manifests, holdout scores, refused candidates),
promote, and rollback through LATEST with an explicit, logged override; the model_published Lambda
then announces the rolled-back version, and the trainer's forward-only rule still holds afterwards
(moto S3 + STS; the models are published with the trainer's own ``ModelStore``)."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from model_contract import FeatureSpec, Manifest, Scaler, sha256_bytes
from tests.fleet.conftest import MODELS_BUCKET, REGION, run_cli
from training_job.publish import ModelStore

NAME = "speed-hybridstream-pi0001"
SPEC = FeatureSpec()


def publish(store: ModelStore, version: str, last_ts: str, rmse: float, name: str = NAME) -> Manifest:
    tflite = f"model-bytes-{version}".encode()
    manifest = Manifest(
        name=name,
        version=version,
        sha256=sha256_bytes(tflite),
        feature_spec=SPEC,
        scaler=Scaler.identity(5, 4),  # as tests/training_job: LATEST depends on the window, not the weights
        input_shape=SPEC.input_shape,
        created_at=last_ts,
        window={"first_ts": "2017-01-01T00:00:00+00:00", "last_ts": last_ts, "rows": 150},
        metrics={"rmse": rmse, "mae": rmse / 2},
    )
    assert store.publish(tflite, manifest).status == "published"
    return manifest


@pytest.fixture
def store(ctx):
    s = ModelStore(boto3.client("s3", region_name=REGION), MODELS_BUCKET)
    publish(s, "v1", "2017-01-01T10:00:00+00:00", 0.40)
    publish(s, "v2", "2017-01-02T10:00:00+00:00", 0.35)
    publish(s, "v3", "2017-01-03T10:00:00+00:00", 0.90)  # the bad one: current
    publish(s, "b1", "2016-12-31T00:00:00+00:00", 0.33, name="batch")
    return s


def latest() -> dict:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=MODELS_BUCKET, Key=f"models/{NAME}/LATEST")["Body"]
    return json.loads(body.read())


def test_list(ctx, store, capsys):
    code, out, _ = run_cli(["models", "list", "--json"], ctx=ctx, capsys=capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows[NAME]["current"] == "v3" and rows[NAME]["versions"] == 3 and rows[NAME]["metrics"]["rmse"] == 0.9
    assert rows["batch"]["current"] == "b1"
    code, out, _ = run_cli(["models", "list"], ctx=ctx, capsys=capsys)
    assert out.splitlines()[0].split() == [
        "NAME",
        "CURRENT",
        "KIND",
        "RMSE",
        "MAE",
        "VERSIONS",
        "CURRENT",
        "SINCE",
        "OVERRIDE",
    ]
    assert any(line.startswith(NAME) and "v3" in line and "0.9000" in line for line in out.splitlines())


def test_show(ctx, store, capsys):
    code, out, _ = run_cli(["models", "show", NAME, "--json"], ctx=ctx, capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert [v["version"] for v in data["versions"]] == ["v3", "v2", "v1"]
    assert [v["current"] for v in data["versions"]] == [True, False, False]
    assert data["versions"][1]["metrics"] == {"rmse": 0.35, "mae": 0.175}
    code, out, _ = run_cli(["models", "show", NAME, "--version", "v2"], ctx=ctx, capsys=capsys)
    assert json.loads(out)["manifest"]["version"] == "v2"
    code, out, _ = run_cli(["models", "show", NAME], ctx=ctx, capsys=capsys)
    assert out.splitlines()[0] == f"{NAME}: current v3" and " * v3 " in out


def test_unknown_model_and_version(ctx, store, capsys):
    code, _, err = run_cli(["models", "show", "nope"], ctx=ctx, capsys=capsys)
    assert code == 1 and "no published model nope" in err and NAME in err
    code, _, err = run_cli(["models", "rollback", NAME, "--version", "v9"], ctx=ctx, capsys=capsys)
    assert code == 1 and "has no published version v9" in err
    code, _, err = run_cli(["models", "show", "../x"], ctx=ctx, capsys=capsys)
    assert code == 1 and "must be letters, digits" in err


def test_rollback_is_an_explicit_logged_override(ctx, store, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="hybridstream.models")
    code, out, err = run_cli(["models", "rollback", NAME, "--reason", "v3 drifts"], ctx=ctx, capsys=capsys)
    assert code == 0, err
    pointer = latest()
    assert pointer["version"] == "v2" and pointer["manifest_key"] == f"models/{NAME}/v2/manifest.json"
    assert pointer["override"]["action"] == "rollback" and pointer["override"]["from"] == "v3"
    assert pointer["override"]["reason"] == "v3 drifts" and pointer["override"]["by"].startswith("arn:aws:")
    assert pointer["window_last_ts"] == "2017-01-03T10:00:00+00:00"  # the replaced model's: it cannot retake LATEST
    assert "LATEST override: speed-hybridstream-pi0001 v3 -> v2 (rollback)" in caplog.text
    audit = [
        o["Key"]
        for o in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=MODELS_BUCKET, Prefix="audit/")[
            "Contents"
        ]
    ]
    assert len(audit) == 1 and audit[0].startswith(f"audit/models/{NAME}/") and audit[0].endswith("-rollback.json")
    assert "LATEST -> v2" in out and "recorded in s3://" in err
    # the trainer's forward-only rule afterwards: v3 again (a redelivered notice) does not retake LATEST ...
    assert store.published_result(NAME, "v3").latest == "kept"
    assert latest()["version"] == "v2"
    # ... a model of a newer window does
    publish(store, "v4", "2017-01-04T10:00:00+00:00", 0.30)
    assert latest()["version"] == "v4" and "override" not in latest()


def test_rollback_twice_goes_further_back(ctx, store, capsys):
    assert run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)[0] == 0
    assert run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)[0] == 0
    assert latest()["version"] == "v1"
    code, _, err = run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)
    assert code == 1 and "no version older than the current v1" in err


def test_promote_back_needs_override_and_forward_does_not(ctx, store, capsys):
    code, _, err = run_cli(["models", "promote", NAME, "--version", "v1"], ctx=ctx, capsys=capsys)
    assert code == 1 and "LATEST only moves forward" in err and latest()["version"] == "v3"
    assert run_cli(["models", "promote", NAME, "--version", "v1", "--override"], ctx=ctx, capsys=capsys)[0] == 0
    assert latest()["override"]["action"] == "promote"
    code, out, _ = run_cli(["models", "promote", NAME, "--version", "v3"], ctx=ctx, capsys=capsys)  # forward again
    assert code == 0 and "override" not in latest() and latest()["version"] == "v3"
    code, out, _ = run_cli(["models", "promote", NAME, "--version", "v3"], ctx=ctx, capsys=capsys)
    assert code == 0 and "already current, nothing changed" in out


def test_corrupt_model_is_not_pointed_at(ctx, store, capsys):
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=MODELS_BUCKET, Key=f"models/{NAME}/v2/model.tflite", Body=b"tampered"
    )
    code, _, err = run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)
    assert code == 1 and "does not match its manifest's sha256" in err
    assert latest()["version"] == "v3"


def test_rolled_back_pointer_is_announced_by_the_model_published_lambda(ctx, store, capsys, monkeypatch):
    """The normal path: the LATEST write's event -> the Lambda announces the version LATEST names."""
    from tests.lambdas.conftest import load_handler, published

    assert run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)[0] == 0
    monkeypatch.delenv("IOT_DATA_ENDPOINT", raising=False)
    handler = load_handler("model_published")
    handler._clients.clear()
    event = {"detail": {"bucket": {"name": MODELS_BUCKET}, "object": {"key": f"models/{NAME}/LATEST", "size": 400}}}
    assert handler.handler(event) == {"published": [f"{NAME}/v2"]}
    topic, payload = published()[-1]
    note = json.loads(payload)
    assert topic == f"hybridstream/models/{NAME}/published" and note["version"] == "v2"
    assert note["sha256"] == sha256_bytes(b"model-bytes-v2")
