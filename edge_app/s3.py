"""The edge app's one S3 client builder (window uploads and model fetches share it).

boto3 is imported at the first use (on the upload or fetch thread), never on the hot path.
Credentials come only from boto3's default chain (on a Pi: Greengrass's token exchange
service; never keys in the config). Endpoint: ``endpoint_url``, else boto3's own
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, else AWS; a custom endpoint gets path-style
addressing (S3-compatible servers such as radosgw on an IP address).
"""

from __future__ import annotations

import os
import threading
from typing import Any


def s3_client(endpoint_url: str = "", region: str = "") -> Any:
    """A new boto3 S3 client (3 attempts, 10 s connect and 30 s read timeouts)."""
    import boto3  # noqa: PLC0415 (lazy: only the upload/fetch threads need it)
    from botocore.config import Config  # noqa: PLC0415

    custom = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=30,
        s3={"addressing_style": "path"} if custom else {},
    )
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["region_name"] = region
    return boto3.session.Session().client("s3", **kwargs)


class LazyS3Client:
    """One client per owner, created at the first call (thread-safe) and reused afterwards."""

    def __init__(self, endpoint_url: str = "", region: str = "") -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = s3_client(self.endpoint_url, self.region)
            return self._client
