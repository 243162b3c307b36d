"""``edge forward`` (mode=cloud) over real servers: Kafka in, readings messages out over mosquitto (mTLS),
checked against the ingest Lambda and the cloud_inference Lambda's parser; re-training windows to S3
(radosgw) + window notices; dead letters; at-least-once across a SIGTERM restart; and no commit (nor
loss) while the broker is unreachable."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import socket
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest

from hybridstream.datasets import TURBINE
from hybridstream.devtools.edge import (
    collect,
    mqtt_client,
    produce,
    read_rows,
    reading_json,
    spawn_edge,
    topics,
    wait_for,
    write_config,
)
from model_contract import FeatureSpec
from model_contract.features import rows_to_matrix
from tests.edge_app.helpers import ForwarderThread, committed_offset, load_lambda
from training_job.notices import parse_queue_message as trainer_parse

pytestmark = pytest.mark.kafka

SPEC = FeatureSpec()
DEVICES = ("t1", "t2")


INGEST = load_lambda("ingest")
INFERENCE = load_lambda("cloud_inference")


class Cloud:
    """A second mTLS client subscribed to ``hybridstream/<thing>/readings`` (the IoT rule's view)."""

    def __init__(self, server, thing: str) -> None:
        self.topic = f"hybridstream/{thing}/readings"
        self.windows_topic = f"hybridstream/{thing}/windows"
        self.client = mqtt_client(server, "cloud")
        self.raw: list[bytes] = []
        self.window_notices: list[dict] = []
        self._lock = threading.Lock()
        assert self.client.connected.wait(10)
        for topic in (self.topic, self.windows_topic):
            self.client.subscribe(topic, self._on)
            assert self.client.wait_subscribed(topic, 10)

    def _on(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if topic == self.windows_topic:
                self.window_notices.append(json.loads(payload))
            else:
                self.raw.append(payload)

    def messages(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for p in self.raw]

    def new_readings(self) -> list[tuple[str, str]]:
        """(device, timestamp) of every reading after each message's context rows, in arrival order."""
        return [(r["device"], r["Date_time"]) for m in self.messages() for r in m["readings"][m["context"] :]]


def forward_config(tmp_path: Path, bootstrap: str, prefix: str, server, thing: str, **forward) -> dict:
    cert = server.client_cert(thing)
    return {
        "thing_name": thing,
        "bootstrap": bootstrap,
        "group_id": prefix + "fwd",
        "topics": topics(prefix),
        "state_dir": str(tmp_path / "state"),
        "windows": {"local_root": str(tmp_path / "uploads")},
        "kafka": {"poll_timeout_s": 0.05},
        "mqtt": {
            "transport": "mtls",
            "endpoint": server.host,
            "port": server.port,
            "cert": str(cert.cert),
            "key": str(cert.key),
            "ca": str(server.ca),
            "flow_control": False,
            "publish_timeout_s": 2,
        },
        "forward": {"interval_s": 0.3, **forward},
    }


def valid_readings(rows: list[dict]) -> tuple[list[bytes], list[tuple[str, str]]]:
    values, keys = [], []
    for row in rows:
        for device in DEVICES:
            values.append(reading_json(row, device))
            keys.append((device, row["Date_time"]))
    return values, keys


def check_messages(messages: list[dict], thing: str, max_bytes: int) -> None:
    """Every message passes the ingest validation and the cloud_inference parser (its rows too)."""
    topic = f"hybridstream/{thing}/readings"
    for m in messages:
        assert set(m) == {"timestamp", "device", "context", "readings"}
        assert len(json.dumps(m, separators=(",", ":")).encode()) <= max_bytes
        event = {**m, "thing": thing, "mqtt_topic": topic}
        assert INGEST.validate(event) == (thing, "readings", [])
        got_thing, timestamp, rows = INFERENCE.parse(event)
        assert (got_thing, timestamp) == (thing, m["timestamp"])
        assert rows_to_matrix(rows, SPEC).shape == (len(rows), len(SPEC.columns))
        assert {r["device"] for r in rows} == {m["device"]}
        stamps = [r["Date_time"] for r in rows]
        assert stamps == sorted(stamps), "oldest first"
        assert m["context"] <= SPEC.max_lag - 1


def test_forward_readings_over_mqtt_windows_to_s3_bad_ones_dead_lettered(
    kafka_bootstrap, topic_prefix, tmp_path, mqtt_server, s3_server, s3_client, s3_bucket, s3_env, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)  # the default chain, as on a Pi (TES + AWS)
    thing = f"pi-{uuid.uuid4().hex[:6]}"
    max_bytes = 8192  # small, so messages split on bytes as well as on max_readings
    cfg = forward_config(tmp_path, kafka_bootstrap, topic_prefix, mqtt_server, thing, max_bytes=max_bytes)
    # 400 readings per device: two windows of 150 close by count, the last 100 at shutdown
    cfg["windows"] = {"uploader": "s3", "bucket": s3_bucket, "max_records": 150, "max_seconds": 600}
    rows = read_rows(TURBINE / "test.csv", 0, 400)
    values, expected = valid_readings(rows)
    bad = [
        (b'{"device": "t1", "Date_time": ', "invalid_json"),
        (json.dumps({"device": "t1", "Date_time": "2017-01-01T00:00:00"}).encode(), "missing_field"),
        (reading_json(rows[0], "t3").replace(b'"Ot_avg": ', b'"Ot_avg": "hot", "x": '), "non_numeric"),
        (values[0], "out_of_order"),  # t1's first reading again, after all the valid ones
        (values[-2], "duplicate_timestamp"),  # t1's last reading again
        (b"[1, 2]", "not_an_object"),
    ]
    cloud = Cloud(mqtt_server, thing)
    try:
        produce(kafka_bootstrap, cfg["topics"]["readings"], values[:300] + [b for b, _ in bad[:3]] + values[300:])
        produce(kafka_bootstrap, cfg["topics"]["readings"], [b for b, _ in bad[3:]])
        total = len(values) + len(bad)
        running = ForwarderThread({**cfg, "forward": {**cfg["forward"], "max_readings": 40}})
        assert wait_for(lambda: len(cloud.new_readings()) >= len(expected), 20), len(cloud.new_readings())
        assert wait_for(lambda: committed_offset(kafka_bootstrap, cfg["group_id"], cfg["topics"]["readings"]) == total)
        counters = running.stop()  # closes the last windows and waits for their uploads
        assert wait_for(lambda: len(cloud.window_notices) >= 6, 10), cloud.window_notices
    finally:
        cloud.client.close()

    got = cloud.new_readings()
    assert Counter(got) == Counter(expected), "each valid reading exactly once"
    for device in DEVICES:  # per device in Kafka order
        assert [ts for d, ts in got if d == device] == [r["Date_time"] for r in rows]
    messages = cloud.messages()
    check_messages(messages, thing, max_bytes)
    assert max(len(m["readings"]) for m in messages) <= 40
    # after its first message, every message of a device carries max_lag - 1 context rows: the
    # cloud_inference Lambda (which needs max_lag rows) can forecast from each one
    for device in DEVICES:
        mine = [m for m in messages if m["device"] == device]
        assert mine[0]["context"] == 0 and all(m["context"] == SPEC.max_lag - 1 for m in mine[1:])
        assert all(len(m["readings"]) >= SPEC.max_lag for m in mine[1:])
        assert mine[1]["readings"][0] == mine[0]["readings"][-1]
    assert counters["forwarded"] == len(expected) and counters["messages"] == len(messages)

    dead = collect(kafka_bootstrap, cfg["topics"]["deadletter"], len(bad), timeout=10)
    assert sorted(d["reason"] for d in dead) == sorted(reason for _, reason in bad)
    assert counters["deadletter"] == len(bad)

    # re-training windows, as `run` makes them: every valid reading once, per device in order, in S3
    assert counters["windows_closed"] == counters["windows_uploaded"] == 6
    rows_by_ts = {r["Date_time"]: r for r in rows}
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix=f"windows/{thing}/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert len(keys) == 6
    spooled: dict[str, list[str]] = {device: [] for device in DEVICES}
    for key in keys:
        body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        table = list(csv.DictReader(io.StringIO(body.decode())))
        assert len({r["device"] for r in table}) == 1
        spooled[table[0]["device"]].append((table[0]["Date_time"], [r["Date_time"] for r in table]))
        for r in table:  # the forwarded values
            source = rows_by_ts[r["Date_time"]]
            assert [float(r[c]) for c in SPEC.columns] == [float(source[c]) for c in SPEC.columns]
    for device in DEVICES:
        stamps = [ts for _, window in sorted(spooled[device]) for ts in window]
        assert stamps == [r["Date_time"] for r in rows]
        assert sorted(len(w) for _, w in spooled[device]) == [100, 150, 150]
    # each announced on hybridstream/<thing>/windows in the form the trainer takes
    assert sorted(n["key"] for n in cloud.window_notices) == keys
    for notice in cloud.window_notices:
        (ref,) = trainer_parse(json.dumps({**notice, "mqtt_topic": cloud.windows_topic}))
        assert (ref.bucket, ref.thing) == (s3_bucket, thing)
    assert not list((tmp_path / "state" / "windows" / "ready").iterdir()), "nothing left spooled"


def test_sigterm_mid_stream_then_restart_loses_nothing(kafka_bootstrap, topic_prefix, tmp_path, mqtt_server):
    thing = f"pi-{uuid.uuid4().hex[:6]}"
    cfg = forward_config(tmp_path, kafka_bootstrap, topic_prefix, mqtt_server, thing, max_readings=100)
    config_path = write_config(tmp_path / "forward.json", **cfg)
    rows = read_rows(TURBINE / "test.csv", 0, 1500)
    values, expected = valid_readings(rows)
    topic = cfg["topics"]["readings"]
    log_path = tmp_path / "forward.log"
    cloud = Cloud(mqtt_server, thing)
    feeder_done = threading.Event()

    def feed() -> None:  # ~1500 records/s for 2 s
        for start in range(0, len(values), 150):
            produce(kafka_bootstrap, topic, values[start : start + 150])
            feeder_done.wait(0.1)
        feeder_done.set()

    try:
        first = spawn_edge(config_path, log_path, "forward")
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        assert wait_for(lambda: len(cloud.new_readings()) >= 600, 20), log_path.read_text()[-3000:]
        first.send_signal(signal.SIGTERM)  # mid-stream
        assert first.wait(20) == 0, log_path.read_text()[-3000:]
        assert len(set(cloud.new_readings())) < len(expected), "stopped too late to test a restart"
        second = spawn_edge(config_path, log_path, "forward")
        try:
            feeder.join(20)
            assert wait_for(lambda: set(cloud.new_readings()) >= set(expected), 20), log_path.read_text()[-3000:]
            assert wait_for(lambda: committed_offset(kafka_bootstrap, cfg["group_id"], topic) == len(values), 10)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0, log_path.read_text()[-3000:]
    finally:
        feeder_done.set()
        cloud.client.close()
    got = cloud.new_readings()
    assert set(got) == set(expected), "nothing lost"
    assert len(got) - len(expected) < 400, "a graceful stop re-sends at most the uncommitted tail"
    check_messages(cloud.messages(), thing, 100 * 1024)
    log = log_path.read_text()
    assert "Traceback" not in log
    assert log.count("everything forwarded and committed") == 2


class Gate:
    """A TCP relay to the broker that can be cut (connections dropped, new ones refused) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()
        self._listener.close()


def test_broker_unreachable_nothing_committed_then_delivered(kafka_bootstrap, topic_prefix, tmp_path, mqtt_server):
    thing = f"pi-{uuid.uuid4().hex[:6]}"
    gate = Gate((mqtt_server.host, mqtt_server.port))
    cfg = forward_config(tmp_path, kafka_bootstrap, topic_prefix, mqtt_server, thing, retry_max_s=1)
    cfg["mqtt"]["port"] = gate.port
    rows = read_rows(TURBINE / "test.csv", 0, 300)
    values, expected = valid_readings(rows)
    topic = cfg["topics"]["readings"]
    cloud = Cloud(mqtt_server, thing)  # directly on the broker: it sees what got through the gate
    try:
        running = ForwarderThread(cfg)
        produce(kafka_bootstrap, topic, values[:200])
        assert wait_for(lambda: committed_offset(kafka_bootstrap, cfg["group_id"], topic) == 200, 20)
        gate.cut()
        assert wait_for(lambda: not running.forwarder.mqtt.connected.is_set(), 10)
        produce(kafka_bootstrap, topic, values[200:])
        assert wait_for(lambda: running.forwarder.counters.records_in > 200, 10)
        threading.Event().wait(2.5)  # several retry rounds while the broker is unreachable
        assert running.thread.is_alive() and running.error is None
        assert committed_offset(kafka_bootstrap, cfg["group_id"], topic) == 200, "committed without a PUBACK"
        assert len(set(cloud.new_readings())) < len(expected)
        gate.open.set()  # the client reconnects by itself (backoff 0.5 s+)
        assert wait_for(lambda: set(cloud.new_readings()) == set(expected), 30), len(set(cloud.new_readings()))
        assert wait_for(lambda: committed_offset(kafka_bootstrap, cfg["group_id"], topic) == len(values), 10)
        counters = running.stop()
    finally:
        cloud.client.close()
        gate.close()
    assert counters["records_in"] == len(values)
    check_messages(cloud.messages(), thing, 100 * 1024)
