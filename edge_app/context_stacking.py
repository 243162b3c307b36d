"""The edge's default dynamic combiner (``method: context``): the context stack and its optional layers.

The stack itself, which the trainer's warm start streams the history through, is
:class:`model_contract.context_stack.ContextStack`; this module adds the layers a config may put
over it (``twin``, ``blend``) and makes it a typed config section (:mod:`edge_app.registry`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_app.convex_combiners import OnlineStacking
from edge_app.correction_layer import CorrectionLayer, check
from edge_app.expert_weights import ExpertWeights
from edge_app.registry import Configurable
from model_contract.context_stack import GUARD_MIN_RECORDS, ContextStack, parse_twin, without_model_inputs
from model_contract.features import FeatureSpec
from model_contract.online_linear import OnlineLinear, decay

# the expert-weighting layer of ContextStacking(blend="experts"): what its experts are, in order
EXPERTS = ("stack", "online_linear", "persistence", "batch", "speed", "static")
_STATIC_SPEED = 0.3  # the static expert: the research prototype's 0.3 speed / 0.7 batch
log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # the bad-twin warnings given (once each, not once per device)


def corrects_by_default(blend: str | None, twin: bool) -> bool:
    """Whether a config that does not say ``correct`` gets the correction layer: yes wherever a layer gives the online
    linear twin it needs (the default ``pair``, ``experts``, or ``twin``); ``blend: none`` alone, no."""
    return (blend if blend is not None else default_blend(twin)) != "none" or twin


def default_blend(twin: bool) -> str:
    """The layer of a config that names none: the pair layer, or none where it asks for the older ``twin`` guard."""
    return "none" if twin else "pair"


class ContextStacking(ContextStack, Configurable):
    """Context stacking (:class:`~model_contract.context_stack.ContextStack`, whose keys it takes too) with
    optional layers over the stack.

    ``twin=True`` also runs the same model without the two model inputs (the online linear baseline)
    and blends the two forecasts by online convex stacking (:class:`~edge_app.convex_combiners.OnlineStacking`,
    half-life ``twin_half_life``): a guard for streams where the model inputs only add noise; twice the cost.

    ``blend="experts"``: an expert-weighting layer (:class:`~edge_app.expert_weights.ExpertWeights`, ``blend_eta``,
    ``blend_half_life``) over the stack, its twin without the model inputs (the online linear baseline; from a warm
    start, the warm start's own twin, or for an older one the warm model cut to the window's inputs), persistence,
    batch, speed and static (``EXPERTS``): the forecast stays within a small regret of the best of them over every
    stretch of about ``blend_half_life`` records (sensor faults where the models run the wrong way,
    docs/combination.md). ``blend="pair"`` (the default since 2026-12-06): the same layer over the stack and its
    twin only (the online linear baseline): within a small regret of the better of the two, which the six-expert
    layer was not on glitchy streams, and the only combiner measured that stays within 1 % of the best single
    approach on every turbine stream and half (docs/combination.md). ``blend="none"``: the stack alone.
    With a layer, ``coefficients`` are the layer's share of the stack's (0 for a muted model) plus any direct
    share of a model. Either layer runs in the stack's compiled call (twin and weights in C: about the stack's
    cost, BENCHMARKS.md); on the numpy code about twice the stack's.

    ``correct`` (the default since 2026-12-07 wherever there is a twin; ``correct: false`` switches it off): a third
    layer over the forecast, :class:`~edge_app.correction_layer.CorrectionLayer` (``correct_half_life``,
    ``correct_ridge``): a cautious, bounded ridge regression with forgetting of what the forecast misses on the
    differences of batch, speed, persistence and the online linear twin from it (needs the twin: a ``pair`` or
    ``experts`` layer, or ``twin``; ``blend: none`` alone goes without), in Python after the stack's call: ~4 us a
    record here (``devtools.combiner_cost``'s ``corrected_us`` against ``pair_us``; BENCHMARKS.md). It feeds ``f``
    for a model the guard muted and leaves the guard's persistence fallback alone. Replayed on 30 saved runs: 0.987 x
    the MSE without it on the first halves, worst first half 1.0029 x (docs/combination.md); ``coefficients`` stay
    those of the layers under it. The context row gets two more slots (the forecast before the correction, what was
    muted). It starts cold after every restart or reset (~2,000 truths to learn).

    >>> from edge_app.combiners import make_combiner
    >>> c = make_combiner({"method": "context", "blend": "pair"}, target_index=1)
    >>> c.predict_one(7.0, 6.5, np.array([[0.0, 5.0], [1.0, 6.0]])), c.expert_weights  # untrained: persistence
    (6.0, [0.5, 0.5])
    """

    def __init__(
        self,
        twin: bool = False,
        twin_half_life: float = 5.0,
        blend: str | None = None,
        blend_eta: float = 0.5,
        blend_half_life: float = 100.0,
        blend_prior: float = 0.0,
        correct: bool | None = None,
        correct_half_life: float = 2000.0,
        correct_ridge: float = 3.0,
        **stack: Any,
    ) -> None:
        super().__init__(**stack)
        if blend is None:
            blend = default_blend(twin)
        if blend not in ("none", "experts", "pair"):
            raise ValueError("blend must be 'none', 'pair' or 'experts'")
        if blend != "none" and twin:
            raise ValueError(f"blend {blend!r} already contains the twin (online linear) expert: twin must be false")
        self.twin, self.twin_half_life = twin, twin_half_life
        self.blend, self.blend_eta, self.blend_half_life = blend, float(blend_eta), float(blend_half_life)
        self.blend_prior = float(blend_prior)  # the stack's and its twin's head start (in normalised losses)
        if correct is None:  # the default: on wherever a layer gives the online linear twin it needs
            correct = corrects_by_default(blend, twin)
        if correct and blend == "none" and not twin:
            raise ValueError("correct needs the online linear twin: blend 'pair' or 'experts', or twin true")
        # checked with correct false too: a bad value waiting in a config is refused before it is switched on
        correct_half_life, correct_ridge = check(
            correct_half_life, correct_ridge, ("correct_half_life", "correct_ridge")
        )
        self.correct, self.correct_half_life, self.correct_ridge = bool(correct), correct_half_life, correct_ridge
        self._correction = CorrectionLayer(correct_half_life, correct_ridge) if correct else None
        ExpertWeights(1, self.blend_eta, self.blend_half_life)  # checks the values
        decay(twin_half_life)
        self._experts: ExpertWeights | None = None
        self._ef = [0.0] * len(EXPERTS)  # the experts' forecasts of this record (reused)
        self._twin: OnlineLinear | None = None
        self._blend: OnlineStacking | None = None
        self.twin_start = ""  # where the layers' twin started (load_warm): "twin", "cut" or "" (cold)

    _VIEWS = (*ContextStack._VIEWS, "_tx")
    _COMPILED = (*ContextStack._COMPILED, "_cst", "_cse")

    def _views(self) -> None:
        super()._views()
        if self._twin is not None:  # a copy's: the twin's row of its own row
            self._tx = self._row[:, : self._k]

    def __new__(cls, *args: Any, **kwargs: Any) -> ContextStacking:
        """A config with the correction layer (the default, or ``correct: true``) builds a
        :class:`CorrectedContextStacking`; ``correct: false`` the plain class (it pays nothing)."""
        correct = kwargs.get("correct")
        if correct is None:
            correct = corrects_by_default(kwargs.get("blend"), bool(kwargs.get("twin", False)))
        if cls is ContextStacking and correct:
            cls = CorrectedContextStacking
        return super().__new__(cls)

    def __getnewargs_ex__(self) -> tuple[tuple, dict]:
        """A copy or an unpickled one is built as it was (the class :meth:`__new__` picks depends on ``correct``)."""
        return (), {"correct": self.correct}

    def __setstate__(self, state: dict) -> None:
        """A pickle without a correction layer loads as the plain class: one written by code before
        ``__getnewargs_ex__`` is built by :meth:`__new__` without ``correct``, which picks the layer's class."""
        if state.get("_correction") is None and type(self) is CorrectedContextStacking:
            self.__class__ = ContextStacking
        super().__setstate__(state)

    def _setup(self, window: np.ndarray) -> None:
        super()._setup(window)
        if self._correction is not None:  # two more slots: the forecast before the correction layer, the muted
            self._row = np.zeros((1, self._k + 7))
            self._views()
        n = self._k
        if self.blend != "none":  # the stack without its model inputs = the online linear baseline
            self._tx = self._row[:, :n]
            self._twin = self._linear()
            m = len(EXPERTS) if self.blend == "experts" else 2  # pair: the stack and the twin only
            self._ef = [0.0] * m
            head = [0.0, 0.0] + [self.blend_prior] * (m - 2)
            self._experts = ExpertWeights(m, self.blend_eta, self.blend_half_life, head)
        if self.twin:  # the same model without the two model inputs (= the online linear baseline), blended in
            self._tx = self._row[:, :n]
            self._twin = self._linear()
            self._blend = OnlineStacking(half_life=self.twin_half_life)
        self._layers = self._experts is not None or self._twin is not None

    def _predict_layers(self, f: float, last: float, batch: float, speed: float, mb: bool, ms: bool) -> float:
        v, k = self._vals, self._k
        g = self._twin.predict_one(self._tx)
        cb, cs = self._coef
        if self._experts is None:  # twin: the stack and its twin blended by online convex stacking
            v[k + 3] = f
            v[k + 4] = g
            ws = self._blend.weights[1]
            f = self._blend.predict_one(g, f)
            cb, cs = ws * cb, ws * cs
            v[k + 2] = f
            self._w = (0.0 if mb else cb, 0.0 if ms else cs)
            return f
        ef = self._ef  # the expert-weighting layer: the stack, the online linear twin (, persistence, ...)
        ef[0] = f
        ef[1] = g
        if len(ef) > 2:
            ef[2], ef[3], ef[4] = last, batch, speed
            ef[5] = batch + _STATIC_SPEED * (speed - batch)
        out = self._experts.predict_one(ef)
        v[k + 2] = out
        v[k + 3] = f
        v[k + 4] = g
        w = self._experts.weights
        cb, cs = w[0] * (0.0 if mb else cb), w[0] * (0.0 if ms else cs)
        if len(w) > 2:
            cb, cs = cb + w[3] + (1.0 - _STATIC_SPEED) * w[5], cs + w[4] + _STATIC_SPEED * w[5]
        self._w = (cb, cs)
        return out

    def _learn_layers(self, context: np.ndarray, last: float, batch: float, speed: float, y: float) -> None:
        c, k = context[0], self._k
        self._twin.learn_one(context[:, :k], y)
        if self._experts is None:
            self._blend.learn_one(float(c[k + 4]), float(c[k + 3]), y)
            return
        ef = self._ef
        ef[0] = float(c[k + 3])
        ef[1] = float(c[k + 4])
        if len(ef) > 2:
            ef[2], ef[3], ef[4] = last, batch, speed
            ef[5] = batch + _STATIC_SPEED * (speed - batch)
        self._experts.learn_one(ef, y, float(c[k + 2]))

    def _compile_layers(self, c, ffi) -> bool:  # noqa: ANN001 (cffi cdata, cffi)
        """The expert-weighting layer (pair or experts) into the compiled steps: the twin's kernel struct and the
        layer's state array (the C steps update both in place); the twin guard (``twin=True``) runs in Python."""
        ew, twin = self._experts, self._twin
        if ew is None or twin is None:  # the twin guard: Python (not asked again until the model changes)
            return False
        if not twin._d:  # noqa: SLF001 (no twin model yet: it starts with its first record)
            self._csk = None  # asked again on the next record
            return False
        t = twin._kc if twin._kc is not None else twin._kernel()  # noqa: SLF001
        if not t:  # the twin runs the numpy code
            return False
        c.twin, c.ne, c.e = t, ew.n, ffi.cast("double *", ew._s.ctypes.data)  # noqa: SLF001
        c.eta, c.ed2, c.edv = ew.eta, ew._d, ew._dv  # noqa: SLF001
        self._cst, self._cse = t, ew._s  # noqa: SLF001 (kept alive with the struct)
        return True

    @property
    def expert_weights(self) -> list[float]:
        """The expert-weighting layer's weights (``EXPERTS`` order; [] without it)."""
        return self._experts.weights if self._experts is not None else []

    def warm_config(self) -> dict:
        return super().warm_config() | {"twin": self.twin}

    def load_warm(self, warm: Mapping, spec: FeatureSpec) -> OnlineLinear | None:
        """The stack's warm start (:meth:`ContextStack.load_warm`); with a layer (pair, experts) its twin starts
        from the warm start's own twin (``"twin"``: the online linear baseline streamed through the history),
        else (an older manifest, or a bad twin: logged) from the stack's model cut to the window's inputs.
        ``twin_start`` says which: "twin", "cut" or "" (cold, no layer)."""
        model = super().load_warm(warm, spec)
        if self._experts is None:
            return model
        try:
            twin = parse_twin(warm, spec)
        except ValueError as exc:
            if str(exc) not in _WARNED:  # one warm start serves every device: say it once
                _WARNED.add(str(exc))
                log.warning("the combiner's twin starts from the stack's model cut: %s", exc)
            twin = None
        if twin is not None and twin._d:  # noqa: SLF001
            self._twin, self.twin_start = twin, "twin"
        elif model is not None:  # the warm model without its two model inputs
            self._twin, self.twin_start = without_model_inputs(model), "cut"
        self._cs = self._csk = None  # the compiled steps: built again for the new twin
        log.debug("the combiner's twin starts from the warm start's %s", self.twin_start or "nothing (cold)")
        return model


class CorrectedContextStacking(ContextStacking):
    """:class:`ContextStacking` with the correction layer: its forecast through the correction layer, on every path the
    stack forecasts and learns by (the compiled step, the Python steps, the edge's banked halves ``finish`` /
    ``learned``)."""

    _done = False  # the layer already ran inside this call (the Python or banked path)

    def predict_one(self, batch: float, speed: float, window: np.ndarray | None = None) -> float:
        self._done = False
        f = super().predict_one(batch, speed, window)
        return f if self._done else self._corrected(f, batch, speed)

    def finish(self, f: float, verdict: tuple[float, bool, bool, bool], batch: float, speed: float) -> float:
        f = super().finish(f, verdict, batch, speed)
        self._done = True
        return self._corrected(f, batch, speed)

    def _corrected(self, f: float, batch: float, speed: float) -> float:
        """The correction of the forecast ``f`` (after the guard): none on the guard's persistence fallback, ``f``
        for a model the guard muted. The context keeps ``f`` (NaN on a fallback: not learned) and what was muted."""
        v, k, g = self._vals, self._k, self._g
        last = v.item(self._last)
        muted = 0.0
        if g.item(4) >= GUARD_MIN_RECORDS:  # the verdict the stack's step just applied (the guard learns only later)
            limit = self._limit * g.item(2)
            if not g.item(3) <= limit and math.isfinite(last):  # the fallback: persistence, left as it is
                v[k + 5] = math.nan
                return f
            if not g.item(0) <= limit:
                batch, muted = f, 1.0
            if not g.item(1) <= limit:
                speed, muted = f, muted + 2.0
        v[k + 5] = f
        v[k + 6] = muted
        return self._correction.predict(float(f), batch, speed, last, v.item(k + 4))

    def learn_one(self, batch: float, speed: float, y: float, context: np.ndarray | None = None) -> bool:
        self._done = False
        learned = super().learn_one(batch, speed, y, context)
        if learned and not self._done:
            self._learn_correction(float(batch), float(speed), float(y), context)
        return learned

    def learned(self, batch: float, speed: float, y: float, context: np.ndarray) -> None:
        super().learned(batch, speed, y, context)
        self._done = True
        self._learn_correction(float(batch), float(speed), float(y), context)

    def _learn_correction(self, batch: float, speed: float, y: float, context: np.ndarray) -> None:
        """The layer learns ``y`` (Python floats) with the forecast's slots (``f``, the muted bits) from ``context``."""
        k = self._k
        f = context.item(0, k + 5)  # NaN: the forecast was the guard's fallback (not learned)
        muted = context.item(0, k + 6)
        if muted:
            batch = f if muted != 2.0 else batch
            speed = f if muted != 1.0 else speed
        self._correction.learn(f, batch, speed, context.item(0, self._last), context.item(0, k + 4), y)

    def counts(self) -> dict[str, int]:
        """The stack's counters and the correction layer's: truths learned, solves rejected (weights kept)."""
        layer = self._correction
        return super().counts() | {"correct_learned": layer.learned, "correct_rejected": layer.rejected}
