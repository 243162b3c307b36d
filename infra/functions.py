"""Lambda functions: one folder each under ``lambdas/``, latest Python runtime, a DLQ for
asynchronous invocations, a log group with retention, and an inline least-privilege role."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.packaging import stage

LATEST_PYTHON = lambda_.Runtime.PYTHON_3_14


def encrypted_queue(scope: Construct, construct_id: str, **kwargs) -> sqs.Queue:
    """An SQS queue with SSE and a TLS-only queue policy."""
    return sqs.Queue(scope, construct_id, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True, **kwargs)


class PythonFunction(Construct):
    """A Python Lambda from its source folder (+ extra files staged beside its handler).

    Props:
        source: the function's folder (handler ``handler.handler``), e.g. ``<lambdas_dir>/ingest``:
            passed in by the app (``infra.artifacts.BuildArtifacts``), never computed here.
        extra_sources: destination -> source path staged into the package (default none).
        shared_sources: the same, for what every function of the app ships (the app passes
            ``BuildArtifacts.lambda_shared_sources()``: ``model_contract/``, ``lambdas/shared.py``).
        environment: environment variables (default none).
        runtime: default the latest Python runtime in aws-cdk-lib (3.14).
        memory_size: MB (default 256); timeout_seconds: default 30.
        layers: Lambda layers (default none).
        log_retention: default two weeks.

    Attributes: ``function``, ``role``, ``dead_letter_queue``, ``log_group``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: Path,
        description: str,
        extra_sources: Mapping[str, Path] | None = None,
        shared_sources: Mapping[str, Path] | None = None,
        environment: Mapping[str, str] | None = None,
        runtime: lambda_.Runtime = LATEST_PYTHON,
        memory_size: int = 256,
        timeout_seconds: int = 30,
        layers: list[lambda_.ILayerVersion] | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.TWO_WEEKS,
    ) -> None:
        super().__init__(scope, construct_id)
        folder = Path(source).name
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{folder} Lambda: its own logs plus what the stack grants",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.dead_letter_queue = encrypted_queue(self, "DLQ", retention_period=Duration.days(14))
        code_dir = stage(f"lambda-{folder}", {"": Path(source), **(shared_sources or {}), **(extra_sources or {})})
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=runtime,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(code_dir)),
            description=description,
            environment=dict(environment or {}),
            memory_size=memory_size,
            timeout=Duration.seconds(timeout_seconds),
            role=self.role,
            log_group=self.log_group,
            layers=layers,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=2,
            tracing=lambda_.Tracing.DISABLED,
            architecture=lambda_.Architecture.X86_64,
        )


class ExposesFunction:
    """Read-only attributes of a construct built around one :class:`PythonFunction` (``self._python``)."""

    _python: PythonFunction

    @property
    def python(self) -> PythonFunction:
        return self._python

    @property
    def function(self) -> lambda_.IFunction:
        return self._python.function

    @property
    def role(self) -> iam.IRole:
        return self._python.role

    @property
    def dead_letter_queue(self) -> sqs.IQueue:
        return self._python.dead_letter_queue
