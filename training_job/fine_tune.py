"""The speed model's starting point: the batch model's Keras weights and scaler, when they fit the window.

``train pretrain`` publishes the batch model's weights beside its ``model.tflite`` as ``weights.npz``
(numpy's ``savez``: one array per Keras weight, in ``get_weights()`` order; read back without pickle)
and records it in the manifest's ``extra["weights"]`` (``file``, ``sha256``, ``bytes``, ``arrays``).
The scaler is the manifest's own. A speed model fine-tuned from them starts as the batch model and
learns the stream's recent dynamics (docs/combination.md: from scratch it adds nothing to the blend).

The speed worker fine-tunes only when the batch model fits: the window's feature spec (the one the
edge serves, sent with the window) equals the batch model's, and the network's architecture and the
meaning of its output (:data:`ARCHITECTURE`) are the same. Otherwise (no batch model, one published
before its weights were, another spec or architecture, a manifest.json that is not a manifest,
weights without their sha256 or not matching it, unreadable weights) it trains from scratch as
before and says why in the manifest's ``extra["fine_tune"]`` and its log.

Where the batch model is (:class:`BatchModelSource`): ``latest`` (``<prefix>/batch/LATEST`` in the
models bucket, the CLI's default), a local folder holding ``model.tflite``, ``manifest.json`` and
``weights.npz`` (``train pretrain --out``'s), or ``none``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_contract import FeatureSpec, Manifest, Scaler, sha256_bytes
from model_contract.layout import BATCH_MODEL_NAME, model_folder

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.npz"
WEIGHTS_KEY = "weights"  # the manifest's extra field describing weights.npz
FINE_TUNE_KEY = "fine_tune"  # a speed manifest's extra field: from which batch model, or why from scratch
LATEST = "latest"
NONE = "none"
DEFAULT_BATCH_MODEL = LATEST
# TrainConfig fields that shape the network or give its output a meaning (a warm start needs the same): ol_residual
# keeps the shapes but makes the output a correction of the online linear model; the rest (epochs, rate, ...) may differ
ARCHITECTURE = ("lstm_units", "dense_units", "residual", "linear_skip", "instance_norm", "members", "ol_residual")
_MISSING = ("404", "NoSuchKey", "NotFound", "403", "AccessDenied")


def weights_to_bytes(weights: list) -> bytes:
    """Keras ``get_weights()`` as ``.npz`` bytes (float32)."""
    buf = io.BytesIO()
    np.savez(buf, *(np.asarray(w, dtype=np.float32) for w in weights))
    return buf.getvalue()


def weights_from_bytes(data: bytes) -> list[np.ndarray]:
    """The weights in ``.npz`` bytes (no pickle); ValueError when they are not such a file."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [npz[f"arr_{i}"] for i in range(len(npz.files))]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"{WEIGHTS_FILE} is not readable: {exc}") from None


def describe_weights(data: bytes, weights: list) -> dict[str, Any]:
    """The manifest's ``extra["weights"]``."""
    return {"file": WEIGHTS_FILE, "sha256": sha256_bytes(data), "bytes": len(data), "arrays": len(weights)}


@dataclass(frozen=True)
class BatchStart:
    """A batch model to fine-tune from: its weights, its scaler and where it came from."""

    weights: list
    scaler: Scaler
    version: str
    source: str

    def describe(self) -> dict[str, Any]:
        return {"from": "batch", "version": self.version, "source": self.source}


def read_manifest(load: Callable[[], Manifest], where: str) -> Manifest:
    """The batch manifest ``load`` reads; ValueError when it is not JSON or not a model manifest ({}, [], ...)."""
    try:
        manifest = load()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON but not a manifest: KeyError, ...
        raise ValueError(f"{where} is not a model manifest: {type(exc).__name__}: {exc}") from None
    if not isinstance(manifest.extra, dict) or not isinstance(manifest.hyperparameters, dict):
        raise ValueError(f"{where} is not a model manifest: its extra or hyperparameters is not an object")
    if not isinstance(manifest.extra.get(WEIGHTS_KEY, {}), dict):
        raise ValueError(f"{where} is not a model manifest: its extra.{WEIGHTS_KEY} is not an object")
    return manifest


def mismatch(manifest: Manifest, spec: FeatureSpec, cfg: Any) -> str:
    """Why a speed model of ``spec`` and ``cfg`` cannot start from this batch model ('' when it can)."""
    from training_job.model import _LEGACY_VALUES  # noqa: PLC0415

    if WEIGHTS_KEY not in manifest.extra:
        return f"batch model {manifest.version} was published without its weights ({WEIGHTS_FILE})"
    if manifest.feature_spec.to_dict() != spec.to_dict():
        return (
            f"the window's feature spec {spec.to_dict()} is not batch model {manifest.version}'s "
            f"{manifest.feature_spec.to_dict()}"
        )
    ours = cfg.to_dict()
    theirs = manifest.hyperparameters or {}
    for name in ARCHITECTURE:
        mine, other = ours.get(name, _LEGACY_VALUES.get(name)), theirs.get(name, _LEGACY_VALUES.get(name))
        if mine != other:
            return f"the speed model's {name} {mine} is not batch model {manifest.version}'s {other}"
    return ""


def load_start(manifest: Manifest, weights_data: bytes, source: str) -> BatchStart:
    """A :class:`BatchStart` from a batch manifest and its ``weights.npz`` bytes (checked against the manifest)."""
    meta = manifest.extra.get(WEIGHTS_KEY) or {}
    if not meta.get("sha256"):
        raise ValueError(f"batch model {manifest.version}'s manifest has no sha256 for its {WEIGHTS_FILE}")
    if meta["sha256"] != sha256_bytes(weights_data):
        raise ValueError(f"{source}/{WEIGHTS_FILE} does not match its manifest's sha256")
    weights = weights_from_bytes(weights_data)
    if meta.get("arrays") is not None and meta["arrays"] != len(weights):
        raise ValueError(f"{source}/{WEIGHTS_FILE} holds {len(weights)} arrays, its manifest says {meta['arrays']}")
    return BatchStart(weights=weights, scaler=manifest.scaler, version=manifest.version, source=source)


class BatchModelSource:
    """Where the speed worker finds the batch model (``latest`` in ``store``, a folder, or ``none``); cached.

    :meth:`start_for` gives (the start or None, the manifest's ``extra["fine_tune"]``). It never raises for a
    batch model that is missing, unreadable or does not fit (the speed model is then trained from scratch, as
    before); S3 errors other than a missing or forbidden key (the endpoint is down) propagate, so the window is
    retried rather than trained from scratch by accident.
    """

    def __init__(self, where: str, store: Any = None, name: str = BATCH_MODEL_NAME) -> None:
        self.where = (where or NONE).strip()
        self.store, self.name = store, name
        self._cached: tuple[str, Manifest, bytes] | None = None  # (version, manifest, weights bytes)

    @property
    def enabled(self) -> bool:
        return self.where.lower() != NONE

    def start_for(self, spec: FeatureSpec, cfg: Any) -> tuple[BatchStart | None, dict[str, Any]]:
        if not self.enabled:
            return None, {"from": "scratch", "reason": "fine-tuning is off (--batch-model none)"}
        try:
            found = self._find()
        except ValueError as exc:
            return self._scratch(str(exc))
        if isinstance(found, str):
            return self._scratch(found)
        manifest, data, source = found
        why = mismatch(manifest, spec, cfg)
        if why:
            return self._scratch(why)
        try:
            start = load_start(manifest, data, source)
        except ValueError as exc:
            return self._scratch(str(exc))
        return start, start.describe()

    @staticmethod
    def _scratch(reason: str) -> tuple[None, dict[str, Any]]:
        log.warning("speed model trained from scratch: %s", reason)
        return None, {"from": "scratch", "reason": reason}

    def _find(self) -> tuple[Manifest, bytes, str] | str:
        """(manifest, weights bytes, source) of the batch model, or why there is none."""
        if self.where.lower() == LATEST:
            return self._from_store()
        folder = Path(self.where)
        if not (folder / "manifest.json").is_file():
            return f"no batch model in {folder} (no manifest.json)"
        path = folder / "manifest.json"
        manifest = read_manifest(lambda: Manifest.from_json(path.read_bytes()), str(path))
        if not (folder / WEIGHTS_FILE).is_file():
            return f"batch model {manifest.version} in {folder} has no {WEIGHTS_FILE}"
        return manifest, (folder / WEIGHTS_FILE).read_bytes(), str(folder)

    def _from_store(self) -> tuple[Manifest, bytes, str] | str:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        if self.store is None:
            return "no models bucket to find the batch model in (--bucket) and no --batch-model folder"
        where = f"s3://{self.store.bucket}/{self.store.latest_key(self.name)}"
        try:
            pointer = self.store.latest(self.name)
            if pointer is None:
                return f"no batch model published ({where} does not exist)"
            if self._cached is not None and self._cached[0] == pointer.version:
                return self._cached[1], self._cached[2], self._folder_uri(pointer.version)
            manifest = read_manifest(
                lambda: self.store.published_manifest(self.name, pointer.version),
                f"batch model {pointer.version}'s manifest.json",
            )
            if WEIGHTS_KEY not in manifest.extra:
                return f"batch model {manifest.version} was published without its weights ({WEIGHTS_FILE})"
            key = f"{self.store.folder(self.name, pointer.version)}/{WEIGHTS_FILE}"
            data = self.store.s3.get_object(Bucket=self.store.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return f"cannot read the batch model via {where}: {code}"
            raise
        self._cached = (pointer.version, manifest, data)
        return manifest, data, self._folder_uri(pointer.version)

    def _folder_uri(self, version: str) -> str:
        return f"s3://{self.store.bucket}/{model_folder(self.name, version, self.store.prefix)}"
