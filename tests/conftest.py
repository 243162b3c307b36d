"""Shared test setup. Fixture modules live in tests/fixtures/ (one per server or concern)
and are all loaded here, so each owner can add theirs without touching this file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridstream.datasets import TURBINE  # the project's own copy (data/turbine/): a clone has all it needs

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)


@pytest.fixture(scope="session")
def turbine_dir() -> Path:
    if not (TURBINE / "test.csv").is_file():
        pytest.fail(f"turbine data not found at {TURBINE}: the clone is incomplete")
    return TURBINE
