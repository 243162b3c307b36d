"""Edge app configuration: a JSON (or TOML) file over documented defaults, validated at load.

>>> cfg = EdgeConfig.from_dict({"thing_name": "pi-7", "models": {"batch": "/m/b/model.tflite"}})
>>> cfg.topics.readings, cfg.group_id, cfg.combination["strategy"]
('sensor.readings', 'hybridstream-edge-pi-7', 'dynamic')
>>> EdgeConfig.from_dict({"thing_name": "x", "models": {"batch": "b.tflite"}, "windows": {"max_records": 0}})
Traceback (most recent call last):
...
edge_app.config.ConfigError: windows.max_records must be >= 1 (or null), got 0
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from model_contract.layout import SPEED_MODEL_TEMPLATE, speed_model_name
from model_contract.topics import KAFKA_TOPICS


class ConfigError(ValueError):
    """The configuration file is unusable; the message says which key and why."""


@dataclass(frozen=True)
class Topics:
    """Kafka topic names (keys of every output record are the device id); defaults:
    ``model_contract.topics.KAFKA_TOPICS``."""

    readings: str = KAFKA_TOPICS["readings"]
    predictions: str = KAFKA_TOPICS["predictions"]
    metrics: str = KAFKA_TOPICS["metrics"]
    deadletter: str = KAFKA_TOPICS["deadletter"]
    events: str = KAFKA_TOPICS["events"]  # drift, window-uploaded, model swapped/rejected
    notices: str = KAFKA_TOPICS["notices"]  # new speed model published (cloud -> edge)


@dataclass(frozen=True)
class Models:
    """Where the two models are: a path or file:// URL of model.tflite; manifest.json beside it by default."""

    batch: str = ""
    speed: str = ""  # empty: serve the batch model as the speed model until a notice arrives
    batch_manifest: str = ""
    speed_manifest: str = ""
    # the speed model's name or a template with {thing} (default speed-{thing}, the cloud's name):
    # model_contract.layout.speed_model_name fills in thing_name; notices for other names are ignored
    speed_name: str = SPEED_MODEL_TEMPLATE
    s3_endpoint_url: str = ""  # s3:// model fetches: endpoint override (else boto3's AWS_ENDPOINT_URL_S3 / AWS)
    s3_region: str = ""  # s3:// model fetches: region (else boto3's default chain)
    max_model_bytes: int = 64 * 1024 * 1024  # s3:// model fetches: larger objects are rejected
    num_threads: int = 1


@dataclass(frozen=True)
class Windows:
    """Grouping of recent readings for re-training, and where closed windows go."""

    max_records: int | None = 1000
    max_seconds: float | None = 600.0
    uploader: str = "local"  # local (folder) or s3 (+ a window notice over MQTT when mqtt is configured)
    local_root: str = "./edge-out"  # windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.csv under here
    bucket: str = ""  # s3: the windows bucket (required with uploader s3)
    s3_endpoint_url: str = ""  # s3: endpoint override (else boto3's AWS_ENDPOINT_URL_S3 / AWS)
    s3_region: str = ""  # s3: region (else boto3's default chain)
    # true: a drift alarm also closes the device's window (an early re-training request). Default false since
    # 2026-12-07 (issue 17, docs/combination.md): replayed, the early close cost the dynamic forecast 0.2-0.4 % MSE on
    # the turbine at H = 1 (its alarms are not where the target drifts) and changed nothing where no alarm fired
    early_on_drift: bool = False
    fsync: bool = False  # fsync the spool before each commit (survives power loss, slower)
    max_spool_mb: float | None = 512.0  # closed windows waiting for upload: beyond this the OLDEST are dropped
    forecasts: bool = True  # spool the forecasts made for each reading; upload them beside its window (forecasts/)
    # export the forecasts in a child process (edge_app.export_process), off the hot loop's GIL (BENCHMARKS.md,
    # issue 18); false: on the upload thread (the fallback the child also uses when it fails)
    forecasts_process: bool = True


@dataclass(frozen=True)
class Mqtt:
    """MQTT to IoT Core (or the local mosquitto): window notices out, model notices in, metrics out."""

    transport: str = ""  # "" (no MQTT), greengrass (IPC, inside a Greengrass component) or mtls
    endpoint: str = ""  # mtls: IoT Core ATS endpoint or 127.0.0.1
    port: int = 8883  # mtls: 8883 (443 needs ALPN)
    cert: str = ""  # mtls: device certificate (PEM file)
    key: str = ""  # mtls: its private key (PEM file)
    ca: str = ""  # mtls: CA bundle (empty: the system's)
    client_id: str = ""  # mtls: default thing_name (IoT Core's policy allows only that)
    flow_control: bool = True  # mtls: client-side IoT Core throttling (false for a local broker)
    model_notices: bool = True  # subscribe to hybridstream/models/<speed_name>/published
    metrics_interval_s: float | None = 60.0  # publish metrics to hybridstream/<thing>/metrics this often (null: never)
    publish_timeout_s: float = 10.0  # window notices: wait this long for the PUBACK, else retry the window


@dataclass(frozen=True)
class Forward:
    """``edge forward`` (mode=cloud): valid readings to ``hybridstream/<thing>/readings`` over MQTT."""

    interval_s: float = 1.0  # publish what was gathered at least this often
    max_bytes: int = 100 * 1024  # one MQTT message at most this big (IoT Core's limit is 128 KB)
    max_readings: int = 500  # ...and at most this many readings (context rows included)
    context: bool = True  # repeat a device's last max_lag-1 readings at the head of its next message
    feature_spec: dict[str, Any] = field(default_factory=dict)  # empty: the batch manifest's, else the default
    retry_max_s: float = 30.0  # MQTT down: retry with backoff from 0.5 s doubling up to this


@dataclass(frozen=True)
class Kafka:
    """Client tuning; ``consumer``/``producer`` are passed through to librdkafka as extra settings."""

    batch_size: int = 2000  # max records per consume() call
    poll_timeout_s: float = 0.05
    commit_interval_s: float = 1.0  # wait for acknowledgements and commit at least this often
    commit_min_interval_s: float = 0.2  # ...and not more often than this (each commit is a broker write)
    ensure_topics: bool = True  # create missing topics at start (1 partition)
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeConfig:
    """Everything ``edge run`` needs. See docs/edge.md for the reference with defaults."""

    thing_name: str = "edge-local"
    bootstrap: str = "127.0.0.1:9092"
    group_id: str = ""  # default: hybridstream-edge-<thing_name>
    topics: Topics = field(default_factory=Topics)
    models: Models = field(default_factory=Models)
    combination: dict[str, Any] = field(default_factory=lambda: {"strategy": "dynamic"})
    drift: dict[str, Any] = field(default_factory=lambda: {"detector": "adwin", "residual": "hybrid"})
    # forecast intervals + anomaly flags (edge_app.intervals.IntervalConfig's keys; null: off)
    intervals: dict[str, Any] | None = field(default_factory=dict)
    windows: Windows = field(default_factory=Windows)
    kafka: Kafka = field(default_factory=Kafka)
    mqtt: Mqtt = field(default_factory=Mqtt)
    forward: Forward = field(default_factory=Forward)
    state_dir: str = "./edge-state"  # window spool + the speed model currently serving
    metrics_interval_s: float = 10.0
    metrics_window: int = 500  # records in the sliding RMSE/MAE window
    metrics_per_device: bool = True
    devices: tuple[str, ...] | None = None  # allowlist; None accepts every device
    max_devices: int = 10000  # without an allowlist, more distinct device ids than this are dead-lettered
    default_device: str = ""  # used when a reading has no device field (empty: such readings are bad)
    min_timestamp: str = "2000-01-01T00:00:00+00:00"  # earlier readings are dead-lettered as bad_timestamp
    max_ahead_s: float = 86400.0  # readings later than now + this are dead-lettered as future_timestamp
    out_of_range_k: float | None = 50.0  # values beyond the batch scaler's mean +- k*scale: out_of_range (null: off)
    max_gap_s: float | None = None  # a gap longer than this between a device's readings restarts its lag window
    log_interval_s: float = 30.0
    log_slow_turn_ms: float = 50.0  # warn when one loop turn (commit + process) takes longer
    process: str = "batch"  # each polled batch stage by stage ("batch") or record by record ("record": the reference)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, require_batch_model: bool = True) -> EdgeConfig:
        """``require_batch_model=False``: ``edge forward`` (which runs no model) loads without one."""
        sections = {
            "topics": Topics,
            "models": Models,
            "windows": Windows,
            "kafka": Kafka,
            "mqtt": Mqtt,
            "forward": Forward,
        }
        kwargs = _known(cls, data, "")
        for name, klass in sections.items():
            if name in kwargs:
                if not isinstance(kwargs[name], Mapping):
                    raise ConfigError(f"{name} must be an object")
                kwargs[name] = klass(**_known(klass, kwargs[name], name + "."))
        if kwargs.get("devices") is not None:
            kwargs["devices"] = tuple(str(d) for d in kwargs["devices"])
        cfg = cls(**kwargs)
        if not cfg.group_id:
            object.__setattr__(cfg, "group_id", f"hybridstream-edge-{cfg.thing_name}")
        cfg.validate(require_batch_model=require_batch_model)
        try:
            name = speed_model_name(cfg.thing_name, cfg.models.speed_name or SPEED_MODEL_TEMPLATE)
        except ValueError as exc:
            raise ConfigError(f"models.speed_name: {exc}") from None
        object.__setattr__(cfg.models, "speed_name", name)
        return cfg

    def validate(self, *, require_batch_model: bool = True) -> None:
        """Raise :class:`ConfigError` on the first unusable value."""
        if not self.thing_name or "/" in self.thing_name:
            raise ConfigError(f"thing_name must be non-empty without '/', got {self.thing_name!r}")
        if not self.bootstrap:
            raise ConfigError("bootstrap must be host:port[,host:port]")
        for f in fields(Topics):
            if not getattr(self.topics, f.name):
                raise ConfigError(f"topics.{f.name} must be a non-empty topic name")
        if len({getattr(self.topics, f.name) for f in fields(Topics)}) != len(fields(Topics)):
            raise ConfigError("topics must all be different")
        w = self.windows
        for key in ("max_records", "max_seconds"):
            value = getattr(w, key)
            if value is not None and (not isinstance(value, int | float) or value < 1):
                raise ConfigError(f"windows.{key} must be >= 1 (or null), got {value!r}")
        if w.max_records is None and w.max_seconds is None:
            raise ConfigError("windows needs max_records and/or max_seconds")
        for key in ("forecasts", "forecasts_process"):
            if not isinstance(getattr(w, key), bool):
                raise ConfigError(f"windows.{key} must be true or false, got {getattr(w, key)!r}")
        if w.max_spool_mb is not None and (not isinstance(w.max_spool_mb, int | float) or w.max_spool_mb <= 0):
            raise ConfigError(f"windows.max_spool_mb must be > 0 (or null: unbounded), got {w.max_spool_mb!r}")
        if w.uploader not in UPLOADERS:
            raise ConfigError(f"windows.uploader {w.uploader!r} unknown (one of {', '.join(UPLOADERS)})")
        if w.uploader == "s3" and not w.bucket:
            raise ConfigError("windows.bucket is required with windows.uploader s3")
        self._validate_mqtt()
        if self.process not in PROCESS_PATHS:
            raise ConfigError(f"process must be {' or '.join(PROCESS_PATHS)}, got {self.process!r}")
        if self.kafka.batch_size < 1 or self.kafka.poll_timeout_s <= 0:
            raise ConfigError("kafka.batch_size must be >= 1 and kafka.poll_timeout_s > 0")
        if self.metrics_interval_s <= 0 or self.metrics_window < 1:
            raise ConfigError("metrics_interval_s must be > 0 and metrics_window >= 1")
        if self.drift.get("residual", "hybrid") not in ("batch", "speed", "hybrid"):
            raise ConfigError("drift.residual must be batch, speed or hybrid")
        try:
            self.min_epoch  # noqa: B018 (validates)
        except (ValueError, OverflowError, TypeError):
            raise ConfigError(f"min_timestamp must be an ISO-8601 time, got {self.min_timestamp!r}") from None
        if not isinstance(self.max_ahead_s, int | float) or not self.max_ahead_s >= 0:
            raise ConfigError(f"max_ahead_s must be >= 0, got {self.max_ahead_s!r}")
        if self.out_of_range_k is not None and not (
            isinstance(self.out_of_range_k, int | float) and self.out_of_range_k > 0
        ):
            raise ConfigError(f"out_of_range_k must be > 0 (or null), got {self.out_of_range_k!r}")
        if self.max_gap_s is not None and not (isinstance(self.max_gap_s, int | float) and self.max_gap_s > 0):
            raise ConfigError(f"max_gap_s must be > 0 (or null), got {self.max_gap_s!r}")
        if not isinstance(self.max_devices, int) or self.max_devices < 1:
            raise ConfigError(f"max_devices must be >= 1, got {self.max_devices!r}")
        if self.models.num_threads < 1:
            raise ConfigError("models.num_threads must be >= 1")
        self._validate_forward()
        if require_batch_model and not self.models.batch:
            raise ConfigError("models.batch must be the path (or file:// URL) of the batch model.tflite")
        # the two owners' factories validate their own keys: fail at load, not at the first record
        from edge_app.combiners import make_combiner
        from edge_app.drift import make_detector

        try:
            make_combiner(self.combination)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"combination: {exc}") from None
        try:
            make_detector(self.detector_config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"drift: {exc}") from None
        try:
            self.interval_config  # noqa: B018 (validates)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"intervals: {exc}") from None

    def _validate_mqtt(self) -> None:
        m = self.mqtt
        if m.transport not in MQTT_TRANSPORTS:
            raise ConfigError(f"mqtt.transport {m.transport!r} unknown (empty, greengrass or mtls)")
        if m.transport == "mtls":
            missing = [k for k in ("endpoint", "cert", "key") if not getattr(m, k)]
            if missing:
                raise ConfigError(f"mqtt.transport mtls needs mqtt.{', mqtt.'.join(missing)}")
            if not isinstance(m.port, int) or not 0 < m.port < 65536:
                raise ConfigError(f"mqtt.port must be a TCP port, got {m.port!r}")
        if m.metrics_interval_s is not None and not (
            isinstance(m.metrics_interval_s, int | float) and m.metrics_interval_s >= 1
        ):
            raise ConfigError(f"mqtt.metrics_interval_s must be >= 1 (or null), got {m.metrics_interval_s!r}")
        if not isinstance(m.publish_timeout_s, int | float) or m.publish_timeout_s <= 0:
            raise ConfigError(f"mqtt.publish_timeout_s must be > 0, got {m.publish_timeout_s!r}")

    def _validate_forward(self) -> None:
        f = self.forward
        if not isinstance(f.interval_s, int | float) or not f.interval_s > 0:
            raise ConfigError(f"forward.interval_s must be > 0, got {f.interval_s!r}")
        if not isinstance(f.max_bytes, int) or not 1024 <= f.max_bytes <= MAX_FORWARD_BYTES:
            raise ConfigError(f"forward.max_bytes must be 1024..{MAX_FORWARD_BYTES}, got {f.max_bytes!r}")
        if not isinstance(f.max_readings, int) or f.max_readings < 1:
            raise ConfigError(f"forward.max_readings must be >= 1, got {f.max_readings!r}")
        if not isinstance(f.retry_max_s, int | float) or not f.retry_max_s >= 0.5:
            raise ConfigError(f"forward.retry_max_s must be >= 0.5, got {f.retry_max_s!r}")
        if f.feature_spec:
            from model_contract import FeatureSpec

            try:
                FeatureSpec.from_dict(f.feature_spec)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"forward.feature_spec: {type(exc).__name__}: {exc}") from None

    @property
    def interval_config(self) -> Any:
        """The ``intervals`` section as an :class:`edge_app.intervals.IntervalConfig` (None: off)."""
        from edge_app.intervals import IntervalConfig

        return IntervalConfig.from_dict(self.intervals)

    @property
    def detector_config(self) -> dict[str, Any]:
        """The drift config without the edge app's own keys (what ``make_detector`` gets)."""
        return {k: v for k, v in self.drift.items() if k != "residual"}

    @property
    def min_epoch(self) -> float:
        """``min_timestamp`` as epoch seconds (naive = UTC)."""
        from datetime import UTC, datetime

        dt = datetime.fromisoformat(self.min_timestamp)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()

    @property
    def drift_residual(self) -> str:
        return str(self.drift.get("residual", "hybrid"))


UPLOADERS = ("local", "s3")
PROCESS_PATHS = ("batch", "record")  # edge_app.batch_path, edge_app.record_path
MQTT_TRANSPORTS = ("", "greengrass", "mtls")
# IoT Core's 128 KB minus room for what the rules add (thing, mqtt_topic) and the envelope
MAX_FORWARD_BYTES = 120 * 1024


def _known(klass: type, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    names = {f.name for f in fields(klass)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}")
    return dict(data)


def load_config(
    path: str | Path, overrides: Mapping[str, Any] | None = None, *, require_batch_model: bool = True
) -> EdgeConfig:
    """Read a ``.json`` or ``.toml`` file; ``overrides`` (top-level keys) win over the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be an object")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return EdgeConfig.from_dict(data, require_batch_model=require_batch_model)
