"""Published models in the stack's models bucket: list, show, and point ``LATEST`` at an earlier (or any
published) version through the normal announcement path.

Layout (``training_job.publish``): ``models/<name>/<version>/{model.tflite,manifest.json}``,
``models/<name>/LATEST``, ``rejected/<name>/<version>/...``. Writing ``LATEST`` is what announces a
model: the stack's EventBridge rule calls the ``model_published`` Lambda, which publishes the
version ``LATEST`` names on ``hybridstream/models/<name>/published``, and the edge fetches and
verifies it (sha256, manifest, feature spec) like any other model.

``LATEST`` normally only moves forward (to the model of the newest window). ``promote`` to an older
window and ``rollback`` override that rule explicitly: the pointer gets an ``override`` record
(action, the version it replaces, the version it goes back to, reason, who, when), the override is
logged as a warning and kept as an audit object ``audit/models/<name>/<time>-<action>.json``. The
pointer keeps the replaced model's ``window_last_ts`` when that is newer, so a redelivered notice of
the replaced model cannot take ``LATEST`` back; a model of a genuinely newer window does.

The edge refuses a model whose manifest is older than the one it serves, so going back to an earlier
model publishes its bytes again as a new version created now (``extra.rerelease``: of, replaces,
reason, by, at): same model, feature spec, window and holdout scores; the edge verifies it like any
other model and swaps it in.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hybridstream.fleet.session import FleetError, error_code

log = logging.getLogger("hybridstream.models")

NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
MODELS, REJECTED, AUDIT = "models", "rejected", "audit/models"


@dataclass
class Version:
    """One published version and what its manifest says."""

    name: str
    version: str
    manifest: dict[str, Any]

    @property
    def window_last_ts(self) -> str:
        return str((self.manifest.get("window") or {}).get("last_ts") or "")

    @property
    def sort_key(self) -> tuple[datetime, datetime]:
        return _when(self.window_last_ts), _when(self.manifest.get("created_at"))

    @property
    def rerelease_of(self) -> str:
        """The version this one re-releases (``models rollback``/``promote``), '' for an original."""
        return str(((self.manifest.get("extra") or {}).get("rerelease") or {}).get("of") or "")

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "version": self.version,
            "kind": m.get("kind", ""),
            "created_at": m.get("created_at", ""),
            "window": m.get("window") or {},
            "metrics": m.get("metrics") or {},
            "training_seconds": m.get("training_seconds"),
            "guardrail": (m.get("extra") or {}).get("guardrail"),
            "rerelease_of": self.rerelease_of,
            "sha256": m.get("sha256", ""),
        }


def _check_name(name: str, what: str = "model name") -> None:
    if not NAME_RE.fullmatch(name or ""):
        raise FleetError(f"{what} {name!r} must be letters, digits, '.', '_' or '-'")


class ModelRegistry:
    """Read and repoint models in one bucket (``s3``: a boto3 S3 client)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    # -- reading ----------------------------------------------------------------------------
    def _folders(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            out += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return out

    def _json(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None, None
            raise
        try:
            body = json.loads(obj["Body"].read())
        except ValueError as exc:
            raise FleetError(f"s3://{self.bucket}/{key} is not JSON: {exc}") from exc
        return (body if isinstance(body, dict) else None), obj.get("ETag")

    def names(self) -> list[str]:
        return sorted(self._folders(f"{MODELS}/"))

    def latest(self, name: str) -> dict[str, Any] | None:
        return self._pointer(name)[0]

    def _pointer(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """(LATEST as a dict, its ETag), read with the contract's one parser."""
        from model_contract.layout import latest_key, parse_latest

        body, etag = self._json(latest_key(name))
        if body is None:
            return None, None
        try:
            return parse_latest(body, name=name).to_dict(), etag
        except ValueError as exc:
            raise FleetError(f"s3://{self.bucket}/{latest_key(name)} is not a valid pointer: {exc}") from exc

    def versions(self, name: str, rejected: bool = False) -> list[Version]:
        """Every version of ``name`` with a manifest, oldest window first."""
        root = REJECTED if rejected else MODELS
        out = []
        for version in self._folders(f"{root}/{name}/"):
            manifest, _ = self._json(f"{root}/{name}/{version}/manifest.json")
            if manifest is not None:
                out.append(Version(name, version, manifest))
        return sorted(out, key=lambda v: v.sort_key)

    def require(self, name: str) -> list[Version]:
        _check_name(name)
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise FleetError(f"no published model {name} in s3://{self.bucket}/{MODELS}/ (models: {known})")
        return versions

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.names():
            versions = self.versions(name)
            pointer = self.latest(name) or {}
            current = next((v for v in versions if v.version == pointer.get("version")), None)
            rows.append(
                {
                    "name": name,
                    "current": pointer.get("version"),
                    "kind": (current.manifest.get("kind") if current else "") or pointer.get("kind", ""),
                    "metrics": current.manifest.get("metrics", {}) if current else {},
                    "versions": len(versions),
                    "published_at": pointer.get("published_at", ""),
                    "override": pointer.get("override"),
                }
            )
        return rows

    def show(self, name: str, version: str | None = None) -> dict[str, Any]:
        versions = self.require(name)
        pointer = self.latest(name)
        if version is not None:
            _check_name(version, "version")
            found = next((v for v in versions if v.version == version), None)
            if found is None:
                raise FleetError(f"{name} has no published version {version} (versions: {self._list(versions)})")
            return {"name": name, "current": (pointer or {}).get("version") == version, "manifest": found.manifest}
        return {
            "name": name,
            "latest": pointer,
            "versions": [
                v.summary() | {"current": v.version == (pointer or {}).get("version")} for v in reversed(versions)
            ],
            "rejected": [
                v.summary() | {"reason": ((v.manifest.get("extra") or {}).get("guardrail") or {}).get("reason", "")}
                for v in reversed(self.versions(name, rejected=True))
            ],
        }

    @staticmethod
    def _list(versions: list[Version]) -> str:
        return ", ".join(v.version for v in reversed(versions[-8:])) + (" ..." if len(versions) > 8 else "")

    # -- repointing -------------------------------------------------------------------------
    def _model_bytes(self, target: Version) -> bytes:
        """The model bytes, checked against the manifest's sha256 (the edge checks this again)."""
        import hashlib

        from botocore.exceptions import ClientError

        key = f"{MODELS}/{target.name}/{target.version}/model.tflite"
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise FleetError(f"s3://{self.bucket}/{key} is missing: {target.version} cannot serve") from exc
            raise
        if hashlib.sha256(body).hexdigest() != target.manifest.get("sha256"):
            raise FleetError(f"s3://{self.bucket}/{key} does not match its manifest's sha256: refusing to point at it")
        if target.manifest.get("name") not in (None, target.name) or target.manifest.get("version") not in (
            None,
            target.version,
        ):
            raise FleetError(f"the manifest of {target.name}/{target.version} names another model")
        return body

    def _current(self, versions: list[Version], pointer: dict[str, Any] | None) -> Version | None:
        return next((v for v in versions if pointer and v.version == pointer.get("version")), None)

    def _original(self, versions: list[Version], version: Version) -> Version:
        """A re-release's original version (itself for an original)."""
        of = version.rerelease_of
        return next((v for v in versions if v.version == of), version) if of else version

    def previous(self, name: str) -> Version:
        """The original version before the current one (by window, then creation time), other bytes."""
        versions = self.require(name)
        current = self._current(versions, self.latest(name))
        if current is None:
            raise FleetError(f"LATEST of {name} names no published version: pass --version")
        base = self._original(versions, current)
        older = [
            v
            for v in versions
            if not v.rerelease_of
            and v.sort_key < base.sort_key
            and v.manifest.get("sha256") != current.manifest.get("sha256")
        ]
        if not older:
            raise FleetError(f"{name} has no version older than the current {base.version}")
        return older[-1]

    def _rerelease(self, target: Version, *, replaces: str, reason: str, by: str, at: str) -> Version:
        """Publish ``target``'s model again as a new version created now (manifest ``extra.rerelease``).

        The edge never swaps in a model whose manifest is older than the one it serves (a late or
        redelivered notice must not go back), so a way back is a new release of the earlier bytes:
        same model, feature spec, window and holdout scores, a fresh ``created_at``. Written by the
        trainer's own ``ModelStore`` (model, then manifest; ``LATEST`` is ours)."""
        from model_contract import Manifest, content_version
        from training_job.publish import ModelStore

        tflite = self._model_bytes(target)
        manifest = Manifest.from_json(json.dumps(target.manifest))
        manifest.version = content_version(target.name, target.version, "rerelease", at)
        manifest.created_at = at
        manifest.extra = {
            **(manifest.extra or {}),
            "rerelease": {"of": target.version, "replaces": replaces, "reason": reason, "by": by, "at": at},
        }
        ModelStore(self.s3, self.bucket).publish(tflite, manifest, update_latest=False)
        return Version(target.name, manifest.version, manifest.to_dict())

    def point(
        self, name: str, version: str, *, action: str, reason: str, by: str, override: bool, now: datetime | None = None
    ) -> dict[str, Any]:
        """Make ``version`` of ``name`` the one the devices serve (announced by the stack as usual).

        - target of an older window than ``LATEST``'s: needs ``override`` (logged, recorded in the
          pointer and in an audit object), the forward-only rule's explicit exception;
        - target created before the current model: published again as a new version created now
          (:meth:`_rerelease`), since the edge refuses older models;
        - otherwise ``LATEST`` simply moves to it.

        Returns {"status": current|updated, "pointer", "served" (the version LATEST names), "audit"}.
        """
        from botocore.exceptions import ClientError

        from model_contract.layout import LatestPointer, latest_key

        versions = self.require(name)
        _check_name(version, "version")
        target = next((v for v in versions if v.version == version), None)
        if target is None:
            raise FleetError(f"{name} has no published version {version} (versions: {self._list(versions)})")
        if target.rerelease_of:
            target = self._original(versions, target)
        pointer, etag = self._pointer(name)
        current = self._current(versions, pointer)
        if current is not None and current.manifest.get("sha256") == target.manifest.get("sha256"):
            return {"status": "current", "pointer": pointer, "served": current.version, "audit": None}
        pointer_ts = str((pointer or {}).get("window_last_ts") or "")
        backwards = pointer is not None and _when(target.window_last_ts) < _when(pointer_ts)
        if backwards and not override:
            raise FleetError(
                f"{target.version} is a model of an older window than the current {pointer.get('version')}: "
                "LATEST only moves forward; use `hybridstream models rollback` (or promote --override) "
                "to override that, explicitly"
            )
        at = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        older_model = current is not None and _when(target.manifest.get("created_at")) < _when(
            current.manifest.get("created_at")
        )
        if older_model:
            served = self._rerelease(target, replaces=current.version, reason=reason, by=by, at=at)
        else:
            self._model_bytes(target)
            served = target
        record = None
        if backwards:
            record = {
                "action": action,
                "from": pointer.get("version"),
                "to": target.version,
                "reason": reason,
                "by": by,
                "at": at,
                "model_window_last_ts": target.window_last_ts,
            }
        new = LatestPointer.for_model(
            name,
            served.version,
            sha256=str(served.manifest.get("sha256", "")),
            kind=str(served.manifest.get("kind", "")),
            window_last_ts=max(target.window_last_ts, pointer_ts) if backwards else target.window_last_ts,
            published_at=at,
            override=record,
        )
        extra = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=latest_key(name), Body=new.to_json(), ContentType="application/json", **extra
            )
        except ClientError as exc:
            if error_code(exc) in ("412", "PreconditionFailed", "409", "ConditionalRequestConflict"):
                raise FleetError(
                    f"LATEST of {name} changed while repointing it (a new model?): check and retry"
                ) from exc
            raise
        audit = None
        if backwards:
            log.warning(
                "LATEST override: %s %s -> %s (%s, served as %s) by %s: %s",
                name,
                pointer.get("version"),
                target.version,
                action,
                served.version,
                by,
                reason,
            )
            audit = f"{AUDIT}/{name}/{at[:19].replace(':', '')}Z-{action}.json"
            body = json.dumps({"before": pointer, "after": new.to_dict()}, indent=2).encode()
            self.s3.put_object(Bucket=self.bucket, Key=audit, Body=body, ContentType="application/json")
        return {"status": "updated", "pointer": new.to_dict(), "served": served.version, "audit": audit}


def _when(text: Any) -> datetime:
    """An ISO-8601 timestamp (naive = UTC); the epoch when absent or unreadable (sorts first)."""
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
