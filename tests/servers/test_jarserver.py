"""The Java servers' shared JVM command line (hybridstream.servers.jarserver) and their fetch/start/stop CLI
(``hybridstream local kafka|sqs``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hybridstream.servers.jarserver import java_command
from hybridstream.servers.kafka import KafkaBroker
from hybridstream.servers.process import free_port


def test_java_command_line():
    cmd = java_command(Path("/x/libs"), "a.Main", "arg", heap="128m", options=("-Dk=v",))
    assert cmd == ["java", "-Xmx128m", "-Dk=v", "-XX:+UseSerialGC", "-cp", "/x/libs/*", "a.Main", "arg"]


def test_the_broker_keeps_its_jvm_options(tmp_path):
    broker = KafkaBroker(port=1, controller_port=2, state_dir=tmp_path, heap="512m")
    cmd = broker._java("kafka.Kafka", "server.properties")
    assert cmd[:3] == ["java", "-Xmx512m", "-Xms256m"] and "-XX:+UseSerialGC" in cmd
    assert f"-Dlog4j2.configurationFile={tmp_path / 'log4j2.properties'}" in cmd
    assert cmd[-2:] == ["kafka.Kafka", "server.properties"] and cmd[cmd.index("-cp") + 1].endswith("libs/*")


@pytest.mark.parametrize(("module", "extra"), [("kafka", "--controller-port"), ("sqs", "--max-receive-count")])
def test_the_same_cli_for_both_servers(module, extra, tmp_path):
    run = [sys.executable, "-m", "hybridstream", "local", module]
    top = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True).stdout
    assert all(word in top for word in ("fetch", "start", "stop"))
    start = subprocess.run([*run, "start", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--port" in start and extra in start
    port = str(free_port())  # nothing runs there: stop says so, starts nothing and exits 0
    stopped = subprocess.run([*run, "stop", "--port", port], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert stopped.stdout.strip() == "not running"
