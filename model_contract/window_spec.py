"""The feature spec a window was recorded with, carried with the window from the edge to the trainer.

The edge builds its model inputs from the batch model's manifest (``feature_spec``) and refuses a
speed model of any other spec; the trainer cannot see that manifest (it ships to the Pi in a
Greengrass component). So the edge sends its spec with every window, and the speed model is
trained on exactly the spec the edge serves:

* S3 uploads: as the window object's user metadata, ``feature-spec`` (compact JSON, ASCII) and
  ``feature-spec-sha256`` (:func:`spec_digest`). S3 limits user metadata to 2 KB in all
  ("the user-defined metadata is limited to 2 KB in size", measured as the sum of the UTF-8 bytes
  of each key and value: https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html);
  a spec too large for it travels as its digest alone, and the trainer's own spec must match it;
* the local folder (``edge`` mode): a sidecar ``<window>.csv`` + :data:`SIDECAR_SUFFIX` with the
  spec's JSON, written before the window.

:func:`carried_spec` is the trainer's one reader: the window's spec when it carries one, else the
trainer's own (its flags) when it matches the digest or no digest came, else
:class:`SpecMismatch`. Stdlib only, besides the spec class.

>>> spec = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 24))
>>> meta = window_metadata(spec)
>>> sorted(meta), carried_spec(meta, FeatureSpec()) == (spec, "window")
(['feature-spec', 'feature-spec-sha256'], True)
>>> carried_spec({}, spec) == (spec, "trainer")
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from model_contract.features import FeatureSpec

SPEC_KEY = "feature-spec"
DIGEST_KEY = "feature-spec-sha256"
SIDECAR_SUFFIX = ".spec.json"  # <window>.csv.spec.json beside a window in the local folder
MAX_METADATA_BYTES = 2048  # S3's limit on all user-defined metadata (keys + values, UTF-8)
METADATA_RESERVE = 256  # left for the window's other metadata (sha256, rows)


class SpecMismatch(ValueError):
    """The window's spec cannot be known, or is not the one the trainer would use; the text says which."""


def spec_json(spec: FeatureSpec) -> str:
    """The spec's canonical JSON: compact, sorted keys, ASCII (S3 metadata values must be US-ASCII)."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def spec_digest(spec: FeatureSpec) -> str:
    """sha256 of :func:`spec_json`: equal specs, equal digests."""
    return hashlib.sha256(spec_json(spec).encode()).hexdigest()


def window_metadata(spec: FeatureSpec) -> dict[str, str]:
    """The S3 user metadata that carries ``spec``: the JSON when it fits the limit, the digest always.

    >>> wide = FeatureSpec(columns=tuple(f"sensor_{i:03d}" for i in range(200)), target="sensor_000")
    >>> sorted(window_metadata(wide))
    ['feature-spec-sha256']
    """
    text, digest = spec_json(spec), spec_digest(spec)
    out = {DIGEST_KEY: digest}
    used = len(DIGEST_KEY) + len(digest) + len(SPEC_KEY) + len(text)
    if used <= MAX_METADATA_BYTES - METADATA_RESERVE:
        out[SPEC_KEY] = text
    return out


def carried_spec(metadata: Mapping[str, str] | None, own: FeatureSpec) -> tuple[FeatureSpec, str]:
    """(the spec to train a window on, where it came from: ``window`` or ``trainer``).

    ``metadata``: the window's (S3 user metadata, keys in any case, or the sidecar's as
    :func:`window_metadata` gives them); ``own``: the trainer's spec from its flags. Raises
    :class:`SpecMismatch` when the carried spec is unreadable or disagrees with its digest, or when
    only a digest came and ``own`` does not match it.
    """
    meta = {str(k).lower(): v for k, v in (metadata or {}).items()}
    digest = str(meta.get(DIGEST_KEY) or "").strip().lower()
    text = meta.get(SPEC_KEY)
    if text:
        try:
            spec = FeatureSpec.from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise SpecMismatch(f"the window's {SPEC_KEY} is not a feature spec: {exc}") from None
        if digest and spec_digest(spec) != digest:
            raise SpecMismatch(f"the window's {SPEC_KEY} does not match its {DIGEST_KEY}")
        return spec, "window"
    if digest and spec_digest(own) != digest:
        raise SpecMismatch(
            f"the edge recorded this window with feature spec sha256 {digest[:12]}..., the trainer's flags give "
            f"{spec_digest(own)[:12]}... ({spec_json(own)}): give the trainer the batch model's spec (its "
            "--columns, --target, --lags, --horizon, --calendar), or the edge would refuse the model"
        )
    return own, "trainer"


def sidecar_metadata(text: str) -> dict[str, str]:
    """The metadata of a sidecar file's content (the spec's JSON); :class:`SpecMismatch` if it is not one."""
    try:
        spec = FeatureSpec.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise SpecMismatch(f"the window's spec sidecar is not a feature spec: {exc}") from None
    return {SPEC_KEY: spec_json(spec), DIGEST_KEY: spec_digest(spec)}
