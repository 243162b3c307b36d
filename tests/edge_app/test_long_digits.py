"""parse_reading's test for 19-digit runs (the readings orjson would read differently from json.loads) finds what
the regular expression it replaced finds (edge_app/records.py)."""

from __future__ import annotations

import json
import random
import re

import orjson
import pytest

from edge_app.records import _long_digits, parse_reading
from model_contract import FeatureSpec

SPEC = FeatureSpec(columns=("a", "b", "c"), target="c")


def test_the_19_digit_test_finds_what_the_regular_expression_finds() -> None:
    rng = random.Random(19)
    alphabet = b'0123456789.,-e"{}: x\xff'
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        if rng.random() < 0.3:
            raw += str(rng.randrange(10**17, 10**21)).encode()
        assert _long_digits(raw) == bool(re.search(rb"\d{19}", raw)), raw
        assert _long_digits(bytearray(raw)) == _long_digits(raw)


@pytest.mark.parametrize("number", ["1234567890123456789", "12345678901234567890", "1" * 30, "123456789012345678"])
def test_readings_with_long_integers_parse_as_json_loads_reads_them(number: str) -> None:
    raw = f'{{"device": {number}, "Date_time": "2017-01-01T00:10:00", "a": {number}, "b": 1.5, "c": 2.5}}'.encode()
    reading = parse_reading(raw, None, SPEC)
    exact = json.loads(raw)
    assert reading.device == str(exact["device"]) and reading.values[0] == float(exact["a"])
    assert orjson.loads(b"[1.5]") == [1.5]  # orjson is installed: the shortcut is what this test exercises
