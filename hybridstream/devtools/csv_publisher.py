"""``hybridstream edge replay``: publish a CSV of readings into Kafka (one producer, batching, steady rate).

A development tool (the bench, demos, tests): it does not ship to the device.

Rate control is by schedule, not by sleeping per record: record ``i`` is due at
``start + i / rate``; the loop sends everything already due, then sleeps until the next one
is, so the average rate stays exact however long each ``produce`` takes.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hybridstream.devtools.csv_publisher")


@dataclass
class PublishResult:
    sent: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "sent": self.sent,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "errors": self.errors,
        }


def csv_records(
    path: str | Path, devices: list[str], limit: int | None = None, device_column: str = "device"
) -> Iterator[tuple[bytes, bytes]]:
    """(key, JSON value) per CSV row, numbers as floats; with several devices each row is sent once per device."""
    sent = 0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for device in devices:
                if limit is not None and sent >= limit:
                    return
                rec: dict[str, object] = {device_column: device}
                for k, v in row.items():
                    rec[k] = _number(v)
                yield device.encode(), json.dumps(rec, separators=(",", ":")).encode()
                sent += 1


def _number(v: str) -> object:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def publish_at_rate(
    records: Iterator[tuple[bytes, bytes]],
    *,
    bootstrap: str,
    topic: str,
    rate: float | None,
    progress_every: float = 5.0,
    producer_conf: dict | None = None,
) -> PublishResult:
    """Send ``records`` at ``rate`` per second (None or <= 0: as fast as possible)."""
    from confluent_kafka import Producer

    errors = [0]

    def on_error(err, _msg) -> None:
        if err is not None:
            errors[0] += 1

    conf = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5 if not rate or rate > 5000 else 0,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1000000,
        "delivery.report.only.error": True,
        "on_delivery": on_error,
        **(producer_conf or {}),
    }
    producer = Producer(conf)
    producer.list_topics(topic, timeout=30)  # connect and learn the leader first: the schedule starts ready
    start = time.perf_counter()
    next_report = start + progress_every
    interval = 1.0 / rate if rate and rate > 0 else 0.0
    sent = 0
    for key, value in records:
        if interval:
            due = start + sent * interval
            now = time.perf_counter()
            if due > now:
                producer.poll(0)
                time.sleep(due - now)
        try:
            producer.produce(topic, value, key)
        except BufferError:
            producer.flush(30)
            producer.produce(topic, value, key)
        sent += 1
        if not sent % 1000:
            producer.poll(0)
            now = time.perf_counter()
            if now >= next_report:
                log.info("replay: %d sent, %.0f rec/s", sent, sent / (now - start))
                next_report = now + progress_every
    remaining = producer.flush(60)
    seconds = time.perf_counter() - start
    return PublishResult(sent, seconds, errors[0] + remaining)
