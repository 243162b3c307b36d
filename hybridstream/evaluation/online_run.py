"""Replay a test stream exactly as the edge runs it, with every approach side by side.

Per record ``t`` of the test matrix (oldest first):

1. a speed model whose window closed is swapped in (the combiners' ``reset_speed()``);
2. the truths that arrived (row ``t - 1``) are learned by every online learner (the
   combiners and the online linear model), for the forecasts made ``horizon`` rows earlier;
   as on the edge, the dynamic combiner learns a truth only if the speed model that made the
   forecast still serves, with the context it kept for that forecast;
3. if the lag window is full, every approach forecasts row ``t + horizon - 1``: the batch
   and the speed model through :class:`~model_contract.runtime.TFLiteModel` (one record,
   the edge's call), persistence, the online linear model, the static and the dynamic
   combiner (the edge's ``make_combiner``, called with the lag window as the edge calls it);
4. the reading is pushed into the :class:`~model_contract.FeatureBuffer`; after every
   ``window`` rows a speed model is trained on exactly those rows with the training job's
   own code and serves from the next row on (optionally warm-started from the batch model).

The six forecasts per target row are scored on the rows where all of them exist.

The dynamic combiner is made as the edge makes a new device's (:func:`dynamic_combiner`): it starts
from the batch manifest's combiner warm start (``extra["combiner_warm_start"]``: the context stack's
state after the training file, learned with both model inputs "no change",
:func:`model_contract.context_stack.warm_start`; computed with that same function for a cached
manifest that lacks it) when the combiner config fits, else cold (logged). ``warm_combiner=False``:
cold, as on an edge whose batch model ships no warm start (the default ``context`` then starts as
persistence).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridstream.evaluation.intervals import issued_half_widths
from hybridstream.evaluation.intervals import score as interval_score
from hybridstream.evaluation.model_study import cached_model
from hybridstream.evaluation.window_schedule import WindowSchedule
from model_contract import FeatureBuffer, FeatureSpec, Manifest, conformal, context_stack
from model_contract.conformal import LEVELS, ConformalInterval
from model_contract.online_linear import OnlineLinear
from model_contract.persistence_forecast import Persistence
from training_job.recent_windows import DEFAULT_SPEED_WINDOWS
from training_job.windows import DEFAULT_MIN_ROWS

APPROACHES = ("batch", "speed", "static", "dynamic", "persistence", "online_linear")
# the approaches eval gives intervals (the edge's learner, each from its own training-file errors): the edge's
# dynamic forecast and the two baselines beside it
INTERVAL_APPROACHES = ("dynamic", "persistence", "online_linear")

# the trainer's (train worker): each speed model fine-tuned from the batch model's weights (with its scaler) on the
# last DEFAULT_SPEED_WINDOWS windows (training_job.fine_tune, training_job.recent_windows); eval replays what ships
DEFAULT_WARM_START = True
# the edge's (edge_app.config WindowsConfig.early_on_drift, off since issue 17's measurement): a window every --window
# rows; --early-on-drift replays the option: a drift alarm closes the device's window, the trainer gets it at once
DEFAULT_EARLY_ON_DRIFT = False


@dataclass
class RunResult:
    """Per target row forecasts of each approach (NaN: none), the truth, and the run's bookkeeping."""

    spec: FeatureSpec
    window: int
    y: np.ndarray
    forecasts: dict[str, np.ndarray]
    speed_weight: np.ndarray
    speed_models: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    counters: dict = field(default_factory=dict)
    variants: dict[str, np.ndarray] = field(default_factory=dict)  # other dynamic combiners (ablations)
    interval_warm: dict | None = None  # the batch manifest's interval warm start (the edge's; None: cold)
    # the baselines' interval warm starts (INTERVAL_APPROACHES: their own errors over the training file)
    interval_warms: dict[str, dict] = field(default_factory=dict)
    drift_alarms: list[int] = field(default_factory=list)  # rows whose reading raised the edge's drift alarm

    def intervals(
        self, levels: tuple[float, ...] = LEVELS, skip: int = 0, approach: str = "dynamic"
    ) -> tuple[np.ndarray, dict]:
        """An approach's intervals as the edge issues the dynamic forecast's (``model_contract.conformal`` with the
        edge's default settings, from the approach's interval warm start; cold without one): half-widths per row x
        level, and their scores (:func:`intervals.score`; the first ``skip`` rows, e.g. a lead-in, not scored)."""
        warm = self.interval_warm if approach == "dynamic" else self.interval_warms.get(approach)
        config = ConformalInterval(levels).config()
        learner = ConformalInterval.from_state(warm, **config) if warm else ConformalInterval(**config)
        f = self.forecasts[approach]
        hw = issued_half_widths(self.y, f, learner, self.spec.horizon)
        scored = hw.copy()
        scored[:skip] = np.nan
        return hw, interval_score(self.y, f, scored, levels)

    @property
    def scored(self) -> np.ndarray:
        """Rows every approach forecast."""
        ok = np.isfinite(self.y)
        for f in self.forecasts.values():
            ok &= np.isfinite(f)
        return ok

    def scores(self, variants: bool = False) -> dict[str, dict[str, float]]:
        """Per approach (and with ``variants`` each variant): RMSE and MAE over the scored rows, and RMSE over
        each half of the stream."""
        ok = self.scored
        half = len(self.y) // 2
        out = {}
        for name, f in (self.forecasts | self.variants if variants else self.forecasts).items():
            e = (f - self.y)[ok]
            e1 = (f - self.y)[:half][ok[:half]]
            e2 = (f - self.y)[half:][ok[half:]]
            out[name] = {
                "rmse": float(np.sqrt(np.mean(e * e))) if len(e) else math.nan,
                "mae": float(np.mean(np.abs(e))) if len(e) else math.nan,
                "rmse_first_half": float(np.sqrt(np.mean(e1 * e1))) if len(e1) else math.nan,
                "rmse_second_half": float(np.sqrt(np.mean(e2 * e2))) if len(e2) else math.nan,
            }
        return out

    def save(self, path: str | Path) -> Path:
        """Forecasts, truth and bookkeeping as ``.npz`` (replay other combiners over them later)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"spec": self.spec.to_dict(), "window": self.window, "speed_models": self.speed_models}
        meta |= {"seconds": self.seconds, "counters": self.counters, "interval_warm": self.interval_warm}
        meta["interval_warms"] = self.interval_warms
        meta["drift_alarms"] = self.drift_alarms
        arrays = {f"f_{k}": v for k, v in self.forecasts.items()} | {f"v_{k}": v for k, v in self.variants.items()}
        np.savez_compressed(path, y=self.y, speed_weight=self.speed_weight, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        with np.load(path) as d:
            meta = json.loads(str(d["meta"]))
            forecasts = {k[2:]: d[k] for k in d.files if k.startswith("f_")}
            variants = {k[2:]: d[k] for k in d.files if k.startswith("v_")}
            return cls(
                FeatureSpec.from_dict(meta["spec"]),
                int(meta["window"]),
                d["y"],
                forecasts,
                d["speed_weight"],
                meta["speed_models"],
                meta["seconds"],
                meta["counters"],
                variants,
                meta.get("interval_warm"),
                meta.get("interval_warms") or {},
                meta.get("drift_alarms") or [],
            )

    def summary(self) -> dict:
        """The ``--json`` line: approaches (rmse, mae), retrains, rows, horizon, counters (e.g. the dynamic
        combiner's guard: ``dynamic_muted_batch``, ``dynamic_muted_speed``, ``dynamic_fallbacks``)."""
        sc = self.scores()
        approaches = {k: {"rmse": sc[k]["rmse"], "mae": sc[k]["mae"]} for k in self.forecasts}
        for k in INTERVAL_APPROACHES:  # the edge puts intervals on dynamic; the baselines' beside it
            if k in self.forecasts:
                approaches[k] |= self.intervals(approach=k)[1]
        return {
            "approaches": approaches,
            **(
                {
                    "variants": {
                        k: {"rmse": v["rmse"], "mae": v["mae"]}
                        for k, v in self.scores(True).items()
                        if k in self.variants
                    }
                }
                if self.variants
                else {}
            ),
            "retrains": len(self.speed_models),
            "rows": int(self.scored.sum()),
            "horizon": self.spec.horizon,
            "counters": dict(self.counters),
        }


def run_stream(
    train: np.ndarray,
    test: np.ndarray,
    spec: FeatureSpec,
    window: int = 1000,
    *,
    cfg=None,
    speed_cfg=None,
    warm_start: bool = DEFAULT_WARM_START,
    speed_windows: int = DEFAULT_SPEED_WINDOWS,
    combiner: Mapping | None = None,
    warm_combiner: bool = True,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
    progress_every: int = 5000,
    variants: Mapping[str, Mapping] | None = None,
    warm_variants: bool = False,
    early_on_drift: bool = DEFAULT_EARLY_ON_DRIFT,
    drift: Mapping | None = None,
    since_drift: bool = False,
) -> RunResult:
    """Train the batch model on ``train``, then replay ``test`` record by record (see the module doc).

    ``variants``: more dynamic combiner configs (label -> config, e.g. an ablation's), replayed beside
    ``dynamic`` in the same pass (same models, same rule for learning) into :attr:`RunResult.variants`;
    ``warm_variants``: a variant whose learning keys differ from the batch model's warm start starts from its own
    (:func:`dynamic_combiner`'s ``own``) instead of cold, so it compares with ``dynamic`` like with like.
    Models are cached by content version in ``cache_dir`` (the speed models too: a re-run replays only).
    ``speed_windows``: each speed model (still one every ``window`` rows) is trained on the last
    ``speed_windows`` windows of the stream (fewer at its start), not only the one that just closed;
    ``warm_start``: fine-tuned from the batch model's weights and scaler. The defaults are the trainer's
    (``train worker --speed-windows 6 --batch-model latest``); 1 and False replay the speed model before issue 17.
    ``early_on_drift`` (the edge's ``windows.early_on_drift``, default off): the edge's drift detector (``drift``,
    default :data:`edge_app.drift.DEFAULT_DETECTOR`, the edge's) runs on the dynamic forecast's residual (the
    edge's ``drift.residual: hybrid``) and an alarm closes the window early: a speed model is trained at once and
    the count of ``window`` rows starts again there (:class:`~hybridstream.evaluation.window_schedule.WindowSchedule`,
    which also rejects a window shorter than the trainer's min_rows, as the trainer does); False: a window every
    ``window`` rows, the replay before drift3. ``since_drift``: the studied history rule (the schedule's doc).
    """
    from edge_app.combiners import make_combiner  # noqa: PLC0415
    from edge_app.drift import DEFAULT_DETECTOR, make_detector  # noqa: PLC0415
    from model_contract.runtime import TFLiteModel  # noqa: PLC0415
    from training_job.model import TrainConfig, quiet_native_output  # noqa: PLC0415

    cfg = cfg or TrainConfig()
    speed_cfg = speed_cfg or cfg
    if window < 2 * (spec.max_lag + spec.horizon) + 10:
        raise ValueError(f"window {window} is too small for lags {spec.lags} and horizon {spec.horizon}")
    if speed_windows < 1:
        raise ValueError(f"speed_windows must be >= 1, not {speed_windows}")
    log(f"batch model: training on {len(train)} rows ({len(spec.columns)} columns, target {spec.target})...")
    how = "fine-tuned from the batch model" if warm_start else "from scratch"
    log(f"speed models: every {window} rows, {how}, on the last {speed_windows} window(s)")
    content, manifest, batch_weights = cached_model(train, spec, cfg, cache_dir, log, kind="batch")
    with quiet_native_output():
        batch_model = TFLiteModel.from_manifest(content, manifest)

    n, h, ti = len(test), spec.horizon, spec.target_index
    y = test[:, ti].astype(np.float64)
    out = {k: np.full(n, np.nan) for k in APPROACHES}
    ws = np.full(n, np.nan)
    persistence = Persistence(ti)
    linear = OnlineLinear.for_spec(spec)
    warms = _warm_linear(linear, train, spec)  # and the baselines' interval warm starts
    static = make_combiner({"strategy": "static", "speed_weight": 0.3})
    config = dict(combiner) if combiner is not None else {"strategy": "dynamic"}
    dynamic = dynamic_combiner(config, spec, manifest, train, warm=warm_combiner, log=log)
    others = {
        k: dynamic_combiner(
            v, spec, manifest, train, warm=warm_combiner, own=warm_variants, log=lambda m, k=k: log(f"{k}: {m}")
        )
        for k, v in (variants or {}).items()
    }
    extra = {k: np.full(n, np.nan) for k in others}
    uses_window = dynamic.uses_window
    warmed = getattr(dynamic, "warm_rows", 0)
    before = _counts(dynamic)
    buf = FeatureBuffer(spec)
    pending: deque = deque()  # (target row, batch, speed, window copy, combiner context, speed model id, variants')
    ready: list = []  # speed models waiting to serve: (from row, model)
    speed_model = None
    speed_id = -1
    speed_info: list[dict] = []
    # the trainer's min_rows (a replay with windows below it would configure the trainer's --min-rows lower)
    schedule = WindowSchedule(window, speed_windows, min(DEFAULT_MIN_ROWS, window), since_drift=since_drift)
    detector = make_detector(drift if drift is not None else DEFAULT_DETECTOR) if early_on_drift else None
    alarms: list[int] = []
    rejected: list[int] = []  # rows at which a window closed that the trainer rejects

    def train_speed(ranges: list[tuple[int, int]] | None, end: int, reason: str, serves: int) -> None:
        """The speed model of the window that closed at row ``end`` (trained on ``ranges``), serving from row
        ``serves``; ``ranges`` None: the trainer rejects the window (fewer than its min_rows rows), no model."""
        if ranges is None:
            rejected.append(end)
            log(f"window closed at row {end} ({reason}) has {schedule.closed[-1].rows} rows: no speed model")
            return
        rows = np.vstack([test[a:b] for a, b in ranges])
        t0 = time.perf_counter()
        init = batch_weights if warm_start else None
        tfl, man, _ = cached_model(
            rows,
            spec,
            speed_cfg,
            cache_dir,
            lambda m: None,
            kind="speed",
            init_weights=init,
            scaler=manifest.scaler if warm_start else None,
        )
        with quiet_native_output():
            ready.append((serves, TFLiteModel.from_manifest(tfl, man)))
        secs = time.perf_counter() - t0
        first = ranges[0][0]
        speed_info.append(
            {"first_row": first, "serves_from": serves, "seconds": round(secs, 2), "warm_start": warm_start}
            | {"reason": reason, "rows": len(rows), "windows": len(ranges)}
        )
        log(
            f"speed model {len(speed_info)} (rows {first + 1}-{end} of {n}{', closed on drift' * (reason == 'drift')})"
            f" trained in {secs:.1f} s, "
            f"holdout RMSE {man.metrics['rmse']:.4g}; elapsed {time.perf_counter() - started:.0f} s"
        )

    started = time.perf_counter()
    for t in range(n):
        while ready and ready[0][0] <= t:
            speed_model = ready.pop(0)[1]
            speed_id += 1
            static.reset_speed()
            dynamic.reset_speed()
            for c in others.values():
                c.reset_speed()
        while pending and pending[0][0] <= t - 1:  # the truth of row t-1 has arrived
            j, b, s, w, ctx, sid, octx = pending.popleft()
            if sid == speed_id:  # the edge's rule: learn only if the speed model that forecast still serves
                dynamic.learn_one(b, s, y[j], ctx)
                for c, cc in zip(others.values(), octx, strict=True):
                    c.learn_one(b, s, y[j], cc)
            linear.learn_one(w, y[j])
        if buf.ready and t + h - 1 < n:
            j = t + h - 1
            win = buf.window
            b = batch_model.predict_one(win)
            s = speed_model.predict_one(win) if speed_model is not None else b
            out["batch"][j] = b
            out["speed"][j] = s
            out["static"][j] = static.predict_one(b, s)
            out["dynamic"][j] = dynamic.predict_one(b, s, win)
            ws[j] = dynamic.weights[1]
            out["persistence"][j] = persistence.predict_one(win)
            out["online_linear"][j] = linear.predict_one(win)
            octx = []
            for k, c in others.items():
                extra[k][j] = c.predict_one(b, s, win)
                octx.append(c.context() if c.uses_window else None)
            pending.append((j, b, s, win.copy(), dynamic.context() if uses_window else None, speed_id, octx))
        residual = out["dynamic"][t] - y[t]  # the edge scores reading t: the hybrid residual feeds its detector
        if detector is not None and math.isfinite(residual) and detector.update(residual):
            alarms.append(t)
            if schedule.start < t and t + 1 < n:  # the open window closes before reading t; its model serves from
                # the next reading (an empty one, just closed by its count, is not closed again)
                train_speed(schedule.close(t, drift=True), t, "drift", t + 1)
        buf.push_row(test[t])
        if schedule.full(t + 1) and t + 1 < n:
            train_speed(schedule.close(t + 1, drift=False), t + 1, "count", t + 1)
        if progress_every and (t + 1) % progress_every == 0:
            log(f"replayed {t + 1}/{n} rows ({time.perf_counter() - started:.0f} s)")
    counters = {"online_linear_skipped": linear.skipped, "online_linear_resets": linear.resets}
    counters |= {"drift_alarms": len(alarms), "windows_rejected": len(rejected)}
    counters["drift_windows"] = sum(w.drift for w in schedule.closed)
    after = _counts(dynamic)  # the combiner's guard over the test stream (the warm-up left out)
    counters |= {f"dynamic_{k}": v - before.get(k, 0) for k, v in after.items()}
    counters["dynamic_warmup_rows"] = warmed
    seconds = round(time.perf_counter() - started, 1)
    warm = interval_warm_start(manifest, train, spec)
    return RunResult(spec, window, y, out, ws, speed_info, seconds, counters, extra, warm, warms, alarms)


def interval_warm_start(manifest: Manifest, train: np.ndarray, spec: FeatureSpec) -> dict:
    """The batch manifest's interval warm start, as every new edge device's intervals start (a cached manifest
    that predates it gets it computed from ``train`` with the trainer's functions)."""
    warm = manifest.extra.get(conformal.WARM_KEY)
    if warm is None or warm.get("method", 1) != conformal.METHOD:  # none, or the learner's older method
        residuals: list[float] = []
        context_stack.warm_start(train, spec, residuals=residuals)
        warm = conformal.warm_start(residuals, spec.horizon)
    return warm


def _warm_linear(model: OnlineLinear, train: np.ndarray, spec: FeatureSpec) -> dict[str, dict]:
    """Stream the training file through the online linear model first (unscored), as the batch model saw it;
    the interval warm starts of the online linear model and of persistence from their errors on the way
    (:func:`model_contract.conformal.warm_start`, as the trainer makes the dynamic forecast's)."""
    buf = FeatureBuffer(spec)
    h, ti = spec.horizon, spec.target_index
    persistence = Persistence(ti)
    pending: deque = deque()
    residuals: dict[str, list[float]] = {"online_linear": [], "persistence": []}
    for t in range(len(train)):
        while pending and pending[0][0] <= t - 1:
            j, w, f_lin, f_per = pending.popleft()
            residuals["online_linear"].append(f_lin - train[j, ti])
            residuals["persistence"].append(f_per - train[j, ti])
            model.learn_one(w, train[j, ti])
        if buf.ready and t + h - 1 < len(train):
            w = buf.window.copy()
            pending.append((t + h - 1, w, model.predict_one(w), persistence.predict_one(w)))
        buf.push_row(train[t])
    return {k: conformal.warm_start(r, h) for k, r in residuals.items()}


def _counts(combiner) -> dict[str, int]:
    counts = getattr(combiner, "counts", None)
    return counts() if counts is not None else {}


def dynamic_combiner(
    config: Mapping,
    spec: FeatureSpec,
    manifest: Manifest,
    train: np.ndarray,
    *,
    warm: bool = True,
    own: bool = False,
    log: Callable[[str], None] = print,
):
    """The dynamic combiner as the edge makes a new device's (``edge_app``: ``make_combiner(..., warm=...)``): from
    the batch manifest's warm start if it fits ``config`` and ``spec`` (a manifest without one, e.g. an old cache
    entry, gets it computed from ``train`` with the trainer's function; one without the twin, that twin:
    the stack's window part and the layers read it),
    else cold with the reason logged. ``own``: a context config whose learning keys (half-life, clips, guard
    half-life) differ from the manifest's warm start's starts from the warm start the trainer would ship if that
    config were its default (computed from ``train`` with the trainer's function), not cold."""
    from edge_app.combiners import make_combiner, warm_start_mismatch  # noqa: PLC0415

    if not warm:
        return make_combiner(config, spec=spec)
    state = manifest.extra.get(context_stack.WARM_KEY)
    context = config.get("method", "context") == "context"
    if state is None and context:
        state = context_stack.warm_start(train, spec)  # the cached manifest predates warm starts: the trainer's
    elif context and isinstance(state, Mapping) and context_stack.TWIN_KEY not in state:
        # predates the twin: the trainer's (the stack reads it for its window part, with or without a layer)
        twin = context_stack.twin_warm_start(train, spec, state.get("config"))
        state = {**state, context_stack.TWIN_KEY: twin}
    why, whose = warm_start_mismatch(config, spec, state), "the batch model's warm start"
    if why and own and context and not config.get("twin"):
        state = context_stack.warm_start(train, spec, config)  # the trainer's, had this config been its default
        why, whose = warm_start_mismatch(config, spec, state), "its own warm start (the trainer's for this config)"
    if why:
        log(f"dynamic combiner starts cold: {why}")
        return make_combiner(config, spec=spec)
    combiner = make_combiner(config, spec=spec, warm=state)
    log(f"dynamic combiner starts from {whose} ({combiner.warm_rows} history rows)")
    return combiner
