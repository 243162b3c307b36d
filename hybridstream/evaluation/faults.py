"""Sensor faults injected into a test stream, deterministically: glitches, a stuck sensor, alternation, a step, a gap.

Each fault hits the target's column only (one faulty sensor; the other columns and the calendar features
stay true), at fixed fractions of the stream, with sizes in units of the target's standard deviation over
the stream (``sd``), so the same call makes the same stream for any data set:

============  ==========================================================================================
``spikes``    20 isolated glitches of +-6 sd at seeded rows in [5 %, 95 %) of the stream (not in the three below)
``stuck``     the sensor repeats its value of row 20 % for 300 rows
``alternate`` 70 readings from 40 % on alternating between the true value + 0.75 sd and - 0.75 sd (the
              turbine's Ot_avg: sd ~6 degC, ~9 degC apart, as the fault seen on an unseen turbine stream)
``step``      a +1.5 sd offset of the sensor on rows [60 %, 70 %)
``gap``       500 rows from 80 % removed (the stream jumps in time: the readings after it come late)
============  ==========================================================================================

``all`` applies every one (the positions do not overlap; the gap last, so the other positions are in
the original rows). :func:`inject` returns the faulty copy and where each fault is (rows of the
returned stream).

>>> import numpy as np
>>> m = np.column_stack([np.zeros(3000), np.arange(3000.0)])
>>> out, where = inject(m, target_index=1, kinds=("stuck", "gap"))
>>> len(out), where["stuck"], where["gap"]
(2500, (600, 900), (2400, 2400))
>>> bool((out[600:900, 1] == 600.0).all()), bool((out[:, 0] == 0).all())
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KINDS = ("spikes", "stuck", "alternate", "step", "gap")
SPIKES, SPIKE_SD = 20, 6.0
STUCK_AT, STUCK_ROWS = 0.20, 300
ALT_AT, ALT_ROWS, ALT_SD = 0.40, 70, 0.75
STEP_SPAN, STEP_SD = (0.60, 0.70), 1.5
GAP_AT, GAP_ROWS = 0.80, 500


def parse_kinds(option: str) -> tuple[str, ...]:
    """``all`` or a comma-separated subset of :data:`KINDS` (ValueError otherwise)."""
    if option == "all":
        return KINDS
    kinds = tuple(k.strip() for k in option.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown fault(s) {', '.join(bad) or option!r} (all, or some of {', '.join(KINDS)})")
    return kinds


def inject(
    matrix: np.ndarray, target_index: int, kinds: Sequence[str] = KINDS, seed: int = 17, skip: int = 0
) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """A copy of ``matrix`` (rows = readings, oldest first) with ``kinds`` injected into column ``target_index``.

    ``skip`` leading rows (e.g. a lag window taken from the history) are left alone and not counted in
    the stream's length. Returns the copy and ``{kind: (first row, end row)}`` in the copy's rows.
    """
    out = np.array(matrix, dtype=np.float64, copy=True)
    n = len(out) - skip
    if n < 5 * GAP_ROWS:
        raise ValueError(f"a fault stream needs at least {5 * GAP_ROWS} rows, got {n}")
    col = out[skip:, target_index]  # a view
    sd = float(np.std(col))
    sd = sd if sd > 0 else 1.0
    rng = np.random.default_rng(seed)
    where: dict[str, tuple[int, int]] = {}
    if "stuck" in kinds:
        a = int(STUCK_AT * n)
        col[a : a + STUCK_ROWS] = col[a]
        where["stuck"] = (a, a + STUCK_ROWS)
    if "alternate" in kinds:
        a = int(ALT_AT * n)
        sign = np.where(np.arange(ALT_ROWS) % 2 == 0, 1.0, -1.0)
        col[a : a + ALT_ROWS] += ALT_SD * sd * sign
        where["alternate"] = (a, a + ALT_ROWS)
    if "step" in kinds:
        a, b = int(STEP_SPAN[0] * n), int(STEP_SPAN[1] * n)
        col[a:b] += STEP_SD * sd
        where["step"] = (a, b)
    if "spikes" in kinds:
        free = np.ones(n, dtype=bool)  # not inside another fault (one at a time)
        for k in ("stuck", "alternate", "step"):
            if k in where:
                free[where[k][0] : where[k][1]] = False
        free[: int(0.05 * n)] = free[int(0.95 * n) :] = False
        rows = np.sort(rng.choice(np.flatnonzero(free), SPIKES, replace=False))
        col[rows] += SPIKE_SD * sd * rng.choice([-1.0, 1.0], SPIKES)
        where["spikes"] = (int(rows[0]), int(rows[-1]) + 1)
    where = {k: (a + skip, b + skip) for k, (a, b) in where.items()}
    if "gap" in kinds:
        a = skip + int(GAP_AT * n)
        out = np.delete(out, np.s_[a : a + GAP_ROWS], axis=0)
        where = {k: _after_gap(v, a) for k, v in where.items()}
        where["gap"] = (a, a)
    return out, where


def _after_gap(span: tuple[int, int], gap: int) -> tuple[int, int]:
    a, b = span
    shift = lambda r: r - GAP_ROWS if r >= gap + GAP_ROWS else min(r, gap)  # noqa: E731
    return shift(a), shift(b)
