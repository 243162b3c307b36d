"""An ExpertWeights pickled by the code before bf7cfa2 (its state in four attributes, not one array)
unpickles into today's object and goes on learning as a fresh one with the same state would."""

from __future__ import annotations

import pickle

from edge_app.expert_weights import ExpertWeights


def _old_style(w: ExpertWeights) -> bytes:
    """``w`` pickled as the older class held it: ``_v``, ``_seen``, ``_L``, ``_w``."""
    state = {k: v for k, v in w.__dict__.items() if k != "_s"}
    s = w._s.tolist()
    n = w.n
    state.update(_v=s[0], _seen=int(s[1]), _L=s[2 : 2 + n], _w=s[2 + n :])
    old = ExpertWeights.__new__(ExpertWeights)
    old.__dict__.update(state)  # what pickle saw: no _s
    return pickle.dumps(old)


def test_an_old_pickle_loads_and_learns_like_the_new_object():
    w = ExpertWeights(3, eta=1.0, half_life=50)
    for i in range(120):
        w.learn_one((i + 0.1, i + 1.0, i - 2.0), float(i))
    loaded = pickle.loads(_old_style(w))
    assert loaded.weights == w.weights and loaded._s.tolist() == w._s.tolist()
    for i in range(120, 140):
        for x in (w, loaded):
            x.learn_one((i + 0.5, i - 0.2, i + 3.0), float(i))
    assert loaded.weights == w.weights
    assert loaded.predict_one((1.0, 2.0, 3.0)) == w.predict_one((1.0, 2.0, 3.0))


def test_a_new_pickle_round_trips():
    w = ExpertWeights(2, prior=(0.0, 3.0))
    w.learn_one((1.0, 2.0), 1.5)
    assert pickle.loads(pickle.dumps(w))._s.tolist() == w._s.tolist()
