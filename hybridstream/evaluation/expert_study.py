"""Which experts should the dynamic combiner blend? Replayed over saved ``eval run --save`` results.

Every candidate is a :class:`~hybridstream.evaluation.experts.MultiStacking` over a set of
the run's forecasts (truths learned ``horizon`` rows late, as on the edge). Selection as in
the combiner study: regret = RMSE / the best candidate's RMSE on that run, ranked by the
worst then the mean regret on the **first halves**; the second halves are reported beside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hybridstream.evaluation.experts import replay_experts, replay_weights
from hybridstream.evaluation.online_run import RunResult

EXPERT_SETS: dict[str, tuple[str, ...]] = {
    "batch+speed": ("batch", "speed"),
    "batch+speed+persistence": ("batch", "speed", "persistence"),
    "batch+speed+online_linear": ("batch", "speed", "online_linear"),
    "batch+speed+persistence+online_linear": ("batch", "speed", "persistence", "online_linear"),
    "online_linear+batch": ("online_linear", "batch"),
}


# the expert-weighting layer of the dynamic combiner (ContextStacking blend="experts"): its experts, in order
LAYER_EXPERTS = ("dynamic", "online_linear", "persistence", "batch", "speed", "static")
PAIR_EXPERTS = ("dynamic", "online_linear")  # blend="pair": the stack and the online linear model it contains


def layer_candidates() -> dict[str, tuple[tuple[str, ...], dict]]:
    """label -> (experts, ExpertWeights params): the exponentially weighted layer over the stack and the rest."""
    out = {}
    for eta in (0.5, 2.0, 8.0):
        for hl in (100, 300, 1000):
            out[f"weights pair eta={eta:g} hl={hl}"] = (PAIR_EXPERTS, {"eta": eta, "half_life": hl})
            for prior in (0.0, 5.0):
                out[f"weights eta={eta:g} hl={hl} prior={prior:g}"] = (
                    LAYER_EXPERTS,
                    {"eta": eta, "half_life": hl, "prior": prior},
                )
    return out


def candidates() -> dict[str, tuple[tuple[str, ...], dict]]:
    """label -> (experts, MultiStacking params), and the expert-weighting layer's grid."""
    out = layer_candidates()
    for name, experts in EXPERT_SETS.items():
        for hl in (5, 20, 100, 500):
            out[f"{name} hl={hl}"] = (experts, {"half_life": hl})
            out[f"{name} hl={hl} guard=3"] = (experts, {"half_life": hl, "guard": 3.0})
    return out


def _rmse(e: np.ndarray) -> float:
    e = e[np.isfinite(e)]
    return float(np.sqrt(np.mean(e * e))) if len(e) else float("nan")


def score_run(result: RunResult, cands: Mapping[str, tuple[Sequence[str], dict]]) -> dict:
    """RMSE (whole, halves), MAE and muted counts of each candidate and of the run's own six approaches."""
    ok = result.scored
    half = len(result.y) // 2

    def metrics(pred: np.ndarray) -> dict:
        e = np.where(ok, pred - result.y, np.nan)
        return {
            "rmse": _rmse(e),
            "mae": float(np.nanmean(np.abs(e))),
            "rmse_first_half": _rmse(e[:half]),
            "rmse_second_half": _rmse(e[half:]),
        }

    rows = {name: metrics(f) for name, f in result.forecasts.items()}
    for label, (experts, params) in cands.items():
        if "eta" in params:
            pred, _ = replay_weights(result, tuple(experts), **params)
            rows[label] = metrics(pred)
            continue
        pred, comb = replay_experts(result, tuple(experts), **params)
        rows[label] = metrics(pred) | {"muted": dict(zip(experts, comb.muted, strict=True))}
    return rows


def select(scores: Mapping[str, Mapping], pool: Sequence[str], part: str = "rmse_first_half") -> list:
    """[(label, worst regret, mean regret)] over the runs, best first."""
    regrets: dict[str, list[float]] = {label: [] for label in pool}
    for rows in scores.values():
        best = min(rows[label][part] for label in pool)
        for label in pool:
            regrets[label].append(rows[label][part] / best)
    ranked = [(label, max(r), sum(r) / len(r)) for label, r in regrets.items()]
    return sorted(ranked, key=lambda x: (round(x[1], 4), x[2]))
