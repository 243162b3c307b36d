"""N-expert stacking (the persistence / online-linear experts and the error guard) over a saved run."""

from __future__ import annotations

import re

import numpy as np

from hybridstream.cli import main
from hybridstream.evaluation.expert_study import LAYER_EXPERTS
from hybridstream.evaluation.experts import MultiStacking, replay_experts, replay_weights
from hybridstream.evaluation.online_run import RunResult
from model_contract import FeatureSpec


def synthetic_run(n: int = 4000, horizon: int = 1) -> RunResult:
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(0, 0.3, n))
    f = {
        "persistence": np.r_[np.full(horizon, np.nan), y[:-horizon]],
        "online_linear": y + rng.normal(0, 0.1, n),
        "batch": y + rng.normal(0, 0.4, n),
        "speed": y + np.where(np.arange(n) > n // 2, 50.0, 0.0) + rng.normal(0, 0.4, n),  # explodes half way
    }
    f["static"] = 0.7 * f["batch"] + 0.3 * f["speed"]
    f["dynamic"] = f["batch"].copy()
    spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1,), horizon=horizon)
    models = [{"first_row": 0, "serves_from": n // 2, "seconds": 1.0}]
    return RunResult(spec, 1000, y, f, np.zeros(n), models)


def test_the_guard_mutes_an_exploding_expert_and_the_blend_follows_the_best():
    run = synthetic_run()
    pred, comb = replay_experts(run, ("batch", "speed", "online_linear"), half_life=50, guard=3.0)
    e = pred - run.y
    second = e[len(e) // 2 + 50 :]
    assert np.sqrt(np.nanmean(second**2)) < 0.2  # near the online linear expert (0.1), not the exploded one
    assert comb.muted[1] > 0.4 * len(run.y)  # the exploded speed forecasts were counted
    assert comb.muted[2] == 0


def test_the_weighting_layer_stays_near_its_best_expert_over_a_saved_run():
    """The edge's expert-weighting layer replayed over saved forecasts: within 1 % of the best expert's MSE over
    the whole run and each half, though one expert explodes half way."""
    run = synthetic_run()
    pred, layer = replay_weights(run, LAYER_EXPERTS, eta=2.0, half_life=300)
    half = len(run.y) // 2
    for part in (slice(2, None), slice(2, half), slice(half, None)):
        mse = {k: np.nanmean((run.forecasts[k][part] - run.y[part]) ** 2) for k in LAYER_EXPERTS}
        assert np.nanmean((pred[part] - run.y[part]) ** 2) <= 1.01 * min(mse.values())
    assert max(layer.weights) == layer.weights[1]  # the online linear expert leads


def test_horizon_delays_learning():
    assert MultiStacking(2, half_life=10).weights == [0.5, 0.5]
    for h in (1, 6):
        run = synthetic_run(500, horizon=h)
        pred, comb = replay_experts(run, ("batch", "online_linear"), half_life=10)
        assert np.isfinite(pred).all()
        # the truth of row j is learned before forecasting row j + h: the last h truths never were
        assert comb._seen == 500 - h


def test_eval_experts_cli(tmp_path, capsys):
    path = synthetic_run().save(tmp_path / "toy.npz")
    back = RunResult.load(path)
    assert back.spec.horizon == 1 and set(back.forecasts) == set(synthetic_run().forecasts)
    assert main(["eval", "experts", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "batch+speed+online_linear" in out and "| persistence |" in out
    assert (tmp_path / "out" / "experts.json").exists()


def test_eval_table_cli(tmp_path, capsys):
    path = synthetic_run().save(tmp_path / "none-h1.npz")
    assert main(["eval", "table", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"persistence", "online_linear", "batch", "speed", "static", "dynamic"}
    assert "+0.0 %" in rows["persistence"]


def test_eval_table_check_says_where_dynamic_loses(tmp_path, capsys):
    path = synthetic_run().save(tmp_path / "toy-h1.npz")  # dynamic = the batch forecast: worse than online_linear
    assert main(["eval", "table", str(path), "--digits", "4", "--check"]) == 0
    out = capsys.readouterr().out
    check = [line for line in out.splitlines() if line.startswith("| toy-h1 |")]
    assert len(check) == 1
    cells = [c.strip() for c in check[0].split("|")[2:-1]]
    assert cells[1].startswith("NO ") and cells[1].count("NO") == 3  # behind online_linear in every part
    assert "(online_linear)" in cells[2]
    assert re.search(r"\| \d+\.\d{4} \(\d+\.\d{4} / \d+\.\d{4}\)", out)  # --digits 4


def test_eval_plot_cli(tmp_path, capsys):
    path = synthetic_run().save(tmp_path / "toy-h1.npz")
    assert main(["eval", "plot", str(path)]) == 0
    png = tmp_path / "toy-h1.png"
    assert capsys.readouterr().out.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert main(["eval", "plot", str(tmp_path / "missing.npz")]) == 2


def test_eval_table_adds_says_what_the_speed_model_buys(tmp_path, capsys):
    run = synthetic_run()
    rng = np.random.default_rng(1)
    y = run.y
    # a perfect speed model, taken by dynamic at half weight: half the no-speed error left, MSE / 4
    no_speed = y + rng.normal(0, 0.4, len(y))
    run.forecasts["speed"] = y.copy()
    run.forecasts["dynamic"] = no_speed + 0.5 * (run.forecasts["speed"] - no_speed)
    run.variants = {"dynamic no speed": no_speed}  # no "dynamic no batch": that column says —
    path = run.save(tmp_path / "toy-h1.npz")
    assert main(["eval", "table", str(path), "--adds"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| toy-h1 |"))
    speed, batch, bound = (c.strip() for c in row.split("|")[2:-1])
    assert speed.startswith("+75.") and speed.count("%") == 3  # MSE / 4: 1 - 0.25
    assert batch == "—"
    assert bound.startswith("+100.00 %") and "(a = 1.00)" in bound  # the speed model here is the truth itself
