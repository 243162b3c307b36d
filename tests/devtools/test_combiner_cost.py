"""``python -m hybridstream.devtools.combiner_cost --backends c,numpy``: both backends timed in one process, each
with its ``pair_extra_us`` and ``corrected_extra_us``; a backend it does not know is a usage error; each key times
the combiner it names (explicit configs). ``edge_stages``' ``--blend`` names too. (The figures are BENCHMARKS.md's.)"""

from __future__ import annotations

import json

import pytest

from edge_app.combiners import make_combiner
from edge_app.context_stacking import ContextStacking, CorrectedContextStacking
from hybridstream.devtools import combiner_cost, edge_stages
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
        extra = {"pair_extra_us", "corrected_extra_us"}
        assert got.keys() == {"online_linear_us", "context_us", "experts_us", "pair_us", "corrected_us"} | extra
        assert all(v > 0 for k, v in got.items() if k not in extra)
        assert got["pair_extra_us"] == pytest.approx(got["pair_us"] - got["context_us"], abs=0.011)
        assert got["corrected_extra_us"] == pytest.approx(got["corrected_us"] - got["pair_us"], abs=0.011)


@pytest.mark.parametrize(
    ("key", "name", "cls", "blend"),
    [
        ("context_us", "none", ContextStacking, "none"),
        ("experts_us", "experts", ContextStacking, "experts"),
        ("pair_us", "pair", ContextStacking, "pair"),
        ("corrected_us", "corrected", CorrectedContextStacking, "pair"),
    ],
)
def test_each_timing_runs_the_combiner_it_names_whatever_the_default(key, name, cls, blend):
    """Explicit configs: ``context_us`` / ``--blend none`` is the stack alone (it was the default's pair + layer),
    ``pair`` has no correction layer, ``corrected`` is the edge's default (pair + the layer)."""
    for config in (combiner_cost.CONFIGS[key], edge_stages.combination(name)):
        c = make_combiner(config, target_index=0)
        assert type(c) is cls and c.blend == blend, (key, config)
    assert type(make_combiner({}, target_index=0)) is CorrectedContextStacking  # what "corrected" stands for


def test_an_unknown_blend_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        edge_stages.main(["--blend", "none,stacked"])
    assert (
        exc.value.code == 2 and "--blend takes none, pair, experts, corrected, not stacked" in capsys.readouterr().err
    )


def test_an_unknown_backend_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        combiner_cost.main(["--backends", "c,fortran"])
    assert exc.value.code == 2 and "--backends takes c and/or numpy" in capsys.readouterr().err
