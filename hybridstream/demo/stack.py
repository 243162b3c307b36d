"""The local stack as one unit: Kafka, radosgw (S3), ElasticMQ (SQS), mosquitto (IoT Core, mTLS).

:class:`LocalStack` starts the four servers in parallel on 127.0.0.1, refuses a port that is
already taken (naming the server and the port) and stops everything it started when any one of
them fails. Its description (server, port, PIDs, endpoints, credentials file) is written to
``<state_root>/stack.json``, which ``hybridstream local status`` and ``down`` read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridstream.servers.process import STATE_DIR, free_port, pid_alive

SERVERS = ("kafka", "radosgw", "sqs", "mosquitto")
DEFAULT_PORTS = {"kafka": 9092, "radosgw": 7480, "sqs": 9324, "mosquitto": 8883}


class StackError(RuntimeError):
    """A server of the local stack could not start (the message names it)."""


def port_in_use(port: int) -> bool:
    """True if something listens on 127.0.0.1:port (or the port cannot be bound)."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class LocalStack:
    """The four servers; ``ports`` maps a server name to its port (0 = a free one)."""

    state_root: Path = STATE_DIR / "stack"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    queue: str = "training"
    buckets: tuple[str, ...] = ("hybridstream-windows", "hybridstream-models", "hybridstream-results")
    servers: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def stack_file(self) -> Path:
        return self.state_root / "stack.json"

    # ---- start / stop ---------------------------------------------------------------------------
    def start(self, on_started=None, timeout: float = 120.0) -> dict[str, Any]:
        """Start every server (in parallel); on any failure stop those that started and raise StackError."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        ports = {name: self.ports.get(name) or free_port() for name in SERVERS}
        taken = [f"{name} 127.0.0.1:{port}" for name, port in ports.items() if port_in_use(port)]
        if taken:
            raise StackError(f"port already in use: {', '.join(taken)} (stop what holds it, or pick other ports)")
        self.ports = ports
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

        threads = [threading.Thread(target=run, args=(n,), name=f"start-{n}", daemon=True) for n in SERVERS]
        self._threads = threads
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            lines = "\n".join(f"  {name} (127.0.0.1:{ports[name]}): {msg[-1500:]}" for name, msg in errors.items())
            raise StackError(f"the local stack did not come up; everything started was stopped:\n{lines}")
        self._write()
        return self.info

    def _start_kafka(self, port: int, timeout: float) -> None:
        from hybridstream.servers.kafka import KafkaBroker

        broker = KafkaBroker.for_port(port, self.state_root)
        self.servers["kafka"] = broker
        broker.start(timeout=timeout)
        self.info["kafka"] = {"port": port, "bootstrap": broker.bootstrap, "pid_files": [str(broker.pid_file)]}

    def _start_radosgw(self, port: int, timeout: float) -> None:
        from hybridstream.servers.radosgw import RadosGateway

        gw = RadosGateway.for_port(port, self.state_root)
        self.servers["radosgw"] = gw
        gw.start(timeout=timeout)
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

    def _start_sqs(self, port: int, timeout: float) -> None:
        from hybridstream.servers.sqs import SqsServer

        server = SqsServer.for_port(port, self.state_root)
        self.servers["sqs"] = server
        server.start(timeout=timeout)
        url, dlq = server.create_queue(self.queue, max_receive_count=6, visibility_timeout=60)
        self.info["sqs"] = {
            "port": port,
            "endpoint": server.endpoint,
            "queue_url": url,
            "dlq_url": dlq,
            "pid_files": [str(server.pid_file)],
        }

    def _start_mosquitto(self, port: int, timeout: float) -> None:
        from hybridstream.servers.mosquitto import Mosquitto

        broker = Mosquitto.for_port(port, self.state_root)
        self.servers["mosquitto"] = broker
        broker.start(timeout=min(timeout, 30))
        url = f"mqtts://127.0.0.1:{port}"
        self.info["mosquitto"] = {**broker.info(), "url": url, "pid_files": [str(broker.pid_file)]}

    def stop(self) -> list[str]:
        """Stop every server this object started (by PID); returns the names that were running.

        Start-up threads still running (Ctrl-C during :meth:`start`) are waited for first, so no server
        comes up after the stop and outlives us."""
        for thread in getattr(self, "_threads", []):
            thread.join(180)
        stopped = []
        for name in reversed(SERVERS):
            server = self.servers.pop(name, None)  # (radosgw stops rgw, osd, mon itself)
            if server is not None and server.stop():
                stopped.append(name)
        self.stack_file.unlink(missing_ok=True)
        return stopped

    def pids(self) -> dict[str, int]:
        """name -> PID of every running daemon (radosgw has three)."""
        out = {}
        for name, entry in self.info.items():
            for pf in entry.get("pid_files", []):
                pid = _read_pid(Path(pf))
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


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def status(state_root: Path = STATE_DIR / "stack") -> list[dict[str, Any]]:
    """One row per daemon of the stack described in ``stack.json``: server, port, PID, running."""
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
            pid = _read_pid(Path(pf))
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


def down(state_root: Path = STATE_DIR / "stack") -> list[str]:
    """Stop every daemon listed in ``stack.json`` by PID; returns what was stopped."""
    from hybridstream.servers.process import stop_pid

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
