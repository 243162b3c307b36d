"""Fleet identity: thing groups, device policy scoped by thing name, TES role + alias, provisioning."""

from __future__ import annotations

import json

THING = "${iot:Connection.Thing.ThingName}"


def _flat(value) -> str:
    """A CloudFormation value (string or Fn::Join) as one string, tokens as {Ref}/{GetAtt}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_flat(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "{" + value["Ref"] + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "{" + ".".join(value["Fn::GetAtt"]) + "}"
    if isinstance(value, list):
        return ",".join(_flat(v) for v in value)
    return json.dumps(value)


def _policy(b, name: str) -> dict:
    for res in b.resources("AWS::IoT::Policy").values():
        if res["Properties"]["PolicyName"] == name:
            return res["Properties"]["PolicyDocument"]
    raise AssertionError(name)


def test_thing_groups(default):
    names = sorted(r["Properties"]["ThingGroupName"] for r in default.resources("AWS::IoT::ThingGroup").values())
    assert names == ["hybridstream-canary", "hybridstream-fleet"]


def test_device_policy_is_scoped_to_the_connected_thing(default):
    statements = _policy(default, "hybridstream-device")["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    connect = _flat(by_sid["ConnectAsOwnThing"]["Resource"])
    assert f"client/{THING}" in connect and "client/*" not in connect
    for sid in ("PublishOwnTopics", "SubscribeOwnTopics"):
        resources = [_flat(r) for r in by_sid[sid]["Resource"]]
        own = [r for r in resources if THING in r]
        shared = [r for r in resources if THING not in r]
        assert own, sid
        # the only resource not scoped by thing: the shared batch model's announcements
        assert all(r.endswith("hybridstream/models/batch/published") for r in shared), shared
    # each device hears its own speed model's announcements, and the shared batch model's
    subscribe = [_flat(r).split(":topicfilter/")[1] for r in by_sid["SubscribeOwnTopics"]["Resource"]]
    assert f"hybridstream/models/speed-{THING}/published" in subscribe
    assert "hybridstream/models/batch/published" in subscribe
    assert not any("models/*" in t or "models/+" in t for t in subscribe)
    receive = [_flat(r) for r in by_sid["ReceiveModelAnnouncements"]["Resource"]]
    assert [r.split(":topic/")[1] for r in receive] == [
        f"hybridstream/models/speed-{THING}/published",
        "hybridstream/models/batch/published",
    ]
    assert "hybridstream/" + THING + "/*" in _flat(by_sid["PublishOwnTopics"]["Resource"])
    # publishing is never allowed on another device's topics or the model announcements
    assert "models" not in _flat(by_sid["PublishOwnTopics"]["Resource"])
    # the only "*" is ResolveComponentCandidates, which has no resource-level permissions
    stars = [s["Sid"] for s in statements if s["Resource"] == "*"]
    assert stars == ["GreengrassResolve"]


def test_token_exchange_role_and_alias(default):
    default.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRole",
                        "Effect": "Allow",
                        "Principal": {"Service": "credentials.iot.amazonaws.com"},
                    }
                ],
                "Version": "2012-10-17",
            }
        },
    )
    alias = next(iter(default.resources("AWS::IoT::RoleAlias").values()))["Properties"]
    assert alias["RoleAlias"] == "hybridstream-tes-alias"
    assert alias["RoleArn"]["Fn::GetAtt"][0].startswith("FleetTokenExchangeRole")
    statements = next(
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in default.resources("AWS::IAM::Policy").items()
        if k.startswith("FleetTokenExchangeRoleDefaultPolicy")
    )
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["WriteOwnWindows"]["Action"] == "s3:PutObject"
    assert _flat(by_sid["WriteOwnWindows"]["Resource"]).endswith("/windows/${credentials-iot:ThingName}/*")
    assert _flat(by_sid["ReadModels"]["Resource"]).endswith("/models/*")
    assert set(by_sid) == {"ReadModels", "ListModels", "WriteOwnWindows", "ReadComponentArtifacts"}
    assert "PublishOwnSpeedModel" not in by_sid  # models come from the cloud trainer
    artifacts = by_sid["ReadComponentArtifacts"]
    assert artifacts["Action"] == "s3:GetObject"
    assert all(".zip" in _flat(r) for r in artifacts["Resource"])  # exact asset objects only


def test_provisioning_template_and_claim_policy(default):
    tpl = next(iter(default.resources("AWS::IoT::ProvisioningTemplate").values()))["Properties"]
    assert tpl["Enabled"] is True
    body = json.loads(tpl["TemplateBody"])
    resources = body["Resources"]
    assert resources["thing"]["Properties"]["ThingGroups"] == ["hybridstream-fleet"]
    assert resources["policy"]["Properties"]["PolicyName"] == "hybridstream-device"
    assert resources["certificate"]["Properties"]["CertificateId"] == {"Ref": "AWS::IoT::Certificate::Id"}
    claim = _policy(default, "hybridstream-provisioning-claim")["Statement"]
    topics = _flat(claim[1]["Resource"])
    assert "$aws/provisioning-templates/hybridstream-fleet-provisioning/provision/*" in topics
    assert "$aws/certificates/create/*" in topics
    assert [s["Action"] for s in claim] == ["iot:Connect", ["iot:Publish", "iot:Receive"], "iot:Subscribe"]


def test_edge_mode_token_exchange_role_publishes_the_own_speed_model_only(built):
    statements = next(
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in built["edge"].resources("AWS::IAM::Policy").items()
        if k.startswith("FleetTokenExchangeRoleDefaultPolicy")
    )
    by_sid = {s["Sid"]: s for s in statements}
    publish = [_flat(r) for r in by_sid["PublishOwnSpeedModel"]["Resource"]]
    assert by_sid["PublishOwnSpeedModel"]["Action"] == "s3:PutObject"
    assert [r.split("}", 1)[1] for r in publish] == [
        "/models/speed-${credentials-iot:ThingName}/*",
        "/rejected/speed-${credentials-iot:ThingName}/*",
    ]
    # the trainer on the Pi needs 404 (not 403) for missing keys: ListBucket without a prefix condition
    assert "Condition" not in by_sid["ListModels"]
    assert _flat(by_sid["ReadModels"]["Resource"]).endswith("/models/*")  # the models it compares against
