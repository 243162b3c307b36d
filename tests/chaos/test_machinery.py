"""The chaos suite's own pieces: the fuzz generator's coverage, the report writer."""

from __future__ import annotations

import json
from collections import Counter

from hybridstream.chaos.fuzz import GOOD_DEVICES, build_stream, generate
from hybridstream.chaos.harness import Readings
from hybridstream.chaos.report import write
from hybridstream.chaos.result import Result


def test_the_generator_covers_every_kind_of_bad_record():
    good = json.loads(Readings().one("g0", 0)[1])
    bad = generate(600, good)
    kinds = Counter(c for c, _ in bad)
    assert len(bad) >= 600
    assert len(kinds) == 18, kinds  # every category drawn
    assert all(isinstance(v, bytes) for c, v in bad if c != "replay")


def test_the_stream_interleaves_bad_records_with_keys(tmp_path):
    class Ctx:
        readings = Readings()

    records, good_keys, bad_keys = build_stream(Ctx(), 300, 40)
    assert len(good_keys) == 40 * len(GOOD_DEVICES)
    assert len(bad_keys) >= 290 and len(records) == len(good_keys) + len(bad_keys)
    assert records[0][0] in {d.encode() for d in GOOD_DEVICES}  # a good one first, bad ones among them
    assert any(k.startswith(b"bad-") for k, _ in records[:10])


def test_report_files(tmp_path):
    ok, bad = Result("a", "x"), Result("b", "y")
    ok.check("fine", True)
    bad.check("broken", False)
    meta = {"command": "make chaos", "quick": True, "started": "t", "seconds": 1}
    json_path, md_path = write([ok, bad], tmp_path, meta)
    data = json.loads(json_path.read_text())
    assert [s["passed"] for s in data["scenarios"]] == [True, False]
    assert "**FAIL**" in md_path.read_text() and "- [ ] broken" in md_path.read_text()
