"""Record formats: parsing an input reading, encoding the output records (all JSON, UTF-8).

>>> from model_contract import FeatureSpec
>>> spec = FeatureSpec(columns=("a", "b"), target="b")
>>> r = parse_reading(b'{"device": "d1", "Date_time": "2017-01-01T00:10:00+00:00", "a": 1, "b": "2.5"}', None, spec)
>>> r.device, r.timestamp, r.epoch, r.values
('d1', '2017-01-01T00:10:00+00:00', 1483229400.0, [1.0, 2.5])
>>> parse_reading(b'{"a": 1', None, spec)
Traceback (most recent call last):
...
model_contract.bad_record.BadRecord: invalid_json: Expecting ',' delimiter: line 1 column 8 (char 7)

Timestamps are parsed by the contract's one parser, :func:`model_contract.calendar.parse_timestamp`
(re-exported here), which the trainer, the Lambdas and the evaluation use too:

>>> parse_timestamp("2017-01-14T01:00:00+01:00"), parse_timestamp(1484352000)
(1484352000.0, 1484352000.0)
>>> parse_timestamp(1.7e12, MIN_EPOCH, 2e9)
Traceback (most recent call last):
...
model_contract.bad_record.BadRecord: future_timestamp: 1700000000000.0
"""

from __future__ import annotations

import base64
import json
import math
import time
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from model_contract import FeatureSpec
from model_contract.bad_record import BadRecord
from model_contract.calendar import parse_timestamp  # the one timestamp parser (re-exported here)

try:  # orjson: ~4x faster JSON both ways (wheels for the Pi's aarch64 and armv7l Pythons); the json module otherwise
    from orjson import dumps as _fast_dumps
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - an install without it: the same results, slower
    _fast_dumps = _fast_loads = None

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_loads = json.loads
MAX_READING_BYTES = 64 * 1024  # a reading is one small flat object (~150 bytes); larger ones are dead-lettered
MAX_BRACKETS = 64  # more [ or { than this is no reading: refused before the parser recurses through it


class Reading(NamedTuple):
    """One valid sensor reading."""

    device: str
    timestamp: str  # as sent (the idempotency key uses it verbatim)
    epoch: float  # seconds since 1970 (ordering and duplicate checks)
    values: list[float]  # the spec's columns, finite floats
    target: float  # the spec's target value


MIN_EPOCH = 946684800.0  # 2000-01-01T00:00:00Z: the default lower bound of a reading's timestamp
MAX_AHEAD_S = 86400.0  # default: a reading may be at most one day ahead of the edge's clock


_NOTHING = object()
# orjson reads an integer beyond 64 bits as a float (json.loads: the exact int): readings with a run of 19 digits
# take json.loads. The run is found in the reading with every digit made "0" (bytes.translate and a substring
# search: ~0.2 us, where the regular expression \d{19} took ~2 us, scanning on from every digit)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def _long_digits(raw: bytes | bytearray) -> bool:
    """Whether ``raw`` holds 19 ASCII digits in a row (what ``re.search(rb"\\d{19}", raw)`` finds)."""
    return _LONG_RUN in raw.translate(_DIGITS_AS_ZERO)


def _json_object(raw: bytes | str) -> Any:
    """``json.loads`` with its failures as :class:`BadRecord` ``invalid_json``."""
    try:
        return _loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRecord("invalid_json", f"not UTF-8: {exc}"[:200]) from None
    except ValueError as exc:  # also integers beyond Python's digit limit
        raise BadRecord("invalid_json", str(exc)[:200]) from None
    except RecursionError:
        raise BadRecord("invalid_json", "nested too deeply") from None


def parse_reading(
    raw: bytes | None,
    key: bytes | None,
    spec: FeatureSpec,
    default_device: str = "",
    min_epoch: float = -math.inf,
    max_epoch: float = math.inf,
) -> Reading:
    """Decode and validate one ``sensor.readings`` value; the device comes from the value, else the key."""
    if not raw:
        raise BadRecord("empty_value", "tombstone or empty record")
    obj = _NOTHING
    if isinstance(raw, bytes | bytearray):  # cheap checks first: json's parser pays for size and depth
        if raw.count(b"[") + raw.count(b"{") > MAX_BRACKETS:
            raise BadRecord("invalid_json", "nested too deeply")
        if len(raw) > MAX_READING_BYTES:
            raise BadRecord("oversized", f"{len(raw)} bytes (a reading is at most {MAX_READING_BYTES})")
        if _fast_loads is not None and _LONG_RUN not in raw.translate(_DIGITS_AS_ZERO):  # _long_digits, inline
            try:  # noqa: SIM105 (hot path: no context manager) strict RFC 8259: what it accepts json.loads reads
                obj = _fast_loads(raw)  # alike; whatever it refuses goes to json.loads (its verdict, its reason)
            except ValueError:
                pass
    if obj is _NOTHING:
        obj = _json_object(raw)
    if not isinstance(obj, dict):
        raise BadRecord("not_an_object", type(obj).__name__)
    device = obj.get(spec.device_column)
    if device is None:
        device = key.decode("utf-8", "replace") if key else default_device
    if isinstance(device, int) and not isinstance(device, bool):
        device = str(device)
    if not isinstance(device, str) or not device:
        raise BadRecord("missing_device", f"{spec.device_column}={device!r}")
    ts = obj.get(spec.timestamp_column)
    if ts is None:
        raise BadRecord("missing_timestamp", spec.timestamp_column)
    global _stamp
    last = _stamp  # (text, epoch), replaced whole: another thread's update never mixes two readings' halves
    if ts.__class__ is str and ts == last[0]:  # the previous reading's timestamp (devices that report in step)
        epoch = last[1]
        if epoch < min_epoch or epoch > max_epoch:
            epoch = parse_timestamp(ts, min_epoch, max_epoch)  # raises the reason
    else:
        epoch = parse_timestamp(ts, min_epoch, max_epoch)
        if ts.__class__ is str:
            _stamp = (ts, epoch)
    values = spec.parse_values(obj)
    return Reading(device, ts if isinstance(ts, str) else str(ts), epoch, values, values[spec.target_index])


# the last timestamp text parse_reading parsed and its epoch: readings of devices that report in step (a farm's
# turbines every 10 minutes) share it, and parse_timestamp (an ISO parse and a datetime) is a pure function of it
_stamp: tuple[Any, float] = (None, 0.0)


def idempotency_key(device: str, timestamp: str) -> str:
    """The key that makes a replayed output detectable: ``<device>|<timestamp>``."""
    return f"{device}|{timestamp}"


def _num(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


_esc = encode_basestring_ascii  # C-accelerated JSON string quoting
_isfinite = math.isfinite


def _n(x: float | None) -> str:
    """A JSON number (``repr`` of a finite float is valid JSON), or null."""
    if x is None:
        return "null"
    x = float(x)
    return repr(x) if _isfinite(x) else "null"


def encode_prediction(
    reading: Reading,
    forecast: tuple[float, float, float] | None,
    errors: tuple[float, float, float] | None,
    weights: tuple[float, float],
    versions: tuple[str, str],
    latency_us: float,
    lag_ms: float = 0.0,
    horizon: int = 1,
    band: str = ',"interval":null,"anomaly":null',
) -> bytes:
    """One ``predictions`` record: forecasts of the reading ``horizon`` readings ahead (1: the NEXT
    one), errors of the forecast made for this reading (``horizon`` readings ago).

    orjson over the documented structure (a non-finite float is null), else hand-assembled
    (:func:`encode_prediction_text`); the unit tests check both parse to exactly
    :func:`prediction_dict`. ``band``: the ``"interval"`` and ``"anomaly"`` members, already encoded
    (:meth:`edge_app.intervals.DeviceBand.step`).
    """
    if _fast_dumps is None:
        return encode_prediction_text(reading, forecast, errors, weights, versions, latency_us, lag_ms, horizon, band)
    device, ts = reading.device, reading.timestamp
    try:
        head = _fast_dumps(
            {
                "key": device + "|" + ts,
                "device": device,
                "timestamp": ts,
                "actual": reading.target,
                "forecast": None
                if forecast is None
                else {"batch": float(forecast[0]), "speed": float(forecast[1]), "hybrid": float(forecast[2])},
                "weights": {"batch": float(weights[0]), "speed": float(weights[1])},
                "error": None
                if errors is None
                else {"batch": float(errors[0]), "speed": float(errors[1]), "hybrid": float(errors[2])},
                "models": {"batch": versions[0], "speed": versions[1]},
                "latency_us": round(latency_us, 1),
                "lag_ms": round(lag_ms, 1),
                "horizon": horizon,
            }
        )
    except TypeError:  # e.g. a lone surrogate in a string (not UTF-8): the escaping encoder writes it
        return encode_prediction_text(reading, forecast, errors, weights, versions, latency_us, lag_ms, horizon, band)
    return head[:-1] + band.encode() + b"}"


def encode_prediction_text(
    reading: Reading,
    forecast: tuple[float, float, float] | None,
    errors: tuple[float, float, float] | None,
    weights: tuple[float, float],
    versions: tuple[str, str],
    latency_us: float,
    lag_ms: float = 0.0,
    horizon: int = 1,
    band: str = ',"interval":null,"anomaly":null',
) -> bytes:
    """:func:`encode_prediction` without orjson: hand-assembled with f-strings and the C string escaper
    (``json.dumps`` of nested dicts costs more than twice as much)."""
    fc = (
        "null"
        if forecast is None
        else f'{{"batch":{_n(forecast[0])},"speed":{_n(forecast[1])},"hybrid":{_n(forecast[2])}}}'
    )
    er = "null" if errors is None else f'{{"batch":{_n(errors[0])},"speed":{_n(errors[1])},"hybrid":{_n(errors[2])}}}'
    return (
        f'{{"key":{_esc(reading.device + "|" + reading.timestamp)},"device":{_esc(reading.device)},'
        f'"timestamp":{_esc(reading.timestamp)},"actual":{_n(reading.target)},"forecast":{fc},'
        f'"weights":{{"batch":{_n(weights[0])},"speed":{_n(weights[1])}}},"error":{er},'
        f'"models":{{"batch":{_esc(versions[0])},"speed":{_esc(versions[1])}}},'
        f'"latency_us":{round(latency_us, 1)!r},"lag_ms":{round(lag_ms, 1)!r},"horizon":{horizon:d}{band}}}'
    ).encode()


def prediction_dict(
    reading: Reading,
    forecast: tuple[float, float, float] | None,
    errors: tuple[float, float, float] | None,
    weights: tuple[float, float],
    versions: tuple[str, str],
    latency_us: float,
    lag_ms: float = 0.0,
    horizon: int = 1,
    interval: dict[str, list[float]] | None = None,
    anomaly: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The reference structure of a prediction record (what :func:`encode_prediction` must parse to)."""
    return {
        "key": idempotency_key(reading.device, reading.timestamp),
        "device": reading.device,
        "timestamp": reading.timestamp,
        "actual": reading.target,
        "forecast": None
        if forecast is None
        else {"batch": _num(forecast[0]), "speed": _num(forecast[1]), "hybrid": _num(forecast[2])},
        "weights": {"batch": weights[0], "speed": weights[1]},
        "error": None
        if errors is None
        else {"batch": _num(errors[0]), "speed": _num(errors[1]), "hybrid": _num(errors[2])},
        "models": {"batch": versions[0], "speed": versions[1]},
        "latency_us": round(latency_us, 1),  # parse to produce, in this app
        "lag_ms": round(lag_ms, 1),  # the reading's CreateTime to the moment the loop picked it up
        "horizon": horizon,  # "forecast" is for the reading this many readings ahead
        "interval": interval,  # {level: [low, high]} around forecast.hybrid (same reading); null while unknown
        "anomaly": anomaly,  # {"level", "distance", "run"} when "actual" left the interval forecast for it
    }


def encode_deadletter(
    raw: bytes | None, reason: str, detail: str, topic: str, partition: int, offset: int, key: bytes | None
) -> bytes:
    """One ``deadletter`` record: the original payload (text, or base64 if not UTF-8) and why."""
    payload: str | None
    encoding = "utf-8"
    try:
        payload = raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(raw).decode(), "base64"
    rec = {
        "reason": reason,
        "detail": detail,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "key": key.decode("utf-8", "replace") if key else None,
        "payload": payload,
        "payload_encoding": encoding,
        "at": time.time(),
    }
    return _dumps(rec).encode()


def encode_event(kind: str, thing: str, **fields: Any) -> bytes:
    """One ``edge.events`` record: ``{"event": kind, "thing": ..., "at": ..., **fields}``."""
    return encode_json({"event": kind, "thing": thing, "at": time.time(), **fields})


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (at any depth) replaced by None, tuples as lists.

    >>> finite_or_none({"w": (float("nan"), 0.5), "x": [float("inf"), {"y": 1}]})
    {'w': [None, 0.5], 'x': [None, {'y': 1}]}
    """
    if isinstance(obj, float):
        return obj if _isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def encode_json(obj: Any) -> bytes:
    """Compact JSON (UTF-8); a non-finite float anywhere becomes null (never an exception, never NaN)."""
    try:
        return _dumps(obj).encode()
    except ValueError:  # NaN/inf somewhere (e.g. a combiner's weights): sanitise and retry
        return _dumps(finite_or_none(obj)).encode()
