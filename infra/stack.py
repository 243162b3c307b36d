"""The hybridstream stack: composition only. One construct per concern, wired together, plus
the outputs; every path it packages comes in through :class:`infra.artifacts.BuildArtifacts`."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, CfnResource, RemovalPolicy, Stack, Token
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.artifacts import BuildArtifacts
from infra.cloud_inference import CloudInference
from infra.config import AppConfig
from infra.deployment_watch import DeploymentWatch
from infra.enrollment import Enrollment
from infra.fleet import Fleet
from infra.forecasts import Forecasts
from infra.functions import PythonFunction
from infra.greengrass import GreengrassComponents
from infra.model_announcer import ModelAnnouncer
from infra.observability import AlarmTopic, Observability
from infra.policy_detacher import PolicyDetacher
from infra.recipes import EdgeAppSettings
from infra.regions import check_region
from infra.storage import Storage
from infra.topic_rules import LATEST_METRICS_KEY, rules_for_mode
from infra.topic_rules_construct import TopicRules
from infra.training import Trainer, TrainingQueue, trainer_source

HELPER_LOG_RETENTION = logs.RetentionDays.TWO_WEEKS
S3_AUTO_DELETE_PROVIDER = "Custom::S3AutoDeleteObjectsCustomResourceProvider"


class HybridStreamStack(Stack):
    """Everything in one stack: ``cdk deploy`` stands it up, ``cdk destroy`` removes it
    (docs/deploy.md "Destroy" lists what survives and how to remove it).

    Props: ``config`` (context values, :class:`infra.config.AppConfig`) and ``artifacts``
    (source folders and built artifacts, :class:`infra.artifacts.BuildArtifacts`).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, artifacts: BuildArtifacts, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config, self.artifacts = config, artifacts
        if not Token.is_unresolved(self.region):
            check_region(self.region, has_trainer=config.has_trainer, instance_type=config.trainer_instance_type)
        prefix = config.name_prefix
        shared = artifacts.lambda_shared_sources()  # what every Lambda package holds beside its handler
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
        self.forecasts = Forecasts(
            self,
            "Forecasts",
            windows_bucket=storage.windows,
            query_results_bucket=storage.query_results,
            name_prefix=prefix,
            scan_limit_bytes=config.forecasts_scan_limit_mb * 1_000_000,
        )
        self.enrollment = Enrollment(
            self,
            "Enrollment",
            fleet=fleet,
            hook_source=artifacts.lambda_source("pre_provisioning"),
            shared_sources=shared,
            retain_table=config.retain_data,
        )
        self.policy_detacher = PolicyDetacher(
            self,
            "PolicyDetacher",
            policies=[fleet.device_policy, self.enrollment.claim_policy],
            source=artifacts.lambda_source("policy_detacher"),
            shared_sources=shared,
        )
        self.iot_endpoint = self._iot_data_endpoint()
        self.alarms = AlarmTopic(self, "Alarms")
        self.alarm_topic = self.alarms.topic

        # -- Lambdas ---------------------------------------------------------------------------
        self.announcer = ModelAnnouncer(
            self,
            "ModelPublished",
            models_bucket=storage.models,
            iot_endpoint=self.iot_endpoint,
            source=artifacts.lambda_source("model_published"),
            shared_sources=shared,
        )
        ingest = PythonFunction(
            self,
            "Ingest",
            source=artifacts.lambda_source("ingest"),
            description="Validate edge messages; count and log rejects",
            shared_sources=shared,
        )
        self.functions: dict[str, PythonFunction] = {"model_published": self.announcer.python, "ingest": ingest}
        self.cloud_inference = None
        if config.mode == "cloud":
            self.cloud_inference = CloudInference(
                self,
                "CloudInference",
                models_bucket=storage.models,
                iot_endpoint=self.iot_endpoint,
                source=artifacts.lambda_source("cloud_inference"),
                shared_sources=artifacts.lambda_shared_sources(numeric=True),  # features + runtime (numpy layer)
                layer_dir=artifacts.inference_layer_dir,
                batch_model_name=config.batch_model_name,
                speed_model_name=config.speed_model_name,
            )
            self.functions["cloud_inference"] = self.cloud_inference.python

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
                source=trainer_source(artifacts.source_root),
                instance_type=config.trainer_instance_type,
                min_capacity=config.trainer_min_capacity,
                max_capacity=config.trainer_max_capacity,
                notifications=self.alarm_topic,
                speed_model_name=config.speed_model_name,
                batch_model_name=config.batch_model_name,
                workers=config.trainer_workers or None,
                window_seconds=config.trainer_window_seconds,
                max_delay_seconds=config.trainer_max_delay_seconds,
            )

        # -- topic rules -----------------------------------------------------------------------
        self.rules = TopicRules(
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
            speed_model_name=config.speed_model_name,  # "speed-{thing}": filled in on the device
            batch_model_name=config.batch_model_name,  # edge mode: the Pi's trainer fine-tunes from it
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
            source_root=artifacts.source_root,
            batch_model_dir=artifacts.batch_model_dir,
            kafka_libs_dir=artifacts.kafka_libs_dir,
            kafka_version=config.kafka_version,
            kafka_heap=config.kafka_heap,
            # edge mode: training runs on the Pi, next to the edge app
            trainer_source=trainer_source(artifacts.source_root) if config.mode == "edge" else None,
            fleet_versions=fleet_versions,
        )
        # the current artifacts, and those of the release the fleet is pinned to (if any)
        pinned = self.greengrass.asset_object_arns(config.pinned_fleet_artifacts()) if not config.promote else []
        fleet.allow_artifact_download(
            self.greengrass.artifact_object_arns + pinned, self.greengrass.artifact_bucket.bucket_arn
        )
        for deployment in (self.greengrass.fleet_deployment, self.greengrass.canary_deployment):
            deployment.node.add_dependency(fleet.fleet_group)
            deployment.node.add_dependency(fleet.canary_group)
            # a device must not get a job before its token exchange role may fetch the artifacts
            deployment.node.add_dependency(fleet.token_exchange_role)

        # a failed or cancelled deployment on a device: to the alarm topic, with the recovery command
        self.deployment_watch = DeploymentWatch(
            self, "DeploymentWatch", alarms=self.alarms, thing_name_prefix=fleet.thing_name_prefix, name_prefix=prefix
        )

        # -- observability ---------------------------------------------------------------------
        self.observability = Observability(
            self,
            "Observability",
            topic=self.alarm_topic,
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
        self._helper_log_groups()
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
            log_group=logs.LogGroup(
                self, "IotDataEndpointLogs", retention=HELPER_LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        return lookup.get_response_field("endpointAddress")

    def _helper_log_groups(self) -> None:
        """CDK's own helper Lambdas (the S3 auto-delete provider) log into a group with retention
        instead of an implicit ``/aws/lambda/...`` group that never expires and survives destroy."""
        provider = self.node.try_find_child(S3_AUTO_DELETE_PROVIDER)
        handler = provider.node.try_find_child("Handler") if provider is not None else None
        if isinstance(handler, CfnResource):
            group = logs.LogGroup(
                self, "S3AutoDeleteLogs", retention=HELPER_LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
            )
            handler.add_property_override("LoggingConfig", {"LogGroup": group.log_group_name})
            handler.node.add_dependency(group)

    def _outputs(self) -> None:
        s, f, e = self.storage, self.fleet, self.enrollment
        outputs = {
            "IotDataEndpointAddress": (self.iot_endpoint, "IoT Core data (ATS) endpoint for devices and Lambdas"),
            "WindowsBucket": (s.windows.bucket_name, "windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.<ext>"),
            "ModelsBucket": (s.models.bucket_name, "models/<name>/<version>/model.tflite + manifest.json"),
            "ResultsBucket": (s.results.bucket_name, "results/<thing>/..."),
            "ForecastsDatabase": (self.forecasts.database_name, "Glue database of the forecasts table (Athena)"),
            "ForecastsTable": (self.forecasts.table_name, "one row per reading: forecasts/<thing>/<yyyy>/<mm>/<dd>/"),
            "ForecastsWorkGroup": (self.forecasts.workgroup_name, "Athena workgroup of hybridstream results"),
            "ForecastsQueryPolicy": (
                self.forecasts.query_policy.managed_policy_arn,
                "managed policy to attach to whoever runs hybridstream results",
            ),
            "FleetThingGroup": (f.fleet_group.thing_group_name, "thing group of the Pi fleet"),
            "CanaryThingGroup": (
                f.canary_group.thing_group_name,
                "canary Pis' thing group (never also fleet)",
            ),
            "RoleAlias": (f.role_alias.role_alias, "Greengrass token exchange role alias"),
            "DevicePolicy": (f.device_policy.policy_name, "IoT policy for core devices"),
            "ProvisioningTemplate": (e.template_name, "fleet provisioning template (with the pre-provisioning hook)"),
            "ClaimPolicy": (e.claim_policy.policy_name, "IoT policy for provisioning claim certificates"),
            "EnrollmentTable": (e.table.table_name, "allow-list of enrolled serials (hybridstream fleet enroll)"),
            "ThingNamePrefix": (f.thing_name_prefix, "thing name = <ThingNamePrefix>-<SerialNumber>"),
            "ClaimClientIdPrefix": (e.claim_client_prefix, "MQTT client id prefix a claim certificate may use"),
            "DeviceMetricsKey": (
                LATEST_METRICS_KEY.replace("${topic(2)}", "{thing}"),
                "results bucket key of each device's latest metrics message (edge_metrics_latest rule)",
            ),
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
