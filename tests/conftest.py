"""Shared fixtures: real local servers, started once per test session and stopped by PID."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("HYBRIDSTREAM_DATASETS", REPO.parent / "shared" / "datasets"))
TURBINE = DATASETS / "turbine"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real Apache Kafka broker (KRaft) on a free 127.0.0.1 port for the whole session."""
    from hybridstream.localstack.kafka import KafkaBroker

    broker = KafkaBroker.for_port(state_root=tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.destroy()


@pytest.fixture
def kafka_bootstrap(kafka_broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests sharing the broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture(scope="session")
def turbine_dir() -> Path:
    if not TURBINE.is_dir():
        pytest.fail(f"turbine dataset not found at {TURBINE} (set HYBRIDSTREAM_DATASETS)")
    return TURBINE
