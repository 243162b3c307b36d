"""The edge's re-training windows for one device, replayed by row: when a window closes and what the speed model
trained on it sees.

As the edge's :class:`edge_app.windows.WindowSpool` does with ``max_records`` = ``size``: a window closes after
``size`` readings, or early on a drift alarm (``windows.early_on_drift``: the reading that raised the alarm opens
the next window), and the periodic count starts again from the new window. As the trainer does
(:mod:`training_job.recent_windows`, ``train worker --speed-windows K``): the speed model of a closed window is
trained on it and the ``K - 1`` windows before it, oldest first; a window shorter than ``min_rows`` is rejected
(``too_few_rows``: no model for it; a later window that looks back counts it among its K and skips it).

``since_drift`` (a design studied for issue 17, not the trainer's): the history stops at the newest window that
closed on drift, so after a drift the speed models learn only from that window and the ones after it until it
falls out of the last ``K``.

>>> s = WindowSchedule(size=300, keep=3)
>>> s.close(300, drift=False), s.close(450, drift=True), s.close(750, drift=False)
([(0, 300)], [(0, 300), (300, 450)], [(0, 300), (300, 450), (450, 750)])
>>> s.close(800, drift=True) is None  # 50 rows: the trainer rejects it
True
>>> s.close(1100, drift=False)  # the rejected window still counts among the last 3, and is skipped
[(450, 750), (800, 1100)]
>>> t = WindowSchedule(size=300, keep=6, since_drift=True)
>>> t.close(300, drift=False), t.close(450, drift=True), t.close(750, drift=False)
([(0, 300)], [(300, 450)], [(300, 450), (450, 750)])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training_job.windows import DEFAULT_MIN_ROWS


@dataclass(frozen=True)
class ClosedWindow:
    first: int  # first row (of the replayed stream)
    end: int  # one past its last row
    drift: bool  # closed early on a drift alarm

    @property
    def rows(self) -> int:
        return self.end - self.first


@dataclass
class WindowSchedule:
    """One device's windows by row (see the module doc)."""

    size: int
    keep: int
    min_rows: int = DEFAULT_MIN_ROWS
    since_drift: bool = False
    start: int = 0  # first row of the open window
    closed: list[ClosedWindow] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 1 or self.keep < 1:
            raise ValueError(f"size and keep must be >= 1, not {self.size} and {self.keep}")

    def full(self, end: int) -> bool:
        """The open window holds ``size`` rows once row ``end - 1`` is in it (the periodic close)."""
        return end - self.start >= self.size

    def close(self, end: int, drift: bool) -> list[tuple[int, int]] | None:
        """Close the open window at row ``end`` (exclusive); the next one opens there. The row ranges its speed
        model trains on (oldest first), or None: no model (an empty window, or one the trainer rejects)."""
        if end <= self.start:
            return None
        window = ClosedWindow(self.start, end, drift)
        self.closed.append(window)
        self.start = end
        if window.rows < self.min_rows:
            return None
        return self.history()

    def history(self) -> list[tuple[int, int]]:
        """The row ranges the newest closed window's speed model trains on, oldest first."""
        recent = self.closed[-self.keep :]
        if self.since_drift:
            cut = max((i for i, w in enumerate(recent) if w.drift), default=0)
            recent = recent[cut:]
        return [(w.first, w.end) for w in recent if w.rows >= self.min_rows]
