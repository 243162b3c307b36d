"""Choose a data set's lags on its history alone, with the online linear model as the probe.

The batch and speed LSTMs, the online linear model and the edge's context stack all read one lag
window (one :class:`~model_contract.FeatureSpec`, carried by the batch model's manifest), so the lags
are a property of the data set, not of a model. :func:`choose_lags` streams the online linear model
(numpy, seconds) through the history once per candidate lag set, as the edge would run it, and scores
each on the history's second half (the first half is its warm-up). The candidates
(:func:`candidate_lags`) are short lookbacks and, when the readings' spacing gives a day of ``P``
readings, the seasonal lags around the reading one day before the target (lag ``k = P - H + 1`` at
horizon ``H``; one day earlier still when that is among the short lags). The default ``(1, 2)`` is
kept unless a candidate beats it by more than ``tolerance``, and of the candidates within ``tolerance`` of
the best the one with the fewest lags wins (more lags cost the edge and the trainer).

>>> candidate_lags(24, 1)["seasonal"]
(1, 2, 23, 24, 25)
>>> candidate_lags(24, 24)["seasonal"]  # the target's hour yesterday is the newest reading: two days back
(1, 2, 24, 25, 26)
>>> candidate_lags(None, 1)
{'default': (1, 2), 'short 3': (1, 2, 3), 'short 6': (1, 2, 3, 4, 5, 6)}
>>> readings_per_day([0, 3600, 7200, 10800])
24
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from model_contract import FeatureSpec
from model_contract.online_linear import stream_forecasts

log = logging.getLogger(__name__)

DEFAULT_LAGS = (1, 2)
DEFAULT_TOLERANCE = 0.01  # within 1 % of the best probe MSE: the fewer lags win


def readings_per_day(epochs: Sequence[float]) -> int | None:
    """Readings per day from the median spacing of the timestamps (seconds); None if irregular or not sub-daily."""
    t = np.asarray(epochs, dtype=np.float64)
    if len(t) < 3:
        return None
    step = float(np.median(np.diff(t)))
    if not step > 0 or step > 43_200:
        return None
    per_day = 86_400 / step
    return int(round(per_day)) if abs(per_day - round(per_day)) < 0.01 * per_day else None


def candidate_lags(period: int | None, horizon: int) -> dict[str, tuple[int, ...]]:
    """Label -> lags: the default, short lookbacks, and with ``period`` (readings per day) seasonal lags."""
    out = {"default": DEFAULT_LAGS, "short 3": (1, 2, 3), "short 6": tuple(range(1, 7))}
    if period is None or period < 4:
        return out
    k = period - horizon + 1
    while k <= 3:
        k += period
    around = {k - 1, k, k + 1}
    out["seasonal"] = tuple(sorted({1, 2} | around))
    out["seasonal + 3 + day"] = tuple(sorted({1, 2, 3, period} | around))
    return out


@dataclass
class LagChoice:
    """The chosen lags, the readings per day used, and every candidate's probe MSE on the history's second half."""

    lags: tuple[int, ...]
    label: str
    period: int | None
    scores: dict[str, float] = field(default_factory=dict)
    candidates: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "lags": list(self.lags),
            "label": self.label,
            "period": self.period,
            "scores": self.scores,
            "candidates": {k: list(v) for k, v in self.candidates.items()},
        }


def probe_mse(history: np.ndarray, spec: FeatureSpec) -> float:
    """The online linear model's MSE over the second half of ``history`` (streamed from its first row)."""
    f, _ = stream_forecasts(history, spec)
    y = history[:, spec.target_index]
    e = (f - y)[len(history) // 2 :]
    e = e[np.isfinite(e)]
    return float(np.mean(e * e)) if len(e) else float("inf")


def choose_lags(
    history: np.ndarray,
    spec: FeatureSpec,
    period: int | None,
    tolerance: float = DEFAULT_TOLERANCE,
    candidates: dict[str, tuple[int, ...]] | None = None,
) -> LagChoice:
    """The lag set with the lowest probe MSE on ``history`` (rows x ``spec.features``), or, within ``tolerance`` of
    it, the default, else the one with the fewest lags. Candidates needing more than a tenth of the history are
    skipped."""
    cands = candidates if candidates is not None else candidate_lags(period, spec.horizon)
    cands = {k: v for k, v in cands.items() if max(v) + spec.horizon <= len(history) // 10}
    if "default" not in cands:
        cands = {"default": DEFAULT_LAGS} | cands
    scores = {label: probe_mse(history, replace(spec, lags=lags)) for label, lags in cands.items()}
    best = min(scores.values())
    # the fewest lags within ``tolerance`` of the best (the default first among equals)
    near = [label for label in cands if scores[label] <= (1.0 + tolerance) * best]
    label = min(near, key=lambda k: (k != "default", len(cands[k]), scores[k]))
    log.info(
        "lags on the history: %s %s (probe MSE %s)", label, cands[label], {k: round(v, 5) for k, v in scores.items()}
    )
    return LagChoice(cands[label], label, period, scores, cands)
