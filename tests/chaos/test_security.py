"""Security checks that need no server: the synthesized IoT device policy evaluated for two thing names,
and a scan of every tracked file for secrets. The mTLS refusals run against mosquitto in
``test_mtls_refusals`` below (and in ``make chaos``)."""

from __future__ import annotations

import pytest

from hybridstream.chaos.security import (
    ARN,
    allowed,
    device_policy,
    foreign_client_cert,
    mqtt_handshake,
    policy_matrix,
    scan_secrets,
    tracked_files,
)


def test_one_things_credentials_cannot_reach_another_things_topics():
    """IoT policy semantics (Allow unless Deny, ``${iot:Connection.Thing.ThingName}``, ``*``/``?`` wildcards,
    ``+``/``#`` literal): https://docs.aws.amazon.com/iot/latest/developerguide/iot-policies.html,
    https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html,
    https://docs.aws.amazon.com/iot/latest/developerguide/pub-sub-policy.html"""
    policy = device_policy()
    for a, b in (("hs-pi-0001", "hs-pi-0002"), ("hs-pi-0002", "hs-pi-0001")):
        matrix = policy_matrix(policy, a, b)
        assert all(matrix.values()), {k: v for k, v in matrix.items() if not v}


def test_the_evaluator_denies_what_a_deny_statement_covers():
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": "iot:*", "Resource": f"{ARN}topic/*"},
            {"Effect": "Deny", "Action": "iot:Publish", "Resource": f"{ARN}topic/secret/*"},
        ]
    }
    assert allowed(doc, "a", "iot:Publish", f"{ARN}topic/open/x")
    assert not allowed(doc, "a", "iot:Publish", f"{ARN}topic/secret/x")
    assert allowed(doc, "a", "iot:Receive", f"{ARN}topic/secret/x")


def test_no_secrets_in_tracked_files():
    files = tracked_files()
    assert len(files) > 50
    assert scan_secrets(files) == []


def test_the_secret_scanner_finds_planted_secrets(tmp_path):
    key_id = "AKIA" + "Q" * 16
    pem = "-----BEGIN " + "PRIVATE KEY-----\n" + "A" * 64 + "\n"
    planted = tmp_path / "leak.txt"
    planted.write_text(f"id={key_id}\n{pem}")
    import hybridstream.chaos.security as sec

    found = {kind for _, kind in _scan_outside_repo(sec, [planted])}
    assert {"AWS access key id", "private key block"} <= found


def _scan_outside_repo(sec, files):
    old = sec.REPO_ROOT
    sec.REPO_ROOT = files[0].parent
    try:
        return sec.scan_secrets(files)
    finally:
        sec.REPO_ROOT = old


@pytest.mark.slow
def test_mtls_refusals(mqtt_server, tmp_path):
    good = mqtt_server.client_cert("sec-test")
    assert mqtt_handshake(mqtt_server.host, mqtt_server.port, mqtt_server.ca, good.cert, good.key) == "connack"
    assert mqtt_handshake(mqtt_server.host, mqtt_server.port, mqtt_server.ca).startswith("refused")
    cert, key = foreign_client_cert(tmp_path)
    assert mqtt_handshake(mqtt_server.host, mqtt_server.port, mqtt_server.ca, cert, key).startswith("refused")
