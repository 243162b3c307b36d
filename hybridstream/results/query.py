"""What ``hybridstream results`` asks, as SQL for either engine, and its answer as rows of dicts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from infra.forecast_queries import readings_sql, rmse_sql, where_clause, worst_sql

QUERIES = ("rmse", "worst", "readings", "anomalies")


class Engine(Protocol):
    def query(self, sql: str) -> tuple[list[str], list[tuple]]: ...


def utc_text(text: str) -> str:
    """An ISO date or date-time (``Z``/offset or naive = UTC) as the table's ``time_utc`` text.

    >>> utc_text("2017-01-14"), utc_text("2017-01-14T01:00:00+01:00")
    ('2017-01-14 00:00:00.000000', '2017-01-14 00:00:00.000000')
    """
    try:
        t = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"not a date or time: {text!r} (e.g. 2017-01-14 or 2017-01-14T06:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Request:
    """One question: which query, over which things/device and UTC time range."""

    query: str = "rmse"
    things: list[str] = field(default_factory=list)
    device: str | None = None
    since: str | None = None  # time_utc text (see utc_text)
    until: str | None = None
    by_day: bool = False
    limit: int = 20
    day_margin: int = 1  # partition days before ``since`` still read (a window's day is its first reading's)

    def __post_init__(self) -> None:
        if self.query not in QUERIES:
            raise ValueError(f"unknown query {self.query!r} (one of {', '.join(QUERIES)})")

    def partition_days(self) -> tuple[str, str] | None:
        """The ``day`` partitions to read (Athena: prunes what is scanned), None when unbounded."""
        if not self.since:
            return None
        first = datetime.fromisoformat(self.since[:10]) - timedelta(days=self.day_margin)
        last = datetime.fromisoformat(self.until[:10]) if self.until else datetime.now(UTC).replace(tzinfo=None)
        return first.strftime("%Y/%m/%d"), last.strftime("%Y/%m/%d")

    def sql(self, table: str, prune: bool = True) -> str:
        days = self.partition_days() if prune else None
        where = where_clause(self.things or None, self.device, self.since, self.until, days)
        if self.query == "rmse":
            return rmse_sql(table, where, by_day=self.by_day)
        if self.query == "worst":
            return worst_sql(table, where, self.limit)
        return readings_sql(table, where, anomalies_only=self.query == "anomalies")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def run(engine: Engine, request: Request, table: str, prune: bool = True) -> list[dict[str, Any]]:
    """The answer as one dict per row (column -> Python value; NaN/inf -> None)."""
    columns, rows = engine.query(request.sql(table, prune))
    return [{c: _clean(v) for c, v in zip(columns, row, strict=True)} for row in rows]


def table_text(rows: list[dict[str, Any]], digits: int = 4) -> str:
    """A Markdown table of the rows (floats to ``digits`` decimals)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
