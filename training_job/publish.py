"""Publishing models to S3: immutable versions, manifest last, then the ``LATEST`` pointer.

Layout in the models bucket (``prefix`` defaults to ``models``)::

    models/<name>/<version>/model.tflite     # written first
    models/<name>/<version>/manifest.json    # written second: its creation is the "published" event
    models/<name>/LATEST                     # written last: {"name", "version", "manifest_key", ...}
    rejected/<name>/<version>/model.tflite + manifest.json   # refused by the guardrail/parity check

A version is content-derived, so publishing a version whose ``manifest.json`` already
exists is a no-op (the version is immutable). ``LATEST`` names the current model of a
name: the guardrail compares a candidate against it, and tools read it instead of
listing the bucket. The trainer is the only writer of ``LATEST``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from model_contract import Manifest, sha256_bytes

log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PublishResult:
    """What happened to a model: ``published``, ``exists`` (no-op) or ``rejected``."""

    status: str
    name: str
    version: str
    bucket: str
    model_key: str
    manifest_key: str
    sha256: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "s3_uri": f"s3://{self.bucket}/{self.model_key}",
            "manifest_uri": f"s3://{self.bucket}/{self.manifest_key}",
            "reason": self.reason,
        }


@dataclass
class CurrentModel:
    """The model ``LATEST`` points to, downloaded and checked."""

    manifest: Manifest
    tflite: bytes


class ModelStore:
    """One models bucket (any S3-compatible endpoint)."""

    def __init__(self, s3: Any, bucket: str, prefix: str = "models", rejected_prefix: str = "rejected") -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.rejected_prefix = rejected_prefix.strip("/")

    def folder(self, name: str, version: str, rejected: bool = False) -> str:
        return f"{self.rejected_prefix if rejected else self.prefix}/{name}/{version}"

    def latest_key(self, name: str) -> str:
        return f"{self.prefix}/{name}/LATEST"

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def is_published(self, name: str, version: str) -> bool:
        return self._exists(f"{self.folder(name, version)}/manifest.json")

    def _result(self, status: str, manifest: Manifest, rejected: bool = False, reason: str = "") -> PublishResult:
        folder = self.folder(manifest.name, manifest.version, rejected)
        return PublishResult(
            status=status,
            name=manifest.name,
            version=manifest.version,
            bucket=self.bucket,
            model_key=f"{folder}/model.tflite",
            manifest_key=f"{folder}/manifest.json",
            sha256=manifest.sha256,
            reason=reason,
        )

    def published_result(self, name: str, version: str) -> PublishResult:
        """The result for an already-published version (reads its manifest)."""
        key = f"{self.folder(name, version)}/manifest.json"
        manifest = Manifest.from_json(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        return self._result("exists", manifest, reason="this version is already published (versions are immutable)")

    def publish(self, tflite: bytes, manifest: Manifest, update_latest: bool = True) -> PublishResult:
        """model.tflite, then manifest.json, then LATEST; a no-op if the version already exists."""
        if sha256_bytes(tflite) != manifest.sha256:
            raise ValueError("manifest sha256 does not match the model bytes")
        if self.is_published(manifest.name, manifest.version):
            log.info("models/%s/%s already published: nothing to do", manifest.name, manifest.version)
            return self.published_result(manifest.name, manifest.version)
        result = self._result("published", manifest)
        self.s3.put_object(
            Bucket=self.bucket, Key=result.model_key, Body=tflite, ContentType="application/octet-stream"
        )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=result.manifest_key,
            Body=manifest.to_json().encode(),
            ContentType="application/json",
        )
        if update_latest:
            pointer = {
                "name": manifest.name,
                "version": manifest.version,
                "sha256": manifest.sha256,
                "kind": manifest.kind,
                "model_key": result.model_key,
                "manifest_key": result.manifest_key,
                "published_at": utc_now(),
            }
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.latest_key(manifest.name),
                Body=json.dumps(pointer, indent=2).encode(),
                ContentType="application/json",
            )
        log.info("published s3://%s/%s/", self.bucket, self.folder(manifest.name, manifest.version))
        return result

    def reject(self, tflite: bytes, manifest: Manifest, reason: str) -> PublishResult:
        """Keep a refused candidate under the rejected prefix (model first, manifest last)."""
        result = self._result("rejected", manifest, rejected=True, reason=reason)
        self.s3.put_object(Bucket=self.bucket, Key=result.model_key, Body=tflite)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=result.manifest_key,
            Body=manifest.to_json().encode(),
            ContentType="application/json",
        )
        where = f"s3://{self.bucket}/{self.folder(manifest.name, manifest.version, rejected=True)}/"
        log.warning("refused %s/%s (%s): kept at %s", manifest.name, manifest.version, reason, where)
        return result

    def latest(self, name: str) -> dict[str, Any] | None:
        """The ``LATEST`` pointer of ``name``, or None if nothing was published yet."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.latest_key(name))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return json.loads(body)

    def current(self, name: str) -> CurrentModel | None:
        """The current model of ``name`` (via ``LATEST``), checksum-verified; None if there is none."""
        pointer = self.latest(name)
        if pointer is None:
            return None
        manifest_key = pointer.get("manifest_key") or f"{self.folder(name, pointer['version'])}/manifest.json"
        manifest = Manifest.from_json(self.s3.get_object(Bucket=self.bucket, Key=manifest_key)["Body"].read())
        model_key = pointer.get("model_key") or manifest_key.rsplit("/", 1)[0] + "/model.tflite"
        tflite = self.s3.get_object(Bucket=self.bucket, Key=model_key)["Body"].read()
        if sha256_bytes(tflite) != manifest.sha256:
            raise RuntimeError(f"current model s3://{self.bucket}/{model_key} does not match its manifest's sha256")
        return CurrentModel(manifest=manifest, tflite=tflite)
