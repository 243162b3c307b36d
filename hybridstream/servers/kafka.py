"""A real Apache Kafka broker (KRaft, single node) on 127.0.0.1, jars from Maven Central.

    hybridstream local kafka fetch          # mvn: jars into .cache/kafka-<v>/libs
    hybridstream local kafka start [--port 9092]
    hybridstream local kafka stop

State (data, log, pid) lives in ``.local/kafka-<port>/``; a broker is stopped by its PID.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hybridstream.servers.jarserver import java_command
from hybridstream.servers.maven import fetch_jars
from hybridstream.servers.process import CACHE_DIR, STATE_DIR, SingleProcessServer, free_port, spawn, wait_for_port
from model_contract import kafka_broker

KAFKA_VERSION = os.environ.get("HYBRIDSTREAM_KAFKA_VERSION", kafka_broker.KAFKA_VERSION)
KAFKA_HOME = CACHE_DIR / f"kafka-{KAFKA_VERSION}"
# what the Pi's broker shares (model_contract.kafka_broker), re-exported for this module's users
LOG4J2_PROPERTIES = kafka_broker.LOG4J2_PROPERTIES
kraft_properties = kafka_broker.kraft_properties


def fetch(quiet: bool = True) -> Path:
    """Download the broker's jars with Maven (cached); return the libs folder."""
    return fetch_jars(
        KAFKA_HOME, kafka_broker.kafka_coordinates(KAFKA_VERSION), marker=kafka_broker.BROKER_JAR_GLOB, quiet=quiet
    )


@dataclass
class KafkaBroker(SingleProcessServer):
    """One single-node KRaft broker. ``bootstrap`` is ``127.0.0.1:<port>``."""

    process_name: ClassVar[str] = "broker"

    port: int
    controller_port: int
    state_dir: Path
    heap: str = "512m"
    initial_heap: str | None = None  # -Xms; default min(256m, heap) (the Pi's recipe: 64m)

    @classmethod
    def for_port(cls, port: int | None = None, state_root: Path = STATE_DIR) -> KafkaBroker:
        port = port or free_port()
        return cls(port=port, controller_port=free_port(), state_dir=state_root / f"kafka-{port}")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        text = kraft_properties(self.port, self.controller_port, self.state_dir / "data")
        path = self.state_dir / "server.properties"
        path.write_text(text)
        (self.state_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        options = (
            f"-Xms{self.initial_heap or str(min(256, int(self.heap.rstrip('m')))) + 'm'}",
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
        )
        return java_command(KAFKA_HOME / "libs", main, *args, heap=self.heap, options=options)

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Format storage (first time) and start the broker; return when it accepts connections."""
        libs = fetch()
        if not libs.is_dir():
            raise RuntimeError(f"Kafka jars missing in {libs}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.state_dir / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        proc = spawn(self._java("kafka.Kafka", str(config)), self.log_file, self.pid_file)
        try:
            wait_for_port(self.port, timeout, proc, self.log_file)
        except Exception:
            self.stop()
            raise
        return self
