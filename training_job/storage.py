"""S3 access for the trainer: one client factory (endpoint overridable) and input reading.

Credentials come from boto3's standard chain only (environment, shared config, instance
profile); nothing here takes keys. The endpoint is ``--s3-endpoint`` or
``HYBRIDSTREAM_S3_ENDPOINT`` (e.g. the local radosgw), else AWS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

ENDPOINT_ENV = "HYBRIDSTREAM_S3_ENDPOINT"


def s3_client(endpoint: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; path-style addressing when a custom endpoint is used."""
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    if endpoint:
        config = config.merge(Config(s3={"addressing_style": "path"}))
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # a session of its own: boto3's default session caches the first credentials it resolved
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key).

    >>> parse_s3_uri("s3://b/windows/pi-1/2017/01/14/w.csv")
    ('b', 'windows/pi-1/2017/01/14/w.csv')
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


def read_input(location: str, s3: Any | None = None) -> bytes:
    """The bytes of a local path, ``file://`` URL or ``s3://`` URI."""
    if location.startswith("s3://"):
        bucket, key = parse_s3_uri(location)
        s3 = s3 or s3_client()
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    path = Path(unquote(urlparse(location).path) if location.startswith("file://") else location)
    if not path.is_file():
        raise FileNotFoundError(f"no such window file: {path}")
    return path.read_bytes()


def input_metadata(location: str, s3: Any | None = None) -> dict[str, str] | None:
    """What came with a window: an ``s3://`` object's user metadata, a local file's spec sidecar
    (``<file>.spec.json``, :mod:`model_contract.window_spec`) as metadata; None without any."""
    from model_contract.window_spec import SIDECAR_SUFFIX, sidecar_metadata  # noqa: PLC0415

    if location.startswith("s3://"):
        bucket, key = parse_s3_uri(location)
        return (s3 or s3_client()).head_object(Bucket=bucket, Key=key).get("Metadata") or None
    path = Path(unquote(urlparse(location).path) if location.startswith("file://") else location)
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    return sidecar_metadata(sidecar.read_text()) if sidecar.is_file() else None


def format_of(location: str) -> str:
    """``jsonl`` for .jsonl/.ndjson/.json names, else ``auto`` (CSV unless the content starts with ``{``)."""
    name = location.lower().rsplit("/", 1)[-1]
    return "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "auto"
