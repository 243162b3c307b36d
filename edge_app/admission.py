"""Record admission: which consumed readings ``edge run`` and ``edge forward`` accept.

A reading is admitted when it parses against the feature spec (:func:`edge_app.records.parse_reading`:
JSON, device, timestamp within bounds, finite values), its values are within the batch
scaler's range, its device may be served (allowlist, device limit, a usable id) and it is
later than the device's previous reading. Anything else raises :class:`BadRecord` with the
reason it is dead-lettered under.

>>> from model_contract import FeatureSpec
>>> a = Admission(FeatureSpec(columns=("a", "b"), target="b"), allow=None, max_devices=1)
>>> a.parse(b'{"device": "d1", "Date_time": "2017-01-01T00:10:00", "a": 1, "b": 2}', None, 2e9).device
'd1'
>>> a.admit_device("d2", known=1)
Traceback (most recent call last):
...
model_contract.bad_record.BadRecord: too_many_devices: d2 (limit 1)
"""

from __future__ import annotations

import logging
from typing import Any

from edge_app.records import Reading, parse_reading
from model_contract import FeatureSpec
from model_contract.bad_record import BadRecord

log = logging.getLogger("edge_app")

Bounds = tuple[tuple[float, ...], tuple[float, ...]]


def value_bounds(manifest: Any, k: float | None) -> Bounds | None:
    """Per column (lo, hi) = the (batch) manifest scaler's mean -+ k * scale; None when the check is off.

    >>> from model_contract import Manifest, Scaler, default_spec
    >>> m = Manifest("batch", "v", "0" * 64, default_spec(), Scaler((1.0,) * 9, (2.0,) * 9, 4), (2, 9))
    >>> value_bounds(m, 3.0)[0]  # the 5 columns only (the calendar features are the reading's time)
    (-5.0, -5.0, -5.0, -5.0, -5.0)
    """
    if k is None or manifest is None:
        return None
    spec, scaler = manifest.feature_spec, manifest.scaler
    if len(scaler.mean) != len(spec.features):
        log.warning(
            "batch scaler has %d columns, spec %d: out_of_range check off", len(scaler.mean), len(spec.features)
        )
        return None
    n = len(spec.columns)  # the readings' values; the calendar features after them are the reading's time
    lo = tuple(m - k * abs(sc) for m, sc in zip(scaler.mean[:n], scaler.scale[:n], strict=True))
    hi = tuple(m + k * abs(sc) for m, sc in zip(scaler.mean[:n], scaler.scale[:n], strict=True))
    return lo, hi


def check_range(values: list[float], bounds: Bounds) -> None:
    """:class:`BadRecord` ``out_of_range`` if a value is outside its column's (lo, hi)."""
    for v, lo, hi in zip(values, bounds[0], bounds[1]):  # noqa: B905 (same length)
        if v < lo or v > hi:
            raise BadRecord("out_of_range", f"{values} outside [{lo:.6g}, {hi:.6g}]"[:200])


def admit_device(device: str, allow: frozenset[str] | None, known: int, max_devices: int) -> None:
    """:class:`BadRecord` if a device not seen before may not be served (allowlist, limit, unusable id)."""
    if allow is not None and device not in allow:
        raise BadRecord("unknown_device", device[:100])
    if allow is None and known >= max_devices:
        raise BadRecord("too_many_devices", f"{device[:100]} (limit {max_devices})")
    try:
        device.encode()
    except UnicodeEncodeError:  # e.g. an escaped lone surrogate: unusable as a key or file name
        raise BadRecord("bad_device", ascii(device)[:100]) from None


def out_of_order(reading: Reading, last_epoch: float, last_ts: str) -> BadRecord:
    """The error for a reading not later than its device's previous one (call only when it is not)."""
    reason = "duplicate_timestamp" if reading.epoch == last_epoch else "out_of_order"
    return BadRecord(reason, f"{reading.timestamp} not after {last_ts}")


class Admission:
    """The admission rules of one command, from its config (built once at start)."""

    __slots__ = ("spec", "default_device", "min_epoch", "max_ahead_s", "bounds", "allow", "max_devices")

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        default_device: str = "",
        min_epoch: float = float("-inf"),
        max_ahead_s: float = 86400.0,
        bounds: Bounds | None = None,
        allow: frozenset[str] | None = None,
        max_devices: int = 10000,
    ) -> None:
        self.spec = spec
        self.default_device = default_device
        self.min_epoch = min_epoch
        self.max_ahead_s = max_ahead_s
        self.bounds = bounds
        self.allow = allow
        self.max_devices = max_devices

    @classmethod
    def from_config(cls, cfg: Any, spec: FeatureSpec, manifest: Any) -> Admission:
        """The rules of ``cfg`` (an :class:`edge_app.config.EdgeConfig`); ``manifest`` gives the range bounds."""
        return cls(
            spec,
            default_device=cfg.default_device,
            min_epoch=cfg.min_epoch,
            max_ahead_s=cfg.max_ahead_s,
            bounds=value_bounds(manifest, cfg.out_of_range_k),
            allow=frozenset(cfg.devices) if cfg.devices is not None else None,
            max_devices=cfg.max_devices,
        )

    def parse(self, value: bytes | None, key: bytes | None, max_epoch: float) -> Reading:
        """One consumed record as a :class:`Reading` (range-checked); :class:`BadRecord` otherwise.

        ``max_epoch`` is the latest acceptable timestamp (the batch's arrival + ``max_ahead_s``).
        """
        r = parse_reading(value, key, self.spec, self.default_device, self.min_epoch, max_epoch)
        if self.bounds is not None:
            check_range(r.values, self.bounds)
        return r

    def admit_device(self, device: str, known: int) -> None:
        """:class:`BadRecord` if a new device may not be served (``known`` devices are served already)."""
        admit_device(device, self.allow, known, self.max_devices)
