"""The model announcer: ``models/<name>/LATEST`` written -> the ``model_published`` Lambda ->
MQTT ``hybridstream/models/<name>/published`` (cloud -> edge)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.fleet import iot_arn
from infra.functions import ExposesFunction, PythonFunction
from model_contract.topics import TOPIC_ROOT


class ModelAnnouncer(ExposesFunction, Construct):
    """S3 "Object Created" of ``models/*/LATEST`` (EventBridge) -> the announcer Lambda.

    Why LATEST: the trainer moves ``models/<name>/LATEST`` (forward only) after the version's
    ``model.tflite`` and ``manifest.json``; a manifest alone may be an older window's model or
    precede its LATEST. (``*`` in an EventBridge wildcard spans ``/``: the handler refuses keys
    other than ``models/<name>/LATEST``.)

    Props:
        models_bucket: the bucket whose ``LATEST`` writes are announced (EventBridge
            notifications must be on: :class:`infra.storage.Storage` turns them on).
        iot_endpoint: the IoT data (ATS) endpoint the Lambda publishes to.
        source: the Lambda's folder (``<lambdas_dir>/model_published``); ignored with
            ``existing_function``.
        existing_function: an announcer function to wire instead of a new one (default None).
        topic_root: MQTT topic root (default ``hybridstream``).
        environment: extra environment variables for a new function (default none).
        retry_attempts / max_event_age: EventBridge delivery retries (default 4 / 2 hours)
            before the event goes to the function's dead-letter queue.

    ``shared_sources``: staged into the Lambda package beside the handler (default none; the app
    passes ``BuildArtifacts.lambda_shared_sources()``).

    Attributes (read-only): ``function``, ``role``, ``dead_letter_queue``, ``rule``, ``python``
    (the :class:`infra.functions.PythonFunction`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        models_bucket: s3.IBucket,
        iot_endpoint: str,
        source: Path | None = None,
        existing_function: PythonFunction | None = None,
        topic_root: str = TOPIC_ROOT,
        environment: Mapping[str, str] | None = None,
        retry_attempts: int = 4,
        max_event_age: Duration | None = None,
        shared_sources: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if existing_function is None and source is None:
            raise ValueError("ModelAnnouncer needs source (the model_published folder) or existing_function")
        self._python = existing_function or PythonFunction(
            self,
            "Handler",
            shared_sources=shared_sources,
            source=source,
            description="models/<name>/LATEST written -> MQTT hybridstream/models/<name>/published (the current model)",
            environment={"IOT_DATA_ENDPOINT": iot_endpoint, "TOPIC_ROOT": topic_root, **(environment or {})},
        )
        role = self._python.role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadPointersAndManifests",
                actions=["s3:GetObject"],
                resources=[
                    models_bucket.arn_for_objects("models/*/LATEST"),
                    models_bucket.arn_for_objects("models/*/manifest.json"),
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="AnnounceModels",
                actions=["iot:Publish"],
                resources=[iot_arn(f"topic/{topic_root}/models/*/published")],
            )
        )
        self._rule = events.Rule(
            self,
            "LatestWritten",
            description="A model's LATEST pointer was written in the models bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [models_bucket.bucket_name]},
                    "object": {"key": [{"wildcard": "models/*/LATEST"}]},
                },
            ),
            targets=[
                targets.LambdaFunction(
                    self._python.function,
                    dead_letter_queue=self._python.dead_letter_queue,
                    retry_attempts=retry_attempts,
                    max_event_age=max_event_age or Duration.hours(2),
                )
            ],
        )

    @property
    def rule(self) -> events.Rule:
        return self._rule
