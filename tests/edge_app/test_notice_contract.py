"""The cloud's model-published announcement is what the edge app swaps on (contract), end to end over
the real notices topic and the real local S3 (radosgw)."""

from __future__ import annotations

import json
import time

import pytest

from edge_app.models import S3Fetcher
from hybridstream.devtools.edge import collect, edge_config, produce, read_rows, reading_json, wait_for
from model_contract import Manifest
from model_contract.messages import ModelNotice, parse_model_notice
from tests.edge_app.helpers import AppThread


def _announce(bucket: str, model_path, published_at: int | None = None) -> tuple[dict, bytes, bytes]:
    """(announcement, model bytes, manifest bytes) as lambdas/model_published builds it."""
    manifest_bytes = model_path.with_name("manifest.json").read_bytes()
    manifest = Manifest.from_json(manifest_bytes)
    key = f"models/{manifest.name}/{manifest.version}/manifest.json"
    note = ModelNotice.for_manifest(bucket, key, manifest_bytes).to_dict()  # what lambdas/model_published sends
    if published_at is not None:
        note["published_at"] = published_at
    return note, model_path.read_bytes(), manifest_bytes


def test_the_cloud_announcement_parses_into_a_notice(edge_models):
    note, _, manifest_bytes = _announce("models-bucket", edge_models.speed2)
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
    parsed = parse_model_notice(json.loads(json.dumps(note)), kind="speed")  # as it travels (JSON over MQTT / Kafka)
    manifest = Manifest.from_json(manifest_bytes)
    assert parsed.s3_uri == f"s3://models-bucket/models/speed/{manifest.version}/model.tflite"
    assert parsed.manifest_uri == f"s3://models-bucket/models/speed/{manifest.version}/manifest.json"
    assert parsed.name == "speed" and parsed.version == manifest.version
    assert parsed.sha256 == manifest.sha256 and len(parsed.manifest_sha256) == 64
    assert parsed.published_at == note["published_at"] > 0


@pytest.mark.kafka
def test_a_model_published_to_s3_is_swapped_in_and_older_notices_are_refused(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path, s3_server, s3_client, s3_bucket, s3_env
):
    now = int(time.time())
    new, new_bytes, new_manifest = _announce(s3_bucket, edge_models.speed2, published_at=now)
    old, old_bytes, old_manifest = _announce(s3_bucket, edge_models.speed, published_at=now - 600)
    for note, content, manifest in ((new, new_bytes, new_manifest), (old, old_bytes, old_manifest)):
        prefix = f"models/{note['name']}/{note['version']}"
        s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/model.tflite", Body=content)
        s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/manifest.json", Body=manifest)
    tampered = {**new, "manifest_sha256": "0" * 64, "published_at": now + 1}
    rows = read_rows(edge_models.test_csv, 4000, 200)
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    cfg["models"]["s3_endpoint_url"] = s3_server.endpoint
    topics = cfg["topics"]
    with AppThread(cfg) as running:
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[:100]])
        produce(kafka_bootstrap, topics["notices"], [json.dumps(tampered).encode(), json.dumps(new).encode()])
        assert wait_for(lambda: running.app.counters.swaps == 1, timeout=30)
        # a redelivered / late notice of the older model must not swap it back
        produce(kafka_bootstrap, topics["notices"], [json.dumps(old).encode()])
        assert wait_for(lambda: running.app.counters.rejected_models == 2, timeout=30)
        produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[100:]])
        preds = collect(kafka_bootstrap, topics["predictions"], len(rows), timeout=30)
        events = collect(kafka_bootstrap, topics["events"], 4, timeout=10)
        counters = running.stop()
    assert counters["swaps"] == 1
    assert preds[-1]["models"]["speed"] == new["version"]
    reasons = [e["reason"] for e in events if e["event"] == "model_rejected"]
    assert any("manifest sha256 mismatch" in r for r in reasons), reasons
    assert any("older than the serving model" in r for r in reasons), reasons
    pointer = json.loads((tmp_path / "state" / "speed-model.json").read_text())
    assert pointer["version"] == new["version"] and pointer["published_at"] == now


def test_the_s3_fetcher_uses_the_environment_endpoint_and_caps_sizes(
    s3_server, s3_client, s3_bucket, s3_env, monkeypatch
):
    from model_contract.runtime import ModelRejected

    s3_client.put_object(Bucket=s3_bucket, Key="models/x/v/model.tflite", Body=b"x" * 1000)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    fetcher = S3Fetcher(max_bytes=2000)
    assert fetcher(f"s3://{s3_bucket}/models/x/v/model.tflite") == b"x" * 1000
    client = fetcher.client()
    with pytest.raises(ModelRejected, match="cannot fetch"):
        fetcher(f"s3://{s3_bucket}/models/x/v/missing.tflite")
    with pytest.raises(ModelRejected, match="allowed"):
        S3Fetcher(max_bytes=10)(f"s3://{s3_bucket}/models/x/v/model.tflite")
    assert fetcher.client() is client  # one client, reused
