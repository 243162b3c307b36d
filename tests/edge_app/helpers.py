"""Shared helpers for the edge app's broker-backed tests."""

from __future__ import annotations

import importlib.util
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
from edge_app.forward import Forwarder
from edge_app.mqtt import MtlsTransport

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


class RunningThread:
    """An object with ``run()`` and a ``stop`` event, running in a thread of the test process
    (stopped as SIGTERM would); :meth:`stop` returns what ``run()`` returned."""

    def __init__(self, target: Any, join_timeout: float = 60.0) -> None:
        self.target = target
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.join_timeout = join_timeout
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.target.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> RunningThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict[str, Any] | None:
        self.target.stop.set()
        self.thread.join(self.join_timeout)
        assert not self.thread.is_alive(), f"{type(self.target).__name__} did not stop"
        if self.error is not None:
            raise self.error
        return self.result


class AppThread(RunningThread):
    """The edge app (``edge run``) in a thread; started by ``with`` (or ``thread.start()``)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(EdgeApp(EdgeConfig.from_dict(cfg)))
        self.app: EdgeApp = self.target


class ForwarderThread(RunningThread):
    """``edge forward`` in a thread, started at once."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(Forwarder(EdgeConfig.from_dict(cfg, require_batch_model=False)), join_timeout=30.0)
        self.forwarder: Forwarder = self.target
        self.thread.start()


def spawn_app(config_path: Path, log_path: Path, command: str = "run") -> subprocess.Popen:
    """``python -m edge_app <command>`` as a separate process (what Greengrass runs)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_app", "-v", command, "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )


def load_lambda(folder: str):
    """A fresh import of ``lambdas/<folder>/handler.py`` (registered in sys.modules: dataclasses need that)."""
    name = f"{folder}_handler_under_test"
    spec = importlib.util.spec_from_file_location(name, REPO / "lambdas" / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def mqtt_client(server: Any, name: str, **override: Any) -> MtlsTransport:
    """An mTLS client of the local mosquitto with a fresh certificate for ``name`` (the cloud side, a Pi)."""
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
