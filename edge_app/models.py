"""Fetching and verifying a model (TFLite bytes + manifest) before it may serve.

A model serves only if: its bytes hash to the sha256 of the notice (when given) and of its
manifest, its feature spec equals the running one, its input/output shapes match that spec,
the lightweight runtime loads it, and a probe forecast is finite. Anything else raises
:class:`~model_contract.runtime.ModelRejected` with the reason.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from model_contract import FeatureSpec, Manifest, sha256_bytes
from model_contract.runtime import ModelRejected, TFLiteModel


def _fetch_file(location: str) -> bytes:
    path = Path(unquote(urlparse(location).path)) if location.startswith("file://") else Path(location)
    return path.read_bytes()


# scheme -> fetcher; the cloud side registers "s3" (boto3 through the token exchange service)
FETCHERS: dict[str, Callable[[str], bytes]] = {"": _fetch_file, "file": _fetch_file}


def fetch(location: str) -> bytes:
    """The bytes at a path, ``file://`` URL, or any scheme registered in :data:`FETCHERS`."""
    scheme = urlparse(location).scheme if "://" in location else ""
    fetcher = FETCHERS.get(scheme)
    if fetcher is None:
        raise ModelRejected(f"cannot fetch {location!r}: no fetcher for scheme {scheme!r} (have {sorted(FETCHERS)})")
    try:
        return fetcher(location)
    except OSError as exc:
        raise ModelRejected(f"cannot fetch {location!r}: {exc}") from None


def sibling_manifest(location: str) -> str:
    """``.../model.tflite`` -> ``.../manifest.json`` (same scheme)."""
    head, _, _ = location.rpartition("/")
    return f"{head}/manifest.json" if head else "manifest.json"


@dataclass
class LoadedModel:
    """A verified model ready to serve."""

    model: TFLiteModel
    manifest: Manifest
    location: str
    content: bytes

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def name(self) -> str:
        return self.manifest.name


def load_model(
    location: str,
    manifest_location: str = "",
    *,
    spec: FeatureSpec | None = None,
    expected_sha256: str = "",
    num_threads: int = 1,
) -> LoadedModel:
    """Fetch, verify and load one model; ``spec`` (if given) must equal the manifest's feature spec."""
    content = fetch(location)
    raw_manifest = fetch(manifest_location or sibling_manifest(location))
    try:
        manifest = Manifest.from_json(raw_manifest)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelRejected(f"unreadable manifest: {type(exc).__name__}: {exc}") from None
    digest = sha256_bytes(content)
    if expected_sha256 and digest != expected_sha256.lower():
        raise ModelRejected(f"sha256 mismatch: notice says {expected_sha256[:12]}..., file is {digest[:12]}...")
    if digest != manifest.sha256:
        raise ModelRejected(f"sha256 mismatch: manifest says {manifest.sha256[:12]}..., file is {digest[:12]}...")
    if spec is not None and manifest.feature_spec != spec:
        raise ModelRejected(f"feature spec differs: running {spec.to_dict()}, model {manifest.feature_spec.to_dict()}")
    if tuple(manifest.input_shape) != manifest.feature_spec.input_shape:
        raise ModelRejected(
            f"manifest input shape {tuple(manifest.input_shape)} != feature spec {manifest.feature_spec.input_shape}"
        )
    if int(np.prod(manifest.output_shape)) != 1:
        raise ModelRejected(f"manifest output shape {tuple(manifest.output_shape)} is not one value")
    model = TFLiteModel.from_manifest(content, manifest, num_threads=num_threads)
    probe = model.predict_one(np.asarray([manifest.scaler.mean] * manifest.input_shape[0], dtype=np.float64))
    if not math.isfinite(probe):
        raise ModelRejected(f"probe forecast is not finite ({probe})")
    return LoadedModel(model, manifest, location, content)


def keep_local_copy(loaded: LoadedModel, root: Path) -> Path:
    """Write the verified bytes + manifest to ``root/<name>/<version>/`` (immutable, atomic); return the model path."""
    folder = root / loaded.name / loaded.version
    target = folder / "model.tflite"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "manifest.json", loaded.manifest.to_json().encode())
        atomic_write(target, loaded.content)
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pointer(path: Path, loaded: LoadedModel, model_path: Path) -> None:
    """Remember which speed model serves, so a restart keeps it."""
    pointer = {
        "name": loaded.name,
        "version": loaded.version,
        "model": str(model_path),
        "sha256": loaded.manifest.sha256,
    }
    atomic_write(path, json.dumps(pointer, indent=2).encode())
