"""What the Pi's Kafka broker and the local one share (stdlib only): the Apache Kafka release,
its Maven coordinates, the single-node KRaft ``server.properties`` and the log4j2 config.

Neutral on purpose: the Greengrass recipe of the Pi's broker (``infra.recipes``) and the local
broker (``hybridstream.servers.kafka``) both import it, and neither imports the other. Nothing
here runs on a device (the recipe embeds the text); the module is plain text + string formatting.

>>> "listeners=PLAINTEXT://127.0.0.1:9092," in kraft_properties(9092, 9093, "/d")
True
>>> kafka_coordinates("4.4.0")[0]
'org.apache.kafka:kafka_2.13:4.4.0'
"""

from __future__ import annotations

from pathlib import PurePath

KAFKA_VERSION = "4.4.0"  # the one place the release is written (override: HYBRIDSTREAM_KAFKA_VERSION / context)
SCALA_VERSION = "2.13"
LOG4J_SLF4J = "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3"  # the broker's logging backend
MIN_JAVA = 17  # Kafka 4 needs Java 17+ (Debian 11's default-jre is 11)
BROKER_JAR_GLOB = f"kafka_{SCALA_VERSION}-*.jar"  # marks a complete jars folder
PI_INITIAL_HEAP = "64m"  # the Pi broker's -Xms: the heap grows only as far as the load needs
PI_HEAP = "384m"  # the Pi broker's -Xmx (context kafka_heap; docs/deploy.md "Which Pi" has what it costs)
# The log cleaner (``__consumer_offsets`` is compacted) allocates its dedupe buffer, 128 MiB by default
# (log.cleaner.dedupe.buffer.size), when the broker starts: with -Xmx128m the broker exits at startup
# (LogCleaner.startup, measured by hybridstream.devtools.pi_footprint). 256m is the smallest we measured.
MIN_HEAP_MB = 256


def heap_mb(heap: str) -> int:
    """A JVM heap size as the recipe takes it (``<n>m`` or ``<n>g``) in MiB; ValueError otherwise.

    >>> heap_mb("384m"), heap_mb("1g")
    (384, 1024)
    """
    text = heap.strip().lower()
    if len(text) < 2 or text[-1] not in "mg" or not text[:-1].isdigit():
        raise ValueError(f"heap {heap!r}: write <n>m or <n>g, e.g. 384m")
    mb = int(text[:-1]) * (1024 if text[-1] == "g" else 1)
    if mb < MIN_HEAP_MB:
        raise ValueError(f"heap {heap!r}: at least {MIN_HEAP_MB}m (the log cleaner alone takes 128 MiB at startup)")
    return mb


def kafka_coordinates(version: str = KAFKA_VERSION) -> list[str]:
    """Maven ``group:artifact:version`` of the broker and its logging backend (dependencies follow)."""
    return [f"org.apache.kafka:kafka_{SCALA_VERSION}:{version}", LOG4J_SLF4J]


LOG4J2_PROPERTIES = """status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
"""


def kraft_properties(
    port: int | str, controller_port: int | str, data_dir: PurePath | str, retention_hours: int | str = 24
) -> str:
    """server.properties of a single-node KRaft broker+controller listening on 127.0.0.1 only.

    Arguments may be placeholders (the Greengrass recipe of the Pi's broker passes
    ``{configuration:/port}`` and the like), so the local broker and the Pi's share one config.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": str(retention_hours),
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())
