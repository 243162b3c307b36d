"""Shared test setup. Fixture modules live in tests/fixtures/ (one per server or concern)
and are all loaded here, so each owner can add theirs without touching this file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("HYBRIDSTREAM_DATASETS", REPO.parent / "shared" / "datasets"))
# the full data set when present, else the committed sample (enough for every test)
TURBINE = DATASETS / "turbine" if (DATASETS / "turbine").is_dir() else REPO / "tests" / "data" / "turbine"

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)


@pytest.fixture(scope="session")
def turbine_dir() -> Path:
    if not TURBINE.is_dir():
        pytest.fail(f"turbine data not found at {TURBINE} (set HYBRIDSTREAM_DATASETS)")
    return TURBINE
