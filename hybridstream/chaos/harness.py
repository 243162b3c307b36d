"""What every scenario needs: the real servers (started on demand), tiny real models, good readings,
a feeder and collectors on Kafka, an MQTT listener, and the edge app as a subprocess through its CLI."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridstream.datasets import TURBINE
from hybridstream.servers.local import LocalServers
from hybridstream.servers.process import CACHE_DIR, REPO_ROOT

log = logging.getLogger("hybridstream.chaos")

BASE_EPOCH = 1_600_000_000.0  # 2020-09-13: readings get synthetic, strictly increasing timestamps from here
STEP_S = 600.0  # ten minutes between a device's readings (the turbine data's cadence)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ---- models --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Models:
    batch: Path
    speed: Path
    speed2: Path
    speed3: Path
    lags3: Path  # a speed model trained with lags 1, 2, 3 (another input shape)


def read_rows(path: Path, start: int = 0, count: int | None = None) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[start : None if count is None else start + count]


def train_models(cache: Path | None = None) -> Models:
    """One batch and three speed models (tiny real LSTMs, TFLite), cached under ``.cache/chaos-models``."""
    cache = Path(cache or CACHE_DIR / "chaos-models-v2")
    done = cache / "models.json"
    if done.exists():
        paths = {k: Path(v) for k, v in json.loads(done.read_text()).items()}
        if all(p.exists() for p in paths.values()):
            return Models(**paths)
    from model_contract import FeatureSpec, rows_to_matrix
    from training_job.model import TrainConfig, train_matrix

    spec = FeatureSpec()
    cfg = TrainConfig(lstm_units=8, dense_units=4, epochs=3, batch_size=64, patience=2)
    out: dict[str, Path] = {}
    plan = {
        "batch": ("train.csv", 0, 600, "batch", "batch", 42),
        "speed": ("test.csv", 0, 400, "speed", "speed", 1),
        "speed2": ("test.csv", 400, 400, "speed", "speed", 2),
        "speed3": ("test.csv", 800, 400, "speed", "speed", 3),
        "lags3": ("test.csv", 1200, 400, "speed", "speed", 4),
    }
    for key, (file, start, n, name, kind, seed) in plan.items():
        use = FeatureSpec(lags=(1, 2, 3)) if key == "lags3" else spec
        matrix = rows_to_matrix(read_rows(TURBINE / file, start, n), use)
        trained = train_matrix(matrix, use, TrainConfig(**{**cfg.__dict__, "seed": seed}), name=name, kind=kind)
        folder = cache / name / trained.manifest.version
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.tflite").write_bytes(trained.tflite)
        trained.manifest.save(folder / "manifest.json")
        out[key] = folder / "model.tflite"
    done.write_text(json.dumps({k: str(v) for k, v in out.items()}))
    return Models(**out)


# ---- readings ------------------------------------------------------------------------------------
class Readings:
    """Good readings: turbine rows in turn, per device strictly increasing synthetic timestamps."""

    def __init__(self, rows: list[dict[str, str]] | None = None) -> None:
        from model_contract import FeatureSpec

        self.spec = FeatureSpec()
        self.rows = rows or read_rows(TURBINE / "test.csv", 0, 3000)
        self._values = [[float(r[c]) for c in self.spec.columns] for r in self.rows]

    def timestamp(self, i: int) -> str:
        return datetime.fromtimestamp(BASE_EPOCH + i * STEP_S, UTC).isoformat()

    def one(self, device: str, i: int) -> tuple[bytes, bytes, str]:
        """(Kafka key, JSON value, idempotency key) of the device's i-th reading."""
        ts = self.timestamp(i)
        rec: dict[str, Any] = {self.spec.device_column: device, self.spec.timestamp_column: ts}
        for col, value in zip(self.spec.columns, self._values[i % len(self._values)], strict=True):
            rec[col] = value
        return device.encode(), json.dumps(rec, separators=(",", ":")).encode(), f"{device}|{ts}"

    def batch(self, devices: Iterable[str], start: int, count: int) -> list[tuple[bytes, bytes, str]]:
        """Readings ``start .. start+count`` of each device, interleaved (all devices' i, then i+1 ...)."""
        devices = list(devices)
        return [self.one(d, i) for i in range(start, start + count) for d in devices]


# ---- Kafka clients -------------------------------------------------------------------------------
def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], timeout: float = 60) -> int:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    n = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
    left = producer.flush(timeout)
    if left:
        raise RuntimeError(f"{left} records not delivered to {topic}")
    return n


class Feeder(threading.Thread):
    """Produces ``records`` at ``rate`` per second (schedule-based); survives a broker outage
    (librdkafka keeps retrying for ``message.timeout.ms``). ``sent`` = idempotency keys acknowledged."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes, str]], rate: float) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.topic, self.records, self.rate = topic, records, rate
        self.sent: list[str] = []
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 5,
                "enable.idempotence": True,
                "message.timeout.ms": 300_000,
                "reconnect.backoff.max.ms": 1000,
                "log_level": 2,
            }
        )
        self.finished_at: float | None = None

    def run(self) -> None:
        start = time.monotonic()
        for i, (key, value, idem) in enumerate(self.records):
            due = start + i / self.rate if self.rate else 0
            delay = due - time.monotonic()
            if delay > 0:
                self.producer.poll(0)
                time.sleep(delay)

            def done(err: Any, _msg: Any, idem: str = idem) -> None:
                with self._lock:
                    (self.failed if err is not None else self.sent).append(idem)

            while True:
                try:
                    self.producer.produce(self.topic, value, key, on_delivery=done)
                    break
                except BufferError:
                    self.producer.poll(0.1)
        self.producer.flush(300)
        self.finished_at = time.monotonic()


class Collector(threading.Thread):
    """Reads a topic from the start into ``records`` (parsed JSON) until stopped; survives broker restarts."""

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
                "group.id": f"chaos-{uuid.uuid4().hex[:10]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
                "log_level": 2,  # the broker is killed on purpose: no connection-refused noise
            }
        )
        self._consumer.subscribe([topic])
        self.start()

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


# ---- MQTT ----------------------------------------------------------------------------------------
class MqttListener:
    """A cloud-side mTLS client recording every message on the filters it subscribes to."""

    def __init__(self, broker: Any, name: str, port: int | None = None) -> None:
        from edge_app.mqtt import MtlsTransport

        cert = broker.client_cert(name)
        self.client = MtlsTransport(
            endpoint=broker.host,
            port=port or broker.port,
            cert=str(cert.cert),
            key=str(cert.key),
            ca=str(broker.ca),
            client_id=f"{name}-{uuid.uuid4().hex[:6]}",
            flow_control=False,
        )
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def subscribe(self, topic: str, timeout: float = 15) -> bool:
        self.client.subscribe(topic, self._on)
        return self.client.wait_subscribed(topic, timeout)

    def _on(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, json.loads(payload)))

    def on(self, topic: str) -> list[dict]:
        with self._lock:
            return [m for t, m in self.messages if t == topic]

    def close(self) -> None:
        self.client.close()


# ---- the edge app --------------------------------------------------------------------------------
def edge_config(work: Path, bootstrap: str, prefix: str, models: Models, **extra: Any) -> dict[str, Any]:
    """A config with per-scenario topics, state and window folders (``extra`` merges one level deep)."""
    cfg: dict[str, Any] = {
        "thing_name": f"pi-{prefix.strip('.')}",
        "bootstrap": bootstrap,
        "group_id": prefix + "edge",
        "topics": {t: prefix + t for t in ("readings", "predictions", "metrics", "deadletter", "events", "notices")},
        "models": {"batch": str(models.batch), "speed": str(models.speed), "speed_name": "speed"},
        "state_dir": str(work / "state"),
        "windows": {"max_records": 200, "max_seconds": 600, "local_root": str(work / "uploads")},
        "metrics_interval_s": 2.0,
        "log_interval_s": 5.0,
        "kafka": {"poll_timeout_s": 0.05},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


class EdgeProcess:
    """``hybridstream edge run --config FILE`` as a separate process; each start logs to its own file."""

    def __init__(self, work: Path, cfg: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.work = work
        self.cfg = cfg
        self.config_path = work / "edge.json"
        self.config_path.write_text(json.dumps(cfg, indent=1))
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.exit_codes: list[int] = []
        self.outputs: list[str] = []

    @property
    def log_path(self) -> Path:
        return self.work / f"edge-{self.runs}.log"

    def start(self, wait: bool = True, timeout: float = 60) -> EdgeProcess:
        self.runs += 1
        cmd = [sys.executable, "-m", "hybridstream", "edge", "run", "--config", str(self.config_path)]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=logf, cwd=REPO_ROOT, env=self.env, start_new_session=True
            )
        self._out = self.proc.stdout
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


# ---- windows -------------------------------------------------------------------------------------
@dataclass
class WindowTally:
    """Closed windows: delivered (at the destination) vs left behind in the spool; rows they cover."""

    delivered: int
    spooled: int
    quarantined: int
    covered: set[str]

    @property
    def sent(self) -> int:
        return self.delivered + self.spooled + self.quarantined


def _csv_keys(data: str) -> set[str]:
    return {f"{r['device']}|{r['Date_time']}" for r in csv.DictReader(data.splitlines())}


def tally_windows(state_dir: Path, local_root: Path | None = None, s3: Any = None, bucket: str = "") -> WindowTally:
    """Count the windows at the destination (a local folder or an S3 bucket) and those still spooled."""
    covered: set[str] = set()
    delivered = 0
    if local_root is not None and Path(local_root).exists():
        for path in Path(local_root).rglob("*.csv"):
            delivered += 1
            covered |= _csv_keys(path.read_text())
    if s3 is not None and bucket:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="windows/"):
            for obj in page.get("Contents", []):
                delivered += 1
                covered |= _csv_keys(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode())
    windows = Path(state_dir) / "windows"
    spooled = len(list((windows / "ready").glob("*.csv"))) if (windows / "ready").exists() else 0
    quarantined = len(list((windows / "quarantine").glob("*"))) if (windows / "quarantine").exists() else 0
    return WindowTally(delivered, spooled, quarantined, covered)


@dataclass
class Context:
    """Passed to every scenario: the servers, the models, the mode and a private work folder each."""

    servers: LocalServers
    models: Models
    quick: bool
    work_root: Path
    readings: Readings = field(default_factory=Readings)

    def work(self, name: str) -> tuple[Path, str]:
        """A fresh folder and a unique topic prefix for one scenario."""
        folder = self.work_root / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder, f"c{uuid.uuid4().hex[:6]}."

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full
