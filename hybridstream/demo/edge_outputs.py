"""Read what the edge app produced (predictions, deadletter, events) while the demo runs.

One consumer thread per scenario, from the start of its topics; every record is kept with its
Kafka CreateTime (``ts_ms``), so latencies are measured from the records themselves.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any


class EdgeOutputRecorder:
    """Consumes the edge app's output ``topics`` (role -> topic name) into ``records[role]``, in a thread."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = dict(topics)
        self.records: dict[str, list[dict[str, Any]]] = {role: [] for role in topics}
        self.keys: set[str] = set()  # distinct prediction keys (device|timestamp)
        self.duplicates = 0
        self._by_topic = {t: r for r, t in topics.items()}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="demo-collector", daemon=True)
        self.error: str | None = None

    def start(self) -> EdgeOutputRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def count(self, role: str) -> int:
        with self._lock:
            return len(self.records[role])

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.records.get("events", []) if e.get("event") == kind]

    def _run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"demo-collector-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        try:
            consumer.subscribe(list(self.topics.values()))
            while not self._stop.is_set():
                for msg in consumer.consume(2000, 0.2):
                    if msg.error() is not None:
                        continue
                    role = self._by_topic.get(msg.topic())
                    try:
                        value = json.loads(msg.value())
                    except (TypeError, ValueError):
                        continue
                    if not isinstance(value, dict):
                        continue
                    value["_ts_ms"] = msg.timestamp()[1]
                    value["_seen"] = time.time()
                    with self._lock:
                        self.records[role].append(value)
                        if role == "predictions":
                            key = value.get("key")
                            if key in self.keys:
                                self.duplicates += 1
                            else:
                                self.keys.add(key)
        except Exception as exc:  # surfaced in the report
            self.error = str(exc)
        finally:
            consumer.close()
