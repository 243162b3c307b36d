"""``python -m hybridstream.devtools.combiner_stage``: the combiner stage's steps timed apart in one run (the stage,
without the band, the combiner alone) and the differences it derives; bad sizes are a usage error. (The figures
are BENCHMARKS.md's.)"""

from __future__ import annotations

import json

import pytest

from hybridstream.devtools import combiner_stage


def test_the_stage_and_its_parts_in_one_run(capsys):
    assert combiner_stage.main(["--records", "300", "--repeat", "1", "--devices", "3"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["records"] == 300 and out["devices"] == 3 and out["backend"] in ("c", "numpy")
    assert all(out[k] > 0 for k in ("stage_us", "no_band_us", "combiner_us"))
    assert out["band_us"] == pytest.approx(out["stage_us"] - out["no_band_us"], abs=0.011)
    assert out["glue_us"] == pytest.approx(out["no_band_us"] - out["combiner_us"], abs=0.011)


def test_no_readings_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        combiner_stage.main(["--records", "0"])
    assert exc.value.code == 2 and "must be >= 1" in capsys.readouterr().err
