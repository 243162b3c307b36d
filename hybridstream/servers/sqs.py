"""A real SQS-compatible server on 127.0.0.1: ElasticMQ (jars from Maven Central), moto as fallback.

    hybridstream local sqs fetch             # mvn: jars into .cache/elasticmq-<v>/libs
    hybridstream local sqs start [--port 9324] [--queue training]
    hybridstream local sqs stop  [--port 9324]

ElasticMQ (``org.elasticmq:elasticmq-server_2.13``) implements the SQS API including
long polling, visibility timeouts and redrive policies (a message received more than
``maxReceiveCount`` times moves to the dead-letter queue), and starts in ~2 s with a
256 MB heap. If Java/Maven are unavailable, ``HYBRIDSTREAM_SQS_BACKEND=moto`` runs moto's
server mode as a process instead (same API surface for what the project uses).

The server accepts any credentials; queue URLs look like ``http://127.0.0.1:<port>/000000000000/<name>``.
State (config, log, PID) lives in ``.local/sqs-<port>/``; the server is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from hybridstream.servers.jarserver import java_command
from hybridstream.servers.maven import fetch_jars
from hybridstream.servers.process import (
    CACHE_DIR,
    STATE_DIR,
    SingleProcessServer,
    free_port,
    listening,
    spawn,
    wait_for_port,
)

ELASTICMQ_VERSION = os.environ.get("HYBRIDSTREAM_ELASTICMQ_VERSION", "1.7.1")
ELASTICMQ_HOME = CACHE_DIR / f"elasticmq-{ELASTICMQ_VERSION}"
REGION = "us-east-1"
ACCOUNT = "000000000000"


_CONF = """include classpath("application.conf")
node-address {{ protocol = http, host = 127.0.0.1, port = {port}, context-path = "" }}
rest-sqs {{ enabled = true, bind-port = {port}, bind-hostname = "127.0.0.1", sqs-limits = strict }}
rest-stats {{ enabled = false }}
aws {{ region = {region}, accountId = {account} }}
"""


def fetch(quiet: bool = True) -> Path:
    """Download ElasticMQ's jars with Maven (cached); return the libs folder."""
    return fetch_jars(
        ELASTICMQ_HOME,
        [f"org.elasticmq:elasticmq-server_2.13:{ELASTICMQ_VERSION}"],
        marker="elasticmq-server_2.13-*.jar",
        quiet=quiet,
        hint="or set HYBRIDSTREAM_SQS_BACKEND=moto",
    )


@dataclass
class SqsServer(SingleProcessServer):
    """One local SQS server. ``endpoint`` is ``http://127.0.0.1:<port>``."""

    process_name: ClassVar[str] = "sqs"

    port: int
    state_dir: Path
    backend: str = field(default_factory=lambda: os.environ.get("HYBRIDSTREAM_SQS_BACKEND", "elasticmq"))
    heap: str = "256m"

    @classmethod
    def for_port(cls, port: int | None = None, state_root: Path = STATE_DIR) -> SqsServer:
        port = port or free_port()
        return cls(port=port, state_dir=state_root / f"sqs-{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        if self.backend == "moto":
            moto = Path(sys.executable).with_name("moto_server")
            if not moto.exists():
                raise RuntimeError("moto_server not found: pip install 'moto[server]'")
            return [str(moto), "-H", "127.0.0.1", "-p", str(self.port)]
        if self.backend != "elasticmq":
            raise ValueError(f"unknown SQS backend {self.backend!r} (elasticmq or moto)")
        if shutil.which("java") is None:
            raise RuntimeError("java not found: install a JRE 17+, or set HYBRIDSTREAM_SQS_BACKEND=moto")
        libs = fetch()
        conf = self.state_dir / "elasticmq.conf"
        conf.write_text(_CONF.format(port=self.port, region=REGION, account=ACCOUNT))
        options = ("-XX:TieredStopAtLevel=1", f"-Dconfig.file={conf}")
        return java_command(libs, "org.elasticmq.server.Main", heap=self.heap, options=options)

    def start(self, timeout: float = 60.0) -> SqsServer:
        """Start the server; return when it answers SQS API calls."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop()
        if listening(self.port):
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use (another SQS server?): pick --port")
        proc = spawn(self._command(), self.log_file, self.pid_file)
        deadline = time.monotonic() + timeout
        try:
            wait_for_port(self.port, timeout, proc, self.log_file)
            while True:  # the port opens a moment before the API is ready
                try:
                    self.client().list_queues()
                    return self
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        except Exception:
            self.stop()
            raise

    def client(self):
        """A boto3 SQS client for this server (it accepts any credentials)."""
        import boto3

        return boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        )

    def create_queue(self, name: str, max_receive_count: int = 3, visibility_timeout: int = 30) -> tuple[str, str]:
        """Create ``name`` and ``name-dlq`` with a redrive policy; return (queue URL, DLQ URL)."""
        sqs = self.client()
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)})
        attrs = {"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout)}
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        return url, dlq
