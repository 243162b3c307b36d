"""Helpers of the edge app's broker-backed tests that only a test needs (the app in a thread, a
Lambda's fresh import, a group's committed offset); the rest is the edge test kit,
:mod:`hybridstream.devtools.edge`."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from edge_app.app import EdgeApp
from edge_app.config import EdgeConfig
from edge_app.forward import Forwarder

REPO = Path(__file__).resolve().parents[2]


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


def load_lambda(folder: str):
    """A fresh import of ``lambdas/<folder>/handler.py`` (registered in sys.modules: dataclasses need that)."""
    name = f"{folder}_handler_under_test"
    spec = importlib.util.spec_from_file_location(name, REPO / "lambdas" / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset of one partition (negative: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()
