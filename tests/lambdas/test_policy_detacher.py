"""policy_detacher: at stack delete, the stack's IoT policies are detached from every certificate
and lose their non-default versions, so DeletePolicy succeeds (moto IoT).

DeletePolicy fails while a policy is attached or has non-default versions:
https://docs.aws.amazon.com/iot/latest/apireference/API_DeletePolicy.html
"""

from __future__ import annotations

import json

import boto3
import pytest

from tests.lambdas.conftest import load_handler

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}


@pytest.fixture
def detacher(aws, monkeypatch):
    module = load_handler("policy_detacher")
    module._clients.clear()
    responses: list[tuple[dict, str]] = []
    monkeypatch.setattr(module, "_respond", lambda event, status, reason, data: responses.append((event, status)))
    module.responses = responses
    return module


def _event(request: str, names: list[str]) -> dict:
    return {
        "RequestType": request,
        "ResourceProperties": {"PolicyNames": names},
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/HybridStream/x",
        "RequestId": "r1",
        "LogicalResourceId": "PolicyDetacherResource",
        "ResponseURL": "https://example.invalid/response",
    }


def test_delete_detaches_every_certificate_and_old_versions(detacher):
    iot = boto3.client("iot")
    iot.create_policy(policyName="hybridstream-device", policyDocument=json.dumps(POLICY))
    iot.create_policy_version(policyName="hybridstream-device", policyDocument=json.dumps(POLICY), setAsDefault=True)
    certs = [iot.create_keys_and_certificate(setAsActive=True)["certificateArn"] for _ in range(3)]
    for arn in certs:
        iot.attach_policy(policyName="hybridstream-device", target=arn)
    with pytest.raises(iot.exceptions.ClientError):  # what CloudFormation would hit
        iot.delete_policy(policyName="hybridstream-device")

    detacher.handler(_event("Delete", ["hybridstream-device", "hybridstream-gone"]))

    assert detacher.responses[-1][1] == "SUCCESS"
    assert iot.list_targets_for_policy(policyName="hybridstream-device")["targets"] == []
    versions = iot.list_policy_versions(policyName="hybridstream-device")["policyVersions"]
    assert [v["isDefaultVersion"] for v in versions] == [True]
    iot.delete_policy(policyName="hybridstream-device")  # now it can go


def test_create_and_update_change_nothing(detacher):
    iot = boto3.client("iot")
    iot.create_policy(policyName="hybridstream-device", policyDocument=json.dumps(POLICY))
    cert = iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    iot.attach_policy(policyName="hybridstream-device", target=cert)
    for request in ("Create", "Update"):
        detacher.handler(_event(request, ["hybridstream-device"]))
    assert [s for _, s in detacher.responses] == ["SUCCESS", "SUCCESS"]
    assert iot.list_targets_for_policy(policyName="hybridstream-device")["targets"] == [cert]
