"""What a new user's clone must hold on its own (issue 16): no tracked file points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a path to the team's study folder beside the clone, or an environment fallback to one (built, not spelled,
# so this file does not match itself)
OUTSIDE = re.compile(r"\.\./" + "shared" + r"|parent\s*/\s*[\"']" + "shared" + r"[\"']|HYBRIDSTREAM_" + "DATASETS")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        return [REPO / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # an export without .git: every file but outputs
        skip = {".git", ".venv", "node_modules", ".cache", "cdk.out", "build", ".local", "reports", "bench-out"}
        return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def test_no_tracked_file_refers_to_a_folder_outside_the_repository():
    hits = []
    for path in _tracked_files():
        if path.suffix == ".csv" or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        hits += [
            f"{path.relative_to(REPO)}:{n}: {line.strip()}"
            for n, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)
        ]
    assert hits == [], "tracked files refer to data outside the clone:\n" + "\n".join(hits)


def test_the_turbine_data_is_shipped_whole():
    from hybridstream.datasets import TURBINE

    rows = {f.name: sum(1 for _ in f.open()) - 1 for f in TURBINE.glob("*.csv")}
    assert rows == {
        "turbine_data.csv": 50_000, "train.csv": 20_000, "test.csv": 30_000,
        "train_gradual_drift.csv": 20_000, "test_gradual_drift.csv": 30_000,
        "train_abrupt_drift.csv": 20_000, "test_abrupt_drift.csv": 30_000,
    }  # fmt: skip
    assert "La Haute Borne" in (TURBINE / "README.md").read_text()  # the credit travels with the data
