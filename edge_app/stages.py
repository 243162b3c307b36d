"""Where the loop's time goes: the time of each stage of every processed batch, per record.

The loop adds one row per consumed batch: its records, the wall-clock seconds spent in each of
:data:`STAGES` (``time.perf_counter`` between two stages: cheap enough to read between the stages of
one record) and the loop thread's CPU seconds for the whole batch (``time.thread_time``, read twice
per batch). Each stage's cost is its share of the wall time times the CPU time: on a machine busy
with other work the wall clock also counts the time the loop waited for a core, the CPU clock does
not (the time lost that way is assumed to fall on the stages in proportion to their length).
:meth:`StageClock.summary` gives, per stage, the records-weighted median and the mean of the
per-record cost (µs) over the last ``size`` batches. One row per batch costs a few array stores.
``edge run`` reports it as ``stage_us`` in its counters (metrics records, progress log, exit
summary); ``make bench-edge`` prints the throughput phase's.

>>> clock = StageClock(size=4)
>>> clock.add(10, (1e-5, 2e-5, 0, 0, 0, 0, 0, 1e-5), 4e-5)
>>> clock.add(30, (12e-5, 6e-5, 0, 0, 0, 0, 0, 0), 9e-5)  # waited for a core half the time
>>> s = clock.summary()
>>> s["records"], s["p50_us"]["parse"], s["p50_us"]["features"], s["mean_us"]["parse"]
(40, 2.0, 1.0, 1.75)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# parse/admit, lag windows, model invokes, combiner (score + learn + forecast + drift), window spool,
# prediction JSON, producer queue; "other": the rest of the batch (the loop's own bookkeeping)
STAGES = ("parse", "features", "invoke", "combiner", "spool", "encode", "produce", "other")


class StageClock:
    """Per-batch stage times of the last ``size`` batches (a ring; no allocation per batch)."""

    __slots__ = ("_rows", "_size", "_next", "_count")

    def __init__(self, size: int = 4096) -> None:
        self._size = int(size)
        self._rows = np.zeros((self._size, len(STAGES) + 1))  # records, then seconds per stage
        self._next = 0
        self._count = 0

    def add(self, records: int, seconds: Sequence[float], cpu: float | None = None) -> None:
        """One processed batch: its readings (valid or not), the wall seconds of each stage and the CPU
        seconds of the whole batch (None: the wall seconds are the cost)."""
        if records <= 0:
            return
        row = self._rows[self._next]
        row[0] = records
        row[1:] = seconds
        wall = row[1:].sum()
        if cpu is not None and wall > 0.0:
            row[1:] *= cpu / wall
        self._next = (self._next + 1) % self._size
        self._count += 1

    def reset(self) -> None:
        self._next = self._count = 0

    def summary(self) -> dict[str, Any]:
        """``{"batches", "records", "p50_us": {stage: µs}, "mean_us": {stage: µs}}`` per record."""
        rows = self._rows[: min(self._count, self._size)]
        out: dict[str, Any] = {"batches": int(rows.shape[0]), "records": int(rows[:, 0].sum())}
        if not rows.shape[0]:
            out["p50_us"] = out["mean_us"] = dict.fromkeys(STAGES, None)
            return out
        n = rows[:, 0]
        per = rows[:, 1:] / n[:, None] * 1e6
        out["p50_us"] = {name: round(weighted_median(per[:, j], n), 2) for j, name in enumerate(STAGES)}
        total = n.sum()
        out["mean_us"] = {name: round(float(rows[:, j + 1].sum() / total * 1e6), 2) for j, name in enumerate(STAGES)}
        return out


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half the weight lies (the lower one at an exact tie).

    >>> weighted_median(np.array([5.0, 1.0, 3.0]), np.array([1.0, 1.0, 10.0]))
    3.0
    """
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][int(np.searchsorted(cum, 0.5 * cum[-1]))])
