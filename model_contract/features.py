"""Feature building: lags of the spec's features as an LSTM input sequence.

A model forecasts the target ``horizon`` readings ahead (default 1: the *next* value) from
the most recent readings. With ``lags=(1, 2)`` the input for the target at step ``t`` is the
rows at ``t-2`` and ``t-1`` (oldest first), each holding every feature of the spec, scaled;
with ``horizon=H`` the same input forecasts the target at step ``t + H - 1`` (``H`` steps
after the newest reading seen). A row's features are the spec's columns, then its calendar
features (:mod:`model_contract.calendar`, computed from the reading's timestamp in UTC).
:func:`build_supervised` builds these for a whole table (training); :class:`FeatureBuffer`
builds the same input online, one reading at a time (serving). Tests assert the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from model_contract.bad_record import BadRecord
from model_contract.calendar import (
    CALENDAR_FEATURES,
    DEFAULT_CALENDAR,
    check_names,
    parse_timestamp,
    write_calendar,
)
from model_contract.calendar import plan as calendar_plan
from model_contract.scaling import Scaler

DEFAULT_COLUMNS = ("Db1t_avg", "Db2t_avg", "Gb1t_avg", "Gb2t_avg", "Ot_avg")
__all__ = [
    "DEFAULT_COLUMNS",
    "FeatureBuffer",
    "FeatureSpec",
    "build_supervised",
    "calendar_columns",
    "calendar_matrix",
    "default_spec",
    "rows_to_matrix",
    "with_calendar",
]


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model, which one it forecasts, which lags and calendar features it sees.

    ``horizon`` (>= 1) is how many readings after the newest one seen the forecast is for.
    ``calendar`` names calendar features (:data:`model_contract.calendar.CALENDAR_FEATURES`)
    computed from each reading's timestamp; ``features`` = ``columns`` + ``calendar`` is what
    the model sees at each step. ``FeatureSpec()`` has none (every manifest written before they
    existed means exactly that); :func:`default_spec` is the product default, with the time of day.

    >>> spec = FeatureSpec()
    >>> spec.target, spec.lags, spec.input_shape, spec.horizon
    ('Ot_avg', (1, 2), (2, 5), 1)
    >>> default_spec().input_shape, default_spec().calendar
    ((2, 9), ('day_sin1', 'day_cos1', 'day_sin2', 'day_cos2'))
    """

    columns: tuple[str, ...] = DEFAULT_COLUMNS
    target: str = "Ot_avg"
    lags: tuple[int, ...] = (1, 2)
    timestamp_column: str = "Date_time"
    device_column: str = "device"
    horizon: int = 1
    calendar: tuple[str, ...] = ()
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
        object.__setattr__(self, "calendar", check_names(self.calendar))
        if set(self.columns) & set(self.calendar):
            raise ValueError("a column may not be named like a calendar feature")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "lags", tuple(sorted(int(x) for x in self.lags)))
        object.__setattr__(self, "_order", tuple(sorted(self.lags, reverse=True)))

    @property
    def max_lag(self) -> int:
        return self._order[0]

    @property
    def target_index(self) -> int:
        """The target's index in ``columns`` (= in ``features``: the calendar features come last)."""
        return self.columns.index(self.target)

    @property
    def features(self) -> tuple[str, ...]:
        """What the model sees at each step: the columns, then the calendar features."""
        return self.columns + self.calendar

    @property
    def input_shape(self) -> tuple[int, int]:
        """(time steps, features) of one model input, without the batch axis."""
        return (len(self.lags), len(self.columns) + len(self.calendar))

    def linear_inputs(self) -> tuple[int, ...]:
        """Positions in the flattened lag window (``window.reshape(-1)``: steps x features, oldest
        step first) that a linear model reads: every column at every step, and the calendar features
        of the newest step only. Each step of the window repeats them (the LSTM reads them per step),
        but for a linear model the older copies are collinear (one reading apart) and cost accuracy:
        online_linear on the turbine ``none`` stream, H=1, RMSE 0.2499 with every copy, 0.2471 with
        the newest only (persistence 0.2625).

        >>> FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2), calendar=("day_sin1",)).linear_inputs()
        (0, 1, 3, 4, 5)
        """
        width, ncol, steps = len(self.features), len(self.columns), len(self.lags)
        idx = [s * width + j for s in range(steps) for j in range(ncol)]
        return tuple(idx + [(steps - 1) * width + ncol + j for j in range(len(self.calendar))])

    def to_dict(self) -> dict:
        """JSON-friendly; ``horizon`` only when not 1, ``calendar`` only when set (older manifests stay equal)."""
        out = {
            "columns": list(self.columns),
            "target": self.target,
            "lags": list(self.lags),
            "timestamp_column": self.timestamp_column,
            "device_column": self.device_column,
        }
        if self.horizon != 1:
            out["horizon"] = self.horizon
        if self.calendar:
            out["calendar"] = list(self.calendar)
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
            calendar=tuple(data.get("calendar", ())),
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


def default_spec(**overrides) -> FeatureSpec:
    """The product's default spec: ``FeatureSpec`` with the time-of-day calendar features
    (:data:`model_contract.calendar.DEFAULT_CALENDAR`); what the trainer's CLI, ``make batch-model``
    and ``hybridstream eval`` use unless told otherwise. ``overrides`` are FeatureSpec fields.
    """
    return FeatureSpec(**({"calendar": DEFAULT_CALENDAR} | overrides))


def with_calendar(spec: FeatureSpec, calendar: Sequence[str]) -> FeatureSpec:
    """``spec`` with other calendar features."""
    return FeatureSpec.from_dict(spec.to_dict() | {"calendar": list(calendar)})


def calendar_matrix(epochs: Sequence[float] | np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The calendar features of many instants: a float64 (len(epochs), len(names)) matrix.

    Same formula as :func:`model_contract.calendar.write_calendar` (tests assert they agree).
    """
    t = np.asarray(epochs, dtype=np.float64).reshape(-1)
    out = np.empty((t.shape[0], len(names)), dtype=np.float64)
    for j, (period, omega, cos) in enumerate(calendar_plan(names)):
        phase = omega * (np.mod(t, period) / period)
        out[:, j] = np.cos(phase) if cos else np.sin(phase)
    return out


def calendar_columns(epochs: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
    """Every calendar feature of many instants, by name (e.g. to build another spec's rows)."""
    m = calendar_matrix(epochs, CALENDAR_FEATURES)
    return {name: m[:, j] for j, name in enumerate(CALENDAR_FEATURES)}


def add_calendar(matrix: np.ndarray, epochs: Sequence[float] | np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A (rows, columns) matrix of raw values -> the (rows, features) matrix models see."""
    if matrix.shape[1] != len(spec.columns):
        raise ValueError(f"matrix has {matrix.shape[1]} columns, the spec {len(spec.columns)}")
    if not spec.calendar:
        return matrix
    if len(epochs) != matrix.shape[0]:
        raise ValueError(f"{len(epochs)} timestamps for {matrix.shape[0]} rows")
    return np.hstack([matrix, calendar_matrix(epochs, spec.calendar)])


def rows_to_matrix(rows: Sequence[Mapping], spec: FeatureSpec) -> np.ndarray:
    """Validate rows (dicts) and return a float64 (rows, features) matrix; raises BadRecord.

    With calendar features, each row's ``spec.timestamp_column`` is parsed with
    :func:`model_contract.calendar.parse_timestamp` (``bad_timestamp`` if missing or invalid).
    """
    ncol = len(spec.columns)
    out = np.empty((len(rows), ncol + len(spec.calendar)), dtype=np.float64)
    steps = calendar_plan(spec.calendar) if spec.calendar else ()
    for i, row in enumerate(rows):
        try:
            out[i, :ncol] = spec.parse_values(row)
            if steps:
                if spec.timestamp_column not in row:
                    raise BadRecord("bad_timestamp", f"missing {spec.timestamp_column}")
                write_calendar(parse_timestamp(row[spec.timestamp_column]), steps, out[i], ncol)
        except BadRecord as exc:
            raise BadRecord(exc.reason, f"row {i}: {exc.detail}") from None
    return out


def build_supervised(matrix: np.ndarray, spec: FeatureSpec, scaler: Scaler) -> tuple[np.ndarray, np.ndarray]:
    """Turn a (rows, features) matrix into model inputs X (n, steps, features) and scaled targets y.

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
    :meth:`Scaler.transform_into`). ``window`` is a preallocated (steps, features) array
    holding the readings that forecast the next one, oldest first (no allocation per record).
    :meth:`push` takes the spec's column values and the reading's epoch (the calendar features
    are computed from it); :meth:`push_row` takes a full row (columns then calendar features).

    >>> spec = FeatureSpec(columns=("a", "b"), target="b", lags=(1, 2))
    >>> buf = FeatureBuffer(spec)
    >>> for row in ([0.0, 1.0], [2.0, 3.0], [4.0, 5.0]):
    ...     buf.push(row)
    >>> buf.ready, buf.window.tolist()
    (True, [[2.0, 3.0], [4.0, 5.0]])
    >>> cal = FeatureBuffer(FeatureSpec(columns=("a", "b"), target="b", lags=(1,), calendar=("day_sin1", "day_cos1")))
    >>> cal.push([1.0, 2.0], epoch=6 * 3600.0)
    >>> cal.window.round(6).tolist()
    [[1.0, 2.0, 1.0, 0.0]]
    """

    __slots__ = ("_ring", "_rows", "_heads", "_count", "_pos", "_order", "_max_lag", "_ncol", "_steps", "window")

    def __init__(self, spec: FeatureSpec) -> None:
        self._max_lag = spec.max_lag
        self._order = spec._order
        self._ncol = len(spec.columns)
        self._steps = calendar_plan(spec.calendar) if spec.calendar else ()
        self._ring = np.zeros((self._max_lag, len(spec.features)), dtype=np.float64)
        self._rows = tuple(self._ring)  # one view per ring row, made once (push allocates nothing)
        self._heads = tuple(r[: self._ncol] for r in self._rows)  # each row's column part
        self._count = 0
        self._pos = 0
        self.window = np.zeros(spec.input_shape, dtype=np.float64)

    @property
    def ready(self) -> bool:
        return self._count >= self._max_lag

    @property
    def width(self) -> int:
        """Values per row: columns + calendar features."""
        return self._ring.shape[1]

    def push(self, values: Sequence[float], epoch: float | None = None) -> None:
        """Append one reading (the spec's column values, raw units; ``epoch`` required with calendar features)."""
        row = self._rows[self._pos]
        if self._steps:
            if epoch is None:
                raise ValueError("this feature spec has calendar features: push(values, epoch)")
            self._heads[self._pos][:] = values
            write_calendar(epoch, self._steps, row, self._ncol)
        else:
            row[:] = values
        self._advance()

    def push_row(self, row: Sequence[float]) -> None:
        """Append one full row (columns then calendar features, e.g. restored state or a built matrix)."""
        if len(row) != self._ring.shape[1]:
            raise ValueError(f"a row of {len(row)} values; this spec's rows have {self._ring.shape[1]}")
        self._rows[self._pos][:] = row
        self._advance()

    def _advance(self) -> None:
        self._pos = (self._pos + 1) % self._max_lag
        self._count += 1
        if self._count >= self._max_lag:
            # lag l (1 = newest) lives at ring index (pos - l) mod max_lag
            for step, lag in enumerate(self._order):
                self.window[step] = self._rows[(self._pos - lag) % self._max_lag]
