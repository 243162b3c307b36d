"""The Athena engine: start the query in the stack's workgroup, poll with a progress line, fetch the rows.

The workgroup enforces its own result location (encrypted) and a per-query scan limit
(:mod:`infra.forecasts`); a query over the limit fails with Athena's message, shown as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

DONE = {"SUCCEEDED", "FAILED", "CANCELLED"}
_INT = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOAT = {"double", "float", "real", "decimal"}


class AthenaError(RuntimeError):
    """The query failed or was cancelled (Athena's reason in the message)."""


def _convert(value: str | None, kind: str) -> Any:
    if value is None:
        return None
    kind = kind.lower()
    if kind in _INT:
        return int(value)
    if kind in _FLOAT or kind.startswith("decimal"):
        return float(value)
    if kind == "boolean":
        return value.lower() == "true"
    return value


class AthenaEngine:
    """Runs SQL in ``workgroup`` against ``database`` with an ``athena`` boto3 client."""

    def __init__(
        self,
        client: Any,
        workgroup: str,
        database: str,
        *,
        poll_s: float = 1.0,
        timeout_s: float = 600.0,
        say: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.workgroup, self.database = client, workgroup, database
        self.poll_s, self.timeout_s, self.say, self.sleep = poll_s, timeout_s, say, sleep
        self.last: dict[str, Any] = {}  # the last query's execution (statistics: bytes scanned, times)

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        qid = self.client.start_query_execution(
            QueryString=sql, WorkGroup=self.workgroup, QueryExecutionContext={"Database": self.database}
        )["QueryExecutionId"]
        began = time.monotonic()
        while True:
            execution = self.client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
            status = execution["Status"]
            state = status["State"]
            scanned = execution.get("Statistics", {}).get("DataScannedInBytes", 0)
            if self.say:
                self.say(f"athena {qid}: {state}, {time.monotonic() - began:.1f} s, {scanned / 1e6:.2f} MB scanned")
            if state in DONE:
                break
            if time.monotonic() - began > self.timeout_s:
                self.client.stop_query_execution(QueryExecutionId=qid)
                raise AthenaError(f"query {qid} still {state} after {self.timeout_s:.0f} s: stopped")
            self.sleep(self.poll_s)
        self.last = execution
        if state != "SUCCEEDED":
            reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or state
            raise AthenaError(f"query {qid} {state}: {reason}")
        return self._fetch(qid)

    def _fetch(self, qid: str) -> tuple[list[str], list[tuple]]:
        columns: list[str] = []
        kinds: list[str] = []
        rows: list[tuple] = []
        token: dict[str, str] = {}
        first = True
        while True:
            page = self.client.get_query_results(QueryExecutionId=qid, MaxResults=1000, **token)
            result = page["ResultSet"]
            if first:
                info = result["ResultSetMetadata"]["ColumnInfo"]
                columns, kinds = [c["Name"] for c in info], [c["Type"] for c in info]
            data = result.get("Rows", [])
            if first and data:  # a SELECT's first row repeats the column names
                data = data[1:]
            first = False
            for row in data:
                cells = [d.get("VarCharValue") for d in row["Data"]]
                rows.append(tuple(_convert(v, k) for v, k in zip(cells, kinds, strict=True)))
            if not page.get("NextToken"):
                return columns, rows
            token = {"NextToken": page["NextToken"]}
