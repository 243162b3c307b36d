"""Per-device state: lag window, combiner, drift detector, the pending forecast and accuracy."""

from __future__ import annotations

import json
import math
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
        self.pending: tuple[float, float, float, str] | None = None  # + the speed model version that made it
        self.last_epoch = float("-inf")
        self.last_ts = ""
        self.stats = ErrorStats(metrics_window)


def buffered_rows(buffer: FeatureBuffer) -> list[list[float]]:
    """The raw readings a :class:`FeatureBuffer` holds (at most ``max_lag``), oldest first."""
    ring, count, pos, size = buffer._ring, buffer._count, buffer._pos, buffer._max_lag  # noqa: SLF001
    if count < size:
        return ring[:count].tolist()
    return [ring[(pos + i) % size].tolist() for i in range(size)]


def save_device_state(state: DeviceState, versions: tuple[str, str]) -> bytes:
    """What a restart needs to carry on forecasting a device at once (combiner and detector start afresh)."""
    pending = state.pending
    return json.dumps(
        {
            "device": state.device,
            "last_epoch": state.last_epoch,
            "last_ts": state.last_ts,
            "rows": buffered_rows(state.buffer),
            "pending": None if pending is None else [pending[0], pending[1], pending[2], pending[3]],
            "models": {"batch": versions[0], "speed": versions[1]},
        },
        allow_nan=False,
    ).encode()


def load_device_state(state: DeviceState, raw: bytes, versions: tuple[str, str]) -> None:
    """Restore what :func:`save_device_state` wrote into a fresh state; ValueError/KeyError/TypeError if unusable.

    The pending forecast is kept only if both models are still the ones that made it.
    """
    data = json.loads(raw)
    if data["device"] != state.device:
        raise ValueError(f"state file is for device {data['device']!r}")
    last_epoch = float(data["last_epoch"])
    rows = data["rows"]
    width = state.buffer.window.shape[1]
    if not isinstance(rows, list) or len(rows) > state.buffer._max_lag:  # noqa: SLF001
        raise ValueError("rows do not fit the lag window")
    clean = []
    for row in rows:
        values = [float(v) for v in row]
        if len(values) != width or not all(math.isfinite(v) for v in values):
            raise ValueError("a saved row does not match the feature spec")
        clean.append(values)
    for values in clean:
        state.buffer.push(values)
    state.last_epoch = last_epoch
    state.last_ts = str(data["last_ts"])
    pending = data.get("pending")
    models = data.get("models") or {}
    if pending and (models.get("batch"), models.get("speed")) == versions:
        b, sp, h = (float(v) for v in pending[:3])
        if all(math.isfinite(v) for v in (b, sp, h)):
            state.pending = (b, sp, h, str(pending[3]))
