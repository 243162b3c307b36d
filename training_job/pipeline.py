"""One window (or history) -> one checked model: train, convert, parity, guardrail, publish.

Shared by ``hybridstream train window``, ``train pretrain``, the worker and the benchmark,
so every path applies the same checks in the same order:

1. version = hash(window content, feature spec, config, kind); already published -> no-op;
2. train (early stopping on the newest holdout), convert to builtin-op TFLite, parity check
   with the edge's runtime; parity above the tolerance -> refused;
3. speed models: guardrail against the current model (see :mod:`training_job.guardrail`);
4. publish (model.tflite, manifest.json, LATEST) or keep under ``rejected/``; optionally
   also write the files to a local folder. A batch model's Keras weights go beside it as
   ``weights.npz`` (before its manifest), so speed models can be fine-tuned from it
   (:mod:`training_job.fine_tune`).

A speed model may start from the batch model (``start``: its weights and scaler) and train on the
thing's last windows joined (:mod:`training_job.recent_windows`); both are inputs of its version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_contract import FeatureSpec, Manifest
from model_contract.features import calendar_columns
from training_job.fine_tune import (
    FINE_TUNE_KEY,
    WEIGHTS_FILE,
    WEIGHTS_KEY,
    BatchStart,
    describe_weights,
    weights_to_bytes,
)
from training_job.guardrail import DEFAULT_MARGIN, judge
from training_job.model import Cancel, TrainConfig, model_version, train_matrix
from training_job.publish import ModelStore, PublishResult, utc_now
from training_job.windows import Window

log = logging.getLogger(__name__)

DEFAULT_PARITY_TOLERANCE = 1e-4


@dataclass
class TrainOptions:
    """What to train and how strictly to check it."""

    name: str = "speed"
    kind: str = "speed"
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    cfg: TrainConfig = field(default_factory=TrainConfig)
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    guardrail: bool = True
    margin: float = DEFAULT_MARGIN
    # speed models (the worker): train on the thing's last K windows (training_job.recent_windows), starting from
    # the batch model ("latest" in the models bucket, a folder, or "none": training_job.fine_tune). The defaults
    # here are the behaviour before issue 17's fine-tune; the CLI's are 6 and "latest"
    speed_windows: int = 1
    batch_model: str = "none"
    batch_name: str = "batch"  # batch_model "latest": <prefix>/<batch_name>/LATEST


@dataclass
class Outcome:
    """``status``: published, exists (same version already there), rejected, or trained (no S3)."""

    status: str
    name: str
    version: str
    reason: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    published: PublishResult | None = None
    local_dir: str = ""
    seconds: float = 0.0
    model_bytes: int = 0

    def summary(self) -> dict[str, Any]:
        """One JSON-friendly line for logs and the CLI."""
        out: dict[str, Any] = {"status": self.status, "name": self.name, "version": self.version}
        if self.reason:
            out["reason"] = self.reason
        if self.published is not None:
            out.update({k: v for k, v in self.published.to_dict().items() if k not in ("status", "reason")})
        if self.local_dir:
            out["local_dir"] = self.local_dir
            if self.status != "rejected":  # the folder to copy (model.tflite + manifest.json): absolute
                out["model_dir"] = str(Path(self.local_dir).resolve())
        if self.manifest:
            out["metrics"] = self.manifest.get("metrics", {})
            out["parity_max_abs_diff"] = self.manifest.get("parity_max_abs_diff")
            if "guardrail" in self.manifest.get("extra", {}):
                out["guardrail"] = self.manifest["extra"]["guardrail"]
        out["seconds"] = round(self.seconds, 3)
        return out


def _write_local(root: Path, folder: str, tflite: bytes, manifest_json: str, files: dict | None = None) -> Path:
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.tflite").write_bytes(tflite)
    for name, data in (files or {}).items():  # before the manifest, as on S3
        (target / name).write_bytes(data)
    (target / "manifest.json").write_text(manifest_json)
    return target


def _local_model(folder: Path) -> Path | None:
    """``folder`` if it holds a model.tflite matching its manifest.json (an earlier run's output), else None."""
    from model_contract import Manifest, sha256_bytes  # noqa: PLC0415

    try:
        manifest = Manifest.from_json((folder / "manifest.json").read_bytes())
        return folder if sha256_bytes((folder / "model.tflite").read_bytes()) == manifest.sha256 else None
    except (OSError, ValueError, KeyError):
        return None


def train_window(
    window: Window,
    opts: TrainOptions,
    store: ModelStore | None = None,
    out_dir: Path | None = None,
    cancel: Cancel | None = None,
    start: BatchStart | None = None,
    extra: dict | None = None,
) -> Outcome:
    """Train on a validated window and publish (or refuse) the result.

    ``start``: fine-tune from this batch model's weights and scaler; ``extra``: recorded in the manifest's
    ``extra`` (the worker's ``fine_tune`` and ``speed_windows``).
    """
    started = time.perf_counter()
    init, init_scaler = (start.weights, start.scaler) if start is not None else (None, None)
    version = model_version(window.matrix, opts.spec, opts.cfg, opts.kind, init, init_scaler)
    if store is not None and store.is_published(opts.name, version):
        result = store.published_result(opts.name, version)
        log.info("%s/%s: same window, same version, already published: nothing to do", opts.name, version)
        outcome = Outcome("exists", opts.name, version, result.reason, published=result)
        if out_dir is not None:  # the local copy is still wanted: take the published one
            tflite = store.s3.get_object(Bucket=store.bucket, Key=result.model_key)["Body"].read()
            manifest_json = store.s3.get_object(Bucket=store.bucket, Key=result.manifest_key)["Body"].read().decode()
            files = {}
            if WEIGHTS_KEY in Manifest.from_json(manifest_json).extra:  # its weights.npz too (speed models' start)
                key = f"{store.folder(opts.name, version)}/{WEIGHTS_FILE}"
                files[WEIGHTS_FILE] = store.s3.get_object(Bucket=store.bucket, Key=key)["Body"].read()
            folder = f"{opts.name}/{version}"
            outcome.local_dir = str(_write_local(Path(out_dir), folder, tflite, manifest_json, files))
        outcome.seconds = time.perf_counter() - started
        return outcome
    if store is None and out_dir is not None:
        local = _local_model(Path(out_dir) / opts.name / version)
        if local is not None:
            log.info("%s/%s: already in %s: nothing to do", opts.name, version, local)
            return Outcome(
                "exists",
                opts.name,
                version,
                f"this version is already in {local} (versions are immutable)",
                local_dir=str(local),
                seconds=time.perf_counter() - started,
            )
    span = f"{window.first_ts} .. {window.last_ts}"
    log.info("%s: training on %d rows (%s) from %s", opts.name, window.rows, span, window.source or "input")
    trained = train_matrix(
        window.matrix,
        opts.spec,
        opts.cfg,
        name=opts.name,
        kind=opts.kind,
        window=window.describe(),
        created_at=utc_now(),
        cancel=cancel,
        init_weights=init,
        scaler=init_scaler,
    )
    manifest = trained.manifest
    manifest.extra["parity_tolerance"] = opts.parity_tolerance
    manifest.extra.update(extra or {})
    files: dict[str, bytes] = {}
    if opts.kind == "batch" and trained.weights is not None:  # what a speed model's fine-tune starts from
        files[WEIGHTS_FILE] = weights_to_bytes(trained.weights)
        manifest.extra[WEIGHTS_KEY] = describe_weights(files[WEIGHTS_FILE], trained.weights)
    if start is not None:
        manifest.extra.setdefault(FINE_TUNE_KEY, start.describe())
    reason = ""
    if manifest.parity_max_abs_diff is None or manifest.parity_max_abs_diff > opts.parity_tolerance:
        reason = (
            f"parity: max |Keras - TFLite| {manifest.parity_max_abs_diff:.3g} > tolerance {opts.parity_tolerance:g}"
        )
    elif opts.guardrail and store is not None:
        current = store.current(opts.name)
        columns = {c: window.matrix[:, i] for i, c in enumerate(opts.spec.columns)}
        columns |= calendar_columns(window.epochs)  # each model's calendar features, whatever its spec has
        verdict = judge(
            trained.tflite,
            manifest,
            current.tflite if current else None,
            current.manifest if current else None,
            columns,
            holdout_rows=len(trained.y_holdout),
            margin=opts.margin,
        )
        manifest.extra["guardrail"] = verdict.to_dict()
        log.info("guardrail: %s (%s)", verdict.status, verdict.reason)
        if verdict.refused:
            reason = f"guardrail: {verdict.reason}"
    if reason:
        manifest.extra["refused"] = reason
    manifest_json = manifest.to_json()
    outcome = Outcome(
        "rejected" if reason else "trained",
        opts.name,
        version,
        reason,
        manifest=manifest.to_dict(),
        model_bytes=len(trained.tflite),
    )
    if out_dir is not None:
        folder = f"rejected/{opts.name}/{version}" if reason else f"{opts.name}/{version}"
        outcome.local_dir = str(_write_local(Path(out_dir), folder, trained.tflite, manifest_json, files))
    if store is not None:
        if reason:
            outcome.published = store.reject(trained.tflite, manifest, reason)
        else:
            outcome.published = store.publish(trained.tflite, manifest, files=files)
            outcome.status = outcome.published.status
    if reason:
        log.warning("%s/%s refused: %s", opts.name, version, reason)
    outcome.seconds = time.perf_counter() - started
    return outcome
