"""The wire contract's topics: one spelling of every topic, one MQTT matcher with MQTT's semantics.

The matching rules are MQTT 3.1.1 section 4.7 (https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html#_Toc398718106)
and MQTT 5 section 4.7 (https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901241), which
IoT Core follows for subscriptions (https://docs.aws.amazon.com/iot/latest/developerguide/topics.html);
the cases below are the spec's own examples. A second test checks the matcher against the real broker
(mosquitto) delivering to real subscriptions.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from model_contract import topics
from model_contract.topics import (
    KAFKA_TOPICS,
    MODEL_NOTICES_FILTER,
    device_filter,
    device_topic,
    model_notice_topic,
    parse_device_topic,
    topic_matches,
    validate_filter,
)

SPEC_CASES = [
    # (filter, topic, matches) -- MQTT 3.1.1 4.7.1.2 / 4.7.1.3 non-normative examples
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),  # '#' includes the parent level
    ("#", "sport/tennis", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),  # '+' matches an empty level
    ("+", "sport", True),
    ("+", "sport/", False),
    ("+", "/finance", False),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player2", False),
    ("ACCOUNTS", "Accounts", False),  # case-sensitive
    ("hybridstream/+/metrics", "hybridstream/pi-1/metrics", True),
    ("hybridstream/+/metrics", "hybridstream/a/b/metrics", False),
    ("hybridstream/+/windows", "hybridstream/models/x/published", False),
    ("hybridstream/#", "hybridstream/a/b/c", True),
    # 4.7.2: wildcards at the first level never match topics starting with '$'
    ("#", "$SYS/monitor/Clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("+/things/pi-1/shadow/update", "$aws/things/pi-1/shadow/update", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), SPEC_CASES)
def test_topic_matches_follows_mqtt(topic_filter, topic, expected):
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("bad", ["sport/tennis#", "sport/tennis/#/ranking", "sport+", "a/b+/c", "", "#/a"])
def test_invalid_filters_are_refused(bad):
    with pytest.raises(ValueError):
        validate_filter(bad)
    with pytest.raises(ValueError):
        topic_matches(bad, "sport/tennis")


def test_the_edge_transport_and_the_rules_use_this_matcher():
    """One matcher: the two former copies are gone and both users import this one."""
    import edge_app.mqtt
    import infra.topic_rules

    assert edge_app.mqtt.topic_matches is topic_matches
    assert infra.topic_rules.topic_matches is topic_matches
    assert not hasattr(edge_app.mqtt, "_matches")


def test_topic_builders_and_parser_round_trip():
    for kind in topics.DEVICE_KINDS:
        topic = device_topic("pi-1", kind)
        assert topic == f"hybridstream/pi-1/{kind}"
        assert parse_device_topic(topic) == ("pi-1", kind)
        assert topic_matches(device_filter(kind), topic) and topic_matches(device_filter(), topic)
    notice = model_notice_topic("speed-pi-1")
    assert notice == "hybridstream/models/speed-pi-1/published"
    assert topic_matches(MODEL_NOTICES_FILTER, notice)
    assert not topic_matches(device_filter(), notice)  # a model notice is never a device message
    assert device_topic("pi-1", "windows", root="test-root") == "test-root/pi-1/windows"


@pytest.mark.parametrize(
    "call",
    [
        lambda: device_topic("pi-1", "telemetry"),
        lambda: device_topic("a/b", "windows"),
        lambda: device_topic("+", "windows"),
        lambda: model_notice_topic("x/y"),
        lambda: model_notice_topic(""),
        lambda: parse_device_topic("hybridstream/pi-1"),
        lambda: parse_device_topic("other/pi-1/windows"),
        lambda: parse_device_topic(None),
    ],
)
def test_bad_topic_parts_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_kafka_topic_defaults_are_the_edge_apps_and_the_recipes():
    from dataclasses import asdict

    from edge_app.config import Topics
    from infra.recipes import EdgeAppSettings

    assert asdict(Topics()) == dict(KAFKA_TOPICS)
    assert dict(EdgeAppSettings().kafka_topics) == dict(KAFKA_TOPICS)
    assert len(set(KAFKA_TOPICS.values())) == len(KAFKA_TOPICS)
    with pytest.raises(TypeError):
        KAFKA_TOPICS["readings"] = "x"  # read-only: one spelling, changed here only


def test_the_wire_contract_does_not_import_numpy():
    """The Lambdas without a numpy layer import these modules."""
    import subprocess
    import sys

    code = (
        "import sys, model_contract.topics, model_contract.layout, model_contract.messages;"
        "sys.exit(1 if 'numpy' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


class _Recorder:
    """A raw subscriber: every topic the broker delivered (no client-side filtering)."""

    def __init__(self, server, topic_filter: str) -> None:
        from edge_app.mqtt import MtlsTransport

        got: list[str] = []

        class Recording(MtlsTransport):
            def _on_publish(self, data) -> None:  # the broker's delivery, before any matching
                got.append(data.publish_packet.topic)

        cert = server.client_cert("recorder")
        self.got = got
        self.filter = topic_filter
        self.client = Recording(
            endpoint=server.host,
            port=server.port,
            cert=str(cert.cert),
            key=str(cert.key),
            ca=str(server.ca),
            client_id=f"rec-{uuid.uuid4().hex[:8]}",
            flow_control=False,
        )
        self.client.subscribe(topic_filter, lambda t, p: None)


BROKER_FILTERS = ["sport/#", "sport/+", "+", "+/+", "sport/+/player1", "sport/tennis/player1/#", "#"]
BROKER_TOPICS = [
    "sport",
    "sport/",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player2",
    "/finance",
    "finance",
]


def test_topic_matches_agrees_with_the_broker(mqtt_server):
    """mosquitto delivers exactly the topics topic_matches says each filter matches."""
    from edge_app.mqtt import MtlsTransport

    run = uuid.uuid4().hex[:6]  # one root per run: nothing retained from elsewhere interferes
    recorders = [_Recorder(mqtt_server, f"{run}/{f}" if f not in ("#", "+", "+/+") else f) for f in BROKER_FILTERS]
    cert = mqtt_server.client_cert("publisher")
    pub = MtlsTransport(
        endpoint=mqtt_server.host,
        port=mqtt_server.port,
        cert=str(cert.cert),
        key=str(cert.key),
        ca=str(mqtt_server.ca),
        client_id=f"pub-{run}",
        flow_control=False,
    )
    try:
        for r in recorders:
            assert r.client.connected.wait(10) and r.client.wait_subscribed(r.filter, 10), r.filter
        assert pub.connected.wait(10)
        sent = [f"{run}/{t}" for t in BROKER_TOPICS] + [f"{run}{t}" for t in BROKER_TOPICS if t.startswith("/")]
        for topic in sent:
            pub.publish(topic, b"x", timeout=10)
        done = threading.Event()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not done.is_set():
            expected = {r.filter: sorted(t for t in sent if topic_matches(r.filter, t)) for r in recorders}
            if all(sorted(t for t in r.got if t in sent) == expected[r.filter] for r in recorders):
                done.set()
            else:
                time.sleep(0.1)
        for r in recorders:
            delivered = sorted(t for t in r.got if t in sent)
            assert delivered == sorted(t for t in sent if topic_matches(r.filter, t)), r.filter
        assert any(r.got for r in recorders if r.filter.endswith("sport/+"))  # the check saw deliveries
    finally:
        pub.close()
        for r in recorders:
            r.client.close()
