"""What every Lambda handler shares: boto3 clients made once per execution environment.

Each handler keeps its own cache (``_clients``: the local IoT rules engine and the tests put
stand-ins there) and gets its clients with ``partial(cached_client, _clients)``.
"""

from __future__ import annotations

import os
from typing import Any

import boto3


def cached_client(cache: dict[str, Any], name: str) -> Any:
    """The boto3 client ``name`` from ``cache``, made at the first call. ``iot-data`` goes to the
    account's IoT data endpoint (``IOT_DATA_ENDPOINT``, with or without ``https://``) when it is set."""
    if name not in cache:
        kwargs: dict[str, Any] = {}
        if name == "iot-data" and os.environ.get("IOT_DATA_ENDPOINT"):
            kwargs["endpoint_url"] = "https://" + os.environ["IOT_DATA_ENDPOINT"].removeprefix("https://")
        cache[name] = boto3.client(name, **kwargs)
    return cache[name]
