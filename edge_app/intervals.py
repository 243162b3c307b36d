"""Per device: calibrated intervals around the hybrid forecast, and the anomaly flags they give.

The loop calls :meth:`DeviceBand.step` once per valid reading (one place, after the forecast):

1. the interval that was forecast for this reading (its half-widths ride on the device's
   :class:`~edge_app.state.Pending`, made ``horizon`` readings ago) is scored against the reading
   and the device's :class:`~model_contract.conformal.ConformalInterval` learns from it;
2. a reading outside that interval at ``anomaly_level``, the ``min_run``-th or a later one of
   readings in a row outside it (either side: an alternating sensor is a run), is flagged
   (``anomaly`` in its prediction record; one ``anomaly`` event when the run reaches ``min_run``;
   counted);
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

from model_contract.conformal import (
    CLIP,
    FAST_HALF_LIFE,
    GAMMA,
    GAMMA_GAIN,
    LEVELS,
    LR,
    SCALE_HALF_LIFE,
    ConformalInterval,
    level_key,
)

log = logging.getLogger("edge_app")

NO_BAND = ',"interval":null,"anomaly":null'  # intervals switched off (``"intervals": null``)


@dataclass(frozen=True)
class IntervalConfig:
    """The ``intervals`` section of the edge config (docs/edge.md)."""

    levels: tuple[float, ...] = LEVELS
    lr: float = LR
    scale_half_life: float = SCALE_HALF_LIFE
    clip: float = CLIP  # an error counts at most clip x a scale in that scale
    fast_half_life: float = FAST_HALF_LIFE
    gamma: float = GAMMA  # the band's scale = slow * (fast / slow) ** gamma (model_contract.conformal): its start
    gamma_gain: float = GAMMA_GAIN  # gamma learned as gain x a slope (0: gamma fixed)
    anomaly_level: float | None = None  # default: the highest level
    # readings in a row outside the interval before they are flagged: a glitch spoils the forecasts of the next
    # readings too (up to 3 outside in a row on the turbine streams); runs of >= 4 on a clean turbine stream:
    # 25 in 30,000 readings (docs/combination.md)
    min_run: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        ConformalInterval(**self.learner())  # ValueError if unusable
        if self.anomaly_level is None:
            object.__setattr__(self, "anomaly_level", max(self.levels))
        if float(self.anomaly_level) not in self.levels:
            raise ValueError(f"anomaly_level {self.anomaly_level} must be one of the levels {list(self.levels)}")
        if not isinstance(self.min_run, int) or self.min_run < 1:
            raise ValueError(f"min_run must be an integer >= 1, got {self.min_run!r}")

    def learner(self) -> dict[str, Any]:
        """The :class:`~model_contract.conformal.ConformalInterval` arguments."""
        return {
            "levels": self.levels,
            "lr": self.lr,
            "scale_half_life": self.scale_half_life,
            "clip": self.clip,
            "fast_half_life": self.fast_half_life,
            "gamma": self.gamma,
            "gamma_gain": self.gamma_gain,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> IntervalConfig | None:
        """None (intervals off) for ``null``; ValueError on unknown keys or bad values."""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise ValueError("must be an object (or null: off)")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**data)


def _n(x: float) -> str:
    return repr(x) if -math.inf < x < math.inf else "null"


class DeviceBand:
    """One device's interval learner, anomaly run and count (see the module doc)."""

    __slots__ = ("ci", "cfg_learner", "fmt", "empty", "pair", "level", "index", "min_run", "run", "anomalies")
    __slots__ += ("on_anomaly",)

    def __init__(
        self,
        cfg: IntervalConfig,
        warm: Mapping[str, Any] | None = None,
        on_anomaly: Callable[..., None] | None = None,
    ) -> None:
        self.cfg_learner = config = cfg.learner()
        self.ci = ConformalInterval.from_state(warm, **config) if warm else ConformalInterval(**config)
        # the record's members: ',"interval":{"0.8":[%.8g,%.8g],"0.95":[...]},"anomaly":%s' (finite floats only;
        # 8 significant digits: a third of repr's cost, and the bounds are estimates, not measurements)
        self.fmt = ',"interval":{' + ",".join(f'"{k}":[%.8g,%.8g]' for k in self.ci.keys) + '},"anomaly":%s'
        self.empty = ',"interval":null,"anomaly":%s'
        self.pair = len(self.ci.keys) == 2
        self.level = repr(float(cfg.anomaly_level))
        self.index = cfg.levels.index(float(cfg.anomaly_level))
        self.min_run = cfg.min_run
        self.run = 0  # readings in a row outside the anomaly-level interval
        self.anomalies = 0  # flagged readings
        self.on_anomaly = on_anomaly  # called once per run, when it reaches min_run

    def step(self, pending: Any, y: float, made: Any, timestamp: str) -> str:
        """Score ``pending`` (the forecast for this reading ``y``), flag, issue ``made``'s interval; the fragment."""
        anomaly = "null"
        ci = self.ci
        if pending is not None:
            issued = pending.band
            d = y - pending.hybrid
            ci.learn_one(d, issued)
            if issued is not None:
                w = issued[self.index]
                if d > w or d < -w:
                    self.run = run = self.run + 1
                    if run >= self.min_run:
                        anomaly = self._flag(run, d, w, y, pending.hybrid, timestamp)
                else:
                    self.run = 0
        if made is None:
            return self.empty % anomaly
        s = ci.scale
        f = made.hybrid
        if not (s < math.inf and -math.inf < f < math.inf):  # no scale yet (NaN), or an overflow
            made.band = None
            return self.empty % anomaly
        if s > 0.0:
            s *= (ci.fast / s) ** ci.gamma  # ci.multiplier(), inlined
        if self.pair:  # the usual two levels: unrolled, one %-format
            q0, q1 = ci.q
            w0 = q0 * s if q0 > 0.0 else 0.0
            w1 = q1 * s if q1 > 0.0 else 0.0
            made.band = [w0, w1]
            return self.fmt % (f - w0, f + w0, f - w1, f + w1, anomaly)
        made.band = hw = [q * s if q > 0.0 else 0.0 for q in ci.q]
        return self.fmt % (*[v for w in hw for v in (f - w, f + w)], anomaly)

    def _flag(self, run: int, d: float, w: float, y: float, forecast: float, timestamp: str) -> str:
        dist = d - w if d > 0 else d + w
        self.anomalies += 1
        if run == self.min_run and self.on_anomaly is not None:
            self.on_anomaly(timestamp, y, forecast, dist, run)
        return f'{{"level":{self.level},"distance":{_n(dist)},"run":{run}}}'

    def state(self) -> dict[str, Any]:
        """What a restart needs to carry on calibrated (``edge_app.device_store``): the learner's state and the
        current run outside the anomaly-level interval (the running scores start afresh, like the accuracy)."""
        return {"learner": self.ci.state(), "run": self.run}

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (the edge config's settings win; a learned ``gamma`` carries on);
        ValueError if it is unusable (the band is left as it was)."""
        if not isinstance(saved, Mapping):
            raise ValueError("bad interval state: not an object")
        ci = ConformalInterval.from_state(saved.get("learner") or {}, **self.cfg_learner)
        run = saved.get("run", 0)
        if not isinstance(run, int) or run < 0:
            raise ValueError(f"bad interval state: run {run!r}")
        self.ci, self.run = ci, run

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
