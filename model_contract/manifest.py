"""The model manifest: what a published model is, what it was trained on, how good it is.

Stored as ``models/<name>/<version>/manifest.json`` beside ``model.tflite``. Versions are
content-derived (:func:`content_version`) and immutable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model_contract.features import FeatureSpec
from model_contract.scaling import Scaler

MANIFEST_SCHEMA = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_version(*parts: bytes | str) -> str:
    """A short version id derived from content: the same inputs always give the same id.

    >>> content_version(b"window", "config") == content_version(b"window", "config")
    True
    >>> len(content_version(b"x"))
    16
    """
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:16]


@dataclass
class Manifest:
    """Everything the edge needs to trust and serve a model, and people need to audit it."""

    name: str
    version: str
    sha256: str
    feature_spec: FeatureSpec
    scaler: Scaler
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] = (1,)
    kind: str = "speed"  # "batch" (pre-trained on history) or "speed" (re-trained on a window)
    created_at: str = ""
    window: dict[str, Any] = field(default_factory=dict)  # device, first_ts, last_ts, rows, key
    metrics: dict[str, float] = field(default_factory=dict)  # holdout rmse/mae (target units)
    parity_max_abs_diff: float | None = None
    training_seconds: float | None = None
    packages: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = MANIFEST_SCHEMA

    def to_dict(self) -> dict:
        data = asdict(self)
        data["feature_spec"] = self.feature_spec.to_dict()
        data["scaler"] = self.scaler.to_dict()
        data["input_shape"] = list(self.input_shape)
        data["output_shape"] = list(self.output_shape)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping) -> Manifest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["feature_spec"] = FeatureSpec.from_dict(data["feature_spec"])
        known["scaler"] = Scaler.from_dict(data["scaler"])
        known["input_shape"] = tuple(data["input_shape"])
        known["output_shape"] = tuple(data.get("output_shape", (1,)))
        return cls(**known)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        return cls.from_json(Path(path).read_text())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
