"""The local engine: mirror ``forecasts/`` from an S3 endpoint (the local stack's radosgw) into a folder,
then run the same SQL as Athena with DuckDB over those files (``read_json``; the partitions ``thing``
and ``day`` come from each file's path, as Athena's projection takes them from the key).

DuckDB rather than pandas: the queries are the stack's SQL (window functions, a self-join), so the
local answers come from the same statements as Athena's instead of a second implementation
(BENCHMARKS.md has the timing next to pandas).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_contract.forecasts import ALL_FIELDS
from model_contract.layout import FORECASTS_PREFIX, FORECASTS_SUFFIX, forecasts_partition

DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "int": "INTEGER", "boolean": "BOOLEAN"}
VIEW = "forecasts"


def mirror(
    s3: Any, bucket: str, dest: Path, things: list[str] | None = None, say: Callable[[str], None] | None = None
) -> list[Path]:
    """Download ``forecasts/[<thing>/]...`` of ``bucket`` under ``dest`` (same relative keys); an object
    already there with the same size is kept (keys are idempotent: a window's forecasts never change)."""
    prefixes = [f"{FORECASTS_PREFIX}/{t}/" for t in things] if things else [f"{FORECASTS_PREFIX}/"]
    files, fetched = [], 0
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                try:
                    forecasts_partition(key)
                except ValueError:
                    continue
                target = dest / key
                if not (target.exists() and target.stat().st_size == obj["Size"]):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{target.name}.tmp")
                    s3.download_file(bucket, key, str(tmp))
                    tmp.replace(target)
                    fetched += 1
                files.append(target)
                if say and len(files) % 100 == 0:
                    say(f"results: {len(files)} forecasts objects listed, {fetched} downloaded")
    if say:
        say(f"results: {len(files)} forecasts objects from s3://{bucket}/{FORECASTS_PREFIX}/ ({fetched} downloaded)")
    return files


def local_files(root: Path) -> list[Path]:
    """Every forecasts object under ``root`` (a folder laid out as the bucket: ``forecasts/<thing>/...``)."""
    base = root / FORECASTS_PREFIX if (root / FORECASTS_PREFIX).is_dir() else root
    return sorted(p for p in base.rglob(f"*{FORECASTS_SUFFIX}") if not p.name.startswith("."))


class LocalEngine:
    """DuckDB over forecasts files; :meth:`query` returns (columns, rows of Python values)."""

    def __init__(self, files: list[Path]) -> None:
        try:
            import duckdb
        except ImportError as exc:  # pragma: no cover - installed by make setup
            raise RuntimeError("the local engine needs DuckDB: run `make setup` (requirements-dev.txt)") from exc
        if not files:
            raise FileNotFoundError("no forecasts objects (forecasts/<thing>/<yyyy>/<mm>/<dd>/*.jsonl.gz) found")
        self.files = files
        self.db = duckdb.connect(":memory:")
        self.db.execute("SET TimeZone = 'UTC'")
        columns = "{" + ", ".join(f"'{n}': '{DUCK_TYPES[t]}'" for n, t, _ in ALL_FIELDS) + "}"
        listing = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        # thing and day from the path, as Athena's projection: .../forecasts/<thing>/<yyyy>/<mm>/<dd>/<id>.jsonl.gz
        self.db.execute(
            f"""CREATE VIEW {VIEW} AS
            SELECT * EXCLUDE (filename),
                   regexp_extract(filename, '([^/]+)/[0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}}/[^/]+$', 1) AS thing,
                   regexp_extract(filename, '/([0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}})/[^/]+$', 1) AS day
            FROM read_json({listing}, format = 'newline_delimited', columns = {columns}, filename = true)"""
        )

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        cur = self.db.execute(sql)
        columns = [d[0] for d in cur.description]
        return columns, [tuple(r) for r in cur.fetchall()]


def stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
