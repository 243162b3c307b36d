"""The local router evaluates the rules' own SQL text: it must agree with the rule definitions."""

from __future__ import annotations

import time

import pytest

from hybridstream.servers.iot_router import rule_definitions
from hybridstream.servers.iot_sql import SqlError, parse, substitute

MESSAGES = [
    ("hybridstream/pi-1/windows", {"key": "windows/pi-1/2026/11/26/w1.csv", "rows": 10}),
    ("hybridstream/pi-1/windows", {"key": "windows/pi-2/2026/11/26/w1.csv"}),  # another thing's prefix
    ("hybridstream/pi-1/windows", {"rows": 10}),  # no key
    ("hybridstream/pi-1/windows", {"key": 5}),  # not a string
    ("hybridstream/pi-1/metrics", {"timestamp": "t", "hybrid_rmse": 0.4, "batch_rmse": 0.5, "speed_rmse": 0.6}),
    ("hybridstream/pi-1/metrics", {"timestamp": "t", "hybrid_rmse": 0.4, "latency_ms": 2.0}),
    ("hybridstream/pi-1/results", {"timestamp": "t", "predictions": []}),
    ("hybridstream/pi-1/readings", {"timestamp": "t", "readings": [{"a": 1}]}),
    ("hybridstream/pi-1/readings", {"timestamp": "t"}),
    ("hybridstream/pi-1/other", {"x": 1}),
    ("hybridstream/a/b/windows", {"key": "windows/a/x"}),  # too many levels
    ("elsewhere/pi-1/windows", {"key": "windows/pi-1/x"}),
]


@pytest.mark.parametrize("rule", rule_definitions().RULES, ids=lambda r: r.name)
def test_the_sql_text_and_the_rule_definition_agree(rule, monkeypatch):
    """Both sides read the clock for ``timestamp()``: frozen, or two reads straddle a millisecond (seen in CI)."""
    monkeypatch.setattr(time, "time", lambda: 1_796_620_017.052)
    statement = parse(rule.sql())
    for topic, payload in MESSAGES:
        assert statement.evaluate(topic, payload) == rule.match(topic, payload), (rule.name, topic, payload)


def test_window_rule_adds_thing_and_topic():
    rule = next(r for r in rule_definitions().RULES if r.name == "window_notices")
    out = parse(rule.sql()).evaluate("hybridstream/pi-9/windows", {"key": "windows/pi-9/a.csv"})
    assert out == {"key": "windows/pi-9/a.csv", "thing": "pi-9", "mqtt_topic": "hybridstream/pi-9/windows"}


def test_undefined_semantics():
    q = parse("SELECT * FROM 'a/+' WHERE NOT isUndefined(x) AND startswith(y, concat('p', topic(2)))")
    assert q.evaluate("a/q", {"x": 1, "y": "pqz"}) == {"x": 1, "y": "pqz"}
    assert q.evaluate("a/q", {"x": 1, "y": 3}) is None  # startswith of a number is Undefined: no fire
    assert q.evaluate("a/q", {"y": "pq"}) is None
    assert parse("SELECT * FROM 'a' WHERE isUndefined(x) = false").evaluate("a", {"x": None}) == {"x": None}


def test_substitution_templates_of_the_results_rule():
    module = rule_definitions()
    key = substitute(module.RESULTS_KEY, "hybridstream/pi-1/results", {})
    parts = key.split("/")
    assert parts[:2] == ["results", "pi-1"] and len(parts) == 6 and parts[-1].endswith(".json")
    assert len(parts[2]) == 4 and parts[2].isdigit()  # yyyy


@pytest.mark.parametrize(
    "text",
    ["SELECT * FROM 'a' WHERE regexp_matches(x, 'y')", "SELECT * FROM a", "SELECT x FROM 'a'", "SELECT * FROM 'a' x"],
)
def test_outside_the_subset_fails_at_parse_time(text):
    with pytest.raises(SqlError):
        parse(text)
