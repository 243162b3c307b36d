"""The eval's warm-up of the dynamic combiner on the history (``eval run --warm-combiner``), without TensorFlow."""

from __future__ import annotations

import numpy as np

from edge_app.combiners import make_combiner
from hybridstream.evaluation.online_run import _warm_combiner
from model_contract import FeatureSpec


def test_warming_learns_every_truth_of_the_history_with_no_model_inputs():
    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2), horizon=3)
    rng = np.random.default_rng(0)
    a = rng.normal(size=800)
    y = np.cumsum(rng.normal(0, 0.1, 800))
    y[3:] += 0.8 * a[:-3]  # the change over 3 steps follows the driver
    matrix = np.column_stack([a, y])
    c = make_combiner({}, target_index=spec.target_index)
    learned = _warm_combiner(c, matrix, spec)
    assert learned == 800 - (spec.max_lag + spec.horizon - 1)  # every forecast row of the history
    window = matrix[-2:]
    last = window[-1, 1]
    assert c.predict_one(last, last, window) != last  # no longer persistence: it learned from the window
    assert c.counts()["skipped"] == 0
