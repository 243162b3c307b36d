"""What every scenario needs beyond the edge test kit (:mod:`hybridstream.devtools.edge`): the real
servers (started on demand), the scenarios' tiny models and good readings, a paced feeder, an MQTT
listener, the scenarios' edge config, the window tally and the per-scenario context."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridstream.datasets import TURBINE
from hybridstream.devtools import edge as kit
from hybridstream.devtools.edge import mqtt_client, read_rows, train_model
from hybridstream.servers.local import LocalServers
from hybridstream.servers.process import CACHE_DIR

log = logging.getLogger("hybridstream.chaos")

BASE_EPOCH = 1_600_000_000.0  # 2020-09-13: readings get synthetic, strictly increasing timestamps from here
STEP_S = 600.0  # ten minutes between a device's readings (the turbine data's cadence)


# ---- models --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Models:
    batch: Path
    speed: Path
    speed2: Path
    speed3: Path
    lags3: Path  # a speed model trained with lags 1, 2, 3 (another input shape)


def train_models(cache: Path | None = None) -> Models:
    """One batch and three speed models (tiny real LSTMs, TFLite), cached under ``.cache/chaos-models-v2``.

    The list of cached models is named by the trainer's revision and the tiny config (the trainer's defaults): a
    changed default trains new models instead of serving the old ones.
    """
    import hashlib

    from training_job.model import TRAINER_REVISION

    cache = Path(cache or CACHE_DIR / "chaos-models-v2")
    key = json.dumps([TRAINER_REVISION, kit.tiny_config().to_dict()], sort_keys=True).encode()
    done = cache / f"models-{hashlib.sha256(key).hexdigest()[:12]}.json"
    if done.exists():
        paths = {k: Path(v) for k, v in json.loads(done.read_text()).items()}
        if all(p.exists() for p in paths.values()):
            return Models(**paths)
    from model_contract import FeatureSpec

    plan = {  # key: (file, first row, rows, name, kind, seed)
        "batch": ("train.csv", 0, 600, "batch", "batch", 42),
        "speed": ("test.csv", 0, 400, "speed", "speed", 1),
        "speed2": ("test.csv", 400, 400, "speed", "speed", 2),
        "speed3": ("test.csv", 800, 400, "speed", "speed", 3),
        "lags3": ("test.csv", 1200, 400, "speed", "speed", 4),
    }
    out: dict[str, Path] = {}
    for key, (file, start, n, name, kind, seed) in plan.items():
        spec = FeatureSpec(lags=(1, 2, 3)) if key == "lags3" else FeatureSpec()
        out[key] = train_model(read_rows(TURBINE / file, start, n), cache, name=name, kind=kind, spec=spec, seed=seed)
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


# ---- MQTT ----------------------------------------------------------------------------------------
class MqttListener:
    """A cloud-side mTLS client recording every message on the filters it subscribes to."""

    def __init__(self, broker: Any, name: str, port: int | None = None) -> None:
        self.client = mqtt_client(broker, name, **({"port": port} if port else {}))
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
    """The kit's config with the scenarios' defaults (a thing per prefix, 200-reading windows, 2 s
    metrics, 5 s logs); ``extra`` merges one level deep."""
    cfg = kit.edge_config(
        work,
        bootstrap,
        prefix,
        models,
        thing_name=f"pi-{prefix.strip('.')}",
        windows={"max_records": 200},
        metrics_interval_s=2.0,
        log_interval_s=5.0,
    )
    return kit.merge_config(cfg, extra)


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
