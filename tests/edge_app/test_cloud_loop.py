"""The edge-cloud loop over real servers: Kafka in, windows to S3 (radosgw) + window notices over
MQTT (mosquitto, mutual TLS), and a model announcement over MQTT that the app swaps to."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from datetime import UTC, datetime

import pytest

from hybridstream.devtools.edge import collect, edge_config, mqtt_client, produce, read_rows, reading_json, wait_for
from model_contract import FeatureSpec, Manifest
from model_contract.messages import ModelNotice
from tests.edge_app.helpers import AppThread, load_lambda
from training_job.notices import parse_queue_message as trainer_parse
from training_job.windows import parse_window

pytestmark = pytest.mark.kafka


class Listener:
    """A second mTLS client (the cloud side): records every message on the filters it subscribes."""

    def __init__(self, server, name: str) -> None:
        self.client = mqtt_client(server, name)
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def on(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, json.loads(payload)))

    def on_topic(self, topic: str) -> list[dict]:
        with self._lock:
            return [m for t, m in self.messages if t == topic]


def test_windows_to_s3_notices_over_mqtt_and_model_swap_from_mqtt(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path, mqtt_server, s3_server, s3_client, s3_bucket, s3_env,
    monkeypatch,
):  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)  # the default chain, as on a Pi (TES + AWS)
    thing = f"pi-{uuid.uuid4().hex[:6]}"
    app_cert = mqtt_server.client_cert(thing)
    cfg = edge_config(
        tmp_path,
        kafka_bootstrap,
        topic_prefix,
        edge_models,
        thing_name=thing,
        windows={"uploader": "s3", "bucket": s3_bucket, "max_records": 100},
        mqtt={
            "transport": "mtls",
            "endpoint": mqtt_server.host,
            "port": mqtt_server.port,
            "cert": str(app_cert.cert),
            "key": str(app_cert.key),
            "ca": str(mqtt_server.ca),
            "flow_control": False,
            "metrics_interval_s": 1,
        },
    )
    topics = cfg["topics"]
    rows = read_rows(edge_models.test_csv, 3000, 260)
    cloud = Listener(mqtt_server, "cloud")
    windows_topic, metrics_topic = f"hybridstream/{thing}/windows", f"hybridstream/{thing}/metrics"
    try:
        assert cloud.client.connected.wait(10)
        for t in (windows_topic, metrics_topic):
            cloud.client.subscribe(t, cloud.on)
            assert cloud.client.wait_subscribed(t, 10)
        with AppThread(cfg) as running:
            app = running.app
            assert app.mqtt.wait_subscribed(app.models_topic, 15)
            assert app.models_topic == "hybridstream/models/speed/published"
            v1 = app.speed.version

            # 1. 150 readings: one window of 100 closes -> S3 put + notice on hybridstream/<thing>/windows
            produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[:150]])
            assert wait_for(lambda: cloud.on_topic(windows_topic), 30), "no window notice"
            notice = cloud.on_topic(windows_topic)[0]
            assert set(notice) == {"thing", "bucket", "key", "rows", "first_ts", "last_ts", "window_id", "sha256"}
            assert notice["thing"] == thing and notice["bucket"] == s3_bucket and notice["rows"] == 100
            day = datetime.fromisoformat(rows[0]["Date_time"]).astimezone(UTC).strftime("%Y/%m/%d")
            assert notice["key"] == f"windows/{thing}/{day}/{notice['window_id']}.csv"
            body = s3_client.get_object(Bucket=s3_bucket, Key=notice["key"])["Body"].read()
            got = list(csv.DictReader(io.StringIO(body.decode())))
            assert [g["Date_time"] for g in got] == [r["Date_time"] for r in rows[:100]]
            assert notice["first_ts"] == rows[0]["Date_time"] and notice["last_ts"] == rows[99]["Date_time"]
            # the trainer takes it as is (and its own checks of rows and sha256 hold)
            (ref,) = trainer_parse(json.dumps({**notice, "mqtt_topic": windows_topic}))
            assert (ref.bucket, ref.key, ref.rows, ref.thing) == (s3_bucket, notice["key"], 100, thing)
            window = parse_window(body, FeatureSpec(), source=ref.uri, thing=ref.thing)
            assert window.rows == ref.rows and window.sha256 == ref.sha256

            # 2. the cloud announces a new speed model (in S3) on hybridstream/models/speed/published
            manifest_bytes = edge_models.speed2.with_name("manifest.json").read_bytes()
            manifest = Manifest.from_json(manifest_bytes)
            prefix = f"models/{manifest.name}/{manifest.version}"
            s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/model.tflite", Body=edge_models.speed2.read_bytes())
            s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/manifest.json", Body=manifest_bytes)
            note = ModelNotice.for_manifest(s3_bucket, f"{prefix}/manifest.json", manifest_bytes).to_dict()
            cloud.client.publish("hybridstream/models/speed/published", json.dumps(note), timeout=10)
            assert wait_for(lambda: app.speed.version == manifest.version, 30), "no swap"
            assert v1 != manifest.version

            # 3. readings after the swap carry the new speed version
            produce(kafka_bootstrap, topics["readings"], [reading_json(r, "t1") for r in rows[150:]])
            preds = collect(kafka_bootstrap, topics["predictions"], len(rows), timeout=30)
            assert [p["timestamp"] for p in preds] == [r["Date_time"] for r in rows]
            assert preds[-1]["models"]["speed"] == manifest.version
            assert wait_for(lambda: cloud.on_topic(metrics_topic), 10), "no metrics over MQTT"
            counters = running.stop()
        assert counters["swaps"] == 1 and counters["windows_uploaded"] >= 1
        # at shutdown the open windows closed and were uploaded too (the loop never lost one)
        notices = cloud.on_topic(windows_topic)
        assert sum(n["rows"] for n in notices) == len(rows)
        # the metrics message is what the IoT rules and the ingest Lambda expect
        ingest = load_lambda("ingest")
        metrics = cloud.on_topic(metrics_topic)[-1]
        assert ingest.validate({**metrics, "thing": thing, "mqtt_topic": metrics_topic})[2] == []
        # with the forecast intervals' running coverage and mean width (the dashboard's per-thing widgets)
        assert {"coverage_80", "coverage_95", "width_80", "width_95", "anomalies"} <= set(metrics)
        assert 0.5 < metrics["coverage_80"] <= metrics["coverage_95"] <= 1 and metrics["width_80"] > 0
        assert len(json.dumps(metrics)) < 2048
    finally:
        cloud.client.close()
