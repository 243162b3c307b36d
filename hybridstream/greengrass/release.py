"""The project's Greengrass components as local files: the same recipes the CDK app deploys
(``infra.recipes``), with artifacts zipped on this machine instead of CDK assets in S3.

    release = local_release(tmp, batch_model_dir=..., kafka_libs_dir=..., mode="edge")
    for c in release.components: core.deploy(c.recipe, c.artifacts, c.merge)
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import recipes
from infra.packaging import stage

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LocalComponent:
    recipe: dict[str, Any]
    artifacts: dict[str, Path]
    merge: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.recipe["ComponentName"]


@dataclass
class LocalRelease:
    components: list[LocalComponent]

    def __getitem__(self, short: str) -> LocalComponent:
        """A component by its short name (``EdgeApp``) or full name."""
        for c in self.components:
            if c.name == short or c.name.endswith("." + short):
                return c
        raise KeyError(short)


def zip_folder(folder: Path, out_dir: Path) -> tuple[str, Path]:
    """Zip a folder deterministically; return (stem = content hash, zip path). Jars are stored."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    stem = digest.hexdigest()
    target = out_dir / f"{stem}.zip"
    if not target.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w") as z:
            for p in files:
                kind = zipfile.ZIP_STORED if p.suffix in (".jar", ".zip") else zipfile.ZIP_DEFLATED
                z.write(p, str(p.relative_to(folder)), compress_type=kind)
        tmp.rename(target)
    return stem, target


def _artifact(folder: Path, out_dir: Path) -> tuple[recipes.ZipArtifact, dict[str, Path]]:
    stem, path = zip_folder(folder, out_dir)
    uri = f"s3://local-artifacts/{stem}.zip"
    return recipes.ZipArtifact(uri=uri, stem=stem), {uri: path}


def local_release(
    out_dir: Path,
    *,
    batch_model_dir: Path,
    kafka_libs_dir: Path,
    mode: str = "edge",
    name_prefix: str = "hybridstream",
    source_root: Path = REPO,
    kafka_port: int = 9092,
    controller_port: int = 9093,
    edge_merge: Mapping[str, Any] | None = None,
) -> LocalRelease:
    """Recipes + zipped artifacts of the Prerequisites (when the recipes have it), KafkaBroker,
    BatchModel and EdgeApp components, with deployment merges that point the edge app at the
    broker's port (``edge_merge`` adds to the edge app's merge)."""
    out_dir = Path(out_dir)
    version = "1.0.0"
    kafka_name, batch_name, app_name = (f"{name_prefix}.{n}" for n in ("KafkaBroker", "BatchModel", "EdgeApp"))
    components: list[LocalComponent] = []
    prereq_name = None
    if hasattr(recipes, "prerequisites_recipe"):
        prereq_name = f"{name_prefix}.Prerequisites"
        components.append(LocalComponent(recipes.prerequisites_recipe(name=prereq_name, version=version), {}))
    jars, jar_files = _artifact(stage("kafka-broker", {"libs": kafka_libs_dir}), out_dir)
    kafka_kwargs: dict[str, Any] = {"name": kafka_name, "version": version, "jars": jars}
    if prereq_name:
        kafka_kwargs["prerequisites_component"] = prereq_name
    components.append(
        LocalComponent(
            recipes.kafka_broker_recipe(**kafka_kwargs),
            jar_files,
            {"port": str(kafka_port), "controllerPort": str(controller_port), "heap": "256m"},
        )
    )
    model, model_files = _artifact(
        stage(
            "batch-model",
            {"model.tflite": batch_model_dir / "model.tflite", "manifest.json": batch_model_dir / "manifest.json"},
        ),
        out_dir,
    )
    batch = recipes.batch_model_recipe(name=batch_name, version=version, model=model)
    components.append(LocalComponent(batch, model_files))
    app, app_files = _artifact(
        stage("edge-app", {"edge_app": source_root / "edge_app", "model_contract": source_root / "model_contract"}),
        out_dir,
    )
    app_kwargs: dict[str, Any] = {
        "name": app_name,
        "version": version,
        "app": app,
        "settings": recipes.EdgeAppSettings(mode=mode),
        "kafka_component": kafka_name,
        "batch_component": batch_name,
        "batch_stem": model.stem,
    }
    if prereq_name:
        app_kwargs["prerequisites_component"] = prereq_name
    merge: dict[str, Any] = {"kafka": {"bootstrap": f"127.0.0.1:{kafka_port}"}}
    for key, value in dict(edge_merge or {}).items():
        merge[key] = value
    components.append(LocalComponent(recipes.edge_app_recipe(**app_kwargs), app_files, merge))
    return LocalRelease(components)


def wheelhouse(requirements: Path, cache_root: Path, python: str = "python3") -> dict[str, str]:
    """pip's environment for installing ``requirements`` from a local folder of wheels, filled once
    (``pip download``, from the package index) and reused: a component's first install then needs
    no network. Returns ``PIP_FIND_LINKS`` + ``PIP_NO_INDEX`` (+ ``PIP_NO_COMPILE``: faster, for tests) for
    :class:`LocalCore`'s ``env``."""
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    folder = Path(cache_root).resolve() / f"wheels-{key}"
    if not (folder / ".complete").exists():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [python, "-m", "pip", "download", "-q", "--disable-pip-version-check"]
        subprocess.run([*cmd, "-r", str(requirements), "-d", str(tmp)], check=True)
        (tmp / ".complete").touch()
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return {"PIP_FIND_LINKS": str(folder), "PIP_NO_INDEX": "1", "PIP_NO_COMPILE": "1"}
