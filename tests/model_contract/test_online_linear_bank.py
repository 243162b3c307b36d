"""An :class:`~model_contract.online_linear_bank.OnlineLinearBank` steps several models at once and each ends
exactly where it would alone (bit for bit), on the equivalence test's long streams that exercise every branch
(outliers, non-finite and absurd records, constant stretches, the covariance trace bound, resets), with
models of uneven ages, rounds with any subset of them in any order, models joining late, the bank growing,
and models that cannot join (another configuration) in the same calls."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from model_contract.online_linear import OnlineLinear
from model_contract.online_linear_bank import OnlineLinearBank
from tests.model_contract.reference_online_linear import ReferenceOnlineLinear
from tests.model_contract.test_online_linear_equivalence import random_stream, run_both, turbine_stream

STATE = ("_mean", "_var", "_w", "_P")
pytestmark = pytest.mark.usefixtures("numpy_linear")  # the stacked numpy steps (the compiled kernel: the last test)


def _rows(stream, n: int) -> list[tuple[np.ndarray, float]]:
    """The stream's (window, truth) pairs with each window flattened to one row (the context stack's rows)."""
    return [(window.reshape(1, -1).copy(), y) for _, (window, y) in zip(range(n), stream, strict=False)]


def _same(a: OnlineLinear, b: OnlineLinear) -> None:
    assert (a.n, a.skipped, a.resets, a._dy2, a._e2) == (b.n, b.skipped, b.resets, b._dy2, b._e2)
    for k in STATE:
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k


def _drive(streams, params, rounds, seed: int, bank: OnlineLinearBank) -> tuple[list, list]:
    """Models alone and in the bank through the same rows: each round a random subset, in random order."""
    rng = np.random.default_rng(seed)
    alone = [OnlineLinear(p.pop("target_index"), **p) for p in copy.deepcopy(params)]
    banked = [OnlineLinear(p.pop("target_index"), **p) for p in copy.deepcopy(params)]
    pos = [0] * len(streams)
    for _ in range(rounds):
        live = [i for i in range(len(streams)) if pos[i] < len(streams[i])]
        if not live:
            break
        pick = list(rng.permutation(live)[: rng.integers(1, len(live) + 1)])
        x = np.concatenate([streams[i][pos[i]][0] for i in pick])
        ys = [streams[i][pos[i]][1] for i in pick]
        got = bank.predict([banked[i] for i in pick], x)
        want = [alone[i].predict_one(streams[i][pos[i]][0]) for i in pick]
        assert np.array_equal(got, want, equal_nan=True)
        bank.learn([banked[i] for i in pick], x, ys)
        for i, y in zip(pick, ys, strict=True):
            alone[i].learn_one(streams[i][pos[i]][0], y)
            pos[i] += 1
    return alone, banked


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflows of the reset stream
def test_banked_models_end_where_they_would_alone():
    cols = 18  # (2, 9) windows, flattened: the product's row shape without its two model inputs
    streams = [_rows(random_stream(3000, s), 3000) for s in range(4)] + [_rows(turbine_stream(3000, 1), 3000)]
    streams.append(_rows(random_stream(3000, 5), 3000))
    base = {"target_index": cols - 9 + 4}
    params = [dict(base) for _ in range(5)]
    params.append({**base, "prior": 1e300, "half_life": 20, "max_trace": 1.7e308})  # resets: never joins
    bank = OnlineLinearBank(capacity=2)  # grows twice
    alone, banked = _drive(streams, params, 12_000, 0, bank)
    for a, b in zip(alone, banked, strict=True):
        _same(a, b)
    assert len(bank) == 5 and banked[5]._bank is None and banked[5].resets > 0
    assert sum(m.skipped for m in banked) > 20  # the streams did exercise the skips


def test_trace_bound_and_late_joiners():
    """A short memory and a low trace bound (the bound fires often); models starting rounds apart."""
    streams = [_rows(random_stream(4000, 10 + s), 4000) for s in range(3)]
    streams[1] = streams[1][700:]
    params = [{"target_index": 13, "half_life": 200, "scale_half_life": 500, "max_trace": 30.0} for _ in streams]
    alone, banked = _drive(streams, params, 9_000, 1, OnlineLinearBank())
    for a, b in zip(alone, banked, strict=True):
        _same(a, b)


def test_a_banked_model_still_matches_the_reference_and_copies_detach():
    stream = _rows(turbine_stream(6000), 6000)
    bank = OnlineLinearBank()
    model, other = OnlineLinear(13), OnlineLinear(13)
    ref = ReferenceOnlineLinear(13)
    for window, y in stream[:3000]:
        bank.learn([model, other], np.concatenate([window, window]), [y, y])
        ref.learn_one(window, y)
    assert model._bank is bank and np.shares_memory(model._P, bank.P)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone._bank is None and not np.shares_memory(clone._P, bank.P)
    run_both(iter(stream[3000:]), model, copy.deepcopy(ref))  # alone again, on its views
    state = model.state()
    assert OnlineLinear.from_state(state).state() == state


def test_the_matmul_fallback_gives_the_same(monkeypatch):
    """numpy < 2.2 (the 32-bit ARM edge) has no vecdot/matvec gufuncs: matmul on stacks, still bit-equal."""
    import model_contract.online_linear_bank as bank_module

    monkeypatch.setattr(bank_module, "_vecdot", bank_module._vecdot_matmul)
    monkeypatch.setattr(bank_module, "_matvec", bank_module._matvec_matmul)
    streams = [_rows(turbine_stream(600, s), 600) for s in range(3)]
    alone, banked = _drive(streams, [{"target_index": 13} for _ in streams], 2_000, 2, OnlineLinearBank())
    for a, b in zip(alone, banked, strict=True):
        _same(a, b)


def test_a_dropped_models_row_goes_to_the_next_one():
    """The bank holds its models weakly: a model its owner dropped (a combiner replaced) frees its row, the next
    model that attaches takes it (no growth), and the others go on exactly as alone."""
    import gc

    streams = [_rows(turbine_stream(400, s), 400) for s in range(3)]
    bank = OnlineLinearBank(capacity=2)
    banked = [OnlineLinear(13) for _ in streams]
    alone = [OnlineLinear(13) for _ in streams]
    for t in range(200):
        x = np.concatenate([s[t][0] for s in streams])
        bank.learn(banked, x, [s[t][1] for s in streams])
        for m, s in zip(alone, streams, strict=True):
            m.learn_one(s[t][0], s[t][1])
    assert len(bank) == 3 and bank.P.shape[0] == 4
    freed = banked[1]._slot
    banked[1] = alone[1] = OnlineLinear(13)  # replaced, as reset_combiner does
    gc.collect()
    assert len(bank) == 2
    for t in range(200, 400):
        x = np.concatenate([s[t][0] for s in streams])
        bank.learn(banked, x, [s[t][1] for s in streams])
        for m, s in zip(alone, streams, strict=True):
            m.learn_one(s[t][0], s[t][1])
    assert len(bank) == 3 and bank.P.shape[0] == 4 and banked[1]._slot == freed
    for a, b in zip(alone, banked, strict=True):
        _same(a, b)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflows of the reset stream
def test_with_the_compiled_kernel_each_model_steps_alone(compiled_linear):
    """With the compiled kernel the bank calls each model's own step (one C call each): no model attaches, and
    every model ends where it would alone, bit for bit, on the same rounds as above."""
    streams = [_rows(random_stream(1500, s), 1500) for s in (0, 5)] + [_rows(turbine_stream(1500, 1), 1500)]
    params = [{"target_index": 13}, {"target_index": 13, "prior": 1e300, "half_life": 20, "max_trace": 1.7e308}]
    params.append({"target_index": 13})
    bank = OnlineLinearBank()
    alone, banked = _drive(streams, params, 5_000, 3, bank)
    for a, b in zip(alone, banked, strict=True):
        _same(a, b)
        assert b._kc and b._bank is None
    assert len(bank) == 0
