"""An online linear forecaster: recursive least squares with forgetting, built not to diverge.

The second baseline (after :mod:`~model_contract.persistence_forecast`): a linear model on the same
lag window as the LSTMs (:class:`~model_contract.FeatureBuffer.window`), updated record by
record. It forecasts the *change* from the newest target value, with weights starting at
zero, so before it has learned anything it is the persistence forecast.

Safe on drifting or wild inputs (it runs on the edge, numpy only):

* inputs are standardised with slow running means/variances and clipped to ``±clip``
  standard deviations, so an input far outside what was seen moves the forecast by a
  bounded amount;
* the forecast change is clipped to ``±max_change`` times the running RMS of the observed
  changes;
* the update's error is winsorised (``±clip`` running RMS errors), the covariance trace
  is bounded (no wind-up when inputs stop varying), non-finite records are skipped and
  counted (``skipped``), and a numerically broken state resets itself (``resets``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> model = OnlineLinear(target_index=1, half_life=500)
>>> x = rng.normal(size=(2000, 2))
>>> y = np.zeros(2000)
>>> for t in range(1, 2000):  # target(t) = target(t-1) + 0.5 * a(t-1)
...     y[t] = y[t - 1] + 0.5 * x[t - 1, 0]
>>> for t in range(1, 2000):
...     window = np.array([[x[t - 1, 0], y[t - 1]]])
...     _ = model.predict_one(window)
...     model.learn_one(window, y[t])
>>> w = np.array([[1.0, 3.0]])
>>> round(model.predict_one(w), 1)  # 3 + 0.5 * 1
3.5
>>> model.learn_one(np.full((1, 2), np.inf), 1e300); model.skipped
1
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from model_contract import online_linear_kernel

try:  # the ufunc np.clip calls after its Python checks (numpy >= 2: numpy._core; 1.x: numpy.core)
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.umath import clip as _clip


_F64 = np.dtype(np.float64)
_N, _SKIPPED, _RESETS, _DY2, _E2 = 2, 3, 4, 0, 1  # positions in OnlineLinear._s (the kernel's order)
# the compiled kernel's functions (model_contract.online_linear_kernel.Kernel), set when a model first uses it
_klearn = _kpredict = _kview = None


def array_field(array: str, at: int | slice | tuple, kind: type | None = None, doc: str | None = None) -> property:
    """A property for ``self.<array>[at]`` (numbers kept in a float64 array a compiled kernel updates in place):
    ``kind`` int or float reads a Python number, None a view (``at`` a slice: ``view[0] += 1`` writes through);
    ``at`` a tuple of positions reads a tuple of floats. Assigning writes the value(s) in place.

    >>> class C:
    ...     count = array_field("_a", 0, int)
    ...     pair = array_field("_a", (1, 2))
    ...     def __init__(self):
    ...         self._a = np.zeros(3)
    >>> c = C(); c.count += 2; c.pair = (0.5, 1.5)
    >>> c.count, c.pair, c._a.tolist()
    (2, (0.5, 1.5), [2.0, 0.5, 1.5])
    """
    if isinstance(at, tuple):
        first, second = at

        def get(self):  # noqa: ANN001, ANN202
            a = getattr(self, array)
            return (a.item(first), a.item(second))

        where: int | slice = slice(first, second + 1)
    else:
        where = at
        if kind is None:

            def get(self):  # noqa: ANN001, ANN202
                return getattr(self, array)[at]
        elif kind is int:

            def get(self):  # noqa: ANN001, ANN202
                return int(getattr(self, array)[at])
        else:

            def get(self):  # noqa: ANN001, ANN202
                return getattr(self, array).item(at)

    def put(self, value) -> None:  # noqa: ANN001
        getattr(self, array)[where] = value

    return property(get, put, doc=doc)


def _kernel_positions(inputs: np.ndarray | None) -> bool:
    """Whether the compiled kernel reads these window positions as the numpy code does: all of them (None) or a
    non-empty list of positions >= 0 (numpy counts a negative one from the end; the kernel's 0 means "all")."""
    return inputs is None or (len(inputs) > 0 and int(inputs.min()) >= 0)


def decay(half_life: float) -> float:
    """The per-record forgetting factor of a memory of ``half_life`` records (an old value counts half after
    that many): the one definition behind every half-life of the blend (ValueError unless > 0).

    >>> decay(1.0), round(decay(10.0) ** 10, 12)
    (0.5, 0.5)
    """
    if not half_life > 0:
        raise ValueError("half_life must be > 0 (records)")
    return 0.5 ** (1.0 / half_life)


class OnlineLinear:
    """RLS with forgetting on the standardised, flattened lag window; target = change from the newest value.

    ``half_life``: the RLS memory in records; ``scale_half_life``: the (slower) memory of
    the input standardisation; ``prior``: initial covariance (larger = faster start);
    ``clip``: input / error clip in standard deviations; ``max_change``: forecast change
    clip in RMS of observed changes; ``inputs``: positions of the flattened window to read
    (default all; :meth:`for_spec` reads a calendar spec's calendar features once).
    """

    name = "online_linear"

    def __init__(
        self,
        target_index: int,
        half_life: float = 1000.0,
        scale_half_life: float = 5000.0,
        prior: float = 1.0,
        clip: float = 8.0,
        max_change: float = 8.0,
        max_trace: float = 1e4,
        inputs: Sequence[int] | None = None,
    ) -> None:
        self.target_index = int(target_index)
        self._inputs = None if inputs is None else np.asarray(inputs, dtype=np.intp)
        self._lam = decay(half_life)
        self._ds = decay(scale_half_life)
        self._prior = float(prior)
        self._clip = float(clip)
        self._max_change = float(max_change)
        self._max_trace = float(max_trace)
        self._d = 0  # set from the first window
        self._s = np.zeros(5)  # the scalars (n, skipped, resets, _dy2, _e2 read them): the compiled kernel's too

    def _init(self, size: int) -> None:
        self._d = size + 1  # + bias
        self._mean = np.zeros(size)
        self._var = np.ones(size)
        self._w = np.zeros(self._d)
        self._P = np.eye(self._d) * self._prior
        self._z = np.ones(self._d)  # last slot: the bias input
        self._s[_DY2] = 0.0  # running mean square of the observed changes
        self._s[_E2] = 0.0  # running mean square of the (change) errors
        self._buffers()

    # the scalars live in _s (float64: the compiled kernel updates them in place); these read and write them
    n = array_field("_s", _N, int, "records learned")
    skipped = array_field("_s", _SKIPPED, int, "records not learned: a non-finite or absurd (>= 1e150) input or truth")
    resets = array_field("_s", _RESETS, int, "times a numerically broken state reset itself")
    _dy2 = array_field("_s", _DY2, float)
    _e2 = array_field("_s", _E2, float)

    # work buffers (the per-record path allocates nothing): rebuilt from the state, never saved or copied
    _BUFFERS = ("_sd", "_zh", "_diff", "_tmp", "_lo", "_Pz", "_k", "_kerr", "_kcol", "_Pzrow", "_outer")
    _BUFFERS += ("_hi0", "_lo0", "_lam0", "_floor0", "_a0", "_ds0", "_a", "_ones", "_diag")
    _BUFFERS += ("_bank", "_slot")  # an OnlineLinearBank's binding: a copy has arrays of its own
    _BUFFERS += ("_kc", "_kin")  # the compiled kernel's view of the arrays (built on first use), its inputs
    _bank = None  # the OnlineLinearBank whose rows hold the arrays (model_contract.online_linear_bank)
    _slot = -1
    _kc = None  # the kernel's struct (cdata) pointing at the arrays; False: this model runs the numpy code

    def _buffers(self) -> None:
        # the cost is numpy's per-call overhead on ~20 numbers, so every step is one call into one of these
        size, d = self._d - 1, self._d
        self._sd: np.ndarray | None = None  # sqrt(_var), kept by learn_one; None: recompute (_var written)
        self._zh = self._z[:-1]  # the standardised inputs (a view)
        self._diff, self._tmp, self._lo = np.empty(size), np.empty(size), np.empty(size)
        self._Pz, self._k, self._kerr = np.empty(d), np.empty(d), np.empty(d)
        self._kcol, self._Pzrow = self._k[:, None], self._Pz[None, :]
        self._outer = np.empty((d, d))
        # scalars as 0-d arrays: a ufunc takes them at half the cost of a Python float (the same values)
        self._hi0, self._lo0 = np.array(self._clip), np.array(-self._clip)
        self._lam0, self._floor0 = np.array(self._lam), np.array(1e-12)
        self._a0, self._ds0, self._a = np.array(0.0), np.array(0.0), 0.0  # 1 - ds, ds (set by learn_one)
        self._ones = np.ones(d)  # the trace of _P: its diagonal's dot with these
        self._diag = self._P.reshape(-1)[:: d + 1]  # _P's diagonal (a view)
        self._kc = None  # the arrays may be new: the kernel's struct is built again on the next record

    def _kernel(self):  # noqa: ANN202 (cffi cdata)
        """The compiled kernel's struct for this model's arrays (built on first use), or False: numpy code."""
        lib = online_linear_kernel.kernel()
        arrays = (self._mean, self._var, self._w, self._P, self._s)
        odd = self._d > online_linear_kernel.MAX_D or not _kernel_positions(self._inputs)
        if lib is None or odd or not all(a.dtype == np.float64 and a.flags.c_contiguous for a in arrays):
            self._kc = False
            return False
        ffi = lib.ffi
        global _klearn, _kpredict, _kview  # noqa: PLW0603 (set once: the hot path reads module globals)
        _klearn, _kpredict, _kview = lib.learn, lib.predict, lib.view
        k = ffi.new("ol_model *")
        k.d, k.ti = self._d, self.target_index
        if self._inputs is not None:
            self._kin = np.ascontiguousarray(self._inputs, dtype=np.int64)
            k.ninputs, k.max_input = len(self._kin), int(self._kin.max(initial=-1))
            k.inputs = ffi.cast("const long long *", self._kin.ctypes.data)
        k.lam, k.ds, k.prior, k.clip = self._lam, self._ds, self._prior, self._clip
        k.max_change, k.max_trace = self._max_change, self._max_trace
        if self._sd is None or not (self._sd.flags.c_contiguous and self._sd.dtype == np.float64):
            self._sd = np.sqrt(self._var)
        for name, arr in (("s", self._s), ("mean", self._mean), ("var", self._var), ("sd", self._sd)):
            setattr(k, name, ffi.cast("double *", arr.ctypes.data))
        k.w, k.P = ffi.cast("double *", self._w.ctypes.data), ffi.cast("double *", self._P.ctypes.data)
        self._kc = k
        return k

    def __getstate__(self) -> dict:
        """Pickle / copy without the work buffers (views into the state would come back as copies)."""
        return {k: v for k, v in self.__dict__.items() if k not in self._BUFFERS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._d:
            self._buffers()

    @classmethod
    def for_spec(cls, spec, **params) -> OnlineLinear:
        """The model for windows of a :class:`~model_contract.FeatureSpec`: its target, and with calendar
        features the spec's :meth:`~model_contract.FeatureSpec.linear_inputs` (their newest copy only)."""
        inputs = spec.linear_inputs() if spec.calendar else None
        return cls(spec.target_index, inputs=inputs, **params)

    def _flat(self, window: np.ndarray) -> np.ndarray:
        flat = window.reshape(-1)
        return flat if self._inputs is None else flat[self._inputs]

    def _stdev(self) -> np.ndarray:
        """sqrt(_var), cached: learn_one refreshes it in place after each update of _var (and _init clears
        it, so a state written into the arrays _init made is read afresh)."""
        sd = self._sd
        if sd is None:
            sd = self._sd = np.sqrt(self._var)
        return sd

    def _features(self, flat: np.ndarray) -> np.ndarray:
        """The standardised, clipped inputs and the bias (the work buffer ``_z``)."""
        zh = self._zh
        np.subtract(flat, self._mean, zh)
        np.divide(zh, self._sd if self._sd is not None else self._stdev(), zh)
        _clip(zh, self._lo0, self._hi0, zh)  # = np.clip(zh, -clip, clip, out=zh), without its wrapper
        return self._z

    def _misfit(self, window: np.ndarray) -> ValueError:
        return ValueError(
            f"a window of shape {window.shape} does not fit this online linear model ({self._d - 1} inputs)"
        )

    def _kernel_args(self, window: np.ndarray) -> tuple | None:
        """(the kernel's struct, the window's size, its newest target value's position), or None: the numpy
        code (no compiled kernel, no state yet, a window not float64 and C-contiguous)."""
        k = self._kc
        if k is None and self._d:
            k = self._kernel()
        if k and (window.dtype is _F64 or window.dtype == _F64) and window.flags.c_contiguous:  # unpickled: equal
            rows, cols = window.shape
            ti = self.target_index
            if 0 <= ti < cols:
                return k, rows * cols, (rows - 1) * cols + ti
        return None

    def predict_one(self, window: np.ndarray) -> float:
        args = self._kernel_args(window)
        if args is not None:
            f = _kpredict(args[0], _kview(window), args[1], args[2])
            if f == f or not args[0].err:
                return f
            raise self._misfit(window)
        last = float(window[-1, self.target_index])
        if self._d == 0 or self.n < 2:
            return last
        flat = window.reshape(-1) if self._inputs is None else window.reshape(-1)[self._inputs]
        change = float(self._w.dot(self._features(flat)))
        bound = self._max_change * math.sqrt(self._dy2)
        if not math.isfinite(change):
            return last
        return last + (bound if change > bound else (-bound if change < -bound else change))

    def learn_one(self, window: np.ndarray, y: float) -> None:
        """Learn from the window a forecast was made from and the truth that arrived for it."""
        args = self._kernel_args(window)
        if args is not None:
            if _klearn(args[0], _kview(window), args[1], args[2], y):
                raise self._misfit(window)
            return
        # the numpy code (no compiled kernel, the first record, an odd window)
        # one preallocated buffer per step: the cost is numpy's per-call overhead on ~20 numbers, so the
        # number of calls is what counts (each gives the same floats as the textbook expression beside it)
        flat = window.reshape(-1) if self._inputs is None else window.reshape(-1)[self._inputs]
        last = float(window[-1, self.target_index])
        dy = float(y) - last
        # every |input| < 1e150 (so finite): one dot product decides the usual case (sum of squares < 1e299
        # => each < 1e150; NaN/inf/overflow fail the comparison and take the exact check)
        if not (abs(dy) < 1e150 and (float(flat.dot(flat)) < 1e299 or float(np.abs(flat).max()) < 1e150)):
            self.skipped += 1
            return
        if self._d == 0:
            self._init(flat.size)
        self.n = n = self.n + 1
        # running standardisation (plain means while young, then forgetting)
        ds = self._ds if n * (1.0 - self._ds) > 1.0 else 1.0 - 1.0 / n
        a = 1.0 - ds
        if a != self._a:  # changes only while young
            self._a = a
            self._a0.fill(a)
            self._ds0.fill(ds)
        mean, var = self._mean, self._var
        if n == 1:
            mean[:] = flat
        else:
            diff, tmp = self._diff, self._tmp
            np.subtract(flat, mean, diff)  # diff = flat - mean
            if n > 20:  # winsorised: one absurd (finite) reading must not blow up the scales
                hi, lo = tmp, self._lo
                np.multiply(self._sd if self._sd is not None else self._stdev(), self._hi0, hi)
                np.negative(hi, lo)
                _clip(diff, lo, hi, diff)  # = np.clip(diff, -sd * clip, sd * clip, out=diff)
            a0 = self._a0
            np.multiply(diff, a0, tmp)  # (1 - ds) * diff
            np.add(mean, tmp, mean)
            np.multiply(tmp, diff, tmp)  # (1 - ds) * diff * diff
            np.add(var, tmp, var)
            np.multiply(var, self._ds0, var)  # var = ds * (var + (1 - ds) * diff * diff)
            np.fmax(var, self._floor0, var)  # var is finite here
            sd = self._sd
            if sd is None:
                self._sd = np.sqrt(var)
            else:
                np.sqrt(var, sd)
        clip = self._clip
        dy2 = dy * dy
        if n > 20 and dy2 > clip * clip * self._dy2:
            dy2 = clip * clip * self._dy2
        self._dy2 = ds * self._dy2 + a * dy2 if n > 1 else dy2
        z = self._features(flat)
        w = self._w
        err = dy - float(w.dot(z))
        if n > 20 and self._e2 > 0.0:  # winsorised: one wild record must not throw the weights
            bound = clip * math.sqrt(self._e2)
            err = bound if err > bound else (-bound if err < -bound else err)
        self._e2 = ds * self._e2 + a * err * err if n > 1 else err * err
        P, Pz, k = self._P, self._Pz, self._k
        np.dot(P, z, Pz)  # Pz = P @ z
        denom = self._lam + float(z.dot(Pz))
        if not (denom > 0.0 and math.isfinite(denom)):
            self._reset()
            return
        np.divide(Pz, denom, k)  # k = Pz / denom
        kerr = self._kerr
        np.multiply(k, err, kerr)
        np.add(w, kerr, w)  # w += k * err
        outer = self._outer
        np.dot(self._kcol, self._Pzrow, out=outer)  # = np.outer(k, Pz), exactly (one product per entry)
        np.subtract(P, outer, P)
        np.divide(P, self._lam0, P)  # P = (P - outer(k, Pz)) / lam
        # the trace and the weights finite, the trace bound far: two dot products decide the usual case (the
        # diagonal's dot with ones is the trace to a few ulps, the margin 1e-6; w @ w finite => w finite);
        # else exactly as before: the trace (np.trace's sum), the finite check, the bound applied with it
        quick = float(self._diag.dot(self._ones))
        ww = float(w.dot(w))
        if not (quick < self._max_trace * (1.0 - 1e-6) and math.isfinite(ww)):  # also NaN / inf
            trace = float(P.trace())
            if not math.isfinite(trace) or not (math.isfinite(ww) or np.isfinite(w).all()):
                self._reset()
                return
            if trace > self._max_trace:  # no covariance wind-up when the inputs stop varying
                P *= self._max_trace / trace
        if n % 1000 == 0:
            P += P.T
            P *= 0.5

    def _reset(self) -> None:
        self.resets += 1
        self._w[:] = 0.0
        self._P[...] = np.eye(self._d) * self._prior  # in place: the arrays may be views (OnlineLinearBank)

    @property
    def weights(self) -> np.ndarray:
        """The current weights (standardised inputs in window order, then the bias)."""
        return self._w.copy() if self._d else np.zeros(0)

    # ---- state (the batch model's warm start for the context stack: model_contract.context_stack) ----
    # what defines a trained model: config (decays, clips, inputs), learned arrays and scalars, counters
    _STATE_CONFIG = ("target_index", "_lam", "_ds", "_prior", "_clip", "_max_change", "_max_trace")
    _STATE_ARRAYS = ("_mean", "_var", "_w", "_P")
    _STATE_SCALARS = ("_dy2", "_e2")
    _STATE_COUNTS = ("n", "skipped", "resets")

    def state(self) -> dict:
        """Everything that defines this model as a JSON-friendly dict (floats round-trip exactly);
        :meth:`from_state` rebuilds a model that forecasts and learns identically."""
        out: dict = {"d": int(self._d)}
        out["config"] = {k.lstrip("_"): float(getattr(self, k)) for k in self._STATE_CONFIG}
        out["config"]["target_index"] = int(self.target_index)
        out["config"]["inputs"] = None if self._inputs is None else [int(i) for i in self._inputs]
        out |= {k.lstrip("_"): int(getattr(self, k)) for k in self._STATE_COUNTS}
        if self._d:
            out |= {k.lstrip("_"): np.asarray(getattr(self, k), dtype=float).tolist() for k in self._STATE_ARRAYS}
            out |= {k.lstrip("_"): float(getattr(self, k)) for k in self._STATE_SCALARS}
        return out

    @classmethod
    def from_state(cls, state: dict) -> OnlineLinear:
        """The model :meth:`state` describes; ValueError if the state is malformed, inconsistent or not finite."""
        try:
            cfg = state["config"]
            d = int(state["d"])
            model = cls(int(cfg["target_index"]), inputs=cfg["inputs"])
            for k in cls._STATE_CONFIG[1:]:
                value = float(cfg[k.lstrip("_")])
                if not (math.isfinite(value) and value > 0):
                    raise ValueError(f"config {k.lstrip('_')} = {value!r} is not a finite positive number")
                setattr(model, k, value)
            counts = {k: int(state[k.lstrip("_")]) for k in cls._STATE_COUNTS}
            if d:
                arrays = {k: np.asarray(state[k.lstrip("_")], dtype=float) for k in cls._STATE_ARRAYS}
                scalars = {k: float(state[k.lstrip("_")]) for k in cls._STATE_SCALARS}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"bad online linear state: {type(exc).__name__}: {exc}") from None
        if not (0 < model._lam < 1 and 0 < model._ds < 1):
            raise ValueError("bad online linear state: decays must be in (0, 1)")
        if d < 0 or min(counts.values()) < 0:
            raise ValueError("bad online linear state: negative size or count")
        if model._inputs is not None and d and len(model._inputs) != d - 1:
            raise ValueError(f"bad online linear state: {len(model._inputs)} inputs for size {d}")
        if d:
            shapes = {"_mean": (d - 1,), "_var": (d - 1,), "_w": (d,), "_P": (d, d)}
            for k, arr in arrays.items():
                if arr.shape != shapes[k]:
                    raise ValueError(f"bad online linear state: {k.lstrip('_')} has shape {arr.shape}, not {shapes[k]}")
                if not np.isfinite(arr).all():
                    raise ValueError(f"bad online linear state: {k.lstrip('_')} is not finite")
            if not all(math.isfinite(v) and v >= 0 for v in scalars.values()):
                raise ValueError("bad online linear state: running squares must be finite and >= 0")
            if not (arrays["_var"] > 0).all():
                raise ValueError("bad online linear state: variances must be > 0")
            model._init(d - 1)
            for k, arr in arrays.items():
                getattr(model, k)[...] = arr  # in place: the arrays _init made (and anything bound to them)
            for k, v in scalars.items():
                setattr(model, k, v)
        for k, v in counts.items():
            setattr(model, k, v)
        return model


def stream_forecasts(
    matrix: np.ndarray, spec, warmup: np.ndarray | None = None, **params
) -> tuple[np.ndarray, OnlineLinear]:
    """Per target row of ``matrix`` (rows x ``spec.features``): the online linear forecast made ``horizon`` rows
    earlier, as the edge runs it (the :class:`~model_contract.FeatureBuffer` window, each truth learned when it
    arrives); NaN where there is none. ``warmup`` rows are streamed first, unscored. Returns (forecasts, model).
    """
    model = OnlineLinear.for_spec(spec, **params)
    if warmup is not None and len(warmup):
        learn_stream(model, warmup, spec)
    return learn_stream(model, matrix, spec, record=True), model


def learn_stream(model: OnlineLinear, data: np.ndarray, spec, record: bool = False, drain: bool = True) -> np.ndarray:
    """Stream ``data`` (rows x ``spec.features``) through ``model`` as the edge does: a forecast per
    :class:`~model_contract.FeatureBuffer` window, its truth learned when it arrives ``horizon`` rows later.
    Returns per target row the forecast made for it (NaN where none, or all NaN unless ``record``); ``drain``:
    also learn the last forecasts' truths, which arrive within ``data`` only after its end."""
    from collections import deque  # noqa: PLC0415

    from model_contract.features import FeatureBuffer  # noqa: PLC0415

    h, ti = spec.horizon, spec.target_index
    out = np.full(len(data), np.nan)
    buf = FeatureBuffer(spec)
    pending: deque = deque()  # (target row, window copy)
    y = data[:, ti]
    for t in range(len(data)):
        while pending and pending[0][0] <= t - 1:  # the truth of row t-1 has arrived
            j, w = pending.popleft()
            model.learn_one(w, y[j])
        if buf.ready and t + h - 1 < len(data):
            j = t + h - 1
            if record:
                out[j] = model.predict_one(buf.window)
            pending.append((j, buf.window.copy()))
        buf.push_row(data[t])
    while drain and pending:
        j, w = pending.popleft()
        model.learn_one(w, y[j])
    return out
