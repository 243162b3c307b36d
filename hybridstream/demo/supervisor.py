"""Child processes that never outlive the demo: own process groups, a PID file, cleanup on exit.

Every child starts in its own session (``start_new_session``), so stopping it stops whatever it
forked too (``killpg``). PIDs are written to ``pid_file`` as they start; :meth:`Supervisor.stop_all`
runs from ``finally``, ``atexit`` and the SIGTERM/SIGINT/SIGHUP handlers, and
:func:`reap_pid_file` stops the leftovers of a run that was itself SIGKILLed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hybridstream.servers.process import spawn


class Interrupted(Exception):
    """A stop signal (Ctrl-C, SIGTERM) arrived: unwind and clean up."""


def group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` to the process group, then SIGKILL after ``timeout`` seconds if any member is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap our own child so the group can disappear
            os.waitpid(pgid, os.WNOHANG)
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def reap_pid_file(pid_file: Path) -> list[int]:
    """Stop the process groups a previous (killed) run left in ``pid_file``; returns them."""
    if not pid_file.exists():
        return []
    try:
        entries = json.loads(pid_file.read_text() or "{}")
    except ValueError:
        entries = {}
    left = []
    for pgid in {int(v["pgid"]) for v in entries.values() if isinstance(v, dict) and "pgid" in v}:
        if group_alive(pgid):
            left.append(pgid)
            stop_group(pgid, timeout=5)
    pid_file.unlink(missing_ok=True)
    return left


class Supervisor:
    """Spawns and tracks child processes; :meth:`stop_all` stops every one still running (newest first)."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.children: dict[str, subprocess.Popen] = {}
        self.adopted: dict[str, int] = {}  # servers started elsewhere (own PID files): reaped after a crash
        self.history: list[tuple[str, int]] = []  # every process spawned or adopted (the report lists them)
        self._lock = threading.Lock()
        self._cleanups: list[Callable[[], None]] = []
        self._saved: dict[int, object] = {}
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        reap_pid_file(pid_file)

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Supervisor:
        atexit.register(self.stop_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self._saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        atexit.unregister(self.stop_all)

    def _on_signal(self, signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_IGN)  # one clean-up; repeated Ctrl-C must not interrupt it
        raise Interrupted(signal.Signals(signum).name)

    def on_stop(self, func: Callable[[], None]) -> None:
        """Run ``func`` (e.g. stop a server) in :meth:`stop_all`, after the children are stopped."""
        self._cleanups.append(func)

    # ---- children ----------------------------------------------------------------------------
    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        nice: int = 0,
    ) -> subprocess.Popen:
        """Start ``cmd`` in its own session, output appended to ``log``."""
        prefix = ["nice", "-n", str(nice)] if nice else []
        proc = spawn([*prefix, *cmd], log, None, env=env, cwd=cwd)
        with self._lock:
            self.children[name] = proc
            self.history.append((name, proc.pid))
            self._write()
        return proc

    def adopt(self, name: str, pid: int) -> None:
        """Record a process started by someone else (a server) so a later run reaps it if we die."""
        with self._lock:
            self.adopted[name] = pid
            self.history.append((name, pid))
            self._write()

    def stop(self, name: str, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop one child (its whole group); returns its exit code."""
        with self._lock:
            proc = self.children.pop(name, None)
            self._write()
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        stop_group(proc.pid, timeout=5)
        return proc.poll()

    def kill(self, name: str) -> None:
        """SIGKILL one child's group at once (the crash scenario)."""
        self.stop(name, timeout=5, sig=signal.SIGKILL)

    def stop_all(self) -> None:
        cleanups, self._cleanups = self._cleanups, []
        for name in reversed(list(self.children)):
            self.stop(name)
        for func in reversed(cleanups):
            try:
                func()
            except Exception as exc:  # keep stopping the rest
                print(f"demo: clean-up step failed: {exc}", flush=True)
        self.adopted.clear()
        self.pid_file.unlink(missing_ok=True)

    def _write(self) -> None:
        entries = {name: {"pid": p.pid, "pgid": p.pid} for name, p in self.children.items()}
        entries.update({name: {"pid": pid, "pgid": pid} for name, pid in self.adopted.items()})
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.pid_file)
