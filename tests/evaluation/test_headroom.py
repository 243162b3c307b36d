"""Hindsight ceilings (``eval table --headroom``) on generated runs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from hybridstream.cli import main
from hybridstream.evaluation.headroom import causal_layer, gains, headroom, mean_of
from hybridstream.evaluation.online_run import RunResult
from hybridstream.evaluation.report import headroom_table
from model_contract import FeatureSpec


def experts(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A random-walk truth; online_linear = truth + independent noise (its error is independent of its forecast,
    so no reweighting of it helps), the three others independent noise around zero."""
    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.normal(0, 0.3, n))
    f = {k: rng.normal(0, 1.0, n) for k in ("batch", "speed", "persistence")}
    f["online_linear"] = y + rng.normal(0, 0.2, n)
    f["static"] = f["batch"]
    f["dynamic"] = f["online_linear"]
    return y, f


def test_an_exact_blend_has_a_ceiling_of_zero_mse():
    y, f = experts()
    y = 0.5 * f["online_linear"] + 0.3 * f["batch"] + 0.2 * f["persistence"]  # no speed model in it
    h = headroom(y, f, 1000)
    for c in ("fixed", "block", "fixed no speed", "block no speed"):  # in sample: plain least squares
        assert all(v < 1e-20 for v in h["mse"][c].values()), c
    g = gains(h["mse"])
    assert g["fixed"]["whole"] == pytest.approx(1.0)
    for c in ("fixed xfit", "block xfit", "fixed xfit no speed", "block xfit no speed"):  # the ridge's bias: tiny
        assert all(v > 0.9999 for v in g[c].values()), c
    assert all(v < 1e-20 for v in headroom(y, f, 1000, ridge=0)["mse"]["block xfit"].values())


def test_experts_that_are_noise_buy_nothing():
    y, f = experts()
    g = gains(headroom(y, f, 1000)["mse"])
    for p in ("whole", "first_half", "second_half"):
        assert abs(g["fixed"][p]) < 0.005  # in-sample fit of 4 weights to 3,000-6,000 rows: ~0.1-0.2 %
        assert abs(g["speed adds fixed"][p]) < 0.003
        assert abs(g["block"][p]) < 0.02  # 4 weights per 1,000 rows: ~0.4 %
        assert -0.02 < g["block xfit"][p] < 0.002 and -0.01 < g["fixed xfit"][p] < 0.002  # out of sample: ~a loss
        assert g["dynamic"][p] == 0.0  # dynamic is online_linear here


def test_the_speed_model_can_add_what_only_it_knows():
    y, f = experts()
    f["speed"] = y + np.random.default_rng(3).normal(0, 0.1, len(y))  # half online_linear's error: MSE / 4
    g = gains(headroom(y, f, 1000)["mse"])
    # y on online_linear (noise 0.2) and speed (noise 0.1): the best blend has 1 / (1/0.04 + 1/0.01) = 0.008
    assert g["fixed"]["whole"] == pytest.approx(1 - 0.008 / 0.04, abs=0.01)
    assert g["speed adds fixed"]["whole"] == pytest.approx(0.8, abs=0.01)


def test_rows_with_a_nan_are_left_out_and_counted():
    y, f = experts(n=3000)
    f["persistence"][0] = np.nan
    f["dynamic"][10:13] = np.nan
    h = headroom(y, f, 1000)
    assert (h["rows"], h["left_out"]) == (2996, 4)
    m = mean_of({"a": h, "b": h})
    assert (m["rows"], m["left_out"]) == (5992, 8) and m["mse"]["fixed"] == h["mse"]["fixed"]
    with pytest.raises(ValueError, match="block"):
        headroom(y, f, 0)


def test_eval_table_headroom_cli(tmp_path, capsys):
    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1,), horizon=1)
    paths = []
    for seed in (0, 1):
        y, f = experts(n=4000, seed=seed)
        y = 0.5 * f["online_linear"] + 0.5 * f["speed"]  # an exact blend with the speed model
        run = RunResult(spec, 1000, y, f, np.zeros(len(y)), variants={"dynamic no speed": f["online_linear"]})
        paths.append(str(run.save(tmp_path / f"toy{seed}.npz")))
    assert main(["eval", "table", *paths, "--headroom"]) == 0
    out = capsys.readouterr().out
    assert "no bound on a combiner whose weights move faster" in out and "blocks of 1000 rows" in out
    row = next(line for line in out.splitlines() if line.startswith("| toy0 |"))
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert cells[0] == "4000 (0)"
    assert cells[1] == "+0.00 / +0.00 / +0.00 %"  # dynamic is online_linear
    # (c) causal online: a shrunk layer learned online gains, but less than the hindsight blend
    assert all(0 < float(v) < 90 for v in cells[2].rstrip(" %").split(" / "))
    assert cells[3] == "+100.00 / +100.00 / +100.00 %"  # (a): the truth is a fixed blend
    assert cells[5] == cells[3]  # per block, in sample: the same
    assert all(float(v) > 99.9 for c in (cells[4], cells[6]) for v in c.rstrip(" %").split(" / "))  # ridge: ~the same
    assert cells[9] == "+0.00 / +0.00 / +0.00 %"  # speed adds to dynamic: dynamic no speed is dynamic
    assert cells[10] == "+100.00 / +100.00 / +100.00 %"  # speed adds at best (a)
    assert "(c) causal online: a measured result, not a ceiling" in out and "half-life 2000 rows" in out
    assert any(line.startswith("| mean of the runs' MSEs | 8000 (0) |") for line in out.splitlines())
    assert main(["eval", "table", paths[0], "--headroom", "--block", "0"]) == 2
    assert main(["eval", "table", paths[0], "--headroom", "--causal-half-life", "0"]) == 2
    assert main(["eval", "table", paths[0], "--headroom", "--causal-half-life", "nan"]) == 2
    assert main(["eval", "table", paths[0], "--headroom", "--causal-ridge", "nan"]) == 2
    assert main(["eval", "table", paths[0], "--headroom", "--causal-half-life", "500", "--causal-ridge", "1"]) == 0
    assert "half-life 500 rows) and a ridge of 1 x" in capsys.readouterr().out


def test_an_intercept_only_matters_when_the_truth_has_an_offset():
    y, f = experts()
    y = 0.6 * f["online_linear"] + 0.4 * f["batch"] + 3.0  # a constant offset no blend of the experts has
    without, with_ = headroom(y, f, 1000)["mse"], headroom(y, f, 1000, intercept=True)["mse"]
    assert with_["fixed"]["whole"] < 1e-20 < without["fixed"]["whole"]
    assert with_["fixed no speed"]["whole"] < 1e-20 < without["fixed no speed"]["whole"]  # no speed: the constant too


def test_near_identical_experts_do_not_blow_up_the_cross_fit():
    """The speed model a hair from persistence (as at H = 24) except in one 100-row stretch: unpenalised, the weights
    on their difference fit the other chunks' noise (thousands) and that stretch's score explodes; the ridge keeps
    the cross-fitted ceilings near the in-sample ones."""
    y, f = experts(n=2000)
    f["persistence"] = y + np.random.default_rng(5).normal(0, 0.4, len(y))
    d = np.random.default_rng(6).normal(0, 1e-4, len(y))
    d[100:200] *= 1e4  # one chunk where the two differ
    f["speed"] = f["persistence"] + d
    plain, ridged = gains(headroom(y, f, 1000, ridge=0.0)["mse"]), gains(headroom(y, f, 1000)["mse"])  # the default
    assert plain["block xfit"]["whole"] < -1 and plain["fixed xfit"]["whole"] < -1  # the collapse the ridge fixes
    for c in ("fixed xfit", "block xfit"):
        assert ridged[c]["whole"] > ridged["fixed"]["whole"] - 0.05, c
        assert ridged[c]["whole"] > -0.05, c


def test_a_part_that_is_one_chunk_has_no_cross_fitted_figure():
    y, f = experts(n=6000)
    h = headroom(y, f, 20000)  # every part is a single chunk of (a)'s cross-fit
    assert all(np.isnan(v) for v in h["mse"]["fixed xfit"].values())
    assert all(np.isfinite(v) for v in h["mse"]["block xfit"].values())  # chunks of 2,000 rows
    assert "nan / nan / nan %" in headroom_table({"r": h})


def test_each_half_is_fitted_on_its_own_rows():
    """A regime change mid-stream: half online_linear + half batch, then batch alone. Each half is one fixed blend
    (100 %); the whole needs two, so one fixed blend gets 1 - 0.0625 / 0.625 = 90 %, per block (aligned) 100 %."""
    y, f = experts()
    half = len(y) // 2
    y = np.concatenate([0.5 * (f["online_linear"] + f["batch"])[:half], f["batch"][half:]])
    g = gains(headroom(y, f, 1000)["mse"])
    assert g["fixed"]["first_half"] == pytest.approx(1.0) and g["fixed"]["second_half"] == pytest.approx(1.0)
    assert g["fixed"]["whole"] == pytest.approx(0.9, abs=0.02)
    assert g["block"]["whole"] == pytest.approx(1.0)


def test_a_zero_mse_gives_nan_or_minus_inf_not_an_error():
    y, f = experts(n=3000)
    f["dynamic"] = f["batch"]
    h = headroom(f["online_linear"], f, 1000)  # the truth is online_linear: its MSE is 0
    g = gains(h["mse"])
    assert np.isnan(g["fixed"]["whole"]) and g["dynamic"]["whole"] == -np.inf
    assert np.isnan(g["speed adds fixed"]["whole"])  # 0 / 0 again
    assert "< -100" in headroom_table({"r": h})


def test_the_title_lists_the_block_of_each_run_when_they_differ():
    y, f = experts(n=3000)
    same = headroom_table({"a": headroom(y, f, 1000), "b": headroom(y, f, 1000)})
    assert "blocks of 1000 rows" in same
    differ = headroom_table({"a": headroom(y, f, 1000), "b": headroom(y, f, 500)})
    assert "blocks per run: a 1000, b 500 rows" in differ


def signed_stream(n: int = 4000, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Noise to forecast, base 0, and two experts that are the truth times an independent random sign (and minus
    that): which one is right on a row is only known from that row's own truth, so no causal blend beats the base."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1, n)
    sign = rng.choice([-1.0, 1.0], n)
    experts = np.column_stack([sign * y, -sign * y])
    return y, np.zeros(n), experts, np.ones(n, bool)


def test_the_causal_layer_cannot_see_the_future_and_a_leaky_one_would():
    y, base, experts, ok = signed_stream()
    for h in (1, 6):
        causal = causal_layer(base, experts, y, ok, h, half_life=2, ridge=0.01)
        assert np.mean((y - causal) ** 2) > 0.98 * np.mean(y**2)  # the signs are unknowable ahead
    leaky = causal_layer(base, experts, y, ok, 0, half_life=2, ridge=0.01)  # each row sees its own truth
    assert np.mean((y - leaky) ** 2) < 0.5 * np.mean(y**2)  # impossibly good: what a leak looks like


def test_a_truth_changes_only_the_forecasts_made_after_it_arrived():
    y, base, experts, ok = signed_stream(n=300)
    for h in (1, 6, 24):
        before = causal_layer(base, experts, y, ok, h, half_life=20, ridge=0.1)
        y2 = y.copy()
        y2[100] += 5.0
        after = causal_layer(base, experts, y2, ok, h, half_life=20, ridge=0.1)
        assert np.array_equal(before[: 100 + h], after[: 100 + h])  # row 100's truth arrives at row 100 + h
        assert before[100 + h] != after[100 + h]
    with pytest.raises(ValueError, match="delay"):
        causal_layer(base, experts, y, ok, -1)
    assert np.array_equal(causal_layer(base, experts, y, ok, len(y) + 5), base)  # no truth arrives: the base


def test_the_causal_layer_learns_a_better_expert_and_skips_nan_rows():
    y, f = experts()
    f["speed"] = y + np.random.default_rng(3).normal(0, 0.1, len(y))
    f["batch"][50] = np.nan
    h = headroom(y, f, 1000, horizon=6)
    g = gains(h["mse"])
    assert h["left_out"] == 1 and h["causal_half_life"] == 2000 and h["causal_ridge"] == 3
    # dynamic (= online_linear here) + 1/4 of the way to the best blend (the ridge of 3 shrinks by 1 + 3): ~35 %
    assert 0.3 < g["causal"]["whole"] < g["fixed"]["whole"]
    assert "causal" not in headroom(y, f, 1000)["mse"]  # no horizon: no causal column
