"""The subset of AWS IoT SQL (version 2016-03-23) the project's topic rules use, evaluated in Python.

The local IoT-rule router runs each rule's *SQL text* (``TopicRule.sql()``, the string the CDK
stack deploys) through this evaluator, so the local loop and AWS read one definition. Supported:
``SELECT *`` and ``<expr> AS <name>`` items, ``FROM '<topic filter>'``, ``WHERE`` with ``AND``,
``OR``, ``NOT``, ``=``/``<>``, parentheses, string/number/boolean literals, payload fields
(dotted paths), and the functions ``topic()``, ``topic(n)``, ``isUndefined(x)``,
``startswith(s, prefix)``, ``concat(...)``, ``timestamp()``, ``newuuid()`` and
``parse_time(pattern, ms)``; :func:`substitute` fills ``${...}`` templates of action parameters.
Anything else raises :class:`SqlError` when the statement is parsed (at router start), not when a
message arrives.

Semantics follow the AWS IoT SQL reference (https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-reference.html):
``topic(n)`` is the n-th segment (1-based); an absent field is *Undefined*, and a ``WHERE`` that
is not Boolean ``true`` (Undefined included) does not fire the rule; ``startswith`` of a
non-string is Undefined; ``concat`` of an Undefined argument is Undefined.

>>> q = parse("SELECT *, topic(2) AS thing FROM 'hybridstream/+/windows' WHERE isUndefined(key) = false")
>>> q.evaluate("hybridstream/pi-1/windows", {"key": "k"})
{'key': 'k', 'thing': 'pi-1'}
>>> q.evaluate("hybridstream/pi-1/windows", {"rows": 3}) is None
True
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from model_contract.topics import topic_matches


class SqlError(ValueError):
    """A statement outside the supported subset."""


class _Undefined:
    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED = _Undefined()

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|=|\(|\)|,|\*)|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SqlError(f"cannot read the SQL at {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


@dataclass
class _Ctx:
    topic: str
    payload: Mapping[str, Any]


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, upper: bool = True) -> str:
        if self.i >= len(self.toks):
            return ""
        return self.toks[self.i][1].upper() if upper else self.toks[self.i][1]

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise SqlError(f"unexpected end of statement (wanted {expected or 'more'})")
        tok = self.toks[self.i]
        if expected is not None and tok[1].upper() != expected:
            raise SqlError(f"expected {expected}, found {tok[1]!r}")
        self.i += 1
        return tok

    # expression grammar: or -> and -> not -> cmp -> atom
    def expr(self):
        left = self.and_()
        while self.peek() == "OR":
            self.take()
            right = self.and_()
            left = (lambda a, b: lambda c: _or(a(c), b(c)))(left, right)
        return left

    def and_(self):
        left = self.not_()
        while self.peek() == "AND":
            self.take()
            right = self.not_()
            left = (lambda a, b: lambda c: _and(a(c), b(c)))(left, right)
        return left

    def not_(self):
        if self.peek() == "NOT":
            self.take()
            inner = self.not_()
            return lambda c: (not v) if isinstance(v := inner(c), bool) else UNDEFINED
        return self.cmp()

    def cmp(self):
        left = self.atom()
        if self.peek() in ("=", "<>", "!="):
            op = self.take()[1]
            right = self.atom()
            eq = op == "="
            return lambda c: _compare(left(c), right(c), eq)
        return left

    def atom(self):
        kind, text = self.take()
        if kind == "str":
            value = text[1:-1].replace("''", "'")
            return lambda c: value
        if kind == "num":
            value = float(text) if "." in text else int(text)
            return lambda c: value
        if text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if kind != "word":
            raise SqlError(f"unexpected {text!r}")
        upper = text.upper()
        if upper in ("TRUE", "FALSE"):
            return lambda c: upper == "TRUE"
        if self.peek() == "(":
            return self.call(text)
        path = text.split(".")
        return lambda c: _field(c.payload, path)

    def call(self, name: str):
        self.take("(")
        args = []
        if self.peek() != ")":
            args.append(self.expr())
            while self.peek() == ",":
                self.take()
                args.append(self.expr())
        self.take(")")
        fn = _FUNCTIONS.get(name.lower())
        if fn is None:
            raise SqlError(f"function {name}() is not supported by the local router")
        return lambda c: fn(c, [a(c) for a in args])


def _field(payload: Any, path: list[str]) -> Any:
    value = payload
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return UNDEFINED
        value = value[part]
    return value  # JSON null is Null, not Undefined (isUndefined(null) is false)


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return True if a is True and b is True else UNDEFINED


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return False if a is False and b is False else UNDEFINED


def _compare(a: Any, b: Any, eq: bool) -> Any:
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    same = a == b and type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float) and a == b)
    return same if eq else not same


def _topic(ctx: _Ctx, args: list[Any]) -> Any:
    if not args:
        return ctx.topic
    parts = ctx.topic.split("/")
    n = args[0]
    if not isinstance(n, int) or not 1 <= n <= len(parts):
        return UNDEFINED
    return parts[n - 1]


def _is_undefined(ctx: _Ctx, args: list[Any]) -> Any:
    if len(args) != 1:
        raise SqlError("isUndefined() takes one argument")
    return args[0] is UNDEFINED


def _startswith(ctx: _Ctx, args: list[Any]) -> Any:
    if len(args) != 2:
        raise SqlError("startswith() takes two arguments")
    s, prefix = args
    if not isinstance(s, str) or not isinstance(prefix, str):
        return UNDEFINED
    return s.startswith(prefix)


def _concat(ctx: _Ctx, args: list[Any]) -> Any:
    if any(a is UNDEFINED for a in args):
        return UNDEFINED
    return "".join(a if isinstance(a, str) else str(a) for a in args)


def _timestamp(ctx: _Ctx, args: list[Any]) -> Any:
    return int(time.time() * 1000)


def _newuuid(ctx: _Ctx, args: list[Any]) -> Any:
    return str(uuid.uuid4())


_JAVA_PATTERN = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def _parse_time(ctx: _Ctx, args: list[Any]) -> Any:
    """``parse_time(pattern, epoch_ms)`` in UTC, for the pattern letters yyyy MM dd HH mm ss."""
    if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], int | float):
        return UNDEFINED
    pattern = args[0]
    for java, py in _JAVA_PATTERN:
        pattern = pattern.replace(java, py)
    return datetime.fromtimestamp(args[1] / 1000, tz=UTC).strftime(pattern)


_FUNCTIONS = {
    "topic": _topic,
    "isundefined": _is_undefined,
    "startswith": _startswith,
    "concat": _concat,
    "timestamp": _timestamp,
    "newuuid": _newuuid,
    "parse_time": _parse_time,
}


def substitute(template: str, topic: str, payload: Mapping[str, Any]) -> str:
    """An action parameter with IoT substitution templates (``${expression}``) filled in.

    >>> substitute("results/${topic(2)}/${n}.json", "hybridstream/pi-1/results", {"n": 3})
    'results/pi-1/3.json'
    """
    ctx = _Ctx(topic, payload)

    def one(match: re.Match) -> str:
        p = _Parser(match.group(1))
        value = p.expr()(ctx)
        return "" if value is UNDEFINED else str(value)

    return re.sub(r"\$\{([^}]*)\}", one, template)


@dataclass
class Statement:
    """A parsed rule: ``evaluate(topic, payload)`` is the rule's output, or None when it does not fire."""

    text: str
    topic_filter: str
    star: bool
    items: list[tuple[str, Any]]
    where: Any

    def evaluate(self, topic: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        if not topic_matches(self.topic_filter, topic):
            return None
        ctx = _Ctx(topic, payload)
        if self.where is not None and self.where(ctx) is not True:
            return None
        out: dict[str, Any] = dict(payload) if self.star else {}
        for name, fn in self.items:
            value = fn(ctx)
            if value is not UNDEFINED:
                out[name] = value
        return out


def parse(text: str) -> Statement:
    """Parse one ``SELECT ... FROM '...' [WHERE ...]`` statement."""
    p = _Parser(text)
    p.take("SELECT")
    star, items = False, []
    while True:
        if p.peek() == "*":
            p.take()
            star = True
        else:
            expr = p.expr()
            p.take("AS")
            kind, name = p.take()
            if kind != "word":
                raise SqlError(f"bad column name {name!r}")
            items.append((name, expr))
        if p.peek() != ",":
            break
        p.take()
    p.take("FROM")
    kind, source = p.take()
    if kind != "str":
        raise SqlError("FROM needs a quoted topic filter")
    where = None
    if p.peek() == "WHERE":
        p.take()
        where = p.expr()
    if p.i != len(p.toks):
        raise SqlError(f"unexpected {p.peek(False)!r} after the statement")
    return Statement(text, source[1:-1], star, items, where)
