"""What the local Java servers (Apache Kafka, ElasticMQ) share: the JVM command line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def java_command(libs: Path, main: str, *args: str, heap: str, options: Sequence[str] = ()) -> list[str]:
    """``java`` with a fixed heap, the serial GC (small, single-node servers) and ``libs/*`` on the
    class path, running ``main`` with ``args``; ``options`` are extra JVM options."""
    return ["java", f"-Xmx{heap}", *options, "-XX:+UseSerialGC", "-cp", str(Path(libs) / "*"), main, *args]
