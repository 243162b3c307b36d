"""Online stacking of N experts (batch, speed, persistence, online linear, ...), for the study.

The edge's two-expert :class:`edge_app.convex_combiners.OnlineStacking` regresses ``y - b`` on
``s - b``. Here the same with ``N - 1`` regressors: ``y - f_0 = sum_i w_i (f_i - f_0)``
by recursive least squares with forgetting, then the weights are made convex (each clipped
to [0, 1], scaled down if they sum above 1; ``f_0`` gets the rest). With two experts it is
exactly the edge's combiner. Pure Python (N is 2-4).

A *guard* (``guard`` > 0) gives no weight to an expert whose recent RMS error exceeds
``guard`` times the best expert's (its forecast is replaced by the best one's for that
record); ``muted[i]`` counts those records.

>>> c = MultiStacking(3, half_life=50)
>>> for i in range(300):
...     y = float(i % 7)
...     c.learn_one([y + 1.0, y - 1.0, y + 5.0], y)  # experts 0 and 1 err in opposite ways
>>> [round(w, 2) for w in c.weights]
[0.5, 0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from model_contract.online_linear import decay

_HUGE = 1e150


class MultiStacking:
    """Convex online stacking of ``n`` forecasts; see the module docstring."""

    def __init__(
        self, n: int, half_life: float = 5.0, delta: float = 100.0, guard: float = 0.0, guard_half_life: float = 24.0
    ):
        if n < 2:
            raise ValueError("need at least 2 experts")
        self.n = n
        self._m = n - 1
        self._lam = decay(half_life)
        self._delta = delta
        self._P = [[delta if i == j else 0.0 for j in range(self._m)] for i in range(self._m)]
        self._w = [1.0 / n] * self._m
        self._guard = guard
        self._gd = decay(guard_half_life)
        self._mse = [0.0] * n
        self._seen = 0
        self.muted = [0] * n
        self._cw = self._convex()

    def _convex(self) -> list[float]:
        w = [0.0 if v < 0.0 else (1.0 if v > 1.0 else v) for v in self._w]
        s = sum(w)
        if s > 1.0:
            w = [v / s for v in w]
            s = 1.0
        return [1.0 - s, *w]

    @property
    def weights(self) -> list[float]:
        return list(self._cw)

    def _guarded(self, f: Sequence[float], count: bool = False) -> list[float]:
        if self._guard <= 0.0 or self._seen < 10:
            return list(f)
        best = min(range(self.n), key=self._mse.__getitem__)
        limit = self._guard * self._guard * self._mse[best]
        out = list(f)
        for i in range(self.n):
            if self._mse[i] > limit:
                out[i] = f[best]
                if count:
                    self.muted[i] += 1
        return out

    def predict_one(self, f: Sequence[float]) -> float:
        g = self._guarded(f, count=True)
        return sum(w * v for w, v in zip(self._cw, g, strict=True))

    def learn_one(self, f: Sequence[float], y: float) -> None:
        if not all(abs(v - y) < 1e75 for v in f):  # also False for NaN
            return
        d = self._gd
        self._mse = [d * m + (1.0 - d) * (v - y) * (v - y) for m, v in zip(self._mse, f, strict=True)]
        self._seen += 1
        g = self._guarded(f)
        base = g[0]
        x = [v - base for v in g[1:]]
        target = y - base
        m, lam, P = self._m, self._lam, self._P
        Px = [sum(P[i][j] * x[j] for j in range(m)) for i in range(m)]
        denom = lam + sum(x[i] * Px[i] for i in range(m))
        if not (denom > 0.0 and math.isfinite(denom)):
            return
        k = [v / denom for v in Px]
        err = target - sum(w * v for w, v in zip(self._w, x, strict=True))
        self._w = [w + ki * err for w, ki in zip(self._w, k, strict=True)]
        for i in range(m):
            row = P[i]
            for j in range(m):
                v = (row[j] - k[i] * Px[j]) / lam
                row[j] = 1e12 if v > 1e12 else (-1e12 if v < -1e12 else v)
            if row[i] < 1e-6:
                row[i] = 1e-6
        self._cw = self._convex()

    def reset(self, index: int) -> None:
        """A new model behind expert ``index`` (> 0): trust the estimate less so it moves quickly."""
        if index > 0:
            i = index - 1
            self._P[i][i] = max(self._P[i][i], self._delta)


def replay_experts(result, experts: Sequence[str], **params) -> tuple:
    """Run :class:`MultiStacking` over a saved :class:`~hybridstream.evaluation.online_run.RunResult`.

    Truths are learned ``horizon`` rows late, as on the edge; a new speed model resets the
    trust in its weight. Returns (forecast per row, the combiner).
    """
    import numpy as np  # noqa: PLC0415

    h = result.spec.horizon
    comb = MultiStacking(len(experts), **params)
    cols = [result.forecasts[e].tolist() for e in experts]
    y = result.y.tolist()
    n = len(y)
    swaps = {m["serves_from"] + h - 1 for m in result.speed_models}
    speed_index = experts.index("speed") if "speed" in experts else -1
    out = [math.nan] * n
    queue: list[int] = []
    qi = 0
    for j in range(n):
        while qi < len(queue) and queue[qi] <= j - h:
            r = queue[qi]
            comb.learn_one([c[r] for c in cols], y[r])
            qi += 1
        f = [c[j] for c in cols]
        if any(v != v for v in f):
            continue
        if j in swaps and speed_index > 0:
            comb.reset(speed_index)
        out[j] = comb.predict_one(f)
        queue.append(j)
    return np.asarray(out), comb


def replay_weights(result, experts: Sequence[str], eta: float, half_life: float, prior: float = 0.0) -> tuple:
    """Run the edge's expert-weighting layer (:class:`edge_app.expert_weights.ExpertWeights`) over a saved run.

    ``prior``: the head start of the first two experts (e.g. the stack and the online linear model), in
    normalised losses. Truths are learned ``horizon`` rows late. Returns (forecast per row, the layer).
    """
    import numpy as np  # noqa: PLC0415

    from edge_app.expert_weights import ExpertWeights  # noqa: PLC0415

    h = result.spec.horizon
    head = [0.0, 0.0][: len(experts)] + [prior] * max(0, len(experts) - 2)
    layer = ExpertWeights(len(experts), eta=eta, half_life=half_life, prior=head)
    cols = [result.forecasts[e].tolist() for e in experts]
    y = result.y.tolist()
    n = len(y)
    out = [math.nan] * n
    queue: list[int] = []
    qi = 0
    for j in range(n):
        while qi < len(queue) and queue[qi] <= j - h:
            r = queue[qi]
            layer.learn_one([c[r] for c in cols], y[r], out[r])
            qi += 1
        f = [c[j] for c in cols]
        if any(v != v for v in f):
            continue
        out[j] = layer.predict_one(f)
        queue.append(j)
    return np.asarray(out), layer
