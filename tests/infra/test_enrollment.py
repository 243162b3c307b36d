"""Enrolment: the allow-list table, the pre-provisioning hook, the provisioning template (one thing
group per device) and the claim policy."""

from __future__ import annotations

import json

from tests.infra.test_fleet import _flat, _policy


def _template(b) -> dict:
    (tpl,) = b.resources("AWS::IoT::ProvisioningTemplate").values()
    return tpl["Properties"]


def test_provisioning_template_puts_each_device_in_exactly_one_group(built):
    """Defect 4: a canary in the fleet group too gets two pinned versions of one component (the
    nucleus intersects the version requirements of all its thing groups' deployments), no version
    satisfies both and the canary job fails. The thing resource names ONE group, the
    ``ThingGroupName`` parameter, which the hook sets from the allow-list.
    Source: https://docs.aws.amazon.com/greengrass/v2/developerguide/manage-deployments.html
    (and https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html for Ref in ThingGroups).
    """
    for mode, b in built.items():
        body = json.loads(_template(b)["TemplateBody"])
        thing = body["Resources"]["thing"]["Properties"]
        assert thing["ThingGroups"] == [{"Ref": "ThingGroupName"}], mode
        assert body["Parameters"]["ThingGroupName"] == {"Type": "String", "Default": "hybridstream-fleet"}
        assert thing["ThingName"] == {"Fn::Join": ["", ["hybridstream-", {"Ref": "SerialNumber"}]]}
        assert body["Resources"]["policy"]["Properties"]["PolicyName"] == "hybridstream-device"
        assert body["Resources"]["certificate"]["Properties"]["CertificateId"] == {"Ref": "AWS::IoT::Certificate::Id"}
        # the hook's environment maps allow-list groups to exactly these two thing groups
        (hook,) = [
            f
            for f in b.resources("AWS::Lambda::Function").values()
            if "Pre-provisioning" in f["Properties"].get("Description", "")
        ]
        groups = json.loads(hook["Properties"]["Environment"]["Variables"]["THING_GROUPS"])
        assert groups == {"fleet": "hybridstream-fleet", "canary": "hybridstream-canary"}


def test_provisioning_template_calls_the_hook_which_iot_may_invoke(default):
    """Defect 12: a pre-provisioning hook gates every RegisterThing; IoT invokes it through a
    resource policy bound to this template and account (confused deputy), payload 2020-04-01, and
    the function answers within IoT's 5 s.
    Source: https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html
    """
    tpl = _template(default)
    hook = tpl["PreProvisioningHook"]
    assert hook["PayloadVersion"] == "2020-04-01"
    function_id = hook["TargetArn"]["Fn::GetAtt"][0]
    function = default.raw["Resources"][function_id]["Properties"]
    assert function["Timeout"] <= 5
    (permission,) = [
        p["Properties"]
        for p in default.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    assert permission["Principal"] == "iot.amazonaws.com" and permission["Action"] == "lambda:InvokeFunction"
    assert _flat(permission["SourceArn"]).endswith(":provisioningtemplate/hybridstream-fleet-provisioning")
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    # the hook reads the allow-list and checks for existing things, nothing else
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for k, p in default.resources("AWS::IAM::Policy").items()
        if k.startswith("EnrollmentHookRoleDefaultPolicy")
    ]
    actions = {s.get("Sid"): s["Action"] for s in policy}
    assert actions["ReadAllowList"] == "dynamodb:GetItem" and actions["RefuseExistingThings"] == "iot:DescribeThing"


def test_allow_list_table_and_outputs(default):
    (table_id, table) = next(iter(default.resources("AWS::DynamoDB::Table").items()))
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "thingName", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "thingName", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    outputs = default.raw["Outputs"]
    assert outputs["EnrollmentTable"]["Value"] == {"Ref": table_id}
    assert outputs["ThingNamePrefix"]["Value"] == "hybridstream"
    assert outputs["ProvisioningTemplate"]["Value"] == "hybridstream-fleet-provisioning"


def test_claim_policy_cannot_connect_as_a_thing(default):
    """Defect 12: the claim certificate connects only with client ids ``hybridstream-claim-*``
    (the fleet provisioning plugin's ``deviceId``), so a copied claim certificate can neither
    use an enrolled thing's client id nor do anything but this template's provisioning calls.
    Source: https://docs.aws.amazon.com/greengrass/v2/developerguide/fleet-provisioning-configuration.html
    """
    claim = _policy(default, "hybridstream-provisioning-claim")["Statement"]
    (connect,) = [s for s in claim if s["Action"] == "iot:Connect"]
    assert _flat(connect["Resource"]).endswith(":client/hybridstream-claim-*")
    topics = _flat([s["Resource"] for s in claim if s["Action"] != "iot:Connect"])
    assert "$aws/provisioning-templates/hybridstream-fleet-provisioning/provision/*" in topics
    assert "$aws/certificates/create/*" in topics
    assert [s["Action"] for s in claim] == ["iot:Connect", ["iot:Publish", "iot:Receive"], "iot:Subscribe"]
    assert default.raw["Outputs"]["ClaimClientIdPrefix"]["Value"] == "hybridstream-claim-"


def test_constructs_take_existing_resources_instead_of_new_ones(tmp_path):
    """Issue 7 item 6 (IotToSqs-style props): an existing allow-list table, announcer function or
    inference layer is wired in, and no second one is created."""
    import pytest
    from aws_cdk import App, Stack
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from infra.cloud_inference import CloudInference
    from infra.enrollment import Enrollment
    from infra.fleet import Fleet
    from infra.model_announcer import ModelAnnouncer
    from tests.infra.test_build_artifacts import REPO

    stack = Stack(App(), "Existing")
    bucket = s3.Bucket(stack, "Models")
    fleet = Fleet(stack, "Fleet", windows_bucket=bucket, models_bucket=bucket)
    table = dynamodb.Table.from_table_name(stack, "Table", "enrolled-elsewhere")
    enrollment = Enrollment(
        stack, "Enrollment", fleet=fleet, hook_source=REPO / "lambdas" / "pre_provisioning", existing_table=table
    )
    assert enrollment.table is table
    layer = lambda_.LayerVersion.from_layer_version_arn(
        stack, "Layer", "arn:aws:lambda:eu-west-1:123456789012:layer:inference:1"
    )
    inference = CloudInference(
        stack,
        "CloudInference",
        models_bucket=bucket,
        iot_endpoint="x",
        source=REPO / "lambdas" / "cloud_inference",
        existing_layer=layer,
    )
    assert inference.layer is layer
    announcer = ModelAnnouncer(
        stack, "Announcer", models_bucket=bucket, iot_endpoint="x", source=REPO / "lambdas" / "model_published"
    )
    again = ModelAnnouncer(stack, "Again", models_bucket=bucket, iot_endpoint="x", existing_function=announcer.python)
    assert again.function is announcer.function
    raw = Template.from_stack(stack).to_json()
    types = [r["Type"] for r in raw["Resources"].values()]
    assert "AWS::DynamoDB::Table" not in types and "AWS::Lambda::LayerVersion" not in types
    assert (
        types.count("AWS::Events::Rule") == 2 and types.count("AWS::Lambda::Function") == 3
    )  # hook, inference, announcer
    (hook,) = [
        r for r in raw["Resources"].values() if "Pre-provisioning" in r.get("Properties", {}).get("Description", "")
    ]
    assert hook["Properties"]["Environment"]["Variables"]["TABLE_NAME"] == "enrolled-elsewhere"
    with pytest.raises(ValueError, match="needs source"):
        ModelAnnouncer(stack, "Neither", models_bucket=bucket, iot_endpoint="x")
