"""Many :class:`~model_contract.online_linear.OnlineLinear` models updated together: one numpy call per step.

The edge keeps one online linear model per device (inside its context stack). Each record's update is
~30 numpy calls on ~17 numbers, so what it costs is numpy's per-call overhead, not arithmetic. A bank
stacks the arrays of many models of the same shape and configuration (``mean``, ``var``, their square
roots, the weights ``w`` and the covariance ``P``), and the models' own attributes become *views* of
their rows: a model attached to a bank still forecasts, learns, saves and loads on its own, exactly as
before, while :meth:`OnlineLinearBank.learn` and :meth:`OnlineLinearBank.predict` do one step of several
models (one record each, e.g. the next reading of every device in a polled batch) with one numpy call
per step over all of them. The models' windows are single rows (``1 x inputs``, the context stack's rows:
``target_index`` is a position in the row), given to the bank as the rows of one array.

The results are those of each model's own :meth:`~model_contract.online_linear.OnlineLinear.learn_one` and
:meth:`~model_contract.online_linear.OnlineLinear.predict_one`, bit for bit: the elementwise steps are the
same IEEE operations row by row, and the dot products are the gufuncs ``vecdot`` / ``matvec`` (numpy >= 2.2;
``matmul`` before), which call the same BLAS kernels as ``ndarray.dot`` on each row
(tests/model_contract/test_online_linear_bank.py checks it against the models alone and the frozen
reference). A model the fast path does not cover (young: its first 20 records; not attached; a record that
is skipped or resets the state; the periodic re-symmetrisation) takes its own method, in the same call.

With the compiled kernel (:mod:`~model_contract.online_linear_kernel`) a model's step is one C call, and the
bank calls each model's own method (no model attaches): this stacking is the numpy fallback's.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> solo, banked = [OnlineLinear(1) for _ in range(3)], [OnlineLinear(1) for _ in range(3)]
>>> bank = OnlineLinearBank()
>>> for t in range(60):
...     x, y = rng.normal(size=(3, 4)), rng.normal(size=3)
...     f = bank.predict(banked, x)
...     assert f == [m.predict_one(x[i : i + 1]) for i, m in enumerate(solo)]
...     bank.learn(banked, x, y.tolist())
...     for i, m in enumerate(solo):
...         m.learn_one(x[i : i + 1], y[i])
>>> all(np.array_equal(a._P, b._P) and np.array_equal(a._w, b._w) for a, b in zip(solo, banked))
True
>>> len(bank) == (0 if online_linear_kernel.kernel() else 3)  # with the compiled kernel no model attaches
True
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import numpy as np

from model_contract import online_linear_kernel
from model_contract.online_linear import OnlineLinear, _clip


def _vecdot_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products with ``matmul`` on stacks (numpy < 2.2): the same BLAS call per row (``b`` one
    vector: each row's dot with it)."""
    if b.ndim == 1:
        return np.matmul(a, b)
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def _matvec_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Each matrix of ``a`` times its row of ``b`` into ``out`` with ``matmul`` on stacks (numpy < 2.2)."""
    np.matmul(a, b[:, :, None], out=out[:, :, None])
    return out


if hasattr(np, "matvec"):  # numpy >= 2.2: gufuncs, one BLAS call per row (the same as ndarray.dot's)
    _vecdot, _matvec = np.vecdot, np.matvec
else:  # pragma: no cover - numpy < 2.2 (the 32-bit ARM edge)
    _vecdot, _matvec = _vecdot_matmul, _matvec_matmul


_YOUNG = 20  # learn_one's winsorising starts after 20 records: younger models learn on their own
_CONFIG = ("target_index", "_lam", "_ds", "_clip", "_max_change", "_max_trace", "_d")


class OnlineLinearBank:
    """Stacked state of attached :class:`OnlineLinear` models of one shape and configuration (see the module doc).

    ``capacity``: rows allocated at first (doubled when full). Models attach themselves on their first
    :meth:`learn` / :meth:`predict` once they have a state (their first record learned); a model of another
    configuration or shape is never attached (it always runs alone). The bank holds its models weakly: the
    row of a model its owner dropped (a combiner replaced) goes to the next model that attaches.
    """

    def __init__(self, capacity: int = 8) -> None:
        self._cap = max(1, int(capacity))
        self._models: list[weakref.ref] = []  # row i: the model bound there (dead: the row is free)
        self._key: tuple | None = None  # the configuration of the attached models

    def __len__(self) -> int:
        """The models attached and still alive."""
        return sum(1 for ref in self._models if ref() is not None)

    # ---- attaching ----
    def _alloc(self, cap: int, size: int, d: int) -> None:
        self.mean, self.var, self.sd = np.zeros((cap, size)), np.ones((cap, size)), np.ones((cap, size))
        self.w, self.P = np.zeros((cap, d)), np.zeros((cap, d, d))
        self._cap = cap
        # work buffers (rows [:k] of them serve k models): the standardised inputs and the bias, the steps
        self._z = np.ones((cap, d))
        self._diff, self._hi, self._tmp = np.empty((cap, size)), np.empty((cap, size)), np.empty((cap, size))
        self._Pz, self._kk, self._outer = np.empty((cap, d)), np.empty((cap, d)), np.empty((cap, d, d))
        self._ones = np.ones(d)

    def _bind(self, model: OnlineLinear, slot: int) -> None:
        """Make the model's arrays views of row ``slot`` (its values already there)."""
        model._mean, model._var, model._w, model._P = self.mean[slot], self.var[slot], self.w[slot], self.P[slot]  # noqa: SLF001
        model._sd = self.sd[slot]  # noqa: SLF001 (kept = sqrt(var) by both learn paths)
        model._diag = model._P.reshape(-1)[:: model._d + 1]  # noqa: SLF001
        model._bank, model._slot = self, slot  # noqa: SLF001
        model._kc = None  # noqa: SLF001 (new arrays: a compiled kernel's struct is built again for them)

    def attach(self, model: OnlineLinear) -> bool:
        """Move ``model``'s state into a new row and bind it there; False if it cannot join (no state yet,
        another configuration or shape, inputs selected inside the model). True if attached (or already)."""
        if model._bank is self:  # noqa: SLF001
            return True
        if not model._d or model._bank is not None or model._inputs is not None:  # noqa: SLF001
            return False
        key = tuple(getattr(model, k) for k in _CONFIG)
        if self._key is None:
            self._key = key
            self._alloc(self._cap, model._d - 1, model._d)  # noqa: SLF001
        elif key != self._key:
            return False
        slot = next((i for i, ref in enumerate(self._models) if ref() is None), len(self._models))  # a free row
        if slot == self._cap:  # grow: copy, then re-bind every live model to the new arrays
            old = (self.mean, self.var, self.sd, self.w, self.P)
            self._alloc(2 * self._cap, old[0].shape[1], old[3].shape[1])
            for new, arr in zip((self.mean, self.var, self.sd, self.w, self.P), old, strict=True):
                new[:slot] = arr
            for i, ref in enumerate(self._models):
                m = ref()
                if m is not None:
                    self._bind(m, i)
        self.mean[slot], self.var[slot], self.w[slot], self.P[slot] = model._mean, model._var, model._w, model._P  # noqa: SLF001
        np.sqrt(self.var[slot], self.sd[slot])
        if slot == len(self._models):
            self._models.append(weakref.ref(model))
        else:
            self._models[slot] = weakref.ref(model)
        self._bind(model, slot)
        return True

    def _rows(self, models: Sequence[OnlineLinear]) -> slice | np.ndarray:
        """The rows of attached ``models``: a slice if they are consecutive, in order (the usual case)."""
        slots = [m._slot for m in models]  # noqa: SLF001
        first = slots[0]
        if slots == list(range(first, first + len(slots))):
            return slice(first, first + len(slots))
        return np.asarray(slots, dtype=np.intp)

    # ---- predict ----
    def predict(self, models: Sequence[OnlineLinear], x: np.ndarray) -> list[float]:
        """Each model's :meth:`~OnlineLinear.predict_one` of its row of ``x`` (models x inputs: each row a
        flattened window), in one pass."""
        if online_linear_kernel.kernel() is not None:  # compiled: each model's forecast is one C call
            return [m.predict_one(x[i : i + 1]) for i, m in enumerate(models)]
        out: list[float] = [0.0] * len(models)
        fast: list[int] = []
        for i, m in enumerate(models):
            if m._d == 0 or m.n < 2 or not (m._bank is self or self.attach(m)):  # noqa: SLF001
                out[i] = m.predict_one(x[i].reshape(1, -1))
            else:
                fast.append(i)
        if not fast:
            return out
        if len(fast) == len(models):
            xs, banked = x, models
        else:
            xs, banked = x[fast], [models[i] for i in fast]
        rows = self._rows(banked)
        clip = self._key[3]  # type: ignore[index]
        z = self._z[: len(banked)]
        zh = z[:, :-1]
        np.subtract(xs, self.mean[rows], zh)
        np.divide(zh, self.sd[rows], zh)
        _clip(zh, -clip, clip, zh)
        changes = _vecdot(self.w[rows], z).tolist()
        ti = self._key[0]  # type: ignore[index]
        lasts = xs[:, ti].tolist()
        for i, m, change, last in zip(fast, banked, changes, lasts, strict=True):
            bound = m._max_change * math.sqrt(m._dy2)  # noqa: SLF001
            if not math.isfinite(change):
                out[i] = last
            else:
                out[i] = last + (bound if change > bound else (-bound if change < -bound else change))
        return out

    # ---- learn ----
    def learn(self, models: Sequence[OnlineLinear], x: np.ndarray, ys: Sequence[float]) -> None:
        """Each model's :meth:`~OnlineLinear.learn_one` of its row of ``x`` (flattened windows) and truth in ``ys``."""
        if online_linear_kernel.kernel() is not None:  # compiled: each model's step is one C call
            for i, m in enumerate(models):
                m.learn_one(x[i : i + 1], ys[i])
            return
        ss = _vecdot(x, x).tolist()
        ti = self._key[0] if self._key is not None else models[0].target_index  # type: ignore[index]
        lasts = x[:, ti].tolist()
        fast: list[int] = []
        scal: list[tuple[float, float, float, int]] = []  # dy, ds, a, n
        for i, m in enumerate(models):
            y = float(ys[i])
            dy = y - lasts[i]
            n = m.n + 1
            if not (abs(dy) < 1e150 and ss[i] < 1e299) or n <= _YOUNG or n % 1000 == 0 or not self._joins(m):
                m.learn_one(x[i].reshape(1, -1), y)  # alone: young, odd input, or the periodic symmetrisation
                continue
            m.n = n
            ds = m._ds if n * (1.0 - m._ds) > 1.0 else 1.0 - 1.0 / n  # noqa: SLF001
            a = 1.0 - ds
            clip = m._clip  # noqa: SLF001
            dy2 = dy * dy
            if dy2 > clip * clip * m._dy2:  # noqa: SLF001
                dy2 = clip * clip * m._dy2  # noqa: SLF001
            m._dy2 = ds * m._dy2 + a * dy2  # noqa: SLF001
            fast.append(i)
            scal.append((dy, ds, a, n))
        if not fast:
            return
        banked = [models[i] for i in fast]
        xs = x if len(fast) == len(models) else x[fast]
        rows = self._rows(banked)
        gathered = not isinstance(rows, slice)
        mean, var, sd, w, P = self.mean[rows], self.var[rows], self.sd[rows], self.w[rows], self.P[rows]
        k = len(fast)
        clip = self._key[3]  # type: ignore[index]
        col = np.array([[s[2] for s in scal], [s[1] for s in scal]])[:, :, None]  # a, ds per row
        # the running standardisation (winsorised), row by row as learn_one
        diff, hi, tmp = self._diff[:k], self._hi[:k], self._tmp[:k]
        np.subtract(xs, mean, diff)
        np.multiply(sd, clip, hi)
        _clip(diff, np.negative(hi), hi, diff)
        np.multiply(diff, col[0], tmp)
        np.add(mean, tmp, mean)
        np.multiply(tmp, diff, tmp)
        np.add(var, tmp, var)
        np.multiply(var, col[1], var)
        np.fmax(var, 1e-12, var)
        np.sqrt(var, sd)
        z = self._z[:k]
        zh = z[:, :-1]
        np.subtract(xs, mean, zh)
        np.divide(zh, sd, zh)
        _clip(zh, -clip, clip, zh)
        wz = _vecdot(w, z).tolist()
        errs = [0.0] * k
        for r, (m, (dy, ds, a, _n)) in enumerate(zip(banked, scal, strict=True)):
            err = dy - wz[r]
            e2 = m._e2  # noqa: SLF001
            if e2 > 0.0:
                bound = clip * math.sqrt(e2)
                err = bound if err > bound else (-bound if err < -bound else err)
            m._e2 = ds * e2 + a * err * err  # noqa: SLF001
            errs[r] = err
        Pz = _matvec(P, z, out=self._Pz[:k])
        lam = self._key[1]  # type: ignore[index]
        denom = (_vecdot(z, Pz) + lam).tolist()  # = lam + z.dot(Pz)
        if not all(v > 0.0 and math.isfinite(v) for v in denom):
            self._learn_rest_alone(banked, rows, (mean, var, sd, w, P), z, errs, denom)
            return
        kk = np.divide(Pz, np.array(denom)[:, None], self._kk[:k])
        np.add(w, np.multiply(kk, np.array(errs)[:, None]), w)
        outer = self._outer[:k]
        np.multiply(kk[:, :, None], Pz[:, None, :], outer)  # = each model's outer(k, Pz), one product per entry
        np.subtract(P, outer, P)
        np.divide(P, lam, P)
        if gathered:
            self.mean[rows], self.var[rows], self.sd[rows], self.w[rows], self.P[rows] = mean, var, sd, w, P
        d = w.shape[1]
        quick = _vecdot(P.reshape(k, -1)[:, :: d + 1], self._ones).tolist()  # a check only (the exact one decides)
        ww = _vecdot(w, w).tolist()
        bound = self._key[5] * (1.0 - 1e-6)  # type: ignore[index]
        for r, m in enumerate(banked):
            if not (quick[r] < bound and math.isfinite(ww[r])):
                _trace_check(m, ww[r])

    def _joins(self, m: OnlineLinear) -> bool:
        return m._bank is self or (bool(m._d) and self.attach(m))  # noqa: SLF001

    def _learn_rest_alone(self, banked, rows, arrays, z, errs, denom) -> None:  # noqa: ANN001
        """A record whose denominator is not a positive finite number (the state resets): the rest of the
        update model by model, as learn_one (rare; the standardisation part is already done)."""
        mean, var, sd, w, P = arrays
        if not isinstance(rows, slice):
            self.mean[rows], self.var[rows], self.sd[rows], self.w[rows], self.P[rows] = mean, var, sd, w, P
        for r, m in enumerate(banked):
            den = denom[r]
            if not (den > 0.0 and math.isfinite(den)):
                m._reset()  # noqa: SLF001
                continue
            Pz = np.dot(m._P, z[r])  # noqa: SLF001
            k = Pz / den
            m._w += k * errs[r]  # noqa: SLF001
            m._P -= np.dot(k[:, None], Pz[None, :])  # noqa: SLF001
            m._P /= m._lam  # noqa: SLF001
            _trace_check(m, float(m._w.dot(m._w)))  # noqa: SLF001


def _trace_check(m: OnlineLinear, ww: float) -> None:
    """learn_one's exact end: a non-finite state resets, a covariance trace over the bound is scaled down."""
    P, w = m._P, m._w  # noqa: SLF001
    quick = float(P.reshape(-1)[:: m._d + 1].dot(m._ones))  # noqa: SLF001
    if quick < m._max_trace * (1.0 - 1e-6) and math.isfinite(ww):  # noqa: SLF001
        return
    trace = float(P.trace())
    if not math.isfinite(trace) or not (math.isfinite(ww) or np.isfinite(w).all()):
        m._reset()  # noqa: SLF001
        return
    if trace > m._max_trace:  # noqa: SLF001
        P *= m._max_trace / trace  # noqa: SLF001
