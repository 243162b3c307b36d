"""Device state across restarts: full-width rows round-trip (calendar features); older files start fresh; the
forecast intervals carry on calibrated."""

import json

import numpy as np

from edge_app.device_store import DeviceStore, load_device_state, save_device_state
from edge_app.intervals import DeviceBand, IntervalConfig
from edge_app.state import DeviceState, Pending
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


def _banded():
    state = _fed()
    state.band = DeviceBand(IntervalConfig())
    made = None
    for i, y in enumerate(np.random.default_rng(0).standard_t(4, 300) + 10.0):  # a device calibrated on 300 readings
        nxt = Pending(10.0, 10.0, 10.0, "s1")
        state.band.step(made, float(y), nxt, f"t{i}")
        made = nxt
    state.pending = made
    return state


def test_the_interval_learner_and_the_pending_forecasts_interval_carry_on_after_a_restart():
    saved = _banded()
    raw = save_device_state(saved, VERSIONS)
    fresh = _state()
    fresh.band = DeviceBand(IntervalConfig())  # the app makes it (from the warm start) before restoring
    load_device_state(fresh, raw, VERSIONS)
    want = saved.band.ci.state()
    assert fresh.band.ci.state() == want and fresh.band.run == saved.band.run
    assert fresh.pending.band == saved.pending.band  # so the first reading after the restart is scored and flagged
    assert fresh.band.step(fresh.pending, 10.5, None, "t") == saved.band.step(saved.pending, 10.5, None, "t")
    # another model made the pending forecast: it is dropped, the learner still carries on
    other = _state()
    other.band = DeviceBand(IntervalConfig())
    load_device_state(other, raw, ("b2", "s1"))
    assert other.pending is None and other.band.ci.state() == want


def test_an_unusable_interval_state_leaves_the_warm_start_and_keeps_the_rest(caplog):
    data = json.loads(save_device_state(_banded(), VERSIONS))
    data["interval"]["learner"]["scale"] = -1.0
    fresh = _state()
    fresh.band = DeviceBand(IntervalConfig())
    load_device_state(fresh, json.dumps(data).encode(), VERSIONS)
    assert fresh.buffer.ready and fresh.band.ci.seen == 0 and fresh.pending.band is None
    assert "start from the warm start again" in caplog.text
