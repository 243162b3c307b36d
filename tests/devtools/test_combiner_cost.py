"""``python -m hybridstream.devtools.combiner_cost --backends c,numpy``: both backends timed in one process, each
with its ``pair_extra_us``; a backend it does not know is a usage error. (The figures are BENCHMARKS.md's.)"""

from __future__ import annotations

import json

import pytest

from hybridstream.devtools import combiner_cost
from model_contract import online_linear_kernel


def test_both_backends_in_one_run(monkeypatch, capsys):
    monkeypatch.delenv(online_linear_kernel.ENV_BACKEND, raising=False)  # restored after the test, as it was
    try:
        assert combiner_cost.main(["--records", "200", "--repeat", "1", "--backends", "c,numpy"]) == 0
    finally:
        online_linear_kernel.reset_for_tests()
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["backends"].keys() == {"c", "numpy"} and out["records"] == 200
    for got in out["backends"].values():
        assert got.keys() == {"online_linear_us", "context_us", "experts_us", "pair_us", "pair_extra_us"}
        assert all(v > 0 for k, v in got.items() if k != "pair_extra_us")
        assert got["pair_extra_us"] == pytest.approx(got["pair_us"] - got["context_us"], abs=0.011)


def test_an_unknown_backend_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        combiner_cost.main(["--backends", "c,fortran"])
    assert exc.value.code == 2 and "--backends takes c and/or numpy" in capsys.readouterr().err
