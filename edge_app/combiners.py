"""How the batch and the speed forecast are combined into the hybrid one.

Every combiner follows the same small protocol (river style): ``predict_one(batch, speed)``
returns the hybrid forecast, ``weights`` the (batch, speed) weights it used, and
``learn_one(batch, speed, y)`` updates it once the true value ``y`` has arrived.
``reset_speed()`` is called when a new speed model is swapped in.

All of them are pure Python floats: a few multiplications per record, no allocation on
``predict_one``/``learn_one`` beyond the floats themselves (the hot path of the edge).

>>> c = make_combiner({"strategy": "static", "speed_weight": 0.3})
>>> c.predict_one(10.0, 20.0), c.weights
(13.0, (0.7, 0.3))

The default is ``dynamic`` with online convex stacking (half-life 5 records), chosen by
measurement on the turbine scenarios (docs/combination.md, ``hybridstream eval combiners``):

>>> c = make_combiner({})
>>> c.name, type(c).__name__, c.weights
('dynamic', 'OnlineStacking', (0.5, 0.5))

Strategies and their config keys (``strategy: dynamic`` takes ``method`` and its keys):

========================  =====================================================================
``batch`` / ``speed``     one model only
``static``                ``speed_weight`` (0.3 = the research prototype's 0.3 speed / 0.7 batch)
``dynamic``, ``method``:
``inverse_mse``           weights ~ 1 / exponentially forgotten MSE; ``half_life`` (records)
``sliding_mse``           weights ~ 1 / MSE over the last ``size`` records
``hedge``                 weights ~ exp(-eta * forgotten normalised loss); ``eta``, ``half_life``
``eg``                    exponentiated gradient on the hybrid's own loss; ``eta``, ``max_logit``
``stacking``              online convex stacking: RLS on ``y - b = w (s - b)``; ``half_life``, ``clip``
``ftl``                   follow the leader (lowest forgotten MSE) with ``margin`` hysteresis
========================  =====================================================================

``on_swap`` (``keep`` or ``reset``) says what a new speed model inherits: ``keep`` its
predecessor's error record, ``reset`` the batch model's (equal trust).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol


class Combiner(Protocol):
    name: str

    @property
    def weights(self) -> tuple[float, float]: ...

    def predict_one(self, batch: float, speed: float) -> float: ...

    def learn_one(self, batch: float, speed: float, y: float) -> None: ...

    def reset_speed(self) -> None: ...


# squared errors at or above this (or NaN/inf) are skipped: one wild record must not poison the state
_HUGE = 1e150


def _decay(half_life: float) -> float:
    if not half_life > 0:
        raise ValueError("half_life must be > 0 (records)")
    return 0.5 ** (1.0 / half_life)


def _check_on_swap(on_swap: str) -> str:
    if on_swap not in ("keep", "reset"):
        raise ValueError("on_swap must be 'keep' or 'reset'")
    return on_swap


class _Convex:
    """Shared part of the convex combiners: the speed weight ``_ws`` and ``predict_one``."""

    name = "dynamic"
    _ws = 0.5

    @property
    def weights(self) -> tuple[float, float]:
        return (1.0 - self._ws, self._ws)

    def predict_one(self, batch: float, speed: float) -> float:
        return batch + self._ws * (speed - batch)


class Fixed(_Convex):
    """Fixed weights: ``batch`` (1, 0), ``speed`` (0, 1) or ``static`` (the given weights).

    ``Fixed(speed_weight=0.3)`` reproduces the research prototype's 0.3 speed / 0.7 batch.

    >>> Fixed(0.3).predict_one(10.0, 20.0)
    13.0
    """

    def __init__(self, speed_weight: float, name: str = "static") -> None:
        if not 0.0 <= speed_weight <= 1.0:
            raise ValueError("speed_weight must be within [0, 1]")
        self.name = name
        self._ws = float(speed_weight)
        self._w = (1.0 - self._ws, self._ws)

    @property
    def weights(self) -> tuple[float, float]:
        return self._w

    def predict_one(self, batch: float, speed: float) -> float:
        return self._w[0] * batch + self._w[1] * speed

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        return None

    def reset_speed(self) -> None:
        return None


class InverseErrorWeights(_Convex):
    """Weights proportional to 1 / (exponentially forgotten squared error) of each model.

    ``half_life`` is in records: an error that old counts half as much as the newest one.

    >>> c = InverseErrorWeights(half_life=10)
    >>> for _ in range(50):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)   # speed is right, batch is off by 1
    >>> c.weights[1] > 0.95
    True
    """

    def __init__(self, half_life: float = 24.0, eps: float = 1e-6, prior: float = 1.0, on_swap: str = "keep") -> None:
        self._d = _decay(half_life)
        self._eps = eps
        self._mb = prior
        self._ms = prior
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        eb = batch - y
        es = speed - y
        if not eb * eb + es * es < _HUGE:
            return
        d = self._d
        self._mb = mb = d * self._mb + (1.0 - d) * eb * eb
        self._ms = ms = d * self._ms + (1.0 - d) * es * es
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

    def learn_one(self, batch: float, speed: float, y: float) -> None:
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


class Hedge(_Convex):
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
        self._eta = eta
        self._d = _decay(half_life)
        self._dv = _decay(10.0 * half_life)
        self._v = 0.0
        self._n = 0
        self._diff = 0.0  # L_batch - L_speed
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        eb = (batch - y) * (batch - y)
        es = (speed - y) * (speed - y)
        if not eb + es < _HUGE:
            return
        self._n += 1
        dv = self._dv if self._n * (1.0 - self._dv) > 1.0 else 1.0 - 1.0 / self._n  # plain mean at first
        sq = 0.5 * (eb + es)
        if self._n > 10 and 0.0 < 1e4 * self._v < sq:  # winsorised: one wild record must not blow up the scale
            sq = 1e4 * self._v
        self._v = v = dv * self._v + (1.0 - dv) * sq
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


class ExponentiatedGradient(_Convex):
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
        self._eta = eta
        self._max = max_logit
        self._dv = _decay(half_life)
        self._v = 0.0
        self._n = 0
        self._theta = 0.0
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        diff = speed - batch
        err = batch + self._ws * diff - y
        if not diff * diff + err * err < _HUGE:
            return
        self._n += 1
        dv = self._dv if self._n * (1.0 - self._dv) > 1.0 else 1.0 - 1.0 / self._n
        sq = diff * diff
        if self._n > 10 and 0.0 < 1e4 * self._v < sq:  # winsorised: one wild record must not blow up the scale
            sq = 1e4 * self._v
        self._v = v = dv * self._v + (1.0 - dv) * sq
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
    extrapolate (e.g. lean past the speed model when both err the same way).

    >>> c = OnlineStacking(half_life=100)
    >>> for i in range(300):
    ...     c.learn_one(batch=0.0, speed=2.0 + i % 2, y=1.0 + 0.5 * (i % 2))  # truth = half way
    >>> round(c.weights[1], 2)
    0.5
    """

    def __init__(self, half_life: float = 200.0, clip: bool = True, delta: float = 100.0, on_swap: str = "keep"):
        self._lam = _decay(half_life)
        self._clip = clip
        self._delta = delta
        self._p = delta
        self._w = 0.5
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.5

    def learn_one(self, batch: float, speed: float, y: float) -> None:
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


class FollowTheLeader(_Convex):
    """All weight on the model with the lowest forgotten MSE; switch only when the other is
    better by more than ``margin`` (relative), so it does not flap.

    >>> c = FollowTheLeader(half_life=10)
    >>> for _ in range(30):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)
    >>> c.weights
    (0.0, 1.0)
    """

    def __init__(self, half_life: float = 50.0, margin: float = 0.1, prior: float = 1.0, on_swap: str = "keep"):
        self._d = _decay(half_life)
        self._margin = 1.0 + margin
        self._mb = prior
        self._ms = prior
        self._on_swap = _check_on_swap(on_swap)
        self._ws = 0.0

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        eb = batch - y
        es = speed - y
        if not eb * eb + es * es < _HUGE:
            return
        d = self._d
        self._mb = mb = d * self._mb + (1.0 - d) * eb * eb
        self._ms = ms = d * self._ms + (1.0 - d) * es * es
        if self._ws == 0.0:
            if ms * self._margin < mb:
                self._ws = 1.0
        elif mb * self._margin < ms:
            self._ws = 0.0

    def reset_speed(self) -> None:
        if self._on_swap == "reset":
            self._ms = self._mb


# method -> (class, {config key: type}); the defaults are the classes' own
METHODS: dict[str, tuple[type, dict[str, type]]] = {
    "inverse_mse": (InverseErrorWeights, {"half_life": float, "on_swap": str}),
    "sliding_mse": (SlidingInverseMSE, {"size": int, "on_swap": str}),
    "hedge": (Hedge, {"eta": float, "half_life": float, "on_swap": str}),
    "eg": (ExponentiatedGradient, {"eta": float, "max_logit": float, "half_life": float, "on_swap": str}),
    "stacking": (OnlineStacking, {"half_life": float, "clip": bool, "on_swap": str}),
    "ftl": (FollowTheLeader, {"half_life": float, "margin": float, "on_swap": str}),
}

# the measured default (docs/combination.md, `hybridstream eval combiners`)
DEFAULT_DYNAMIC: dict = {"method": "stacking", "half_life": 5}


def make_combiner(config: Mapping) -> Combiner:
    """Build a combiner from config: ``{"strategy": "dynamic"|"static"|"batch"|"speed", ...}``.

    >>> make_combiner({"strategy": "dynamic", "method": "hedge", "eta": 1.0}).weights
    (0.5, 0.5)
    >>> make_combiner({"strategy": "blend"})
    Traceback (most recent call last):
    ...
    ValueError: unknown combination strategy 'blend' (batch, speed, static, dynamic)
    """
    strategy = config.get("strategy", "dynamic")
    if strategy == "batch":
        return Fixed(0.0, "batch")
    if strategy == "speed":
        return Fixed(1.0, "speed")
    if strategy == "static":
        return Fixed(float(config.get("speed_weight", 0.3)), "static")
    if strategy == "dynamic":
        params = {k: v for k, v in config.items() if k not in ("strategy", "method")}
        if "method" not in config:
            params = {k: v for k, v in DEFAULT_DYNAMIC.items() if k != "method"} | params
        method = config.get("method", DEFAULT_DYNAMIC["method"])
        if method not in METHODS:
            raise ValueError(f"unknown dynamic method {method!r} ({', '.join(METHODS)})")
        cls, keys = METHODS[method]  # other keys (the edge app's own) are ignored
        kwargs = {}
        for key, typ in keys.items():
            if key in params:
                value = params[key]
                if typ is bool and isinstance(value, str):
                    value = value.lower() in ("1", "true", "yes")
                kwargs[key] = typ(value)
        combiner = cls(**kwargs)
        combiner.name = "dynamic"
        return combiner
    raise ValueError(f"unknown combination strategy {strategy!r} (batch, speed, static, dynamic)")


def is_finite(x: float) -> bool:
    return math.isfinite(x)
