"""A real TCP fault proxy on 127.0.0.1: Shopify's toxiproxy (built from its Go module, cached in ``.cache/``).

    hybridstream local toxiproxy fetch            # go install ...@v2.12.0 into .cache/ (once)
    hybridstream local toxiproxy start [--port 8474]
    hybridstream local toxiproxy stop  [--port 8474]

Put a proxy between a client and a server, then break the link on purpose::

    tp = Toxiproxy.for_port(state_root=tmp).start()
    s3 = tp.create_proxy("s3", upstream="127.0.0.1:7480")   # listens on 127.0.0.1:<free port>
    s3.latency(200, jitter=50)                                # ms, server -> client by default
    s3.bandwidth(64, stream="upstream")                       # KB/s, client -> server
    s3.reset_peer(500)                                        # reset connections after 500 ms
    with s3.down():                                           # link down: connections refused / cut
        ...
    s3.clear_toxics(); tp.stop()

The Python side speaks toxiproxy's HTTP API (``urllib``, no extra dependency). Toxics:
``latency`` (ms, jitter ms), ``bandwidth`` (KB/s), ``timeout`` (stop all data, close after ms; 0 =
never), ``reset_peer`` (TCP RST after ms), ``slicer`` (split into small packets), ``limit_data``,
``slow_close``. ``stream`` is ``downstream`` (server -> client) or ``upstream`` (client -> server).
Disabling a proxy closes its connections and stops listening: new connections are refused.
State (log, PID) lives in ``.local/toxiproxy-<port>/``; the server is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hybridstream.servers.process import (
    CACHE_DIR,
    STATE_DIR,
    SingleProcessServer,
    free_port,
    spawn,
    wait_for_port,
)

TOXIPROXY_VERSION = os.environ.get("HYBRIDSTREAM_TOXIPROXY_VERSION", "2.12.0")
TOXIPROXY_HOME = CACHE_DIR / f"toxiproxy-{TOXIPROXY_VERSION}"
BINARY = TOXIPROXY_HOME / "server"
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
STREAMS = ("downstream", "upstream")


class ToxiproxyError(RuntimeError):
    """The binary is missing, the server did not start, or its API refused a call."""


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    return "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None


def fetch(quiet: bool = True) -> Path:
    """Build the server with ``go install`` into ``.cache/toxiproxy-<v>/`` when missing; return the binary."""
    if BINARY.exists():
        return BINARY
    go = _go()
    if go is None:
        raise ToxiproxyError("go is not installed: toxiproxy is built from its Go module (scripts/setup.sh)")
    TOXIPROXY_HOME.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(TOXIPROXY_HOME), "CGO_ENABLED": "0"}
    proc = subprocess.run(
        [go, "install", f"{MODULE}@v{TOXIPROXY_VERSION}"],
        env=env,
        capture_output=quiet,
        text=True,
    )
    if proc.returncode or not BINARY.exists():
        tail = (proc.stderr or "")[-1500:] if quiet else ""
        raise ToxiproxyError(f"go install {MODULE}@v{TOXIPROXY_VERSION} failed (exit {proc.returncode}){tail}")
    return BINARY


@dataclass
class Toxiproxy(SingleProcessServer):
    """toxiproxy's server on ``127.0.0.1:port`` (its HTTP API); proxies listen on other free ports."""

    process_name: ClassVar[str] = "toxiproxy"
    host: ClassVar[str] = "127.0.0.1"

    port: int
    state_dir: Path
    timeout: float = 10.0

    @classmethod
    def for_port(cls, port: int | None = None, state_root: Path | None = None) -> Toxiproxy:
        port = port or free_port()
        return cls(port=port, state_dir=Path(state_root or STATE_DIR) / f"toxiproxy-{port}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- process ------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> Toxiproxy:
        """Start the server (building it first if needed); return when its API answers."""
        binary = fetch()
        if self.running():
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        proc = spawn([str(binary), "-host", self.host, "-port", str(self.port)], self.log_file, self.pid_file)
        try:
            wait_for_port(self.port, timeout, proc, self.log_file)
            self.version()
        except Exception:
            self.stop()
            raise
        return self

    # ---- HTTP API -----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; the decoded JSON answer (None when empty). Raises ToxiproxyError on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise ToxiproxyError(f"toxiproxy {method} {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ToxiproxyError(f"toxiproxy at {self.url} unreachable: {exc}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace").strip()

    def version(self) -> str:
        answer = self.request("GET", "/version")
        return answer.get("version", "") if isinstance(answer, dict) else str(answer)

    def proxies(self) -> dict[str, dict[str, Any]]:
        """Every proxy by name, as the API reports it (listen, upstream, enabled, toxics)."""
        return self.request("GET", "/proxies") or {}

    def create_proxy(self, name: str, upstream: str, listen_port: int | None = None) -> Proxy:
        """A proxy ``127.0.0.1:<listen_port or a free port>`` -> ``upstream`` (``host:port``), enabled."""
        listen = f"{self.host}:{listen_port or free_port()}"
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        answer = self.request("POST", "/proxies", body)
        return Proxy(self, name, answer.get("listen", listen), upstream)

    def proxy(self, name: str) -> Proxy:
        """An existing proxy by name."""
        info = self.request("GET", f"/proxies/{name}")
        return Proxy(self, name, info["listen"], info["upstream"])

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.request("POST", "/reset")


@dataclass
class Proxy:
    """One proxy of a :class:`Toxiproxy` server; ``host``/``port`` is where clients connect instead."""

    api: Toxiproxy
    name: str
    listen: str
    upstream: str
    _seq: int = field(default=0, repr=False)

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def info(self) -> dict[str, Any]:
        return self.api.request("GET", f"/proxies/{self.name}")

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: open connections are closed and new ones refused (the link is down)."""
        self.api.request("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def disable(self) -> None:
        self.set_enabled(False)

    def enable(self) -> None:
        self.set_enabled(True)

    @contextlib.contextmanager
    def down(self) -> Iterator[Proxy]:
        """The link is down inside the block, back up after it (also on errors)."""
        self.disable()
        try:
            yield self
        finally:
            self.enable()

    def add_toxic(
        self,
        kind: str,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: float,
    ) -> str:
        """Add a toxic (``kind`` = latency, bandwidth, timeout, reset_peer, slicer, ...); return its name."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, not {stream!r}")
        if not 0.0 <= toxicity <= 1.0:
            raise ValueError("toxicity is a probability in [0, 1]")
        self._seq += 1
        toxic = name or f"{kind}_{stream}_{self._seq}"
        body = {"name": toxic, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        self.api.request("POST", f"/proxies/{self.name}/toxics", body)
        return toxic

    def latency(self, ms: int, jitter: int = 0, stream: str = "downstream", toxicity: float = 1.0) -> str:
        """Delay every chunk by ``ms`` ± ``jitter`` milliseconds."""
        return self.add_toxic("latency", stream, toxicity, latency=int(ms), jitter=int(jitter))

    def bandwidth(self, kb_per_s: int, stream: str = "downstream") -> str:
        """Limit the rate to ``kb_per_s`` kilobytes per second."""
        return self.add_toxic("bandwidth", stream, rate=int(kb_per_s))

    def timeout(self, ms: int, stream: str = "downstream") -> str:
        """Stop all data; close the connection after ``ms`` (0: keep it open and silent)."""
        return self.add_toxic("timeout", stream, timeout=int(ms))

    def reset_peer(self, ms: int = 0, stream: str = "downstream", toxicity: float = 1.0) -> str:
        """Reset connections (TCP RST) after ``ms`` milliseconds."""
        return self.add_toxic("reset_peer", stream, toxicity, timeout=int(ms))

    def slicer(
        self, average_size: int = 64, size_variation: int = 32, delay_us: int = 100, stream: str = "downstream"
    ) -> str:
        """Cut data into packets of ``average_size`` ± ``size_variation`` bytes, ``delay_us`` apart."""
        return self.add_toxic(
            "slicer", stream, average_size=int(average_size), size_variation=int(size_variation), delay=int(delay_us)
        )

    def toxics(self) -> list[dict[str, Any]]:
        return self.api.request("GET", f"/proxies/{self.name}/toxics") or []

    def remove_toxic(self, name: str) -> None:
        self.api.request("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def clear_toxics(self) -> None:
        for toxic in self.toxics():
            self.remove_toxic(toxic["name"])

    def delete(self) -> None:
        self.api.request("DELETE", f"/proxies/{self.name}")
