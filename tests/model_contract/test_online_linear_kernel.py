"""The compiled kernel of the online linear model (model_contract/online_linear_kernel.py): built into a private
cache and really used where a C compiler exists; the numpy code when it is forced, when the build fails or the
cache is not private (counted in its status); the module doctests on the numpy code too; the context stack's
compiled learn step equal to its Python steps. That the kernel forecasts what the numpy code does is
test_online_linear_equivalence.py's (every test there runs on both)."""

from __future__ import annotations

import doctest
import os
import shutil
import stat
import time

import numpy as np
import pytest

from model_contract import context_stack, online_linear, online_linear_bank, online_linear_kernel
from model_contract.online_linear import OnlineLinear
from tests.model_contract.test_online_linear_equivalence import random_stream, turbine_stream


def _learn_some(model: OnlineLinear, n: int = 300) -> None:
    for _, (window, y) in zip(range(n), turbine_stream(n), strict=False):
        model.predict_one(window)
        model.learn_one(window, y)


def test_the_compiled_kernel_is_used_where_a_compiler_exists(compiled_linear):
    assert shutil.which("cc") or shutil.which("gcc")
    st = online_linear_kernel.status()
    assert st["backend"] == "c" and st["reason"] == ""
    lib = os.path.realpath(st["path"])
    assert os.path.dirname(lib) == str(online_linear_kernel.cache_dir())
    assert stat.S_IMODE(os.stat(os.path.dirname(lib)).st_mode) & 0o077 == 0  # private: 0700
    model = OnlineLinear(4)
    _learn_some(model)
    assert model._kc  # the C struct: every record after the first went through the kernel
    assert model.n == 300 and np.isfinite(model.weights).all()


def test_a_forced_fallback_runs_the_numpy_code(numpy_linear):
    st = online_linear_kernel.status()
    assert st == {"backend": "numpy", "reason": f"{online_linear_kernel.ENV_BACKEND}=numpy", "path": ""}
    model = OnlineLinear(4)
    _learn_some(model)
    assert model._kc is False and model.n == 300


def test_a_failed_build_falls_back_to_numpy(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv(online_linear_kernel.ENV_BACKEND, raising=False)
    monkeypatch.setenv(online_linear_kernel.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails
    monkeypatch.setattr(online_linear_kernel.shutil, "which", lambda name: "/bin/false" if name == "false" else None)
    online_linear_kernel.reset_for_tests()
    try:
        with caplog.at_level("WARNING"):
            assert online_linear_kernel.kernel() is None
            online_linear_kernel.kernel()
        st = online_linear_kernel.status()
        assert st["backend"] == "numpy" and "failed" in st["reason"]
        assert sum("numpy code" in r.message for r in caplog.records) == 1  # logged once
        assert not [p for p in (tmp_path / "cache").iterdir()]  # no half-built library left behind
        model = OnlineLinear(4)
        _learn_some(model, 50)
        assert model._kc is False
    finally:
        online_linear_kernel.reset_for_tests()


def test_a_cache_others_can_write_is_refused(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.delenv(online_linear_kernel.ENV_BACKEND, raising=False)
    monkeypatch.setenv(online_linear_kernel.ENV_CACHE, str(shared))
    online_linear_kernel.reset_for_tests()
    try:
        assert online_linear_kernel.kernel() is None
        assert "writable by others" in online_linear_kernel.status()["reason"]
        assert not list(shared.iterdir())  # nothing built there
    finally:
        online_linear_kernel.reset_for_tests()


def test_a_window_that_does_not_fit_is_an_error(linear_backend):
    model = OnlineLinear(1)
    for t in range(5):
        model.learn_one(np.array([[float(t), 2.0 * t]]), 2.0 * t + 2)
    with pytest.raises(ValueError):
        model.predict_one(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        model.learn_one(np.zeros((1, 3)), 1.0)
    assert model.n == 5 or linear_backend == "numpy"  # the kernel checks first (the numpy code counted it)
    # odd windows the kernel does not take (not float64, not contiguous) still work: the numpy code
    assert model.predict_one(np.array([[1, 2]])) == model.predict_one(np.array([[1.0, 2.0]]))
    wide = np.array([[1.0, 9.0, 2.0]])[:, ::2]
    assert model.predict_one(wide) == model.predict_one(np.array([[1.0, 2.0]]))


@pytest.mark.parametrize("module", [online_linear, online_linear_bank, context_stack])
def test_the_doctests_pass_on_the_numpy_code(module, numpy_linear):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


def _stack_stream(n: int, seed: int):
    """(batch, speed, window, truth): the equivalence test's wild windows, model forecasts near the truth with
    non-finite and absurd ones mixed in."""
    rng = np.random.default_rng(seed)
    for window, y in random_stream(n, seed):
        last = float(window[-1, 4])
        b, s = last + rng.normal(0, 0.5), last + rng.normal(0, 2.0)
        if rng.random() < 0.01:
            b = float(rng.choice([np.nan, np.inf, 1e200, -1e80]))
        if rng.random() < 0.01:
            s = float(rng.choice([np.nan, -np.inf, 1e160]))
        yield b, s, window, y


LAYERS = [{"blend": "pair"}, {"blend": "pair", "use_speed": False, "mute": 1.5}, {"blend": "experts"}]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("config", [{}, {"use_speed": False}, {"mute": 1.5, "error_half_life": 5.0}, *LAYERS])
def test_the_compiled_stack_step_equals_the_python_steps(compiled_linear, config):
    """ContextStack.predict_one / learn_one in one C call each (guard, linear model, coefficients; with a layer
    ``blend: pair`` or ``experts``, its twin and weights too) end exactly where its Python steps around the same
    compiled models end: every forecast, context row, coefficient, expert weight, count and the state, bit for bit."""
    from edge_app.context_stacking import ContextStacking

    fused, steps = ContextStacking(**config), ContextStacking(**config)
    steps._compiled = lambda: None  # the Python steps (the models still run the kernel)
    for c in (fused, steps):
        c.bind(target_index=4)
    for b, s, window, y in _stack_stream(4000, 3):
        got = [c.predict_one(b, s, window) for c in (fused, steps)]
        assert got[0] == got[1] or (np.isnan(got[0]) and np.isnan(got[1]))
        assert fused.coefficients == steps.coefficients
        assert fused.expert_weights == steps.expert_weights
        contexts = [c.context() for c in (fused, steps)]
        np.testing.assert_array_equal(contexts[0], contexts[1])
        learned = [c.learn_one(b, s, y, ctx) for c, ctx in zip((fused, steps), contexts, strict=True)]
        assert learned[0] == learned[1]
    assert fused._cs is not None and steps._cs is None and fused.model._kc and steps.model._kc
    assert fused.counts() == steps.counts() and fused.counts()["skipped"] > 0
    assert fused.state() == steps.state()
    if fused._layers:
        assert fused._twin.state() == steps._twin.state() and fused._twin._kc
        assert fused._experts._s.tolist() == steps._experts._s.tolist()
        assert 0.0 < fused.expert_weights[0] < 1.0  # the layer weighed its experts


def test_odd_input_positions_run_the_numpy_code(compiled_linear):
    """Positions the kernel would read otherwise than numpy (a negative one: numpy counts it from the end; none
    at all: the kernel's 0 means "all") leave the model on the numpy code; a state naming a position far before
    the window is numpy's IndexError, not a read outside the window (it was a segfault)."""
    rng = np.random.default_rng(0)
    rows = [(np.ascontiguousarray(rng.normal(size=(1, 2))), float(rng.normal())) for _ in range(30)]
    for inputs in ([-1, 1], []):
        model, twin = OnlineLinear(1, inputs=inputs), OnlineLinear(1, inputs=inputs)
        twin._kc = False  # the numpy code
        for window, y in rows:
            assert model.predict_one(window) == twin.predict_one(window)
            model.learn_one(window, y)
            twin.learn_one(window, y)
        assert model._kc is False and model.n == 30
    state = OnlineLinear(1, inputs=[0, 1])
    for window, y in rows:
        state.learn_one(window, y)
    state = state.state()
    state["config"]["inputs"] = [-(10**11), 1]
    with pytest.raises(IndexError):
        OnlineLinear.from_state(state).predict_one(rows[0][0])
    model = OnlineLinear(1, inputs=[0, 1])  # the kernel's own check: a position outside the window is refused
    for window, y in rows:
        model.learn_one(window, y)
    assert model._kc
    model._kin[0] = -(10**11)
    with pytest.raises(ValueError, match="does not fit"):
        model.predict_one(rows[0][0])
    with pytest.raises(ValueError, match="does not fit"):
        model.learn_one(rows[0][0], 1.0)


def test_a_model_wider_than_the_kernel_runs_the_numpy_code(compiled_linear, monkeypatch):
    """The C code's fixed buffers hold MAX_D numbers: a wider model runs the numpy code (it raised 'does not
    fit'); the Python constant is the C source's."""
    source = online_linear_kernel.SOURCE.read_text()
    assert f"#define MAX_D {online_linear_kernel.MAX_D}\n" in source
    monkeypatch.setattr(online_linear_kernel, "MAX_D", 5)
    wide, narrow = OnlineLinear(4), OnlineLinear(1)  # d = 2 x 9 + 1 and 2 + 1
    _learn_some(wide, 50)
    for t in range(50):
        narrow.learn_one(np.array([[float(t), 2.0 * t]]), 2.0 * t + 2)
    assert wide._kc is False and wide.n == 50 and narrow._kc


def test_a_cached_library_that_does_not_load_is_built_again(tmp_path):
    """A library under the cached name that does not load (emptied by a power cut after the rename) is built
    again by the next start (it was the numpy code on every start from then on). In other processes: this one
    may have loaded a library under that name already."""
    import subprocess
    import sys

    probe = "from model_contract import online_linear_kernel as k; print(k.status()['backend'])"
    env = {k: v for k, v in os.environ.items() if k != online_linear_kernel.ENV_BACKEND}
    env[online_linear_kernel.ENV_CACHE] = str(tmp_path)

    def start() -> str:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()

    assert start() == "c"
    (lib,) = tmp_path.glob("online_linear_kernel-*.so")
    lib.write_bytes(b"")
    assert start() == "c"
    assert lib.stat().st_size > 0 and not list(tmp_path.glob(".build-*"))


@pytest.mark.parametrize(
    "config", [{}, {"method": "context", "blend": "none"}, {"method": "context", "twin": True, "blend": "none"}]
)
def test_a_copied_or_pickled_stack_forecasts_like_the_original(linear_backend, config):
    """A copy's row views are its own row's (a copy detached them: it forecast from the row it was copied with),
    and an unpickled stack keeps the compiled steps (its arrays' dtype failed an identity check: the numpy code)."""
    import copy
    import pickle

    from edge_app.combiners import make_combiner

    stack = make_combiner(config, target_index=1)
    y = np.cumsum(np.random.default_rng(0).normal(size=300))
    for t in range(1, 298):
        window = np.array([[0.0, y[t - 1]], [1.0, y[t]]])
        stack.predict_one(y[t + 1], y[t], window)
        stack.learn_one(y[t + 1], y[t], y[t + 1], stack.context())
    window = np.array([[5.0, 50.0], [6.0, 60.0]])
    for make in (copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))):
        clone = make(stack)
        assert clone.predict_one(61.0, 60.0, window) == stack.predict_one(61.0, 60.0, window)
        assert np.array_equal(clone.context(), stack.context())
        clone.learn_one(61.0, 60.0, 60.5, clone.context())
        stack.learn_one(61.0, 60.0, 60.5, stack.context())
        assert clone.state() == stack.state()
        # the compiled steps still run on the copy (an unpickled array's dtype is an equal, not the same, object)
        assert bool(clone.model._kc) == (linear_backend == "c")
        assert (clone._cs is not None) == (linear_backend == "c" and not config.get("twin"))  # pair: in C too


def test_a_cache_under_a_folder_others_can_write_is_refused(monkeypatch, tmp_path):
    """Others who can write a folder above the cache can swap the cache folder for theirs between the checks and
    the load (mkdir -p made the parents with the umask's mode: 0777 under umask 0); a sticky one (/tmp) is fine."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.delenv(online_linear_kernel.ENV_BACKEND, raising=False)
    monkeypatch.setenv(online_linear_kernel.ENV_CACHE, str(shared / "kernels"))
    online_linear_kernel.reset_for_tests()
    try:
        assert online_linear_kernel.kernel() is None
        assert "writable by others" in online_linear_kernel.status()["reason"]
        assert not list((shared / "kernels").iterdir())  # nothing built there
        shared.chmod(0o1777)  # sticky: others cannot rename this user's folder
        online_linear_kernel.reset_for_tests()
        assert online_linear_kernel.kernel() is not None
    finally:
        online_linear_kernel.reset_for_tests()


def test_a_killed_builds_temporary_file_is_removed_by_a_later_build(monkeypatch, tmp_path):
    """A build killed with SIGKILL leaves its temporary file; the next build removes those older than any live
    build (a concurrent one's is younger) instead of keeping them for good."""
    monkeypatch.delenv(online_linear_kernel.ENV_BACKEND, raising=False)
    monkeypatch.setenv(online_linear_kernel.ENV_CACHE, str(tmp_path))
    stale, live = tmp_path / ".build-killed.so", tmp_path / ".build-running.so"
    stale.write_bytes(b"\x7fELF partial")
    live.write_bytes(b"")
    old = time.time() - 3 * online_linear_kernel.BUILD_TIMEOUT_S
    os.utime(stale, (old, old))
    online_linear_kernel.reset_for_tests()
    try:
        assert online_linear_kernel.kernel() is not None
        assert not stale.exists() and live.exists()
    finally:
        online_linear_kernel.reset_for_tests()


def _use_backend(monkeypatch, backend: str) -> None:
    """Switch the backend mid-test (models built from now on take it; built ones keep theirs)."""
    if backend == "numpy":
        monkeypatch.setenv(online_linear_kernel.ENV_BACKEND, "numpy")
    else:
        monkeypatch.delenv(online_linear_kernel.ENV_BACKEND, raising=False)
    online_linear_kernel.reset_for_tests()
    assert (online_linear_kernel.kernel() is None) == (backend == "numpy")


def _run_layer(stack, records: list, at: int = 0, upto: int | None = None) -> list[float]:
    out = []
    for b, s, window, y in records[at:upto]:
        out.append(stack.predict_one(b, s, window))
        out.append(stack.coefficients[0])
        stack.learn_one(b, s, y, stack.context())
    return out + list(stack.expert_weights)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("config", LAYERS)
def test_the_layers_forecast_alike_on_both_backends_and_a_saved_stack_moves_across(monkeypatch, config):
    """``blend: pair`` / ``experts``: the compiled steps and the numpy code forecast the same to 1e-9 (forecasts,
    coefficients, expert weights), and a stack pickled on one backend carries on on the other as it would have
    on its own."""
    import pickle

    from edge_app.context_stacking import ContextStacking
    from tests.model_contract.test_online_linear_equivalence import close

    records = [(b, s, np.ascontiguousarray(w), y) for b, s, w, y in _stack_stream(3000, 5)]
    runs, saved = {}, {}
    try:
        for backend in ("numpy", "c"):
            _use_backend(monkeypatch, backend)
            stack = ContextStacking(**config)
            stack.bind(target_index=4)
            runs[backend] = _run_layer(stack, records, 0, 2000)
            saved[backend] = pickle.dumps(stack)
            runs[backend] += _run_layer(stack, records, 2000)
            assert (stack._cs is not None) == (backend == "c")
        assert len(runs["c"]) == len(runs["numpy"])
        assert all(close(a, b) for a, b in zip(runs["c"], runs["numpy"], strict=True))
        for there, back in (("numpy", "c"), ("c", "numpy")):  # saved on one backend, loaded on the other
            _use_backend(monkeypatch, back)
            moved = pickle.loads(saved[there])
            rest = _run_layer(moved, records, 2000)
            assert all(close(a, b) for a, b in zip(rest, runs[there][-len(rest) :], strict=True))
            assert (moved._cs is not None) == (back == "c")
    finally:
        online_linear_kernel.reset_for_tests()


@pytest.mark.parametrize("config", [{}, {"blend": "none"}, {"twin": True, "blend": "none"}])
def test_the_compiled_steps_are_built_once(compiled_linear, config):
    """The compiled steps' struct is built once the models exist, not per record: also for a layer the kernel does
    not run (``twin: true``, which once asked again on every record) and for the pair layer's cold twin."""
    from edge_app.combiners import make_combiner

    stack = make_combiner(config, target_index=1)
    built = stack._compiled
    calls = []
    stack._compiled = lambda: calls.append(1) or built()
    y = np.cumsum(np.random.default_rng(0).normal(size=300))
    for t in range(1, 298):
        window = np.array([[0.0, y[t - 1]], [1.0, y[t]]])
        stack.predict_one(y[t + 1], y[t], window)
        stack.learn_one(y[t + 1], y[t], y[t + 1], stack.context())
    assert len(calls) == 1 and (stack._cs is not None) == (not config.get("twin"))
