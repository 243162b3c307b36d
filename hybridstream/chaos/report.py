"""``reports/chaos/results.json`` (everything) and ``report.md`` (the table the README quotes)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from hybridstream.chaos.result import Result

COLUMNS = [
    ("scenario", "name"),
    ("readings sent", "readings_sent"),
    ("predicted", "readings_predicted"),
    ("duplicated", "readings_duplicated"),
    ("lost", "readings_lost"),
    ("windows sent", "windows_sent"),
    ("delivered", "windows_delivered"),
    ("lost", "windows_lost"),
    ("models rejected", "models_rejected"),
    ("recovery s", "recovery_s"),
    ("result", "passed"),
]


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": round(load[0], 2),
        "python": platform.python_version(),
    }


def _cell(value: Any, key: str) -> str:
    if key == "passed":
        return "**FAIL** (known gap)" if value == "known" else "**pass**" if value else "**FAIL**"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: list[Result], known: tuple[str, ...] = ()) -> str:
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    sep = "|" + "|".join("---" if k == "name" else "---:" for _, k in COLUMNS) + "|"
    rows = []
    for r in results:
        d = r.to_dict()
        if not r.passed and r.scenario_id in known:
            d["passed"] = "known"
        rows.append("| " + " | ".join(_cell(d[k], k) for _, k in COLUMNS) + " |")
    return "\n".join([head, sep, *rows])


def markdown(results: list[Result], meta: dict[str, Any]) -> str:
    passed = sum(r.passed for r in results)
    lines = [
        "# Chaos report",
        "",
        f"`{meta['command']}` at {meta['started']} UTC, {meta['seconds']:.0f} s, "
        f"{'quick' if meta['quick'] else 'full'} mode: **{passed}/{len(results)} scenarios passed**. "
        f"Machine: {meta['machine']['cpus']} CPUs, load average {meta['machine']['loadavg_1m']} (1 min) at the end.",
        "",
        table(results, tuple(meta.get("known_failing", ()))),
        "",
        "Readings: sent = acknowledged by the broker to the load generator; predicted = distinct idempotency "
        "keys with a prediction; duplicated = extra predictions (same key, same reading); lost = sent - "
        "predicted. Windows: sent = closed by the edge (delivered + still spooled + quarantined); "
        "recovery = seconds from the end of the fault to the first new output (per scenario: see checks).",
        "",
    ]
    for r in results:
        lines.append(f"## {r.name} ({r.family}): {'pass' if r.passed else 'FAIL'}, {r.seconds:.0f} s")
        if r.error:
            lines.append(f"- error: `{r.error.splitlines()[0][:300]}`")
        for name, ok in r.checks.items():
            lines.append(f"- [{'x' if ok else ' '}] {name}")
        if r.figures:
            lines.append(f"- figures: `{json.dumps(r.figures, default=str)[:1500]}`")
        for note in r.notes:
            if not note.startswith("Traceback"):
                lines.append(f"- note: {note}")
        lines.append("")
    return "\n".join(lines)


def write(results: list[Result], out_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "machine": machine(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}
    payload = {"meta": meta, "passed": all(r.passed for r in results), "scenarios": [r.to_dict() for r in results]}
    json_path, md_path = out_dir / "results.json", out_dir / "report.md"
    json_path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    md_path.write_text(markdown(results, meta))
    return json_path, md_path
