"""The hybridstream stack: composes one construct per concern and exports the outputs."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import REPO, AppConfig
from infra.fleet import Fleet
from infra.functions import PythonFunction
from infra.greengrass import GreengrassComponents
from infra.iot_rules import IngestRules
from infra.observability import Observability, alarm_topic
from infra.recipes import EdgeAppSettings
from infra.storage import Storage
from infra.topic_rules import TOPIC_ROOT, rules_for_mode
from infra.training import Trainer, TrainingQueue, trainer_source


class HybridStreamStack(Stack):
    """Everything in one stack: ``cdk deploy`` stands it up, ``cdk destroy`` removes it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        prefix = config.name_prefix
        fleet_versions = config.pinned_fleet_versions()  # the canary gate: fail early when unknown
        self.storage = storage = Storage(self, "Storage", retain_data=config.retain_data)
        self.fleet = fleet = Fleet(
            self,
            "Fleet",
            windows_bucket=storage.windows,
            models_bucket=storage.models,
            name_prefix=prefix,
            speed_model_name=config.speed_model_name,
            batch_model_name=config.batch_model_name,
            trains_on_device=config.mode == "edge",
        )
        self.iot_endpoint = self._iot_data_endpoint()
        self.alarm_topic = topic = alarm_topic(self)

        # -- Lambdas ---------------------------------------------------------------------------
        common_env = {"IOT_DATA_ENDPOINT": self.iot_endpoint, "TOPIC_ROOT": TOPIC_ROOT}
        announce = PythonFunction(
            self,
            "ModelPublished",
            folder="model_published",
            description="models/<name>/LATEST written -> MQTT hybridstream/models/<name>/published (the current model)",
            environment=common_env,
        )
        announce.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadPointersAndManifests",
                actions=["s3:GetObject"],
                resources=[
                    storage.models.arn_for_objects("models/*/LATEST"),
                    storage.models.arn_for_objects("models/*/manifest.json"),
                ],
            )
        )
        announce.role.add_to_policy(
            iam.PolicyStatement(
                sid="AnnounceModels",
                actions=["iot:Publish"],
                resources=[Fleet.iot_arn(f"topic/{TOPIC_ROOT}/models/*/published")],
            )
        )
        # Announce what is current: the trainer moves models/<name>/LATEST (forward only) after
        # the version's model.tflite and manifest.json; a manifest alone may be an older window's
        # model (LATEST kept) or precede its LATEST. ('*' in an EventBridge wildcard spans '/':
        # the handler refuses keys other than models/<name>/LATEST.)
        events.Rule(
            self,
            "LatestWritten",
            description="A model's LATEST pointer was written in the models bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [storage.models.bucket_name]},
                    "object": {"key": [{"wildcard": "models/*/LATEST"}]},
                },
            ),
            targets=[
                targets.LambdaFunction(
                    announce.function,
                    dead_letter_queue=announce.dead_letter_queue,
                    retry_attempts=4,
                    max_event_age=Duration.hours(2),
                )
            ],
        )
        ingest = PythonFunction(
            self,
            "Ingest",
            folder="ingest",
            description="Validate edge messages; count and log rejects",
            extra_sources={"topic_rules.py": REPO / "infra" / "topic_rules.py"},
        )
        self.functions: dict[str, PythonFunction] = {"model_published": announce, "ingest": ingest}
        if config.mode == "cloud":
            self.functions["cloud_inference"] = self._cloud_inference(common_env)

        # -- training --------------------------------------------------------------------------
        queues = {}
        self.training_queue = self.trainer = None
        if config.has_trainer:
            self.training_queue = TrainingQueue(self, "Training")
            queues["training_queue"] = self.training_queue.queue
            self.trainer = Trainer(
                self,
                "Trainer",
                queue=self.training_queue,
                windows_bucket=storage.windows,
                models_bucket=storage.models,
                instance_type=config.trainer_instance_type,
                min_capacity=config.trainer_min_capacity,
                max_capacity=config.trainer_max_capacity,
                notifications=topic,
                speed_model_name=config.speed_model_name,
            )

        # -- ingest rules ----------------------------------------------------------------------
        self.rules = IngestRules(
            self,
            "Rules",
            rules=rules_for_mode(config.mode),
            queues=queues,
            buckets={"results_bucket": storage.results},
            functions={name: f.function for name, f in self.functions.items()},
            name_prefix=prefix,
        )

        # -- Greengrass ------------------------------------------------------------------------
        settings = EdgeAppSettings(
            mode=config.mode,
            kafka_bootstrap=config.kafka_bootstrap,
            # "{thing}" -> the Greengrass recipe variable of the device's thing name
            speed_model_name=config.speed_model_name.replace("{thing}", "{iot:thingName}"),
        )
        self.greengrass = GreengrassComponents(
            self,
            "Greengrass",
            fleet_group_arn=fleet.thing_group_arn(fleet.fleet_group),
            canary_group_arn=fleet.thing_group_arn(fleet.canary_group),
            settings=settings,
            deployment_config={
                "mode": config.mode,
                "s3": {"windowsBucket": storage.windows.bucket_name, "modelsBucket": storage.models.bucket_name},
            },
            name_prefix=prefix,
            batch_model_dir=config.resolve(config.batch_model_dir),
            kafka_libs_dir=config.kafka_libs,
            kafka_version=config.kafka_version,
            # edge mode: training runs on the Pi, next to the edge app
            trainer_source=trainer_source() if config.mode == "edge" else None,
            fleet_versions=fleet_versions,
        )
        for deployment in (self.greengrass.fleet_deployment, self.greengrass.canary_deployment):
            deployment.node.add_dependency(fleet.fleet_group)
            deployment.node.add_dependency(fleet.canary_group)
        # the current artifacts, and those of the release the fleet is pinned to (if any)
        pinned = self.greengrass.asset_object_arns(config.pinned_fleet_artifacts()) if not config.promote else []
        fleet.allow_artifact_download(self.greengrass.artifact_object_arns + pinned)

        # -- observability ---------------------------------------------------------------------
        self.observability = Observability(
            self,
            "Observability",
            topic=topic,
            functions={name: f.function for name, f in self.functions.items()},
            dead_letter_queues={
                name.title().replace("_", ""): f.dead_letter_queue for name, f in self.functions.items()
            },
            ingest_log_group=ingest.log_group,
            training_queue=self.training_queue.queue if self.training_queue else None,
            training_dlq=self.training_queue.dead_letter_queue if self.training_queue else None,
            rmse_threshold=config.rmse_alarm_threshold,
            dashboard_name=prefix,
        )
        self._outputs()

    def _iot_data_endpoint(self) -> str:
        """The account's IoT data (ATS) endpoint, looked up at deploy time."""
        lookup = cr.AwsCustomResource(
            self,
            "IotDataEndpoint",
            on_update=cr.AwsSdkCall(
                service="Iot",
                action="describeEndpoint",
                parameters={"endpointType": "iot:Data-ATS"},
                physical_resource_id=cr.PhysicalResourceId.of("iot-data-ats-endpoint"),
            ),
            # ALLOW-STAR: iot:DescribeEndpoint supports no resource-level permissions
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE),
            install_latest_aws_sdk=False,
        )
        return lookup.get_response_field("endpointAddress")

    def _cloud_inference(self, env: dict[str, str]) -> PythonFunction:
        """``cloud`` mode: the inference Lambda, on Python 3.13 (ai-edge-litert has no 3.14 wheels)."""
        layer_dir = self.config.resolve(self.config.inference_layer_dir)
        if not (layer_dir / "python").is_dir():
            raise FileNotFoundError(
                f"cloud mode needs the inference layer in {layer_dir}/python: run scripts/build_inference_layer.sh "
                "(or set context inference_layer_dir)"
            )
        layer = lambda_.LayerVersion(
            self,
            "InferenceLayer",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
            description="numpy + ai-edge-litert for the cloud inference Lambda",
        )
        fn = PythonFunction(
            self,
            "CloudInference",
            folder="cloud_inference",
            description="cloud mode: forwarded readings -> batch/speed/hybrid forecast -> results topic",
            extra_sources={"model_contract": REPO / "model_contract"},
            environment={
                **env,
                "MODELS_BUCKET": self.storage.models.bucket_name,
                "BATCH_MODEL": self.config.batch_model_name,
                "SPEED_MODEL": self.config.speed_model_name,
            },
            runtime=lambda_.Runtime.PYTHON_3_13,
            memory_size=1024,
            layers=[layer],
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadModels",
                actions=["s3:GetObject"],
                resources=[self.storage.models.arn_for_objects("models/*")],
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListModels",
                # no s3:prefix condition: it would turn a missing LATEST's 404 into 403
                actions=["s3:ListBucket"],
                resources=[self.storage.models.bucket_arn],
            )
        )
        fn.role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishResults",
                actions=["iot:Publish"],
                resources=[Fleet.iot_arn(f"topic/{TOPIC_ROOT}/*/results")],
            )
        )
        return fn

    def _outputs(self) -> None:
        s, f = self.storage, self.fleet
        outputs = {
            "IotDataEndpointAddress": (self.iot_endpoint, "IoT Core data (ATS) endpoint for devices and Lambdas"),
            "WindowsBucket": (s.windows.bucket_name, "windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.<ext>"),
            "ModelsBucket": (s.models.bucket_name, "models/<name>/<version>/model.tflite + manifest.json"),
            "ResultsBucket": (s.results.bucket_name, "results/<thing>/..."),
            "FleetThingGroup": (f.fleet_group.thing_group_name, "thing group of the Pi fleet"),
            "CanaryThingGroup": (f.canary_group.thing_group_name, "thing group of canary Pis"),
            "RoleAlias": (f.role_alias.role_alias, "Greengrass token exchange role alias"),
            "DevicePolicy": (f.device_policy.policy_name, "IoT policy for core devices"),
            "ProvisioningTemplate": (f.provisioning_template.template_name, "fleet provisioning template"),
            "ClaimPolicy": (f.claim_policy.policy_name, "IoT policy for provisioning claim certificates"),
            "DashboardUrl": (self.observability.dashboard_url, "CloudWatch dashboard"),
            "AlarmTopicArn": (self.alarm_topic.topic_arn, "SNS topic for alarms: subscribe your e-mail"),
        }
        if self.training_queue:
            outputs["TrainingQueueUrl"] = (self.training_queue.queue.queue_url, "SQS queue of window notices")
        for name, version in self.greengrass.versions.items():
            outputs[name.split(".")[-1] + "Version"] = (version, f"Greengrass component {name} version")
        outputs["ComponentRelease"] = (
            json.dumps(self.greengrass.release(), separators=(",", ":")),
            "context values that pin the fleet to this release once promoted (docs/deploy.md)",
        )
        outputs["FleetRelease"] = (
            "pinned" if self.greengrass.fleet_pinned else "current",
            "pinned: the fleet keeps fleet_component_versions; current: the fleet got this release",
        )
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)
