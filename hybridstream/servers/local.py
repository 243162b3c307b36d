"""The local servers as one unit: Kafka, radosgw (S3), ElasticMQ (SQS), mosquitto (IoT Core, mTLS)
and toxiproxy (network faults), all on 127.0.0.1.

:class:`LocalServers` is the one way servers are started: by ``hybridstream local up``, the demo,
the chaos scenarios and the test fixtures. :meth:`LocalServers.start` brings a set up in parallel,
refuses a port that is already taken (naming the server and the port) and stops everything it
started when any one of them fails; :meth:`LocalServers.get` starts one server at first use. Its
description (server, port, PIDs, endpoints, credentials file) is written to
``<state_root>/stack.json``, which ``hybridstream local status`` and ``down`` read.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridstream.servers.process import STATE_DIR, free_port, pid_alive, port_in_use, read_pid, stop_pid

if TYPE_CHECKING:
    from hybridstream.servers.kafka import KafkaBroker
    from hybridstream.servers.mosquitto import Mosquitto
    from hybridstream.servers.radosgw import RadosGateway
    from hybridstream.servers.sqs import SqsServer
    from hybridstream.servers.toxiproxy import Toxiproxy

log = logging.getLogger(__name__)

SERVERS = ("kafka", "radosgw", "sqs", "mosquitto", "toxiproxy")
UP = ("kafka", "radosgw", "sqs", "mosquitto")  # what `hybridstream local up` and the demo start
DEFAULT_PORTS = {"kafka": 9092, "radosgw": 7480, "sqs": 9324, "mosquitto": 8883, "toxiproxy": 8474}
DEFAULT_CONTROLLER_PORT = 9093  # Kafka's KRaft controller, for `hybridstream local kafka start`
STACK_ROOT = STATE_DIR / "stack"  # where `hybridstream local up` keeps its servers and stack.json
BUCKETS = ("hybridstream-windows", "hybridstream-models", "hybridstream-results")
QUEUE = "training"


class ServersError(RuntimeError):
    """A local server could not start (the message names it)."""


@dataclass
class LocalServers:
    """Servers under ``state_root``; ``ports`` maps a server name to its port (missing or 0: a free one).

    ``queue`` (with its DLQ) and ``buckets`` are created when SQS and radosgw start (None / empty: none).
    """

    state_root: Path = STACK_ROOT
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    queue: str | None = QUEUE
    buckets: tuple[str, ...] = BUCKETS
    servers: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def bare(cls, state_root: Path) -> LocalServers:
        """Free ports, no queue, no buckets: what the tests and the chaos scenarios start."""
        return cls(state_root=Path(state_root), ports={}, queue=None, buckets=())

    @property
    def stack_file(self) -> Path:
        return self.state_root / "stack.json"

    # ---- start / stop ---------------------------------------------------------------------------
    def start(self, names: tuple[str, ...] = UP, on_started=None, timeout: float = 120.0) -> dict[str, Any]:
        """Start ``names`` in parallel; on any failure stop those that started and raise ServersError."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        ports = {name: self.ports.get(name) or free_port() for name in names}
        shared = sorted({port for port in ports.values() if list(ports.values()).count(port) > 1})
        if shared:
            named = ", ".join(f"{p} ({' and '.join(n for n in ports if ports[n] == p)})" for p in shared)
            raise ServersError(f"one port for two servers: {named} (give each server its own port)")
        taken = [f"{name} 127.0.0.1:{port}" for name, port in ports.items() if port_in_use(port)]
        if taken:
            raise ServersError(f"port already in use: {', '.join(taken)} (stop what holds it, or pick other ports)")
        self.ports = {**self.ports, **ports}
        errors: dict[str, str] = {}

        def run(name: str) -> None:
            began = time.monotonic()
            try:
                getattr(self, f"_start_{name}")(ports[name], timeout)
                self.timings[name] = round(time.monotonic() - began, 1)
                if on_started is not None:
                    on_started(name, self)
            except Exception as exc:  # reported below with the server's name
                errors[name] = str(exc).strip() or type(exc).__name__

        threads = [threading.Thread(target=run, args=(n,), name=f"start-{n}", daemon=True) for n in names]
        self._threads = threads
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            lines = "\n".join(f"  {name} (127.0.0.1:{ports[name]}): {msg[-1500:]}" for name, msg in errors.items())
            raise ServersError(f"the local stack did not come up; everything started was stopped:\n{lines}")
        self._write()
        return self.info

    def get(self, name: str, timeout: float | None = None) -> Any:
        """The server ``name``, started now if it is not running yet (``timeout``: its own default)."""
        if name not in SERVERS:
            raise ValueError(f"unknown server {name!r}: one of {', '.join(SERVERS)}")
        with self._lock:
            if name not in self.servers:
                self.state_root.mkdir(parents=True, exist_ok=True)
                port = self.ports.get(name) or free_port()
                began = time.monotonic()
                try:
                    getattr(self, f"_start_{name}")(port, timeout)
                except BaseException:
                    server = self.servers.pop(name, None)
                    self.info.pop(name, None)
                    if server is not None:
                        server.stop()
                    raise
                self.ports[name] = port
                self.timings[name] = round(time.monotonic() - began, 1)
                self._write()
            return self.servers[name]

    def kafka(self) -> KafkaBroker:
        return self.get("kafka")

    def radosgw(self) -> RadosGateway:
        return self.get("radosgw")

    def sqs(self) -> SqsServer:
        return self.get("sqs")

    def mosquitto(self) -> Mosquitto:
        return self.get("mosquitto")

    def toxiproxy(self) -> Toxiproxy:
        return self.get("toxiproxy")

    @staticmethod
    def _timeout(timeout: float | None, cap: float | None = None) -> dict[str, float]:
        if timeout is None:
            return {}
        return {"timeout": min(timeout, cap) if cap else timeout}

    def _start_kafka(self, port: int, timeout: float | None) -> None:
        from hybridstream.servers.kafka import KafkaBroker

        broker = KafkaBroker.for_port(port, self.state_root)
        self.servers["kafka"] = broker
        broker.start(**self._timeout(timeout))
        self.info["kafka"] = {"port": port, "bootstrap": broker.bootstrap, "pid_files": [str(broker.pid_file)]}

    def _start_radosgw(self, port: int, timeout: float | None) -> None:
        from hybridstream.servers.radosgw import RadosGateway

        gw = RadosGateway.for_port(port, self.state_root)
        self.servers["radosgw"] = gw
        gw.start(**self._timeout(timeout))
        s3 = gw.client()
        for bucket in self.buckets:
            s3.create_bucket(Bucket=bucket)
        self.info["radosgw"] = {
            "port": port,
            "endpoint": gw.endpoint,
            "keys_file": str(gw.keys_file),
            "buckets": list(self.buckets),
            "pid_files": [str(gw.pid_file(d)) for d in ("mon", "osd", "rgw")],
        }

    def _start_sqs(self, port: int, timeout: float | None) -> None:
        from hybridstream.servers.sqs import SqsServer

        server = SqsServer.for_port(port, self.state_root)
        self.servers["sqs"] = server
        server.start(**self._timeout(timeout))
        entry: dict[str, Any] = {"port": port, "endpoint": server.endpoint, "pid_files": [str(server.pid_file)]}
        if self.queue:
            url, dlq = server.create_queue(self.queue, max_receive_count=6, visibility_timeout=60)
            entry |= {"queue_url": url, "dlq_url": dlq}
        self.info["sqs"] = entry

    def _start_mosquitto(self, port: int, timeout: float | None) -> None:
        from hybridstream.servers.mosquitto import Mosquitto

        broker = Mosquitto.for_port(port, self.state_root)
        self.servers["mosquitto"] = broker
        broker.start(**self._timeout(timeout, cap=30))
        url = f"mqtts://127.0.0.1:{port}"
        self.info["mosquitto"] = {**broker.info(), "url": url, "pid_files": [str(broker.pid_file)]}

    def _start_toxiproxy(self, port: int, timeout: float | None) -> None:
        from hybridstream.servers.toxiproxy import Toxiproxy

        proxy = Toxiproxy.for_port(port, self.state_root)
        self.servers["toxiproxy"] = proxy
        proxy.start(**self._timeout(timeout, cap=30))
        self.info["toxiproxy"] = {"port": port, "endpoint": proxy.url, "pid_files": [str(proxy.pid_file)]}

    def stop(self) -> list[str]:
        """Stop every server this object started (by PID); returns the names that were running.

        Start-up threads still running (Ctrl-C during :meth:`start`) are waited for first, so no server
        comes up after the stop and outlives us."""
        return self._stop_all(lambda server: server.stop())

    def destroy(self) -> list[str]:
        """:meth:`stop`, then delete ``state_root`` (data, logs, certificates, keys)."""
        stopped = self._stop_all(_stop_and_wipe)
        shutil.rmtree(self.state_root, ignore_errors=True)
        return stopped

    def _stop_all(self, stop) -> list[str]:
        for thread in self._threads:
            thread.join(180)
        stopped = []
        for name in reversed(SERVERS):
            server = self.servers.pop(name, None)  # (radosgw stops rgw, osd, mon itself)
            if server is None:
                continue
            try:
                if stop(server):
                    stopped.append(name)
            except Exception as exc:  # keep stopping the others
                log.warning("stopping %s: %s", name, exc)
        self.stack_file.unlink(missing_ok=True)
        return stopped

    def pids(self) -> dict[str, int]:
        """name -> PID of every running daemon (radosgw has three)."""
        out = {}
        for name, entry in self.info.items():
            for pf in entry.get("pid_files", []):
                pid = read_pid(Path(pf))
                if pid:
                    label = name if len(entry["pid_files"]) == 1 else f"{name}:{Path(pf).stem}"
                    out[label] = pid
        return out

    # ---- stack.json ---------------------------------------------------------------------------
    def _write(self) -> None:
        self.stack_file.write_text(json.dumps({"started_at": time.time(), "servers": self.info}, indent=1))

    def s3_env(self) -> dict[str, str]:
        keys = json.loads(Path(self.info["radosgw"]["keys_file"]).read_text())
        return {
            "AWS_ACCESS_KEY_ID": keys["access_key"],
            "AWS_SECRET_ACCESS_KEY": keys["secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": keys["endpoint"],
            "HYBRIDSTREAM_S3_ENDPOINT": keys["endpoint"],
        }

    def s3_client(self):
        return self.servers["radosgw"].client()


def _stop_and_wipe(server: Any) -> bool:
    was_running = server.stop()
    server.destroy()
    return was_running


def status(state_root: Path = STACK_ROOT) -> list[dict[str, Any]]:
    """One row per daemon of the servers described in ``stack.json``: server, port, PID, running."""
    path = state_root / "stack.json"
    if not path.exists():
        return []
    info = json.loads(path.read_text())["servers"]
    rows = []
    for name in SERVERS:
        entry = info.get(name)
        if not entry:
            continue
        for pf in entry.get("pid_files", []):
            pid = read_pid(Path(pf))
            daemon = Path(pf).stem if len(entry["pid_files"]) > 1 else name
            rows.append(
                {
                    "server": name,
                    "daemon": daemon,
                    "port": entry["port"],
                    "pid": pid,
                    "running": bool(pid) and pid_alive(pid),
                    "listening": port_in_use(entry["port"]),
                    "endpoint": entry.get("url") or entry.get("endpoint") or entry.get("bootstrap"),
                }
            )
    return rows


def down(state_root: Path = STACK_ROOT) -> list[str]:
    """Stop every daemon listed in ``stack.json`` by PID; returns what was stopped."""
    path = state_root / "stack.json"
    if not path.exists():
        return []
    info = json.loads(path.read_text())["servers"]
    stopped = []
    for name in reversed(SERVERS):
        for pf in reversed(info.get(name, {}).get("pid_files", [])):  # radosgw: rgw, osd, then mon
            if stop_pid(Path(pf)):
                stopped.append(f"{name}:{Path(pf).stem}")
    path.unlink(missing_ok=True)
    return stopped
