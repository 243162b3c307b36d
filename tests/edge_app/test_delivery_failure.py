"""An output the broker refuses stops the app WITHOUT committing: the readings will be replayed."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from edge_app.app import EdgeApp
from edge_app.config import EdgeConfig
from edge_app.kafka_io import DeliveryFailed
from hybridstream.devtools.edge import edge_config, produce, read_rows, reading_json

pytestmark = pytest.mark.kafka


def test_undeliverable_predictions_stop_the_app_without_committing(
    kafka_bootstrap, topic_prefix, edge_models, tmp_path
):
    cfg = edge_config(tmp_path, kafka_bootstrap, topic_prefix, edge_models)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    too_small = NewTopic(cfg["topics"]["predictions"], 1, config={"max.message.bytes": "200"})
    for future in admin.create_topics([too_small]).values():
        future.result(30)
    rows = read_rows(edge_models.test_csv, 100, 20)
    produce(kafka_bootstrap, cfg["topics"]["readings"], [reading_json(r, "t1") for r in rows])

    app = EdgeApp(EdgeConfig.from_dict({**cfg, "kafka": {**cfg["kafka"], "producer": {"message.timeout.ms": 5000}}}))
    with pytest.raises(DeliveryFailed, match="not delivered"):
        app.run(max_seconds=60)

    assert app.counters.delivery_errors >= 1
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": cfg["group_id"]})
    committed = probe.committed([TopicPartition(cfg["topics"]["readings"], 0)], timeout=10)
    probe.close()
    assert committed[0].offset < 0  # nothing committed: a restart processes all 20 readings again
