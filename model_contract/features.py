"""Feature building: lags of the spec's columns as an LSTM input sequence.

A model forecasts the target ``horizon`` readings ahead (default 1: the *next* value) from
the most recent readings. With ``lags=(1, 2)`` the input for the target at step ``t`` is the
rows at ``t-2`` and ``t-1`` (oldest first), each holding every column of the spec, scaled;
with ``horizon=H`` the same input forecasts the target at step ``t + H - 1`` (``H`` steps
after the newest reading seen). :func:`build_supervised`
builds these for a whole table (training); :class:`FeatureBuffer` builds the same input
online, one reading at a time (serving). Tests assert the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from model_contract.scaling import Scaler

DEFAULT_COLUMNS = ("Db1t_avg", "Db2t_avg", "Gb1t_avg", "Gb2t_avg", "Ot_avg")


class BadRecord(ValueError):
    """A reading that cannot be used; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model, which one it forecasts, and which lags it sees.

    ``horizon`` (>= 1) is how many readings after the newest one seen the forecast is for.

    >>> spec = FeatureSpec()
    >>> spec.target, spec.lags, spec.input_shape, spec.horizon
    ('Ot_avg', (1, 2), (2, 5), 1)
    """

    columns: tuple[str, ...] = DEFAULT_COLUMNS
    target: str = "Ot_avg"
    lags: tuple[int, ...] = (1, 2)
    timestamp_column: str = "Date_time"
    device_column: str = "device"
    horizon: int = 1
    _order: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("FeatureSpec needs at least one column")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("FeatureSpec columns must be unique")
        if self.target not in self.columns:
            raise ValueError(f"target {self.target!r} must be one of the columns")
        if not self.lags or any(lag < 1 for lag in self.lags) or len(set(self.lags)) != len(self.lags):
            raise ValueError("lags must be distinct integers >= 1")
        if isinstance(self.horizon, bool) or int(self.horizon) != self.horizon or self.horizon < 1:
            raise ValueError("horizon must be an integer >= 1 (readings ahead)")
        object.__setattr__(self, "horizon", int(self.horizon))
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "lags", tuple(sorted(int(x) for x in self.lags)))
        object.__setattr__(self, "_order", tuple(sorted(self.lags, reverse=True)))

    @property
    def max_lag(self) -> int:
        return self._order[0]

    @property
    def target_index(self) -> int:
        return self.columns.index(self.target)

    @property
    def input_shape(self) -> tuple[int, int]:
        """(time steps, columns) of one model input, without the batch axis."""
        return (len(self.lags), len(self.columns))

    def to_dict(self) -> dict:
        """JSON-friendly; ``horizon`` is written only when it is not 1 (older manifests stay valid and equal)."""
        out = {
            "columns": list(self.columns),
            "target": self.target,
            "lags": list(self.lags),
            "timestamp_column": self.timestamp_column,
            "device_column": self.device_column,
        }
        if self.horizon != 1:
            out["horizon"] = self.horizon
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureSpec:
        return cls(
            columns=tuple(data["columns"]),
            target=data["target"],
            lags=tuple(data["lags"]),
            timestamp_column=data.get("timestamp_column", "Date_time"),
            device_column=data.get("device_column", "device"),
            horizon=int(data.get("horizon", 1)),
        )

    def parse_values(self, record: Mapping) -> list[float]:
        """The spec's column values of one reading as finite floats, or :class:`BadRecord`."""
        values = []
        for name in self.columns:
            if name not in record:
                raise BadRecord("missing_field", name)
            raw = record[name]
            if isinstance(raw, bool) or raw is None:
                raise BadRecord("non_numeric", f"{name}={raw!r}")
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise BadRecord("non_numeric", f"{name}={raw!r}"[:200]) from None
            except OverflowError:  # an integer literal beyond float range (e.g. 1 followed by 400 zeros)
                raise BadRecord("not_finite", f"{name}=<integer of {len(str(raw))} digits>") from None
            if not math.isfinite(value):
                raise BadRecord("not_finite", f"{name}={raw!r}")
            values.append(value)
        return values


def rows_to_matrix(rows: Sequence[Mapping], spec: FeatureSpec) -> np.ndarray:
    """Validate rows (dicts) and return a float64 (rows, columns) matrix; raises BadRecord."""
    out = np.empty((len(rows), len(spec.columns)), dtype=np.float64)
    for i, row in enumerate(rows):
        try:
            out[i] = spec.parse_values(row)
        except BadRecord as exc:
            raise BadRecord(exc.reason, f"row {i}: {exc.detail}") from None
    return out


def build_supervised(matrix: np.ndarray, spec: FeatureSpec, scaler: Scaler) -> tuple[np.ndarray, np.ndarray]:
    """Turn a (rows, columns) matrix into model inputs X (n, steps, columns) and scaled targets y.

    Sample ``i`` reads rows ``i .. i + max_lag - 1``; its target is row ``i + max_lag + horizon - 1``.

    >>> import numpy as np
    >>> spec = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2))
    >>> m = np.arange(10, dtype=float).reshape(5, 2)
    >>> X, y = build_supervised(m, spec, Scaler.identity(2, 1))
    >>> X.shape, y.tolist()
    ((3, 2, 2), [5.0, 7.0, 9.0])
    >>> two_ahead = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2), horizon=2)
    >>> X, y = build_supervised(m, two_ahead, Scaler.identity(2, 1))
    >>> X.shape, y.tolist()
    ((2, 2, 2), [7.0, 9.0])
    """
    scaled = scaler.transform(matrix).astype(np.float32)
    n = matrix.shape[0] - spec.max_lag - spec.horizon + 1
    if n <= 0:
        return np.empty((0, *spec.input_shape), np.float32), np.empty((0,), np.float32)
    steps = [scaled[spec.max_lag - lag : spec.max_lag - lag + n] for lag in spec._order]
    X = np.stack(steps, axis=1)
    y = scaled[spec.max_lag + spec.horizon - 1 :, spec.target_index].astype(np.float32)
    return np.ascontiguousarray(X), y


class FeatureBuffer:
    """Online twin of :func:`build_supervised` for one device: push readings, read the lag window.

    It keeps raw values (each model scales them with its own :class:`Scaler`, see
    :meth:`Scaler.transform_into`). ``window`` is a preallocated (steps, columns) array
    holding the readings that forecast the next one, oldest first (no allocation per record).

    >>> spec = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2))
    >>> buf = FeatureBuffer(spec)
    >>> for row in ([0.0, 1.0], [2.0, 3.0], [4.0, 5.0]):
    ...     buf.push(row)
    >>> buf.ready, buf.window.tolist()
    (True, [[2.0, 3.0], [4.0, 5.0]])
    """

    __slots__ = ("_ring", "_count", "_pos", "_order", "_max_lag", "window")

    def __init__(self, spec: FeatureSpec) -> None:
        self._max_lag = spec.max_lag
        self._order = spec._order
        self._ring = np.zeros((self._max_lag, len(spec.columns)), dtype=np.float64)
        self._count = 0
        self._pos = 0
        self.window = np.zeros(spec.input_shape, dtype=np.float64)

    @property
    def ready(self) -> bool:
        return self._count >= self._max_lag

    def push(self, values: Sequence[float]) -> None:
        """Append one reading (raw units) and refresh ``window``."""
        self._ring[self._pos] = values
        self._pos = (self._pos + 1) % self._max_lag
        self._count += 1
        if self._count >= self._max_lag:
            # lag l (1 = newest) lives at ring index (pos - l) mod max_lag
            for step, lag in enumerate(self._order):
                self.window[step] = self._ring[(self._pos - lag) % self._max_lag]
