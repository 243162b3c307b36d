"""The demo's scenarios: what goes into Kafka, built from the committed turbine sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybridstream.demo import scenarios as sc

REPO = Path(__file__).resolve().parents[2]


def test_the_sample_data_is_committed_and_credited():
    assert sc.HISTORY.is_file() and sc.STREAM.is_file()
    assert "La Haute Borne" in (sc.DATA / "README.md").read_text()


def test_step_shifts_every_column_on_the_middle_third():
    none, step = sc.build("none", 300), sc.build("step", 300)
    assert step.change_points == (100, 200) and step.clean == 300 and step.malformed == 0
    for i in (0, 99, 100, 199, 200, 299):
        a, b = json.loads(none.messages[i].value), json.loads(step.messages[i].value)
        shift = 8.0 if 100 <= i < 200 else 0.0
        assert all(b[k] == pytest.approx(a[k] + shift) for k in a if k not in ("device", "Date_time")), i


def test_malformed_mixes_bad_messages_between_clean_readings():
    s = sc.build("malformed", 400)
    bad = [m for m in s.messages if m.key is None]
    assert s.clean == 400 and s.malformed == len(bad) == 400 // sc.BAD_EVERY
    assert len({m.key for m in s.messages if m.key}) == 400  # every clean reading, once
    assert bad[0].value == b"{not json"


def test_crash_is_half_way_and_unknown_names_are_refused():
    assert sc.build("crash", 200).crash_at == 100
    with pytest.raises(ValueError, match="unknown scenario"):
        sc.build("tsunami", 10)


def test_status_without_a_stack_says_so(tmp_path):
    env = {"HYBRIDSTREAM_STATE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "hybridstream", "local", "status"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 3 and "no local stack" in proc.stdout
