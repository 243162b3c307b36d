"""Where a process's time went, per thread, from ``/proc`` (Linux): CPU and waiting for a core.

:func:`thread_times` reads every thread's ``schedstat`` once: the seconds it ran on a CPU and the seconds
it was runnable but waited for one (the run queue). :func:`times_between` gives both per thread name
between two readings. Names: ``main`` (the process's first thread: the edge app's loop), ``python``
(its other Python threads: the window uploader, the model swapper; Python 3.11 does not name OS
threads), librdkafka's own (``rdk:main``, ``rdk:broker<N>``...). A thread's wall time not in either
figure was spent blocked: on input, a lock (the GIL), a timer. ``make bench-edge`` reads the edge
process and the broker at the start and the end of its throughput phase (``threads`` in its JSON).

>>> times_between({(1, "main"): (1.0, 0.5)}, {(1, "main"): (3.0, 0.75), (3, "python"): (0.25, 0.0)})
{'main': {'cpu_s': 2.0, 'runq_s': 0.25}, 'python': {'cpu_s': 0.25, 'runq_s': 0.0}}
"""

from __future__ import annotations

from pathlib import Path

Times = dict[tuple[int, str], tuple[float, float]]


def parse_schedstat(text: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) from a ``schedstat`` line (ns, ns, slices).

    >>> parse_schedstat("2500000000 500000000 42")
    (2.5, 0.5)
    """
    run_ns, wait_ns = text.split()[:2]
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def thread_times(pid: int) -> Times:
    """``{(tid, name): (cpu_s, runq_s)}`` of every live thread of ``pid`` ({} once the process is gone)."""
    out: Times = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        main_name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return out
    for task in tasks:
        try:
            tid = int(task.name)
            name = (task / "comm").read_text().strip()
            times = parse_schedstat((task / "schedstat").read_text())
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        if tid == pid:
            name = "main"
        elif name == main_name:
            name = "python"
        out[(tid, name)] = times
    return out


def times_between(before: Times, after: Times) -> dict[str, dict[str, float]]:
    """CPU and run-queue seconds per thread name from ``before`` to ``after`` (a thread born meanwhile counts
    from 0; one that ended meanwhile is lost: read ``after`` while the process still runs)."""
    out: dict[str, dict[str, float]] = {}
    for key, (cpu, runq) in after.items():
        cpu0, runq0 = before.get(key, (0.0, 0.0))
        slot = out.setdefault(key[1], {"cpu_s": 0.0, "runq_s": 0.0})
        slot["cpu_s"] = round(slot["cpu_s"] + cpu - cpu0, 3)
        slot["runq_s"] = round(slot["runq_s"] + runq - runq0, 3)
    return out


def total(times: dict[str, dict[str, float]]) -> dict[str, float]:
    """The sum over threads of :func:`times_between`'s figures.

    >>> total({"a": {"cpu_s": 1.0, "runq_s": 0.5}, "b": {"cpu_s": 2.0, "runq_s": 0.25}})
    {'cpu_s': 3.0, 'runq_s': 0.75}
    """
    return {k: round(sum(t[k] for t in times.values()), 3) for k in ("cpu_s", "runq_s")}
