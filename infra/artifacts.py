"""What the app is built from: source folders and built artifacts, resolved once by the app
(plain Python, no CDK imports).

The stack and its constructs receive these paths as props (as aws-cdk-examples' apps pass a
``lambda_dir``); no construct computes a repository path or fetches anything during synth.
A missing artifact is a clear error naming the command that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model_contract.kafka_broker import BROKER_JAR_GLOB

# the stdlib-only part of model_contract that the Lambdas without a numpy layer import
WIRE_CONTRACT_MODULES = ("__init__.py", "topics.py", "layout.py", "messages.py")


@dataclass(frozen=True)
class BuildArtifacts:
    """Paths the stack packages.

    - ``source_root``: the repository checkout (``edge_app/``, ``model_contract/``,
      ``training_job/``, ``pyproject.toml`` ...): what the components and the trainer ship.
    - ``lambdas_dir``: one folder per Lambda (``<lambdas_dir>/<name>/handler.py``).
    - ``batch_model_dir``: ``model.tflite`` + ``manifest.json`` (``make batch-model``).
    - ``kafka_libs_dir``: the Pi broker's jars (``make setup`` fetches them).
    - ``inference_layer_dir``: ``cloud`` mode's Lambda layer (``scripts/build_inference_layer.sh``);
      None in the other modes.
    """

    source_root: Path
    lambdas_dir: Path
    batch_model_dir: Path
    kafka_libs_dir: Path
    inference_layer_dir: Path | None = None

    def lambda_source(self, name: str) -> Path:
        return self.lambdas_dir / name

    def lambda_shared_sources(self, *, numeric: bool = False) -> dict[str, Path]:
        """What a Lambda package holds beside its handler: ``lambdas/shared.py`` and the wire
        contract (``model_contract`` topics, layout, messages: stdlib only). ``numeric=True``
        ships all of ``model_contract/`` (features, scaling, manifest, runtime import numpy),
        for the one Lambda with a numpy layer (cloud inference)."""
        contract = self.source_root / "model_contract"
        if numeric:
            sources = {"model_contract": contract}
        else:
            sources = {f"model_contract/{name}": contract / name for name in WIRE_CONTRACT_MODULES}
        sources["lambdas/__init__.py"] = self.lambdas_dir / "__init__.py"
        sources["lambdas/shared.py"] = self.lambdas_dir / "shared.py"
        return sources

    def check(self) -> BuildArtifacts:
        """Raise FileNotFoundError (with the command that builds it) for a missing artifact."""
        layer = self.inference_layer_dir
        if layer is not None and not (layer / "python").is_dir():
            raise FileNotFoundError(
                f"cloud mode needs the inference layer in {layer}/python: run scripts/build_inference_layer.sh "
                "(or set context inference_layer_dir)"
            )
        model = self.batch_model_dir
        if not ((model / "model.tflite").is_file() and (model / "manifest.json").is_file()):
            raise FileNotFoundError(
                f"no batch model in {model} (model.tflite + manifest.json): run `make batch-model` "
                "(or set context batch_model_dir): the edge app cannot start without a batch model"
            )
        if not (self.kafka_libs_dir.is_dir() and any(self.kafka_libs_dir.glob(BROKER_JAR_GLOB))):
            raise FileNotFoundError(
                f"the Kafka broker's jars ({BROKER_JAR_GLOB}) are missing in {self.kafka_libs_dir}: run `make setup` "
                "(it fetches them with Maven), or set context kafka_libs_dir; synth never downloads them"
            )
        for folder in (self.source_root, self.lambdas_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"source folder {folder} not found")
        return self
