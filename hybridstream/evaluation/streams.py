"""Prediction streams: what the edge's batch and speed models forecast, row by row, cached.

For a scenario and a window size ``W``: the batch model is trained on the scenario's history;
the test file is streamed through a :class:`~model_contract.FeatureBuffer`; after every ``W``
rows a speed model is trained on that window (with the training job's own code) and becomes
available ``delay`` rows after the window closed. Until the first speed model exists the
speed forecast is the batch forecast (as on the edge). Forecasts come from
:class:`~model_contract.runtime.TFLiteModel`, one record at a time, exactly as on the edge.

The result (:class:`PredictionStream`) is cached as ``.cache/eval/<scenario>-w<W>-d<delay>.npz``.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridstream.datasets import REPO_ROOT as REPO
from hybridstream.evaluation.data import MAIN_SCENARIOS, SCENARIOS, Scenario, load_scenario
from model_contract import FeatureBuffer, FeatureSpec, Manifest

DEFAULT_CACHE = REPO / ".cache" / "eval"


@dataclass
class PredictionStream:
    """Per-row truth and forecasts of one scenario run (rows without a forecast are NaN).

    ``speed_id[t]`` is the index of the speed model that served row ``t`` (-1: none yet, the
    speed forecast is the batch one). A change of ``speed_id`` is a hot swap.
    """

    scenario: str
    window: int
    delay: int
    y: np.ndarray
    batch: np.ndarray
    speed: np.ndarray
    speed_id: np.ndarray
    meta: dict = field(default_factory=dict)
    baselines: dict = field(default_factory=dict)  # name -> per-row forecast (not cached; see attach_baselines)
    # the test readings (rows, features) and their spec, for combiners that read the lag window (not cached;
    # see readings)
    matrix: np.ndarray | None = None
    spec: FeatureSpec | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def valid(self) -> np.ndarray:
        """Rows that have a forecast (the first ``max_lag`` rows of the stream do not)."""
        return np.isfinite(self.batch) & np.isfinite(self.speed)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            y=self.y,
            batch=self.batch,
            speed=self.speed,
            speed_id=self.speed_id,
            info=np.array(
                json.dumps({"scenario": self.scenario, "window": self.window, "delay": self.delay, "meta": self.meta})
            ),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PredictionStream:
        with np.load(path) as data:
            info = json.loads(str(data["info"]))
            return cls(
                scenario=info["scenario"],
                window=int(info["window"]),
                delay=int(info["delay"]),
                y=data["y"],
                batch=data["batch"],
                speed=data["speed"],
                speed_id=data["speed_id"],
                meta=info.get("meta", {}),
            )


def attach_baselines(stream: PredictionStream, spec: FeatureSpec | None = None) -> PredictionStream:
    """Add ``stream.baselines``: persistence and the online linear model (warmed on the history) per row.

    Computed from the scenario's files (a second or two), so every cached stream gets them.
    """
    from hybridstream.evaluation.baselines import online_linear_forecasts, persistence_forecasts  # noqa: PLC0415

    spec = spec or FeatureSpec()
    train, test = load_scenario(SCENARIOS[stream.scenario], spec)
    test = test[: len(stream)]
    linear, _ = online_linear_forecasts(test, spec, warmup=train)
    stream.baselines = {"persistence": persistence_forecasts(test, spec), "online_linear": linear}
    return stream


def readings(stream: PredictionStream) -> tuple[np.ndarray, FeatureSpec]:
    """The stream's test readings and their spec: ``stream.matrix`` if set, else the scenario's test file
    with the product's default spec (calendar features included), else (a synthetic stream) the target alone."""
    if stream.matrix is None:
        if stream.scenario in SCENARIOS:
            from model_contract import default_spec  # noqa: PLC0415

            spec = default_spec()
            _, test = load_scenario(SCENARIOS[stream.scenario], spec)
            stream.matrix, stream.spec = test[: len(stream)], spec
        else:
            stream.matrix = stream.y.reshape(-1, 1).astype(np.float64)
            stream.spec = FeatureSpec(columns=("y",), target="y")
    return stream.matrix, stream.spec or FeatureSpec()


def drift_tag(on_drift: Mapping | None) -> str:
    """File-name tag of an early-retraining variant: '' (none) or '-drift-<key><value>...'.

    >>> drift_tag(None), drift_tag({"detector": "adwin", "delta": 2e-05})
    ('', '-drift-delta2e-05')
    """
    if on_drift is None:
        return ""
    extra = {k: v for k, v in on_drift.items() if not (k == "detector" and v == "adwin")}
    return "-drift-" + "-".join(f"{k}{v}" for k, v in sorted(extra.items()))


def cache_path(
    scenario: str, window: int, delay: int, cache_dir: str | Path = DEFAULT_CACHE, on_drift: Mapping | None = None
) -> Path:
    return Path(cache_dir) / f"{scenario}-w{window}-d{delay}{drift_tag(on_drift)}.npz"


def _batch_model(scenario: Scenario, train: np.ndarray, spec: FeatureSpec, cfg, cache_dir: Path, log):
    """The scenario's batch model (TFLite bytes, manifest), trained once and cached."""
    from training_job.model import train_matrix  # noqa: PLC0415  (TensorFlow)

    stem = cache_dir / f"batch-{scenario.train.removesuffix('.csv')}"
    model_path, manifest_path = stem.with_suffix(".tflite"), stem.with_suffix(".json")
    if model_path.exists() and manifest_path.exists():
        cached = Manifest.from_json(manifest_path.read_text())
        if cached.hyperparameters == cfg.to_dict():
            return model_path.read_bytes(), cached
        log(f"[{scenario.name}] the cached batch model has another training config: re-training it")
    log(f"[{scenario.name}] training the batch model on {scenario.train} ({len(train)} rows)...")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the TFLite converter prints to stdout
        trained = train_matrix(train, spec, cfg, name="batch", kind="batch", window={"file": scenario.train})
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(trained.tflite)
    manifest_path.write_text(trained.manifest.to_json())
    log(f"[{scenario.name}] batch model ready in {time.perf_counter() - started:.0f} s: {trained.manifest.metrics}")
    return trained.tflite, trained.manifest


def _default_combiner_config() -> dict:
    from edge_app.combiners import DEFAULT_DYNAMIC  # noqa: PLC0415

    return {"strategy": "dynamic"} | DEFAULT_DYNAMIC


def generate(
    scenario_name: str,
    window: int = 1000,
    delay: int = 0,
    cache_dir: str | Path = DEFAULT_CACHE,
    log: Callable[[str], None] = print,
    spec: FeatureSpec | None = None,
    limit: int | None = None,
    on_drift: Mapping | None = None,
    min_gap: int = 250,
) -> PredictionStream:
    """Run the scenario through the edge's models (trains ~len/W speed models: minutes).

    With ``on_drift`` (a detector config), the default combiner and that detector also run
    online on the hybrid residuals, and each alarm triggers an early speed model trained on
    the last ``window`` rows (at most one per ``min_gap`` rows): the edge's drift event.
    """
    from edge_app.combiners import make_combiner  # noqa: PLC0415
    from edge_app.drift import make_detector  # noqa: PLC0415
    from model_contract.runtime import TFLiteModel  # noqa: PLC0415
    from training_job.model import TrainConfig, train_matrix  # noqa: PLC0415

    if window < 50:
        raise ValueError("window must be at least 50 rows")
    if delay < 0:
        raise ValueError("delay must be >= 0")
    scenario = SCENARIOS[scenario_name]
    spec = spec or FeatureSpec()
    cfg = TrainConfig()
    cache_dir = Path(cache_dir)
    train, test = load_scenario(scenario, spec)
    if limit:
        test = test[:limit]
    content, manifest = _batch_model(scenario, train, spec, cfg, cache_dir, log)
    batch_model = TFLiteModel.from_manifest(content, manifest)

    n = len(test)
    y = test[:, spec.target_index].astype(np.float64)
    pb = np.full(n, np.nan)
    ps = np.full(n, np.nan)
    sid = np.full(n, -1, dtype=np.int32)
    buf = FeatureBuffer(spec)
    pending: list[tuple[int, int, TFLiteModel]] = []  # (available from row, id, model)
    speed_model: TFLiteModel | None = None
    speed_index = -1
    speed_info: list[dict] = []
    combiner = make_combiner({}, spec=spec) if on_drift is not None else None
    detector = make_detector(on_drift) if on_drift is not None else None
    last_train = 0
    alarms: list[int] = []
    started = time.perf_counter()
    for t in range(n):
        swapped = False
        while pending and pending[0][0] <= t:
            _, speed_index, speed_model = pending.pop(0)
            swapped = True
        alarm = False
        if buf.ready:
            b = batch_model.predict_one(buf.window)
            pb[t] = b
            ps[t] = s = speed_model.predict_one(buf.window) if speed_model is not None else b
            sid[t] = speed_index
            if combiner is not None:
                if swapped:
                    combiner.reset_speed()
                h = combiner.predict_one(b, s, buf.window)  # as the edge calls it (horizon 1: the truth is row t)
                combiner.learn_one(b, s, y[t], combiner.context())
                alarm = detector.update(h - y[t])
                if alarm:
                    alarms.append(t)
        buf.push_row(test[t])
        early = alarm and t + 1 >= window and t + 1 - last_train >= min_gap
        if (t + 1) % window == 0 or early:
            last_train = t + 1
            k = len(speed_info)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                trained = train_matrix(
                    test[t + 1 - window : t + 1],
                    spec,
                    cfg,
                    name="speed",
                    kind="speed",
                    window={"first": t + 1 - window},
                )
            secs = time.perf_counter() - t0
            speed_info.append(
                {"id": k, "first_row": t + 1 - window, "available_from": t + 1 + delay, "seconds": round(secs, 2)}
                | {"early": bool(early and (t + 1) % window != 0)}
                | trained.manifest.metrics
            )
            pending.append((t + 1 + delay, k, TFLiteModel.from_manifest(trained.tflite, trained.manifest)))
            log(
                f"[{scenario.name} W={window}] speed model {k + 1} ({'drift' if early else 'window'}, "
                f"row {t + 1}/{n}) trained in {secs:.1f} s "
                f"(holdout RMSE {trained.manifest.metrics['holdout_rmse']:.3f}); "
                f"elapsed {time.perf_counter() - started:.0f} s"
            )
    meta = {
        "train_file": scenario.train,
        "test_file": scenario.test,
        "description": scenario.description,
        "change_points": list(scenario.change_points),
        "batch_version": manifest.version,
        "batch_metrics": manifest.metrics,
        "train_config": cfg.to_dict(),
        "speed_models": speed_info,
        "on_drift": dict(on_drift) if on_drift is not None else None,
        "combiner": _default_combiner_config() if on_drift is not None else None,
        "drift_alarms": alarms,
        "seconds": round(time.perf_counter() - started, 1),
    }
    stream = PredictionStream(scenario_name, window, delay, y, pb, ps, sid, meta)
    if not limit:
        stream.save(cache_path(scenario_name, window, delay, cache_dir, on_drift))
    return stream


def get_stream(
    scenario: str,
    window: int = 1000,
    delay: int = 0,
    cache_dir: str | Path = DEFAULT_CACHE,
    log: Callable[[str], None] = print,
    refresh: bool = False,
    on_drift: Mapping | None = None,
) -> PredictionStream:
    """The cached stream, generating (and caching) it first if needed.

    A cached stream the models made with another training config than today's (e.g. from before a default
    changed) is generated again; a stream not made by :func:`generate` (no ``batch_version``) is used as it is.
    """
    from training_job.model import TrainConfig  # noqa: PLC0415

    path = cache_path(scenario, window, delay, cache_dir, on_drift)
    if path.exists() and not refresh:
        cached = PredictionStream.load(path)
        if "batch_version" not in cached.meta or cached.meta.get("train_config") == TrainConfig().to_dict():
            return cached
        log(f"[{scenario}] the cached stream's models have another training config: generating it again")
    return generate(scenario, window, delay, cache_dir, log, on_drift=on_drift)


def scenario_names(choice: str) -> list[str]:
    """``--scenario``: ``all`` is the main scenarios and ``step``; otherwise the one named."""
    return [*MAIN_SCENARIOS, "step"] if choice == "all" else [choice]


def load_streams(
    scenarios: list[str],
    windows: list[int],
    delay: int,
    cache_dir: Path,
    log: Callable[[str], None],
    refresh: bool = False,
    on_drift: Mapping | None = None,
) -> list[PredictionStream]:
    """Every (window, scenario) stream with its baselines; with ``on_drift`` also each one re-trained early on drift."""
    variants = [None] + ([on_drift] if on_drift else [])
    out = []
    for window in windows:
        for name in scenarios:
            for drift in variants:
                extra = " with early retraining on drift" if drift else ""
                log(f"stream {name} W={window} delay={delay}{extra} (cached in {cache_dir})")
                stream = get_stream(name, window, delay, cache_dir, log=log, refresh=refresh, on_drift=drift)
                out.append(attach_baselines(stream))
    return out
