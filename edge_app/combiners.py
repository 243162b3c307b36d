"""How the batch and the speed forecast are combined into the hybrid one.

Every combiner follows the same small protocol (river style): ``predict_one(batch, speed)``
returns the hybrid forecast, ``weights`` the (batch, speed) weights it used, and
``learn_one(batch, speed, y)`` updates it once the true value ``y`` has arrived.
``reset_speed()`` is called when a new speed model is swapped in.

>>> c = make_combiner({"strategy": "static", "speed_weight": 0.3})
>>> c.predict_one(10.0, 20.0), c.weights
(13.0, (0.7, 0.3))
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


class Fixed:
    """Fixed weights: ``batch`` (1, 0), ``speed`` (0, 1) or ``static`` (the given weights).

    ``Fixed(speed_weight=0.3)`` reproduces the research prototype's 0.3 speed / 0.7 batch.
    """

    def __init__(self, speed_weight: float, name: str = "static") -> None:
        if not 0.0 <= speed_weight <= 1.0:
            raise ValueError("speed_weight must be within [0, 1]")
        self.name = name
        self._w = (1.0 - speed_weight, speed_weight)

    @property
    def weights(self) -> tuple[float, float]:
        return self._w

    def predict_one(self, batch: float, speed: float) -> float:
        return self._w[0] * batch + self._w[1] * speed

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        return None

    def reset_speed(self) -> None:
        return None


class InverseErrorWeights:
    """Weights proportional to 1 / (exponentially forgotten squared error) of each model.

    ``half_life`` is in records: an error that old counts half as much as the newest one.

    >>> c = InverseErrorWeights(half_life=10)
    >>> for _ in range(50):
    ...     c.learn_one(batch=0.0, speed=1.0, y=1.0)   # speed is right, batch is off by 1
    >>> c.weights[1] > 0.95
    True
    """

    name = "dynamic"

    def __init__(self, half_life: float = 24.0, eps: float = 1e-6, prior: float = 1.0) -> None:
        self._decay = 0.5 ** (1.0 / half_life)
        self._eps = eps
        self._prior = prior
        self._mse = [prior, prior]
        self._w = (0.5, 0.5)

    @property
    def weights(self) -> tuple[float, float]:
        return self._w

    def predict_one(self, batch: float, speed: float) -> float:
        return self._w[0] * batch + self._w[1] * speed

    def learn_one(self, batch: float, speed: float, y: float) -> None:
        d = self._decay
        self._mse[0] = d * self._mse[0] + (1 - d) * (batch - y) ** 2
        self._mse[1] = d * self._mse[1] + (1 - d) * (speed - y) ** 2
        inv_b = 1.0 / (self._mse[0] + self._eps)
        inv_s = 1.0 / (self._mse[1] + self._eps)
        total = inv_b + inv_s
        self._w = (inv_b / total, inv_s / total)

    def reset_speed(self) -> None:
        # a new speed model starts from the batch model's current error (no free trust, no penalty)
        self._mse[1] = self._mse[0]


def make_combiner(config: Mapping) -> Combiner:
    """Build a combiner from config: ``{"strategy": "dynamic"|"static"|"batch"|"speed", ...}``."""
    strategy = config.get("strategy", "dynamic")
    if strategy == "batch":
        return Fixed(0.0, "batch")
    if strategy == "speed":
        return Fixed(1.0, "speed")
    if strategy == "static":
        return Fixed(float(config.get("speed_weight", 0.3)), "static")
    if strategy == "dynamic":
        return InverseErrorWeights(half_life=float(config.get("half_life", 24.0)))
    raise ValueError(f"unknown combination strategy {strategy!r} (batch, speed, static, dynamic)")


def is_finite(x: float) -> bool:
    return math.isfinite(x)
