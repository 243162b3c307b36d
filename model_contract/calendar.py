"""A reading's time: the one timestamp parser, and the calendar features computed from it.

Standard library only (the Lambdas without a numpy layer may import it). Every part turns a
reading's timestamp into epoch seconds with :func:`parse_timestamp` (the edge, the trainer's
window parser, the cloud-inference Lambda, the evaluation's CSV reader), so a calendar feature
is computed from the same instant everywhere. Calendar features are in UTC: the time of day is
``(epoch % 86400) / 86400``, the time of year ``(epoch % YEAR_S) / YEAR_S`` with the mean
Gregorian year (``YEAR_S`` = 365.2425 days, starting at 1970-01-01).

========== ==========================
name       value
========== ==========================
day_sin1   sin(2 pi tod)
day_cos1   cos(2 pi tod)
day_sin2   sin(4 pi tod)
day_cos2   cos(4 pi tod)
year_sin1  sin(2 pi toy)
year_cos1  cos(2 pi toy)
========== ==========================

>>> row = calendar_row(parse_timestamp("2017-01-14T06:00:00"), DAY_FEATURES)
>>> [round(v, 6) + 0.0 for v in row]
[1.0, 0.0, 0.0, -1.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, MutableSequence, Sequence
from datetime import UTC, datetime
from typing import Any

from model_contract.bad_record import BadRecord

DAY_S = 86400.0
YEAR_S = 365.2425 * DAY_S

# name -> (period in seconds, harmonic, cosine?)
_FEATURES: dict[str, tuple[float, int, bool]] = {
    "day_sin1": (DAY_S, 1, False),
    "day_cos1": (DAY_S, 1, True),
    "day_sin2": (DAY_S, 2, False),
    "day_cos2": (DAY_S, 2, True),
    "year_sin1": (YEAR_S, 1, False),
    "year_cos1": (YEAR_S, 1, True),
}
CALENDAR_FEATURES: tuple[str, ...] = tuple(_FEATURES)  # the vocabulary
DAY_FEATURES: tuple[str, ...] = ("day_sin1", "day_cos1", "day_sin2", "day_cos2")  # time of day, harmonics 1 and 2
YEAR_FEATURES: tuple[str, ...] = ("year_sin1", "year_cos1")
DEFAULT_CALENDAR: tuple[str, ...] = DAY_FEATURES  # the product default (trainer, make batch-model, eval, demo)
_PRESETS = {"day": DAY_FEATURES, "year": YEAR_FEATURES, "day+year": DAY_FEATURES + YEAR_FEATURES, "none": ()}
_TWO_PI = 2.0 * math.pi
_sin, _cos = math.sin, math.cos


_fromiso = datetime.fromisoformat


def parse_timestamp(raw: Any, min_epoch: float = -math.inf, max_epoch: float = math.inf) -> float:
    """ISO-8601 or ``YYYY-MM-DD HH:MM:SS`` (naive = UTC) or epoch seconds -> epoch seconds, else :class:`BadRecord`.

    Timestamps before ``min_epoch`` (or not representable) are ``bad_timestamp``, after
    ``max_epoch`` ``future_timestamp`` (one such reading would otherwise block its device as
    out of order until the clock catches up).

    >>> parse_timestamp("2017-01-14T01:00:00+01:00"), parse_timestamp(1484352000)
    (1484352000.0, 1484352000.0)
    >>> parse_timestamp("2017-01-14 00:00:00")
    1484352000.0
    >>> parse_timestamp(1.7e12, 0.0, 2e9)
    Traceback (most recent call last):
    ...
    model_contract.bad_record.BadRecord: future_timestamp: 1700000000000.0
    """
    if isinstance(raw, str):
        try:
            dt = _fromiso(raw)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            epoch = dt.timestamp()
        except (ValueError, OverflowError):  # unparsable, or e.g. 0001-01-01T00:00:00+14:00 (before year 1 in UTC)
            raise BadRecord("bad_timestamp", repr(raw)[:100]) from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            epoch = float(raw)
        except OverflowError:  # an integer literal beyond float range
            raise BadRecord("bad_timestamp", f"<integer of {len(str(raw))} digits>") from None
        if not math.isfinite(epoch):
            raise BadRecord("bad_timestamp", repr(raw)[:100])
    else:
        raise BadRecord("bad_timestamp", repr(raw)[:100])
    if epoch < min_epoch:
        raise BadRecord("bad_timestamp", f"{raw!r} is before the earliest accepted time"[:200])
    if epoch > max_epoch:
        raise BadRecord("future_timestamp", repr(raw)[:100])
    return epoch


TIME_FORMAT_HINT = "give its format with --time-format (strptime codes, e.g. '%m/%d/%Y %H:%M' for 1/1/2010 0:00)"


def to_iso(raw: str, time_format: str) -> str:
    """A timestamp written in ``time_format`` (strptime) as ISO-8601, which :func:`parse_timestamp` reads.

    For files in another format than ISO-8601 (``--time-format`` of ``eval run`` and ``train``);
    without ``%z`` the time is naive, i.e. UTC like every naive timestamp here. ValueError if
    ``raw`` does not match.

    >>> to_iso("1/1/2010 0:00", "%m/%d/%Y %H:%M")
    '2010-01-01T00:00:00'
    """
    return datetime.strptime(raw.strip(), time_format).isoformat()


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple if every one is a known, distinct calendar feature; ValueError otherwise.

    >>> check_names(["day_sin1", "day_cos1"])
    ('day_sin1', 'day_cos1')
    >>> check_names(["hour"])
    Traceback (most recent call last):
    ...
    ValueError: unknown calendar feature(s) hour; valid: day_sin1, day_cos1, day_sin2, day_cos2, year_sin1, year_cos1
    """
    out = tuple(names)
    unknown = [n for n in out if n not in _FEATURES]
    if unknown:
        raise ValueError(f"unknown calendar feature(s) {', '.join(map(str, unknown))}; valid: {', '.join(_FEATURES)}")
    if len(set(out)) != len(out):
        raise ValueError("calendar features must be distinct")
    return out


def parse_calendar_option(text: str) -> tuple[str, ...]:
    """A CLI value: ``day`` (the default set), ``year``, ``day+year``, ``none``, or comma-separated names.

    >>> parse_calendar_option("none"), parse_calendar_option("day_sin1,day_cos1")
    ((), ('day_sin1', 'day_cos1'))
    """
    text = text.strip()
    if text in _PRESETS:
        return _PRESETS[text]
    return check_names(n.strip() for n in text.split(",") if n.strip())


Plan = tuple[tuple[float, float, bool], ...]


def plan(names: Sequence[str]) -> Plan:
    """Precomputed (period, 2 pi k, cosine?) per feature, for :func:`write_calendar`."""
    return tuple((_FEATURES[n][0], _TWO_PI * _FEATURES[n][1], _FEATURES[n][2]) for n in check_names(names))


def write_calendar(epoch: float, steps: Plan, out: MutableSequence[float], start: int = 0) -> None:
    """Write the features of one instant into ``out[start : start + len(steps)]``.

    No allocation (the edge's hot path); ``steps`` comes from :func:`plan`.
    """
    i = start
    for period, omega, cos in steps:
        phase = omega * ((epoch % period) / period)
        out[i] = _cos(phase) if cos else _sin(phase)
        i += 1


def calendar_row(epoch: float, names: Sequence[str]) -> list[float]:
    """The features ``names`` of one instant, as a list."""
    out = [0.0] * len(names)
    write_calendar(epoch, plan(names), out)
    return out
