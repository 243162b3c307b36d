"""``python -m hybridstream.devtools.results_bench``: the local engine of ``hybridstream results`` (DuckDB,
the stack's SQL) against the same RMSE-vs-persistence computed with pandas, on synthetic forecasts files.

pandas is not a project dependency: install it anywhere on ``PYTHONPATH`` to compare (e.g.
``pip install --target /tmp/pd pandas`` and ``PYTHONPATH=.:/tmp/pd``); without it only DuckDB is timed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path


def make_files(root: Path, things: int, readings: int) -> list[Path]:
    from tests.results.synthetic import edge_run, forecasts_records, window_objects

    for t in range(things):
        records = forecasts_records(edge_run(devices=("turbine-1", "turbine-2"), n=readings, seed=t))
        for key, body in window_objects(f"pi-{t:04d}", records, size=1000).items():
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(body)
    return sorted(root.rglob("*.jsonl.gz"))


def duck(files: list[Path]) -> int:
    from hybridstream.results import query
    from hybridstream.results.local import LocalEngine

    return len(query.run(LocalEngine(files), query.Request("rmse"), "forecasts", prune=False))


def pandas_rmse(files: list[Path]) -> int:
    import pandas as pd

    frames = []
    for f in files:
        df = pd.DataFrame([json.loads(line) for line in gzip.decompress(f.read_bytes()).splitlines()])
        df["thing"] = f.parts[-5]
        frames.append(df)
    df = pd.concat(frames, ignore_index=True).drop_duplicates(["thing", "device", "timestamp"])
    df = df.sort_values(["thing", "device", "epoch"])
    df["persistence"] = df.groupby(["thing", "device"])["actual"].shift(1)  # horizon 1 in this data
    df["static"] = 0.7 * df["batch"] + 0.3 * df["speed"]
    common = df[["batch", "speed", "dynamic", "actual"]].notna().all(axis=1)
    sq = (
        df.loc[common, ["batch", "speed", "static", "dynamic", "persistence"]].sub(df.loc[common, "actual"], axis=0)
        ** 2
    )
    sq[["thing", "device"]] = df.loc[common, ["thing", "device"]]
    return len(sq.groupby(["thing", "device"]).mean() ** 0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--things", type=int, default=50)
    p.add_argument("--readings", type=int, default=3000, help="per device (two devices a thing)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.things, args.readings)
        rows = args.things * 2 * args.readings
        print(f"{len(files)} files, {rows} readings")
        for name, fn in (("duckdb", duck), ("pandas", pandas_rmse)):
            try:
                began = time.perf_counter()
                n = fn(files)
                print(f"{name}: {time.perf_counter() - began:.2f} s ({n} device rows)")
            except ImportError as exc:
                print(f"{name}: not installed ({exc})")


if __name__ == "__main__":
    main()
