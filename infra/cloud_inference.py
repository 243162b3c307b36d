"""``cloud`` mode's inference: forwarded readings (``hybridstream/<thing>/readings``, via the
``cloud_readings`` rule) -> batch/speed/hybrid forecast -> ``hybridstream/<thing>/results``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.fleet import iot_arn
from infra.functions import ExposesFunction, PythonFunction
from model_contract.topics import TOPIC_ROOT

# ai-edge-litert publishes no Python 3.14 wheels yet
INFERENCE_RUNTIME = lambda_.Runtime.PYTHON_3_13


class CloudInference(ExposesFunction, Construct):
    """The inference Lambda (Python 3.13, 1 GB) with its dependency layer.

    Props:
        models_bucket: where ``models/<name>/LATEST`` and the versions live (read only).
        iot_endpoint: the IoT data (ATS) endpoint it publishes results to.
        source: the Lambda's folder (``<lambdas_dir>/cloud_inference``).
        layer_dir: a folder with ``python/`` (numpy + ai-edge-litert); ignored with
            ``existing_layer``.
        existing_layer: a layer to use instead of building one from ``layer_dir`` (default None).
        batch_model_name / speed_model_name: default ``batch`` / ``speed-{thing}``.
        topic_root: default ``hybridstream``; memory_size: MB (default 1024).
        environment: extra environment variables (default none).

    ``shared_sources``: staged into the Lambda package beside the handler (default none; the app
    passes ``BuildArtifacts.lambda_shared_sources()``).

    Attributes (read-only): ``function``, ``role``, ``dead_letter_queue``, ``layer``, ``python``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        models_bucket: s3.IBucket,
        iot_endpoint: str,
        source: Path,
        layer_dir: Path | None = None,
        existing_layer: lambda_.ILayerVersion | None = None,
        batch_model_name: str = "batch",
        speed_model_name: str = "speed-{thing}",
        topic_root: str = TOPIC_ROOT,
        memory_size: int = 1024,
        environment: Mapping[str, str] | None = None,
        shared_sources: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if existing_layer is None and layer_dir is None:
            raise ValueError("CloudInference needs layer_dir (scripts/build_inference_layer.sh) or existing_layer")
        self._layer = existing_layer or lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[INFERENCE_RUNTIME],
            description="numpy + ai-edge-litert for the cloud inference Lambda",
        )
        self._python = PythonFunction(
            self,
            "Handler",
            shared_sources=shared_sources,
            source=source,
            description="cloud mode: forwarded readings -> batch/speed/hybrid forecast -> results topic",
            environment={
                "IOT_DATA_ENDPOINT": iot_endpoint,
                "TOPIC_ROOT": topic_root,
                "MODELS_BUCKET": models_bucket.bucket_name,
                "BATCH_MODEL": batch_model_name,
                "SPEED_MODEL": speed_model_name,
                **(environment or {}),
            },
            runtime=INFERENCE_RUNTIME,
            memory_size=memory_size,
            layers=[self._layer],
        )
        role = self._python.role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadModels", actions=["s3:GetObject"], resources=[models_bucket.arn_for_objects("models/*")]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListModels",
                # no s3:prefix condition: it would turn a missing LATEST's 404 into 403
                actions=["s3:ListBucket"],
                resources=[models_bucket.bucket_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishResults",
                actions=["iot:Publish"],
                resources=[iot_arn(f"topic/{topic_root}/*/results")],
            )
        )

    @property
    def layer(self) -> lambda_.ILayerVersion:
        return self._layer
