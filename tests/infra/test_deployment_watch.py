"""Issue 20, item 2: a failed or cancelled Greengrass deployment on a fleet device notifies the alarm topic.

When an abort criterion cancels a thing group's deployment, "core devices that you add to the group won't
receive that continuous deployment" (https://docs.aws.amazon.com/greengrass/v2/developerguide/cancel-deployments.html),
and nothing else in the stack would say so. Greengrass sends one "Greengrass V2 Effective Deployment Status
Change" event per device, status FAILED|SUCCEEDED|COMPLETED|REJECTED|CANCELED, ``resources`` the core device ARN
(https://docs.aws.amazon.com/greengrass/v2/developerguide/deployment-health-notifications.html): the documented
sample below is matched with EventBridge's pattern semantics (a list matches any of its values, ``prefix``
matches the start: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html).
"""

from __future__ import annotations

import json

from infra.deployment_watch import DETAIL_TYPE

PREFIX = "hybridstream"


def _sample(status: str, thing: str) -> dict:
    return {
        "version": "0",
        "detail-type": DETAIL_TYPE,
        "source": "aws.greengrass",
        "account": "123456789012",
        "region": "eu-west-1",
        "resources": [f"arn:aws:greengrass:eu-west-1:123456789012:coreDevices:{thing}"],
        "detail": {"deploymentId": "4f38f1a7-3dd0-42a1-af48-EXAMPLE09681", "coreDeviceExecutionStatus": status},
    }


def _resolve(value, env: dict[str, str]):
    """A pattern value with the template's Fn::Join/Ref pseudo parameters filled in."""
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_resolve(p, env) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return env[value["Ref"]]
    if isinstance(value, dict):
        return {k: _resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, env) for v in value]
    return value


def _matches(pattern: dict, event: dict) -> bool:
    for key, want in pattern.items():
        have = event.get(key)
        if isinstance(want, dict):
            if not isinstance(have, dict) or not _matches(want, have):
                return False
            continue
        values = have if isinstance(have, list) else [have]
        ok = any(
            (isinstance(w, dict) and "prefix" in w and isinstance(v, str) and v.startswith(w["prefix"])) or w == v
            for w in want
            for v in values
        )
        if not ok:
            return False
    return True


def test_failed_or_cancelled_deployments_of_our_devices_notify_the_alarm_topic(default):
    (rule_id, rule), *others = [
        (k, r) for k, r in default.resources("AWS::Events::Rule").items() if k.startswith("DeploymentWatch")
    ]
    assert not others
    env = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
    pattern = _resolve(rule["Properties"]["EventPattern"], env)
    for status, thing, wanted in (
        ("CANCELED", f"{PREFIX}-pi0001", True),
        ("FAILED", f"{PREFIX}-pi0002", True),
        ("REJECTED", f"{PREFIX}-pi0003", True),
        ("SUCCEEDED", f"{PREFIX}-pi0001", False),
        ("COMPLETED", f"{PREFIX}-pi0001", False),
        ("FAILED", "someone-elses-core", False),
    ):
        assert _matches(pattern, _sample(status, thing)) is wanted, (status, thing)
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"]["Ref"].startswith("AlarmsTopic")
    text = json.dumps(target["InputTransformer"])
    assert "hybridstream fleet redeploy --group" in text and "<detail-deploymentId>" in text
    # the encrypted topic: its key lets exactly this rule in, the topic policy lets EventBridge publish
    (key,) = [r for k, r in default.resources("AWS::KMS::Key").items() if k.startswith("AlarmsKey")]
    grant = next(s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "EventBridgeRules")
    assert grant["Principal"] == {"Service": "events.amazonaws.com"}
    name = rule["Properties"]["Name"]
    assert name == f"{PREFIX}-deployment-failed"
    assert _resolve(grant["Condition"]["ArnLike"]["aws:SourceArn"], env).endswith(f":rule/{name}")
    policies = [p for k, p in default.resources("AWS::SNS::TopicPolicy").items() if k.startswith("AlarmsTopic")]
    publishers = [s["Principal"] for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert {"Service": "events.amazonaws.com"} in publishers
