"""Disk full on the edge's state/spool folder: a small tmpfs mounted there, filled up mid-stream, then
freed. Expected: the app degrades with a clear log line and a counter, loses no committed data (every
reading predicted, every reading in a delivered window) and recovers when space returns."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path

from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import finish_stream, guarded, start_stream
from hybridstream.devtools.edge import wait_for

DISK_WORDS = ("no space left", "disk full", "enospc")


def fill(folder: Path) -> int:
    """Write a filler file until the file system is full; return the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with open(folder / "filler.bin", "wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    return written


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """Mount a tmpfs of ``size`` on ``folder`` (root only); unmount it afterwards, whatever happened."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def disk_full(ctx: Context) -> Result:
    def body(result: Result) -> None:
        work, _ = ctx.work("disk-full-mount")
        state = work / "state"
        with tmpfs(state, "8m"):
            devices = ["d0", "d1"]
            per_device = ctx.pick(2000, 8000)
            rate = 200.0
            run = start_stream(
                ctx, "disk-full", devices, per_device, rate, state_dir=str(state), windows={"max_records": 100}
            )
            try:
                if not wait_for(lambda: run.predicted() > 300, 60):
                    raise RuntimeError(f"no predictions:\n{run.edge.tail()}")
                filled = fill(state)
                full_at = time.monotonic()
                before = run.predicted()
                time.sleep(ctx.pick(8.0, 60.0))
                during = run.predicted() - before
                restarts_during = run.restarts
                (state / "filler.bin").unlink()
                freed_at = time.monotonic()
                grew = run.wait_predictions_grow(run.predicted(), 60)
                result.recovery_s = round(time.monotonic() - freed_at, 2) if grew is not None else None
                result.figures.update(
                    {
                        "filler_bytes": filled,
                        "full_for_s": round(freed_at - full_at, 1),
                        "predictions_while_full": during,
                        "restarts_while_full": restarts_during,
                    }
                )
                finish_stream(run, result, timeout=120)
            finally:
                run.edge.close()
            logs = "\n".join(p.read_text(errors="replace").lower() for p in sorted(run.work.glob("edge-*.log")))
            counters = run.edge.counters()
            disk_counters = {k: v for k, v in counters.items() if "disk" in k or ("spool" in k and "error" in k)}
            internal = result.figures.get("deadletter_reasons", {}).get("internal_error", 0)
            result.figures["disk_counters"] = disk_counters
            result.check("a clear log line about the full disk", any(w in logs for w in DISK_WORDS))
            result.check("a counter for it in the app's counters", any(v for v in disk_counters.values()))
            result.check("the app kept running while the disk was full (no crash loop)", restarts_during == 0)
            result.check("no reading dead-lettered as internal_error because of the disk", internal == 0)
            result.check("the app recovered when space returned", grew is not None)

    return guarded("disk", "disk full on the state/spool folder (tmpfs)", body)


SCENARIOS = [("disk-full", disk_full)]
