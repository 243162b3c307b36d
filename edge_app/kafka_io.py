"""Kafka plumbing shared by ``edge run`` and ``edge forward``: client settings, topics, the
output producer (delivery errors, full queues), consuming without added latency, committing.

Both commands create one consumer and one :class:`Outputs` at start; nothing here allocates
per record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition, libversion

from edge_app.config import EdgeConfig

log = logging.getLogger("edge_app")

# librdkafka settings tuned for a 2-core Pi-class machine (see BENCHMARKS.md); config overrides win
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 10,
    "fetch.min.bytes": 1,
    "queued.min.messages": 20000,
    "fetch.max.bytes": 8 * 1024 * 1024,
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 2000,
    "allow.auto.create.topics": True,
    "topic.metadata.refresh.interval.ms": 10000,
}
# Once librdkafka's prefetch queue holds queued.min.messages, it postpones the next fetch by
# fetch.queue.backoff.ms (1000 by default): a consumer that drains 20,000 readings in less than a second
# then waits for input, whatever its speed (a bare echo: 28,000-46,000 readings/s and 50-95 empty polls
# a pass with the default, 140,000-280,000/s and none at 10 ms; BENCHMARKS.md, issue 18). The setting
# exists from librdkafka 2.2.0 on (older ones, e.g. Debian 12's 2.0.2 on 32-bit ARM, reject it and keep
# the fixed 1 s, which a Pi's few thousand readings/s never reach).
FETCH_QUEUE_BACKOFF_MS = 10
FETCH_QUEUE_BACKOFF_SINCE = 0x020200FF  # librdkafka 2.2.0 (libversion()[1])


def fetch_backoff_settings(version: int) -> dict[str, Any]:
    """``fetch.queue.backoff.ms`` for a librdkafka of ``version`` (``libversion()[1]``) that knows it, else none.

    >>> fetch_backoff_settings(0x020200FF), fetch_backoff_settings(0x020002FF)
    ({'fetch.queue.backoff.ms': 10}, {})
    """
    return {"fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS} if version >= FETCH_QUEUE_BACKOFF_SINCE else {}


CONSUMER_DEFAULTS.update(fetch_backoff_settings(libversion()[1]))
# lz4 batches: the broker (on the same cores) validates and stores a compressed batch for ~3 us a prediction less
# of its CPU than a plain one, for ~1 us more in librdkafka's thread (make bench-edge --producer-conf, 4 alternating
# pairs: broker 13.4 -> 10.4 us a reading, librdkafka 1.9 -> 2.9; BENCHMARKS.md, issue 18), and the batches stay
# compressed on the broker's disk; consumers decompress them (librdkafka and the Java client have lz4 built in).
# linger.ms stays 2: a longer linger would batch more at the price of every output's delay at low rates
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 2,
    "batch.num.messages": 5000,
    "queue.buffering.max.messages": 500000,
    "compression.type": "lz4",
    "enable.idempotence": True,
    "acks": "all",
    "delivery.report.only.error": True,
}


class DeliveryFailed(RuntimeError):
    """An output could not be delivered: the batch is not committed and the app stops (to be restarted).

    ``count`` is the number of delivery errors it reports (at most 5 are listed).
    """

    def __init__(self, message: str, count: int = 0) -> None:
        super().__init__(message)
        self.count = count


def ensure_topics(cfg: EdgeConfig, timeout: float = 30.0) -> list[str]:
    """Create the app's topics that do not exist yet (one partition; the broker's defaults otherwise).

    A consumer only learns about a topic created after it subscribed at its next metadata
    refresh, so a notices topic born later could go unseen for minutes: create them up front.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg.bootstrap})
    names = list(dict.fromkeys(vars(cfg.topics).values()))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [n for n in names if n not in existing]
    if missing:
        for name, future in admin.create_topics([NewTopic(n, num_partitions=1) for n in missing]).items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create topic {name}: {exc}") from None
        log.info("created topics %s", missing)
    return missing


def consumer_config(cfg: EdgeConfig) -> dict[str, Any]:
    """The librdkafka consumer settings of ``edge run`` and ``edge forward`` (config overrides win)."""
    conf = {
        "bootstrap.servers": cfg.bootstrap,
        "group.id": cfg.group_id,
        "client.id": f"hybridstream-edge-{cfg.thing_name}",
        # static membership: a restarted app takes its partitions back at once (no session timeout wait)
        "group.instance.id": f"edge-{cfg.thing_name}",
        **CONSUMER_DEFAULTS,
        **cfg.kafka.consumer,
        "enable.auto.commit": False,  # never overridable: commits follow delivery
    }
    if not conf["group.instance.id"]:
        del conf["group.instance.id"]
    return conf


def producer_config(cfg: EdgeConfig) -> dict[str, Any]:
    """The librdkafka producer settings (idempotent, acks=all; config overrides win)."""
    return {"bootstrap.servers": cfg.bootstrap, **PRODUCER_DEFAULTS, **cfg.kafka.producer}


def open_consumer(cfg: EdgeConfig) -> Consumer:
    """The command's one consumer (topics created first when ``kafka.ensure_topics``)."""
    if cfg.kafka.ensure_topics:
        ensure_topics(cfg)
    return Consumer(consumer_config(cfg))


def consume_available(consumer: Consumer, size: int, timeout: float) -> list:
    """Whatever is queued (no wait); if nothing, wait up to ``timeout`` for the first record.

    ``consume(n, timeout)`` blocks until n records or the timeout, which would add the timeout
    to every reading's latency at low rates; this returns as soon as anything is there.
    """
    msgs = consumer.consume(size, 0)
    if msgs:
        return msgs
    msgs = consumer.consume(1, timeout)
    if msgs and size > 1:
        msgs += consumer.consume(size - 1, 0)
    return msgs


def positions(consumer: Consumer) -> list[TopicPartition]:
    """The consumer's positions now: the next offset of every assigned partition it has consumed from."""
    return [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]


def commit(consumer: Consumer, *, asynchronous: bool, offsets: list | None = None) -> None:
    """Commit ``offsets``, by default the consumer's :func:`positions` at this call; nothing consumed yet is
    not an error. The positions are read here, not left to librdkafka: an asynchronous commit without
    offsets reads them on its own thread when it sends the commit, by which time the loop may have consumed
    the next batch (its window rows not flushed, its devices' state not saved), and a crash before the
    next commit point would then skip those readings (tests/edge_app/test_commit_positions.py)."""
    if offsets is None:
        offsets = positions(consumer)
        if not offsets:
            return
    try:
        consumer.commit(offsets=offsets, asynchronous=asynchronous)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


class Outputs:
    """The command's one producer: records delivery errors, waits when the local queue is full.

    ``stopping`` tells :meth:`produce` that the command is shutting down: a queue that stays
    full then means the broker is gone, and it gives up (:class:`DeliveryFailed`, nothing
    committed) instead of waiting forever. Once anything failed, :attr:`failed` stays set and
    :meth:`check` raises: this process never commits again (the batch must be replayed).
    """

    def __init__(self, cfg: EdgeConfig, stopping: Callable[[], bool]) -> None:
        conf = producer_config(cfg)
        conf["on_delivery"] = self._on_delivery_error
        self.producer: Producer | None = Producer(conf)
        self._stopping = stopping
        self.errors: list[str] = []
        self.failed = False

    def _on_delivery_error(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err}")

    def produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Queue one record; if the local queue is full, let librdkafka drain it and retry (until it fits)."""
        while True:
            try:
                self.producer.produce(topic, value, key)
                return
            except BufferError:
                self._drain()

    def _drain(self) -> None:
        left = self.producer.flush(1)
        if left:
            log.warning("producer queue full (%d records): waiting for the broker", left)
            if self._stopping():
                self.failed = True
                raise DeliveryFailed(f"stopping with a full producer queue ({left} records): not committing")

    def acknowledged(self, wait: float | None) -> bool:
        """True once the broker acknowledged everything produced so far.

        ``wait=None`` waits as long as it takes (warning every 10 s); ``0`` only checks;
        otherwise waits up to ``wait`` seconds.
        """
        self.producer.poll(0)  # serve delivery reports (errors only)
        if wait is None:
            while self.producer.flush(10) > 0:
                log.warning("waiting for the broker to acknowledge outputs (%d queued)", len(self.producer))
            return True
        if wait <= 0:
            return len(self.producer) == 0
        return self.producer.flush(wait) == 0

    def check(self, what: str = "outputs") -> None:
        """:class:`DeliveryFailed` if any output was not delivered (then never commit again)."""
        if self.errors or self.failed:
            errors, self.errors = self.errors[:5], []
            self.failed = True
            raise DeliveryFailed(f"{what} not delivered, offsets not committed: {errors}", len(errors))

    def close(self, timeout: float = 10.0) -> int:
        """Deliver what is queued (up to ``timeout``), release the client; returns what was left."""
        if self.producer is None:
            return 0
        left = self.producer.flush(timeout)
        self.producer = None  # release the client now (it holds a callback into this object)
        return left
