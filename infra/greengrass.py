"""Greengrass v2: the edge app, batch model, Kafka broker (and in ``edge`` mode trainer)
components, and the gated deployments to the canary and fleet thing groups (L1 constructs:
CDK has no Greengrass v2 L2)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from aws_cdk import CfnDeletionPolicy, Stack
from aws_cdk import aws_greengrassv2 as gg
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra import recipes
from infra.config import REPO
from infra.packaging import semver_from_hashes, stage
from model_contract.kafka_broker import BROKER_JAR_GLOB, KAFKA_VERSION, PI_HEAP

Deployment = gg.CfnDeployment


def _version_of(recipe: Mapping[str, Any], *hashes: str) -> str:
    """Version from artifact hashes + the recipe body (so a lifecycle change is a new version too)."""
    body = json.dumps({**recipe, "ComponentVersion": "0.0.0"}, sort_keys=True)
    return semver_from_hashes(body, *hashes)


class GreengrassComponents(Construct):
    """Component versions whose versions derive from their content, plus two deployments.

    Props:
        name_prefix: component names are ``<prefix>.Prerequisites`` / ``.EdgeApp`` / ``.BatchModel``
            / ``.KafkaBroker`` / ``.Trainer`` (default ``hybridstream``).
        settings: the edge app's default configuration (:class:`infra.recipes.EdgeAppSettings`).
        fleet_group_arn / canary_group_arn: deployment targets.
        batch_model_dir: folder with ``model.tflite`` + ``manifest.json`` (required: the edge app
            cannot start without a batch model; ``make batch-model`` builds it).
        kafka_libs_dir: the broker's jars, built beforehand (``make setup``: ``.cache/kafka-<version>/libs``)
            and taken as given (nothing is fetched during synth), zipped as the KafkaBroker artifact.
        kafka_version: Apache Kafka release of those jars (``model_contract.kafka_broker.KAFKA_VERSION``).
        kafka_heap: the broker's ``-Xmx`` (default ``model_contract.kafka_broker.PI_HEAP``).
        source_root: the checkout holding ``edge_app/`` and ``model_contract/`` (default: this repository).
        trainer_source: ``edge`` mode: staged trainer package folder -> a ``Trainer`` component
            (default None: no trainer on the Pi).
        deployment_config: configuration merged at deployment into the edge app (and the
            trainer): bucket names ...
        fleet_versions: the canary gate. None: the fleet gets the current versions (promote);
            a mapping component -> version: the fleet deployment pins those (the last promoted
            release) while the canary deployment gets the current ones.

    Component versions: ``UpdateReplacePolicy: Retain`` (a fleet pinned to the previous release
    still needs the version its successor replaces) and ``DeletionPolicy: Delete`` (a failed first
    deploy's rollback and ``cdk destroy`` remove what they created, so a retry can create the same
    content-derived versions again instead of failing with ConflictException).

    Attributes: ``components`` (name -> CfnComponentVersion), ``versions`` (name -> version),
    ``artifact_object_arns`` (S3 objects devices must be able to read), ``artifact_keys``
    (their object keys), ``artifact_bucket`` (the assets bucket, or None), ``fleet_deployment``,
    ``canary_deployment``, ``recipes`` (name -> recipe dict, for tests and docs),
    ``job_timeout_minutes`` (both rollouts' per-device timeout, from the recipes' timeouts).
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
        batch_model_dir: Path,
        kafka_libs_dir: Path,
        name_prefix: str = "hybridstream",
        kafka_version: str = KAFKA_VERSION,
        kafka_heap: str = PI_HEAP,
        trainer_source: Path | None = None,
        fleet_versions: Mapping[str, str] | None = None,
        source_root: Path = REPO,
    ) -> None:
        super().__init__(scope, construct_id)
        self.components: dict[str, gg.CfnComponentVersion] = {}
        self.versions: dict[str, str] = {}
        self.recipes: dict[str, dict[str, Any]] = {}
        self.artifact_object_arns: list[str] = []
        self.artifact_keys: list[str] = []
        self.artifact_bucket: s3.IBucket | None = None

        # apt/Java prerequisites: the release's only Bootstrap step, in a rarely changing component
        prereq = f"{name_prefix}.Prerequisites"
        self._add(prereq, lambda v: recipes.prerequisites_recipe(name=prereq, version=v))

        kafka_name = f"{name_prefix}.KafkaBroker"
        self._add_shipping(
            kafka_name,
            "KafkaBrokerArtifact",
            stage("kafka-broker", {"libs": kafka_libs(kafka_libs_dir)}),
            recipes.kafka_broker_recipe,
            "jars",
            kafka_version=kafka_version,
            prerequisites_component=prereq,
            heap=kafka_heap,
        )

        if not ((batch_model_dir / "model.tflite").is_file() and (batch_model_dir / "manifest.json").is_file()):
            raise FileNotFoundError(
                f"no batch model in {batch_model_dir} (model.tflite + manifest.json): run `make batch-model` "
                "(or set context batch_model_dir): the edge app cannot start without a batch model"
            )
        batch_name = f"{name_prefix}.BatchModel"
        model_files = {name: batch_model_dir / name for name in ("model.tflite", "manifest.json")}
        model = self._add_shipping(
            batch_name, "BatchModelArtifact", stage("batch-model", model_files), recipes.batch_model_recipe, "model"
        )

        app_name = f"{name_prefix}.EdgeApp"
        app_files = {package: Path(source_root) / package for package in EDGE_APP_PACKAGES}
        self._add_shipping(
            app_name,
            "EdgeAppArtifact",
            stage("edge-app", app_files),
            recipes.edge_app_recipe,
            "app",
            settings=settings,
            kafka_component=kafka_name,
            batch_component=batch_name,
            batch_stem=model.stem,
            prerequisites_component=prereq,
        )
        self.edge_app_name = app_name

        stack = Stack.of(self)
        merge = {app_name: stack.to_json_string(dict(deployment_config))}
        self.trainer_name = None
        if trainer_source is not None:
            trainer_name = self.trainer_name = f"{name_prefix}.Trainer"
            self._add_shipping(
                trainer_name,
                "TrainerArtifact",
                trainer_source,
                recipes.trainer_recipe,
                "source",
                edge_app_component=app_name,
                speed_model_name=settings.speed_model_name,
                batch_model_name=settings.batch_model_name,
                prerequisites_component=prereq,
            )
            s3_config = dict(deployment_config).get("s3", {})
            merge[trainer_name] = stack.to_json_string({"s3": {"modelsBucket": s3_config.get("modelsBucket", "")}})

        current = {name: c.attr_component_version for name, c in self.components.items()}
        self.job_timeout_minutes = job_timeout_minutes(self.recipes.values())
        self.fleet_pinned = fleet_versions is not None
        self.canary_deployment = self._deployment(
            "CanaryDeployment", f"{name_prefix}-canary", canary_group_arn, merge, current, canary=True
        )
        self.fleet_deployment = self._deployment(
            "FleetDeployment",
            f"{name_prefix}-fleet",
            fleet_group_arn,
            merge,
            dict(fleet_versions) if fleet_versions is not None else current,
            canary=False,
        )

    # -- pieces -----------------------------------------------------------------------------
    def _asset(self, construct_id: str, folder: Path) -> recipes.ZipArtifact:
        asset = s3_assets.Asset(self, construct_id, path=str(folder))
        self.artifact_bucket = asset.bucket
        self.artifact_object_arns.append(asset.bucket.arn_for_objects(asset.s3_object_key))
        self.artifact_keys.append(asset.s3_object_key)
        return recipes.ZipArtifact(uri=asset.s3_object_url, stem=asset.asset_hash)

    @property
    def _asset_bucket(self) -> s3.IBucket | None:  # the old private name (infra/stack.py reads it)
        return self.artifact_bucket

    def asset_object_arns(self, keys: list[str]) -> list[str]:
        """ARNs of other objects in the assets bucket (a pinned release's artifacts)."""
        return [self.artifact_bucket.arn_for_objects(key) for key in keys] if self.artifact_bucket else []

    def release(self) -> dict[str, Any]:
        """The current release as context values: what to pin the fleet to once promoted."""
        return {"fleet_component_versions": dict(self.versions), "fleet_artifacts": list(self.artifact_keys)}

    def _add_shipping(
        self, name: str, asset_id: str, folder: Path, make_recipe: Callable[..., dict], artifact_arg: str, **settings
    ) -> recipes.ZipArtifact:
        """Component ``name`` whose recipe ships one zip: ``folder`` uploaded as the asset ``asset_id``, the recipe
        ``make_recipe(name=, version=, <artifact_arg>=the artifact, **settings)``; returns the artifact."""
        artifact = self._asset(asset_id, folder)
        self._add(
            name,
            lambda v: make_recipe(name=name, version=v, **{artifact_arg: artifact}, **settings),
            artifacts=(artifact,),
        )
        return artifact

    def _add(self, name: str, build, artifacts: tuple[recipes.ZipArtifact, ...] = ()) -> None:
        """Build the recipe twice: with placeholder URIs to derive the version, then for real."""
        text = json.dumps(build("0.0.0"))
        for a in artifacts:  # asset URIs hold deploy-time tokens (the bucket): use the content hash
            text = text.replace(a.uri, f"s3://asset/{a.stem}.zip")
        version = _version_of(json.loads(text), *(a.stem for a in artifacts))
        recipe = build(version)
        self.recipes[name] = recipe
        self.versions[name] = version
        component = gg.CfnComponentVersion(
            self, name.split(".")[-1], inline_recipe=Stack.of(self).to_json_string(recipe)
        )
        # replaced: kept (a fleet pinned to the previous release still needs it); deleted with the
        # stack or a rolled-back create, so a retry can create the same content-derived version again
        component.cfn_options.update_replace_policy = CfnDeletionPolicy.RETAIN
        component.cfn_options.deletion_policy = CfnDeletionPolicy.DELETE
        self.components[name] = component

    def _deployment(
        self,
        construct_id: str,
        name: str,
        target: str,
        merge: Mapping[str, str],
        versions: Mapping[str, str],
        canary: bool,
    ):
        components = {
            component: Deployment.ComponentDeploymentSpecificationProperty(
                component_version=version,
                configuration_update=Deployment.ComponentConfigurationUpdateProperty(merge=merge[component])
                if component in merge
                else None,
            )
            for component, version in versions.items()
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
            iot_job_configuration=rollout(canary, self.job_timeout_minutes),
        )


def kafka_libs(folder: Path) -> Path:
    """The broker's jars folder as given (built by ``make setup``); a clear error when it is not one."""
    folder = Path(folder)
    if folder.is_dir() and any(folder.glob(BROKER_JAR_GLOB)):
        return folder
    raise FileNotFoundError(
        f"Kafka broker jars ({BROKER_JAR_GLOB}) missing in {folder}: run `make setup` "
        "(or `hybridstream local kafka fetch`), or set context kafka_libs_dir"
    )


# Deployment policy timeouts (below) and a margin for artifact downloads, on top of the recipes' steps
EDGE_APP_PACKAGES = ("edge_app", "model_contract")  # the EdgeApp component's artifact: the code a Pi runs
POLICY_SECONDS = 120 + 60
DOWNLOAD_MARGIN_SECONDS = 600


def job_timeout_minutes(all_recipes) -> int:
    """The rollouts' per-device in-progress timeout: every component's worst-case Bootstrap + Install
    timeouts added up (a device may run them one after the other), plus the deployment policies'
    timeouts and a download margin, rounded up to a quarter hour."""
    seconds = sum(recipes.install_budget_seconds(r) for r in all_recipes) + POLICY_SECONDS + DOWNLOAD_MARGIN_SECONDS
    return int(math.ceil(seconds / 60 / 15) * 15)


class Rollout(NamedTuple):
    """An IoT job's exponential rollout and its abort rule (:func:`rollout`)."""

    base_rate_per_minute: int
    increment_factor: float
    successes_per_increase: int
    maximum_per_minute: int
    min_executed_things: int
    abort_percentage: int


CANARY_ROLLOUT = Rollout(10, 1.5, 1, 10, 1, 1)
FLEET_ROLLOUT = Rollout(2, 2, 5, 50, 5, 10)


def rollout(canary: bool, timeout_minutes: int) -> gg.CfnDeployment.DeploymentIoTJobConfigurationProperty:
    """The IoT job rollout. Kept constant on purpose (per mode: the timeout follows the recipes):
    changing it replaces the deployment.

    Fleet: exponential (2/min, x2 after every 5 successes, at most 50/min), cancel when over
    10 % of at least 5 devices fail. Canary: all at once, cancel on any failure. Both give a
    device ``timeout_minutes`` (:func:`job_timeout_minutes`): a slow first install must not
    time the job out.
    """
    p = CANARY_ROLLOUT if canary else FLEET_ROLLOUT
    rate = Deployment.IoTJobExponentialRolloutRateProperty(
        base_rate_per_minute=p.base_rate_per_minute,
        increment_factor=p.increment_factor,
        rate_increase_criteria={"NumberOfSucceededThings": p.successes_per_increase},
    )
    return Deployment.DeploymentIoTJobConfigurationProperty(
        job_executions_rollout_config=Deployment.IoTJobExecutionsRolloutConfigProperty(
            exponential_rate=rate, maximum_per_minute=p.maximum_per_minute
        ),
        abort_config=Deployment.IoTJobAbortConfigProperty(
            criteria_list=[
                Deployment.IoTJobAbortCriteriaProperty(
                    action="CANCEL",
                    failure_type="ALL",
                    min_number_of_executed_things=p.min_executed_things,
                    threshold_percentage=p.abort_percentage,
                )
            ]
        ),
        timeout_config=Deployment.IoTJobTimeoutConfigProperty(in_progress_timeout_in_minutes=timeout_minutes),
    )
