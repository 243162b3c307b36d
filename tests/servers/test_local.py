"""The local servers as one unit (hybridstream.servers.local): a taken port or a server that does
not come up is named, and everything started so far is stopped; one server starts at first use."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hybridstream.servers.local import LocalServers, ServersError, status
from hybridstream.servers.process import pid_alive

pytestmark = [pytest.mark.kafka, pytest.mark.s3]


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        stack = LocalServers(
            state_root=tmp_path / "stack", ports={"kafka": 0, "radosgw": 0, "sqs": port, "mosquitto": 0}
        )
        with pytest.raises(ServersError, match=rf"port already in use: sqs 127\.0\.0\.1:{port}"):
            stack.start()
    assert stack.servers == {} and status(tmp_path / "stack") == []


def test_a_server_that_does_not_come_up_stops_the_others(tmp_path):
    # mosquitto finds a server certificate it cannot load (its state folder holds a broken one): it exits,
    # the others started; the stack names it and stops them
    from hybridstream.servers.mosquitto import Mosquitto
    from hybridstream.servers.process import free_port

    port = free_port()
    broker = Mosquitto.for_port(port, tmp_path / "stack")
    broker.make_certs()
    (broker.certs / "server.crt").write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    stack = LocalServers(state_root=tmp_path / "stack", ports={"mosquitto": port})
    started: list[str] = []
    pids: list[int] = []

    def note(name, st):
        started.append(name)
        pids.extend(int(Path(pf).read_text()) for pf in st.info[name]["pid_files"])

    try:
        with pytest.raises(ServersError) as err:
            stack.start(on_started=note)
    finally:
        stack.stop()  # a no-op when the stack did its job; no servers left behind when it did not
    assert "mosquitto (127.0.0.1:" in str(err.value) and "everything started was stopped" in str(err.value)
    assert "mosquitto" not in started and started  # the others did come up ...
    assert pids and not [pid for pid in pids if pid_alive(pid)]  # ... and were stopped


def test_a_server_starts_at_first_use_once_and_destroy_removes_its_state(tmp_path):
    servers = LocalServers.bare(tmp_path / "servers")
    with pytest.raises(ValueError, match="unknown server 'ftp'"):
        servers.get("ftp")
    try:
        broker = servers.mosquitto()
        assert servers.get("mosquitto") is broker and broker.running()
        (row,) = status(servers.state_root)
        assert (row["server"], row["port"], row["running"]) == ("mosquitto", broker.port, True)
        pid = int(broker.pid_file.read_text())
        broker.kill()  # SIGKILL, gone when it returns
        assert not pid_alive(pid)
    finally:
        servers.destroy()
    assert not servers.state_root.exists() and servers.servers == {}


def test_two_servers_never_get_one_port(tmp_path):
    # CI once gave mosquitto and Kafka the same free port (two bind(0) calls in a row, neither used
    # yet): Kafka's readiness check then saw mosquitto listening and the demo could not create a topic
    from hybridstream.servers.process import free_port

    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    stack = LocalServers(state_root=tmp_path / "stack", ports={"kafka": ports[0], "mosquitto": ports[0]})
    with pytest.raises(ServersError, match=rf"one port for two servers: {ports[0]} \(kafka and mosquitto\)"):
        stack.start()
    assert stack.servers == {}
