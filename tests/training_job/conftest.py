"""Helpers for the training job's tests: turbine windows and a tiny, fast model configuration."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pytest

from model_contract import FeatureSpec
from training_job.model import TrainConfig
from training_job.pipeline import TrainOptions
from training_job.windows import window_to_csv

SPEC = FeatureSpec()
# small and quick: the tests check behaviour, not accuracy (the benchmark uses the defaults)
TINY = TrainConfig(lstm_units=8, dense_units=4, epochs=2, batch_size=64, patience=2)


@dataclass
class Rows:
    matrix: np.ndarray
    timestamps: list[str]

    def window(self, start: int, n: int) -> tuple[np.ndarray, list[str]]:
        return self.matrix[start : start + n].copy(), self.timestamps[start : start + n]

    def csv(self, start: int, n: int, device: str = "T1") -> bytes:
        m, ts = self.window(start, n)
        return window_to_csv(m, ts, SPEC, device)


@pytest.fixture(scope="session")
def turbine_rows(turbine_dir) -> Rows:
    """The first 2,000 rows of the turbine stream (test.csv)."""
    with open(turbine_dir / "test.csv", newline="") as fh:
        rows = [r for _, r in zip(range(2000), csv.DictReader(fh), strict=False)]
    return Rows(np.array([[float(r[c]) for c in SPEC.columns] for r in rows]), [r["Date_time"] for r in rows])


@pytest.fixture
def tiny_options() -> TrainOptions:
    return TrainOptions(name="speed", kind="speed", spec=SPEC, cfg=TINY)


@pytest.fixture
def store(s3_client, s3_bucket):
    from training_job.publish import ModelStore

    return ModelStore(s3_client, s3_bucket)
