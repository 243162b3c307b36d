"""A commit point commits what was consumed before it, never what the loop consumes right after it.

librdkafka resolves an asynchronous ``commit()`` without offsets on its own thread, from the offsets
stored *then*: a batch consumed meanwhile (its window rows not flushed, its devices' state not saved)
could be committed with it, and a SIGKILL before the next commit point then lost those readings'
window rows (``make chaos`` edge-sigkill: "every reading in a delivered window").
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from edge_app import kafka_io
from hybridstream.devtools.edge import produce, wait_for

pytestmark = pytest.mark.kafka

TRIALS = 200


def test_an_async_commit_covers_only_what_was_consumed_before_it(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}readings"
    produce(kafka_bootstrap, topic, [b"%d" % i for i in range(TRIALS * 3)])
    got: list[int] = []

    def on_commit(err, partitions) -> None:  # noqa: ANN001
        assert err is None, err
        got.append(partitions[0].offset)

    consumer = Consumer(
        {
            **kafka_io.CONSUMER_DEFAULTS,
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{topic_prefix}group",
            "on_commit": on_commit,
        }
    )
    try:
        consumer.subscribe([topic])
        assert consumer.consume(1, 30), "nothing consumed"
        wants = []
        for _ in range(TRIALS):
            assert consumer.consume(1, 10)
            wants.append(consumer.position(consumer.assignment())[0].offset)
            kafka_io.commit(consumer, asynchronous=True)
            assert consumer.consume(1, 10)  # the loop goes on at once (the record already fetched)
        consumer.pause(consumer.assignment())  # no more records: serve the commits' callbacks
        assert wait_for(lambda: consumer.consume(1, 0.05) == [] and len(got) >= TRIALS, 30), len(got)
        wrong = [(w, g) for w, g in zip(wants, got, strict=True) if w != g]
        assert not wrong, f"{len(wrong)} of {TRIALS} commits covered records consumed after them: {wrong[:5]}"
    finally:
        consumer.close()
