"""Drift detection on a residual stream (forecast minus truth), one residual at a time.

Every detector has ``update(residual) -> bool``: True when a drift is detected at this step
(the edge app then publishes a drift event that can ask for an early re-training). They
watch the *absolute* residual (config ``input``: ``abs``, ``signed`` or ``squared``) and
raise at most one alarm per ``cooldown`` records (a detection during the cooldown is
reported when it ends).

>>> d = make_detector({"detector": "adwin"})
>>> any(d.update(0.0 if i < 500 else 5.0) for i in range(700))
True

Detectors (``detector`` key) and their config keys:

=============  ===========================================================================
``adwin``      river's ADWIN: ``delta`` (confidence), ``clock`` (check every n, 4; river: 32); ``direction`` up|both
``ph``         river's Page-Hinkley: ``threshold``, ``delta``, ``alpha``, ``min_instances``
``kswin``      river's KSWIN (Kolmogorov-Smirnov windows): ``alpha``, ``window_size``, ``stat_size``
``cusum``      one-sided CUSUM on the standardised residual: ``k``, ``h``, ``warmup``
``none``       never fires
=============  ===========================================================================

Every detector also takes ``cooldown`` and ``input``. The keys are the classes' constructor
parameters, the defaults their signatures' (the measured ones: ADWIN ``delta`` 2e-5,
``clock`` 4); an unknown key is refused with the valid ones (:mod:`edge_app.registry`), and a
detector keeps its arguments as attributes:

>>> make_detector({}).delta
2e-05
>>> make_detector({"detector": "cusum", "hh": 8})
Traceback (most recent call last):
...
ValueError: unknown drift detector key(s) for cusum: hh (valid: cooldown, detector, h, input, k, ref_half_life, warmup)
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from edge_app.registry import Configurable, Registry
from model_contract.online_linear import decay


def river_drift(module: str, name: str) -> Any:
    """``river.drift.<module>.<name>`` without running ``river.drift``'s package init, which imports every
    detector and through KSWIN scipy.stats: about 65 MB of the edge's memory for one ADWIN (measured with
    ``ru_maxrss``: 107 MB after ``import river.drift``, 14 MB after this). The package is registered unrun
    only while the module loads; a later ``import river.drift`` runs it as usual (and reuses the module).
    Any trouble (another river layout): the usual import."""
    full = f"river.drift.{module}"
    if full not in sys.modules and "river.drift" not in sys.modules:
        try:
            spec = importlib.util.find_spec("river.drift")
            if spec is not None and spec.submodule_search_locations:
                sys.modules["river.drift"] = importlib.util.module_from_spec(spec)  # its __path__, not run
                try:
                    importlib.import_module(full)
                finally:
                    del sys.modules["river.drift"]
        except Exception:  # noqa: BLE001 (fall back to the usual import below)
            sys.modules.pop(full, None)
    loaded = sys.modules.get(full)
    if loaded is None:
        loaded = importlib.import_module(full)
    return getattr(loaded, name)


class DriftDetector(Protocol):
    def update(self, residual: float) -> bool:
        """Feed one residual; True when a drift is detected at this step."""
        ...


_INPUTS = {"abs": abs, "signed": float, "squared": lambda r: r * r}

DETECTORS: Registry[DriftDetector] = Registry("drift detector", key="detector", default="adwin")


class _Base(Configurable):
    """Input transform and cooldown shared by all detectors."""

    def __init__(self, cooldown: int = 100, input: str = "abs") -> None:
        if input not in _INPUTS:
            raise ValueError(f"input must be one of {', '.join(_INPUTS)}")
        if cooldown < 0:
            raise ValueError("cooldown must be >= 0")
        self.cooldown, self.input = cooldown, input
        self._f = _INPUTS[input]
        self._cooldown = cooldown
        self._since = cooldown
        self._pending = False
        self.n_detections = 0

    def _step(self, x: float) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, residual: float) -> bool:
        if residual != residual:  # NaN: nothing to learn from
            return False
        fired = self._step(self._f(residual)) or self._pending
        self._since += 1
        return self._fire() if fired else False

    def _fire(self) -> bool:
        """A detection at this step (counted in ``_since`` already): an alarm, or pending while the cooldown runs."""
        if self._since > self._cooldown:
            self._since = 0
            self._pending = False
            self.n_detections += 1
            return True
        self._pending = True  # detected during the cooldown: reported when it ends, not lost
        return False


@DETECTORS.register("adwin")
class AdwinDetector(_Base):
    """ADWIN (river) over the residuals; ``direction="up"`` reports only growing errors.

    >>> d = AdwinDetector(delta=0.002)
    >>> [i for i in range(1000) if d.update(0.1 * (i % 3) + (2.0 if i >= 600 else 0.0))][:1]
    [607]
    """

    def __init__(
        self,
        delta: float = 2e-05,
        clock: int = 4,
        direction: str = "up",
        cooldown: int = 100,
        input: str = "abs",
    ) -> None:
        ADWIN = river_drift("adwin", "ADWIN")  # noqa: N806 (river's class)

        super().__init__(cooldown, input)
        self.delta, self.clock, self.direction = delta, clock, direction
        if direction not in ("up", "both"):
            raise ValueError("direction must be 'up' or 'both'")
        self._adwin = ADWIN(delta=delta, clock=clock)
        self._up = direction == "up"
        # river's ADWIN keeps its window in a compiled helper (Rust, Cython before 0.22) behind three Python
        # layers (``estimation`` -> ``width``/``total`` -> the helper; ``update`` -> the helper). Where it has
        # that shape, a step calls the helper itself, as ``ADWIN.update`` would (about half the cost; the same
        # alarms: tests/edge_app/test_drift.py); any other river: the public API.
        helper = getattr(self._adwin, "_helper", None)
        self._direct = "_drift_detected" in vars(self._adwin) and all(
            callable(getattr(helper, name, None)) for name in ("get_width", "get_total", "update")
        )

    def update(self, residual: float) -> bool:
        """:meth:`_Base.update` with the direct step written out (the hot path: a call less per reading)."""
        if residual != residual:  # NaN: nothing to learn from
            return False
        adwin = self._adwin
        if self._direct and not adwin._drift_detected:  # noqa: SLF001 (as _step)
            h = adwin._helper  # noqa: SLF001
            width = h.get_width()
            before = h.get_total() / width if width else 0.0  # ADWIN.estimation
            if h.update(self._f(residual)):
                adwin._drift_detected = True  # noqa: SLF001 (what ADWIN.update stores)
                fired = (not self._up) or adwin.estimation > before or self._pending
            else:
                fired = self._pending
        else:
            fired = self._step(self._f(residual)) or self._pending
        self._since += 1
        return self._fire() if fired else False

    def _step(self, x: float) -> bool:
        adwin = self._adwin
        if self._direct and not adwin._drift_detected:  # noqa: SLF001 (else ADWIN.update resets the window first)
            h = adwin._helper  # noqa: SLF001
            width = h.get_width()
            before = h.get_total() / width if width else 0.0  # ADWIN.estimation
            if not h.update(x):
                return False
            adwin._drift_detected = True  # noqa: SLF001 (what ADWIN.update stores)
        else:
            before = adwin.estimation
            adwin.update(x)
            if not adwin.drift_detected:
                return False
        # ADWIN dropped its older part: the new estimate is the recent mean
        return (not self._up) or adwin.estimation > before


@DETECTORS.register("ph")
class PageHinkleyDetector(_Base):
    """Page-Hinkley test (river), upward by default (errors growing).

    >>> d = PageHinkleyDetector(threshold=20.0)
    >>> [i for i in range(1000) if d.update(0.1 * (i % 3) + (2.0 if i >= 600 else 0.0))][:1]
    [610]
    """

    def __init__(
        self,
        threshold: float = 50.0,
        delta: float = 0.005,
        alpha: float = 0.9999,
        min_instances: int = 30,
        mode: str = "up",
        cooldown: int = 100,
        input: str = "abs",
    ) -> None:
        PageHinkley = river_drift("page_hinkley", "PageHinkley")  # noqa: N806 (river's class)

        super().__init__(cooldown, input)
        self.threshold, self.delta, self.alpha, self.min_instances, self.mode = (
            threshold,
            delta,
            alpha,
            min_instances,
            mode,
        )
        self._ph = PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode=mode)

    def _step(self, x: float) -> bool:
        self._ph.update(x)
        return self._ph.drift_detected


@DETECTORS.register("kswin")
class KswinDetector(_Base):
    """KSWIN (river): Kolmogorov-Smirnov test between the newest ``stat_size`` values and a
    sample of the rest of a sliding ``window_size`` window (fires both ways).

    >>> d = KswinDetector(alpha=0.0001, seed=1)
    >>> any(d.update(0.1 * (i % 3) + (2.0 if i >= 600 else 0.0)) for i in range(1000))
    True
    """

    def __init__(
        self,
        alpha: float = 0.005,
        window_size: int = 100,
        stat_size: int = 30,
        seed: int = 42,
        cooldown: int = 100,
        input: str = "abs",
    ) -> None:
        from river.drift import KSWIN  # noqa: PLC0415

        super().__init__(cooldown, input)
        self.alpha, self.window_size, self.stat_size, self.seed = alpha, window_size, stat_size, seed
        self._ks = KSWIN(alpha=alpha, window_size=window_size, stat_size=stat_size, seed=seed)

    def _step(self, x: float) -> bool:
        self._ks.update(x)
        return self._ks.drift_detected


@DETECTORS.register("cusum")
class CusumDetector(_Base):
    """One-sided CUSUM: alarms when the residual grows ``k`` standard deviations above its
    reference level for long enough (``S > h``). The reference mean and spread are learnt
    over the first ``warmup`` values, then follow slowly (``ref_half_life``); after an alarm
    the reference is learnt afresh.

    >>> d = CusumDetector()
    >>> [i for i in range(1000) if d.update(0.1 * (i % 3) + (2.0 if i >= 600 else 0.0))][:1]
    [600]
    """

    def __init__(
        self,
        k: float = 0.5,
        h: float = 20.0,
        warmup: int = 200,
        ref_half_life: float = 2000.0,
        cooldown: int = 100,
        input: str = "abs",
    ) -> None:
        super().__init__(cooldown, input)
        if warmup < 2:
            raise ValueError("warmup must be >= 2")
        self.k, self.h, self.warmup, self.ref_half_life = k, h, warmup, ref_half_life
        self._k = k
        self._h = h
        self._warmup = warmup
        self._d = decay(ref_half_life)
        self._restart()

    def _restart(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0  # mean square
        self._s = 0.0

    def _step(self, x: float) -> bool:
        self._n += 1
        if self._n <= self._warmup:  # plain running mean/mean square
            self._mean += (x - self._mean) / self._n
            self._m2 += (x * x - self._m2) / self._n
            return False
        var = self._m2 - self._mean * self._mean
        sd = math.sqrt(var) if var > 1e-18 else 1e-9
        self._s = s = max(0.0, self._s + (x - self._mean) / sd - self._k)
        if s > self._h:
            self._restart()
            return True
        d = self._d  # the reference follows slow change (much slower than an alarm builds up)
        self._mean = d * self._mean + (1.0 - d) * x
        self._m2 = d * self._m2 + (1.0 - d) * x * x
        return False


@DETECTORS.register("none")
class NoDetector(_Base):
    """Never fires (drift detection off)."""

    def _step(self, x: float) -> bool:
        return False


# the measured default (docs/combination.md, `hybridstream eval drift`): the registry's default
# detector with its class's default delta (tests/edge_app/test_drift.py checks they agree)
DEFAULT_DETECTOR: dict = {"detector": "adwin", "delta": 2e-05}


def make_detector(config: Mapping) -> DriftDetector:
    """Build a detector from config: ``{"detector": "adwin"|"ph"|"kswin"|"cusum"|"none", ...}``.

    Only the detector's keys are allowed (the edge app strips its own ``residual`` first:
    :attr:`edge_app.config.EdgeConfig.detector_config`).

    >>> make_detector({"detector": "cusum", "h": 8}).update(0.3)
    False
    >>> make_detector({"detector": "ddm"})
    Traceback (most recent call last):
    ...
    ValueError: unknown drift detector 'ddm' (adwin, ph, kswin, cusum, none)
    """
    return DETECTORS.build(config)
