"""The speed model is trained on the feature spec the edge serves (its batch model's), sent with each window:
the edge's own uploaders -> the SQS worker (radosgw + ElasticMQ) or the folder watcher -> a model the edge loads."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from edge_app.models import load_model
from edge_app.uploaders import LocalFolderUploader, S3Uploader
from model_contract import FeatureSpec, Manifest
from model_contract.layout import window_key
from model_contract.window_spec import DIGEST_KEY, spec_digest
from training_job.watch import FolderWatcher, WatchConfig
from training_job.worker import Worker, WorkerConfig

pytestmark = pytest.mark.s3

# the batch model's spec on the Pi: other lags and calendar features than the trainer's flags (FeatureSpec())
EDGE = FeatureSpec(lags=(1, 3), calendar=("day_sin1", "day_cos1"))


def test_the_s3_worker_trains_on_the_spec_the_edge_uploaded_with_the_window(
    s3_server, s3_env, s3_client, store, tiny_options, turbine_rows, sqs_client, sqs_queue, tmp_path, caplog
):
    assert tiny_options.spec != EDGE
    bucket = f"windows-{tmp_path.name[-8:].lower().replace('_', '-')}"
    s3_client.create_bucket(Bucket=bucket)
    spooled = tmp_path / "T1_20170616T192000Z_150.csv"
    spooled.write_bytes(turbine_rows.csv(0, 150))
    key = window_key("pi-3", spooled.stem)
    S3Uploader(bucket, "pi-3", endpoint_url=s3_server.endpoint, spec=EDGE).upload(key, spooled, {})
    # an edge whose spec is too wide for S3's metadata sends its digest alone: flags that differ are refused
    other = window_key("pi-4", "T1_20170616T192000Z_150")
    s3_client.put_object(Bucket=bucket, Key=other, Body=spooled.read_bytes(), Metadata={DIGEST_KEY: spec_digest(EDGE)})
    for k in (key, other):
        sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody=json.dumps({"bucket": bucket, "key": k}))
    config = WorkerConfig(queue_url=sqs_queue.url, wait_seconds=1, lease_seconds=30, bad_visibility=30)
    opts = dataclasses.replace(tiny_options, name="speed-{thing}")
    with caplog.at_level(logging.ERROR, logger="training_job.worker"):
        stats = Worker(sqs_client, s3_client, store, opts, config).run(max_messages=2)
    assert (stats.published, stats.bad, stats.errors) == (1, 1, 0)
    assert "spec_mismatch: the edge recorded this window with feature spec sha256" in caplog.text
    version = stats.outcomes[0]["version"]
    raw = s3_client.get_object(Bucket=store.bucket, Key=f"models/speed-pi-3/{version}/manifest.json")["Body"].read()
    manifest = Manifest.from_json(raw)
    assert manifest.feature_spec == EDGE  # the edge's check (edge_app.models.load_model): equal specs
    assert manifest.window["feature_spec_from"] == "window" and manifest.input_shape == EDGE.input_shape


def test_the_folder_watcher_trains_on_the_spec_beside_the_window_and_the_edge_loads_the_model(
    tiny_options, turbine_rows, tmp_path
):
    root, spooled = tmp_path / "edge-out", tmp_path / "T1_20170616T192000Z_150.csv"
    spooled.write_bytes(turbine_rows.csv(0, 150))
    key = window_key("pi-5", spooled.stem)
    LocalFolderUploader(root, spec=EDGE).upload(key, spooled, {})
    assert json.loads((root / f"{key}.spec.json").read_text()) == EDGE.to_dict()
    out = tmp_path / "models"
    config = WatchConfig(root=root, out_dir=out, poll_seconds=0.1, settle_seconds=0)
    opts = dataclasses.replace(tiny_options, guardrail=False, name="speed-{thing}")
    stats = FolderWatcher(opts, config).run(idle_exit=True)
    assert (stats.trained, stats.bad, stats.errors) == (1, 0, 0)
    assert (root / "done" / f"{key}.spec.json").is_file() and not (root / f"{key}.spec.json").exists()
    model_dir = out / "speed-pi-5" / stats.outcomes[0]["version"]
    loaded = load_model(str(model_dir / "model.tflite"), spec=EDGE)  # what the edge's swapper does
    assert loaded.manifest.feature_spec == EDGE


def test_train_window_reads_the_spec_beside_a_local_window_and_builds_a_seed_ensemble(turbine_rows, tmp_path, capsys):
    from hybridstream.cli import main

    root, spooled = tmp_path / "edge-out", tmp_path / "T1_20170616T192000Z_150.csv"
    spooled.write_bytes(turbine_rows.csv(0, 150))
    key = window_key("pi-6", spooled.stem)
    LocalFolderUploader(root, spec=EDGE).upload(key, spooled, {})
    argv = ["train", "window", "--input", str(root / key), "--out", str(tmp_path / "m"), "--members", "2",
            "--epochs", "2", "--lstm-units", "8", "--dense-units", "4"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "feature spec from the window" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    manifest = Manifest.load(tmp_path / "m" / "speed" / summary["version"] / "manifest.json")
    assert manifest.feature_spec == EDGE and manifest.hyperparameters["members"] == 2
