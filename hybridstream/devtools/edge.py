"""The edge test kit: what the tests, the chaos scenarios, the demo and the benchmarks need to run
the edge app against a real broker, spelled once.

- rows and readings: :func:`read_rows`, :func:`reading_json`;
- tiny real models: :func:`train_model`, :func:`save_model`, :func:`notice_for`, :func:`expected_forecasts`,
  :func:`absurd_manifest` (a model that passes every check before it serves, then forecasts absurd values);
- configs: :func:`topics` (per-run Kafka topic names), :func:`edge_config`, :func:`merge_config`, :func:`write_config`;
- Kafka: :func:`create_topics`, :func:`produce`, :func:`collect` (a topic's first records),
  :class:`Collector` (a topic's records while a run lasts); waiting: :func:`wait_for`;
- MQTT: :func:`mqtt_client` (an mTLS client of the local mosquitto);
- the edge app as a process: :func:`edge_argv`, :func:`spawn_edge`, :class:`EdgeProcess`.

Heavy imports (TensorFlow through ``training_job``, the Kafka client, the MQTT client) happen
inside the functions that need them. The edge app never imports this module and it does not ship
to the device.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from model_contract import FeatureSpec, Manifest, rows_to_matrix
from model_contract.topics import KAFKA_TOPICS

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("hybridstream.devtools.edge")


# ---- rows and tiny real models ------------------------------------------------------------------
def read_rows(path: str | Path, start: int = 0, count: int | None = None) -> list[dict[str, str]]:
    """Rows ``start .. start+count`` of a CSV as dicts (strings, as csv gives them)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[start : None if count is None else start + count]


def train_model(
    rows: list[dict[str, Any]],
    out_root: Path,
    *,
    name: str,
    kind: str,
    spec: FeatureSpec | None = None,
    seed: int = 42,
    units: int = 8,
    dense: int = 4,
    epochs: int = 3,
) -> Path:
    """Train a small real LSTM on ``rows``, write ``<out_root>/<name>/<version>/model.tflite`` + manifest."""
    from training_job.model import train_matrix

    spec = spec or FeatureSpec()
    matrix = rows_to_matrix(rows, spec)
    cfg = tiny_config(seed, units, dense, epochs)
    trained = train_matrix(matrix, spec, cfg, name=name, kind=kind)
    return save_model(trained.tflite, trained.manifest, out_root)


def tiny_config(seed: int = 42, units: int = 8, dense: int = 4, epochs: int = 3):
    """The small ``TrainConfig`` of :func:`train_model`: a tiny network, ``instance_norm`` and ``shrink`` off.

    The tests' and chaos scenarios' models exercise the edge, not accuracy: with the trainer's defaults since
    issue 17 (``shrink``) a 3-epoch network's change is fitted to 0 on the holdout, i.e. persistence, and the
    tests that need a forecast the inputs move (the time of day, an absurd copy) lose their subject.
    """
    from training_job.model import BEFORE_ISSUE_17, TrainConfig

    return TrainConfig(
        lstm_units=units, dense_units=dense, epochs=epochs, batch_size=64, patience=2, seed=seed, **BEFORE_ISSUE_17
    )


def save_model(tflite: bytes, manifest: Manifest, out_root: Path) -> Path:
    folder = Path(out_root) / manifest.name / manifest.version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(tflite)
    manifest.save(folder / "manifest.json")
    return folder / "model.tflite"


def absurd_manifest(model_path: Path, version: str = "absurd", scales_off: float = 1000.0) -> Manifest:
    """A manifest for ``model_path``'s bytes whose model forecasts ``scales_off`` target scales off for every
    window (finite, so the load-time probe passes): what the swap guard must roll back.

    A scaler alone cannot move a residual model's forecast (the newest target value + the network's change,
    :func:`training_job.model.build_model`): a shifted target mean cancels, and a stretched target scale only
    multiplies the change, which is small for some windows (a 10,000x scale left ~20% of the chaos stream's swap
    points with fewer than 21 of the first 100 forecasts out of range). So every other column's mean moves
    1,000 scales (inputs ~ -1,000: the LSTM saturates and the change is one constant ``c``, whatever the window),
    and the target scale becomes ``scales_off`` scales / ``|c|``: each forecast is the newest value (residual)
    or the target mean (not) +- ``scales_off`` scales.
    """
    from datetime import UTC, datetime

    from model_contract.runtime import TFLiteModel

    good = Manifest.load(model_path.with_name("manifest.json")).to_dict()
    scaler = dict(good["scaler"])
    reading, scale = list(scaler["mean"]), list(scaler["scale"])  # a typical reading
    target = int(scaler["target_index"])
    mean = list(reading)
    for i in range(len(mean)):
        if i != target:
            mean[i] += 1000.0 * scale[i]

    def variant(target_scale: float) -> Manifest:
        new_scale = [target_scale if i == target else v for i, v in enumerate(scale)]
        created = datetime.now(UTC).isoformat()
        new_scaler = {**scaler, "mean": mean, "scale": new_scale}
        return Manifest.from_dict({**good, "version": version, "scaler": new_scaler, "created_at": created})

    probe = variant(scale[target])
    window = np.asarray([reading] * probe.input_shape[0], dtype=np.float64)  # others -1,000 scales, target 0
    model = TFLiteModel.from_manifest(model_path.read_bytes(), probe)
    change = (model.predict_one(window) - mean[target]) / scale[target]  # the saturated network's output
    if not abs(change) > 1e-6:
        raise ValueError(f"{model_path}: the saturated network forecasts no change ({change}): cannot make it absurd")
    return variant(scales_off * scale[target] / abs(change))


def notice_for(model_path: Path, **override: Any) -> dict[str, Any]:
    """The notice that announces a saved model (what the cloud side publishes)."""
    manifest = Manifest.load(model_path.with_name("manifest.json"))
    notice = {
        "name": manifest.name,
        "version": manifest.version,
        "model": model_path.resolve().as_uri(),
        "manifest": model_path.with_name("manifest.json").resolve().as_uri(),
        "sha256": manifest.sha256,
    }
    notice.update(override)
    return notice


def reading_json(row: dict[str, Any], device: str, spec: FeatureSpec | None = None) -> bytes:
    """One input reading as the edge app expects it (numbers as floats)."""
    spec = spec or FeatureSpec()
    rec: dict[str, Any] = {spec.device_column: device, spec.timestamp_column: row[spec.timestamp_column]}
    for col in spec.columns:
        rec[col] = float(row[col])
    return json.dumps(rec).encode()


def expected_forecasts(rows: list[dict[str, Any]], model_path: Path) -> np.ndarray:
    """What one model forecasts after each row (NaN while the lag window fills): the test oracle."""
    from model_contract import FeatureBuffer
    from model_contract.calendar import parse_timestamp
    from model_contract.runtime import TFLiteModel

    manifest = Manifest.load(model_path.with_name("manifest.json"))
    model = TFLiteModel.from_files(model_path)
    spec = manifest.feature_spec
    buf = FeatureBuffer(spec)
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        buf.push(spec.parse_values(row), parse_timestamp(row[spec.timestamp_column]))
        if buf.ready:
            out[i] = model.predict_one(buf.window)
    return out


# ---- configs -------------------------------------------------------------------------------------
def topics(prefix: str) -> dict[str, str]:
    """Kafka role -> ``prefix + role`` for every topic the edge app uses (private topics per run)."""
    return {role: prefix + role for role in KAFKA_TOPICS}


def merge_config(cfg: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with ``extra`` merged one level deep (a dict value updates the section it names)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def edge_config(work: Path, bootstrap: str, prefix: str, models: Any, **extra: Any) -> dict[str, Any]:
    """An edge app config with per-run topics (``prefix``), state and window folders under ``work``;
    ``models`` has ``.batch`` and ``.speed`` (model.tflite paths); ``extra`` merges one level deep."""
    cfg: dict[str, Any] = {
        "thing_name": "pi-test",
        "bootstrap": bootstrap,
        "group_id": prefix + "edge",
        "topics": topics(prefix),
        "models": {"batch": str(models.batch), "speed": str(models.speed), "speed_name": "speed"},
        "state_dir": str(work / "state"),
        "windows": {"max_records": 100, "max_seconds": 600, "local_root": str(work / "uploads")},
        "metrics_interval_s": 1.0,
        "kafka": {"poll_timeout_s": 0.05},
    }
    return merge_config(cfg, extra)


def write_config(path: Path, **cfg: Any) -> Path:
    path.write_text(json.dumps(cfg, indent=2))
    return path


# ---- Kafka ---------------------------------------------------------------------------------------
def create_topics(bootstrap: str, names: Iterable[str], timeout: float = 30) -> None:
    """Create one-partition topics up front (a consumer does not see topics born after its first
    lookup); topics that exist already are fine."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    for topic, future in admin.create_topics([NewTopic(t, 1, 1) for t in names]).items():
        try:
            future.result(timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create Kafka topic {topic}: {exc}") from exc


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    keys: Iterable[bytes | None] | None = None,
    timeout: float = 60,
) -> int:
    """Produce ``values`` (with ``keys``, if given) to ``topic``, idempotently; how many were delivered.
    Raises when some are not acknowledged within ``timeout`` seconds."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    values = list(values)
    keys = list(keys) if keys is not None else [None] * len(values)
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
    left = producer.flush(timeout)
    if left:
        raise RuntimeError(f"{left} records not delivered to {topic}")
    return len(values)


def collect(bootstrap: str, topic: str, count: int, timeout: float = 30.0, raw: bool = False) -> list:
    """Read ``count`` records of ``topic`` from the start (fewer if ``timeout`` passes first);
    parsed JSON, or the messages themselves with ``raw``."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"collect-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    out.append(msg if raw else json.loads(msg.value()))
    finally:
        consumer.close()
    return out


class Collector(threading.Thread):
    """Reads ``topic`` from the start into ``records`` (parsed JSON, or the messages themselves without
    ``parse``) until :meth:`stop`; rides out broker restarts. :meth:`start` returns the collector."""

    def __init__(self, bootstrap: str, topic: str, parse: bool = True) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.topic = topic
        self.records: list[Any] = []
        self.parse = parse
        self._halt = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collect-{uuid.uuid4().hex[:10]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
                "log_level": 2,  # brokers get killed on purpose: no connection-refused noise
            }
        )
        self._consumer.subscribe([topic])

    def start(self) -> Collector:  # type: ignore[override]
        super().start()
        return self

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                msgs = self._consumer.consume(1000, 0.2)
            except Exception as exc:  # broker down: keep trying
                log.debug("collector %s: %s", self.topic, exc)
                time.sleep(0.5)
                continue
            for msg in msgs:
                if msg.error() is None:
                    self.records.append(json.loads(msg.value()) if self.parse else msg)
        self._consumer.close()

    def keys(self) -> list[str]:
        return [r["key"] for r in list(self.records)]

    def stop(self) -> list[Any]:
        self._halt.set()
        self.join(15)
        return self.records


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (then one last look)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ---- MQTT ----------------------------------------------------------------------------------------
def mqtt_client(server: Any, name: str, **override: Any) -> Any:
    """An mTLS client (``edge_app.mqtt.MtlsTransport``) of the local mosquitto ``server`` with a fresh
    certificate for ``name`` (the cloud side, a Pi); ``override``: other transport arguments."""
    from edge_app.mqtt import MtlsTransport

    cert = server.client_cert(name)
    kwargs: dict[str, Any] = {
        "endpoint": server.host,
        "port": server.port,
        "cert": str(cert.cert),
        "key": str(cert.key),
        "ca": str(server.ca),
        "client_id": f"{name}-{uuid.uuid4().hex[:6]}",
        "flow_control": False,
    }
    return MtlsTransport(**{**kwargs, **override})


# ---- the edge app as a process -------------------------------------------------------------------
def edge_argv(config_path: Path, command: str = "run", *, shipped: bool = False) -> list[str]:
    """The command line of ``edge <command> --config FILE``: through ``hybridstream`` (the dev CLI), or
    with ``shipped`` as ``python -m edge_app -v`` (what Greengrass runs, INFO logs)."""
    if shipped:
        return [sys.executable, "-m", "edge_app", "-v", command, "--config", str(config_path)]
    return [sys.executable, "-m", "hybridstream", "edge", command, "--config", str(config_path)]


def edge_env(**extra: str) -> dict[str, str]:
    """This environment with the repository on ``PYTHONPATH`` (the child runs this checkout's code)."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def spawn_edge(config_path: Path, log_path: Path, command: str = "run") -> subprocess.Popen:
    """``python -m edge_app -v <command>`` as a separate process (what Greengrass runs), output to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            edge_argv(config_path, command, shipped=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=edge_env(),
        )


class EdgeProcess:
    """``hybridstream edge run --config FILE`` as a separate process; each start logs to its own file."""

    def __init__(self, work: Path, cfg: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.work = work
        self.cfg = cfg
        self.config_path = work / "edge.json"
        self.config_path.write_text(json.dumps(cfg, indent=1))
        self.env = edge_env(PYTHONUNBUFFERED="1", **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.exit_codes: list[int] = []
        self.outputs: list[str] = []

    @property
    def log_path(self) -> Path:
        return self.work / f"edge-{self.runs}.log"

    def start(self, wait: bool = True, timeout: float = 60) -> EdgeProcess:
        self.runs += 1
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                edge_argv(self.config_path),
                stdout=subprocess.PIPE,
                stderr=logf,
                cwd=REPO,
                env=self.env,
                start_new_session=True,
            )
        if wait and not self.wait_ready(timeout):
            raise RuntimeError(f"edge app not consuming after {timeout:.0f}s:\n{self.tail()}")
        return self

    def wait_ready(self, timeout: float = 60) -> bool:
        return wait_for(lambda: " consuming " in self.log_text() or not self.alive(), timeout) and self.alive()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)
            self.exit_codes.append(self.proc.returncode)
            self.outputs.append(self.proc.stdout.read().decode(errors="replace"))

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code (the graceful path prints the counters)."""
        if self.proc is None:
            return -1
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        self.exit_codes.append(self.proc.returncode)
        self.outputs.append(out.decode(errors="replace"))
        return self.proc.returncode

    def counters(self) -> dict[str, Any]:
        """The counters JSON the last graceful run printed (empty if none)."""
        for out in reversed(self.outputs):
            for line in reversed(out.strip().splitlines()):
                if line.startswith("{"):
                    try:
                        return json.loads(line)
                    except ValueError:
                        continue
        return {}

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 1e6 if self.alive() else 0.0

    def close(self) -> None:
        if self.alive():
            self.kill()
