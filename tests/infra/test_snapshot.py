"""Snapshot of the default (edge-cloud) template with asset hashes and content versions normalised.

Update after an intended change: ``HYBRIDSTREAM_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/infra/test_snapshot.py``
and review the diff of tests/infra/snapshots/ like code.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "edge-cloud.template.json"
HASH = re.compile(r"\b[0-9a-f]{64}\b")
VERSION = re.compile(r"\b1\.0\.\d+\b")


def normalise(template: dict) -> dict:
    text = json.dumps(template, indent=1, sort_keys=True)
    text = HASH.sub("<asset-hash>", text)
    text = VERSION.sub("1.0.<content-version>", text)
    return json.loads(text)


def _diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{path}/{key}: {'added' if key in b else 'removed'}")
            else:
                out += _diff(a[key], b[key], f"{path}/{key}")
        return out
    return [] if a == b else [f"{path}: changed"]


def test_template_matches_snapshot(default):
    current = normalise(default.raw)
    if os.environ.get("HYBRIDSTREAM_UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    stored = json.loads(SNAPSHOT.read_text())
    differences = _diff(stored, current)
    assert not differences, "template changed (set HYBRIDSTREAM_UPDATE_SNAPSHOTS=1 if intended):\n" + "\n".join(
        differences[:40]
    )


def test_normalisation_hides_only_hashes_and_versions():
    raw = {"a": "s3://b/" + "ab" * 32 + ".zip", "v": "1.0.123456", "keep": "c5.4xlarge"}
    assert normalise(raw) == {"a": "s3://b/<asset-hash>.zip", "v": "1.0.<content-version>", "keep": "c5.4xlarge"}
