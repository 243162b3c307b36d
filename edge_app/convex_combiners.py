"""The convex combiners: the hybrid is ``batch + w * (speed - batch)`` with a speed weight ``w`` in [0, 1].

Fixed weights (``static``, ``batch``, ``speed``) and the dynamic methods that learn ``w`` from both models'
errors (``inverse_mse``, ``sliding_mse``, ``hedge``, ``eg``, ``stacking``, ``ftl``); :mod:`edge_app.combiners`
registers them under those names. Pure Python floats: a few multiplications per record, no allocation on
``predict_one``/``learn_one`` beyond the floats themselves (the hot path of the edge). They blend the two
forecasts only: no lag window, no per-forecast context. Squared errors at or above
:data:`~model_contract.context_stack.HUGE` (or NaN/inf) are skipped: one wild record must not poison the state.

>>> Fixed(0.3).predict_one(10.0, 20.0), Fixed(0.3).weights
(13.0, (0.7, 0.3))
"""

from __future__ import annotations

import math

import numpy as np

from edge_app.registry import Configurable
from model_contract.context_stack import HUGE
from model_contract.online_linear import decay


def _check_on_swap(on_swap: str) -> str:
    if on_swap not in ("keep", "reset"):
        raise ValueError("on_swap must be 'keep' or 'reset'")
    return on_swap


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


class BatchOnly(Fixed):
    """The batch model only (weights (1, 0))."""

    name = "batch"

    def __init__(self) -> None:
        super().__init__(0.0)


class SpeedOnly(Fixed):
    """The speed model only (weights (0, 1))."""

    name = "speed"

    def __init__(self) -> None:
        super().__init__(1.0)


class _ForgottenMSE(_Convex):
    """The exponentially forgotten squared error of each model (``_mb``, ``_ms``): the state of
    ``inverse_mse`` and ``ftl``, updated by :meth:`_update_mse`."""

    def _init_mse(self, half_life: float, prior: float) -> None:
        self._d = decay(half_life)
        self._mb = prior
        self._ms = prior

    def _update_mse(self, batch: float, speed: float, y: float) -> bool:
        """Forget a little, add this record's squared errors; False (nothing changed) for a wild record."""
        eb = batch - y
        es = speed - y
        if not eb * eb + es * es < HUGE:
            return False
        d = self._d
        self._mb = d * self._mb + (1.0 - d) * eb * eb
        self._ms = d * self._ms + (1.0 - d) * es * es
        return True


class _RunningScale(_Convex):
    """A slow running mean square ``_v`` (winsorised: one wild record must not blow up the scale):
    what makes ``hedge``'s and ``eg``'s ``eta`` unitless."""

    def _init_scale(self, half_life: float) -> None:
        self._dv = decay(half_life)
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
        if not eb + es < HUGE:
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
        self._d = decay(half_life)
        self._init_scale(10.0 * half_life)
        self._diff = 0.0  # L_batch - L_speed
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        eb = (batch - y) * (batch - y)
        es = (speed - y) * (speed - y)
        if not eb + es < HUGE:
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
        if not diff * diff + err * err < HUGE:
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
        self._lam = decay(half_life)
        self._clip = clip
        self._delta = delta
        self._p = delta
        self._w = 0.5
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None:
        x = speed - batch
        if not x * x + (y - batch) * (y - batch) < HUGE:
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
