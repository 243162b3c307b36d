"""Notify when a Greengrass deployment fails or is cancelled on one of the fleet's core devices.

When the canary (any failure) or fleet (10 % of at least 5) abort criteria of infra/greengrass.py
fire, IoT cancels the thing group's deployment, and "core devices that you add to the group won't
receive that continuous deployment" (Greengrass developer guide, "Cancel deployments":
https://docs.aws.amazon.com/greengrass/v2/developerguide/cancel-deployments.html); an unchanged
``cdk deploy`` does not recreate it. Greengrass sends a "Greengrass V2 Effective Deployment Status
Change" event for each device (FAILED, SUCCEEDED, COMPLETED, REJECTED, CANCELED:
https://docs.aws.amazon.com/greengrass/v2/developerguide/deployment-health-notifications.html): an
EventBridge rule sends the failed, rejected and cancelled ones of this fleet's things to the alarm
topic, with what to run (``hybridstream fleet status``, then ``hybridstream fleet redeploy``).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from infra.observability import AlarmTopic

DETAIL_TYPE = "Greengrass V2 Effective Deployment Status Change"
BAD_STATUSES = ("FAILED", "REJECTED", "CANCELED")
RECOVERY = "hybridstream fleet status, then hybridstream fleet redeploy --group canary (or fleet)"


class DeploymentWatch(Construct):
    """The rule (``rule``) and its notification to ``alarms``' topic (the key lets EventBridge in)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, alarms: AlarmTopic, thing_name_prefix: str, name_prefix: str
    ) -> None:
        super().__init__(scope, construct_id)
        # named, so the key policy can name the rule's ARN without a reference to it (rule -> topic -> key
        # -> rule would be a dependency cycle)
        self.rule_name = f"{name_prefix}-deployment-failed"
        rule_arn = f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{self.rule_name}"
        devices = f"arn:{Aws.PARTITION}:greengrass:{Aws.REGION}:{Aws.ACCOUNT_ID}:coreDevices:{thing_name_prefix}-"
        self.rule = events.Rule(
            self,
            "Rule",
            rule_name=self.rule_name,
            description="hybridstream: a Greengrass deployment failed, was rejected or cancelled on a core device",
            event_pattern=events.EventPattern(
                source=["aws.greengrass"],
                detail_type=[DETAIL_TYPE],
                resources=events.Match.prefix(devices),
                detail={"coreDeviceExecutionStatus": list(BAD_STATUSES)},
            ),
        )
        message = events.RuleTargetInput.from_text(
            f"hybridstream: deployment {events.EventField.from_path('$.detail.deploymentId')} is "
            f"{events.EventField.from_path('$.detail.coreDeviceExecutionStatus')} on "
            f"{events.EventField.from_path('$.resources[0]')}. A cancelled thing-group deployment reaches no "
            f"device added to the group later. Run: {RECOVERY}"
        )
        self.rule.add_target(targets.SnsTopic(alarms.topic, message=message))
        alarms.allow_events(rule_arn)
