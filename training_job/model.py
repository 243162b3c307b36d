"""The LSTM regressor: build, train (early stopping, fixed seeds), export to builtin-op TFLite.

TensorFlow is imported here and only here (never by the edge app). The network is the
prototype's LSTM(40) -> Dense(10, relu) -> Dense(1); everything is configurable via
:class:`TrainConfig`. With ``residual=True`` (the default) the network learns the *change*
from the newest reading of the target: its output is ``x[newest, target] + f(x)`` (in the
scaled units the target shares with its input column), with ``f`` starting at 0, so an
untrained model is the persistence forecast. The addition is inside the exported TFLite
graph, so the model still outputs the level and every consumer (edge, guardrail, eval)
serves it unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from model_contract import FeatureSpec, Manifest, Scaler, build_supervised, content_version, context_stack, sha256_bytes
from model_contract.conformal import WARM_KEY as INTERVAL_WARM_KEY
from model_contract.conformal import warm_start as interval_warm_start
from model_contract.runtime import TFLiteModel
from training_job import ol_residual

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")

log = logging.getLogger(__name__)

Cancel = Callable[[], bool]  # returns True when training should stop (e.g. SIGTERM)


class TrainingCancelled(RuntimeError):
    """Training stopped early because ``cancel()`` returned True; nothing was produced."""


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what TensorFlow's C++ side prints on fds 1 and 2 (the converter is chatty).

    The output goes to a temporary file whose tail is logged at DEBUG, or attached to the
    exception if the block fails.
    """
    import sys  # noqa: PLC0415

    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException as exc:
            failed = True
            sink.seek(0)
            tail = sink.read()[-2000:].decode(errors="replace")
            if tail.strip():
                exc.add_note(f"native output:\n{tail}")
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not failed and log.isEnabledFor(logging.DEBUG):
                sink.seek(0)
                log.debug("native output: %s", sink.read()[-2000:].decode(errors="replace"))


# options added after the first models were named, with the value all those models had: left out of
# ``TrainConfig.to_dict`` at that value (never compare with the dataclass default, which may change)
_LEGACY_VALUES = {"instance_norm": False, "shrink": False, "members": 1, "ol_residual": False}
# the defaults issue 17 changed, at their old values: the studies' variants are changes from this config, so their
# labels ("base", "inorm", ...) and the figures docs/combination.md gives for them keep their meaning
BEFORE_ISSUE_17: dict = {"instance_norm": False, "shrink": False}


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and hyperparameters (recorded in the manifest)."""

    lstm_units: int = 40
    dense_units: int = 10
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    loss: str = "mae"
    patience: int = 5
    holdout_fraction: float = 0.2
    seed: int = 42
    scale: bool = True
    residual: bool = True
    linear_skip: bool = False
    # RevIN-style instance normalisation: every lag step's value columns minus the newest step's (the network sees
    # the window relative to its newest reading; with ``residual`` the output is de-normalised by adding it back).
    # On by default since issue 17 (docs/combination.md: both LSTMs beat persistence on more channels and streams)
    instance_norm: bool = True
    # shrink the learned change towards persistence by the factor in [0, 1] that fits the holdout best (least
    # squares on the holdout's changes; the last layer's weights scaled: no new op). Residual models only.
    # On by default since issue 17, with ``instance_norm``
    shrink: bool = True
    # a seed ensemble: ``members`` networks trained one after the other (seeds ``seed``, ``seed + 1``, ...; each with
    # its own early stopping), then joined in ONE graph whose changes (forecasts) are averaged: one invoke on the edge
    members: int = 1
    # the change learns what the online linear model misses (training_job.ol_residual): targets newest value +
    # (y - the online linear forecast); the graph and the edge unchanged. Residual models only.
    ol_residual: bool = False

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members must be >= 1, not {self.members}")
        if self.ol_residual and not self.residual:
            raise ValueError("ol_residual needs residual=True (the correction is the model's change)")

    def to_dict(self) -> dict:
        """The recorded config (it names the model version: ``model_version``).

        An option added later is left out while it has the value every model had before it existed
        (``_LEGACY_VALUES``, not today's default): an old config keeps its name, and a config at today's
        defaults (``instance_norm`` and ``shrink`` on) records them, so it never shares a name with an old model.
        """
        out = asdict(self)
        for key, legacy in _LEGACY_VALUES.items():
            if out[key] == legacy:
                del out[key]
        return out

    def replace(self, **changes) -> TrainConfig:
        from dataclasses import replace  # noqa: PLC0415

        return replace(self, **changes)


_JSON_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def parse_config_changes(text: str, option: str = "--train-config") -> dict:
    """``TrainConfig`` changes from a JSON object (a CLI option), checked: known fields, each of its field's type.

    Raises ``ValueError`` naming ``option`` and what is wrong (not JSON, not an object, an unknown field, a value of
    the wrong type, or a config ``TrainConfig`` refuses), so a typo never silently trains the default.
    """
    from dataclasses import fields  # noqa: PLC0415

    at = f"{option}: " if option else ""
    try:
        changes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{at}not JSON ({exc})") from None
    if not isinstance(changes, dict):
        raise ValueError(f'{at}a JSON object of TrainConfig fields, e.g. {{"instance_norm": false}}')
    known = {f.name: type(f.default) for f in fields(TrainConfig)}
    for key, value in changes.items():
        if key not in known:
            raise ValueError(f"{at}unknown field {key!r} (TrainConfig has {', '.join(sorted(known))})")
        want = known[key]
        accepted = (int, float) if want is float else (want,)  # JSON 1 for 1.0; never true for 1
        if isinstance(value, bool) != (want is bool) or not isinstance(value, accepted):
            raise ValueError(f"{at}{key} must be {_JSON_TYPES[want]}, not {json.dumps(value)}")
    try:
        TrainConfig().replace(**changes)
    except ValueError as exc:
        raise ValueError(f"{at}{exc}") from None
    return changes


@dataclass
class TrainedModel:
    """A converted model with its manifest and the holdout used to check it."""

    tflite: bytes
    manifest: Manifest
    X_holdout: np.ndarray = field(repr=False)
    y_holdout: np.ndarray = field(repr=False)
    weights: list | None = field(default=None, repr=False)  # the Keras weights (warm starts)


def _keras():
    import sys  # noqa: PLC0415

    if "keras" not in sys.modules:
        with quiet_native_output():  # TensorFlow's import prints oneDNN/absl notices
            import keras  # noqa: PLC0415, F401  (heavy; only the trainer pays for it)
            import tensorflow  # noqa: PLC0415, F401
    return sys.modules["keras"]


THREAD_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def limit_threads(intra_op: int, inter_op: int = 1) -> None:
    """Bound this process's TensorFlow thread pools (a pool of N trainings on one machine).

    Call before TensorFlow runs anything: the environment covers the OpenMP/oneDNN pools read
    at import, ``tf.config.threading`` the op pools (it raises once the runtime is initialised).
    """
    for name in THREAD_ENV:
        os.environ[name] = str(intra_op)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
    _keras()
    import tensorflow as tf  # noqa: PLC0415

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def build_model(
    input_shape: tuple[int, int],
    cfg: TrainConfig,
    unroll: bool = False,
    target_index: int = -1,
    value_columns: int | None = None,
):
    """The Keras model; ``unroll=True`` gives the twin that converts to builtin ops only.

    ``cfg.residual``: output = newest input value of column ``target_index`` + the network's
    output (whose last layer starts at zero: the untrained model is persistence).
    ``cfg.instance_norm``: the LSTM sees each lag step's first ``value_columns`` columns (default all; the
    calendar features after them are left alone) minus the newest step's: a slice, a multiply and a
    subtract, builtin TFLite ops.
    """
    keras = _keras()
    inputs = keras.Input(shape=input_shape, name="lags")
    seen = inputs
    if cfg.instance_norm:
        cols = input_shape[1] if value_columns is None else int(value_columns)
        mask = np.zeros((1, 1, input_shape[1]), dtype=np.float32)
        mask[..., :cols] = 1.0
        seen = keras.layers.Lambda(
            lambda t: t - t[:, -1:, :] * mask, output_shape=tuple(input_shape), name="instance_norm"
        )(inputs)
    members = [_member(keras, inputs, seen, cfg, unroll, member_suffix(i, cfg)) for i in range(cfg.members)]
    if not cfg.residual:
        outputs = members[0] if len(members) == 1 else keras.layers.Average(name="forecast")(members)
        return keras.Model(inputs, outputs, name="hybridstream_lstm")
    ti = target_index % input_shape[1]
    change = members[0] if len(members) == 1 else keras.layers.Average(name="mean_change")(members)
    last = keras.layers.Lambda(lambda t: t[:, -1, ti : ti + 1], output_shape=(1,), name="newest_target")(inputs)
    outputs = keras.layers.Add(name="forecast")([last, change])
    return keras.Model(inputs, outputs, name="hybridstream_lstm_residual")


def member_suffix(index: int, cfg: TrainConfig) -> str:
    """The layer-name suffix of ensemble member ``index`` ('' for a single model: its layer names stay as before)."""
    return "" if cfg.members == 1 else f"_m{index}"


def _member(keras, inputs, seen, cfg: TrainConfig, unroll: bool, suffix: str):
    """One network: LSTM -> Dense(relu) -> its change (residual) or forecast, layer names ending in ``suffix``."""
    x = keras.layers.LSTM(cfg.lstm_units, unroll=unroll, name=f"lstm{suffix}")(seen)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", name=f"dense{suffix}")(x)
    if not cfg.residual:
        return keras.layers.Dense(1, name=f"forecast{suffix}")(x)
    change = keras.layers.Dense(1, kernel_initializer="zeros", name=f"change{suffix}")(x)
    if cfg.linear_skip:  # a linear term on every lag and column: the model contains the linear forecaster
        flat = keras.layers.Flatten(name=f"flat_lags{suffix}")(inputs)
        linear = keras.layers.Dense(1, kernel_initializer="zeros", name=f"linear_change{suffix}")(flat)
        change = keras.layers.Add(name=f"total_change{suffix}")([change, linear])
    return change


def join_members(models: list, input_shape: tuple[int, int], cfg: TrainConfig, target_index: int, value_columns):
    """One Keras graph holding the trained single networks ``models`` as members, their outputs averaged."""
    ensemble = build_model(input_shape, cfg, target_index=target_index, value_columns=value_columns)
    for i, single in enumerate(models):
        for layer in single.layers:
            if layer.get_weights():
                ensemble.get_layer(layer.name + member_suffix(i, cfg)).set_weights(layer.get_weights())
    return ensemble


def holdout_size(n_samples: int, fraction: float) -> int:
    """How many of ``n_samples`` (the newest) form the holdout; at least one must remain for training."""
    n_hold = max(1, int(round(n_samples * fraction)))
    if n_samples - n_hold < 1:
        raise ValueError(f"too few samples ({n_samples}) for a holdout of {fraction:.0%}")
    return n_hold


def split_holdout(X: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Chronological split: the newest ``fraction`` of samples is the holdout."""
    n_hold = holdout_size(len(X), fraction)
    return X[:-n_hold], y[:-n_hold], X[-n_hold:], y[-n_hold:]


def training_rows(n_rows: int, spec: FeatureSpec, fraction: float) -> int:
    """How many of a window's oldest rows the training samples use (as lags or as targets).

    Sample ``i`` of :func:`~model_contract.build_supervised` reads rows ``i .. i + max_lag - 1``
    (its target is row ``i + max_lag + horizon - 1``), so the first ``n_train`` samples touch
    exactly the first ``n_train + max_lag + horizon - 1`` rows; the holdout's targets are all
    the rows after those.
    The scaler is fitted on these rows only, so no holdout statistics leak into training,
    early stopping, the holdout metrics or the guardrail.

    >>> training_rows(150, FeatureSpec(), 0.2)  # 148 samples, 30 held out, 118 train -> rows 0..119
    120
    """
    n_samples = n_rows - spec.max_lag - spec.horizon + 1
    if n_samples < 2:
        raise ValueError(f"too few rows ({n_rows}) for lags {spec.lags} and horizon {spec.horizon}")
    return n_samples - holdout_size(n_samples, fraction) + spec.max_lag + spec.horizon - 1


def _progress_callback(keras, cfg: TrainConfig, cancel: Cancel | None, every_seconds: float = 10.0):
    """Logs progress at most every ``every_seconds`` (long runs) and stops training when ``cancel()``."""

    class Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.last = time.monotonic()
            self.cancelled = False

        def on_train_batch_end(self, batch, logs=None):
            if cancel is not None and cancel():
                self.cancelled = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            if now - self.last >= every_seconds:
                self.last = now
                logs = logs or {}
                log.info(
                    "training: epoch %d/%d, loss %.4f, holdout loss %.4f",
                    epoch + 1,
                    cfg.epochs,
                    logs.get("loss", float("nan")),
                    logs.get("val_loss", float("nan")),
                )

    return Progress()


def fit(
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    X_val: np.ndarray,
    y_val: np.ndarray,
    cancel: Cancel | None = None,
    target_index: int = -1,
    init_weights: list | None = None,
    value_columns: int | None = None,
):
    """Train with early stopping on the holdout; deterministic for a given seed and data.

    ``init_weights`` (a same-shaped model's ``get_weights()``) warm-starts the training. With ``cfg.members`` > 1
    each member is trained alone (seed ``cfg.seed + i``) and the members are joined (:func:`join_members`); the
    result's ``epochs_run`` lists each member's epochs.
    """
    if cfg.members > 1:
        single = cfg.replace(members=1)
        starts = _member_weights(init_weights, X.shape[1:], cfg, target_index, value_columns)
        models = [
            fit(X, y, single.replace(seed=cfg.seed + i), X_val, y_val, cancel, target_index, starts[i], value_columns)
            for i in range(cfg.members)
        ]
        ensemble = join_members(models, X.shape[1:], cfg, target_index, value_columns)
        ensemble.epochs_run = [_epochs_run(m) for m in models]
        return ensemble
    keras = _keras()
    import tensorflow as tf  # noqa: PLC0415

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(X.shape[1:], cfg, target_index=target_index, value_columns=value_columns)
    if init_weights is not None:
        model.set_weights(init_weights)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=cfg.loss)
    stop = keras.callbacks.EarlyStopping(patience=cfg.patience, restore_best_weights=True)
    progress = _progress_callback(keras, cfg, cancel)
    model.fit(
        X,
        y,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        validation_data=(X_val, y_val),
        callbacks=[stop, progress],
        verbose=0,
        shuffle=True,
    )
    if progress.cancelled:
        raise TrainingCancelled("training cancelled")
    return model


def _epochs_run(model) -> int | None:
    history = getattr(model, "history", None)
    return len(history.epoch) if history is not None and hasattr(history, "epoch") else None


def _member_weights(init_weights, input_shape, cfg: TrainConfig, target_index: int, value_columns) -> list:
    """Each member's share of an ensemble's weights (``[None] * members`` without a warm start)."""
    if init_weights is None:
        return [None] * cfg.members
    ensemble = build_model(input_shape, cfg, target_index=target_index, value_columns=value_columns)
    ensemble.set_weights(init_weights)
    out, one = [], cfg.replace(members=1)
    for i in range(cfg.members):
        single = build_model(input_shape, one, target_index=target_index, value_columns=value_columns)
        for layer in single.layers:
            if layer.get_weights():
                layer.set_weights(ensemble.get_layer(layer.name + member_suffix(i, cfg)).get_weights())
        out.append(single.get_weights())
    return out


def shrink_to_holdout(model, X_ho: np.ndarray, y_ho: np.ndarray, target_index: int) -> float:
    """Scale a residual model's learned change by ``a`` in [0, 1], the least-squares fit of the holdout's changes
    (``a`` = 0: persistence); the change layers' kernels and biases are multiplied by ``a``. Returns ``a``."""
    if not len(X_ho):
        return 1.0
    last = X_ho[:, -1, target_index].astype(np.float64)
    change = np.asarray(model(X_ho, training=False), dtype=np.float64).reshape(-1) - last
    want = y_ho.astype(np.float64).reshape(-1) - last
    den = float(change @ change)
    a = float(np.clip((change @ want) / den, 0.0, 1.0)) if den > 0 else 1.0
    for layer in model.layers:
        if layer.name.split("_m")[0] in ("change", "linear_change") and layer.get_weights():
            layer.set_weights([w * np.float32(a) for w in layer.get_weights()])
    return a


def export_tflite(
    model, input_shape: tuple[int, int], cfg: TrainConfig, target_index: int = -1, value_columns: int | None = None
) -> bytes:
    """Convert to float32 TFLite with builtin ops only (via the unrolled twin)."""
    import tensorflow as tf  # noqa: PLC0415

    twin = build_model(input_shape, cfg, unroll=True, target_index=target_index, value_columns=value_columns)
    twin.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(twin)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with quiet_native_output():
        return converter.convert()


def parity_max_abs_diff(tflite: bytes, model, X: np.ndarray, scaler: Scaler) -> float:
    """Max |Keras - TFLite| on X (scaled outputs), with the lightweight runtime the edge uses."""
    keras_out = np.asarray(model(X, training=False)).reshape(-1)
    with quiet_native_output():  # the runtime announces its XNNPACK delegate on stderr
        lite = TFLiteModel(tflite, scaler, X.shape[1:])
    return float(np.max(np.abs(lite.predict_scaled(X) - keras_out))) if len(X) else 0.0


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    out = {}
    for name in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "ai-edge-litert", "tflite-runtime"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


# Bumped whenever train_matrix makes a different model from the same inputs (2: the scaler is
# fitted on the training rows only; 3: batch manifests carry the combiner warm start; 4: batch
# models are published with their Keras weights, weights.npz, which speed models fine-tune from:
# a batch version published before has none, and re-publishing it would be a no-op), so a
# version never names two different models.
TRAINER_REVISION = 4


def model_version(
    matrix: np.ndarray,
    spec: FeatureSpec,
    cfg: TrainConfig,
    kind: str,
    init_weights: list | None = None,
    scaler: Scaler | None = None,
) -> str:
    """The content-derived version of the model :func:`train_matrix` makes from these inputs.

    A warm start (``init_weights``, with the ``scaler`` it came with) is part of the inputs.
    """
    parts = [matrix.astype(np.float64).tobytes(), str(spec.to_dict()), str(cfg.to_dict()), kind]
    if TRAINER_REVISION > 1:
        parts.append(f"trainer-revision-{TRAINER_REVISION}")
    if init_weights is not None:
        parts += ["warm-start", *(np.asarray(w, dtype=np.float32).tobytes() for w in init_weights)]
        parts.append(str(scaler.to_dict()) if scaler is not None else "")
    return content_version(*parts)


def train_matrix(
    matrix: np.ndarray,
    spec: FeatureSpec,
    cfg: TrainConfig,
    *,
    name: str,
    kind: str,
    window: dict | None = None,
    created_at: str = "",
    cancel: Cancel | None = None,
    init_weights: list | None = None,
    scaler: Scaler | None = None,
) -> TrainedModel:
    """Train, convert and parity-check a model on a validated (rows, features) matrix (columns, then calendar).

    ``cancel`` (optional) is polled between batches; when it returns True,
    :class:`TrainingCancelled` is raised. ``init_weights`` warm-starts from another model of
    the same spec and config (e.g. the batch model's, see :attr:`TrainedModel.weights`);
    ``scaler`` (e.g. that model's) replaces the one fitted on the window, so the warm start's
    weights see inputs in the units they were trained in.
    """
    started = time.perf_counter()
    # chronological split first: the scaler sees the training rows only (never the holdout's targets)
    n_fit = training_rows(matrix.shape[0], spec, cfg.holdout_fraction)
    if scaler is None:
        scaler = (
            Scaler.fit(matrix[:n_fit], spec.target_index)
            if cfg.scale
            else Scaler.identity(len(spec.features), spec.target_index)
        )
    X, y = build_supervised(matrix, spec, scaler)
    if cfg.ol_residual:
        y = ol_residual.targets(matrix, spec, scaler, X, y)
    X_tr, y_tr, X_ho, y_ho = split_holdout(X, y, cfg.holdout_fraction)
    if cfg.ol_residual:
        burn = ol_residual.burn_in_samples(spec, len(X_tr))
        X_tr, y_tr = X_tr[burn:], y_tr[burn:]
    log.info("training: %d samples (%d holdout), up to %d epochs", len(X), len(X_ho), cfg.epochs)
    ncol = len(spec.columns)
    model = fit(
        X_tr,
        y_tr,
        cfg,
        X_ho,
        y_ho,
        cancel=cancel,
        target_index=spec.target_index,
        init_weights=init_weights,
        value_columns=ncol,
    )
    shrunk = shrink_to_holdout(model, X_ho, y_ho, spec.target_index) if cfg.shrink and cfg.residual else None
    fit_seconds = time.perf_counter() - started
    epochs_run = getattr(model, "epochs_run", None) or _epochs_run(model)
    tflite = export_tflite(model, spec.input_shape, cfg, spec.target_index, ncol)
    parity = parity_max_abs_diff(tflite, model, X_ho, scaler)
    convert_seconds = time.perf_counter() - started - fit_seconds
    log.info("trained in %.1fs, converted + parity-checked in %.1fs", fit_seconds, convert_seconds)
    lite = TFLiteModel(tflite, scaler, spec.input_shape)
    pred = np.asarray(scaler.inverse_target(lite.predict_scaled(X_ho)), dtype=np.float64)
    truth = np.asarray(scaler.inverse_target(y_ho), dtype=np.float64)
    err = pred - truth
    rmse, mae = float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))
    metrics = {"rmse": rmse, "mae": mae, "holdout_rmse": rmse, "holdout_mae": mae, "holdout_rows": int(len(err))}
    version = model_version(matrix, spec, cfg, kind, init_weights, scaler if init_weights is not None else None)
    manifest = Manifest(
        name=name,
        version=version,
        sha256=sha256_bytes(tflite),
        feature_spec=spec,
        scaler=scaler,
        input_shape=spec.input_shape,
        kind=kind,
        created_at=created_at,
        window=dict(window or {}),
        metrics=metrics,
        parity_max_abs_diff=parity,
        training_seconds=round(time.perf_counter() - started, 3),
        packages=package_versions(),
        hyperparameters=cfg.to_dict(),
        extra={"epochs_run": epochs_run}
        | ({"warm_start": True} if init_weights is not None else {})
        | ({"shrink": shrunk} if shrunk is not None else {}),
    )
    if kind == "batch":  # every new device's combiner starts from the context stack's state on this history
        t0 = time.perf_counter()
        residuals: list[float] = []
        manifest.extra[context_stack.WARM_KEY] = warm = context_stack.warm_start(matrix, spec, residuals=residuals)
        log.info("combiner warm start: %d history rows in %.1fs", warm["rows"], time.perf_counter() - t0)
        # and every new device's forecast intervals, from the stack's own online errors on that history
        manifest.extra[INTERVAL_WARM_KEY] = interval_warm_start(residuals, spec.horizon)
    return TrainedModel(tflite=tflite, manifest=manifest, X_holdout=X_ho, y_holdout=y_ho, weights=model.get_weights())
