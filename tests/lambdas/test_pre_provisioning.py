"""pre_provisioning hook: only allow-listed serials, never an existing thing, exactly one thing group
(moto for DynamoDB and IoT).

The hook's contract is IoT's: input ``{"parameters": {...}, "claimCertificateId": ...}``, output
``{"allowProvisioning": bool, "parameterOverrides": {...}}``
(https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html).
"""

from __future__ import annotations

import json

import boto3
import pytest

from tests.lambdas.conftest import load_handler

TABLE = "hybridstream-allow-list"
GROUPS = {"fleet": "hybridstream-fleet", "canary": "hybridstream-canary"}


@pytest.fixture
def hook(aws, monkeypatch):
    module = load_handler("pre_provisioning")
    module._clients.clear()
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("THING_PREFIX", "hybridstream")
    monkeypatch.setenv("THING_GROUPS", json.dumps(GROUPS))
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "thingName", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "thingName", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return module


def enroll(serial: str, group: str = "fleet") -> None:
    """What ``hybridstream fleet enroll`` writes (the coordinator's item layout)."""
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            "thingName": {"S": f"hybridstream-{serial}"},
            "serial": {"S": serial},
            "group": {"S": group},
            "arch": {"S": "aarch64"},
            "enrolledAt": {"S": "2026-12-01T07:00:00Z"},
        },
    )


def event(serial, **params) -> dict:
    return {
        "claimCertificateId": "claim-cert",
        "certificateId": "new-cert",
        "certificatePem": "-----BEGIN CERTIFICATE-----",
        "templateArn": "arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/hybridstream-fleet-provisioning",
        "clientId": f"hybridstream-claim-{serial}",
        "parameters": {"SerialNumber": serial, **params},
    }


def test_enrolled_fleet_device_is_allowed_into_the_fleet_group_only(hook, capsys):
    enroll("10000000abcd")
    answer = hook.handler(event("10000000abcd"))
    assert answer == {"allowProvisioning": True, "parameterOverrides": {"ThingGroupName": "hybridstream-fleet"}}
    log = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (log["decision"], log["thing"], log["group"]) == ("allow", "hybridstream-10000000abcd", "fleet")


def test_canary_lands_in_the_canary_group_even_when_it_asks_for_the_fleet(hook):
    """A canary in both groups gets two pinned versions of one component (defect 4): one group only."""
    enroll("c0ffee", group="canary")
    answer = hook.handler(event("c0ffee", ThingGroupName="hybridstream-fleet"))
    assert answer["parameterOverrides"] == {"ThingGroupName": "hybridstream-canary"}


@pytest.mark.parametrize(
    "serial, reason",
    [("unknown1", "not enrolled"), ("../x", "SerialNumber"), ("", "SerialNumber"), (None, "SerialNumber")],
)
def test_unknown_or_malformed_serials_are_refused(hook, capsys, serial, reason):
    enroll("10000000abcd")
    assert hook.handler(event(serial)) == {"allowProvisioning": False}
    log = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert log["decision"] == "deny" and reason in log["reason"]


def test_an_existing_thing_name_is_refused(hook, capsys):
    """Whoever copies the claim certificate must not take over an enrolled Pi's thing (defect 12)."""
    enroll("10000000abcd")
    boto3.client("iot").create_thing(thingName="hybridstream-10000000abcd")
    assert hook.handler(event("10000000abcd")) == {"allowProvisioning": False}
    assert "already exists" in capsys.readouterr().out


def test_a_bad_group_or_mismatched_serial_is_refused(hook):
    enroll("aa11", group="staging")
    assert hook.handler(event("aa11")) == {"allowProvisioning": False}
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={"thingName": {"S": "hybridstream-bb22"}, "serial": {"S": "other"}, "group": {"S": "fleet"}},
    )
    assert hook.handler(event("bb22")) == {"allowProvisioning": False}


def test_errors_refuse(hook, monkeypatch, capsys):
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    assert hook.handler(event("10000000abcd")) == {"allowProvisioning": False}
    assert "error: ResourceNotFoundException" in capsys.readouterr().out
