"""Lambda handler tests: each handler loaded from its folder, AWS faked by moto (no network)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
REGION = "eu-west-1"


def load_handler(folder: str) -> ModuleType:
    """Import lambdas/<folder>/handler.py under a unique module name (every handler is 'handler')."""
    name = f"lambda_{folder}_handler"
    spec = importlib.util.spec_from_file_location(name, LAMBDAS / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws(monkeypatch):
    """Fake credentials and region for moto; real ones never reach a test."""
    from moto import mock_aws

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("IOT_DATA_ENDPOINT", raising=False)
    with mock_aws():
        yield


def published(topic_prefix: str = "") -> list[tuple[str, bytes]]:
    """What handlers published through iot-data under moto."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iotdata.models import iotdata_backends

    payloads = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads
    return [(t, p) for t, p in payloads if t.startswith(topic_prefix)]
