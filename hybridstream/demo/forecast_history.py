"""After the scenarios: the forecast history as ``hybridstream results --local`` sees it, beside the report's figures.

The forecasts every window carried to the local S3 (radosgw; ``edge`` mode: the local outbox) are
copied into the report folder (``forecasts/``, which ``hybridstream results --local`` reads once the
demo has stopped radosgw), queried with the same code as the CLI (DuckDB, the stack's SQL), and
checked against the report: per scenario, every predicted reading once, and the same RMSE for
batch, speed, static, dynamic and persistence (rounded as the report rounds, 4 decimals).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hybridstream.demo.scenarios import thing_name
from hybridstream.results import query
from hybridstream.results.local import LocalEngine, local_files, mirror
from model_contract.layout import FORECASTS_PREFIX

COMPARED = ("batch", "speed", "static", "dynamic", "persistence")
COMMAND = "hybridstream results --local"


def collect(report_dir: Path, *, s3: Any = None, bucket: str = "", folder: Path | None = None) -> list[Path]:
    """Copy the forecasts objects into ``report_dir/forecasts/`` (from S3, or a local uploader's folder)."""
    if s3 is not None:
        mirror(s3, bucket, report_dir, say=lambda text: print(f"demo: {text}", flush=True))
    elif folder is not None and (folder / FORECASTS_PREFIX).is_dir():
        shutil.copytree(folder / FORECASTS_PREFIX, report_dir / FORECASTS_PREFIX, dirs_exist_ok=True)
    return local_files(report_dir / FORECASTS_PREFIX)


def compare(rows: list[dict[str, Any]], scenarios: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario (thing ``pi-<scenario>``): readings vs predicted, and each RMSE vs the report's."""
    out = {}
    for name, s in scenarios.items():
        mine = [r for r in rows if r["thing"] == thing_name(name)]
        readings = sum(r["readings"] for r in mine)
        check: dict[str, Any] = {"readings": readings, "predicted": s.get("predicted"), "rmse": {}}
        if len(mine) == 1:
            for a in COMPARED:
                ours = mine[0].get(a)
                report = (s.get("approaches", {}).get(a) or {}).get("rmse")
                check["rmse"][a] = {"results": None if ours is None else round(ours, 4), "report": report}
        check["equal"] = (
            len(mine) == 1
            and readings == s.get("predicted")
            and all(v["results"] == v["report"] for v in check["rmse"].values())
        )
        out[name] = check
    return out


def forecast_history(
    report_dir: Path, scenarios: dict[str, dict[str, Any]], files: list[Path], plot_scenario: str | None = None
) -> dict[str, Any]:
    """The CLI's rmse answer over ``files``, its check against the report, and a forecast-vs-actual plot."""
    engine = LocalEngine(files)
    rows = query.run(engine, query.Request("rmse"), "forecasts", prune=False)
    checks = compare(rows, scenarios)
    result: dict[str, Any] = {
        "command": COMMAND,
        "objects": len(files),
        "rows": rows,
        "checks": checks,
        "equal_to_report": bool(checks) and all(c["equal"] for c in checks.values()),
    }
    name = plot_scenario if plot_scenario in scenarios else next(iter(scenarios), None)
    if name is not None:
        from hybridstream.results.plot import plot_readings

        thing = f"pi-{name}"
        readings = query.run(engine, query.Request("readings", things=[thing]), "forecasts", prune=False)
        devices = sorted({r["device"] for r in readings})
        if devices:
            mine = [r for r in readings if r["device"] == devices[0]]
            shown = mine[len(mine) // 2 - 150 : len(mine) // 2 + 150] if len(mine) > 300 else mine
            path = plot_readings(
                shown,
                report_dir / f"forecast-{name}.png",
                title=f"{thing} / {devices[0]}: forecast vs actual (hybridstream results)",
            )
            since, until = shown[0]["time_utc"][:19].replace(" ", "T"), shown[-1]["time_utc"][:19].replace(" ", "T")
            result["plot"] = path.name
            result["plot_command"] = (
                f"{COMMAND} readings --thing {thing} --device {devices[0]} --since {since}Z --until {until}Z "
                f"--plot {path.name}"
            )
    return result


def markdown(history: dict[str, Any]) -> list[str]:
    """The report's section: the CLI's table, the check against the table above, the plot."""
    lines = [f"## Forecast history (`{history['command']}`)", ""]
    if history.get("error"):
        return [*lines, f"Not available: {history['error']}", ""]
    lines += [
        f"What reached the local S3 beside the windows ({history['objects']} forecasts objects, copied to "
        f"`forecasts/` here), queried as `{history['command']}` does (DuckDB, the Athena workgroup's SQL):",
        "",
        query.table_text(history["rows"], digits=3),
        "",
    ]
    for name, c in history["checks"].items():
        verdict = "equal to" if c["equal"] else "**differs from**"
        diffs = [f"{a} {v['results']} vs {v['report']}" for a, v in c["rmse"].items() if v["results"] != v["report"]]
        lines.append(
            f"- {name}: {c['readings']} readings for {c['predicted']} predicted; RMSEs {verdict} the report's"
            + (f" ({'; '.join(diffs)})" if diffs else "")
        )
    lines.append("")
    if history.get("plot"):
        lines += [f"`{history['plot_command']}`", "", f"![forecast vs actual]({history['plot']})", ""]
    return lines
