"""The SQL over the forecasts table, written once for Athena (Trino) and DuckDB.

The table (:mod:`infra.forecasts`) has one row per reading an edge spooled
(:mod:`model_contract.forecasts`), partitioned by ``thing`` and ``day`` (the day the window
began). The same statements are the stack's named queries (with ``?`` parameters) and what
``hybridstream results`` runs (with literals), against Athena or, locally, DuckDB: only portable
SQL is used (window functions, ``substr``, ``sqrt``, ``power``; no dialect functions).

Every query first keeps one row per (thing, device, timestamp): the upload is at-least-once, so a
reading replayed after a crash can be in two windows. A reading's ``persistence`` forecast is the
actual value ``horizon`` readings earlier on the same device (the naive baseline); ``static`` is
the research prototype's fixed 0.3 speed / 0.7 batch blend. Accuracy is scored where all three
edge forecasts exist, as the demo's report scores it (``hybridstream.demo.results.accuracy``).

>>> 'PARTITION BY thing, device, "timestamp"' in rmse_sql("t", "thing = 'pi-1'")
True
>>> literal("it's")
"'it''s'"
"""

from __future__ import annotations

import re

TABLE_NAME = "forecasts"
APPROACHES = ("batch", "speed", "static", "dynamic", "persistence")
STATIC_SPEED_WEIGHT = 0.3
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9 ._:/+|-]*$")


def literal(value: str) -> str:
    """A SQL string literal (quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def checked(value: str, what: str) -> str:
    """``value`` if it is a plain name/time (letters, digits, ``._:/+-|`` and spaces), else ValueError."""
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError(f"{what} {value!r}: only letters, digits, spaces and . _ : / + - | are accepted")
    return value


def _scored(table: str, where: str) -> str:
    return f"""WITH src AS (
  SELECT thing, device, "timestamp", epoch, time_utc, target, actual, batch, speed, dynamic, horizon,
         model_batch, model_speed, lower, upper, anomaly,
         ROW_NUMBER() OVER (PARTITION BY thing, device, "timestamp" ORDER BY day, epoch) AS copy
  FROM {table}
  WHERE {where}
),
uniq AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY thing, device ORDER BY epoch) AS n FROM src WHERE copy = 1
),
scored AS (
  SELECT r.*, p.actual AS persistence,
         {1 - STATIC_SPEED_WEIGHT} * r.batch + {STATIC_SPEED_WEIGHT} * r.speed AS static,
         r.batch IS NOT NULL AND r.speed IS NOT NULL AND r.dynamic IS NOT NULL AND r.actual IS NOT NULL AS common
  FROM uniq r LEFT JOIN uniq p ON p.thing = r.thing AND p.device = r.device AND p.n = r.n - r.horizon
)"""


def _rmse(name: str) -> str:
    return f"sqrt(avg(CASE WHEN common THEN power({name} - actual, 2) END)) AS {name}"


def rmse_sql(table: str, where: str, by_day: bool = False) -> str:
    """RMSE per thing and device (and UTC day of the reading) of each approach, persistence beside them;
    ``readings``: rows kept (every predicted reading), ``scored``: those with all three edge forecasts."""
    day = ", substr(time_utc, 1, 10) AS day_utc" if by_day else ""
    group = "thing, device" + (", substr(time_utc, 1, 10)" if by_day else "")
    order = "thing, device" + (", day_utc" if by_day else "")
    cols = ",\n       ".join(_rmse(a) for a in APPROACHES)
    return f"""{_scored(table, where)}
SELECT thing, device{day}, count(*) AS readings, count(CASE WHEN common THEN 1 END) AS scored,
       {cols}
FROM scored
GROUP BY {group}
ORDER BY {order}"""


def worst_sql(table: str, where: str, limit: int = 20) -> str:
    """Devices by the dynamic forecast's skill against persistence (1 - RMSE / RMSE of persistence), worst first."""
    return f"""{_scored(table, where)}, acc AS (
SELECT thing, device, count(CASE WHEN common THEN 1 END) AS scored, {_rmse("dynamic")}, {_rmse("persistence")}
FROM scored
GROUP BY thing, device
)
SELECT thing, device, scored, dynamic, persistence,
       CASE WHEN persistence > 0 THEN 1 - dynamic / persistence END AS skill
FROM acc
WHERE scored > 0
ORDER BY skill ASC NULLS FIRST, thing, device
LIMIT {int(limit)}"""


def readings_sql(table: str, where: str, anomalies_only: bool = False) -> str:
    """Forecast against actual, reading by reading (deduplicated, in time order), with the interval when present."""
    flt = "WHERE anomaly = true" if anomalies_only else ""
    return f"""{_scored(table, where)}
SELECT thing, device, "timestamp", time_utc, target, actual, batch, speed, dynamic, static, persistence, lower, upper,
       anomaly, model_batch, model_speed, horizon
FROM scored
{flt}
ORDER BY thing, device, epoch"""


def where_clause(
    things: list[str] | None = None,
    device: str | None = None,
    since: str | None = None,
    until: str | None = None,
    days: tuple[str, str] | None = None,
) -> str:
    """A WHERE clause of literals: the things (Athena's injected partition needs them), the partition days
    (``yyyy/MM/dd`` inclusive, pruning), the device and the readings' UTC time range (``since`` <= t < ``until``)."""
    parts = []
    if things:
        parts.append("thing IN (" + ", ".join(literal(checked(t, "thing")) for t in things) + ")")
    if days:
        parts.append(f"day BETWEEN {literal(checked(days[0], 'day'))} AND {literal(checked(days[1], 'day'))}")
    if device:
        parts.append(f"device = {literal(checked(device, 'device'))}")
    if since:
        parts.append(f"time_utc >= {literal(checked(since, 'since'))}")
    if until:
        parts.append(f"time_utc < {literal(checked(until, 'until'))}")
    return " AND ".join(parts) or "true"


# the stack's named queries: (name, description, SQL with ? parameters) over "<database>"."forecasts"
NAMED = (
    (
        "forecasts-rmse-by-day",
        "Per device of one thing, RMSE by UTC day of batch, speed, static, dynamic and persistence. "
        "Parameters: thing, first day, last day (yyyy/MM/dd, the window's day partition).",
        lambda t: rmse_sql(t, "thing = ? AND day BETWEEN ? AND ?", by_day=True),
    ),
    (
        "forecasts-worst-devices-this-week",
        "Devices of the given things ranked by the dynamic forecast's skill against persistence over the last 7 "
        "days, worst first. Parameters: thing (edit the IN list for more).",
        lambda t: worst_sql(
            t,
            "thing IN (?) AND day >= date_format(current_date - interval '8' day, '%Y/%m/%d') "
            "AND time_utc >= date_format(current_timestamp - interval '7' day, '%Y-%m-%d %H:%i:%s')",
        ),
    ),
    (
        "forecasts-anomalies-of-a-device",
        "Readings of one device whose actual value fell outside the forecast's interval. "
        "Parameters: thing, device, first day, last day (yyyy/MM/dd).",
        lambda t: readings_sql(t, "thing = ? AND device = ? AND day BETWEEN ? AND ?", anomalies_only=True),
    ),
)
