"""How the batch and the speed forecast are combined into the hybrid one.

Every combiner follows the same small protocol (river style): ``predict_one(batch, speed, window)``
returns the hybrid forecast, ``weights`` the (batch, speed) coefficients it applied, and
``learn_one(batch, speed, y, context)`` updates it once the true value ``y`` has arrived, with the
``context()`` it returned when that forecast was made (``horizon`` records earlier).
``reset_speed()`` is called when a new speed model is swapped in. Only combiners with
``uses_window`` (``context``) read the lag window and keep a context; the others ignore both.
``weights`` are weights (within [0, 1], summing to 1) for the convex combiners; for context stacking
they are its regression coefficients on each model's forecast change (its ``coefficients``: they need not
sum to 1, 0 for a muted model). The edge publishes them as the prediction record's ``weights`` field.

This module is the registry and the factory; the combiners live in :mod:`edge_app.convex_combiners`
(pure Python floats: a few multiplications per record, no allocation on ``predict_one``/``learn_one``
beyond the floats themselves, the hot path of the edge) and :mod:`edge_app.context_stacking` (``context``:
one small numpy RLS per device, :class:`model_contract.context_stack.ContextStack`; preallocated row, one
copy per forecast for its context), the expert layer in :mod:`edge_app.expert_weights`.

>>> c = make_combiner({"strategy": "static", "speed_weight": 0.3})
>>> c.predict_one(10.0, 20.0), c.weights
(13.0, (0.7, 0.3))

The default is ``dynamic`` with context stacking (half-life 1000 records), chosen by measurement
on the turbine scenarios (docs/combination.md, ``hybridstream eval run``): it starts as the
persistence forecast (coefficients 0) and learns from the lag window and both forecasts, with the pair layer and
the correction layer over it.

>>> c = make_combiner({}, target_index=4)
>>> c.name, type(c).__name__, c.coefficients
('dynamic', 'CorrectedContextStacking', (0.0, 0.0))

Strategies and their config keys (``strategy: dynamic`` takes ``method`` and its keys):

========================  =====================================================================
``batch`` / ``speed``     one model only
``static``                ``speed_weight`` (0.3 = the research prototype's 0.3 speed / 0.7 batch)
``dynamic``, ``method``:
``context`` (default)     one RLS (:class:`~model_contract.online_linear.OnlineLinear`) on the change
                          from the newest target value over [lag window, batch - last, speed - last];
                          ``half_life``, ``clip``, ``max_change``; guard: a model whose recent RMS
                          error exceeds ``mute`` x persistence's (half-life ``error_half_life``) is muted
                          ``blend: pair`` (default) an exponentially weighted layer over the stack and the
                          online linear baseline; ``experts`` over those, persistence, batch, speed, static
                          (``blend_eta``, ...); ``none`` the stack alone; ``correct`` (default on
                          with a twin; ``false``: off) a third layer (:mod:`edge_app.correction_layer`:
                          ``correct_half_life``, ``correct_ridge``)
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

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from edge_app.context_stacking import ContextStacking
from edge_app.convex_combiners import (
    BatchOnly,
    ExponentiatedGradient,
    Fixed,
    FollowTheLeader,
    Hedge,
    InverseErrorWeights,
    OnlineStacking,
    SlidingInverseMSE,
    SpeedOnly,
)
from edge_app.registry import Registry
from model_contract import FeatureSpec, context_stack


class Combiner(Protocol):
    name: str

    @property
    def weights(self) -> tuple[float, float]:
        """Each model's coefficient in the last hybrid (convex weights, or the context stack's coefficients)."""
        ...

    uses_window: bool

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float: ...

    def context(self) -> np.ndarray | None: ...

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> None: ...

    def reset_speed(self) -> None: ...


STRATEGIES: Registry[Combiner] = Registry("combination strategy", key="strategy", default="dynamic")
METHODS: Registry[Combiner] = Registry("combination method", key="method", default="context")
STRATEGIES.add({"static": Fixed, "batch": BatchOnly, "speed": SpeedOnly})
METHODS.add(
    {
        "inverse_mse": InverseErrorWeights,
        "sliding_mse": SlidingInverseMSE,
        "hedge": Hedge,
        "eg": ExponentiatedGradient,
        "stacking": OnlineStacking,
        "ftl": FollowTheLeader,
        "context": ContextStacking,
    }
)


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
