"""The fault scenarios: deterministic, where they say, on the target only; and the CLI option."""

from __future__ import annotations

import numpy as np
import pytest

from hybridstream.evaluation import faults


def clean(n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.column_stack([rng.normal(size=n), np.cumsum(rng.normal(0, 0.1, n)), np.arange(n, dtype=float)])


def test_every_fault_is_deterministic_and_on_the_target_only():
    m = clean()
    a, where = faults.inject(m, target_index=1, skip=10)
    b, _ = faults.inject(m, target_index=1, skip=10)
    assert np.array_equal(a, b)  # the same call, the same stream
    assert set(where) == set(faults.KINDS) and len(a) == len(m) - faults.GAP_ROWS
    assert np.array_equal(a[:10], m[:10])  # the lead-in rows are untouched
    kept = np.delete(m, np.s_[where["gap"][0] : where["gap"][0] + faults.GAP_ROWS], axis=0)
    assert np.array_equal(a[:, [0, 2]], kept[:, [0, 2]])  # other columns (and the time) as they were
    s, e = where["stuck"]
    assert e - s == faults.STUCK_ROWS and np.all(a[s:e, 1] == a[s, 1])
    s, e = where["alternate"]
    jumps = np.diff(a[s:e, 1] - kept[s:e, 1])
    assert e - s == faults.ALT_ROWS and np.all(np.abs(jumps) > 1.4 * faults.ALT_SD * np.std(m[10:, 1]))
    s, e = where["step"]
    assert np.allclose(a[s:e, 1] - kept[s:e, 1], faults.STEP_SD * np.std(m[10:, 1]))
    assert np.sum(np.abs(a[:, 1] - kept[:, 1]) > 5 * np.std(m[10:, 1])) >= faults.SPIKES - 2  # the glitches
    assert np.diff(a[:, 2]).max() == faults.GAP_ROWS + 1  # the time jumps once


def test_kinds_option():
    assert faults.parse_kinds("all") == faults.KINDS
    assert faults.parse_kinds("stuck, gap") == ("stuck", "gap")
    with pytest.raises(ValueError, match="unknown fault"):
        faults.parse_kinds("stuck,melted")
    with pytest.raises(ValueError, match="at least"):
        faults.inject(clean(1000), 1)
    one, where = faults.inject(clean(), 1, ("step",))
    assert set(where) == {"step"} and len(one) == 4000
