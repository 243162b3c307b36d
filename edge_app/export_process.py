"""The forecasts export in a process of its own: the window uploader's Python off the hot loop's GIL.

:class:`~edge_app.forecasts.ForecastExport` turns each closed window into its forecasts object on the
upload thread. Its Python holds the GIL, and the hot loop lets go of the GIL at every C call (librdkafka,
the compiled kernel), so while a window is exported the loop mostly waits for it: ~1 s of a
150,000-reading ``make bench-edge`` phase (the loop thread's time neither on a CPU nor waiting for one;
BENCHMARKS.md, issue 18). :class:`ExportProcess` has the same ``encode(path)`` and runs it in a child
process (the standard library, orjson and the contract's timestamp parser: ~15 MB, ~0.1 s of CPU to start),
which runs beside the loop on another core. The bytes are the same (it runs the same ``ForecastExport``).
The child is started with the app (:meth:`ExportProcess.start`), not at the first window, so its start falls
before the first reading instead of on the stream. The default (``windows.forecasts_process``; false keeps the
export on the upload thread): the loop's time blocked on the GIL in a ``make bench-edge`` phase falls from ~1-1.4 s
to ~0.2-0.5 s, with no worse tail at 1,000/s measured side by side (BENCHMARKS.md, issue 18).

The child reads one JSON line per window (``{"path": ...}``) on its stdin and answers one JSON line
(``{"status": "ok" | "none" | "missing", "size": n, "errors": k}``) followed by ``n`` bytes of the object on its
stdout; it ends when its stdin does (the app stopped or died). If the child cannot be started or fails
(died, a broken pipe, an answer that makes no sense), that window is exported on the thread as before
and the child is started afresh for the next one; after :data:`MAX_FAILURES` failures in a row the thread
keeps the work (logged once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from edge_app.forecasts import ForecastExport

log = logging.getLogger("edge_app.export_process")

REPLY_TIMEOUT_S = 60.0  # a window's export takes ms: no answer in this long means the child hangs
MAX_FAILURES = 3  # child failures in a row before the upload thread keeps the export for good
_PACKAGES = str(Path(__file__).resolve().parent.parent)  # where this edge_app lives: the child imports the same


class ExportProcess:
    """``encode(path)``: :meth:`ForecastExport.encode`'s bytes (or None; FileNotFoundError for a vanished window),
    made by a child process; ``close()`` ends the child. Used from one thread (the window uploader)."""

    def __init__(self, target: str, horizon: int = 1, start: bool = True) -> None:
        self.target = target
        self.horizon = int(horizon)
        self.local = ForecastExport(target, horizon)  # the thread's own export: the fallback
        self._proc: subprocess.Popen | None = None
        self._child_errors = 0  # windows the child could not read (its ForecastExport.errors)
        self.failures = 0  # child failures in a row
        self.started = 0  # children started
        if start:
            self.start()

    def start(self) -> None:
        """Start the child now (with the app), not at the first window: its interpreter start and imports (~0.1 s
        of CPU) then fall before the first reading, not on the stream. A child that cannot start is a failure
        (the first window tries again)."""
        try:
            self._child()
        except (OSError, subprocess.SubprocessError) as exc:
            self.failures += 1
            log.warning("forecasts export process did not start (%s: %s): tried again at the first window",
                        type(exc).__name__, exc)  # fmt: skip

    @property
    def pid(self) -> int | None:
        """The running child's process id (None if none runs)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def errors(self) -> int:
        """Windows whose forecasts could not be read (by the child or the thread)."""
        return self.local.errors + self._child_errors

    def encode(self, path: Path) -> bytes | None:
        if self.failures < MAX_FAILURES:
            try:
                return self._remote(path)
            except FileNotFoundError:
                raise
            except (OSError, ValueError, KeyError, TypeError, EOFError, subprocess.SubprocessError) as exc:
                self.failures += 1
                self._stop(kill=True)  # a child that failed once is not waited for (a hung one would hold us 5 s)
                log.warning(
                    "forecasts export process failed (%s: %s): window %s exported on the upload thread%s",
                    type(exc).__name__,
                    exc,
                    path.name,
                    " from now on" if self.failures >= MAX_FAILURES else "",
                )
        return self.local.encode(path)

    def _child(self) -> subprocess.Popen:
        """The running child, started first if there is none (or it ended)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            try:
                proc = self._proc = _start(self.target, self.horizon)
            except FileNotFoundError as exc:  # no interpreter: a failure of the child, not a vanished window
                raise ChildProcessError(f"cannot start the export process: {exc}") from exc
            self.started += 1
            log.info("forecasts export process %d started", proc.pid)
        return proc

    def _remote(self, path: Path) -> bytes | None:
        proc = self._child()
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"path": str(path)}).encode() + b"\n")
        stdin.flush()
        if not select.select([stdout], [], [], REPLY_TIMEOUT_S)[0]:  # a hung child must not stop every upload
            raise TimeoutError(f"the export process did not answer in {REPLY_TIMEOUT_S:.0f} s")
        head = stdout.readline()
        if not head.endswith(b"\n"):
            raise EOFError(f"the export process ended (exit code {proc.poll()})")
        reply = json.loads(head)
        status, size = reply["status"], int(reply["size"])
        self._child_errors = int(reply["errors"])
        data = stdout.read(size) if size else b""
        if len(data) != size:
            raise EOFError(f"the export process sent {len(data)} of {size} bytes")
        self.failures = 0
        if status == "missing":
            raise FileNotFoundError(str(path))
        if status == "none":
            return None
        if status != "ok":
            raise ValueError(f"unknown status {status!r}")
        return data

    def close(self) -> None:
        """End the child (it finishes the window it has, then sees its stdin end)."""
        self._stop()

    def _stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        if kill:
            proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # unkillable for now: the OS reaps it later
                proc.wait(5)


def _start(target: str, horizon: int) -> subprocess.Popen:
    """The child: this interpreter running :func:`serve` on this copy of edge_app (stderr: the app's). It ignores
    SIGINT and SIGTERM, which a terminal's Ctrl-C or a supervisor's stop send to the whole process group: the app
    then shuts down and still needs it for the windows it closes; it ends when its stdin does (the app exited,
    however), and SIGKILL ends it."""
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"sys.path.insert(0, {_PACKAGES!r}); from edge_app.export_process import serve; serve()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, target, str(horizon)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )


def serve(argv: list[str] | None = None, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """The child's loop: ``argv`` = (target, horizon); a window path per JSON line in, an answer and its bytes out."""
    target, horizon = argv if argv is not None else sys.argv[1:3]
    inp = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout.buffer
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    export = ForecastExport(target, int(horizon))
    for line in inp:
        request: dict[str, Any] = json.loads(line)
        try:
            body = export.encode(Path(request["path"]))
            status = "ok" if body is not None else "none"
        except FileNotFoundError:
            body, status = None, "missing"
        data = body or b""
        out.write(json.dumps({"status": status, "size": len(data), "errors": export.errors}).encode() + b"\n" + data)
        out.flush()
