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


def manifest_of(version: str) -> dict:
    key = f"models/{NAME}/{version}/manifest.json"
    return json.loads(boto3.client("s3", region_name=REGION).get_object(Bucket=MODELS_BUCKET, Key=key)["Body"].read())


def model_of(version: str) -> bytes:
    key = f"models/{NAME}/{version}/model.tflite"
    return boto3.client("s3", region_name=REGION).get_object(Bucket=MODELS_BUCKET, Key=key)["Body"].read()


def test_rollback_is_an_explicit_logged_override(ctx, store, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="hybridstream.models")
    code, out, err = run_cli(["models", "rollback", NAME, "--reason", "v3 drifts"], ctx=ctx, capsys=capsys)
    assert code == 0, err
    pointer = latest()
    served = pointer["version"]
    # v2's model, published again now under a new version (the edge only swaps in newer manifests)
    assert served not in ("v1", "v2", "v3") and model_of(served) == model_of("v2")
    again = manifest_of(served)
    assert again["extra"]["rerelease"]["of"] == "v2" and again["extra"]["rerelease"]["replaces"] == "v3"
    assert again["window"] == manifest_of("v2")["window"] and again["metrics"] == manifest_of("v2")["metrics"]
    assert again["created_at"] > manifest_of("v3")["created_at"]
    # the override: explicit, recorded, logged, audited
    assert pointer["override"]["action"] == "rollback" and pointer["override"]["from"] == "v3"
    assert pointer["override"]["to"] == "v2" and pointer["override"]["reason"] == "v3 drifts"
    assert pointer["override"]["by"].startswith("arn:aws:")
    assert pointer["window_last_ts"] == "2017-01-03T10:00:00+00:00"  # the replaced model's: it cannot retake LATEST
    assert f"LATEST override: {NAME} v3 -> v2 (rollback, served as {served})" in caplog.text
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=MODELS_BUCKET, Prefix="audit/")
    audit = [o["Key"] for o in listing["Contents"]]
    assert len(audit) == 1 and audit[0].startswith(f"audit/models/{NAME}/") and audit[0].endswith("-rollback.json")
    assert f"LATEST -> {served}" in out and "published again now" in out and "recorded in s3://" in err
    # the trainer's forward-only rule afterwards: v3 again (a redelivered notice) does not retake LATEST ...
    assert store.published_result(NAME, "v3").latest == "kept"
    assert latest()["version"] == served
    # ... a model of a newer window does
    publish(store, "v4", "2017-01-04T10:00:00+00:00", 0.30)
    assert latest()["version"] == "v4" and "override" not in latest()


def test_rollback_twice_goes_further_back(ctx, store, capsys):
    assert run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)[0] == 0
    assert manifest_of(latest()["version"])["extra"]["rerelease"]["of"] == "v2"
    assert run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)[0] == 0
    assert manifest_of(latest()["version"])["extra"]["rerelease"]["of"] == "v1"
    code, _, err = run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)
    assert code == 1 and "no version older than the current v1" in err


def test_promote_back_needs_override_and_forward_does_not(ctx, store, capsys):
    code, _, err = run_cli(["models", "promote", NAME, "--version", "v1"], ctx=ctx, capsys=capsys)
    assert code == 1 and "LATEST only moves forward" in err and latest()["version"] == "v3"
    assert run_cli(["models", "promote", NAME, "--version", "v1", "--override"], ctx=ctx, capsys=capsys)[0] == 0
    assert latest()["override"]["action"] == "promote" and latest()["override"]["to"] == "v1"
    # forward again to v3: no override needed, but v3's manifest is older than the serving re-release: re-released
    code, out, _ = run_cli(["models", "promote", NAME, "--version", "v3"], ctx=ctx, capsys=capsys)
    assert code == 0 and "override" not in latest()
    assert manifest_of(latest()["version"])["extra"]["rerelease"]["of"] == "v3"
    code, out, _ = run_cli(["models", "promote", NAME, "--version", "v3"], ctx=ctx, capsys=capsys)
    assert code == 0 and "already current, nothing changed" in out
    # a model of a newer window that is also newer: LATEST simply moves to it (no re-release)
    publish(store, "v5", "2017-01-05T10:00:00+00:00", 0.2)
    assert latest()["version"] == "v5"


def test_corrupt_model_is_not_pointed_at(ctx, store, capsys):
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=MODELS_BUCKET, Key=f"models/{NAME}/v2/model.tflite", Body=b"tampered"
    )
    code, _, err = run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)
    assert code == 1 and "does not match its manifest's sha256" in err
    assert latest()["version"] == "v3"


def announce(monkeypatch) -> dict:
    """What the stack does on a LATEST write: the model_published Lambda's announcement (moto iot-data)."""
    from tests.lambdas.conftest import load_handler, published

    monkeypatch.delenv("IOT_DATA_ENDPOINT", raising=False)
    handler = load_handler("model_published")
    if hasattr(handler, "_clients"):
        handler._clients.clear()
    event = {"detail": {"bucket": {"name": MODELS_BUCKET}, "object": {"key": f"models/{NAME}/LATEST", "size": 400}}}
    result = handler.handler(event)
    topic, payload = published()[-1]
    assert topic == f"hybridstream/models/{NAME}/published"
    note = json.loads(payload)
    assert result["published"] == [f"{NAME}/{note['version']}"]
    return note


def test_rolled_back_pointer_is_announced_by_the_model_published_lambda(ctx, store, capsys, monkeypatch):
    """The normal path: the LATEST write's event -> the Lambda announces the version LATEST names."""
    assert run_cli(["models", "rollback", NAME], ctx=ctx, capsys=capsys)[0] == 0
    note = announce(monkeypatch)
    assert note["version"] == latest()["version"]
    assert note["sha256"] == sha256_bytes(b"model-bytes-v2")


@pytest.mark.slow
def test_rollback_reaches_the_edge_and_is_swapped_in(ctx, capsys, monkeypatch, edge_models):
    """End to end with the edge's own swapper and two real TFLite speed models: the edge serves the
    newer one; `models rollback` -> LATEST -> the Lambda's announcement -> the edge fetches, verifies
    (sha256, manifest, feature spec) and swaps the older model back in."""
    from edge_app import models as edge_models_module
    from edge_app.swap import SpeedModelSwapper

    monkeypatch.setitem(edge_models_module.FETCHERS, "s3", edge_models_module.S3Fetcher(region=REGION))
    s3 = boto3.client("s3", region_name=REGION)
    store = ModelStore(s3, MODELS_BUCKET)
    for path, version, day in ((edge_models.speed, "old", "01"), (edge_models.speed2, "new", "02")):
        manifest = Manifest.from_json((path.parent / "manifest.json").read_text())
        manifest.name, manifest.version = NAME, version
        manifest.window = {**manifest.window, "last_ts": f"2017-01-{day}T00:00:00+00:00"}
        manifest.created_at = f"2026-11-{day}T00:00:00+00:00"
        assert store.publish(path.read_bytes(), manifest).status == "published"
    spec = Manifest.from_json((edge_models.speed.parent / "manifest.json").read_text()).feature_spec
    swapper = SpeedModelSwapper(spec, model_name=NAME)
    try:
        first = announce(monkeypatch)
        assert swapper.submit(first) and swapper.wait_idle(60)
        serving = swapper.take()
        assert serving is not None and serving.version == "new"
        swapper.serve(serving, float(first["published_at"]))  # as the app does: the notice's published_at

        assert run_cli(["models", "rollback", NAME, "--reason", "new drifts"], ctx=ctx, capsys=capsys)[0] == 0
        note = announce(monkeypatch)
        assert swapper.submit(note) and swapper.wait_idle(60)
        back = swapper.take()
        assert swapper.rejected == 0
        assert back is not None and back.version == note["version"] == latest()["version"]
        assert back.manifest.sha256 == sha256_bytes(edge_models.speed.read_bytes())  # the old model's bytes
    finally:
        swapper.close()
