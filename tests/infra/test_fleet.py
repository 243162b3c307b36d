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


def _statement(statements, action: str) -> dict:
    (found,) = [s for s in statements if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    return found


def test_device_policy_is_scoped_to_the_connected_thing(default):
    statements = _policy(default, "hybridstream-device")["Statement"]
    connect = _flat(_statement(statements, "iot:Connect")["Resource"])
    assert connect.endswith(f"client/{THING}") and "client/*" not in connect
    own = _statement(statements, "iot:Publish")
    subscribe = _statement(statements, "iot:Subscribe")
    for statement in (own, subscribe):
        resources = [_flat(r) for r in statement["Resource"]]
        shared = [r for r in resources if THING not in r]
        # the only resource not scoped by thing: the shared batch model's announcements
        assert all(r.endswith("hybridstream/models/batch/published") for r in shared), shared
    # each device hears its own speed model's announcements, and the shared batch model's
    filters = [_flat(r).split(":topicfilter/")[1] for r in subscribe["Resource"]]
    assert f"hybridstream/models/speed-{THING}/published" in filters
    assert "hybridstream/models/batch/published" in filters
    assert not any("models/*" in t or "models/+" in t for t in filters)
    receive_only = [s for s in statements if s["Action"] == "iot:Receive"]
    assert [_flat(r).split(":topic/")[1] for r in receive_only[0]["Resource"]] == [
        f"hybridstream/models/speed-{THING}/published",
        "hybridstream/models/batch/published",
    ]
    assert "hybridstream/" + THING + "/*" in _flat(own["Resource"])
    # publishing is never allowed on another device's topics or the model announcements
    assert "models" not in _flat(own["Resource"])
    # the only "*" is ResolveComponentCandidates, which has no resource-level permissions
    stars = [s["Action"] for s in statements if s["Resource"] == "*"]
    assert stars == ["greengrass:ResolveComponentCandidates"]


def test_device_policy_fits_iot_size_limit_in_the_longest_region(built):
    """Defect 1: IoT's CreatePolicy accepts at most 2,048 characters excluding whitespace, counted
    once CloudFormation has filled in partition, region and account (policy variables stay text).
    Rendered with the longest partition and region names, the policy must stay under 1,900 (margin
    for later statements). Source: https://docs.aws.amazon.com/iot/latest/apireference/API_CreatePolicy.html
    """
    from infra.policy_size import IOT_POLICY_MAX_CHARS, policy_chars

    for mode, b in built.items():
        for res in b.resources("AWS::IoT::Policy").values():
            chars = policy_chars(res["Properties"]["PolicyDocument"])
            assert chars <= 1900 < IOT_POLICY_MAX_CHARS, (mode, res["Properties"]["PolicyName"], chars)


def test_a_policy_too_long_for_iot_is_refused_at_synth():
    """The same limit, enforced at synth: a long prefix or model name fails with a clear message."""
    import pytest
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from infra.fleet import Fleet

    stack = Stack(App(), "TooLong")
    bucket = s3.Bucket(stack, "B")
    with pytest.raises(ValueError, match="device IoT policy would be"):
        Fleet(stack, "Fleet", windows_bucket=bucket, models_bucket=bucket, speed_model_name="s" * 200 + "-{thing}")


def test_thing_name_variables_only_where_they_resolve(default):
    """Defect 15: ``${iot:Connection.Thing.ThingName}`` resolves only on MQTT connections whose client
    id is the thing name: never in a client id with a suffix (the nucleus's ``<thing>#2``), never in
    a Greengrass (HTTPS) resource. Source: https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html
    """
    statements = _policy(default, "hybridstream-device")["Statement"]
    for statement in statements:
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
            text = _flat(resource)
            if ":greengrass:" in text:
                assert "${iot:" not in text, text
            if ":client/" in text:
                assert text.endswith(f":client/{THING}"), text
    greengrass = _flat(_statement(statements, "greengrass:ListThingGroupsForCoreDevice")["Resource"])
    assert "coreDevices:hybridstream-*" in greengrass


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
    own = [_flat(r) for r in by_sid["WriteOwnWindows"]["Resource"]]  # its windows and their forecasts, nothing else
    assert sorted(r.rsplit("/", 3)[-3] for r in own) == ["forecasts", "windows"]
    assert all(r.endswith("/${credentials-iot:ThingName}/*") for r in own)
    assert set(by_sid) == {
        "ReadModels",
        "ListModels",
        "WriteOwnWindows",
        "ReadComponentArtifacts",
        "LocateArtifactBucket",
    }
    assert "PublishOwnSpeedModel" not in by_sid  # models come from the cloud trainer
    artifacts = by_sid["ReadComponentArtifacts"]
    assert artifacts["Action"] == "s3:GetObject"
    assert all(".zip" in _flat(r) for r in artifacts["Resource"])  # exact asset objects only


def _tes_statements(b) -> dict:
    statements = next(
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in b.resources("AWS::IAM::Policy").items()
        if k.startswith("FleetTokenExchangeRoleDefaultPolicy")
    )
    return {s["Sid"]: s for s in statements}


def test_token_exchange_role_may_locate_the_artifact_bucket(default):
    """Defect 3: the nucleus calls s3:GetBucketLocation on the artifact's bucket before every
    download and fails on 403; AWS's own GreengrassV2TokenExchangeRoleAccess policy allows it.
    Source: https://docs.aws.amazon.com/greengrass/v2/developerguide/device-service-role.html
    """
    by_sid = _tes_statements(default)
    locate = by_sid["LocateArtifactBucket"]
    assert locate["Action"] == "s3:GetBucketLocation"
    bucket = json.dumps(locate["Resource"])  # the bootstrap assets bucket itself, not its objects
    assert "cdk-hnb659fds-assets-" in bucket and "/" not in bucket.split("assets-", 1)[1]
    objects = [json.dumps(r) for r in by_sid["ReadComponentArtifacts"]["Resource"]]
    assert objects and all("cdk-hnb659fds-assets-" in o and ".zip" in o for o in objects)


def test_devices_read_only_their_own_speed_model_and_the_batch_model(built):
    """Defect 14: no Pi may read or list another Pi's speed models."""
    for mode, b in built.items():
        by_sid = _tes_statements(b)
        reads = sorted(_flat(r).split("}", 1)[1] for r in by_sid["ReadModels"]["Resource"])
        assert reads == ["/models/batch/*", "/models/speed-${credentials-iot:ThingName}/*"], mode
        if mode != "edge":
            prefixes = by_sid["ListModels"]["Condition"]["StringLike"]["s3:prefix"]
            assert sorted(prefixes) == ["models/batch/*", "models/speed-${credentials-iot:ThingName}/*"]


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
