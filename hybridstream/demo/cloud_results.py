"""``cloud`` mode: the predictions are the cloud inference Lambda's results, seen on MQTT.

The forwarder sends one new reading per message (``forward.max_readings`` 2: the previous reading
as context + the new one), so every reading gets its own forecast. Each result on
``hybridstream/<thing>/results`` is matched to its readings message by the message timestamp
and turned into a prediction-shaped record: the actual value of the message's newest reading and
the forecasts of the next one (the batch forecast stands in for the speed one until a speed
model is published, as on the edge).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


class CloudResults:
    """A router observer building prediction records for one thing."""

    def __init__(self, thing: str, target: str = "Ot_avg") -> None:
        self.thing, self.target = thing, target
        self.records: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self.duplicates = 0
        self.speed_versions: list[tuple[float, str]] = []  # (first seen, version)
        self._messages: dict[str, deque] = {}  # send timestamp -> newest readings (messages may share one)
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        parts = topic.split("/")
        if len(parts) != 3 or parts[1] != self.thing:
            return
        if parts[2] == "readings" and payload.get("readings"):
            with self._lock:
                self._messages.setdefault(str(payload.get("timestamp")), deque()).append(payload["readings"][-1])
        elif parts[2] == "results":
            self._result(payload)

    def _result(self, payload: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:  # results come in the order of their messages (one router thread, in order)
            queue = self._messages.get(str(payload.get("timestamp")))
            reading = queue.popleft() if queue else None
            if queue is not None and not queue:
                del self._messages[str(payload.get("timestamp"))]
        if reading is None or not payload.get("predictions"):
            return
        pred = payload["predictions"][0]
        models = payload.get("models") or {}
        speed_version = models.get("speed", models.get("batch"))
        batch = pred.get("batch")
        speed = pred.get("speed", batch)
        key = f"{reading.get('device')}|{reading.get('Date_time')}"
        record = {
            "key": key,
            "device": reading.get("device"),
            "timestamp": reading.get("Date_time"),
            "actual": reading.get(self.target),
            "forecast": {"batch": batch, "speed": speed, "hybrid": pred.get("hybrid")},
            "weights": {
                "batch": (pred.get("weights") or {}).get("batch"),
                "speed": (pred.get("weights") or {}).get("speed", 0.0),
            },  # noqa: E501
            "models": {"batch": models.get("batch"), "speed": speed_version},
            "_seen": now,
            "_ts_ms": now * 1000,
        }
        with self._lock:
            if key in self.keys:
                self.duplicates += 1
            else:
                self.keys.add(key)
            self.records.append(record)
            if "speed" in models and all(v != models["speed"] for _, v in self.speed_versions):
                self.speed_versions.append((now, models["speed"]))
