"""Start and stop a background server by PID, with its state in one folder."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import ClassVar

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("HYBRIDSTREAM_CACHE", REPO_ROOT / ".cache"))
STATE_DIR = Path(os.environ.get("HYBRIDSTREAM_STATE", REPO_ROOT / ".local"))


_HANDED_OUT: deque[int] = deque(maxlen=4096)
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and not handed out recently by this process.

    The kernel may give the same free port to two ``bind(0)`` calls in a row while neither is used
    yet; servers started together (the demo's four) then fought over one port. So a port handed out
    is remembered (the last 4,096) and not handed out again.
    """
    with _HANDED_OUT_LOCK:
        for _ in range(256):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.append(port)
                return port
    raise OSError("no free TCP port on 127.0.0.1 that was not handed out already (256 tries)")


def listening(port: int) -> bool:
    """True if something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_in_use(port: int) -> bool:
    """True if something listens on 127.0.0.1:port or the port cannot be bound."""
    if listening(port):
        return True
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Block until 127.0.0.1:port accepts connections; raise with the log tail if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}{_tail(log)}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s{_tail(log)}")


def _tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    return "\n--- log tail ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def spawn(
    cmd: list[str], log: Path, pid_file: Path | None, env: dict | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``cmd`` in its own session, output appended to ``log``, its PID to ``pid_file`` (unless None)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    if pid_file is not None:
        pid_file.write_text(str(proc.pid))
    return proc


def read_pid(pid_file: Path) -> int:
    """The PID written in ``pid_file``; 0 when there is none (no file, empty, not a number)."""
    try:
        return int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs; a zombie (exited, not yet reaped) counts as gone. Reaps nothing,
    so a ``Popen`` of the caller still gets its child's exit code."""
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone since; or no /proc (not Linux), where os.kill's answer stands
        return not Path("/proc/self").exists()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the state follows "(comm)", which may hold spaces


def stop_pid(pid_file: Path, timeout: float = 15.0) -> bool:
    """Stop the process whose PID is in ``pid_file`` (TERM, then KILL). True if one was running."""
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    if pid <= 0 or not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


class SingleProcessServer:
    """Mixin for a server that is one background process with all its state in ``state_dir``.

    Subclasses set ``process_name`` (names the PID and log files) and have a ``state_dir``.
    """

    process_name: ClassVar[str]
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.process_name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.process_name}.log"

    def running(self) -> bool:
        """True if the process in the PID file is alive."""
        pid = read_pid(self.pid_file)
        return bool(pid) and pid_alive(pid)

    def stop(self) -> bool:
        """Stop the process by its PID; True if one was running."""
        return stop_pid(self.pid_file)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the process (no clean shutdown) and return once it is gone; the PID file stays."""
        pid = read_pid(self.pid_file)
        if not pid or not pid_alive(pid):
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:  # a child of ours stays a zombie until reaped
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not pid_alive(pid):
                    return
            time.sleep(0.05)

    def destroy(self) -> None:
        """Stop and delete all state."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
