"""A CPU quota for the edge side (a Pi's slower CPU), with a cgroup v1 ``cpu`` controller.

``cpu.cfs_quota_us = cores x cpu.cfs_period_us``: the processes in the group together get at most
``cores`` CPUs' worth of time per period. Needs root and a mounted v1 ``cpu`` hierarchy
(``/sys/fs/cgroup/cpu``); :meth:`CpuQuota.create` raises a clear error otherwise.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpu")


@dataclass
class CpuQuota:
    path: Path
    cores: float

    @classmethod
    def create(cls, name: str, cores: float, root: Path = ROOT) -> CpuQuota:
        if not (root / "cpu.cfs_period_us").exists():
            raise RuntimeError(f"no cgroup v1 cpu controller at {root}: run without --edge-cpu")
        if os.geteuid() != 0:
            raise RuntimeError("a CPU quota needs root (cgroup v1 cpu.cfs_quota_us)")
        path = root / name
        path.mkdir(exist_ok=True)
        period = int((path / "cpu.cfs_period_us").read_text())
        (path / "cpu.cfs_quota_us").write_text(str(int(cores * period)))
        return cls(path, cores)

    def add(self, pid: int) -> None:
        """Move a process into the group (its later children inherit it)."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def usage_s(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9 if (self.path / "cpuacct.usage").exists() else 0.0

    def remove(self) -> None:
        """Remove the group once its processes are gone (they are stopped before this runs)."""
        for _ in range(50):
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return
            time.sleep(0.1)
