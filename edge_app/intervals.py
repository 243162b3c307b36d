"""Per device: calibrated intervals around the hybrid forecast, and the anomaly flags they give.

The loop calls :meth:`DeviceBand.step` once per valid reading (one place, after the forecast):

1. the interval that was forecast for this reading (its half-widths ride on the device's
   :class:`~edge_app.state.Pending`, made ``horizon`` readings ago) is scored against the reading
   and the device's :class:`~model_contract.conformal.ConformalInterval` learns from it;
2. a reading outside that interval at ``anomaly_level``, on the same side for ``min_run``
   readings in a row, is flagged (a lone glitch gives one reading above, then one below: not a
   run) (``anomaly`` in the prediction record on every reading of the run; one ``anomaly``
   event when the run reaches ``min_run``; counted);
3. the new forecast gets its half-widths (stored on the new ``Pending``) and its interval goes into
   the prediction record.

It returns the record's ``"interval"`` and ``"anomaly"`` members as one JSON fragment (docs/edge.md).

>>> from edge_app.state import Pending
>>> band = DeviceBand(IntervalConfig(min_run=1), warm={"levels": [0.8, 0.95], "lr": 0.05,
...     "scale_half_life": 100.0, "q": [1.6, 2.5], "scale": 1.0, "seen": 500})
>>> made = Pending(10.0, 10.0, 10.0, "v1")
>>> band.step(None, 9.0, made, "t0")
',"interval":{"0.8":[8.4,11.6],"0.95":[7.5,12.5]},"anomaly":null'
>>> band.step(made, 13.0, None, "t1")  # outside [7.5, 12.5] by 0.5
',"interval":null,"anomaly":{"level":0.95,"distance":0.5,"run":1}'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from model_contract.conformal import LEVELS, LR, SCALE_HALF_LIFE, ConformalInterval, level_key

log = logging.getLogger("edge_app")

NO_BAND = ',"interval":null,"anomaly":null'  # intervals switched off (``"intervals": null``)


@dataclass(frozen=True)
class IntervalConfig:
    """The ``intervals`` section of the edge config (docs/edge.md)."""

    levels: tuple[float, ...] = LEVELS
    lr: float = LR
    scale_half_life: float = SCALE_HALF_LIFE
    anomaly_level: float | None = None  # default: the highest level
    min_run: int = 2  # readings in a row outside the interval before they are flagged

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        ConformalInterval(self.levels, self.lr, self.scale_half_life)  # ValueError if unusable
        if self.anomaly_level is None:
            object.__setattr__(self, "anomaly_level", max(self.levels))
        if float(self.anomaly_level) not in self.levels:
            raise ValueError(f"anomaly_level {self.anomaly_level} must be one of the levels {list(self.levels)}")
        if not isinstance(self.min_run, int) or self.min_run < 1:
            raise ValueError(f"min_run must be an integer >= 1, got {self.min_run!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> IntervalConfig | None:
        """None (intervals off) for ``null``; ValueError on unknown keys or bad values."""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValueError("must be an object (or null: off)")
        unknown = set(data) - {"levels", "lr", "scale_half_life", "anomaly_level", "min_run"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**data)


def _n(x: float) -> str:
    return repr(x) if -math.inf < x < math.inf else "null"


class DeviceBand:
    """One device's interval learner, anomaly run and count (see the module doc)."""

    __slots__ = ("ci", "heads", "level", "index", "min_run", "run", "anomalies", "on_anomaly")

    def __init__(
        self,
        cfg: IntervalConfig,
        warm: Mapping[str, Any] | None = None,
        on_anomaly: Callable[..., None] | None = None,
    ) -> None:
        config = {"levels": cfg.levels, "lr": cfg.lr, "scale_half_life": cfg.scale_half_life}
        self.ci = ConformalInterval.from_state(warm, **config) if warm else ConformalInterval(**config)
        self.heads = tuple(f'"{k}":[' for k in self.ci.keys)  # '"0.8":[' ...
        self.level = repr(float(cfg.anomaly_level))
        self.index = cfg.levels.index(float(cfg.anomaly_level))
        self.min_run = cfg.min_run
        self.run = 0  # readings in a row above (> 0) or below (< 0) the anomaly-level interval
        self.anomalies = 0  # flagged readings
        self.on_anomaly = on_anomaly  # called once per run, when it reaches min_run

    def step(self, pending: Any, y: float, made: Any, timestamp: str) -> str:
        """Score ``pending`` (the forecast for this reading ``y``), flag, issue ``made``'s interval; the fragment."""
        anomaly = "null"
        if pending is not None:
            issued = pending.band
            d = y - pending.hybrid
            self.ci.learn_one(d, issued)
            if issued is not None and d == d:
                w = issued[self.index]
                if d > w:  # above: a run above goes on, one below starts afresh (a glitch is +, then -)
                    run = self.run + 1 if self.run > 0 else 1
                    dist = d - w
                elif d < -w:
                    run = self.run - 1 if self.run < 0 else -1
                    dist = d + w
                else:
                    run = 0
                self.run = run
                if run >= self.min_run or -run >= self.min_run:
                    n = run if run > 0 else -run
                    self.anomalies += 1
                    anomaly = f'{{"level":{self.level},"distance":{_n(dist)},"run":{n}}}'
                    if n == self.min_run and self.on_anomaly is not None:
                        self.on_anomaly(timestamp, y, pending.hybrid, dist, n)
        if made is None:
            return f',"interval":null,"anomaly":{anomaly}'
        hw = self.ci.half_widths()
        made.band = hw
        if hw is None:
            return f',"interval":null,"anomaly":{anomaly}'
        f = made.hybrid
        parts = [f"{head}{_n(f - w)},{_n(f + w)}]" for head, w in zip(self.heads, hw, strict=True)]
        return f',"interval":{{{",".join(parts)}}},"anomaly":{anomaly}'

    def snapshot(self) -> dict[str, Any]:
        """The device's running interval scores (metrics records): coverage, mean width per level, n, anomalies."""
        ci = self.ci
        return {"coverage": ci.coverage(), "width": ci.mean_width(), "n": ci.scored, "anomalies": self.anomalies}


def totals(bands: list[DeviceBand]) -> dict[str, Any] | None:
    """Coverage and mean width per level over every device's scored intervals (None without bands).

    >>> a, b = DeviceBand(IntervalConfig()), DeviceBand(IntervalConfig())
    >>> a.ci.scored, a.ci.misses, a.ci.width_sums = 8, [2, 0], [8.0, 16.0]
    >>> b.ci.scored, b.ci.misses, b.ci.width_sums = 2, [1, 1], [2.0, 4.0]
    >>> totals([a, b])["coverage"], totals([a, b])["width"]
    ({'0.8': 0.7, '0.95': 0.9}, {'0.8': 2.0, '0.95': 4.0})
    """
    if not bands:
        return None
    keys = bands[0].ci.keys
    n = sum(b.ci.scored for b in bands)
    misses = [sum(b.ci.misses[i] for b in bands) for i in range(len(keys))]
    sums = [sum(b.ci.width_sums[i] for b in bands) for i in range(len(keys))]
    return {
        "coverage": {k: (1.0 - m / n if n else None) for k, m in zip(keys, misses, strict=True)},
        "width": {k: (2.0 * s / n if n else None) for k, s in zip(keys, sums, strict=True)},
        "n": n,
        "anomalies": sum(b.anomalies for b in bands),
    }


def level_name(level: float) -> str:
    """The MQTT/CloudWatch suffix of a level: ``0.8 -> "80"``, ``0.95 -> "95"``, ``0.995 -> "99_5"``."""
    return format(level * 100, "g").replace(".", "_")


__all__ = ["NO_BAND", "DeviceBand", "IntervalConfig", "level_key", "level_name", "totals"]
