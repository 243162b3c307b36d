"""Build the CDK app once per test session for each mode (cdk-nag applied) and share templates.

Synthesis is offline: no AWS credentials or network. A tiny batch model and inference layer
are generated in a temp folder so every component and function is present.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii runs aws-cdk-lib on the project's Node (package.json: Node 24, `make setup`), not the machine's
PROJECT_NODE = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "node"
if PROJECT_NODE.exists():
    os.environ.setdefault("JSII_NODE", str(PROJECT_NODE))

MODES = ("edge-cloud", "edge", "cloud")


@dataclass
class Built:
    """One synthesized app: the stack, its template (assertions) and the raw template dict."""

    stack: Any
    template: Any  # aws_cdk.assertions.Template
    raw: dict[str, Any]
    outdir: Path

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.raw["Resources"].items() if v["Type"] == type_name}


def make_batch_model(folder: Path, payload: bytes = b"TFL3 fake batch model") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(payload)
    manifest = {
        "name": "turbine-batch",
        "version": "v1",
        "sha256": hashlib.sha256(payload).hexdigest(),
        "kind": "batch",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def make_kafka_libs(folder: Path) -> Path:
    """A stand-in for the Maven-fetched broker jars (the real folder is ~43 MB)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kafka_2.13-4.4.0.jar").write_bytes(b"PK stand-in")
    (folder / "kafka-clients-4.4.0.jar").write_bytes(b"PK stand-in")
    return folder


@pytest.fixture(scope="session")
def infra_assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infra-assets")
    layer = root / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "README.txt").write_text("stand-in for numpy + ai-edge-litert in tests\n")
    return {
        "batch_model": make_batch_model(root / "batch-model"),
        "layer": layer,
        "kafka_libs": make_kafka_libs(root / "kafka-libs"),
        "root": root,
    }


def build(context: dict[str, Any], outdir: Path) -> Built:
    """Synthesize with ``context`` over cdk.json's; by default the fleet gets the current
    release (``promote``) and the broker jars are a small stand-in."""
    from aws_cdk.assertions import Template

    from infra.app_builder import build_app

    context = {"promote": True, **context}
    if "kafka_libs_dir" not in context:
        context["kafka_libs_dir"] = str(make_kafka_libs(outdir.parent / f"{outdir.name}-kafka-libs"))

    with pytest.MonkeyPatch.context() as mp:
        # a synth must never depend on credentials or a default account
        for var in [v for v in os.environ if v.startswith(("AWS_", "CDK_DEFAULT_"))]:
            mp.delenv(var)
        app, stack = build_app(context, outdir=str(outdir))
        app.synth()  # runs cdk-nag: an unacknowledged finding raises here
        template = Template.from_stack(stack)
    return Built(stack=stack, template=template, raw=template.to_json(), outdir=outdir)


@pytest.fixture(scope="session")
def built(infra_assets, tmp_path_factory) -> dict[str, Built]:
    """mode -> Built, every mode synthesized once for the whole session."""
    out = {}
    for mode in MODES:
        context = {
            "mode": mode,
            "batch_model_dir": str(infra_assets["batch_model"]),
            "inference_layer_dir": str(infra_assets["layer"]),
        }
        out[mode] = build(context, tmp_path_factory.mktemp(f"cdk-{mode}"))
    return out


@pytest.fixture(scope="session")
def default(built) -> Built:
    return built["edge-cloud"]
