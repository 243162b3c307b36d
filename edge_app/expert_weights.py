"""The expert-weighting layer: an exponentially weighted average of ``n`` forecasts, with forgetting.

The layer of :class:`~edge_app.context_stacking.ContextStacking` with ``blend: experts`` or ``pair``
(and of ``hybridstream eval experts``). Python floats over a float64 state array, which the compiled context
stack steps in place (model_contract/online_linear_kernel.c: the same steps in C).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from model_contract.context_stack import HUGE
from model_contract.online_linear import decay


class ExpertWeights:
    """Exponentially weighted average of ``n`` forecasts (Littlestone-Warmuth / Vovk), with forgetting.

    Expert ``i``'s weight is ``exp(-eta * L_i)`` normalised, ``L_i`` its exponentially forgotten
    (``half_life`` records) sum of squared errors in units of ``v``, a slow running mean square of the
    blend's own error (so ``eta`` has no units). The forecast is the weighted mean, so (squared loss
    being convex) over any stretch of about a half-life its cumulative loss exceeds the best expert's of
    that stretch by at most ``ln(n) / eta`` plus a term that grows with ``eta`` (the Hedge bound); a
    blend of close experts can also beat them all. ``prior`` (optional): initial ``L`` per expert (a
    head start for the one trusted first). One ``exp`` per expert and record.
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
        self._d = decay(half_life)
        self._dv = decay(10.0 * half_life)
        L = [float(x) for x in prior] if prior is not None else [0.0] * n
        if len(L) != n:
            raise ValueError(f"prior needs {n} values")
        # the state in one float64 array (the compiled context stack's layer updates it in place:
        # model_contract/online_linear_kernel.c ew_learn): v, seen, L[n], w[n]
        self._s = np.zeros(2 + 2 * n)
        self._s[2 : 2 + n] = L
        self._set_weights(self._s.tolist())

    def _set_weights(self, s: list[float]) -> None:
        """The weights from the losses of state ``s`` (a list: v, seen, L, w), written into the state."""
        n, eta = self.n, self.eta
        L = s[2 : 2 + n]
        lo = min(L)
        w = [0.0] * n
        total = 0.0
        for i in range(n):
            x = eta * (L[i] - lo)
            w[i] = math.exp(-x) if x < 700.0 else 0.0
            total += w[i]
        for i in range(n):
            w[i] /= total
        s[2 + n :] = w
        self._s[:] = s

    def __setstate__(self, state: dict) -> None:
        """Unpickle, also an object pickled before the state was one array (``_v``, ``_seen``, ``_L``, ``_w``)."""
        if "_s" not in state:
            state = dict(state)
            v, seen, L, w = state.pop("_v"), state.pop("_seen"), state.pop("_L"), state.pop("_w")
            state["_s"] = np.array([v, seen, *L, *w], dtype=float)
        self.__dict__.update(state)

    @property
    def weights(self) -> list[float]:
        return self._s[2 + self.n :].tolist()

    def predict_one(self, forecasts: Sequence[float]) -> float:
        """The weighted mean of the finite forecasts (their weights renormalised)."""
        num = den = 0.0
        for wi, f in zip(self._s[2 + self.n :].tolist(), forecasts, strict=True):
            if -HUGE < f < HUGE:
                num += wi * f
                den += wi
        if den > 0.0:
            return num / den
        return next((f for f in forecasts if -HUGE < f < HUGE), math.nan)

    def learn_one(self, forecasts: Sequence[float], y: float, blend: float | None = None) -> None:
        """Learn the truth ``y`` of ``forecasts`` (and of the blend's own forecast ``blend``, for the scale)."""
        if not -HUGE < y < HUGE:
            return
        if blend is None or not -HUGE < blend < HUGE:
            blend = self.predict_one(forecasts)
        s = self._s.tolist()
        eb = blend - y
        sq = eb * eb if -1e75 < eb < 1e75 else 1e150
        s[1] = seen = s[1] + 1.0
        dv = self._dv if seen * (1.0 - self._dv) > 1.0 else 1.0 - 1.0 / seen  # a plain mean at first
        if seen > 10 and 0.0 < 1e4 * s[0] < sq:
            sq = 1e4 * s[0]  # winsorised: one wild record must not blow up the scale
        s[0] = v = dv * s[0] + (1.0 - dv) * sq
        if not v > 0.0:
            self._s[:2] = s[:2]
            return
        d, cap = self._d, 1e4
        for i, f in enumerate(forecasts):
            e = f - y
            loss = e * e / v if -1e75 < e < 1e75 else cap
            s[2 + i] = d * s[2 + i] + (loss if loss < cap else cap)
        self._set_weights(s)
