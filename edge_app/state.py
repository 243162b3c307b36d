"""Per-device state: lag window, combiner, drift detector, the pending forecast and accuracy."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_app.combiners import Combiner, make_combiner
from edge_app.drift import DriftDetector, make_detector
from edge_app.intervals import DeviceBand
from edge_app.metrics import ErrorStats
from model_contract import FeatureBuffer, FeatureSpec


@dataclass(slots=True)
class Pending:
    """The forecasts of a device's next reading, waiting for it to arrive.

    When it arrives, ``forecast - actual`` of each approach feeds the accuracy stats, the
    drift detector and (if ``speed_version`` is still the speed model serving) the combiner,
    with ``context``: the combiner's copy of the row the forecast was made from (None for the
    combiners that keep none, and for a forecast restored after a restart).
    A slotted dataclass rather than a NamedTuple: it builds faster and reads as fast as the
    positional tuple it replaced (measured with ``timeit``; see docs/architecture.md).

    >>> p = Pending(10.0, 12.0, 11.0, "v1")
    >>> p.hybrid, p.speed_version
    (11.0, 'v1')
    """

    batch: float
    speed: float
    hybrid: float
    speed_version: str  # the speed model that made ``speed``
    context: np.ndarray | None = None  # ``combiner.context()`` when the forecast was made
    band: list[float] | None = None  # the half-widths of its interval per level (edge_app.intervals)


class DeviceState:
    """Everything the loop keeps for one device (created on its first valid reading).

    ``pending`` is the :class:`Pending` forecast of the device's next reading (None while the
    lag window fills, after a gap, or when the hybrid forecast was not finite). With a
    feature-spec ``horizon`` H > 1 each forecast is for the reading H readings ahead:
    ``ahead`` holds the H - 1 forecasts made for the readings after the next one (oldest
    first, None where there was none); each reading moves its head into ``pending``.
    """

    __slots__ = (
        "device",
        "key",
        "buffer",
        "combiner",
        "detector",
        "pending",
        "ahead",
        "last_epoch",
        "last_ts",
        "stats",
        "band",
    )

    def __init__(
        self,
        device: str,
        spec: FeatureSpec,
        combination: Mapping[str, Any],
        drift: Mapping[str, Any],
        metrics_window: int,
        warm: Mapping[str, Any] | None = None,
    ) -> None:
        self.device = device
        self.key = device.encode()
        self.buffer = FeatureBuffer(spec)
        # ``warm``: the batch model's combiner warm start, already checked to fit (EdgeApp.combiner_warm)
        self.combiner: Combiner = make_combiner(combination, spec=spec, warm=warm)
        self.detector: DriftDetector = make_detector(drift)
        self.pending: Pending | None = None
        self.ahead: deque[Pending | None] = deque([None] * (spec.horizon - 1))
        self.last_epoch = float("-inf")
        self.last_ts = ""
        self.stats = ErrorStats(metrics_window)
        self.band: DeviceBand | None = None  # its forecast intervals and anomaly flags (None: intervals off)
