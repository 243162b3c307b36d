"""The context stack: the edge's default blend, and its warm start by streaming the history through it.

:class:`ContextStack` forecasts the target's change from its newest value with one
:class:`~model_contract.online_linear.OnlineLinear` over the row ``[lag-window inputs, batch - last,
speed - last]`` (:func:`layout`) and guards it with forgotten squared errors. The edge's dynamic
combiner (``edge_app.context_stacking.ContextStacking``, ``method: context``) is this class with its
optional layers on top. The trainer computes the state a fresh stack reaches on the batch model's own
history by streaming that history through one (:func:`warm_start`, :func:`stream`: no model forecasts
exist there, so batch = speed = last and both model inputs read 0; only the linear part learns). It
ships it in the batch manifest (``extra["combiner_warm_start"]``); every new device's combiner starts
from it, the window's part from the warm start's twin and the model inputs' part fresh (:meth:`ContextStack.load_warm`,
:func:`fresh_model_inputs`: the history taught it nothing about them; docs/edge.md), and ``hybridstream eval run``
replays exactly that.

>>> import numpy as np
>>> from model_contract import FeatureSpec
>>> spec = FeatureSpec(columns=("a", "y"), target="y", lags=(1, 2))
>>> rng = np.random.default_rng(0)
>>> history = np.cumsum(rng.normal(size=(300, 2)), axis=0)
>>> warm = warm_start(history, spec)
>>> warm["rows"], warm["method"], len(warm["state"]["model"]["w"])  # 298 truths; 4 window inputs + 2 + bias
(298, 'context', 7)
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from model_contract import online_linear_kernel
from model_contract.features import FeatureBuffer, FeatureSpec
from model_contract.online_linear import (
    _DY2,
    _F64,
    OnlineLinear,
    _kernel_positions,
    array_field,
    decay,
    learn_stream,
)

log = logging.getLogger(__name__)
HUGE = 1e150  # an error (or its square) at or above this, or NaN/inf, is not learned
BIG = 1e75  # errors beyond this (or NaN/inf) count as the winsorised maximum (their square would overflow)
WILD = 1e4  # one error's square counts at most WILD x (persistence's forgotten MSE + its own)
GUARD_MIN_RECORDS = 10  # records of errors the guard needs before it mutes anything
# a model's forecast change below NEGLIGIBLE x the RMS of the observed changes is read as exactly 0 (as if absent):
# persistence up to float32 rounding must not become a unit-scale regressor once standardised (docs/combination.md)
NEGLIGIBLE = 1e-3
_NEGLIGIBLE2 = 1e-6  # NEGLIGIBLE squared (on squares: no square root on the hot path; the kernel's NEGLIGIBLE2)
WARM_KEY = "combiner_warm_start"  # the batch manifest's extra field
TWIN_KEY = "twin"  # the warm start's field: the layers' twin (twin_warm_start; absent in older manifests)
_stack_learn = _stack_predict = _view = None  # the compiled kernel's stack steps, window view (set by _compiled)


def layout(shape: tuple[int, int], target_index: int, inputs: Sequence[int] | None = None) -> tuple[int, int]:
    """``(n, last)`` of the row for lag windows of ``shape``: the row is ``[n window inputs (the flattened
    window, or its ``inputs`` positions), batch - last, speed - last]``; ``last`` is the newest target
    value's position in it. ValueError if ``inputs`` leave the newest target value out."""
    steps, cols = shape
    last = (steps - 1) * cols + int(target_index)
    if inputs is None:
        return steps * cols, last
    hits = np.flatnonzero(np.asarray(inputs) == last)
    if not len(hits):
        raise ValueError("context stacking's inputs must include the newest target value")
    return len(inputs), int(hits[0])


def without_model_inputs(model: OnlineLinear, batch: bool = False, speed: bool = False) -> OnlineLinear:
    """The stack's online linear model (inputs: window, batch - last, speed - last, + bias) cut to the window's
    inputs (and the model inputs asked for): what a model without the others learned on a warm start's history,
    where both model inputs were 0."""
    state = model.state()
    d = state["d"]
    keep = [*range(d - 3), *([d - 3] if batch else []), *([d - 2] if speed else []), d - 1]  # the bias is last
    P = np.asarray(state["P"])[np.ix_(keep, keep)]
    state |= {
        "d": len(keep),
        "mean": [state["mean"][i] for i in keep[:-1]],
        "var": [state["var"][i] for i in keep[:-1]],
    }
    state |= {"w": [state["w"][i] for i in keep], "P": P.tolist()}
    return OnlineLinear.from_state(state)


def fresh_model_inputs(model: OnlineLinear, count: int, window: OnlineLinear | None = None) -> OnlineLinear:
    """``model`` (a warm stack's: inputs window, model inputs, + bias) with its last ``count`` inputs before the
    bias (the model inputs it reads) fresh: mean 0, variance the model's running mean square of the target's
    changes (``dy2``: the scale of a forecast change, so the start is scale-invariant), weight 0, covariance rows
    and columns 0 with the prior on the diagonal. ``window`` (the warm start's twin: the same config on the
    window's inputs only, :func:`twin_warm_start`) replaces the window's part (weights, covariance, means,
    variances, running squares, record count); without it that part stays as learned. The twin leaves the
    history's last truth out (:func:`twin_warm_start`, as eval streams its baseline): its record count ``n`` is
    one behind the stack's (e.g. 19,997 vs 19,998), while ``warm_rows``, the guard and the skipped / reset counts
    stay the stack's. Left so on purpose (draining the twin would change every shipped warm start): ``n`` sets the
    scales' decay only while below 1 / (1 - ds) records (~7,200 at the defaults: 1 - 1/n, off by 1/n^2) and
    else only times the covariance's re-symmetrising (every 1,000 records).

    A warm start learns the model inputs on a history where both are 0 ("no change"): it learns nothing about them,
    their variances fall to ~0 (the first real forecasts were then standardised by ~0 and clipped) and their
    covariance grows until the trace cap, whose rescaling also shrinks the window's part (7-12x on 20k-row
    histories): the twin never had those columns. Chosen on the first halves of 13 streams (docs/combination.md,
    issue 17)."""
    if not model._d:  # noqa: SLF001
        return model
    state = model.state()
    d, prior = state["d"], float(state["config"]["prior"])
    k = d - 1 - count  # the window's inputs
    P = np.asarray(state["P"], dtype=float)
    if window is not None and window._d == k + 1:  # noqa: SLF001
        twin = window.state()
        keep = [*range(k), d - 1]  # the window's inputs and the bias
        P[np.ix_(keep, keep)] = np.asarray(twin["P"], dtype=float)
        state["mean"][:k], state["var"][:k] = twin["mean"], twin["var"]
        state["w"][:k], state["w"][d - 1] = twin["w"][:k], twin["w"][k]
        state |= {key: twin[key] for key in ("dy2", "e2", "n")}
    elif not count:
        return model
    var = state["dy2"] if state["dy2"] > 0 else 1.0  # a constant history: no scale to take
    for c in range(k, d - 1):  # the bias is last
        state["mean"][c], state["var"][c], state["w"][c] = 0.0, var, 0.0
        P[c, :] = 0.0
        P[:, c] = 0.0
        P[c, c] = prior
    state["P"] = P.tolist()
    return OnlineLinear.from_state(state)


class ContextStack:
    """Context stacking: one online linear model forecasts the target's change from its newest value
    out of the lag window and the two models' forecast changes.

    Its input row is ``[lag window (flattened, or the ``bind``'s inputs), batch - last, speed - last]``
    (``last`` = the newest target value); the model is :class:`~model_contract.online_linear.OnlineLinear`
    (recursive least squares with forgetting, ``half_life`` records of memory; inputs standardised and
    clipped to ``clip`` standard deviations, the forecast change to ``max_change`` RMS changes, errors
    winsorised, covariance bounded, a broken state resets itself). Its coefficients start at zero, so it
    starts as the persistence forecast; without the two model inputs it is the online linear baseline,
    which it therefore contains (docs/combination.md, issue 8). ``use_batch`` / ``use_speed`` = False keep
    that model's input at 0 (the ablation of docs/combination.md: both False is the online linear baseline).

    Guard: the forgotten squared error (half-life ``error_half_life`` records) of each model, of
    persistence and of the stack itself is tracked; a model whose recent RMS error exceeds ``mute``
    times persistence's gets its input zeroed for that record (read as "no change"), counted in
    ``muted`` (batch, speed); if the stack's own exceeds ``mute`` times persistence's it forecasts
    persistence (``fallbacks``) until it recovers. Non-finite model forecasts are zeroed too
    (``bad_inputs``); the forecast is finite whenever the window's newest target value is. A model's change
    below ``NEGLIGIBLE`` (1e-3) x the RMS of the observed changes is read as exactly 0, as if the model were
    absent (not counted): persistence up to float32 rounding must not become a regressor (issue 17).

    ``coefficients`` are the regression coefficients on each model's forecast change, in the target's
    units (0 for a muted model; they need not sum to 1); ``weights`` is the same pair under the name the
    combiners share (the prediction record's ``weights``). The lag window comes with ``predict_one(batch,
    speed, window)``; :meth:`context` is the row that forecast was made from, which the truth must be
    learned with ``horizon`` records later: ``learn_one(batch, speed, y, context)``.

    >>> c = ContextStack()
    >>> c.bind(target_index=1)
    >>> c.predict_one(7.0, 6.5, np.array([[0.0, 5.0], [1.0, 6.0]]))  # untrained: persistence
    6.0
    >>> rng = np.random.default_rng(0)
    >>> y = np.cumsum(rng.normal(size=3001))  # a random walk; the batch model knows the next step
    >>> for t in range(1, 3000):
    ...     window = np.array([[0.0, y[t - 1]], [1.0, y[t]]])
    ...     b, s = y[t + 1] + rng.normal(0, 0.05), y[t] + rng.normal(0, 1.0)
    ...     _ = c.predict_one(b, s, window)
    ...     _ = c.learn_one(b, s, y[t + 1], c.context())
    >>> round(c.coefficients[0], 1), round(abs(c.coefficients[1]), 1)  # the batch model's change taken in full
    (1.0, 0.0)
    >>> c.predict_one(1e300, 6.0, window) == c.predict_one(1e300, 6.0, window) < 1e299  # a wild input: bounded
    True
    """

    name = "dynamic"
    uses_window = True

    def __init__(
        self,
        half_life: float = 1000.0,
        clip: float = 8.0,
        max_change: float = 8.0,
        mute: float = 3.0,
        error_half_life: float = 24.0,
        use_batch: bool = True,
        use_speed: bool = True,
    ) -> None:
        decay(half_life)
        if not clip > 0 or not max_change > 0:
            raise ValueError("clip and max_change must be > 0")
        if not mute > 1:
            raise ValueError("mute must be > 1 (times persistence's RMS error)")
        self.half_life, self.clip, self.max_change = half_life, clip, max_change
        self.mute, self.error_half_life = mute, error_half_life
        self.use_batch, self.use_speed = bool(use_batch), bool(use_speed)  # ablations: an unused input stays 0
        self._ed = decay(error_half_life)
        self._limit = float(mute) * float(mute)  # on squared errors
        self._layers = False  # True: a subclass's layers over the stack forecast (_predict_layers, _learn_layers)
        self.target_index: int | None = None  # the target's column in the window (bind)
        self._inputs: np.ndarray | None = None
        self.model: OnlineLinear | None = None  # built on the first window (its size)
        self._row: np.ndarray | None = None
        self._shape: tuple[int, ...] = ()
        # forgotten squared errors (batch, speed, persistence, the stack), records seen, skipped, coefficients,
        # muted (batch, speed), bad inputs, fallbacks, the last forecast's coefficients: in one array (read through
        # the properties below), which the compiled steps update in place
        self._g = np.zeros(14)
        self.warm_rows = 0  # history rows of the warm start it started from (load_warm; 0: cold)

    _mse = array_field("_g", slice(0, 4))
    _seen = array_field("_g", 4, int)
    skipped = array_field("_g", 5, int, "truths not learned: no context, or a non-finite newest value / truth")
    _coef = array_field("_g", (6, 7))
    muted = array_field("_g", slice(8, 10), None, "records forecast with the batch / speed input muted by the guard")
    bad_inputs = array_field("_g", 10, int, "non-finite model forecasts (zeroed)")
    fallbacks = array_field("_g", 11, int, "records forecast as persistence because the stack's own errors exploded")
    _w = array_field("_g", (12, 13))
    _cs = None  # the compiled steps' struct (cdata; built on first use); None: the Python steps
    _csk = None  # the linear model's kernel struct it points at (kept alive; another one: built again)
    _COMPILED = ("_cs", "_csk", "_csrow", "_csin")

    _VIEWS = ("_vals", "_wv", "_win", "_x")  # views of _row (a copy would detach them): made again from it

    def __getstate__(self) -> dict:
        """Pickle / copy without the compiled steps' struct (built again on first use) and the row's views."""
        return {k: v for k, v in self.__dict__.items() if k not in self._COMPILED and k not in self._VIEWS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._row is not None:
            self._views()

    def bind(self, target_index: int, inputs: Sequence[int] | None = None) -> None:
        """Tell it which column of the window is the target (``FeatureSpec.target_index``) and which
        positions of the flattened window it reads (default all; ``FeatureSpec.linear_inputs()``, the
        online linear model's: a calendar spec's calendar features once)."""
        self.target_index = int(target_index)
        self._inputs = None if inputs is None else np.asarray(inputs, dtype=np.intp)
        self._row = None
        self._cs = self._csk = None  # built again for the next row

    def bind_spec(self, spec: FeatureSpec) -> None:
        """:meth:`bind` to ``spec``'s windows and build the row and the model now (not on the first window)."""
        self.bind(spec.target_index, spec.linear_inputs() if spec.calendar else None)
        self._setup(np.zeros(spec.input_shape))

    def _setup(self, window: np.ndarray) -> None:
        if self.target_index is None:
            raise ValueError("context stacking needs the target's column: make_combiner(config, target_index=...)")
        steps, cols = window.shape
        n, last = layout(window.shape, self.target_index, self._inputs)
        self._shape = window.shape
        # window, batch - last, speed - last | the forecast, the stack's, its twin's (the last two: the layers')
        self._row = np.zeros((1, n + 5))
        self._nm = int(self.use_batch) + int(self.use_speed)  # model inputs it reads (an ablation reads fewer)
        self._k = n
        self._last = last
        self._views()
        self.model = self._linear()

    def _views(self) -> None:
        """The views of the row (``_setup``; a copy's, of its own row)."""
        n = self._k
        self._vals = self._row[0]
        self._wv = self._vals[:n]
        self._win = self._wv.reshape(self._shape) if self._inputs is None else None  # a view: copied in place
        self._x = self._row[:, : n + self._nm]  # what the linear model sees

    def _linear(self) -> OnlineLinear:
        """A fresh online linear model for this row (the stack's; a subclass's twin)."""
        return OnlineLinear(self._last, half_life=self.half_life, clip=self.clip, max_change=self.max_change)

    @property
    def coefficients(self) -> tuple[float, float]:
        """The last forecast's coefficients on (batch - last, speed - last), 0 for a muted model."""
        g = self._g  # = self._w, read directly (twice a reading on the hot path)
        return (g.item(12), g.item(13))

    @property
    def weights(self) -> tuple[float, float]:
        """:attr:`coefficients` (the name every combiner answers to; published as the record's ``weights``)."""
        g = self._g
        return (g.item(12), g.item(13))

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float:
        m = self.model
        cs = self._cs if m is None or self._csk is m._kc else self._compiled()  # noqa: SLF001
        if (
            cs is not None
            and window is not None
            and (window.dtype is _F64 or window.dtype == _F64)  # an unpickled array: an equal dtype
            and window.shape == self._shape
            and window.flags.c_contiguous
        ):  # the compiled step: row, guard, linear model, fallback in one call
            f = _stack_predict(cs, _view(window), window.size, batch, speed)
            if f == f or not self._csk.err:
                return f
            raise ValueError(f"a window of shape {window.shape} does not fit this context stack")
        verdict = self.prepare(batch, speed, window)
        return self.finish(self.model.predict_one(self._x), verdict, batch, speed)

    def prepare(self, batch: float, speed: float, window: np.ndarray | None) -> tuple[float, bool, bool, bool]:
        """:meth:`predict_one`'s first half: the row (:attr:`model_row` is what the linear model forecasts from)
        and the guard's verdict for :meth:`finish`. Between the two, ``self.model.predict_one(self.model_row)``,
        or an :class:`~model_contract.online_linear_bank.OnlineLinearBank` forecasting several stacks' rows at once."""
        if window is None:
            raise ValueError("context stacking forecasts from the lag window: predict_one(batch, speed, window)")
        if self._row is None or window.shape != self._shape:
            self._setup(window)
        if self._inputs is None:
            np.copyto(self._win, window)
        else:
            window.take(self._inputs, None, self._wv)  # = np.take(window.reshape(-1), ...), without its wrapper
        v = self._vals
        last = float(v[self._last])
        db = batch - last
        ds = speed - last
        mb = ms = guarded = False
        g = self._g
        tiny = _NEGLIGIBLE2 * self.model._s.item(_DY2)  # noqa: SLF001 (squared: the negligible change)
        if g.item(4) >= GUARD_MIN_RECORDS:  # records seen
            limit = self._limit * g.item(2)
            mb = not g.item(0) <= limit
            ms = not g.item(1) <= limit
            guarded = not g.item(3) <= limit
        if not self.use_batch:
            db = 0.0
        elif mb:
            self.muted[0] += 1
            db = 0.0
        elif not -HUGE < db < HUGE:
            self.bad_inputs += 1
            db = 0.0
        elif db * db < tiny:
            db = 0.0
        if not self.use_speed:
            ds = 0.0
        elif ms:
            self.muted[1] += 1
            ds = 0.0
        elif not -HUGE < ds < HUGE:
            self.bad_inputs += 1
            ds = 0.0
        elif ds * ds < tiny:
            ds = 0.0
        k = self._k
        if self._nm == 2:
            v[k] = db
            v[k + 1] = ds
        else:  # an ablation: the models it reads first, the rest of the two slots 0 (not read by the model)
            v[k] = db if self.use_batch else (ds if self.use_speed else 0.0)
            v[k + 1] = 0.0
        return last, mb, ms, guarded

    @property
    def model_row(self) -> np.ndarray:
        """The linear model's input row (1 x inputs, a view of the row) as the last :meth:`prepare` left it."""
        return self._x

    def finish(self, f: float, verdict: tuple[float, bool, bool, bool], batch: float, speed: float) -> float:
        """:meth:`predict_one`'s second half: the forecast, from the linear model's ``f`` and :meth:`prepare`'s
        verdict."""
        last, mb, ms, guarded = verdict
        if self._layers:
            f = self._predict_layers(f, last, batch, speed, mb, ms)
        else:
            self._vals[self._k + 2] = f
            cb, cs = self._coef
            self._w = (0.0 if mb else cb, 0.0 if ms else cs)
        if guarded and math.isfinite(last):
            self.fallbacks += 1
            return last
        if math.isfinite(f):
            return f
        return batch if math.isfinite(batch) else speed  # no finite newest value: whichever model is finite

    def _predict_layers(self, f: float, last: float, batch: float, speed: float, mb: bool, ms: bool) -> float:
        """A subclass's layers over the stack's forecast ``f``: set the row's forecast slots and ``_w``, return
        the forecast (the guard's fallback still applies)."""
        raise NotImplementedError

    def _learn_layers(self, context: np.ndarray, last: float, batch: float, speed: float, y: float) -> None:
        """A subclass's layers learn the truth ``y`` of the forecast made from ``context``."""
        raise NotImplementedError

    def context(self) -> np.ndarray | None:
        """A copy of the row the last forecast was made from (kept with it until its truth arrives)."""
        return None if self._row is None else self._row.copy()

    def forecast_of(self, context: np.ndarray) -> float:
        """The stack's forecast (before any guard fallback) that was made from ``context``."""
        return float(context[0, self._k + 2])

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> bool:
        """Learn the truth ``y`` of the forecast made from ``context`` (its :meth:`context`); False if it was
        skipped (no context, or a non-finite newest value or truth: counted in ``skipped``)."""
        m = self.model
        cs = self._cs if m is None or self._csk is m._kc else self._compiled()  # noqa: SLF001
        if (
            cs is not None
            and context is not None
            and (context.dtype is _F64 or context.dtype == _F64)
            and context.shape == self._row.shape
            and context.flags.c_contiguous
        ):  # the compiled step: guard, model, coefficients in one call
            r = _stack_learn(cs, _view(context), context.size, batch, speed, y)
            if r < 0:
                raise ValueError(f"a context of shape {context.shape} does not fit this context stack")
            return r == 1
        x = self.learn_row(batch, speed, y, context)
        if x is None:
            return False
        self.model.learn_one(x, float(y))
        self.learned(batch, speed, float(y), context)  # type: ignore[arg-type]
        return True

    def _compiled(self):  # noqa: ANN202 (cffi cdata)
        """The compiled steps' struct for this stack and its linear model (None: the Python steps: no compiled
        kernel, no model yet, or layers the kernel does not run). Built again when the model or its arrays change."""
        global _stack_learn, _stack_predict, _view  # noqa: PLW0603 (set once: the hot path reads module globals)
        m = self.model
        k = m._kc  # noqa: SLF001
        if k is None and m._d:  # noqa: SLF001
            k = m._kernel()  # noqa: SLF001
        self._cs, self._csk = None, k
        kern = online_linear_kernel.kernel()
        if not k or kern is None or self._row is None or not _kernel_positions(self._inputs):
            return None
        _stack_learn, _stack_predict, _view = kern.stack_learn, kern.stack_predict, kern.view
        ffi = kern.ffi
        c = ffi.new("cs_stack *")
        c.m, c.rowlen, c.k, c.nm, c.last = k, self._row.size, self._k, self._nm, self._last
        c.use_batch, c.use_speed, c.ed, c.limit = int(self.use_batch), int(self.use_speed), self._ed, self._limit
        c.g = ffi.cast("double *", self._g.ctypes.data)
        self._csrow = self._row  # kept alive with the struct
        c.row = ffi.cast("double *", self._row.ctypes.data)
        if self._inputs is not None:
            self._csin = np.ascontiguousarray(self._inputs, dtype=np.int64)
            c.ninputs, c.max_input = len(self._csin), int(self._csin.max(initial=-1))
            c.inputs = ffi.cast("const long long *", self._csin.ctypes.data)
        if self._layers and not self._compile_layers(c, ffi):
            return None
        self._cs = c
        return c

    def _compile_layers(self, c, ffi) -> bool:  # noqa: ANN001 (cffi cdata, cffi)
        """A subclass's layers into the compiled steps' struct ``c`` (its fields ``twin``, ``ne``, ``e``, ``eta``,
        ``ed2``, ``edv``: the expert-weighting layer); False: these layers run the Python steps."""
        return False

    def learn_row(self, batch: float, speed: float, y: float, context: np.ndarray | None) -> np.ndarray | None:
        """:meth:`learn_one`'s first half: the guard learns the errors; returns the row the linear model learns
        ``y`` from (None: skipped, counted). Then ``self.model.learn_one(row, y)``, or an
        :class:`~model_contract.online_linear_bank.OnlineLinearBank` for several stacks at once; then
        :meth:`learned`."""
        if context is None or self._row is None or context.shape != self._row.shape:
            self.skipped += 1
            return None
        y = float(y)
        ep = context.item(0, self._last) - y
        if not -HUGE < ep < HUGE:
            self.skipped += 1
            return None
        self._update_guard((batch - y, speed - y, ep, context.item(0, self._k + 2) - y))
        return context[:, : self._k + self._nm]

    def learned(self, batch: float, speed: float, y: float, context: np.ndarray) -> None:
        """:meth:`learn_one`'s second half, once the linear model learned ``y`` (a float): the layers, the
        coefficients."""
        if self._layers:
            self._learn_layers(context, float(context[0, self._last]), batch, speed, y)
        if self.model.n:
            self._set_coef()

    def _update_guard(self, errors: tuple[float, float, float, float]) -> None:
        """Forget-and-add the squared errors (batch, speed, persistence, the stack), winsorised (one absurd
        forecast is muted, not for ages); a plain mean over the first records."""
        g = self._g
        m0, m1, m2, m3, n = g.tolist()[:5]
        eb, es, ep, ef = errors
        cap = WILD * (m2 + ep * ep) + 1e-300
        n += 1.0
        ed = self._ed
        d = ed if n * (1.0 - ed) > 1.0 else 1.0 - 1.0 / n
        a = 1.0 - d
        # each: its square (the cap for a non-finite or huge error), at most the cap; unrolled (hot path)
        sq = eb * eb if -BIG < eb < BIG else cap
        m0 = d * m0 + a * (cap if sq > cap else sq)
        sq = es * es if -BIG < es < BIG else cap
        m1 = d * m1 + a * (cap if sq > cap else sq)
        sq = ep * ep if -BIG < ep < BIG else cap
        m2 = d * m2 + a * (cap if sq > cap else sq)
        sq = ef * ef if -BIG < ef < BIG else cap
        m3 = d * m3 + a * (cap if sq > cap else sq)
        g[0] = m0  # item by item: cheaper than a slice from a tuple
        g[1] = m1
        g[2] = m2
        g[3] = m3
        g[4] = n

    def _set_coef(self) -> None:
        w, var, k = self.model._w, self.model._var, self._k  # noqa: SLF001 (the standardised weights, in target units)
        g = self._g  # the coefficients: g[6], g[7] (_coef)
        if self._nm == 2:  # .item: Python floats (the same division, without numpy scalars)
            g[6] = w.item(k) / math.sqrt(var.item(k))
            g[7] = w.item(k + 1) / math.sqrt(var.item(k + 1))
        else:
            c = w.item(k) / math.sqrt(var.item(k)) if self._nm else 0.0
            g[6] = c if self.use_batch else 0.0
            g[7] = c if self.use_speed and not self.use_batch else 0.0

    def reset_speed(self) -> None:
        """A new speed model: its input keeps the learned coefficient; the guard watches its errors."""
        return None

    def warm_config(self) -> dict:
        """The keys that shape what it learns (a warm start must have been computed with the same)."""
        return {k: getattr(self, k) for k in LEARNING_KEYS}

    def state(self) -> dict:
        """What it learned, JSON-friendly: ``{"model": its OnlineLinear's state, "guard": {"mse": [4], "seen"}}``."""
        if self.model is None:
            raise ValueError("the context stack has no model yet: bind_spec() or predict_one() first")
        return {"model": self.model.state(), "guard": {"mse": [float(v) for v in self._mse], "seen": self._seen}}

    def load_warm(self, warm: Mapping, spec: FeatureSpec) -> OnlineLinear | None:
        """Start from a warm start (:func:`warm_start` on the batch model's history: its linear model with the
        window's part from the warm start's twin where it has one and the model inputs' part fresh
        (:func:`fresh_model_inputs`), and its guard's errors); ValueError if it does not fit
        this config / spec (then nothing changes). Counters start at 0; ``warm_rows`` says how many history rows
        it learned. Returns the warm start's model as shipped (None: empty)."""
        why = mismatch(warm, spec, self.warm_config())
        if why:
            raise ValueError(why)
        model, mse, seen = parse(warm, spec)
        self.bind_spec(spec)
        if model._d:  # noqa: SLF001 (an empty history leaves it cold)
            kept = model if self._nm == 2 else without_model_inputs(model, self.use_batch, self.use_speed)
            try:
                twin = parse_twin(warm, spec)
            except ValueError as exc:  # a bad twin: the window's part as learned
                log.warning("the context stack keeps the warm start's window part as learned: %s", exc)
                twin = None
            self.model = fresh_model_inputs(kept, self._nm, twin)
            self._set_coef()
        self._mse, self._seen = mse, seen
        self.warm_rows = int(warm.get("rows", seen))
        return model if model._d else None  # noqa: SLF001

    def counts(self) -> dict[str, int]:
        """The guard's and the model's counters (the edge's metrics, ``eval run``'s JSON)."""
        model = self.model
        return {
            "muted_batch": int(self.muted[0]),
            "muted_speed": int(self.muted[1]),
            "fallbacks": self.fallbacks,
            "bad_inputs": self.bad_inputs,
            "skipped": self.skipped + (model.skipped if model is not None else 0),
            "resets": model.resets if model is not None else 0,
        }


# the keys that shape what a stack learns, and their defaults: ContextStack's (a warm start records them)
LEARNING_KEYS = ("half_life", "clip", "max_change", "error_half_life")
DEFAULT_CONFIG: dict = {k: float(inspect.signature(ContextStack).parameters[k].default) for k in LEARNING_KEYS}


def config_of(config: Mapping | None = None) -> dict:
    """The learning keys of a context config (defaults filled in, floats): what a warm state must match."""
    cfg = dict(DEFAULT_CONFIG)
    for k in DEFAULT_CONFIG:
        if config is not None and config.get(k) is not None:
            cfg[k] = float(config[k])
    return cfg


def stream(stack: ContextStack, history: np.ndarray, spec: FeatureSpec, residuals: list[float] | None = None) -> None:
    """Stream ``history`` (rows x ``spec.features``, oldest first) through ``stack`` record by record as the
    edge does, with batch = speed = the newest target value: forecast when the window is full, learn each
    truth ``horizon`` rows later (the last forecasts' truths too). ``residuals``: if a list, the stack's
    forecast - truth of every learned truth is appended to it, in the order the truths arrive."""
    buf, h, ti = FeatureBuffer(spec), spec.horizon, spec.target_index
    pending: deque = deque()  # (target row, last, the forecast's context)

    def learn(j: int, last: float, ctx: np.ndarray) -> None:
        y = float(history[j, ti])
        if stack.learn_one(last, last, y, ctx) and residuals is not None:
            residuals.append(stack.forecast_of(ctx) - y)

    for t in range(len(history)):
        while pending and pending[0][0] <= t - 1:
            learn(*pending.popleft())
        if buf.ready and t + h - 1 < len(history):
            window = buf.window
            last = float(window[-1, ti])
            stack.predict_one(last, last, window)
            pending.append((t + h - 1, last, stack.context()))
        buf.push_row(history[t])
    for item in pending:  # the truths of the last forecasts are in the history too
        learn(*item)


def warm_start(
    history: np.ndarray, spec: FeatureSpec, config: Mapping | None = None, residuals: list[float] | None = None
) -> dict:
    """The state a fresh context stack reaches by streaming ``history`` (rows x ``spec.features``, oldest first)
    through it (:func:`stream`).

    Returns ``{"method": "context", "config": ..., "spec": ..., "rows": truths learned, "state": {"model":
    OnlineLinear state, "guard": {"mse": [4], "seen": n}}, "twin": the layers' twin (:func:`twin_warm_start`)}``
    (JSON-friendly; ~2 d^2 floats, d = inputs + 3).
    ``residuals``: if a list, the stack's forecast - truth of every learned truth is appended to it (in the
    order the truths arrive: what :func:`model_contract.conformal.warm_start` streams).
    """
    cfg = config_of(config)
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 2 or history.shape[1] != len(spec.features):
        raise ValueError(f"history must be rows x {len(spec.features)} features, got shape {history.shape}")
    stack = ContextStack(**cfg)
    stack.bind_spec(spec)
    stream(stack, history, spec, residuals)
    warm = {"method": "context", "config": cfg, "spec": spec.to_dict(), "rows": stack._seen, "state": stack.state()}  # noqa: SLF001
    return warm | {TWIN_KEY: twin_warm_start(history, spec, cfg)}


def twin_warm_start(history: np.ndarray, spec: FeatureSpec, config: Mapping | None = None) -> dict:
    """The state of the layers' twin (``blend: pair``/``experts``): a plain online linear model with the stack's
    config on the window's inputs only (:meth:`OnlineLinear.for_spec`, the online linear baseline), streamed
    through ``history`` as ``hybridstream eval`` streams its baseline: each truth learned when it arrives
    ``horizon`` rows later, the last forecasts' truths left out. Laid out as the twin reads the stack's row
    (target at the row's ``last``, no input positions). JSON-friendly; the warm start's ``"twin"``."""
    cfg = config_of(config)
    model = OnlineLinear.for_spec(spec, half_life=cfg["half_life"], clip=cfg["clip"], max_change=cfg["max_change"])
    learn_stream(model, np.asarray(history, dtype=np.float64), spec, drain=False)
    state = model.state()
    _, last = layout(spec.input_shape, spec.target_index, spec.linear_inputs() if spec.calendar else None)
    state["config"] |= {"target_index": last, "inputs": None}
    return state


def parse_twin(warm: Mapping, spec: FeatureSpec) -> OnlineLinear | None:
    """The twin of a warm start (:func:`twin_warm_start`), None if it has none (older manifests: the layers then
    cut the stack's model, :func:`without_model_inputs`); ValueError if malformed or not for this spec's rows."""
    state = warm.get(TWIN_KEY)
    if state is None:
        return None
    model = OnlineLinear.from_state(state)
    n, last = layout(spec.input_shape, spec.target_index, spec.linear_inputs() if spec.calendar else None)
    if model.target_index != last or model._inputs is not None or model._d not in (0, n + 1):  # noqa: SLF001
        raise ValueError(f"bad combiner warm start: twin size {model._d} / target {model.target_index} != this spec's")  # noqa: SLF001
    differ = _config_differs(state.get("config"), ((warm.get("state") or {}).get("model") or {}).get("config"))
    if differ:
        raise ValueError(f"bad combiner warm start: the twin's config differs from the stack's ({differ})")
    return model


def _config_differs(twin: Mapping | None, stack: Mapping | None) -> str:
    """The learning keys (half-life's lam, prior, clips, trace cap, ...) on which a twin's OnlineLinear config
    differs from the stack's ('' if none; target_index and inputs aside: the twin reads the stack's row)."""
    twin, stack = twin or {}, stack or {}
    keys = sorted((set(twin) | set(stack)) - {"target_index", "inputs"})
    return ", ".join(
        f"{k} {twin.get(k)} != {stack.get(k)}"
        for k in keys
        if not (
            isinstance(twin.get(k), int | float)
            and isinstance(stack.get(k), int | float)
            and math.isclose(twin[k], stack[k])
        )
    )


def mismatch(warm: Mapping | None, spec: FeatureSpec, config: Mapping | None) -> str:
    """Why ``warm`` (a :func:`warm_start` dict) cannot start a context stack with ``config`` on ``spec``
    ('' if it can)."""
    if not warm:
        return "the batch model ships no combiner warm start"
    if not isinstance(warm, Mapping) or warm.get("method") != "context":
        return "the warm start is not a context stack's"
    if config is not None and config.get("twin"):
        return "the combiner has twin=true (the warm start is for the stack alone)"
    want = config_of(config)
    got = warm.get("config") or {}
    diff = [k for k in want if not (isinstance(got.get(k), int | float) and math.isclose(got[k], want[k]))]
    if diff:
        return "the combiner config differs from the warm start's: " + ", ".join(
            f"{k} {want[k]:g} != {got.get(k)}" for k in diff
        )
    if warm.get("spec") != spec.to_dict():
        return "the warm start was computed for another feature spec"
    return ""


def parse(warm: Mapping, spec: FeatureSpec) -> tuple[OnlineLinear, list[float], int]:
    """(model, guard mse, guard count) of a warm start; ValueError if malformed or not for this spec's rows."""
    try:
        state = warm["state"]
        model = OnlineLinear.from_state(state["model"])
        mse = [float(v) for v in state["guard"]["mse"]]
        seen = int(state["guard"]["seen"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad combiner warm start: {type(exc).__name__}: {exc}") from None
    inputs = spec.linear_inputs() if spec.calendar else None
    n, last_pos = layout(spec.input_shape, spec.target_index, inputs)
    if model.target_index != last_pos or model._d not in (0, n + 3):  # noqa: SLF001
        raise ValueError(f"bad combiner warm start: size {model._d} / target {model.target_index} != rows of this spec")  # noqa: SLF001
    if len(mse) != 4 or seen < 0 or not all(math.isfinite(v) and v >= 0 for v in mse):
        raise ValueError("bad combiner warm start: the guard's errors must be 4 finite values >= 0")
    return model, mse, seen
