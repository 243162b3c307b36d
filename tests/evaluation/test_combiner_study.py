"""End-to-end test of the offline evaluation on a synthetic cached stream (no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridstream.evaluation import drift_study, report, streams
from hybridstream.evaluation.combiner_study import (
    all_candidates,
    best_constant_weight,
    replay_combiner,
    rolling_rmse,
    score,
    select,
)
from hybridstream.evaluation.streams import PredictionStream, cache_path, get_stream


def synthetic_stream(n: int = 6000, window: int = 1000, seed: int = 0) -> PredictionStream:
    """Batch is good then drifts off after row n/2; each speed model is decent from its swap on."""
    rng = np.random.default_rng(seed)
    y = 10.0 + np.sin(np.arange(n) / 50.0)
    batch = y + rng.normal(0.0, 0.2, n) + np.where(np.arange(n) >= n // 2, 1.5, 0.0)
    speed_id = np.maximum(np.arange(n) // window - 1, -1).astype(np.int32)
    speed = np.where(speed_id < 0, batch, y + rng.normal(0.0, 0.4, n))
    batch[:2] = speed[:2] = np.nan  # no forecast before the lag window fills
    return PredictionStream("synthetic", window, 0, y, batch, speed, speed_id, {"change_points": [n // 2]})


def test_cache_roundtrip_and_get_stream_uses_the_cache(tmp_path):
    s = synthetic_stream()
    path = s.save(cache_path("synthetic", 1000, 0, tmp_path))
    loaded = get_stream("synthetic", 1000, 0, tmp_path)  # from the cache: no training
    assert path.name == "synthetic-w1000-d0.npz"
    np.testing.assert_array_equal(loaded.speed_id, s.speed_id)
    np.testing.assert_allclose(loaded.batch, s.batch)
    assert loaded.meta == s.meta and loaded.valid.sum() == len(s) - 2


def test_a_cached_stream_of_another_training_config_is_generated_again(tmp_path, monkeypatch):
    """A stream cached before a TrainConfig default changed (issue 17) does not pin the old models."""
    from training_job.model import BEFORE_ISSUE_17, TrainConfig

    fresh = synthetic_stream(seed=3)
    monkeypatch.setattr(streams, "generate", lambda *args, **kwargs: fresh)
    for cfg, reused in ((TrainConfig(**BEFORE_ISSUE_17), False), (TrainConfig(), True)):
        cached = synthetic_stream()
        cached.meta |= {"batch_version": "v", "train_config": cfg.to_dict()}
        cached.save(cache_path("synthetic", 1000, 0, tmp_path))
        got = get_stream("synthetic", 1000, 0, tmp_path, log=lambda _: None)
        assert (got is not fresh) == reused and (got.meta == cached.meta) == reused


def test_replay_matches_fixed_blends_and_dynamic_adapts():
    s = synthetic_stream()
    ok = s.valid
    static = replay_combiner(s, {"strategy": "static", "speed_weight": 0.3})
    np.testing.assert_allclose(static.hybrid[ok], 0.7 * s.batch[ok] + 0.3 * s.speed[ok])
    assert np.isnan(static.hybrid[:2]).all()
    dyn = replay_combiner(s, {"strategy": "dynamic", "method": "stacking"})
    half = len(s) // 2
    # first half: batch is better, second half: speed is; the dynamic blend follows
    assert np.nanmean(dyn.speed_weight[1000:half]) < 0.5 < np.nanmean(dyn.speed_weight[half + 200 :])
    batch_only = replay_combiner(s, {"strategy": "batch"})
    speed_only = replay_combiner(s, {"strategy": "speed"})
    assert dyn.rmse() < min(batch_only.rmse(), speed_only.rmse(), static.rmse())


def test_the_default_context_combiner_replays_with_the_lag_window():
    """The default reads the lag window: a synthetic stream's own target lags stand in for the readings."""
    s = synthetic_stream()
    ctx = replay_combiner(s, {"strategy": "dynamic"})
    ok = s.valid
    persistence = np.r_[np.nan, s.y[:-1]]
    half = len(s) // 2
    assert np.isnan(ctx.hybrid[:2]).all() and np.isfinite(ctx.hybrid[ok]).all()
    assert ctx.hybrid[2] == s.y[1]  # its first forecast is persistence
    e_ctx = (ctx.hybrid - s.y)[half + 500 :]
    e_pers = (persistence - s.y)[half + 500 :]
    assert np.sqrt(np.mean(e_ctx**2)) < np.sqrt(np.mean(e_pers**2))
    s.matrix, s.spec = None, None  # readings() falls back to the target alone for a synthetic stream
    assert replay_combiner(s, {"strategy": "dynamic"}).rmse() == pytest.approx(ctx.rmse())


def test_score_select_and_report(tmp_path):
    streams = [synthetic_stream(seed=1), synthetic_stream(seed=2, window=500)]
    for s in streams:  # the baselines ride along, scored apart from the candidates
        s.baselines = {"persistence": np.r_[np.nan, s.y[:-1]], "online_linear": s.y + 0.05}
    cands = all_candidates()
    scores = score(streams, cands)
    assert set(scores) == {"synthetic-w1000-d0", "synthetic-w500-d0"}
    entry = scores["synthetic-w1000-d0"]
    assert set(entry["candidates"]) == set(cands)
    assert entry["candidates"]["batch"]["rmse"] > entry["candidates"]["inverse_mse hl=24"]["rmse"]
    w, rmse = best_constant_weight(streams[0])
    assert 0.0 <= w <= 1.0 and rmse == pytest.approx(entry["oracle"]["rmse"])
    ranking = select(scores, [k for k in cands if k not in ("batch", "speed", "static 0.3 (prototype)")])
    assert ranking[0][1] >= 1.0 and ranking == sorted(ranking, key=lambda r: (round(r[1], 4), r[2]))
    md = report.combiner_tables(scores, ranking, ranking[0][0], "inverse_mse hl=24")
    assert "**(default)**" in md and "static 0.3 (prototype)" in md
    assert "persistence (baseline)" in md and "online_linear (baseline)" in md
    assert entry["baselines"]["online_linear"]["rmse"] == pytest.approx(0.05)
    json.dumps(scores)  # JSON-serialisable as the CLI writes it


def test_rolling_rmse():
    e = np.array([np.nan, 1.0, 1.0, 3.0])
    r = rolling_rmse(e, size=2)
    assert np.isnan(r[0]) and r[2] == pytest.approx(1.0) and r[3] == pytest.approx(np.sqrt(5.0))


def test_drift_study_on_synthetic_residuals():
    rng = np.random.default_rng(3)
    n = 30_000
    base = rng.normal(0.0, 0.3, n)
    step = base + np.where((np.arange(n) >= 10_000) & (np.arange(n) < 20_000), 1.0, 0.0)
    cands = {k: drift_study.CANDIDATES[k] for k in ("adwin d=2e-3", "cusum h=20")}
    results = drift_study.study({"none/hybrid": base, "step/hybrid": step}, (10_000, 20_000), cands, log=lambda m: None)
    for row in results.values():
        assert row["injected"]["bias +2 rmse"]["detected"] == 3
        assert row["streams"]["step/hybrid"]["delays"][0] < 300
        assert row["us_per_update"] > 0
    ranking = drift_study.rank(results, max_false=5.0, max_us=1e6)  # cost is timing: not asserted on a busy machine
    assert all(r[1] == 0 for r in ranking)
    assert ranking and {r[0] for r in ranking} <= set(cands)
    assert "adwin d=2e-3" in report.drift_tables(results, ranking, "adwin d=2e-3")
