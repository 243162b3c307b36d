"""The trainer core: fixed seeds make the same window give the same model, byte for byte."""

from __future__ import annotations

import numpy as np

from model_contract.runtime import TFLiteModel
from training_job.model import TrainingCancelled, model_version, train_matrix

from .conftest import SPEC, TINY


def test_same_window_same_bytes_and_version(turbine_rows):
    m, _ = turbine_rows.window(0, 150)
    a = train_matrix(m, SPEC, TINY, name="speed", kind="speed")
    b = train_matrix(m.copy(), SPEC, TINY, name="speed", kind="speed")
    assert a.tflite == b.tflite and a.manifest.sha256 == b.manifest.sha256
    assert a.manifest.version == b.manifest.version == model_version(m, SPEC, TINY, "speed")
    assert model_version(m, SPEC, TINY, "batch") != a.manifest.version
    assert a.manifest.extra["epochs_run"] == TINY.epochs
    lite = TFLiteModel.from_manifest(a.tflite, a.manifest)
    assert np.isfinite(lite.predict_one(m[-2:]))


def test_cancel_stops_training(turbine_rows):
    m, _ = turbine_rows.window(0, 150)
    try:
        train_matrix(m, SPEC, TINY.replace(epochs=100), name="speed", kind="speed", cancel=lambda: True)
    except TrainingCancelled:
        return
    raise AssertionError("training was not cancelled")
