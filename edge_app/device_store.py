"""Device state on disk: what a restart needs to carry on forecasting each device at once.

At every commit point the loop saves the devices touched since the previous one (lag rows,
last timestamp, pending forecast: one small JSON file each, written atomically); a device's
file is loaded when its first reading after a restart arrives. The forecast intervals carry on
(their learner, the anomaly run, the pending forecast's interval); the combiner and the drift
detector start afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path

from edge_app.state import DeviceState, Pending
from edge_app.windows import safe_name
from model_contract import FeatureBuffer

log = logging.getLogger("edge_app")


def buffered_rows(buffer: FeatureBuffer) -> list[list[float]]:
    """The raw readings a :class:`FeatureBuffer` holds (at most ``max_lag``), oldest first."""
    ring, count, pos, size = buffer._ring, buffer._count, buffer._pos, buffer._max_lag  # noqa: SLF001
    if count < size:
        return ring[:count].tolist()
    return [ring[(pos + i) % size].tolist() for i in range(size)]


def save_device_state(state: DeviceState, versions: tuple[str, str]) -> bytes:
    """What a restart needs to carry on forecasting a device at once (combiner and detector start afresh)."""
    pending = state.pending
    band = state.band
    return json.dumps(
        {
            "device": state.device,
            "last_epoch": state.last_epoch,
            "last_ts": state.last_ts,
            "rows": buffered_rows(state.buffer),
            "pending": None
            if pending is None
            else [pending.batch, pending.speed, pending.hybrid, pending.speed_version, pending.band],
            "models": {"batch": versions[0], "speed": versions[1]},
            "interval": None if band is None else band.state(),  # edge_app.intervals.DeviceBand
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
        state.buffer.push_row(values)
    state.last_epoch = last_epoch
    state.last_ts = str(data["last_ts"])
    intervals = _restore_intervals(state, data.get("interval"))
    pending = data.get("pending")
    models = data.get("models") or {}
    if pending and (models.get("batch"), models.get("speed")) == versions:
        b, sp, h = (float(v) for v in pending[:3])
        if all(math.isfinite(v) for v in (b, sp, h)):
            band = _issued(pending, len(state.band.ci.levels)) if intervals else None
            state.pending = Pending(b, sp, h, str(pending[3]), band=band)


def _restore_intervals(state: DeviceState, saved: dict | None) -> bool:
    """The device's interval learner and anomaly run, if saved and usable (else logged: the warm start's)."""
    if state.band is None or not saved:
        return False
    try:
        state.band.restore(saved)
    except ValueError as exc:
        log.warning("device %s: its intervals start from the warm start again (%s)", state.device, exc)
        return False
    return True


def _issued(pending: list, levels: int) -> list[float] | None:
    """The half-widths issued with the saved pending forecast, if they fit the levels (its reading is then
    scored and flagged as without the restart)."""
    issued = pending[4] if len(pending) > 4 else None
    if not isinstance(issued, list) or len(issued) != levels:
        return None
    widths = [float(w) for w in issued]
    return widths if all(0.0 <= w < math.inf for w in widths) else None


class DeviceStore:
    """One JSON file per device under ``folder`` (``<safe name>-<sha256 prefix>.json``)."""

    def __init__(self, folder: Path, *, fsync: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def path(self, device: str) -> Path:
        digest = hashlib.sha256(device.encode()).hexdigest()[:12]
        return self.folder / f"{safe_name(device)[:60]}-{digest}.json"

    def restore(self, state: DeviceState, versions: tuple[str, str]) -> bool:
        """Load the device's state saved at the last commit point; False if none (or unusable: logged)."""
        path = self.path(state.device)
        if not path.exists():
            return False
        try:
            load_device_state(state, path.read_bytes(), versions)
            return True
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring the saved state of %s (%s): %s", state.device, path.name, exc)
            return False

    def save(self, states: Iterable[DeviceState], versions: tuple[str, str]) -> None:
        """Write each state (atomic: a temporary file renamed over the old one; fsync'd if asked)."""
        for state in states:
            path = self.path(state.device)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(save_device_state(state, versions))
                    if self.fsync:
                        fh.flush()
                        os.fsync(fh.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("could not save the state of %s: %s", state.device, exc)
