"""Fleet: thing groups, the device IoT policy and the Greengrass token exchange role + alias.

Enrolment (fleet provisioning, the allow-list and its hook) is :mod:`infra.enrollment`.
"""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.policy_size import IOT_POLICY_MAX_CHARS, WORST_CASE_PSEUDO, policy_chars
from model_contract.layout import FORECASTS_PREFIX
from model_contract.topics import TOPIC_ROOT

THING = "${iot:Connection.Thing.ThingName}"  # IoT policy variable: the connected device's thing
CRED_THING = "${credentials-iot:ThingName}"  # IAM variable set by the IoT credentials provider
# what the device policy may use of IoT's 2,048 characters, so later statements have room
DEVICE_POLICY_BUDGET = 1900


def iot_arn(
    resource: str, *, partition: str = Aws.PARTITION, region: str = Aws.REGION, account: str = Aws.ACCOUNT_ID
) -> str:
    """``arn:<partition>:iot:<region>:<account>:<resource>``."""
    return f"arn:{partition}:iot:{region}:{account}:{resource}"


class Fleet(Construct):
    """The Pi fleet's identity and permissions in IoT Core.

    Props:
        name_prefix: prefix of every physical name (default ``hybridstream``); thing names
            are ``<prefix>-<serial>`` (:mod:`infra.enrollment`).
        windows_bucket: devices may write ``windows/<their thing>/*`` and ``forecasts/<their thing>/*``
            here, nothing else.
        models_bucket: devices may read their own speed model and the batch model here.
        credential_seconds: lifetime of the token exchange credentials (default 3600).
        speed_model_name / batch_model_name: the models a device may hear announced and read
            (default ``speed-{thing}``: its own speed model, and ``batch``: the shared one).
        trains_on_device: ``edge`` mode (default False): the token exchange role may also
            publish the device's own speed model (``models/<speed name>/*``, ``rejected/...``).

    Attributes (read-only): ``fleet_group``, ``canary_group``, ``device_policy``,
    ``token_exchange_role``, ``role_alias``, ``thing_name_prefix``.
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
        self._fleet_group = self._group("FleetGroup", "fleet", "Raspberry Pi fleet running the hybridstream edge app")
        self._canary_group = self._group(
            "CanaryGroup", "canary", "Canary Pis (never also in the fleet group): get every release first"
        )
        self._role = self._token_exchange_role(windows_bucket, models_bucket)
        self._role_alias = iot.CfnRoleAlias(
            self,
            "RoleAlias",
            role_alias=f"{name_prefix}-tes-alias",
            role_arn=self._role.role_arn,
            credential_duration_seconds=credential_seconds,
        )
        document = self.device_policy_document()
        # refuse at synth what IoT's CreatePolicy would refuse at deploy (a rollback)
        worst = policy_chars(Stack.of(self).resolve(self.device_policy_document(**_worst_case())))
        if worst > DEVICE_POLICY_BUDGET:
            raise ValueError(
                f"the device IoT policy would be {worst} characters in the longest region (IoT accepts "
                f"{IOT_POLICY_MAX_CHARS}, this app keeps {DEVICE_POLICY_BUDGET}): shorten name_prefix or model names"
            )
        self._device_policy = iot.CfnPolicy(
            self, "DevicePolicy", policy_name=f"{name_prefix}-device", policy_document=document
        )
        self._device_policy.node.add_dependency(self._role_alias)

    # -- read-only attributes ------------------------------------------------------------------
    @property
    def fleet_group(self) -> iot.CfnThingGroup:
        return self._fleet_group

    @property
    def canary_group(self) -> iot.CfnThingGroup:
        return self._canary_group

    @property
    def token_exchange_role(self) -> iam.Role:
        return self._role

    @property
    def role_alias(self) -> iot.CfnRoleAlias:
        return self._role_alias

    @property
    def device_policy(self) -> iot.CfnPolicy:
        return self._device_policy

    @property
    def thing_name_prefix(self) -> str:
        """Every enrolled thing is ``<thing_name_prefix>-<serial>``."""
        return self.prefix

    # -- ARNs -------------------------------------------------------------------------------
    @staticmethod
    def iot_arn(resource: str) -> str:
        return iot_arn(resource)

    def thing_group_arn(self, group: iot.CfnThingGroup) -> str:
        return iot_arn(f"thinggroup/{group.thing_group_name}")

    def _group(self, construct_id: str, role: str, description: str) -> iot.CfnThingGroup:
        return iot.CfnThingGroup(
            self,
            construct_id,
            thing_group_name=f"{self.prefix}-{role}",
            thing_group_properties=iot.CfnThingGroup.ThingGroupPropertiesProperty(thing_group_description=description),
        )

    # -- device policy ----------------------------------------------------------------------
    def device_policy_document(
        self, *, partition: str = Aws.PARTITION, region: str = Aws.REGION, account: str = Aws.ACCOUNT_ID
    ) -> dict:
        """Greengrass core + edge app permissions, each scoped to the connected thing.

        ``${iot:Connection.Thing.ThingName}`` resolves only on MQTT connections whose client id
        is the thing's name (https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html):
        it scopes MQTT resources only; Greengrass's HTTPS calls are scoped by the thing name prefix.
        """

        def arn(resource: str) -> str:
            return iot_arn(resource, partition=partition, region=region, account=account)

        gg = f"arn:{partition}:greengrass:{region}"
        # the device's own speed model and the shared batch model, nothing else
        announced = [
            f"{TOPIC_ROOT}/models/{self.speed_model_name.replace('{thing}', THING)}/published",
            f"{TOPIC_ROOT}/models/{self.batch_model_name}/published",
        ]
        own = [f"$aws/things/{THING}/*", f"{TOPIC_ROOT}/{THING}/*"]
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # client id = thing name: the nucleus's extra connections (<thing>#2 ...) would not
                    # resolve the variable; one connection carries this app's few subscriptions
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": arn(f"client/{THING}"),
                },
                {
                    "Effect": "Allow",
                    "Action": ["iot:Publish", "iot:Receive"],
                    "Resource": [arn(f"topic/{t}") for t in own],
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": [arn(f"topicfilter/{t}") for t in (*own, *announced)],
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Receive",
                    "Resource": [arn(f"topic/{t}") for t in announced],
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:AssumeRoleWithCertificate",
                    "Resource": arn(f"rolealias/{self.prefix}-tes-alias"),
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "greengrass:GetComponentVersionArtifact",
                        "greengrass:GetDeploymentConfiguration",
                        "greengrass:ListThingGroupsForCoreDevice",
                    ],
                    "Resource": [
                        # public components (aws.greengrass.*) live in an AWS-owned account
                        f"{gg}:*:components:*",
                        f"{gg}:{account}:deployments:*",
                        # HTTPS: no thing-name variable; every enrolled thing is <prefix>-<serial>
                        f"{gg}:{account}:coreDevices:{self.prefix}-*",
                    ],
                },
                {
                    # ALLOW-STAR: ResolveComponentCandidates has no resource-level permissions
                    "Effect": "Allow",
                    "Action": "greengrass:ResolveComponentCandidates",
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
            description="Greengrass token exchange role: own speed model + batch model, own windows",
        )
        own = self.speed_model_name.replace("{thing}", CRED_THING)
        readable = [f"models/{own}/", f"models/{self.batch_model_name}/"]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadModels",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[models.arn_for_objects(p + "*") for p in readable],
            )
        )
        if self.trains_on_device:
            # the trainer on the Pi HEADs/GETs keys that may not exist yet (a new version's
            # manifest, a first LATEST): with a prefix condition S3 answers 403 instead of 404
            role.add_to_policy(
                iam.PolicyStatement(sid="ListModels", actions=["s3:ListBucket"], resources=[models.bucket_arn])
            )
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
                    conditions={"StringLike": {"s3:prefix": [p + "*" for p in readable]}},
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnWindows",
                actions=["s3:PutObject"],
                resources=[
                    windows.arn_for_objects(f"windows/{CRED_THING}/*"),
                    windows.arn_for_objects(f"{FORECASTS_PREFIX}/{CRED_THING}/*"),  # each window's forecasts
                ],
            )
        )
        return role

    def allow_artifact_download(self, object_arns: list[str], bucket_arn: str) -> None:
        """Let devices fetch exactly these component artifact objects (CDK asset objects).

        The nucleus calls ``GetBucketLocation`` on the artifact's bucket before each download
        (AWS's own GreengrassV2TokenExchangeRoleAccess policy allows it:
        https://docs.aws.amazon.com/greengrass/v2/developerguide/device-service-role.html).
        """
        self._role.add_to_policy(
            iam.PolicyStatement(sid="ReadComponentArtifacts", actions=["s3:GetObject"], resources=object_arns)
        )
        self._role.add_to_policy(
            iam.PolicyStatement(sid="LocateArtifactBucket", actions=["s3:GetBucketLocation"], resources=[bucket_arn])
        )


def _worst_case() -> dict[str, str]:
    return {
        "partition": WORST_CASE_PSEUDO["AWS::Partition"],
        "region": WORST_CASE_PSEUDO["AWS::Region"],
        "account": WORST_CASE_PSEUDO["AWS::AccountId"],
    }
