"""N trainings at once on one machine: a supervisor and N worker processes (issue 23).

A small LSTM keeps a core or two busy, so one training at a time leaves most of a 16-vCPU
instance idle. :class:`WorkerPool` runs ``workers`` copies of :class:`~training_job.worker.Worker`,
each in a process of its own with its own SQS and S3 clients, its own lease and heartbeat per
message, and TensorFlow's thread pools bounded (:func:`threads_per_worker`). Each process
handles its messages exactly as the single worker does: validation, parity, guardrail,
idempotent publish, delete only once done, bad windows left for the dead-letter queue.

The supervisor (the calling process; it never imports TensorFlow):

* starts the workers and restarts one that dies (its message comes back after its lease, as a
  lone worker's would); one that keeps dying soon after its start is restarted with a back-off
  of up to a minute;
* :meth:`WorkerPool.stop` (SIGTERM) stops every worker: each cancels its training between
  batches and releases its message;
* ``max_messages`` is shared: that many messages in total (:class:`SharedBudget`);
* gathers each worker's counts and each window's outcome (with the wall time it was known) from
  an event queue;
* keeps the instance protected from scale-in while any worker is busy, when given a
  :class:`~training_job.protection.ScaleInProtection`.

Workers die with the supervisor (Linux ``PR_SET_PDEATHSIG``): a killed supervisor leaves no
orphan holding a lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from model_contract.layout import MODELS_PREFIX, REJECTED_PREFIX
from training_job.pipeline import Outcome, TrainOptions
from training_job.worker import Stats, Worker, WorkerConfig

log = logging.getLogger(__name__)

WORKERS_ENV = "HYBRIDSTREAM_TRAINER_WORKERS"
QUICK_DEATH_SECONDS = 30.0  # a worker dying sooner than this after its start doubles the restart delay
MAX_RESTART_DELAY = 60.0


def cpu_count() -> int:
    """The CPUs this process may run on (the vCPUs of an instance)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(cpus: int | None = None) -> int:
    """``$HYBRIDSTREAM_TRAINER_WORKERS`` if set, else one worker per vCPU."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        value = int(raw)
        if value < 1:
            raise ValueError(f"{WORKERS_ENV} must be >= 1, not {value}")
        return value
    return max(1, cpus or cpu_count())


def threads_per_worker(workers: int, cpus: int | None = None) -> int | None:
    """TensorFlow intra-op threads per worker: ``None`` (its default, every core) for one
    worker, else the cores shared out, at least one (1 when there is a worker per vCPU)."""
    if workers <= 1:
        return None
    return max(1, (cpus or cpu_count()) // workers)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build its own clients and worker (picklable)."""

    queue_url: str
    bucket: str
    opts: TrainOptions
    config: WorkerConfig
    sqs_endpoint: str | None = None
    s3_endpoint: str | None = None
    prefix: str = MODELS_PREFIX
    rejected_prefix: str = REJECTED_PREFIX
    intra_op_threads: int | None = None  # None: TensorFlow's default
    log_level: int = logging.INFO


class Protection(Protocol):
    def set(self, protected: bool) -> None: ...


class SharedBudget:
    """``max_messages`` shared by the pool's workers (a :class:`~training_job.worker.Budget`)."""

    def __init__(self, ctx: Any, total: int) -> None:
        self._left = ctx.Value("q", total)

    def take(self) -> bool:
        with self._left.get_lock():
            if self._left.value <= 0:
                return False
            self._left.value -= 1
            return True

    def give_back(self) -> None:
        with self._left.get_lock():
            self._left.value += 1


@dataclass
class PoolStats(Stats):
    """The workers' counts summed, plus the pool's own."""

    workers: int = 0
    restarts: int = 0

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "outcomes"}


@dataclass
class _Slot:
    process: Any = None
    started: float = 0.0
    restart_at: float | None = None
    delay: float = 0.0
    done: bool = False
    pid: int = 0
    ready: bool = False
    busy: bool = False
    stats: dict[str, int] = field(default_factory=dict)


class WorkerPool:
    """``workers`` worker processes on one queue (see the module docstring)."""

    def __init__(
        self, spec: WorkerSpec, workers: int, protection: Protection | None = None, restart_delay: float = 5.0
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.spec, self.workers, self.protection, self.restart_delay = spec, workers, protection, restart_delay
        self._ctx = mp.get_context("spawn")
        self._events = self._ctx.Queue()
        self._slots = [_Slot(delay=restart_delay) for _ in range(workers)]
        self._budget: SharedBudget | None = None
        self._idle_exit = False
        self._stopping = False
        self._protected = False
        self.stats = PoolStats(workers=workers)

    # -- control ---------------------------------------------------------------------------

    def start(self, max_messages: int | None = None, idle_exit: bool = False) -> None:
        """Start every worker (each imports TensorFlow: :meth:`ready` tells when they have)."""
        self._budget = SharedBudget(self._ctx, max_messages) if max_messages is not None else None
        self._idle_exit = idle_exit
        for index in range(self.workers):
            self._spawn(index)

    def stop(self) -> None:
        """Every worker finishes (cancels) its current message, releases it, and exits."""
        self._stopping = True
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGTERM)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def pids(self) -> dict[int, int]:
        """Worker index -> PID of its live process."""
        return {i: s.process.pid for i, s in enumerate(self._slots) if s.process is not None and s.process.is_alive()}

    def busy(self) -> dict[int, int]:
        """Worker index -> PID, for the workers handling a message now."""
        return {i: s.pid for i, s in enumerate(self._slots) if s.busy}

    def ready(self) -> bool:
        """Every worker has started (TensorFlow imported, threads bounded) and is polling."""
        return all(s.ready or s.done for s in self._slots)

    def run(self, max_messages: int | None = None, idle_exit: bool = False) -> PoolStats:
        """Start, supervise until every worker has exited for good, and return the counts."""
        self.start(max_messages, idle_exit)
        try:
            while self.pump(1.0):
                pass
        finally:
            self.close()
        return self.stats

    def close(self, timeout: float = 150.0) -> None:
        """Stop the workers still running, wait for them, collect their last counts."""
        self.stop()
        deadline = time.monotonic() + timeout
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(max(0.1, deadline - time.monotonic()))
                if slot.process.is_alive():
                    log.error("worker pid %d did not stop in %.0fs: killing it", slot.process.pid, timeout)
                    slot.process.kill()
                    slot.process.join(5)
        self._drain(0.2)
        self._set_protection(False)
        log.info("pool: stopped (%s)", self.stats.counts())

    # -- supervision -----------------------------------------------------------------------

    def pump(self, timeout: float) -> bool:
        """Handle the workers' events for up to ``timeout`` seconds and restart dead workers.

        Returns False once every worker has exited for good."""
        dead = [i for i, s in enumerate(self._slots) if s.process is not None and not s.process.is_alive()]
        self._drain(timeout)
        now = time.monotonic()
        for index in dead:
            self._exited(index, now)
        for index, slot in enumerate(self._slots):
            if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                self.stats.restarts += 1
                self._spawn(index)
        return not all(s.done for s in self._slots)

    def _spawn(self, index: int) -> None:
        slot = self._slots[index]
        args = (index, self.spec, self._events, self._budget, self._idle_exit, os.getpid())
        proc = self._ctx.Process(target=_worker_main, args=args, name=f"trainer-worker-{index}")
        proc.start()
        slot.process, slot.started, slot.restart_at = proc, time.monotonic(), None
        slot.pid, slot.ready = proc.pid, False
        log.info("pool: worker %d started (pid %d)", index, proc.pid)

    def _exited(self, index: int, now: float) -> None:
        slot = self._slots[index]
        proc = slot.process
        proc.join()
        code = proc.exitcode
        slot.process = None
        self._busy(index, False)
        if code == 0 or self._stopping:
            slot.done = True
            return
        lived = now - slot.started
        slot.delay = min(MAX_RESTART_DELAY, slot.delay * 2) if lived < QUICK_DEATH_SECONDS else self.restart_delay
        slot.restart_at = now + slot.delay
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.error(
            "pool: worker %d (pid %d) died (%s) after %.0fs; its message comes back after its lease; "
            "restarting in %.0fs",
            index,
            proc.pid,
            how,
            lived,
            slot.delay,
        )

    def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, index, payload = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            self._event(kind, index, payload)

    def _event(self, kind: str, index: int, payload: Any) -> None:
        slot = self._slots[index]
        if kind == "ready":
            slot.ready = True
        elif kind in ("busy", "idle"):
            self._busy(index, kind == "busy")
        elif kind == "outcome":
            self.stats.outcomes.append(payload)
        elif kind == "stats":
            for key, value in payload.items():
                setattr(self.stats, key, getattr(self.stats, key) + value)

    def _busy(self, index: int, busy: bool) -> None:
        self._slots[index].busy = busy
        self._set_protection(any(s.busy for s in self._slots))

    def _set_protection(self, protected: bool) -> None:
        if self.protection is None or protected == self._protected:
            return
        self._protected = protected
        self.protection.set(protected)


# -- the worker processes ------------------------------------------------------------------


class BusyWorker(Worker):
    """A worker that calls ``on_busy(True)`` before each message and ``on_busy(False)`` after it
    (a pool's worker tells its supervisor; a lone worker sets the scale-in protection itself)."""

    def __init__(self, on_busy: Callable[[bool], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_busy = on_busy

    def handle(self, message: dict[str, Any]) -> str:
        self.on_busy(True)
        try:
            return super().handle(message)
        finally:
            self.on_busy(False)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the supervisor dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(
    index: int, spec: WorkerSpec, events: Any, budget: SharedBudget | None, idle_exit: bool, parent: int
) -> None:
    """A worker process: bound TensorFlow, build the clients, run the worker, report the counts."""
    _die_with_parent(parent)
    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s %(levelname)s worker-{index}[%(process)d] %(name)s: %(message)s"
    )
    from training_job.cli import sqs_client  # noqa: PLC0415
    from training_job.model import _keras, limit_threads  # noqa: PLC0415
    from training_job.publish import ModelStore  # noqa: PLC0415
    from training_job.storage import s3_client  # noqa: PLC0415

    if spec.intra_op_threads is not None:
        limit_threads(spec.intra_op_threads, 1)
    else:
        _keras()
    s3 = s3_client(spec.s3_endpoint)

    def on_outcome(outcome: Outcome, ref: Any) -> None:
        events.put(("outcome", index, {**outcome.summary(), "window": ref.uri, "worker": index, "at": time.time()}))

    store = ModelStore(s3, spec.bucket, spec.prefix, spec.rejected_prefix)
    sqs = sqs_client(spec.queue_url, spec.sqs_endpoint)

    def on_busy(busy: bool) -> None:
        events.put(("busy" if busy else "idle", index, None))

    worker = BusyWorker(on_busy, sqs, s3, store, spec.opts, spec.config, on_outcome=on_outcome)
    worker.budget = budget
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    events.put(("ready", index, None))
    stats = worker.run(idle_exit=idle_exit)
    events.put(("stats", index, {k: v for k, v in dataclasses.asdict(stats).items() if k != "outcomes"}))
