"""The simulated Pi of one demo scenario and the turbine feeding it.

:class:`SimulatedPi`: its config (its own certificate from the local CA, private Kafka topics,
windows and models as the deployment mode wants them) and its process (``hybridstream edge run``
or ``edge forward``) under the demo's supervisor, started once it consumes its readings.
:class:`Turbine`: the scenario's messages produced into the Pi's readings topic at a fixed rate.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridstream.demo.modes import Mode
from hybridstream.demo.scenarios import Scenario, thing_name
from hybridstream.demo.supervisor import Supervisor
from hybridstream.devtools.edge import create_topics, edge_argv, topics
from model_contract.layout import speed_model_name


class PiError(RuntimeError):
    """The simulated Pi did not start or its topics could not be made."""


@dataclass(frozen=True)
class EdgeSide:
    """What the simulated Pi reaches and runs under: its broker, the MQTT and S3 endpoints as the edge
    sees them (through toxiproxy when the link is shaped), the CA, the supervisor and the CPU quota."""

    bootstrap: str
    mqtt_port: int
    s3_endpoint: str
    mosquitto: Any  # hybridstream.servers.mosquitto.Mosquitto: issues the Pi's certificate
    sup: Supervisor
    env: dict[str, str]
    logs: Path
    work: Path
    cgroup: Any = None  # hybridstream.demo.cpu.CpuQuota of the edge side, if any


class SimulatedPi:
    """One scenario's Pi: ``pi-<scenario>`` with topics ``demo.<scenario>.<role>``."""

    def __init__(self, side: EdgeSide, mode: Mode, scenario: Scenario, batch_dir: Path, window: int) -> None:
        self.side, self.mode = side, mode
        self.thing = thing_name(scenario.name)
        self.name = f"edge-{scenario.name}"  # its process, its log
        self.group = f"edge-{self.thing}"
        self.topics = topics(f"demo.{scenario.name}.")
        self.log = side.logs / f"{self.name}.log"
        try:
            create_topics(side.bootstrap, list(self.topics.values()))
        except RuntimeError as exc:
            raise PiError(str(exc)) from exc
        self.config = self._write_config(scenario, batch_dir, window)

    def _write_config(self, scenario: Scenario, batch_dir: Path, window: int) -> Path:
        side, mq = self.side, self.side.mosquitto
        cert = mq.client_cert(self.thing)  # the simulated Pi's own certificate, signed by the local CA
        cfg = {
            "thing_name": self.thing,
            "bootstrap": side.bootstrap,
            "group_id": self.group,
            "topics": self.topics,
            "models": {
                "batch": str(batch_dir / "model.tflite"),
                "speed": "",
                "speed_name": speed_model_name(self.thing),
                "s3_endpoint_url": side.s3_endpoint,
            },
            "windows": {"max_records": window, "max_seconds": 3600, **self.mode.training.windows()},
            "mqtt": {
                "transport": "mtls",
                "endpoint": "127.0.0.1",
                "port": side.mqtt_port,
                "cert": str(cert.cert),
                "key": str(cert.key),
                "ca": str(mq.ca),
                "flow_control": False,
                "metrics_interval_s": 5,
            },
            "state_dir": str(side.work / f"edge-state-{scenario.name}"),
            **self.mode.inference.edge_config(),
            "metrics_interval_s": 5,
            "log_interval_s": 10,
        }
        path = side.logs / f"edge-{scenario.name}.json"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def start(self, collector: Any, started_before: int) -> None:
        """Start the Pi's process; return once it announced its start (``started_before`` earlier
        "started" events on ``collector``) and its consumer group holds the readings partition."""
        inference, side = self.mode.inference, self.side
        env = {**side.env, "AWS_ENDPOINT_URL_S3": side.s3_endpoint}
        proc = side.sup.spawn(self.name, edge_argv(self.config, inference.command), self.log, env=env)
        if side.cgroup is not None:
            side.cgroup.add(proc.pid)
        deadline = time.monotonic() + 90
        while inference.announces_start and len(collector.events("started")) <= started_before:
            proc = side.sup.children.get(self.name)
            if proc is None or proc.poll() is not None:
                raise PiError(f"the edge app exited at start (log: {self.log})")
            if time.monotonic() > deadline:
                raise PiError(f"the edge app did not start in 90 s (log: {self.log})")
            time.sleep(0.2)
        self._wait_assigned(deadline)

    def _wait_assigned(self, deadline: float) -> None:
        """Wait until the consumer group is stable with its partition assigned, so the first readings
        are not queued behind the group join (that would be start-up time, not latency)."""
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.side.bootstrap, "log_level": 3})
        while time.monotonic() < deadline:
            try:
                desc = admin.describe_consumer_groups([self.group])[self.group].result(10)
                if desc.state == ConsumerGroupState.STABLE and any(m.assignment.topic_partitions for m in desc.members):
                    return
            except Exception:  # the group may not exist yet
                pass
            time.sleep(0.2)
        raise PiError(f"the edge app's consumer group {self.group} got no partition in time (log: {self.name}.log)")

    def kill(self) -> None:
        """SIGKILL the Pi's process (a crash: no shutdown, no commit)."""
        self.side.sup.kill(self.name)

    def stop(self, timeout: float = 45) -> int | None:
        """SIGTERM and wait; the exit code."""
        return self.side.sup.stop(self.name, timeout=timeout)


class Turbine(threading.Thread):
    """Produces ``scenario``'s messages into ``topic`` at ``rate`` per second (schedule-based);
    ``sent``: how many so far, ``send_times``: key -> when its reading was produced (epoch seconds),
    ``failure``: why it stopped early. :meth:`halt` ends it (Ctrl-C: before the servers stop)."""

    def __init__(self, bootstrap: str, topic: str, scenario: Scenario, rate: float) -> None:
        super().__init__(name="demo-turbine", daemon=True)
        from confluent_kafka import Producer

        self.topic, self.messages, self.rate = topic, scenario.messages, rate
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
        self.sent = 0
        self.send_times: dict[str, float] = {}
        self.failure: list[str] = []
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            t0 = time.monotonic()
            for i, msg in enumerate(self.messages):
                if self._halt.is_set():
                    return
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if msg.key is not None:
                    self.send_times[msg.key] = time.time()
                self.producer.produce(self.topic, msg.value, b"turbine-1")
                self.producer.poll(0)
                self.sent = i + 1
            if self.producer.flush(30):
                self.failure.append("readings not all acknowledged by Kafka")
        except Exception as exc:
            self.failure.append(str(exc))
        finally:
            self.producer = None  # closed now: no reconnecting once the broker stops at the end
