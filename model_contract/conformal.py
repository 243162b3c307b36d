"""Online conformal forecast intervals that stay calibrated while the data drifts.

:class:`ConformalInterval` turns one stream of point forecasts into central intervals at several
levels (default 80 % and 95 %). The half-width at level ``1 - a`` is ``q * m``:

- ``m = slow * (fast / slow) ** gamma`` is the forecast's error scale: ``slow`` and ``fast`` are
  decayed means of ``|residual|`` (half-lives ``scale_half_life`` and ``fast_half_life`` readings; a
  plain mean over the first ones; each error winsorised at ``clip`` x that scale, so a glitch does
  not widen the bands for long), blended geometrically. ``gamma = 1`` would scale the band with the
  last few errors alone (a locally weighted score: Lei, G'Sell, Rinaldo, Tibshirani and Wasserman
  2018), ``gamma = 0`` with the long-run scale alone (a near-constant band, like a long window's
  empirical quantile). How much the last few errors tell about the next one is the stream's:
  ``gamma`` is learned as ``gamma_gain`` x the slope of ``|residual| / slow`` on ``fast / slow``
  (decayed moments, half-life ``scale_half_life``; ``gamma`` itself until ``SLOPE_ROWS`` residuals,
  fixed if ``gamma_gain`` is 0), clipped to [0, 1]: about 0.4 on the turbine's clustered errors, where
  the 95 % band of a calm stretch gets much tighter, about 0 on errors that are independent noise, where
  a near-constant band is the narrowest. The defaults were selected together on the training files'
  errors (docs/combination.md, "Forecast intervals under drift");
- ``q`` is learned by online quantile tracking, the P part of conformal PID control
  (Angelopoulos, Candès and Tibshirani, NeurIPS 2023), itself a successor of adaptive conformal
  inference (Gibbs and Candès, NeurIPS 2021): after each scored interval,
  ``q += lr * (miss - a)``. Whatever the data and whatever ``m`` do, the long-run miss rate is then
  ``a`` within ``(max q - min q) / (lr * n)`` (the update telescopes): coverage holds under drift.

The horizon is respected by the caller handing back, with each residual, the half-widths that were
issued for that forecast (:meth:`half_widths` when it was made, ``H`` readings earlier): an interval
is scored only when its truth arrives. ``hybridstream eval run`` and the edge use exactly this class.

Warm start: the trainer streams the residuals of the batch history (the context stack's own online
forecasts, :func:`model_contract.context_stack.warm_start`) through a fresh instance and ships its
:meth:`state` in the batch manifest (``extra["interval_warm_start"]``, :func:`warm_start`), so a
new device's first interval already has the right scale. The edge saves the same state per device
(``edge_app``'s device state), so a restarted device carries on calibrated.

>>> ci = ConformalInterval(levels=(0.8, 0.95))
>>> ci.half_widths() is None  # no scale yet (cold, no warm start)
True
>>> for r in (1.0, -2.0, 0.5, 1.5) * 50:
...     issued = ci.half_widths()
...     ci.learn_one(r, issued)
>>> w80, w95 = ci.half_widths()
>>> 0 < w80 < w95, ci.scored, ci.coverage()["0.8"] >= 0.7
(True, 199, True)
>>> ConformalInterval.from_state(ci.state()).half_widths() == ci.half_widths()
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist

LEVELS = (0.8, 0.95)
# selected together on the training files' errors (docs/combination.md, "Forecast intervals under drift")
LR = 0.04  # quantile-tracking step, in units of the error scale
SCALE_HALF_LIFE = 1000.0  # readings: the slow (long-run) error scale
FAST_HALF_LIFE = 7.0  # readings: the fast error scale (the last few errors)
GAMMA = 0.3  # the band's scale = slow * (fast / slow) ** gamma: gamma's start
GAMMA_GAIN = 0.6  # gamma = GAMMA_GAIN x the slope of |residual| / slow on fast / slow, once learned
SLOPE_ROWS = 100  # residuals before gamma follows the slope
CLIP = 4.0  # a scale learns an error as at most CLIP x itself (one faulty reading does not widen every band)
WARM_KEY = "interval_warm_start"  # the batch manifest's extra field
METHOD = 2  # the state's method: 1 (no "fast", one scale of half-life 100) is read as ``fast = scale``


def level_key(level: float) -> str:
    """The JSON key of a level: ``0.8 -> "0.8"``, ``0.95 -> "0.95"``."""
    return repr(float(level))


def gaussian_multiplier(level: float) -> float:
    """``q`` for Gaussian errors: the central ``level`` half-width in units of the mean absolute error."""
    return NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(math.pi / 2.0)


class ConformalInterval:
    """Central intervals at ``levels`` around one forecast stream, learned online (see the module doc).

    Inspectable: ``q`` (multipliers, one per level), ``scale`` and ``fast`` (the slow and the fast decayed
    mean ``|residual|``, NaN before the first), ``seen`` (residuals learned), and the running ``scored``,
    ``misses`` and ``width_sums`` per level (:meth:`coverage`, :meth:`mean_width`).
    """

    __slots__ = ("levels", "keys", "alphas", "lr", "scale_half_life", "fast_half_life", "gamma", "gamma_gain")
    __slots__ += ("clip", "_rate", "_plain", "_frate", "_fplain", "_index", "_up", "_down", "q", "scale", "fast")
    __slots__ += ("seen", "moments")
    __slots__ += ("scored", "misses", "width_sums")

    def __init__(
        self,
        levels: Sequence[float] = LEVELS,
        lr: float = LR,
        scale_half_life: float = SCALE_HALF_LIFE,
        clip: float = CLIP,
        fast_half_life: float = FAST_HALF_LIFE,
        gamma: float = GAMMA,
        gamma_gain: float = GAMMA_GAIN,
    ) -> None:
        levels = tuple(float(v) for v in levels)
        if not levels or not all(0.0 < v < 1.0 for v in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"levels must be distinct values in (0, 1), got {levels}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not scale_half_life > 0 or not fast_half_life > 0:
            raise ValueError(f"half-lives must be > 0 (readings), got {scale_half_life} and {fast_half_life}")
        if not clip > 1:
            raise ValueError(f"clip must be > 1 (x the scale), got {clip}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if not 0.0 <= gamma_gain < math.inf:
            raise ValueError(f"gamma_gain must be >= 0 (0: gamma fixed), got {gamma_gain}")
        self.levels = levels
        self.keys = tuple(level_key(v) for v in levels)
        self.alphas = tuple(1.0 - v for v in levels)
        self.lr = float(lr)
        self.scale_half_life = float(scale_half_life)
        self.fast_half_life = float(fast_half_life)
        self.gamma = float(gamma)
        self.gamma_gain = float(gamma_gain)
        self.clip = float(clip)
        self._rate = 1.0 - 0.5 ** (1.0 / self.scale_half_life)
        self._plain = 1.0 / self._rate
        self._frate = 1.0 - 0.5 ** (1.0 / self.fast_half_life)
        self._fplain = 1.0 / self._frate
        self._index = tuple(range(len(levels)))
        self._up = tuple(self.lr * (1.0 - a) for a in self.alphas)  # q's step after a miss
        self._down = tuple(self.lr * a for a in self.alphas)  # and after a hit
        self.q = [gaussian_multiplier(v) for v in levels]
        self.scale = math.nan
        self.fast = math.nan
        self.seen = 0
        # gamma's slope: residuals seen and decayed means of x, y, x x, x y (x = fast / slow, y = |residual| / slow)
        self.moments = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.scored = 0
        self.misses = [0] * len(levels)
        self.width_sums = [0.0] * len(levels)

    def multiplier(self) -> float:
        """The band's error scale ``m = slow * (fast / slow) ** gamma`` (NaN until the first residual)."""
        s = self.scale
        if not s > 0.0:
            return s  # NaN (nothing learned yet) or 0.0 (every error so far 0)
        return s * (self.fast / s) ** self.gamma

    def half_widths(self) -> tuple[float, ...] | None:
        """The half-width per level for a forecast made now (None until the scale is known)."""
        m = self.multiplier()
        if m != m:
            return None
        return tuple(q * m if q > 0.0 else 0.0 for q in self.q)

    def interval(self, forecast: float) -> dict[str, tuple[float, float]] | None:
        """``{level key: (low, high)}`` around ``forecast`` (None until the scale is known)."""
        hw = self.half_widths()
        if hw is None:
            return None
        return {k: (forecast - w, forecast + w) for k, w in zip(self.keys, hw, strict=True)}

    def learn_one(self, residual: float, issued: Sequence[float] | None = None) -> None:
        """Learn from one truth: ``residual = forecast - actual`` and the half-widths ``issued`` for that forecast
        (None: none were issued; only the scales learn). Non-finite residuals are ignored."""
        a = residual if residual >= 0.0 else -residual
        if not a < math.inf:  # NaN, inf
            return
        if issued is not None:
            self.scored += 1
            q, misses, sums, up, down = self.q, self.misses, self.width_sums, self._up, self._down
            for i in self._index:
                w = issued[i]
                sums[i] += w
                if a > w:
                    misses[i] += 1
                    q[i] += up[i]
                else:
                    q[i] -= down[i]
        n = self.seen + 1
        self.seen = n
        if n > 1:  # each scale: a plain mean over its first 1 / (1 - d) residuals, then d s + (1 - d) min(a, clip s)
            s = self.scale
            clip = self.clip
            c = clip * s
            rate = self._rate
            plain = self._plain
            if s > 0.0:  # gamma's slope, from the scales this residual's forecast saw
                x = self.fast / s
                y = (a if a < c else c) / s
                mo = self.moments
                m, mx, my, mxx, mxy = mo
                m += 1.0
                k = rate if m > plain else 1.0 / m
                mx += k * (x - mx)
                my += k * (y - my)
                mxx += k * (x * x - mxx)
                mxy += k * (x * y - mxy)
                mo[:] = (m, mx, my, mxx, mxy)
                v = mxx - mx * mx
                if m > SLOPE_ROWS and v > 0.0 and self.gamma_gain > 0.0:
                    g = self.gamma_gain * (mxy - mx * my) / v
                    self.gamma = 1.0 if g > 1.0 else (g if g > 0.0 else 0.0)
            self.scale = s + (rate if n > plain else 1.0 / n) * ((a if a < c or c == 0.0 else c) - s)
            s = self.fast
            c = clip * s
            self.fast = s + (self._frate if n > self._fplain else 1.0 / n) * ((a if a < c or c == 0.0 else c) - s)
        else:
            self.scale = self.fast = a

    def learn_many(self, residuals: Iterable[float], horizon: int = 1) -> None:
        """Stream residuals of ``horizon``-ahead forecasts (oldest first) as they would arrive, each scored
        against the half-widths issued ``horizon`` residuals earlier."""
        from collections import deque  # noqa: PLC0415

        flight: deque = deque([None] * (horizon - 1))
        for r in residuals:
            flight.append(self.half_widths())
            self.learn_one(r, flight.popleft())

    def coverage(self) -> dict[str, float | None]:
        """Share of the scored intervals that held their truth, per level key (None before the first)."""
        n = self.scored
        return {k: (1.0 - m / n if n else None) for k, m in zip(self.keys, self.misses, strict=True)}

    def mean_width(self) -> dict[str, float | None]:
        """Mean full width (2 x half-width) of the scored intervals, per level key."""
        n = self.scored
        return {k: (2.0 * s / n if n else None) for k, s in zip(self.keys, self.width_sums, strict=True)}

    def config(self) -> dict:
        """The constructor's arguments (JSON-friendly)."""
        return {
            "levels": list(self.levels),
            "lr": self.lr,
            "scale_half_life": self.scale_half_life,
            "fast_half_life": self.fast_half_life,
            "gamma": self.gamma,
            "gamma_gain": self.gamma_gain,
            "clip": self.clip,
        }

    def state(self) -> dict:
        """What a restart or a warm start needs (JSON-friendly; the running scores are not carried)."""
        finite = math.isfinite(self.scale) and math.isfinite(self.fast)
        return self.config() | {
            "method": METHOD,
            "q": list(self.q),
            "scale": self.scale if finite else None,
            "fast": self.fast if finite else None,
            "moments": list(self.moments) if finite else None,
            "seen": self.seen if finite else 0,
        }

    @classmethod
    def from_state(cls, state: Mapping, **config) -> ConformalInterval:
        """An instance continuing from :meth:`state` (``config`` overrides its constructor arguments: the
        multipliers of the levels the state has are kept, the others start Gaussian; the scales are kept).
        A state of method 1 (before the fast scale) starts its fast scale at its scale. ValueError if malformed."""
        try:
            cfg = {"levels": state["levels"], "lr": state["lr"], "scale_half_life": state["scale_half_life"]}
            cfg |= {k: state[k] for k in ("clip", "fast_half_life", "gamma", "gamma_gain") if k in state}
            cfg |= {k: v for k, v in config.items() if v is not None}
            if "gamma" in state and cfg.get("gamma_gain", GAMMA_GAIN) > 0:  # a learned gamma carries on
                cfg["gamma"] = state["gamma"]
            ci = cls(**cfg)
            moments = state.get("moments")
            moments = [0.0] * 5 if moments is None else [float(v) for v in moments]
            if len(moments) != 5 or not all(math.isfinite(v) for v in moments) or moments[0] < 0:
                raise ValueError(f"moments {moments!r}")
            qs = dict(zip((float(v) for v in state["levels"]), (float(v) for v in state["q"]), strict=True))
            scale = state.get("scale")
            fast = state.get("fast", scale)
            seen = int(state["seen"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad interval state: {type(exc).__name__}: {exc}") from None
        for name, v in (("scale", scale), ("fast", fast)):
            if (v is None) != (scale is None) or (v is not None and not (math.isfinite(float(v)) and float(v) >= 0.0)):
                raise ValueError(f"bad interval state: {name} {v!r}")
        for i, lv in enumerate(ci.levels):
            if lv in qs and math.isfinite(qs[lv]):
                ci.q[i] = qs[lv]
        if scale is not None:
            ci.scale, ci.fast, ci.seen, ci.moments = float(scale), float(fast), max(seen, 1), moments
        return ci


def warm_start(residuals: Iterable[float], horizon: int = 1, **config) -> dict:
    """The :meth:`ConformalInterval.state` after streaming a history's forecast residuals (oldest first)."""
    ci = ConformalInterval(**{k: v for k, v in config.items() if v is not None})
    ci.learn_many(residuals, horizon)
    return ci.state() | {"rows": ci.seen}
