"""The correction layer: a cautious ridge regression with forgetting over the dynamic forecast (the default).

The layer of :class:`~edge_app.context_stacking.ContextStacking` with ``correct: true``. It forecasts what the
dynamic forecast ``f`` misses, ``y - f``, from the experts' differences from it, ``[batch, speed, persistence,
online_linear] - f``: least squares with exponential forgetting (``half_life`` records) and a ridge towards 0 (=
``f`` unchanged) of ``ridge`` x each column's forgetting-weighted sum of squares, so the ridge has no units
(``ridge`` 3 takes about a quarter of the least-squares correction where the columns are uncorrelated). It learns a
truth when it arrives, so each forecast uses only the truths that had arrived (causal by construction, as
``eval table --headroom``'s "(c) causal online", :func:`hybridstream.evaluation.headroom.causal_layer`, which
runs this class on a saved run). Half-life 2,000 and ridge 3 were chosen on the first halves of 30 saved runs
(docs/combination.md, "Causal adaptive blends, measured"). Pure Python floats: the 4 x 4 system (a Cholesky
factorisation) and the clips are solved every ``half_life / 250`` learned truths (8 at 2,000; ``SOLVES_PER_HALF_LIFE``),
a forecast is 4 multiplications.

Bounded, as the stack's guard bounds the stack: after a cold start (a restart, a new device, a reset) it makes no
correction until ``MIN_RECORDS`` truths have arrived; they are buffered, the clips set from their median squares
(one absurd row among them does not set them), and then learned winsorised. From then on each difference and
``y - f`` is winsorised at ``CLIP`` x its forgotten RMS (its mean square floored at ``FLOOR`` x the five's mean, so a
column that has not moved yet is not locked at 0) before it enters the sums: one absurd forecast or truth moves the
weights as one at ``CLIP`` RMS would, not for ages. A forecast's differences are clipped the same way, and the
correction ``w . x`` is capped at ``MAX_CORRECTION`` x the forgotten RMS of ``y - f`` (a weight learned on a column
that hardly moved is not applied in full once it moves). ``CLIP`` 32, not 8: the gain on sensor faults comes from
learning their rows (8 kept a third of it on the turbine with faults at H = 1, 32 nearly all; docs/combination.md).
Muting a model and the persistence fallback are the combiner's
(:class:`~edge_app.context_stacking.CorrectedContextStacking` feeds ``f`` for a muted model and skips a fallback).

>>> c = CorrectionLayer(half_life=50, ridge=0.01)
>>> for i in range(400):
...     y = float(i % 7)
...     f = y + 1.0  # the dynamic forecast is 1 too high; the batch model knows the truth
...     c.learn_one(f, (y, y + 3.0, y - 2.0, y + 1.0), y)
>>> round(c.predict_one(11.0, (10.0, 13.0, 8.0, 11.0)), 2)  # the batch model's forecast: taken in full
10.0
>>> c.predict_one(11.0, (float("nan"), 13.0, 8.0, 11.0))  # a non-finite expert: the forecast unchanged
11.0
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Sequence

from model_contract.context_stack import HUGE
from model_contract.online_linear import decay

N = 4  # batch, speed, persistence, online_linear
CLIP = 32.0
"""A difference or ``y - f`` counts at most this many forgotten RMS (chosen among 8 / 16 / 32 on the first halves of
30 saved runs, post hoc: docs/combination.md)."""
MAX_CORRECTION = 4.0
"""The correction ``w . x`` at most this many forgotten RMS of ``y - f``."""
MIN_RECORDS = 10
"""Truths buffered after a cold start (no correction meanwhile; the stack's guard waits as long before it mutes
anything): then the clips are set from their median squares and they are learned winsorised."""
MEDIAN_CHI2 = 0.4549364231195724
"""The median of a squared standard normal: a column's median square / this estimates its mean square."""
FLOOR = 1e-6
"""Each clip's mean square is floored at this x the five's mean, so a column that has not moved yet is not locked at
0 (its sum then grows ~1.35x a truth); its own scale, not the others', clips it once it moves (the mean itself let
the smallest column through at up to 65x its own clip; post hoc, docs/combination.md)."""
SOLVES_PER_HALF_LIFE = 250.0
"""The weights and the clips are solved again every ``half_life / SOLVES_PER_HALF_LIFE`` learned truths (8 at the
default half-life 2,000; every truth below 500), not every one: the 4 x 4 solve and the clips are half the layer's
cost a record, and between two solves the weights would move ~1/250 of the way (replayed on 30 saved runs within
0.0005 of solving every truth: docs/combination.md). Over the first ``half_life / 2`` truths (the weights still move
fast, ~1/n of the way a truth) every truth is solved."""


def check(half_life: object, ridge: object, names: tuple[str, str] = ("half_life", "ridge")) -> tuple[float, float]:
    """``(half_life, ridge)`` as floats; ValueError naming the key (``names``) unless half_life > 0 and ridge >= 0
    (NaN, a string or a bool are refused)."""

    def number(value: object) -> float:
        return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan

    h, r = number(half_life), number(ridge)
    if not h > 0:
        raise ValueError(f"the correction layer's {names[0]} must be > 0 (records), got {half_life!r}")
    if not r >= 0:
        raise ValueError(f"the correction layer's {names[1]} must be >= 0, got {ridge!r}")
    return h, r


class CorrectionLayer:
    """``f + w . (experts - f)`` with ``w`` the ridge regression with forgetting of ``y - f`` on ``experts - f``
    over the learned truths (0 before any: ``f`` unchanged), bounded (the module's ``CLIP``, ``MAX_CORRECTION``).
    Non-finite forecasts or truths are not learned; a non-finite expert or ``f`` leaves the forecast unchanged.
    ``learned`` counts the truths learned, ``rejected`` the solves that failed (the weights kept)."""

    _every, _warm = 1, math.inf  # a layer pickled before the spaced solves: every truth solved, as it was
    _cold: list[tuple[float, ...]] | None = None  # a layer pickled before the cold start's buffer: learns directly

    def __init__(self, half_life: float = 2000.0, ridge: float = 3.0) -> None:
        half_life, ridge = check(half_life, ridge)
        self.half_life, self.ridge = half_life, ridge
        self._d = decay(half_life)
        self._a = [0.0] * (N * (N + 1) // 2)  # forgotten sums of x_i x_j (the lower triangle, row by row)
        self._b = [0.0] * N  # forgotten sums of x_i (y - f)
        self._rr = 0.0  # forgotten sum of (y - f)^2
        self._n = 0.0  # forgotten count of the learned truths
        self._lim = [HUGE] * (N + 2)  # the clips of x_0..x_3 and y - f, the cap on the correction (none yet)
        self.w = [0.0] * N  # the weights the next forecast applies
        self._every = max(1, int(half_life / SOLVES_PER_HALF_LIFE))  # truths between two solves (once warm)
        self._warm = half_life / 2.0  # truths solved one by one first
        self._cold: list[tuple[float, ...]] | None = []  # the first MIN_RECORDS truths, until they are learned
        self.learned = 0  # truths learned
        self.rejected = 0  # solves that failed (not positive definite, or non-finite weights): the weights kept

    def predict_one(self, f: float, experts: Sequence[float]) -> float:
        """The corrected forecast of ``f`` given the four experts' forecasts (batch, speed, persistence,
        online_linear)."""
        e0, e1, e2, e3 = experts
        return self.predict(f, e0, e1, e2, e3)

    def predict(self, f: float, e0: float, e1: float, e2: float, e3: float) -> float:
        """:meth:`predict_one` with the experts as arguments (the combiner's per-record call: no tuple)."""
        x0, x1, x2, x3 = e0 - f, e1 - f, e2 - f, e3 - f
        if not -HUGE < x0 + x1 + x2 + x3 < HUGE:  # a non-finite expert or f (NaN or inf - inf fail too)
            return f
        w0, w1, w2, w3 = self.w
        l0, l1, l2, l3, _, cap = self._lim
        c = (
            w0 * (l0 if x0 > l0 else -l0 if x0 < -l0 else x0)
            + w1 * (l1 if x1 > l1 else -l1 if x1 < -l1 else x1)
            + w2 * (l2 if x2 > l2 else -l2 if x2 < -l2 else x2)
            + w3 * (l3 if x3 > l3 else -l3 if x3 < -l3 else x3)
        )
        return f + (cap if c > cap else -cap if c < -cap else c)

    def learn_one(self, f: float, experts: Sequence[float], y: float) -> None:
        """Learn the truth ``y`` of the forecast ``f`` made with ``experts`` (winsorised); the weights and the clips
        are solved again every ``half_life / SOLVES_PER_HALF_LIFE`` truths (each of the first ``half_life / 2``)."""
        e0, e1, e2, e3 = experts  # Python floats throughout (numpy scalars would make every step ~10x slower)
        self.learn(float(f), float(e0), float(e1), float(e2), float(e3), float(y))

    def learn(self, f: float, e0: float, e1: float, e2: float, e3: float, y: float) -> None:
        """:meth:`learn_one` with the experts as arguments, all Python floats (the combiner's per-record call)."""
        r = y - f
        x0, x1, x2, x3 = e0 - f, e1 - f, e2 - f, e3 - f
        if not (
            -HUGE < r < HUGE and -HUGE < x0 < HUGE and -HUGE < x1 < HUGE and -HUGE < x2 < HUGE and -HUGE < x3 < HUGE
        ):
            return
        if self._cold is not None:  # the first MIN_RECORDS truths: buffered, then learned winsorised at once
            self._cold.append((f, e0, e1, e2, e3, y))
            if len(self._cold) >= MIN_RECORDS:
                self._warm_up()
            return
        l0, l1, l2, l3, lr, _ = self._lim  # winsorised: at most CLIP x the forgotten RMS so far
        x0 = l0 if x0 > l0 else -l0 if x0 < -l0 else x0
        x1 = l1 if x1 > l1 else -l1 if x1 < -l1 else x1
        x2 = l2 if x2 > l2 else -l2 if x2 < -l2 else x2
        x3 = l3 if x3 > l3 else -l3 if x3 < -l3 else x3
        r = lr if r > lr else -lr if r < -lr else r
        d, a, b = self._d, self._a, self._b
        a[0] = d * a[0] + x0 * x0
        a[1] = d * a[1] + x1 * x0
        a[2] = d * a[2] + x1 * x1
        a[3] = d * a[3] + x2 * x0
        a[4] = d * a[4] + x2 * x1
        a[5] = d * a[5] + x2 * x2
        a[6] = d * a[6] + x3 * x0
        a[7] = d * a[7] + x3 * x1
        a[8] = d * a[8] + x3 * x2
        a[9] = d * a[9] + x3 * x3
        b[0] = d * b[0] + x0 * r
        b[1] = d * b[1] + x1 * r
        b[2] = d * b[2] + x2 * r
        b[3] = d * b[3] + x3 * r
        self._rr = rr = d * self._rr + r * r
        self._n = n = d * self._n + 1.0
        self.learned = learned = self.learned + 1
        if learned % self._every and learned > self._warm:  # solved every _every truths once warm
            return
        if learned >= MIN_RECORDS:  # the clips: CLIP x each one's forgotten RMS, floored at FLOOR x the five's mean
            a0, a2, a5, a9 = a[0], a[2], a[5], a[9]
            floor = (a0 + a2 + a5 + a9 + rr) * (0.2 * FLOOR)  # a column that has not moved yet is not locked at 0
            if floor > 0.0:
                k = CLIP * CLIP / n
                rms_r = math.sqrt(rr / n)
                self._lim = [
                    math.sqrt(k * (a0 if a0 > floor else floor)),
                    math.sqrt(k * (a2 if a2 > floor else floor)),
                    math.sqrt(k * (a5 if a5 > floor else floor)),
                    math.sqrt(k * (a9 if a9 > floor else floor)),
                    math.sqrt(k * (rr if rr > floor else floor)),
                    MAX_CORRECTION * rms_r,
                ]
        w = self._solve()
        if w is None:
            self.rejected += 1
        else:
            self.w = w

    def _warm_up(self) -> None:
        """The clips from the buffered first truths' median squares (robust: one absurd row among them does not set
        them), then those truths learned winsorised; until now the weights were 0 (no correction)."""
        rows, self._cold = self._cold, None
        cols = zip(*[(e0 - f, e1 - f, e2 - f, e3 - f, y - f) for f, e0, e1, e2, e3, y in rows], strict=True)
        ms = [statistics.median(v * v for v in col) / MEDIAN_CHI2 for col in cols]  # each one's mean square
        floor = FLOOR * sum(ms) / len(ms)
        if floor > 0.0:  # all five flat: no scale yet, the clips wait for the sums (learn)
            lims = [CLIP * math.sqrt(m if m > floor else floor) for m in ms]
            self._lim = [*lims, MAX_CORRECTION * math.sqrt(ms[N] if ms[N] > floor else floor)]
        for row in rows:
            self.learn(*row)

    def _solve(self) -> list[float] | None:
        """``(A + ridge diag(A) + tiny I) w = b`` by Cholesky, unrolled (A: the forgotten sums, lower triangle row by
        row; tiny keeps a zero column solvable, weight 0); None if it is not positive definite (a broken state)."""
        a00, a10, a11, a20, a21, a22, a30, a31, a32, a33 = self._a
        b0, b1, b2, b3 = self._b
        tiny = 1e-12 * (a00 + a11 + a22 + a33) + 1e-300
        k = 1.0 + self.ridge
        s = a00 * k + tiny
        if not s > 0.0:
            return None
        l00 = math.sqrt(s)
        l10, l20, l30 = a10 / l00, a20 / l00, a30 / l00
        s = a11 * k + tiny - l10 * l10
        if not s > 0.0:
            return None
        l11 = math.sqrt(s)
        l21 = (a21 - l20 * l10) / l11
        l31 = (a31 - l30 * l10) / l11
        s = a22 * k + tiny - l20 * l20 - l21 * l21
        if not s > 0.0:
            return None
        l22 = math.sqrt(s)
        l32 = (a32 - l30 * l20 - l31 * l21) / l22
        s = a33 * k + tiny - l30 * l30 - l31 * l31 - l32 * l32
        if not s > 0.0:
            return None
        l33 = math.sqrt(s)
        z0 = b0 / l00
        z1 = (b1 - l10 * z0) / l11
        z2 = (b2 - l20 * z0 - l21 * z1) / l22
        z3 = (b3 - l30 * z0 - l31 * z1 - l32 * z2) / l33
        w3 = z3 / l33
        w2 = (z2 - l32 * w3) / l22
        w1 = (z1 - l21 * w2 - l31 * w3) / l11
        w0 = (z0 - l10 * w1 - l20 * w2 - l30 * w3) / l00
        if not (-HUGE < w0 < HUGE and -HUGE < w1 < HUGE and -HUGE < w2 < HUGE and -HUGE < w3 < HUGE):
            return None
        return [w0, w1, w2, w3]
