"""Fleet: thing groups, the device IoT policy, the Greengrass token exchange role + alias,
and fleet provisioning (template + claim policy) for enrolling Pis."""

from __future__ import annotations

import json

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.topic_rules import TOPIC_ROOT

THING = "${iot:Connection.Thing.ThingName}"  # IoT policy variable: the connected device's thing
CRED_THING = "${credentials-iot:ThingName}"  # IAM variable set by the IoT credentials provider


class Fleet(Construct):
    """The Pi fleet's identity and permissions in IoT Core.

    Props:
        name_prefix: prefix of every physical name (default ``hybridstream``).
        windows_bucket: devices may write ``windows/<their thing>/*`` here, nothing else.
        models_bucket: devices may read ``models/*`` here.
        credential_seconds: lifetime of the token exchange credentials (default 3600).
        speed_model_name / batch_model_name: the models a device may hear announced
            (default ``speed-{thing}``: its own speed model, and ``batch``: the shared one).
        trains_on_device: ``edge`` mode (default False): the token exchange role may also
            publish the device's own speed model (``models/<speed name>/*``, ``rejected/...``).

    Attributes: ``fleet_group``, ``canary_group``, ``device_policy``, ``token_exchange_role``,
    ``role_alias``, ``provisioning_template``, ``claim_policy``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        windows_bucket: s3.IBucket,
        models_bucket: s3.IBucket,
        name_prefix: str = "hybridstream",
        credential_seconds: int = 3600,
        speed_model_name: str = "speed-{thing}",
        batch_model_name: str = "batch",
        trains_on_device: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.prefix = name_prefix
        self.speed_model_name = speed_model_name
        self.batch_model_name = batch_model_name
        self.trains_on_device = trains_on_device
        self.fleet_group = iot.CfnThingGroup(
            self,
            "FleetGroup",
            thing_group_name=f"{name_prefix}-fleet",
            thing_group_properties=iot.CfnThingGroup.ThingGroupPropertiesProperty(
                thing_group_description="Raspberry Pi fleet running the hybridstream edge app"
            ),
        )
        self.canary_group = iot.CfnThingGroup(
            self,
            "CanaryGroup",
            thing_group_name=f"{name_prefix}-canary",
            thing_group_properties=iot.CfnThingGroup.ThingGroupPropertiesProperty(
                thing_group_description="Canary Pis: receive every deployment all at once, before the fleet"
            ),
        )
        self.token_exchange_role = self._token_exchange_role(windows_bucket, models_bucket)
        self.role_alias = iot.CfnRoleAlias(
            self,
            "RoleAlias",
            role_alias=f"{name_prefix}-tes-alias",
            role_arn=self.token_exchange_role.role_arn,
            credential_duration_seconds=credential_seconds,
        )
        self.device_policy = iot.CfnPolicy(
            self,
            "DevicePolicy",
            policy_name=f"{name_prefix}-device",
            policy_document=self.device_policy_document(self.role_alias.attr_role_alias_arn),
        )
        self._provisioning()

    # -- ARNs -------------------------------------------------------------------------------
    @staticmethod
    def iot_arn(resource: str) -> str:
        return f"arn:{Aws.PARTITION}:iot:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

    def thing_group_arn(self, group: iot.CfnThingGroup) -> str:
        return self.iot_arn(f"thinggroup/{group.thing_group_name}")

    # -- device policy ----------------------------------------------------------------------
    def device_policy_document(self, role_alias_arn: str) -> dict:
        """Greengrass core + edge app permissions, each scoped to the connected thing."""
        arn = self.iot_arn
        gg = f"arn:{Aws.PARTITION}:greengrass:{Aws.REGION}"
        # the device's own speed model and the shared batch model, nothing else
        announced = [
            f"{TOPIC_ROOT}/models/{self.speed_model_name.replace('{thing}', THING)}/published",
            f"{TOPIC_ROOT}/models/{self.batch_model_name}/published",
        ]
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ConnectAsOwnThing",
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    # the nucleus opens extra connections as <thing>#2, #3 ... when it needs them
                    "Resource": [arn(f"client/{THING}"), arn(f"client/{THING}#*")],
                },
                {
                    "Sid": "PublishOwnTopics",
                    "Effect": "Allow",
                    "Action": ["iot:Publish", "iot:Receive"],
                    "Resource": [arn(f"topic/$aws/things/{THING}/*"), arn(f"topic/{TOPIC_ROOT}/{THING}/*")],
                },
                {
                    "Sid": "SubscribeOwnTopics",
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": [
                        arn(f"topicfilter/$aws/things/{THING}/*"),
                        arn(f"topicfilter/{TOPIC_ROOT}/{THING}/*"),
                        *(arn(f"topicfilter/{t}") for t in announced),
                    ],
                },
                {
                    "Sid": "ReceiveModelAnnouncements",
                    "Effect": "Allow",
                    "Action": "iot:Receive",
                    "Resource": [arn(f"topic/{t}") for t in announced],
                },
                {
                    "Sid": "GreengrassTokenExchange",
                    "Effect": "Allow",
                    "Action": "iot:AssumeRoleWithCertificate",
                    "Resource": role_alias_arn,
                },
                {
                    "Sid": "GreengrassDeployments",
                    "Effect": "Allow",
                    "Action": ["greengrass:GetComponentVersionArtifact"],
                    # public components (aws.greengrass.*) live in an AWS-owned account
                    "Resource": f"{gg}:*:components:*",
                },
                {
                    "Sid": "GreengrassDeploymentConfig",
                    "Effect": "Allow",
                    "Action": ["greengrass:GetDeploymentConfiguration"],
                    "Resource": f"{gg}:{Aws.ACCOUNT_ID}:deployments:*",
                },
                {
                    "Sid": "GreengrassOwnGroups",
                    "Effect": "Allow",
                    "Action": ["greengrass:ListThingGroupsForCoreDevice"],
                    "Resource": f"{gg}:{Aws.ACCOUNT_ID}:coreDevices:{THING}",
                },
                {
                    # ALLOW-STAR: ResolveComponentCandidates has no resource-level permissions
                    "Sid": "GreengrassResolve",
                    "Effect": "Allow",
                    "Action": ["greengrass:ResolveComponentCandidates"],
                    "Resource": "*",
                },
            ],
        }

    # -- token exchange role ----------------------------------------------------------------
    def _token_exchange_role(self, windows: s3.IBucket, models: s3.IBucket) -> iam.Role:
        role = iam.Role(
            self,
            "TokenExchangeRole",
            assumed_by=iam.ServicePrincipal("credentials.iot.amazonaws.com"),
            description="Greengrass token exchange role: read models, write the device's own windows",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadModels",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[models.arn_for_objects("models/*")],
            )
        )
        if self.trains_on_device:
            # the trainer on the Pi HEADs/GETs keys that may not exist yet (a new version's
            # manifest, a first LATEST): with a prefix condition S3 answers 403 instead of 404
            role.add_to_policy(
                iam.PolicyStatement(sid="ListModels", actions=["s3:ListBucket"], resources=[models.bucket_arn])
            )
            own = self.speed_model_name.replace("{thing}", CRED_THING)
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="PublishOwnSpeedModel",
                    actions=["s3:PutObject"],
                    resources=[models.arn_for_objects(f"models/{own}/*"), models.arn_for_objects(f"rejected/{own}/*")],
                )
            )
        else:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="ListModels",
                    actions=["s3:ListBucket"],
                    resources=[models.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": ["models/*"]}},
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnWindows",
                actions=["s3:PutObject"],
                resources=[windows.arn_for_objects(f"windows/{CRED_THING}/*")],
            )
        )
        return role

    def allow_artifact_download(self, object_arns: list[str]) -> None:
        """Let devices fetch exactly these component artifact objects (CDK asset objects)."""
        self.token_exchange_role.add_to_policy(
            iam.PolicyStatement(sid="ReadComponentArtifacts", actions=["s3:GetObject"], resources=object_arns)
        )

    # -- fleet provisioning -----------------------------------------------------------------
    def _provisioning(self) -> None:
        prefix = self.prefix
        template_name = f"{prefix}-fleet-provisioning"
        role = iam.Role(
            self,
            "ProvisioningRole",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
            description="Lets IoT fleet provisioning register hybridstream Pis",
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
                resources=[self.iot_arn(f"thing/{prefix}-*"), self.thing_group_arn(self.fleet_group)],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ActivateCertificates",
                actions=["iot:DescribeCertificate", "iot:UpdateCertificate", "iot:AttachPolicy", "iot:GetPolicy"],
                resources=[self.iot_arn("cert/*"), self.iot_arn(f"policy/{prefix}-device")],
            )
        )
        body = {
            "Parameters": {
                "SerialNumber": {"Type": "String"},
                "AWS::IoT::Certificate::Id": {"Type": "String"},
            },
            "Resources": {
                "thing": {
                    "Type": "AWS::IoT::Thing",
                    "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "DO_NOTHING"},
                    "Properties": {
                        "ThingName": {"Fn::Join": ["", [f"{prefix}-", {"Ref": "SerialNumber"}]]},
                        "AttributePayload": {"serial": {"Ref": "SerialNumber"}},
                        "ThingGroups": [self.fleet_group.thing_group_name],
                    },
                },
                "certificate": {
                    "Type": "AWS::IoT::Certificate",
                    "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"},
                },
                "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": f"{prefix}-device"}},
            },
        }
        self.provisioning_template = iot.CfnProvisioningTemplate(
            self,
            "ProvisioningTemplate",
            template_name=template_name,
            description="Enrol a hybridstream Pi: thing hybridstream-<serial> in the fleet group",
            enabled=True,
            provisioning_role_arn=role.role_arn,
            template_body=json.dumps(body),
        )
        self.provisioning_template.node.add_dependency(self.fleet_group)
        claim = self.iot_arn
        provision_topics = [
            "$aws/certificates/create/*",
            "$aws/certificates/create-from-csr/*",
            f"$aws/provisioning-templates/{template_name}/provision/*",
        ]
        self.claim_policy = iot.CfnPolicy(
            self,
            "ClaimPolicy",
            policy_name=f"{prefix}-provisioning-claim",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # a claim certificate has no thing yet: any client id, but nothing else
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": claim("client/*"),
                    },
                    {
                        "Effect": "Allow",
                        "Action": ["iot:Publish", "iot:Receive"],
                        "Resource": [claim(f"topic/{t}") for t in provision_topics],
                    },
                    {
                        "Effect": "Allow",
                        "Action": "iot:Subscribe",
                        "Resource": [claim(f"topicfilter/{t}") for t in provision_topics],
                    },
                ],
            },
        )
