"""The turbine scenarios: which history trains the batch model, which file is the stream.

Data: wind-turbine SCADA readings as published with the research prototype
(Hybrid-Streaming-Analytics-on-Edge-Cloud); column names from ENGIE's "La Haute Borne"
open data set (open licence, reuse with attribution).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridstream.datasets import TURBINE
from model_contract import FeatureSpec, rows_to_matrix

DEFAULT_DATASETS = TURBINE  # the project's copy (data/turbine/); another folder with the same files: root=

# the controlled scenario: every column of test.csv shifted by STEP_SIZE (degC) on [start, end)
STEP_SIZE = 8.0
STEP_SPAN = (10_000, 20_000)


@dataclass(frozen=True)
class Scenario:
    """A named pair of files: ``train`` for the batch model, ``test`` streamed to the edge."""

    name: str
    train: str
    test: str
    description: str
    change_points: tuple[int, ...] = ()  # known change positions in the stream (rows), if any


SCENARIOS: dict[str, Scenario] = {
    "none": Scenario("none", "train.csv", "test.csv", "no synthetic drift (seasonal change only)"),
    "gradual": Scenario(
        "gradual", "train_gradual_drift.csv", "test_gradual_drift.csv", "linear ramp added to every column"
    ),
    "abrupt": Scenario(
        "abrupt", "train_abrupt_drift.csv", "test_abrupt_drift.csv", "random per-row jumps (noise, shifted mean)"
    ),
    "step": Scenario(
        "step",
        "train.csv",
        "test.csv",
        f"test.csv with every column +{STEP_SIZE:g} degC on rows [{STEP_SPAN[0]}, {STEP_SPAN[1]})",
        change_points=STEP_SPAN,
    ),
}
MAIN_SCENARIOS = ("none", "gradual", "abrupt")


def load_csv(path: str | Path, spec: FeatureSpec) -> np.ndarray:
    """A turbine CSV as a validated (rows, features) float matrix: ``spec.columns`` then its calendar features."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows_to_matrix(rows, spec)


def inject_step(matrix: np.ndarray, start: int, end: int, size: float, columns: int | None = None) -> np.ndarray:
    """A copy of ``matrix`` with ``size`` added to the first ``columns`` columns (default all) on rows ``[start, end)``.

    The calendar features (after the spec's columns) are the readings' time: a step leaves them alone.

    >>> inject_step(np.zeros((4, 2)), 1, 3, 2.0)[:, 0].tolist()
    [0.0, 2.0, 2.0, 0.0]
    >>> inject_step(np.zeros((2, 3)), 0, 1, 1.0, columns=2).tolist()
    [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    out = matrix.copy()
    out[start:end, :columns] += size
    return out


def load_scenario(scenario: Scenario, spec: FeatureSpec, root: str | Path = DEFAULT_DATASETS):
    """(train matrix, test matrix) of a scenario."""
    root = Path(root)
    train = load_csv(root / scenario.train, spec)
    test = load_csv(root / scenario.test, spec)
    if scenario.name == "step":
        test = inject_step(test, STEP_SPAN[0], STEP_SPAN[1], STEP_SIZE, columns=len(spec.columns))
    return train, test
