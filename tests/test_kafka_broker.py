"""The local broker the other tests rely on: a real round trip through Apache Kafka."""

from confluent_kafka import Consumer, Producer


def test_produce_consume_round_trip(kafka_bootstrap, topic_prefix):
    topic = topic_prefix + "roundtrip"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(100):
        producer.produce(topic, key=b"dev", value=str(i).encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    for _ in range(30):
        got += [m.value().decode() for m in consumer.consume(100, 1.0) if m.error() is None]
        if len(got) >= 100:
            break
    consumer.close()
    assert got == [str(i) for i in range(100)]
