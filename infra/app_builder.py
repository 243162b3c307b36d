"""Build the CDK app (used by ``app.py`` and by the tests, which build it once per session)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from infra.artifacts import BuildArtifacts
from infra.config import REPO, AppConfig
from infra.nag_acknowledgements import acknowledge
from infra.stack import HybridStreamStack

STACK_NAME = "HybridStream"


def cdk_json_context() -> dict[str, Any]:
    """The context block of cdk.json (what the CDK CLI passes to app.py)."""
    return json.loads((REPO / "cdk.json").read_text()).get("context", {})


def build_artifacts(config: AppConfig, source_root: Path = REPO) -> BuildArtifacts:
    """The app's inputs, resolved once from context (relative paths: from the checkout) and
    checked: a missing artifact stops here with the command that builds it."""
    return BuildArtifacts(
        source_root=source_root,
        lambdas_dir=source_root / "lambdas",
        batch_model_dir=config.resolve(config.batch_model_dir),
        kafka_libs_dir=config.kafka_libs,
        inference_layer_dir=config.resolve(config.inference_layer_dir) if config.mode == "cloud" else None,
    ).check()


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, HybridStreamStack]:
    """The app with its one stack and cdk-nag's AwsSolutions checks.

    Under the CDK CLI (``context`` None) the CLI supplies cdk.json's context; tests pass
    ``context``, which overrides cdk.json's.
    """
    if context is None:
        app = App(outdir=outdir) if outdir else App()
    else:
        app = App(context={**cdk_json_context(), **context}, outdir=outdir)
    config = AppConfig.from_context(app.node.try_get_context)
    artifacts = build_artifacts(config)
    account = config.account or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = config.region or os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account and region else None
    stack = HybridStreamStack(
        app,
        STACK_NAME,
        config=config,
        artifacts=artifacts,
        env=env,
        description=f"hybridstream edge-cloud stream analytics (mode {config.mode})",
    )
    Tags.of(app).add("project", "hybridstream")
    Tags.of(app).add("hybridstream:mode", config.mode)
    acknowledge(stack)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
