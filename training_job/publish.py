"""Publishing models to S3: immutable versions, manifest last, then the ``LATEST`` pointer.

Layout in the models bucket (``prefix`` defaults to ``models``; the keys and the pointer are
:mod:`model_contract.layout`'s: :class:`~model_contract.layout.LatestPointer` is the only writer
of ``LATEST``, :func:`~model_contract.layout.parse_latest` its only parser)::

    models/<name>/<version>/model.tflite     # written first
    models/<name>/<version>/manifest.json    # written second: its creation is the "published" event
    models/<name>/LATEST                     # written last: {"name", "version", "manifest_key", ...}
    rejected/<name>/<version>/model.tflite + manifest.json   # refused by the guardrail/parity check

A version is content-derived, so publishing a version whose ``manifest.json`` already
exists is a no-op (the version is immutable), except that ``LATEST`` is repaired if it is
missing or points at a model of an older window (a previous attempt may have died between
``manifest.json`` and ``LATEST``). ``LATEST`` names the current model of a name: the
guardrail compares a candidate against it, and tools read it instead of listing the bucket.
The trainer is the only writer of ``LATEST``.

``LATEST`` only moves forward: it names the model of the window with the latest
``last_ts`` (recorded in the pointer as ``window_last_ts``). A model of an older window
published later (two workers, out-of-order notices) is published under its version but
does not take ``LATEST``. The pointer is replaced with a conditional PUT (``If-None-Match:
*`` when there is none, ``If-Match: <etag read>`` otherwise), so of two concurrent writers
the slower one re-reads, compares again and backs off if the other one's window is newer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from model_contract import Manifest, sha256_bytes
from model_contract.layout import (
    MODELS_PREFIX,
    REJECTED_PREFIX,
    LatestPointer,
    latest_key,
    manifest_key,
    model_folder,
    model_key,
    parse_latest,
)
from training_job.windows import parse_timestamp

log = logging.getLogger(__name__)

_MISSING = ("404", "NoSuchKey", "NotFound")
_CONFLICT = ("412", "PreconditionFailed", "409", "ConditionalRequestConflict")
_UNSUPPORTED = ("501", "NotImplemented")
LATEST_ATTEMPTS = 8


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ts(text: Any) -> datetime | None:
    try:
        return parse_timestamp(str(text)) if text else None
    except ValueError:
        return None


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
    latest: str = ""  # what happened to LATEST: updated, repaired, current, kept ("" = not touched)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "latest": self.latest,
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

    def __init__(
        self, s3: Any, bucket: str, prefix: str = MODELS_PREFIX, rejected_prefix: str = REJECTED_PREFIX
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.rejected_prefix = rejected_prefix.strip("/")
        self._bare_etag = False  # learnt: the endpoint matches If-Match against the unquoted ETag
        self._unconditional = False  # learnt: the endpoint has no conditional PUT

    def folder(self, name: str, version: str, rejected: bool = False) -> str:
        return model_folder(name, version, self.rejected_prefix if rejected else self.prefix)

    def latest_key(self, name: str) -> str:
        return latest_key(name, self.prefix)

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise

    def is_published(self, name: str, version: str) -> bool:
        return self._exists(manifest_key(name, version, self.prefix))

    def _result(self, status: str, manifest: Manifest, rejected: bool = False, reason: str = "") -> PublishResult:
        prefix = self.rejected_prefix if rejected else self.prefix
        return PublishResult(
            status=status,
            name=manifest.name,
            version=manifest.version,
            bucket=self.bucket,
            model_key=model_key(manifest.name, manifest.version, prefix),
            manifest_key=manifest_key(manifest.name, manifest.version, prefix),
            sha256=manifest.sha256,
            reason=reason,
        )

    def published_manifest(self, name: str, version: str) -> Manifest:
        key = manifest_key(name, version, self.prefix)
        return Manifest.from_json(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def published_result(self, name: str, version: str, update_latest: bool = True) -> PublishResult:
        """The result for an already-published version (reads its manifest).

        With ``update_latest`` (default), ``LATEST`` is repaired if it is missing or names a
        model of an older window: the attempt that published this version may have died
        between ``manifest.json`` and ``LATEST``.
        """
        manifest = self.published_manifest(name, version)
        result = self._result("exists", manifest, reason="this version is already published (versions are immutable)")
        if update_latest:
            moved = self.advance_latest(manifest, result, move_on_tie=False)
            result.latest = "repaired" if moved == "updated" else moved
        return result

    def publish(
        self, tflite: bytes, manifest: Manifest, update_latest: bool = True, files: dict[str, bytes] | None = None
    ) -> PublishResult:
        """model.tflite (and ``files`` beside it: a batch model's weights.npz), then manifest.json, then LATEST
        (forward only); a no-op if the version exists."""
        if sha256_bytes(tflite) != manifest.sha256:
            raise ValueError("manifest sha256 does not match the model bytes")
        if self.is_published(manifest.name, manifest.version):
            log.info("models/%s/%s already published: nothing to do", manifest.name, manifest.version)
            return self.published_result(manifest.name, manifest.version, update_latest=update_latest)
        result = self._result("published", manifest)
        self.s3.put_object(
            Bucket=self.bucket, Key=result.model_key, Body=tflite, ContentType="application/octet-stream"
        )
        for name, data in (files or {}).items():
            key = f"{self.folder(manifest.name, manifest.version)}/{name}"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/octet-stream")
        self.s3.put_object(
            Bucket=self.bucket,
            Key=result.manifest_key,
            Body=manifest.to_json().encode(),
            ContentType="application/json",
        )
        log.info("published s3://%s/%s/", self.bucket, self.folder(manifest.name, manifest.version))
        if update_latest:
            result.latest = self.advance_latest(manifest, result, move_on_tie=True)
        return result

    # -- LATEST: forward only ----------------------------------------------------------------

    def _read_latest(self, name: str) -> tuple[LatestPointer | None, str | None]:
        """(pointer, ETag) of ``LATEST``, or (None, None) when there is none."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.latest_key(name))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None, None
            raise
        return parse_latest(obj["Body"].read(), name=name, prefix=self.prefix), obj.get("ETag")

    def _pointer_last_ts(self, pointer: LatestPointer) -> datetime | None:
        """The ``last_ts`` of the window behind a pointer (older pointers: from their manifest)."""
        if pointer.window_last_ts:
            return _ts(pointer.window_last_ts)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=pointer.manifest_key)["Body"].read()
            return _ts(Manifest.from_json(body).window.get("last_ts"))
        except (ClientError, ValueError, KeyError):
            return None

    def _put_latest(self, key: str, body: bytes, etag: str | None) -> None:
        """Conditional PUT: create-only without ``etag``, else replace only that object."""
        extra: dict[str, str] = {}
        if self._unconditional:
            pass
        elif etag is None:
            extra["IfNoneMatch"] = "*"
        else:  # RFC 9110 quotes ETags; Ceph radosgw (pacific) only matches the bare value
            extra["IfMatch"] = etag.strip('"') if self._bare_etag else etag
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **extra)

    def advance_latest(self, manifest: Manifest, result: PublishResult, move_on_tie: bool = True) -> str:
        """Point ``LATEST`` at ``manifest`` unless it names a model of a newer window.

        Returns ``updated``, ``current`` (already there) or ``kept`` (``LATEST`` names a newer
        window, or the same ``last_ts`` and not ``move_on_tie``). Read, compare, conditional
        PUT; a precondition failure means another writer got there first: read and compare again.
        """
        key = self.latest_key(manifest.name)
        ours = _ts(manifest.window.get("last_ts"))
        body = LatestPointer(
            name=manifest.name,
            version=manifest.version,
            sha256=manifest.sha256,
            kind=manifest.kind,
            model_key=result.model_key,
            manifest_key=result.manifest_key,
            window_last_ts=manifest.window.get("last_ts", ""),
            published_at=utc_now(),
        ).to_json()
        last_etag: str | None = None
        for _attempt in range(LATEST_ATTEMPTS):
            pointer, etag = self._read_latest(manifest.name)
            if pointer is not None:
                if pointer.version == manifest.version:
                    return "current"
                theirs = self._pointer_last_ts(pointer)
                if ours is not None and theirs is not None:
                    newer = ours > theirs or (ours == theirs and move_on_tie)
                else:  # cannot compare (no timestamps): a fresh publish wins, a repair does not
                    newer = move_on_tie
                if not newer:
                    log.warning(
                        "%s/%s (window ending %s): LATEST stays at %s (window ending %s)",
                        manifest.name,
                        manifest.version,
                        manifest.window.get("last_ts", "?"),
                        pointer.version,
                        theirs.isoformat() if theirs else "?",
                    )
                    return "kept"
            if etag is not None and etag == last_etag and not self._bare_etag:
                self._bare_etag = True  # the same object failed If-Match: the server wants the bare ETag
            last_etag = etag
            try:
                self._put_latest(key, body, etag)
            except ClientError as exc:
                code = _code(exc)
                if code in _CONFLICT:
                    log.info("LATEST of %s changed while updating it: reading it again", manifest.name)
                    continue
                if code in _UNSUPPORTED and not self._unconditional:
                    log.warning("the S3 endpoint has no conditional PUT: LATEST is written read-compare-write")
                    self._unconditional = True
                    continue
                raise
            if self._unconditional:  # no atomicity: re-check what won
                pointer, _ = self._read_latest(manifest.name)
                if pointer is None or pointer.version != manifest.version:
                    continue
            log.info("LATEST of %s -> %s", manifest.name, manifest.version)
            return "updated"
        raise RuntimeError(f"LATEST of {manifest.name} kept changing; gave up after {LATEST_ATTEMPTS} attempts")

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

    def latest(self, name: str) -> LatestPointer | None:
        """The ``LATEST`` pointer of ``name``, or None if nothing was published yet."""
        return self._read_latest(name)[0]

    def current(self, name: str) -> CurrentModel | None:
        """The current model of ``name`` (via ``LATEST``), checksum-verified; None if there is none."""
        pointer = self.latest(name)
        if pointer is None:
            return None
        body = self.s3.get_object(Bucket=self.bucket, Key=pointer.manifest_key)["Body"].read()
        manifest = Manifest.from_json(body)
        tflite = self.s3.get_object(Bucket=self.bucket, Key=pointer.model_key)["Body"].read()
        if sha256_bytes(tflite) != manifest.sha256:
            raise RuntimeError(
                f"current model s3://{self.bucket}/{pointer.model_key} does not match its manifest's sha256"
            )
        return CurrentModel(manifest=manifest, tflite=tflite)
