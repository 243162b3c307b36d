"""Where the project's own data lives: the turbine series shipped in ``data/turbine/`` (credit in its README).

The one place a tool, benchmark, test or the demo finds the data; nothing reads a folder outside
the repository. Other data is passed by path on the command line (``--csv``, ``--train``, ``--test``).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TURBINE = REPO_ROOT / "data" / "turbine"
"""``train.csv`` (history, 20,000 rows), ``test.csv`` (stream, 30,000), the drift variants, the whole series."""
