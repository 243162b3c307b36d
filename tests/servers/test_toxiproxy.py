"""The toxiproxy wrapper against the real server binary: a TCP echo behind a proxy, then faults."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from hybridstream.servers.toxiproxy import Toxiproxy, ToxiproxyError


class _Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_server():
    server = _Echo(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory):
    server = Toxiproxy.for_port(state_root=tmp_path_factory.mktemp("toxiproxy")).start()
    yield server
    server.destroy()


def _round_trip(port: int, payload: bytes = b"ping", timeout: float = 5.0) -> float:
    """Seconds for one echo of ``payload`` over a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        start = time.perf_counter()
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by peer")
            got += chunk
        elapsed = time.perf_counter() - start
    assert got == payload
    return elapsed


def test_latency_toxic_adds_measurable_delay(toxiproxy, echo_server):
    proxy = toxiproxy.create_proxy("echo-latency", upstream=f"127.0.0.1:{echo_server}")
    try:
        baseline = min(_round_trip(proxy.port) for _ in range(3))
        proxy.latency(150, jitter=10)
        delayed = min(_round_trip(proxy.port) for _ in range(3))
        assert [t["type"] for t in proxy.toxics()] == ["latency"]
        proxy.clear_toxics()
        after = min(_round_trip(proxy.port) for _ in range(3))
    finally:
        proxy.delete()
    assert baseline < 0.1
    assert delayed >= 0.13  # 150 ms ± 10 ms on the way back
    assert after < 0.1


def test_disabled_proxy_refuses_connections_and_recovers(toxiproxy, echo_server):
    proxy = toxiproxy.create_proxy("echo-down", upstream=f"127.0.0.1:{echo_server}")
    try:
        _round_trip(proxy.port)
        with proxy.down():
            assert proxy.info()["enabled"] is False
            with pytest.raises(OSError):
                _round_trip(proxy.port, timeout=2)
        _round_trip(proxy.port)
    finally:
        proxy.delete()


def test_reset_peer_and_bandwidth_and_reset(toxiproxy, echo_server):
    proxy = toxiproxy.create_proxy("echo-faults", upstream=f"127.0.0.1:{echo_server}")
    try:
        proxy.reset_peer(0, stream="upstream")
        with pytest.raises(OSError):  # RST before any data comes back
            _round_trip(proxy.port, timeout=2)
        toxiproxy.reset()  # removes every toxic
        assert proxy.toxics() == []
        proxy.bandwidth(50)  # 50 KB/s server -> client: 25 KB takes ~0.5 s
        assert _round_trip(proxy.port, b"x" * 25_000) >= 0.3
        proxy.slicer(average_size=100, size_variation=50, delay_us=10)
        assert _round_trip(proxy.port, b"y" * 2000) > 0
    finally:
        proxy.delete()
    assert "echo-faults" not in toxiproxy.proxies()


def test_api_errors_are_clear(toxiproxy):
    with pytest.raises(ToxiproxyError, match="HTTP 404"):
        toxiproxy.proxy("no-such-proxy")
    with pytest.raises(ValueError, match="stream"):
        toxiproxy.create_proxy("bad-stream", upstream="127.0.0.1:9").add_toxic("latency", stream="sideways")
