"""Per-device state: lag window, combiner, drift detector, the pending forecast and accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_app.combiners import Combiner, make_combiner
from edge_app.drift import DriftDetector, make_detector
from edge_app.metrics import ErrorStats
from model_contract import FeatureBuffer, FeatureSpec


class DeviceState:
    """Everything the loop keeps for one device (created on its first valid reading).

    ``pending`` is the (batch, speed, hybrid) forecast of the device's next reading; when that
    reading arrives its errors feed the combiner, the drift detector and the accuracy stats.
    """

    __slots__ = ("device", "key", "buffer", "combiner", "detector", "pending", "last_epoch", "last_ts", "stats")

    def __init__(
        self,
        device: str,
        spec: FeatureSpec,
        combination: Mapping[str, Any],
        drift: Mapping[str, Any],
        metrics_window: int,
    ) -> None:
        self.device = device
        self.key = device.encode()
        self.buffer = FeatureBuffer(spec)
        self.combiner: Combiner = make_combiner(combination)
        self.detector: DriftDetector = make_detector(drift)
        self.pending: tuple[float, float, float] | None = None
        self.last_epoch = float("-inf")
        self.last_ts = ""
        self.stats = ErrorStats(metrics_window)
