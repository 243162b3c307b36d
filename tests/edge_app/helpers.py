"""Shared helpers for the edge app's broker-backed tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from edge_app.app import EdgeApp
from edge_app.config import EdgeConfig

REPO = Path(__file__).resolve().parents[2]


def edge_config(tmp_path: Path, bootstrap: str, prefix: str, models, **extra: Any) -> dict[str, Any]:
    """A config dict with per-test topics, state and window folders."""
    cfg: dict[str, Any] = {
        "thing_name": "pi-test",
        "bootstrap": bootstrap,
        "group_id": prefix + "edge",
        "topics": {
            "readings": prefix + "readings",
            "predictions": prefix + "predictions",
            "metrics": prefix + "metrics",
            "deadletter": prefix + "deadletter",
            "events": prefix + "events",
            "notices": prefix + "notices",
        },
        "models": {"batch": str(models.batch), "speed": str(models.speed), "speed_name": "speed"},
        "state_dir": str(tmp_path / "state"),
        "windows": {"max_records": 100, "max_seconds": 600, "local_root": str(tmp_path / "uploads")},
        "metrics_interval_s": 1.0,
        "kafka": {"poll_timeout_s": 0.05},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value, keys[i] if keys else None)
    assert producer.flush(30) == 0


def collect(bootstrap: str, topic: str, count: int, timeout: float = 30.0, raw: bool = False) -> list:
    """Read ``count`` records of ``topic`` from the start (fewer if ``timeout`` passes first)."""
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


class AppThread:
    """The edge app running in a thread of the test process (stopped like SIGTERM would)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.app = EdgeApp(EdgeConfig.from_dict(cfg))
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.app.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> AppThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict[str, Any] | None:
        self.app.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "edge app did not stop"
        if self.error is not None:
            raise self.error
        return self.result


def spawn_app(config_path: Path, log_path: Path) -> subprocess.Popen:
    """``python -m edge_app run`` as a separate process (what Greengrass runs)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_app", "-v", "run", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset of one partition (negative: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()
