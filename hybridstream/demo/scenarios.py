"""The demo's scenarios: which readings go into Kafka, in which order, with which faults.

Data: the project's turbine series (``data/turbine/``, credited in its README): ``train.csv``
(20,000 rows) pre-trains the batch model, the first ``STREAM_ROWS`` (3,000) rows of ``test.csv`` are the stream.

* ``none``: the stream as recorded (seasonal change only);
* ``step``: every column +8 degC on the middle third of the stream (the study's controlled change);
* ``malformed``: ``none`` with a malformed message after every ``BAD_EVERY``-th reading (not JSON,
  a missing field, a non-numeric value, an out-of-range value, no timestamp), each expected in the
  deadletter topic; every clean reading must still be predicted;
* ``crash``: ``none`` with the edge app SIGKILLed half-way through the stream and restarted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hybridstream.datasets import TURBINE
from hybridstream.devtools.edge import read_rows

REPO = Path(__file__).resolve().parents[2]
DATA = TURBINE
HISTORY = DATA / "train.csv"
STREAM = DATA / "test.csv"
STREAM_ROWS = 3000  # the demo's whole stream: 3,000 readings (about 21 days at 10 minutes)
STEP_SIZE = 8.0
BAD_EVERY = 40
DEFAULT_SCENARIOS = ("none", "step", "malformed", "crash")
QUICK_SCENARIOS = ("none", "step")
ALL_SCENARIOS = ("none", "step", "malformed", "crash")


@dataclass
class Message:
    """One Kafka record to send: ``key`` (device|timestamp) is None for a malformed one."""

    value: bytes
    key: str | None
    row: int = -1  # index of the clean reading


@dataclass
class Scenario:
    name: str
    description: str
    messages: list[Message]
    clean: int
    malformed: int = 0
    change_points: tuple[int, ...] = ()
    crash_at: int | None = None  # SIGKILL the edge app after this many messages were sent
    extra: dict = field(default_factory=dict)


def thing_name(scenario: str) -> str:
    """The simulated Pi a scenario runs on (its thing name)."""
    return f"pi-{scenario}"


def _reading(row: dict[str, str], device: str, shift: float = 0.0) -> dict:
    out: dict = {"device": device, "Date_time": row["Date_time"]}
    for name, value in row.items():
        if name != "Date_time":
            out[name] = round(float(value) + shift, 4)
    return out


def _bad(i: int, reading: dict) -> bytes:
    kinds = (
        lambda r: b"{not json",
        lambda r: json.dumps({k: v for k, v in r.items() if k != "Ot_avg"}).encode(),  # missing_field
        lambda r: json.dumps({**r, "Db1t_avg": "warm"}).encode(),  # non_numeric
        lambda r: json.dumps({**r, "Gb1t_avg": 1.0e9}).encode(),  # out_of_range
        lambda r: json.dumps({k: v for k, v in r.items() if k != "Date_time"}).encode(),  # missing_timestamp
    )
    return kinds[i % len(kinds)](reading)


def build(name: str, rows: int | None = None, device: str = "turbine-1") -> Scenario:
    """A scenario over the first ``rows`` readings of the stream (``STREAM_ROWS`` when None)."""
    stream = read_rows(STREAM, 0, rows or STREAM_ROWS)
    n = len(stream)
    if name not in ALL_SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (choose from {', '.join(ALL_SCENARIOS)})")
    span = (n // 3, 2 * n // 3) if name == "step" else None
    messages: list[Message] = []
    malformed = 0
    for i, row in enumerate(stream):
        shift = STEP_SIZE if span and span[0] <= i < span[1] else 0.0
        reading = _reading(row, device, shift)
        messages.append(Message(json.dumps(reading).encode(), f"{device}|{row['Date_time']}", i))
        if name == "malformed" and (i + 1) % BAD_EVERY == 0:
            messages.append(Message(_bad(malformed, reading), None))
            malformed += 1
    descriptions = {
        "none": "the recorded stream, no synthetic drift",
        "step": f"every column +{STEP_SIZE:g} degC on readings [{n // 3}, {2 * n // 3})",
        "malformed": f"the recorded stream with a malformed message after every {BAD_EVERY}th reading",
        "crash": "the recorded stream; the edge app is SIGKILLed half-way and restarted",
    }
    return Scenario(
        name=name,
        description=descriptions[name],
        messages=messages,
        clean=n,
        malformed=malformed,
        change_points=span or (),
        crash_at=len(messages) // 2 if name == "crash" else None,
    )
