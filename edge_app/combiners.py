"""How the batch and the speed forecast are combined into the hybrid one.

Every combiner follows the same small protocol (river style): ``predict_one(batch, speed, window)``
returns the hybrid forecast, ``weights`` the (batch, speed) weights it used, and
``learn_one(batch, speed, y, context)`` updates it once the true value ``y`` has arrived, with the
``context()`` it returned when that forecast was made (``horizon`` records earlier).
``reset_speed()`` is called when a new speed model is swapped in. Only combiners with
``uses_window`` (``context``) read the lag window and keep a context; the others ignore both.

The convex ones are pure Python floats: a few multiplications per record, no allocation on
``predict_one``/``learn_one`` beyond the floats themselves (the hot path of the edge); ``context``
is one small numpy RLS per device (preallocated row; one copy per forecast for its context).

>>> c = make_combiner({"strategy": "static", "speed_weight": 0.3})
>>> c.predict_one(10.0, 20.0), c.weights
(13.0, (0.7, 0.3))

The default is ``dynamic`` with context stacking (half-life 1000 records), chosen by measurement
on the turbine scenarios (docs/combination.md, ``hybridstream eval run``): it starts as the
persistence forecast (weights 0) and learns from the lag window and both forecasts.

>>> c = make_combiner({}, target_index=4)
>>> c.name, type(c).__name__, c.weights
('dynamic', 'ContextStacking', (0.0, 0.0))

Strategies and their config keys (``strategy: dynamic`` takes ``method`` and its keys):

========================  =====================================================================
``batch`` / ``speed``     one model only
``static``                ``speed_weight`` (0.3 = the research prototype's 0.3 speed / 0.7 batch)
``dynamic``, ``method``:
``context`` (default)     one RLS (:class:`~model_contract.online_linear.OnlineLinear`) on the change
                          from the newest target value over [lag window, batch - last, speed - last];
                          ``half_life``, ``clip``, ``max_change``; guard: a model whose recent RMS
                          error exceeds ``mute`` x persistence's (half-life ``error_half_life``) is muted
                          ``blend: experts`` adds an exponentially weighted layer over the stack, the
                          online linear model, persistence, batch, speed, static (``blend_eta``, ...)
``inverse_mse``           weights ~ 1 / exponentially forgotten MSE; ``half_life`` (records)
``sliding_mse``           weights ~ 1 / MSE over the last ``size`` records
``hedge``                 weights ~ exp(-eta * forgotten normalised loss); ``eta``, ``half_life``
``eg``                    exponentiated gradient on the hybrid's own loss; ``eta``, ``max_logit``
``stacking``              online convex stacking: RLS on ``y - b = w (s - b)``; ``half_life``, ``clip``
                          (the default until issue 8)
``ftl``                   follow the leader (lowest forgotten MSE) with ``margin`` hysteresis
========================  =====================================================================

``on_swap`` (``keep`` or ``reset``) says what a new speed model inherits: ``keep`` its
predecessor's error record, ``reset`` the batch model's (equal trust).

The config keys of a method are its class's constructor parameters, with the measured defaults
in the signatures (:mod:`edge_app.registry`); an unknown key is refused with the valid ones, and
every combiner keeps its arguments as attributes (river's convention):

>>> make_combiner({"method": "stacking"}).half_life
5.0
>>> make_combiner({"method": "stacking", "half_lfe": 5})
Traceback (most recent call last):
...
ValueError: unknown combination method key(s) for stacking: half_lfe (valid: clip, delta, half_life, method, on_swap)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edge_app.registry import Configurable, Registry
from model_contract import FeatureSpec, context_stack
from model_contract.context_stack import HUGE as _HUGE
from model_contract.online_linear import OnlineLinear


class Combiner(Protocol):
    name: str

    @property
    def weights(self) -> tuple[float, float]: ...

    uses_window: bool

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float: ...

    def context(self) -> np.ndarray | None: ...

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None: ...

    def reset_speed(self) -> None: ...


# squared errors at or above _HUGE (or NaN/inf) are skipped: one wild record must not poison the state;
# errors beyond _BIG (or NaN/inf) count as the winsorised maximum (their square would overflow)


def _decay(half_life: float) -> float:
    if not half_life > 0:
        raise ValueError("half_life must be > 0 (records)")
    return 0.5 ** (1.0 / half_life)


def _check_on_swap(on_swap: str) -> str:
    if on_swap not in ("keep", "reset"):
        raise ValueError("on_swap must be 'keep' or 'reset'")
    return on_swap


STRATEGIES: Registry[Combiner] = Registry("combination strategy", key="strategy", default="dynamic")
METHODS: Registry[Combiner] = Registry("combination method", key="method", default="context")


class _Convex(Configurable):
    """Shared part of the convex combiners: the speed weight ``_ws`` and ``predict_one``."""

    name = "dynamic"
    uses_window = False  # blends the two forecasts only: no lag window, no per-forecast context
    _ws = 0.5

    @property
    def weights(self) -> tuple[float, float]:
        return (1.0 - self._ws, self._ws)

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float:
        return batch + self._ws * (speed - batch)

    def context(self) -> None:
        """Nothing to keep with a forecast (see :meth:`ContextStacking.context`)."""
        return None


@STRATEGIES.register("static")
class Fixed(_Convex):
    """Fixed weights (``static``): ``speed_weight`` for the speed model, the rest for the batch one.

    ``Fixed(speed_weight=0.3)`` reproduces the research prototype's 0.3 speed / 0.7 batch.

    >>> Fixed(0.3).predict_one(10.0, 20.0)
    13.0
    """

    name = "static"

    def __init__(self, speed_weight: float = 0.3) -> None:
        if not 0.0 <= speed_weight <= 1.0:
            raise ValueError("speed_weight must be within [0, 1]")
        self.speed_weight = speed_weight
        self._ws = float(speed_weight)
        self._w = (1.0 - self._ws, self._ws)

    @property
    def weights(self) -> tuple[float, float]:
        return self._w

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float:
        return self._w[0] * batch + self._w[1] * speed

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        return None

    def reset_speed(self) -> None:
        return None


@STRATEGIES.register("batch")
class BatchOnly(Fixed):
    """The batch model only (weights (1, 0))."""

    name = "batch"

    def __init__(self) -> None:
        super().__init__(0.0)


@STRATEGIES.register("speed")
class SpeedOnly(Fixed):
    """The speed model only (weights (0, 1))."""

    name = "speed"

    def __init__(self) -> None:
        super().__init__(1.0)


class _ForgottenMSE(_Convex):
    """The exponentially forgotten squared error of each model (``_mb``, ``_ms``): the state of
    ``inverse_mse`` and ``ftl``, updated by :meth:`_update_mse`."""

    def _init_mse(self, half_life: float, prior: float) -> None:
        self._d = _decay(half_life)
        self._mb = prior
        self._ms = prior

    def _update_mse(self, batch: float, speed: float, y: float) -> bool:
        """Forget a little, add this record's squared errors; False (nothing changed) for a wild record."""
        eb = batch - y
        es = speed - y
        if not eb * eb + es * es < _HUGE:
            return False
        d = self._d
        self._mb = d * self._mb + (1.0 - d) * eb * eb
        self._ms = d * self._ms + (1.0 - d) * es * es
        return True


class _RunningScale(_Convex):
    """A slow running mean square ``_v`` (winsorised: one wild record must not blow up the scale):
    what makes ``hedge``'s and ``eg``'s ``eta`` unitless."""

    def _init_scale(self, half_life: float) -> None:
        self._dv = _decay(half_life)
        self._v = 0.0
        self._n = 0

    def _update_scale(self, sq: float) -> float:
        """Fold ``sq`` into the scale (a plain mean over the first records) and return it."""
        self._n += 1
        dv = self._dv if self._n * (1.0 - self._dv) > 1.0 else 1.0 - 1.0 / self._n  # plain mean at first
        if self._n > 10 and 0.0 < 1e4 * self._v < sq:
            sq = 1e4 * self._v
        self._v = v = dv * self._v + (1.0 - dv) * sq
        return v


@METHODS.register("inverse_mse")
class InverseErrorWeights(_ForgottenMSE):
    """Weights proportional to 1 / (exponentially forgotten squared error) of each model.

    ``half_life`` is in records: an error that old counts half as much as the newest one.

    >>> c = InverseErrorWeights(half_life=10)
    >>> for _ in range(50):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)   # speed is right, batch is off by 1
    >>> c.weights[1] > 0.95
    True
    """

    def __init__(self, half_life: float = 24.0, eps: float = 1e-6, prior: float = 1.0, on_swap: str = "keep") -> None:
        self.half_life, self.eps, self.prior, self.on_swap = half_life, eps, prior, on_swap
        self._init_mse(half_life, prior)
        self._eps = eps
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        if self._update_mse(batch, speed, y):
            mb, ms = self._mb, self._ms
            self._ws = (mb + self._eps) / (mb + ms + 2.0 * self._eps)  # (1/ms) / (1/mb + 1/ms)

    def reset_speed(self) -> None:
        if self._on_swap == "reset":  # the new speed model starts with the batch model's error
            self._ms = self._mb
            self._ws = 0.5


@METHODS.register("sliding_mse")
class SlidingInverseMSE(_Convex):
    """Weights proportional to 1 / MSE of each model over the last ``size`` records.

    >>> c = SlidingInverseMSE(size=20)
    >>> for _ in range(30):
    ...     c.learn_one(batch=2.0, speed=1.0, y=1.0)
    >>> c.weights[1] > 0.99
    True
    """

    def __init__(self, size: int = 100, eps: float = 1e-6, on_swap: str = "keep") -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size, self.eps, self.on_swap = size, eps, on_swap
        self._size = int(size)
        self._eps = eps
        self._rb = [0.0] * self._size  # ring buffers of squared errors, preallocated
        self._rs = [0.0] * self._size
        self._pos = 0
        self._sb = 0.0
        self._ss = 0.0
        self._n = 0
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        eb = (batch - y) * (batch - y)
        es = (speed - y) * (speed - y)
        if not eb + es < _HUGE:
            return
        i = self._pos
        self._sb += eb - self._rb[i]
        self._ss += es - self._rs[i]
        self._rb[i] = eb
        self._rs[i] = es
        self._pos = i + 1 if i + 1 < self._size else 0
        self._n += 1
        if self._pos == 0:  # re-sum once per lap: no drift of the running sums
            self._sb = math.fsum(self._rb)
            self._ss = math.fsum(self._rs)
        sb = max(self._sb, 0.0) + self._eps
        ss = max(self._ss, 0.0) + self._eps
        self._ws = sb / (sb + ss)

    def reset_speed(self) -> None:
        if self._on_swap == "reset":
            self._rs[:] = self._rb
            self._ss = self._sb
            self._ws = 0.5


@METHODS.register("hedge")
class Hedge(_RunningScale):
    """Exponential weights (Hedge) on each model's forgotten, scale-normalised squared error.

    ``w_i ~ exp(-eta * L_i)`` with ``L_i`` the exponentially forgotten sum of
    ``e_i**2 / v`` (``v`` a slow running mean square of both errors, so ``eta`` has no units).

    >>> c = Hedge(eta=1.0, half_life=50)
    >>> for _ in range(100):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)
    >>> c.weights[1] > 0.99
    True
    """

    def __init__(self, eta: float = 0.5, half_life: float = 50.0, on_swap: str = "keep") -> None:
        if not eta > 0:
            raise ValueError("eta must be > 0")
        self.eta, self.half_life, self.on_swap = eta, half_life, on_swap
        self._eta = eta
        self._d = _decay(half_life)
        self._init_scale(10.0 * half_life)
        self._diff = 0.0  # L_batch - L_speed
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        eb = (batch - y) * (batch - y)
        es = (speed - y) * (speed - y)
        if not eb + es < _HUGE:
            return
        v = self._update_scale(0.5 * (eb + es))
        if v <= 0.0:
            return
        inc = (eb - es) / v
        inc = 100.0 if inc > 100.0 else (-100.0 if inc < -100.0 else inc)
        self._diff = z = self._d * self._diff + inc
        z *= self._eta
        # speed weight = sigmoid(eta * (L_b - L_s)), computed without overflow
        if z >= 0:
            self._ws = 1.0 / (1.0 + math.exp(-z))
        else:
            ez = math.exp(z)
            self._ws = ez / (1.0 + ez)

    def reset_speed(self) -> None:
        if self._on_swap == "reset":
            self._diff = 0.0
            self._ws = 0.5


@METHODS.register("eg")
class ExponentiatedGradient(_RunningScale):
    """Exponentiated gradient (EG) on the hybrid's own squared loss, two experts.

    The speed weight is ``sigmoid(theta)``; each record moves ``theta`` by
    ``-eta * (hybrid - y) * (speed - batch) / v`` (``v`` a running mean square, so ``eta``
    has no units), clipped to ``[-max_logit, max_logit]`` so a losing model can come back.

    >>> c = ExponentiatedGradient(eta=0.5)
    >>> for _ in range(200):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)
    >>> c.weights[1] > 0.95
    True
    """

    def __init__(self, eta: float = 0.1, max_logit: float = 5.0, half_life: float = 500.0, on_swap: str = "keep"):
        if not eta > 0:
            raise ValueError("eta must be > 0")
        self.eta, self.max_logit, self.half_life, self.on_swap = eta, max_logit, half_life, on_swap
        self._eta = eta
        self._max = max_logit
        self._init_scale(half_life)
        self._theta = 0.0
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        diff = speed - batch
        err = batch + self._ws * diff - y
        if not diff * diff + err * err < _HUGE:
            return
        v = self._update_scale(diff * diff)
        if v <= 0.0:
            return
        # d loss / d theta = 2 err * diff * w (1 - w); EG uses the gradient w.r.t. the weights
        theta = self._theta - self._eta * err * diff / v
        self._theta = theta = self._max if theta > self._max else (-self._max if theta < -self._max else theta)
        self._ws = 1.0 / (1.0 + math.exp(-theta))

    def reset_speed(self) -> None:
        if self._on_swap == "reset":
            self._theta = 0.0
            self._ws = 0.5


@METHODS.register("stacking")
class OnlineStacking(_Convex):
    """Online stacking: recursive least squares with forgetting on ``y - b = w * (s - b)``.

    One weight, so one float of state for the estimate and one for its variance: the
    least-squares blend of the two forecasts over the (exponentially forgotten) recent past.
    ``clip=True`` keeps ``w`` within [0, 1] (a convex blend); ``clip=False`` lets it
    extrapolate (e.g. lean past the speed model when both err the same way). The default
    half-life of 5 records is the measured best (docs/combination.md).

    >>> c = OnlineStacking(half_life=100)
    >>> for i in range(300):
    ...     c.learn_one(batch=0.0, speed=2.0 + i % 2, y=1.0 + 0.5 * (i % 2))  # truth = half way
    >>> round(c.weights[1], 2)
    0.5
    """

    def __init__(self, half_life: float = 5.0, clip: bool = True, delta: float = 100.0, on_swap: str = "keep"):
        self.half_life, self.clip, self.delta, self.on_swap = half_life, clip, delta, on_swap
        self._lam = _decay(half_life)
        self._clip = clip
        self._delta = delta
        self._p = delta
        self._w = 0.5
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        x = speed - batch
        if not x * x + (y - batch) * (y - batch) < _HUGE:
            return
        p = self._p
        px = p * x
        k = px / (self._lam + x * px)
        self._w = w = self._w + k * (y - batch - self._w * x)
        # bounded: one huge (finite) record must not freeze the estimate for thousands of records
        p = (p - k * px) / self._lam
        self._p = 1e-6 if p < 1e-6 else (1e12 if p > 1e12 else p)
        self._ws = (0.0 if w < 0.0 else (1.0 if w > 1.0 else w)) if self._clip else w

    def reset_speed(self) -> None:
        # a new model: keep the blend, but trust the estimate less so it can move quickly
        self._p = max(self._p, self._delta)
        if self._on_swap == "reset":
            self._w = 0.5
            self._ws = 0.5


@METHODS.register("ftl")
class FollowTheLeader(_ForgottenMSE):
    """All weight on the model with the lowest forgotten MSE; switch only when the other is
    better by more than ``margin`` (relative), so it does not flap.

    >>> c = FollowTheLeader(half_life=10)
    >>> for _ in range(30):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)
    >>> c.weights
    (0.0, 1.0)
    """

    def __init__(self, half_life: float = 50.0, margin: float = 0.1, prior: float = 1.0, on_swap: str = "keep"):
        self.half_life, self.margin, self.prior, self.on_swap = half_life, margin, prior, on_swap
        self._init_mse(half_life, prior)
        self._margin = 1.0 + margin
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.0

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        if not self._update_mse(batch, speed, y):
            return
        mb, ms = self._mb, self._ms
        if self._ws == 0.0:
            if ms * self._margin < mb:
                self._ws = 1.0
        elif mb * self._margin < ms:
            self._ws = 0.0

    def reset_speed(self) -> None:
        if self._on_swap == "reset":
            self._ms = self._mb


class ExpertWeights:
    """Exponentially weighted average of ``n`` forecasts (Littlestone-Warmuth / Vovk), with forgetting.

    Expert ``i``'s weight is ``exp(-eta * L_i)`` normalised, ``L_i`` its exponentially forgotten
    (``half_life`` records) sum of squared errors in units of ``v``, a slow running mean square of the
    blend's own error (so ``eta`` has no units). The forecast is the weighted mean, so (squared loss
    being convex) over any stretch of about a half-life its cumulative loss exceeds the best expert's of
    that stretch by at most ``ln(n) / eta`` plus a term that grows with ``eta`` (the Hedge bound); a
    blend of close experts can also beat them all. ``prior`` (optional): initial ``L`` per expert (a
    head start for the one trusted first). Pure Python floats; one ``exp`` per expert and record.
    A non-finite forecast gets no weight for that record; non-finite or huge errors are not learned.

    >>> w = ExpertWeights(3, eta=1.0, half_life=50)
    >>> for i in range(200):
    ...     y = float(i % 5)
    ...     w.learn_one((y + 0.1, y + 1.0, y - 2.0), y)
    >>> [round(x, 2) for x in w.weights]
    [1.0, 0.0, 0.0]
    >>> round(w.predict_one((1.0, 5.0, float("nan"))), 2)
    1.0
    """

    def __init__(self, n: int, eta: float = 1.0, half_life: float = 500.0, prior: Sequence[float] | None = None):
        if n < 1 or not eta > 0:
            raise ValueError("need n >= 1 experts and eta > 0")
        self.n, self.eta, self.half_life = n, float(eta), float(half_life)
        self._d = _decay(half_life)
        self._dv = _decay(10.0 * half_life)
        self._L = [float(x) for x in prior] if prior is not None else [0.0] * n
        if len(self._L) != n:
            raise ValueError(f"prior needs {n} values")
        self._v = 0.0
        self._seen = 0
        self._w = [0.0] * n
        self._set_weights()

    def _set_weights(self) -> None:
        eta, L = self.eta, self._L
        lo = min(L)
        w = self._w
        total = 0.0
        for i in range(self.n):
            x = eta * (L[i] - lo)
            w[i] = math.exp(-x) if x < 700.0 else 0.0
            total += w[i]
        for i in range(self.n):
            w[i] /= total

    @property
    def weights(self) -> list[float]:
        return list(self._w)

    def predict_one(self, forecasts: Sequence[float]) -> float:
        """The weighted mean of the finite forecasts (their weights renormalised)."""
        num = den = 0.0
        for wi, f in zip(self._w, forecasts, strict=True):
            if -_HUGE < f < _HUGE:
                num += wi * f
                den += wi
        if den > 0.0:
            return num / den
        return next((f for f in forecasts if -_HUGE < f < _HUGE), math.nan)

    def learn_one(self, forecasts: Sequence[float], y: float, blend: float | None = None) -> None:
        """Learn the truth ``y`` of ``forecasts`` (and of the blend's own forecast ``blend``, for the scale)."""
        if not -_HUGE < y < _HUGE:
            return
        if blend is None or not -_HUGE < blend < _HUGE:
            blend = self.predict_one(forecasts)
        eb = blend - y
        sq = eb * eb if -1e75 < eb < 1e75 else 1e150
        self._seen += 1
        dv = self._dv if self._seen * (1.0 - self._dv) > 1.0 else 1.0 - 1.0 / self._seen  # a plain mean at first
        if self._seen > 10 and 0.0 < 1e4 * self._v < sq:
            sq = 1e4 * self._v  # winsorised: one wild record must not blow up the scale
        self._v = v = dv * self._v + (1.0 - dv) * sq
        if not v > 0.0:
            return
        d, L, cap = self._d, self._L, 1e4
        for i, f in enumerate(forecasts):
            e = f - y
            loss = e * e / v if -1e75 < e < 1e75 else cap
            L[i] = d * L[i] + (loss if loss < cap else cap)
        self._set_weights()


def _without_model_inputs(model: OnlineLinear, batch: bool = False, speed: bool = False) -> OnlineLinear:
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


# the expert-weighting layer of ContextStacking(blend="experts"): what its experts are, in order
EXPERTS = ("stack", "online_linear", "persistence", "batch", "speed", "static")
_STATIC_SPEED = 0.3  # the static expert: the research prototype's 0.3 speed / 0.7 batch

# records of errors the guard needs before it mutes anything
_GUARD_MIN_RECORDS = 10
# a squared error is winsorised at context_stack.WILD (1e4) times persistence's forgotten one (one wild record
# fades in ~13 half-lives); the guard's update is context_stack.guard_update (shared with the warm start)


@METHODS.register("context")
class ContextStacking(Configurable):
    """Context stacking: one online linear model forecasts the target's change from its newest value
    out of the lag window and the two models' forecast changes.

    Its input row is ``[lag window (flattened, incl. any calendar columns), batch - last, speed - last]``
    (``last`` = the newest target value); the model is :class:`~model_contract.online_linear.OnlineLinear`
    (recursive least squares with forgetting, ``half_life`` records of memory; inputs standardised and
    clipped to ``clip`` standard deviations, the forecast change to ``max_change`` RMS changes, errors
    winsorised, covariance bounded, a broken state resets itself). Its weights start at zero, so it
    starts as the persistence forecast; without the two model inputs it is the online linear baseline,
    which it therefore contains (docs/combination.md, issue 8). ``use_batch`` / ``use_speed`` = False keep
    that model's input at 0 (the ablation of docs/combination.md: both False is the online linear baseline).

    Guard: the forgotten squared error (half-life ``error_half_life`` records) of each model, of
    persistence and of the stack itself is tracked; a model whose recent RMS error exceeds ``mute``
    times persistence's gets its input zeroed for that record (read as "no change": no weight), counted
    in ``muted`` (batch, speed); if the stack's own exceeds ``mute`` times persistence's it forecasts
    persistence (``fallbacks``) until it recovers. Non-finite model forecasts are zeroed too
    (``bad_inputs``); the forecast is finite whenever the window's newest target value is.

    ``twin=True`` also runs the same model without the two model inputs (the online linear baseline)
    and blends the two forecasts by online convex stacking (:class:`OnlineStacking`, half-life
    ``twin_half_life``): a guard for streams where the model inputs only add noise; twice the cost.

    ``blend="experts"``: an expert-weighting layer (:class:`ExpertWeights`, ``blend_eta``, ``blend_half_life``)
    over the stack, its twin without the model inputs (the online linear baseline; from a warm start, the warm
    model cut to the window's inputs), persistence, batch, speed and static (``EXPERTS``): the forecast stays
    within a small regret of the best of them over every stretch of about ``blend_half_life`` records (sensor
    faults where the models run the wrong way, docs/combination.md). About twice the cost of the stack alone.
    ``blend="pair"``: the same layer over the stack and its twin only (the online linear model it contains):
    within a small regret of the better of the two, which the six-expert layer was not on glitchy streams.

    ``weights`` are the current coefficients on each model's forecast change in the target's units
    (0 for a muted model); they need not sum to 1. The lag window comes with ``predict_one(batch,
    speed, window)``; :meth:`context` is the row that forecast was made from, which the truth must be
    learned with ``horizon`` records later: ``learn_one(batch, speed, y, context)``.

    >>> import numpy as np
    >>> c = make_combiner({"method": "context"}, target_index=1)
    >>> c.predict_one(7.0, 6.5, np.array([[0.0, 5.0], [1.0, 6.0]]))  # untrained: persistence
    6.0
    >>> rng = np.random.default_rng(0)
    >>> y = np.cumsum(rng.normal(size=3001))  # a random walk; the batch model knows the next step
    >>> for t in range(1, 3000):
    ...     window = np.array([[0.0, y[t - 1]], [1.0, y[t]]])
    ...     b, s = y[t + 1] + rng.normal(0, 0.05), y[t] + rng.normal(0, 1.0)
    ...     _ = c.predict_one(b, s, window)
    ...     c.learn_one(b, s, y[t + 1], c.context())
    >>> round(c.weights[0], 1), round(abs(c.weights[1]), 1)  # the batch model's change taken in full
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
        twin: bool = False,
        twin_half_life: float = 5.0,
        use_batch: bool = True,
        use_speed: bool = True,
        blend: str = "none",
        blend_eta: float = 0.5,
        blend_half_life: float = 100.0,
        blend_prior: float = 0.0,
    ) -> None:
        _decay(half_life)
        if blend not in ("none", "experts", "pair"):
            raise ValueError("blend must be 'none', 'pair' or 'experts'")
        if blend != "none" and twin:
            raise ValueError(f"blend {blend!r} already contains the twin (online linear) expert: twin must be false")
        if not clip > 0 or not max_change > 0:
            raise ValueError("clip and max_change must be > 0")
        if not mute > 1:
            raise ValueError("mute must be > 1 (times persistence's RMS error)")
        self.half_life, self.clip, self.max_change = half_life, clip, max_change
        self.mute, self.error_half_life = mute, error_half_life
        self.twin, self.twin_half_life = twin, twin_half_life
        self.use_batch, self.use_speed = bool(use_batch), bool(use_speed)  # ablations: an unused input stays 0
        self.blend, self.blend_eta, self.blend_half_life = blend, float(blend_eta), float(blend_half_life)
        self.blend_prior = float(blend_prior)  # the stack's and its twin's head start (in normalised losses)
        ExpertWeights(1, self.blend_eta, self.blend_half_life)  # checks the values
        self._experts: ExpertWeights | None = None
        self._ef = [0.0] * len(EXPERTS)  # the experts' forecasts of this record (reused)
        _decay(twin_half_life)
        self._twin: OnlineLinear | None = None
        self._blend: OnlineStacking | None = None
        self._ed = _decay(error_half_life)
        self._limit = float(mute) * float(mute)  # on squared errors
        self.target_index: int | None = None  # the target's column in the window (make_combiner binds it)
        self._inputs: np.ndarray | None = None
        self.model: OnlineLinear | None = None  # built on the first window (its size)
        self._row: np.ndarray | None = None
        self._shape: tuple[int, ...] = ()
        self._mse = [0.0, 0.0, 0.0, 0.0]  # forgotten squared errors: batch, speed, persistence, the stack
        self._seen = 0
        self._coef = (0.0, 0.0)
        self._w = (0.0, 0.0)
        self.muted = [0, 0]  # records forecast with the batch / speed input muted by the guard
        self.fallbacks = 0  # records forecast as persistence because the stack's own errors exploded
        self.bad_inputs = 0  # non-finite model forecasts (zeroed)
        self.skipped = 0  # truths not learned: no context, or a non-finite newest value / truth
        self.warm_rows = 0  # history rows of the warm start it started from (load_warm; 0: cold)

    def bind(self, target_index: int, inputs: Sequence[int] | None = None) -> None:
        """Tell it which column of the window is the target (``FeatureSpec.target_index``) and which
        positions of the flattened window it reads (default all; ``FeatureSpec.linear_inputs()``, the
        online linear model's: a calendar spec's calendar features once)."""
        self.target_index = int(target_index)
        self._inputs = None if inputs is None else np.asarray(inputs, dtype=np.intp)
        self._row = None

    def _setup(self, window: np.ndarray) -> None:
        if self.target_index is None:
            raise ValueError("context stacking needs the target's column: make_combiner(config, target_index=...)")
        steps, cols = window.shape
        n, last = context_stack.layout(window.shape, self.target_index, self._inputs)  # shared with the warm start
        self._shape = window.shape
        # window, batch - last, speed - last | the forecast, the stack's, its twin's
        self._row = np.zeros((1, n + 5))
        self._vals = self._row[0]
        self._wv = self._vals[:n]
        self._win = self._wv.reshape(steps, cols) if self._inputs is None else None  # a view: copied in place
        self._nm = int(self.use_batch) + int(self.use_speed)  # model inputs it reads (an ablation reads fewer)
        self._x = self._row[:, : n + self._nm]  # what the linear model sees
        self._k = n
        self._last = last
        self.model = OnlineLinear(self._last, half_life=self.half_life, clip=self.clip, max_change=self.max_change)
        if self.blend != "none":  # the stack without its model inputs = the online linear baseline
            self._tx = self._row[:, :n]
            self._twin = OnlineLinear(self._last, half_life=self.half_life, clip=self.clip, max_change=self.max_change)
            m = len(EXPERTS) if self.blend == "experts" else 2  # pair: the stack and the twin only
            self._ef = [0.0] * m
            head = [0.0, 0.0] + [self.blend_prior] * (m - 2)
            self._experts = ExpertWeights(m, self.blend_eta, self.blend_half_life, head)
        if self.twin:  # the same model without the two model inputs (= the online linear baseline), blended in
            self._tx = self._row[:, :n]
            self._twin = OnlineLinear(self._last, half_life=self.half_life, clip=self.clip, max_change=self.max_change)
            self._blend = OnlineStacking(half_life=self.twin_half_life)

    @property
    def weights(self) -> tuple[float, float]:
        return self._w

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float:
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
        if self._seen >= _GUARD_MIN_RECORDS:
            mse = self._mse
            limit = self._limit * mse[2]
            mb = not mse[0] <= limit
            ms = not mse[1] <= limit
            guarded = not mse[3] <= limit
        if not self.use_batch:
            db = 0.0
        elif mb:
            self.muted[0] += 1
            db = 0.0
        elif not -_HUGE < db < _HUGE:
            self.bad_inputs += 1
            db = 0.0
        if not self.use_speed:
            ds = 0.0
        elif ms:
            self.muted[1] += 1
            ds = 0.0
        elif not -_HUGE < ds < _HUGE:
            self.bad_inputs += 1
            ds = 0.0
        k = self._k
        if self._nm == 2:
            v[k] = db
            v[k + 1] = ds
        else:  # an ablation: the models it reads first, the rest of the two slots 0 (not read by the model)
            v[k] = db if self.use_batch else (ds if self.use_speed else 0.0)
            v[k + 1] = 0.0
        f = self.model.predict_one(self._x)
        cb, cs = self._coef
        if self._experts is not None:
            return self._predict_experts(f, last, batch, speed, mb, guarded)
        if self._twin is not None:
            g = self._twin.predict_one(self._tx)
            v[k + 3] = f
            v[k + 4] = g
            ws = self._blend.weights[1]
            f = self._blend.predict_one(g, f)
            cb, cs = ws * cb, ws * cs
        v[k + 2] = f
        self._w = (0.0 if mb else cb, 0.0 if ms else cs)
        if guarded and math.isfinite(last):
            self.fallbacks += 1
            return last
        if math.isfinite(f):
            return f
        return batch if math.isfinite(batch) else speed  # no finite newest value: whichever model is finite

    def _predict_experts(self, f: float, last: float, batch: float, speed: float, mb: bool, guarded: bool) -> float:
        """The expert-weighting layer: the stack, the online linear twin, persistence, batch, speed, static."""
        v, k = self._vals, self._k
        g = self._twin.predict_one(self._tx)
        ef = self._ef
        ef[0] = f
        ef[1] = g
        if len(ef) > 2:
            ef[2], ef[3], ef[4] = last, batch, speed
            ef[5] = batch + _STATIC_SPEED * (speed - batch)
        out = self._experts.predict_one(ef)
        v[k + 2] = out
        v[k + 3] = f
        v[k + 4] = g
        w = self._experts._w  # noqa: SLF001 (the layer's own weights, read without a copy)
        cb, cs = self._coef
        cb, cs = w[0] * (0.0 if mb else cb), w[0] * cs
        if len(w) > 2:
            cb, cs = cb + w[3] + (1.0 - _STATIC_SPEED) * w[5], cs + w[4] + _STATIC_SPEED * w[5]
        self._w = (cb, cs)
        if guarded and math.isfinite(last):
            self.fallbacks += 1
            return last
        if math.isfinite(out):
            return out
        return batch if math.isfinite(batch) else speed

    @property
    def expert_weights(self) -> list[float]:
        """The expert-weighting layer's weights (``EXPERTS`` order; [] without it)."""
        return self._experts.weights if self._experts is not None else []

    def context(self) -> np.ndarray | None:
        """A copy of the row the last forecast was made from (kept with it until its truth arrives)."""
        return None if self._row is None else self._row.copy()

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        """Learn the truth ``y`` of the forecast made from ``context`` (its :meth:`context`)."""
        if context is None or self._row is None or context.shape != self._row.shape:
            self.skipped += 1
            return
        c = context[0]
        y = float(y)
        last = float(c[self._last])
        ep = last - y
        if not -_HUGE < ep < _HUGE:
            self.skipped += 1
            return
        errors = (batch - y, speed - y, ep, float(c[self._k + 2]) - y)
        self._seen = context_stack.guard_update(self._mse, self._seen, self._ed, errors)
        model = self.model
        model.learn_one(context[:, : self._k + self._nm], y)
        if self._experts is not None:
            k, ef = self._k, self._ef
            self._twin.learn_one(context[:, :k], y)
            ef[0] = float(c[k + 3])
            ef[1] = float(c[k + 4])
            if len(ef) > 2:
                ef[2], ef[3], ef[4] = last, batch, speed
                ef[5] = batch + _STATIC_SPEED * (speed - batch)
            self._experts.learn_one(ef, y, float(c[k + 2]))
        elif self._twin is not None:
            self._twin.learn_one(context[:, : self._k], y)
            k = self._k
            self._blend.learn_one(float(c[k + 4]), float(c[k + 3]), y)
        if model.n:
            self._set_coef()

    def _set_coef(self) -> None:
        w, var, k = self.model._w, self.model._var, self._k  # noqa: SLF001 (the standardised weights, in target units)
        if self._nm == 2:
            self._coef = (float(w[k] / math.sqrt(var[k])), float(w[k + 1] / math.sqrt(var[k + 1])))
        else:
            c = float(w[k] / math.sqrt(var[k])) if self._nm else 0.0
            self._coef = (c if self.use_batch else 0.0, c if self.use_speed and not self.use_batch else 0.0)

    def reset_speed(self) -> None:
        """A new speed model: its input keeps the learned coefficient; the guard watches its errors."""
        return None

    def warm_config(self) -> dict:
        """The keys that shape what it learns (a warm start must have been computed with the same)."""
        keys = ("half_life", "clip", "max_change", "error_half_life", "twin")
        return {k: getattr(self, k) for k in keys}

    def load_warm(self, warm: Mapping, spec: FeatureSpec) -> None:
        """Start from a warm start (:func:`model_contract.context_stack.warm_start` on the batch model's history:
        its linear model and its guard's errors); ValueError if it does not fit this config / spec (then nothing
        changes). Counters start at 0; ``warm_rows`` says how many history rows it learned."""
        why = context_stack.mismatch(warm, spec, self.warm_config())
        if why:
            raise ValueError(why)
        model, mse, seen = context_stack.parse(warm, spec)
        self.bind(spec.target_index, spec.linear_inputs() if spec.calendar else None)
        self._setup(np.zeros(spec.input_shape))
        if model._d:  # noqa: SLF001 (an empty history leaves it cold)
            self.model = model if self._nm == 2 else _without_model_inputs(model, self.use_batch, self.use_speed)
            self._set_coef()
            if self._experts is not None:  # the twin: the warm start's model without its two (zero) model inputs
                self._twin = _without_model_inputs(model)
        self._mse, self._seen = mse, seen
        self.warm_rows = int(warm.get("rows", seen))

    def counts(self) -> dict[str, int]:
        """The guard's and the model's counters (the edge's metrics, ``eval run``'s JSON)."""
        model = self.model
        return {
            "muted_batch": self.muted[0],
            "muted_speed": self.muted[1],
            "fallbacks": self.fallbacks,
            "bad_inputs": self.bad_inputs,
            "skipped": self.skipped + (model.skipped if model is not None else 0),
            "resets": model.resets if model is not None else 0,
        }


# the measured default (docs/combination.md, `hybridstream eval run`; issue 8): the registry's default
# method with its class's default half-life (tests/edge_app/test_combiners.py checks they agree)
DEFAULT_DYNAMIC: dict = {"method": "context", "half_life": 1000}


def make_combiner(
    config: Mapping,
    target_index: int | None = None,
    *,
    spec: FeatureSpec | None = None,
    warm: Mapping | None = None,
) -> Combiner:
    """Build a combiner from config: ``{"strategy": "dynamic"|"static"|"batch"|"speed", ...}``.

    ``dynamic`` takes ``method`` (default ``context``) and that method's keys; the others take
    their class's keys (``static``: ``speed_weight``). ``context`` needs to know the lag window:
    ``spec`` (the feature spec: its target, and for a calendar spec the online linear model's inputs,
    :meth:`~model_contract.FeatureSpec.linear_inputs`) or at least ``target_index`` (the target's
    column, every position read). ValueError on an unknown strategy, method or key, or a bad value.
    ``warm`` (with ``spec``): a context stack starts from this warm start (the batch manifest's
    ``extra["combiner_warm_start"]``; check it fits first with :func:`warm_start_mismatch`: ValueError if not).

    >>> make_combiner({"strategy": "dynamic", "method": "hedge", "eta": 1.0}).weights
    (0.5, 0.5)
    >>> make_combiner({"strategy": "blend"})
    Traceback (most recent call last):
    ...
    ValueError: unknown combination strategy 'blend' (batch, speed, static, dynamic)
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"combination must be an object, got {type(config).__name__}")
    strategy = config.get("strategy", "dynamic")
    if strategy == "dynamic":
        combiner = METHODS.build(config, ignore=("strategy",))
        combiner.name = "dynamic"
        if combiner.uses_window and spec is not None:
            combiner.bind(spec.target_index, spec.linear_inputs() if spec.calendar else None)
        elif combiner.uses_window and target_index is not None:
            combiner.bind(target_index)
        if warm is not None:
            if spec is None or not hasattr(combiner, "load_warm"):
                raise ValueError("a combiner warm start needs the context method and the feature spec")
            combiner.load_warm(warm, spec)
        return combiner
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown combination strategy {strategy!r} (batch, speed, static, dynamic)")
    return STRATEGIES.build(config)


def is_finite(x: float) -> bool:
    return math.isfinite(x)


def warm_start_mismatch(config: Mapping, spec: FeatureSpec, warm: Mapping | None) -> str:
    """Why a combiner built from ``config`` cannot start from ``warm`` on ``spec`` ('' if it can): not the
    context method, another config (half-life, clips, guard half-life, twin), another spec, or no warm start."""
    if not isinstance(config, Mapping) or config.get("strategy", "dynamic") != "dynamic":
        return "the combiner is not dynamic"
    try:
        probe = METHODS.build(config, ignore=("strategy",))
    except ValueError as exc:
        return str(exc)
    if not hasattr(probe, "load_warm"):
        return f"the dynamic method {config.get('method', 'context')!r} has no warm start"
    why = context_stack.mismatch(warm, spec, probe.warm_config())
    if why:
        return why
    try:
        context_stack.parse(warm, spec)
    except ValueError as exc:
        return str(exc)
    return ""
