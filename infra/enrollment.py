"""Enrolment: fleet provisioning by claim, gated by an allow-list and a pre-provisioning hook.

``hybridstream fleet enroll`` writes ``{thingName, serial, group, arch, enrolledAt}`` into the
allow-list table; a Pi that claims with serial S becomes thing ``<prefix>-S`` only if that item
exists and no such thing exists yet, and lands in exactly one thing group: the item's
``group`` (``fleet`` or ``canary``), never both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.fleet import Fleet, iot_arn
from infra.functions import PythonFunction

HOOK_PAYLOAD_VERSION = "2020-04-01"  # the only one IoT accepts (AWS::IoT::ProvisioningTemplate ProvisioningHook)
# IoT waits at most 5 s for the hook (https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html)
HOOK_TIMEOUT_SECONDS = 5
GROUP_KEYS = ("fleet", "canary")


class Enrollment(Construct):
    """The allow-list, the hook, the provisioning template and the claim certificate's policy.

    Props:
        fleet: the :class:`infra.fleet.Fleet` (thing groups, device policy, name prefix).
        hook_source: the hook Lambda's folder (``<lambdas_dir>/pre_provisioning``).
        existing_table: an allow-list table to use instead of a new one (partition key
            ``thingName``, string); default None: a new table (on-demand, point-in-time
            recovery, AWS-managed encryption).
        retain_table: keep a new table on ``cdk destroy`` (default False).

    ``shared_sources``: staged into the Lambda package beside the handler (default none; the app
    passes ``BuildArtifacts.lambda_shared_sources()``).

    Attributes (read-only): ``table``, ``hook``, ``provisioning_template``, ``claim_policy``,
    ``provisioning_role``, ``template_name``, ``claim_client_prefix``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        fleet: Fleet,
        hook_source: Path,
        existing_table: dynamodb.ITable | None = None,
        retain_table: bool = False,
        shared_sources: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = self._prefix = fleet.thing_name_prefix
        self._template_name = f"{prefix}-fleet-provisioning"
        self._table = existing_table or dynamodb.Table(
            self,
            "AllowList",
            partition_key=dynamodb.Attribute(name="thingName", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN if retain_table else RemovalPolicy.DESTROY,
        )
        groups = {"fleet": fleet.fleet_group.thing_group_name, "canary": fleet.canary_group.thing_group_name}
        self._hook = PythonFunction(
            self,
            "Hook",
            shared_sources=shared_sources,
            source=hook_source,
            description="Pre-provisioning hook: enrolled serials only, no existing thing, one thing group",
            environment={
                "TABLE_NAME": self._table.table_name,
                "THING_PREFIX": prefix,
                "THING_GROUPS": json.dumps(groups, separators=(",", ":")),
            },
            timeout_seconds=HOOK_TIMEOUT_SECONDS,
            memory_size=256,
        )
        self._hook.role.add_to_policy(
            iam.PolicyStatement(sid="ReadAllowList", actions=["dynamodb:GetItem"], resources=[self._table.table_arn])
        )
        self._hook.role.add_to_policy(
            iam.PolicyStatement(
                sid="RefuseExistingThings", actions=["iot:DescribeThing"], resources=[iot_arn(f"thing/{prefix}-*")]
            )
        )
        # IoT invokes the hook with this resource policy; the source ARN/account guard against
        # the confused deputy (the page above). Built from the name: no template <-> function cycle.
        template_arn = iot_arn(f"provisioningtemplate/{self._template_name}")
        permission = lambda_.CfnPermission(
            self,
            "HookInvokedByIot",
            action="lambda:InvokeFunction",
            function_name=self._hook.function.function_arn,
            principal="iot.amazonaws.com",
            source_arn=template_arn,
            source_account=Aws.ACCOUNT_ID,
        )
        self._role = self._provisioning_role(fleet)
        self._template = iot.CfnProvisioningTemplate(
            self,
            "Template",
            template_name=self._template_name,
            description=f"Enrol an allow-listed Pi: thing {prefix}-<serial> in its one thing group",
            enabled=True,
            provisioning_role_arn=self._role.role_arn,
            template_body=json.dumps(self.template_body(fleet)),
            pre_provisioning_hook=iot.CfnProvisioningTemplate.ProvisioningHookProperty(
                payload_version=HOOK_PAYLOAD_VERSION, target_arn=self._hook.function.function_arn
            ),
        )
        for dependency in (fleet.fleet_group, fleet.canary_group, fleet.device_policy, permission):
            self._template.node.add_dependency(dependency)
        self._claim_policy = self._claim(prefix)

    # -- read-only attributes ------------------------------------------------------------------
    @property
    def table(self) -> dynamodb.ITable:
        return self._table

    @property
    def hook(self) -> PythonFunction:
        return self._hook

    @property
    def provisioning_template(self) -> iot.CfnProvisioningTemplate:
        return self._template

    @property
    def provisioning_role(self) -> iam.Role:
        return self._role

    @property
    def claim_policy(self) -> iot.CfnPolicy:
        return self._claim_policy

    @property
    def template_name(self) -> str:
        return self._template_name

    @property
    def claim_client_prefix(self) -> str:
        """Client ids a claim certificate may connect with (the fleet provisioning plugin's
        ``deviceId``): ``<prefix>-claim-<serial>``, never a thing's own client id."""
        return f"{self._prefix}-claim-"

    # -- pieces --------------------------------------------------------------------------------
    @staticmethod
    def template_body(fleet: Fleet) -> dict:
        """The provisioning template: thing ``<prefix>-<SerialNumber>`` in ``ThingGroupName``
        (set by the hook from the allow-list; the device's own value is overridden)."""
        prefix = fleet.thing_name_prefix
        return {
            "Parameters": {
                "SerialNumber": {"Type": "String"},
                "ThingGroupName": {"Type": "String", "Default": fleet.fleet_group.thing_group_name},
                "AWS::IoT::Certificate::Id": {"Type": "String"},
            },
            "Resources": {
                "thing": {
                    "Type": "AWS::IoT::Thing",
                    "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "DO_NOTHING"},
                    "Properties": {
                        "ThingName": {"Fn::Join": ["", [f"{prefix}-", {"Ref": "SerialNumber"}]]},
                        "AttributePayload": {"serial": {"Ref": "SerialNumber"}},
                        "ThingGroups": [{"Ref": "ThingGroupName"}],
                    },
                },
                "certificate": {
                    "Type": "AWS::IoT::Certificate",
                    "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"},
                },
                "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": fleet.device_policy.policy_name}},
            },
        }

    def _provisioning_role(self, fleet: Fleet) -> iam.Role:
        prefix = fleet.thing_name_prefix
        role = iam.Role(
            self,
            "ProvisioningRole",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
            description="Lets IoT fleet provisioning register allow-listed hybridstream Pis",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="RegisterThings",
                actions=[
                    "iot:CreateThing",
                    "iot:DescribeThing",
                    "iot:UpdateThing",
                    "iot:AddThingToThingGroup",
                    "iot:ListThingGroupsForThing",
                    "iot:AttachThingPrincipal",
                    "iot:ListThingPrincipals",
                ],
                resources=[
                    iot_arn(f"thing/{prefix}-*"),
                    fleet.thing_group_arn(fleet.fleet_group),
                    fleet.thing_group_arn(fleet.canary_group),
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ActivateCertificates",
                actions=["iot:DescribeCertificate", "iot:UpdateCertificate", "iot:AttachPolicy", "iot:GetPolicy"],
                resources=[iot_arn("cert/*"), iot_arn(f"policy/{fleet.device_policy.policy_name}")],
            )
        )
        return role

    def _claim(self, prefix: str) -> iot.CfnPolicy:
        """What a claim certificate may do: connect as ``<prefix>-claim-*`` (so a copied claim
        certificate can never connect as, and disconnect, an enrolled thing) and use this
        template's provisioning topics; the hook decides who gets a thing."""
        topics = [
            "$aws/certificates/create/*",
            "$aws/certificates/create-from-csr/*",
            f"$aws/provisioning-templates/{self._template_name}/provision/*",
        ]
        return iot.CfnPolicy(
            self,
            "ClaimPolicy",
            policy_name=f"{prefix}-provisioning-claim",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": iot_arn(f"client/{self.claim_client_prefix}*"),
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["iot:Publish", "iot:Receive"],
                        "Resource": [iot_arn(f"topic/{t}") for t in topics],
                    },
                    {
                        "Effect": "Allow",
                        "Action": "iot:Subscribe",
                        "Resource": [iot_arn(f"topicfilter/{t}") for t in topics],
                    },
                ],
            },
        )
