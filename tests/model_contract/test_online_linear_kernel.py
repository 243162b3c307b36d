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

import numpy as np
import pytest

from model_contract import context_stack, online_linear, online_linear_bank, online_linear_kernel
from model_contract.context_stack import ContextStack
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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("config", [{}, {"use_speed": False}, {"mute": 1.5, "error_half_life": 5.0}])
def test_the_compiled_stack_step_equals_the_python_steps(compiled_linear, config):
    """ContextStack.learn_one in one C call (guard, linear model, coefficients) ends exactly where its Python
    steps around the same compiled model end: every forecast, coefficient, count and the state, bit for bit."""
    fused, steps = ContextStack(**config), ContextStack(**config)
    steps._compiled = lambda: None  # the Python steps (the model still runs the kernel)
    for c in (fused, steps):
        c.bind(target_index=4)
    for b, s, window, y in _stack_stream(4000, 3):
        got = [c.predict_one(b, s, window) for c in (fused, steps)]
        assert got[0] == got[1] or (np.isnan(got[0]) and np.isnan(got[1]))
        assert fused.coefficients == steps.coefficients
        learned = [c.learn_one(b, s, y, c.context()) for c in (fused, steps)]
        assert learned[0] == learned[1]
    assert fused._cs is not None and steps._cs is None and fused.model._kc and steps.model._kc
    assert fused.counts() == steps.counts() and fused.counts()["skipped"] > 0
    assert fused.state() == steps.state()
