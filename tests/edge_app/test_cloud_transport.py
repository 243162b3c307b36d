"""The edge's cloud side without the Kafka loop: the Greengrass IPC adapter (a fake IPC client: no
offline Greengrass exists), the window-notice contract, the mqtt/s3 config, and the S3 uploader's
retries, quarantine and offline behaviour against the real radosgw and mosquitto."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_app.config import ConfigError, EdgeConfig
from edge_app.mqtt import GreengrassTransport, MtlsTransport, PublishFailed, make_transport
from edge_app.uploaders import S3Uploader, UploadWorker, make_uploader
from hybridstream.devtools.edge import wait_for
from infra.topic_rules import MESSAGE_SCHEMAS, rule_named
from model_contract.messages import WindowNotice
from tests.edge_app.helpers import load_lambda
from training_job.notices import parse_queue_message as trainer_parse

KEY = "windows/pi-1/2017/01/14/T1.1f9360_20170114T000000Z_2.csv"
CSV = b"Date_time,device,x\n2017-01-14T00:00:00Z,T1,1\n2017-01-14T00:10:00Z,T1,2\n"


class FakeIPC:
    """Records what the adapter asks of GreengrassCoreIPCClientV2."""

    def __init__(self, fail: bool = False) -> None:
        self.published: list[dict] = []
        self.subscriptions: list[dict] = []
        self.closed = False
        self.fail = fail

    def publish_to_iot_core_async(self, **kwargs):
        self.published.append(kwargs)
        future: Future = Future()
        if self.fail:
            future.set_exception(RuntimeError("UnauthorizedError"))
        else:
            future.set_result(SimpleNamespace())
        return future

    def subscribe_to_iot_core(self, **kwargs):
        self.subscriptions.append(kwargs)
        return SimpleNamespace(), SimpleNamespace(close=lambda: None)

    def close(self):
        self.closed = True


def test_greengrass_adapter_publishes_and_subscribes_through_ipc():
    ipc = FakeIPC()
    transport = GreengrassTransport(ipc)
    transport.publish("hybridstream/pi-1/windows", '{"key": "k"}', timeout=5)
    transport.publish("hybridstream/pi-1/metrics", b"{}")  # fire-and-forget
    assert [(p["topic_name"], p["qos"], p["payload"]) for p in ipc.published] == [
        ("hybridstream/pi-1/windows", "1", b'{"key": "k"}'),
        ("hybridstream/pi-1/metrics", "1", b"{}"),
    ]
    got = []
    transport.subscribe("hybridstream/models/speed-pi-1/published", lambda t, p: got.append((t, p)))
    (sub,) = ipc.subscriptions
    assert sub["topic_name"] == "hybridstream/models/speed-pi-1/published" and sub["qos"] == "1"
    event = SimpleNamespace(message=SimpleNamespace(topic_name=sub["topic_name"], payload=b'{"name": "x"}'))
    sub["on_stream_event"](event)
    sub["on_stream_event"](SimpleNamespace(message=None))  # a malformed event: logged, never raised
    assert got == [("hybridstream/models/speed-pi-1/published", b'{"name": "x"}')]
    assert sub["on_stream_error"](RuntimeError("x")) is False  # keep the stream open
    transport.close()
    assert ipc.closed
    with pytest.raises(PublishFailed):
        GreengrassTransport(FakeIPC(fail=True)).publish("t", b"x", timeout=5)


def test_the_edge_window_notice_satisfies_the_rule_the_ingest_lambda_and_the_trainer():
    notice = WindowNotice.for_window("pi-1", "windows-bucket", KEY, CSV).to_dict()
    assert set(notice) == {"thing", "bucket", "key", "rows", "first_ts", "last_ts", "window_id", "sha256"}
    topic = "hybridstream/pi-1/windows"
    # the IoT rule fires and forwards it (with thing + mqtt_topic) to the training queue
    forwarded = rule_named("window_notices").match(topic, notice)
    assert forwarded is not None
    # every field has the type MESSAGE_SCHEMAS says; the ingest Lambda accepts it
    schema = MESSAGE_SCHEMAS["windows"]
    types = {"string": str, "integer": int}
    for name, json_type in {**schema["required"], **schema["optional"]}.items():
        assert isinstance(notice[name], types[json_type]), name
    assert load_lambda("ingest").validate(forwarded) == ("pi-1", "windows", [])
    # the trainer parses what the rule forwards; the rule passes no bucket from devices (17dc0cd): the
    # worker's own --windows-bucket names it
    assert "bucket" not in forwarded
    (ref,) = trainer_parse(json.dumps(forwarded), "windows-bucket")
    assert (ref.bucket, ref.key, ref.thing, ref.rows, ref.window_id) == (
        "windows-bucket",
        KEY,
        "pi-1",
        2,
        notice["window_id"],
    )
    assert ref.first_ts == "2017-01-14T00:00:00Z" and ref.last_ts == "2017-01-14T00:10:00Z"
    assert len(json.dumps(notice)) < 1024  # far below IoT Core's 128 KB


def _cfg(**extra) -> dict:
    return {"thing_name": "pi-1", "models": {"batch": "b.tflite"}, **extra}


def test_mqtt_and_s3_config_is_validated():
    cfg = EdgeConfig.from_dict(_cfg(windows={"uploader": "s3", "bucket": "w"}, mqtt={"transport": "greengrass"}))
    assert cfg.mqtt.transport == "greengrass" and cfg.windows.bucket == "w"
    assert EdgeConfig.from_dict(_cfg()).mqtt.transport == ""  # no MQTT by default
    assert make_transport(EdgeConfig.from_dict(_cfg()).mqtt, "pi-1") is None
    bad = [
        ({"windows": {"uploader": "s3"}}, "windows.bucket is required"),
        ({"windows": {"uploader": "ftp"}}, "windows.uploader 'ftp' unknown"),
        ({"mqtt": {"transport": "amqp"}}, "mqtt.transport 'amqp' unknown"),
        ({"mqtt": {"transport": "mtls", "endpoint": "x"}}, "needs mqtt.cert, mqtt.key"),
        ({"mqtt": {"transport": "mtls", "endpoint": "x", "cert": "c", "key": "k", "port": 0}}, "mqtt.port"),
        ({"mqtt": {"metrics_interval_s": 0.1}}, "mqtt.metrics_interval_s"),
        ({"mqtt": {"password": "x"}}, "unknown config key(s): mqtt.password"),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            EdgeConfig.from_dict(_cfg(**extra))
    uploader = make_uploader(EdgeConfig.from_dict(_cfg(windows={"uploader": "s3", "bucket": "w"})), transport=None)
    assert isinstance(uploader, S3Uploader) and uploader.bucket == "w" and uploader.topic == "hybridstream/pi-1/windows"


def _spooled(tmp_path: Path) -> Path:
    ready = tmp_path / "windows" / "ready"
    ready.mkdir(parents=True)
    path = ready / "T1.1f9360_20170114T000000Z_2.csv"
    path.write_bytes(CSV)
    return path


def test_s3_uploader_puts_then_notifies_and_quarantines_what_never_uploads(
    s3_server, s3_client, s3_bucket, s3_env, tmp_path
):
    sent = []
    transport = SimpleNamespace(publish=lambda topic, payload, timeout=None: sent.append((topic, json.loads(payload))))
    events = []
    path = _spooled(tmp_path / "ok")
    uploader = S3Uploader(s3_bucket, "pi-1", transport=transport, endpoint_url=s3_server.endpoint)
    worker = UploadWorker(uploader, "pi-1", events=lambda kind, **f: events.append((kind, f)))
    worker.submit(path, {})
    assert worker.close(timeout=30)
    assert s3_client.get_object(Bucket=s3_bucket, Key=KEY)["Body"].read() == CSV
    assert sent == [("hybridstream/pi-1/windows", WindowNotice.for_window("pi-1", s3_bucket, KEY, CSV).to_dict())]
    assert not path.exists() and events[0][0] == "window_uploaded" and events[0][1]["uri"] == f"s3://{s3_bucket}/{KEY}"

    # a bucket that does not exist: retried with backoff, then quarantined; the thread lives on
    path = _spooled(tmp_path / "bad")
    missing = S3Uploader(
        f"no-such-{uuid.uuid4().hex[:8]}", "pi-1", transport=transport, endpoint_url=s3_server.endpoint
    )
    worker = UploadWorker(missing, "pi-1", max_backoff=0.05, max_tries=3)
    worker.submit(path, {})
    assert wait_for(lambda: worker.quarantined == 1, 30)
    assert (tmp_path / "bad" / "windows" / "quarantine" / path.name).exists() and worker.failures == 3
    good = _spooled(tmp_path / "after")
    worker._uploader = uploader  # the same thread carries on with the next window
    worker.submit(good, {})
    assert worker.close(timeout=30) and not good.exists()


def test_offline_mqtt_keeps_the_window_on_disk_for_the_next_try(mqtt_server, s3_server, s3_bucket, s3_env, tmp_path):
    """The broker is unreachable: the notice times out, the window stays in ready/ (retried later)."""
    from hybridstream.servers.process import free_port

    cert = mqtt_server.client_cert("pi-offline")
    offline = MtlsTransport(
        endpoint="127.0.0.1",
        port=free_port(),  # nothing listens there
        cert=str(cert.cert),
        key=str(cert.key),
        ca=str(mqtt_server.ca),
        client_id="pi-offline",
        flow_control=False,
    )
    try:
        uploader = S3Uploader(
            s3_bucket, "pi-1", transport=offline, endpoint_url=s3_server.endpoint, publish_timeout=0.5
        )
        worker = UploadWorker(uploader, "pi-1", max_backoff=0.2)
        path = _spooled(tmp_path)
        worker.submit(path, {})
        assert wait_for(lambda: worker.failures >= 2, 15)
        assert not worker.close(timeout=0.1)  # not drained: stays spooled for the next start
        assert path.exists() and worker.quarantined == 0
    finally:
        offline.close()
