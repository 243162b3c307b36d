"""Device state across restarts with calendar features: full-width rows round-trip; older files start fresh."""

import json

import numpy as np

from edge_app.device_store import DeviceStore, load_device_state, save_device_state
from edge_app.state import DeviceState
from model_contract import FeatureSpec
from model_contract.calendar import DAY_FEATURES

SPEC = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2), calendar=DAY_FEATURES)
VERSIONS = ("b1", "s1")


def _state(spec=SPEC):
    return DeviceState("T1", spec, {"strategy": "static"}, {"detector": "none"}, 10)


def _fed():
    state = _state()
    for i in range(3):
        state.buffer.push([float(i), float(i) + 0.5], 1484352000.0 + 600.0 * i)
        state.last_epoch, state.last_ts = 1484352000.0 + 600.0 * i, f"t{i}"
    return state


def test_full_width_rows_round_trip():
    saved = _fed()
    raw = save_device_state(saved, VERSIONS)
    assert len(json.loads(raw)["rows"][0]) == 6  # columns + 4 calendar features
    fresh = _state()
    load_device_state(fresh, raw, VERSIONS)
    assert fresh.buffer.ready
    np.testing.assert_array_equal(fresh.buffer.window, saved.buffer.window)


def test_a_file_saved_without_calendar_features_is_ignored_and_the_device_starts_fresh(tmp_path):
    old = _state(FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2)))
    for i in range(2):
        old.buffer.push([float(i), float(i)])
    old.last_epoch, old.last_ts = 1484352000.0, "t"
    store = DeviceStore(tmp_path)
    store.save([old], VERSIONS)
    fresh = _state()
    assert store.restore(fresh, VERSIONS) is False
    assert not fresh.buffer.ready and fresh.last_epoch == float("-inf")
