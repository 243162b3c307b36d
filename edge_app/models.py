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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from edge_app.s3 import LazyS3Client
from model_contract import FeatureSpec, Manifest, sha256_bytes
from model_contract.runtime import ModelRejected, TFLiteModel


def _fetch_file(location: str) -> bytes:
    path = Path(unquote(urlparse(location).path)) if location.startswith("file://") else Path(location)
    return path.read_bytes()


class S3Fetcher:
    """``s3://bucket/key`` -> bytes through boto3 (imported at the first fetch, never on the hot path).

    One client (:class:`edge_app.s3.LazyS3Client`, shared with the window uploader's builder),
    created at first use and reused. Objects larger than ``max_bytes`` are rejected.
    """

    def __init__(self, endpoint_url: str = "", region: str = "", max_bytes: int = 64 * 1024 * 1024) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.max_bytes = max_bytes
        self.client = LazyS3Client(endpoint_url, region)

    def __call__(self, location: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        parsed = urlparse(location)
        bucket, key = parsed.netloc, unquote(parsed.path.lstrip("/"))
        if not bucket or not key:
            raise ModelRejected(f"not an s3://bucket/key location: {location!r}")
        try:
            response = self.client().get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            if size > self.max_bytes:
                response["Body"].close()
                raise ModelRejected(f"{location} is {size} bytes, more than the {self.max_bytes} allowed")
            body = response["Body"].read(self.max_bytes + 1)
        except (ClientError, BotoCoreError) as exc:
            raise ModelRejected(f"cannot fetch {location!r}: {exc}") from None
        if len(body) > self.max_bytes:
            raise ModelRejected(f"{location} is larger than the {self.max_bytes} bytes allowed")
        return body


# scheme -> fetcher (file paths, file:// URLs, s3:// through boto3; the app re-registers "s3" with its config)
FETCHERS: dict[str, Callable[[str], bytes]] = {"": _fetch_file, "file": _fetch_file, "s3": S3Fetcher()}


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
    origin: dict[str, Any] = field(default_factory=dict)  # the notice it came from (swaps), else empty

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
    manifest_sha256: str = "",
) -> LoadedModel:
    """Fetch, verify and load one model; ``spec`` (if given) must equal the manifest's feature spec."""
    raw_manifest = fetch(manifest_location or sibling_manifest(location))
    if manifest_sha256 and sha256_bytes(raw_manifest) != manifest_sha256.lower():
        raise ModelRejected(
            f"manifest sha256 mismatch: notice says {manifest_sha256[:12]}..., "
            f"manifest is {sha256_bytes(raw_manifest)[:12]}..."
        )
    content = fetch(location)
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


def write_pointer(path: Path, loaded: LoadedModel, model_path: Path, published_at: float = 0.0) -> None:
    """Remember which speed model serves (and when it was published), so a restart keeps it."""
    pointer = {
        "name": loaded.name,
        "version": loaded.version,
        "model": str(model_path),
        "sha256": loaded.manifest.sha256,
        "published_at": published_at,
    }
    atomic_write(path, json.dumps(pointer, indent=2).encode())
