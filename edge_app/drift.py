"""Drift detection on a residual stream (river's ADWIN by default).

>>> d = make_detector({"detector": "adwin"})
>>> any(d.update(0.0 if i < 500 else 5.0) for i in range(700))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class DriftDetector(Protocol):
    def update(self, residual: float) -> bool:
        """Feed one absolute residual; True when a drift is detected at this step."""
        ...


class AdwinDetector:
    """ADWIN over absolute residuals (river), with a minimum gap between two alarms."""

    def __init__(self, delta: float = 0.002, cooldown: int = 100) -> None:
        from river.drift import ADWIN  # noqa: PLC0415

        self._adwin = ADWIN(delta=delta)
        self._cooldown = cooldown
        self._since = cooldown

    def update(self, residual: float) -> bool:
        self._adwin.update(abs(residual))
        self._since += 1
        if self._adwin.drift_detected and self._since >= self._cooldown:
            self._since = 0
            return True
        return False


def make_detector(config: Mapping) -> DriftDetector:
    kind = config.get("detector", "adwin")
    if kind == "adwin":
        return AdwinDetector(delta=float(config.get("delta", 0.002)), cooldown=int(config.get("cooldown", 100)))
    raise ValueError(f"unknown drift detector {kind!r}")
