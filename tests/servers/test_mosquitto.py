"""The local IoT Core stand-in: mosquitto with mutual TLS, reached with awsiotsdk (the edge's own client)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
import uuid
from pathlib import Path

import pytest

from edge_app.mqtt import MtlsTransport
from hybridstream.servers.mosquitto import Mosquitto


def _client(server, name: str, cert=None) -> MtlsTransport:
    cert = cert or server.client_cert(name)
    return MtlsTransport(
        endpoint=server.host,
        port=server.port,
        cert=str(cert.cert),
        key=str(cert.key),
        ca=str(server.ca),
        client_id=f"{name}-{uuid.uuid4().hex[:6]}",
        flow_control=False,
    )


def test_client_with_a_cert_from_the_ca_round_trips(mqtt_server):
    got: list[tuple[str, bytes]] = []
    arrived = threading.Event()
    sub, pub = _client(mqtt_server, "alice"), _client(mqtt_server, "bob")
    try:
        assert sub.connected.wait(10) and pub.connected.wait(10)

        def on_message(topic: str, payload: bytes) -> None:
            got.append((topic, payload))
            arrived.set()

        sub.subscribe("hybridstream/+/windows", on_message)
        assert sub.wait_subscribed("hybridstream/+/windows", 10)
        pub.publish("hybridstream/pi-1/windows", b'{"key": "k"}', timeout=10)  # waits for the PUBACK
        assert arrived.wait(10)
        assert got == [("hybridstream/pi-1/windows", b'{"key": "k"}')]
    finally:
        sub.close()
        pub.close()
    # the broker saw each client under its certificate's CN (use_identity_as_username)
    log = mqtt_server.log_file.read_text()
    assert "u'alice'" in log and "u'bob'" in log


def _handshake(server, cert: Path | None = None, key: Path | None = None) -> None:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection((server.host, server.port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname=server.host) as tls:
        # a refused client certificate may show only at the first read
        tls.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")  # CONNECT, empty client id
        if not tls.recv(4):
            raise ConnectionError("closed")


def test_clients_without_a_cert_or_from_a_foreign_ca_are_refused(mqtt_server, tmp_path):
    # a client certificate from the CA passes the handshake (and gets a CONNACK)
    good = mqtt_server.client_cert("carol")
    _handshake(mqtt_server, good.cert, good.key)
    # no certificate: refused in the TLS handshake
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(mqtt_server)
    # a certificate from another CA: refused too (also with awsiotsdk: never connects)
    foreign_root = Path(tmp_path) / "foreign"
    foreign = Mosquitto(port=1, state_dir=foreign_root).client_cert("mallory")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(mqtt_server, foreign.cert, foreign.key)
    intruder = _client(mqtt_server, "mallory", cert=foreign)
    try:
        assert not intruder.connected.wait(3)
    finally:
        intruder.close()


def test_keys_are_private_and_the_broker_runs_as_us_below_a_private_folder(mqtt_server):
    """Issue 16: a clone below a 0700 folder (a home, ``mktemp -d``) works: the broker runs as the
    invoking user (mosquitto keeps the starting user for ``user <that user>``; as root it would
    otherwise drop to ``mosquitto``, which cannot enter the folder)."""
    certs = mqtt_server.certs
    for key in certs.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert key.stat().st_uid == os.geteuid(), key
    private = [p for p in mqtt_server.state_dir.parents if not p.stat().st_mode & 0o001]
    assert private, "the fixture's state folder should sit below a folder others cannot enter"
    pid = int(mqtt_server.pid_file.read_text())
    uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    assert {int(u) for u in uids.split()[1:]} == {os.geteuid()}, uids
    # the server certificate names the host the clients dial
    text = ssl._ssl._test_decode_cert(str(certs / "server.crt"))  # noqa: SLF001
    assert ("IP Address", "127.0.0.1") in text["subjectAltName"] and ("DNS", "localhost") in text["subjectAltName"]
