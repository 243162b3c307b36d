"""Greengrass v2: the edge app, batch model and Kafka broker components, and the deployments
to the canary and fleet thing groups (L1 constructs: CDK has no Greengrass v2 L2)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Stack
from aws_cdk import aws_greengrassv2 as gg
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra import recipes
from infra.config import REPO
from infra.packaging import semver_from_hashes, stage

Deployment = gg.CfnDeployment


def _version_of(recipe: Mapping[str, Any], *hashes: str) -> str:
    """Version from artifact hashes + the recipe body (so a lifecycle change is a new version too)."""
    body = json.dumps({**recipe, "ComponentVersion": "0.0.0"}, sort_keys=True)
    return semver_from_hashes(body, *hashes)


class GreengrassComponents(Construct):
    """Component versions whose versions derive from their content, plus two deployments.

    Props:
        name_prefix: component names are ``<prefix>.EdgeApp`` / ``.BatchModel`` / ``.KafkaBroker``
            (default ``hybridstream``).
        settings: the edge app's default configuration (:class:`infra.recipes.EdgeAppSettings`).
        fleet_group_arn / canary_group_arn: deployment targets.
        batch_model_dir: folder with ``model.tflite`` + ``manifest.json``; None or missing ->
            no batch-model component (a warning is added; the edge app then waits for a model
            announced on MQTT).
        kafka_version: Apache Kafka release the broker component installs (default 4.4.0).
        deployment_config: the edge app configuration merged at deployment (bucket names ...).

    Attributes: ``components`` (name -> CfnComponentVersion), ``versions`` (name -> version),
    ``artifact_object_arns`` (S3 objects devices must be able to read), ``fleet_deployment``,
    ``canary_deployment``, ``recipes`` (name -> recipe dict, for tests and docs).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        fleet_group_arn: str,
        canary_group_arn: str,
        settings: recipes.EdgeAppSettings,
        deployment_config: Mapping[str, Any],
        name_prefix: str = "hybridstream",
        batch_model_dir: Path | None = None,
        kafka_version: str = "4.4.0",
    ) -> None:
        super().__init__(scope, construct_id)
        self.components: dict[str, gg.CfnComponentVersion] = {}
        self.versions: dict[str, str] = {}
        self.recipes: dict[str, dict[str, Any]] = {}
        self.artifact_object_arns: list[str] = []

        kafka_name = f"{name_prefix}.KafkaBroker"
        self._add(
            kafka_name, lambda v: recipes.kafka_broker_recipe(name=kafka_name, version=v, kafka_version=kafka_version)
        )

        batch_name = batch_stem = None
        if batch_model_dir is not None and (batch_model_dir / "model.tflite").is_file():
            batch_name = f"{name_prefix}.BatchModel"
            model = self._asset(
                "BatchModelArtifact",
                stage(
                    "batch-model",
                    {
                        "model.tflite": batch_model_dir / "model.tflite",
                        "manifest.json": batch_model_dir / "manifest.json",
                    },
                ),
            )
            self._add(
                batch_name,
                lambda v, a=model: recipes.batch_model_recipe(name=batch_name, version=v, model=a),
                artifacts=(model,),
            )
            batch_stem = model.stem
        else:
            Annotations.of(self).add_warning_v2(
                "hybridstream:no-batch-model",
                f"no batch model at {batch_model_dir}: the BatchModel component is left out "
                "and the edge app cannot start without a batch model: set context batch_model_dir to a folder with "
                "model.tflite + manifest.json before deploying",
            )

        app_name = f"{name_prefix}.EdgeApp"
        app = self._asset(
            "EdgeAppArtifact",
            stage(
                "edge-app",
                {
                    "edge_app": REPO / "edge_app",
                    "model_contract": REPO / "model_contract",
                },
            ),
        )
        self._add(
            app_name,
            lambda v, a=app: recipes.edge_app_recipe(
                name=app_name,
                version=v,
                app=a,
                settings=settings,
                kafka_component=kafka_name,
                batch_component=batch_name,
                batch_stem=batch_stem,
            ),
            artifacts=(app,),
        )
        self.edge_app_name = app_name

        stack = Stack.of(self)
        merge = {app_name: stack.to_json_string(dict(deployment_config))}
        self.canary_deployment = self._deployment(
            "CanaryDeployment", f"{name_prefix}-canary", canary_group_arn, merge, canary=True
        )
        self.fleet_deployment = self._deployment(
            "FleetDeployment", f"{name_prefix}-fleet", fleet_group_arn, merge, canary=False
        )

    # -- pieces -----------------------------------------------------------------------------
    def _asset(self, construct_id: str, folder: Path) -> recipes.ZipArtifact:
        asset = s3_assets.Asset(self, construct_id, path=str(folder))
        self.artifact_object_arns.append(asset.bucket.arn_for_objects(asset.s3_object_key))
        return recipes.ZipArtifact(uri=asset.s3_object_url, stem=asset.asset_hash)

    def _add(self, name: str, build, artifacts: tuple[recipes.ZipArtifact, ...] = ()) -> None:
        """Build the recipe twice: with placeholder URIs to derive the version, then for real."""
        text = json.dumps(build("0.0.0"))
        for a in artifacts:  # asset URIs hold deploy-time tokens (the bucket): use the content hash
            text = text.replace(a.uri, f"s3://asset/{a.stem}.zip")
        version = _version_of(json.loads(text), *(a.stem for a in artifacts))
        recipe = build(version)
        self.recipes[name] = recipe
        self.versions[name] = version
        self.components[name] = gg.CfnComponentVersion(
            self, name.split(".")[-1], inline_recipe=Stack.of(self).to_json_string(recipe)
        )

    def _deployment(self, construct_id: str, name: str, target: str, merge: Mapping[str, str], canary: bool):
        components = {
            component: Deployment.ComponentDeploymentSpecificationProperty(
                component_version=self.components[component].attr_component_version,
                configuration_update=Deployment.ComponentConfigurationUpdateProperty(merge=merge[component])
                if component in merge
                else None,
            )
            for component in self.components
        }
        return Deployment(
            self,
            construct_id,
            target_arn=target,
            deployment_name=name,
            components=components,
            deployment_policies=Deployment.DeploymentPoliciesProperty(
                failure_handling_policy="ROLLBACK",
                component_update_policy=Deployment.DeploymentComponentUpdatePolicyProperty(
                    action="NOTIFY_COMPONENTS", timeout_in_seconds=120
                ),
                configuration_validation_policy=Deployment.DeploymentConfigurationValidationPolicyProperty(
                    timeout_in_seconds=60
                ),
            ),
            iot_job_configuration=rollout(canary),
        )


def rollout(canary: bool) -> gg.CfnDeployment.DeploymentIoTJobConfigurationProperty:
    """The IoT job rollout. Kept constant on purpose: changing it replaces the deployment.

    Fleet: exponential (2/min, x2 after every 5 successes, at most 50/min), cancel when over
    10 % of at least 5 devices fail, 60 min per device. Canary: all at once, cancel on any
    failure, 30 min per device.
    """
    if canary:
        rate = Deployment.IoTJobExponentialRolloutRateProperty(
            base_rate_per_minute=10, increment_factor=1.5, rate_increase_criteria={"NumberOfSucceededThings": 1}
        )
        return Deployment.DeploymentIoTJobConfigurationProperty(
            job_executions_rollout_config=Deployment.IoTJobExecutionsRolloutConfigProperty(
                exponential_rate=rate, maximum_per_minute=10
            ),
            abort_config=Deployment.IoTJobAbortConfigProperty(
                criteria_list=[
                    Deployment.IoTJobAbortCriteriaProperty(
                        action="CANCEL", failure_type="ALL", min_number_of_executed_things=1, threshold_percentage=1
                    )
                ]
            ),
            timeout_config=Deployment.IoTJobTimeoutConfigProperty(in_progress_timeout_in_minutes=30),
        )
    rate = Deployment.IoTJobExponentialRolloutRateProperty(
        base_rate_per_minute=2, increment_factor=2, rate_increase_criteria={"NumberOfSucceededThings": 5}
    )
    return Deployment.DeploymentIoTJobConfigurationProperty(
        job_executions_rollout_config=Deployment.IoTJobExecutionsRolloutConfigProperty(
            exponential_rate=rate, maximum_per_minute=50
        ),
        abort_config=Deployment.IoTJobAbortConfigProperty(
            criteria_list=[
                Deployment.IoTJobAbortCriteriaProperty(
                    action="CANCEL", failure_type="ALL", min_number_of_executed_things=5, threshold_percentage=10
                )
            ]
        ),
        timeout_config=Deployment.IoTJobTimeoutConfigProperty(in_progress_timeout_in_minutes=60),
    )
