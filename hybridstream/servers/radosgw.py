"""A real S3-compatible server on 127.0.0.1: a single-node Ceph cluster plus radosgw.

    hybridstream local radosgw start [--port 7480]   # prints endpoint + keys
    hybridstream local radosgw stop  [--port 7480] [--wipe]

One monitor, one memstore OSD and one radosgw (beast frontend, ``tcp_nodelay=1``), all
configured with ``auth = none`` and every ``ms_*_mode = crc`` (with auth none and the
default secure modes radosgw loops on error -13). Access/secret keys are generated at run
time by ``radosgw-admin user create`` and written to ``keys.json`` in the state folder
(never committed). State, logs and PID files live in ``.local/radosgw-<port>/``; every
daemon is stopped by its PID. memstore keeps objects in RAM: a restart loses them.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hybridstream.servers.process import (
    STATE_DIR,
    _tail,
    free_port,
    listening,
    pid_alive,
    spawn,
    stop_pid,
    wait_for_port,
)

log = logging.getLogger(__name__)

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
DAEMONS = ("rgw", "osd", "mon")  # stop order

_CONF = """[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
run dir = {state}/run
admin socket = {state}/run/$name.asok
log file = {state}/log/$name.log
log to stderr = false
err to stderr = true
mon data = {state}/mon/$name
osd data = {state}/osd/$name
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon osd min up ratio = 0
mon osd min in ratio = 0
osd max object name len = 460
osd max object namespace len = 64
osd op num threads per shard = 1
osd op num shards = 2
debug ms = 0
mon_osd_cache_size = 50
paxos propose interval = 0.05
paxos min wait = 0.01
mon lease = 5
osd pg stat report interval max = 1

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{port} tcp_nodelay=1
rgw dns name = 127.0.0.1
rgw thread pool size = 64
rgw enable usage log = false
rgw init timeout = {init_timeout}
rgw data = {state}/rgw
"""


class RadosGatewayError(RuntimeError):
    """The local Ceph cluster or its gateway did not come up."""


@dataclass
class RadosGateway:
    """A single-node Ceph cluster + radosgw. After :meth:`start`: ``endpoint``, ``access_key``, ``secret_key``."""

    port: int
    state_dir: Path
    mon_port: int = 0
    memstore_bytes: int = 1 << 30
    access_key: str = ""
    secret_key: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_port(cls, port: int | None = None, state_root: Path = STATE_DIR) -> RadosGateway:
        port = port or free_port()
        return cls(port=port, state_dir=state_root / f"radosgw-{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.state_dir / "ceph.conf"

    def pid_file(self, daemon: str) -> Path:
        return self.state_dir / "run" / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.state_dir / "log" / f"{daemon}.out"

    @property
    def keys_file(self) -> Path:
        return self.state_dir / "keys.json"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> RadosGateway:
        """Create the cluster, start mon, OSD and radosgw, create an S3 user; return when S3 answers."""
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if missing:
            raise RadosGatewayError(
                f"missing {', '.join(missing)}: apt-get install --no-install-recommends "
                "ceph-mon ceph-osd radosgw ceph-common (scripts/setup.sh does it)"
            )
        if listening(self.port):
            raise RadosGatewayError(f"127.0.0.1:{self.port} is already in use (another radosgw?): pick --port")
        deadline = time.monotonic() + timeout
        if self.state_dir.exists():
            self.stop()
            shutil.rmtree(self.state_dir)  # memstore loses data on restart anyway: start clean
        for sub in ("run", "log", "mon", "osd", "rgw"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.mon_port = self.mon_port or free_port()
        fsid = str(uuid.uuid4())
        self.conf.write_text(
            _CONF.format(
                fsid=fsid,
                mon_port=self.mon_port,
                state=self.state_dir,
                port=self.port,
                memstore_bytes=self.memstore_bytes,
                init_timeout=int(timeout),
            )
        )
        try:
            self._step("mon", self._start_mon, fsid, deadline)
            self._step("osd", self._start_osd, deadline)
            self._step("rgw", self._start_rgw, deadline)
            self._step("user", self._create_user, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _step(self, name: str, func, *args) -> None:
        began = time.monotonic()
        func(*args)
        self.timings[name] = round(time.monotonic() - began, 2)
        log.debug("radosgw: %s ready in %.1fs", name, self.timings[name])

    def _run(self, *cmd: str, deadline: float, what: str) -> str:
        remaining = max(1.0, deadline - time.monotonic())
        try:
            out = subprocess.run(
                [*cmd, "-c", str(self.conf)], capture_output=True, text=True, timeout=remaining, check=False
            )
        except subprocess.TimeoutExpired:
            raise RadosGatewayError(f"{what}: timed out{self._tails()}") from None
        if out.returncode != 0:
            raise RadosGatewayError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-2000:]}{self._tails()}")
        return out.stdout

    def _start_mon(self, fsid: str, deadline: float) -> None:
        monmap = self.state_dir / "monmap"
        subprocess.run(
            ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", str(monmap)],
            check=True,
            capture_output=True,
        )
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap), deadline=deadline, what="ceph-mon --mkfs")
        self._spawn("mon", ["ceph-mon", "-f", "-i", "a"])
        wait_for_port(self.mon_port, max(1.0, deadline - time.monotonic()), log=self.log_file("mon"))

    def _start_osd(self, deadline: float) -> None:
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "osd", "new", osd_uuid, deadline=deadline, what="ceph osd new").strip()
        (self.state_dir / "osd" / f"osd.{osd_id}").mkdir(parents=True, exist_ok=True)
        self._run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, deadline=deadline, what="ceph-osd --mkfs")
        self._spawn("osd", ["ceph-osd", "-f", "-i", osd_id])
        while True:
            stat = json.loads(self._run("ceph", "osd", "stat", "-f", "json", deadline=deadline, what="ceph osd stat"))
            if int(stat.get("num_up_osds", 0)) >= 1 and int(stat.get("num_in_osds", 0)) >= 1:
                return
            self._check_alive("osd")
            if time.monotonic() > deadline:
                raise RadosGatewayError(f"OSD not up in time{self._tails()}")
            time.sleep(0.2)

    def _start_rgw(self, deadline: float) -> None:
        self._spawn("rgw", ["radosgw", "-f", "-n", "client.rgw"])
        wait_for_port(self.port, max(1.0, deadline - time.monotonic()), log=self.log_file("rgw"))

    def _create_user(self, deadline: float) -> None:
        out = self._run(
            "radosgw-admin",
            "user",
            "create",
            "--uid",
            "hybridstream",
            "--display-name",
            "hybridstream local",
            deadline=deadline,
            what="radosgw-admin user create",
        )
        key = json.loads(out)["keys"][0]
        self.access_key, self.secret_key = key["access_key"], key["secret_key"]
        self.keys_file.write_text(json.dumps(self.credentials()))
        self.keys_file.chmod(0o600)

    def _spawn(self, daemon: str, cmd: list[str]) -> None:
        spawn([*cmd, "-c", str(self.conf)], self.log_file(daemon), self.pid_file(daemon))

    def _check_alive(self, daemon: str) -> None:
        pid = int(self.pid_file(daemon).read_text())
        if not pid_alive(pid):
            raise RadosGatewayError(f"{daemon} exited{self._tails()}")

    def _tails(self) -> str:
        parts = []
        for daemon in ("mon", "osd", "rgw"):
            for path in (self.log_file(daemon), self.state_dir / "log" / f"{_ceph_name(daemon)}.log"):
                if path.exists() and path.stat().st_size:
                    parts.append(f"\n[{path.name}]{_tail(path, 10)}")
        return "".join(parts)

    def stop(self) -> bool:
        """Stop radosgw, the OSD and the monitor by PID. True if any was running."""
        return any([stop_pid(self.pid_file(d)) for d in DAEMONS])

    def destroy(self) -> None:
        """Stop and delete all state."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- clients -----------------------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "access_key": self.access_key, "secret_key": self.secret_key}

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and the trainer) at this gateway."""
        return {
            "HYBRIDSTREAM_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def add_user(self, uid: str, timeout: float = 30.0) -> dict[str, str]:
        """A second S3 user (``arn:aws:iam:::user/<uid>`` in bucket policies) with its own keys:
        what tests use to play a least-privilege role against buckets the main user owns."""
        out = self._run(
            "radosgw-admin", "user", "create", "--uid", uid, "--display-name", uid,
            deadline=time.monotonic() + timeout, what=f"radosgw-admin user create {uid}",
        )  # fmt: skip
        key = json.loads(out)["keys"][0]
        return {"endpoint": self.endpoint, "access_key": key["access_key"], "secret_key": key["secret_key"]}

    def client(self, credentials: dict[str, str] | None = None):
        """A boto3 S3 client for this gateway (path-style addressing); the main user's unless
        ``credentials`` (from :meth:`add_user`) say otherwise."""
        import boto3
        from botocore.config import Config

        creds = credentials or self.credentials()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=creds["access_key"],
            aws_secret_access_key=creds["secret_key"],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )


def _ceph_name(daemon: str) -> str:
    return {"mon": "mon.a", "osd": "osd.0", "rgw": "client.rgw"}[daemon]
