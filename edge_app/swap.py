"""Speed-model hot swap: notices in, verified models out, off the hot path.

A notice (from the ``models.notices`` topic, or :meth:`SpeedModelSwapper.submit` which the
MQTT listener calls) names a model; a background thread fetches and verifies it
(:func:`edge_app.models.load_model`) and parks it in ``ready``. The loop calls
:meth:`SpeedModelSwapper.take` once per batch (an attribute read when nothing is waiting)
and swaps it in between two records (:class:`edge_app.serving.Serving`), so no record is dropped
or served by half a model; :class:`SwapGuard` watches its first forecasts.
:func:`initial_speed_model` picks the model a (re)started app serves first.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_app.models import LoadedModel, atomic_write, keep_local_copy, load_model
from model_contract import FeatureSpec
from model_contract.messages import ModelNotice, parse_model_notice
from model_contract.runtime import ModelRejected

log = logging.getLogger("edge_app.swap")

EventSink = Callable[..., None]  # (kind, **fields)


def _queued(notice: ModelNotice) -> dict[str, Any]:
    """What the swapper queues (and journals) for a parsed :class:`ModelNotice`."""
    return {
        "model": notice.s3_uri,
        "sha256": notice.sha256,
        "name": notice.name,
        "version": notice.version,
        "manifest": notice.manifest_uri,
        "manifest_sha256": notice.manifest_sha256,
        "published_at": float(notice.published_at),
    }


def _created(manifest_created_at: str) -> float | None:
    """A manifest's ``created_at`` as epoch seconds (None if absent or unreadable)."""
    try:
        dt = datetime.fromisoformat(manifest_created_at)
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError, OverflowError):
        return None


class SpeedModelSwapper:
    """Background fetch + verify of new speed models; the loop takes them with :meth:`take`."""

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        model_name: str,
        num_threads: int = 1,
        events: EventSink | None = None,
        store: Path | None = None,
        journal: Path | None = None,
    ) -> None:
        self._spec = spec
        self._name = model_name
        self._threads = num_threads
        self._events = events or (lambda kind, **fields: None)
        self._store = store
        self._queue: queue.Queue[dict[str, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self.ready: LoadedModel | None = None
        self.serving_version = ""
        self.serving_created_at = ""  # the serving model's manifest created_at: older models never swap in
        self.serving_published_at = 0.0  # the published_at of the notice that brought it (0: unknown)
        self.rejected = 0
        self.refused: set[str] = set()  # versions rolled back after a swap (SwapGuard): never swapped in again
        # notices accepted but not finished yet, persisted BEFORE the loop commits their offsets, so
        # a crash during fetch/verify/swap replays them at the next start (see :meth:`resume`)
        self._journal = journal
        self._pending: dict[int, dict[str, Any]] = {}
        self._next_id = 0
        self._thread = threading.Thread(target=self._run, name="speed-model-swapper", daemon=True)
        self._thread.start()

    def submit(self, notice: Mapping[str, Any]) -> bool:
        """Queue a notice (thread-safe). False (and a ``model_rejected`` event) if the notice itself is bad.

        ``notice`` is a model notice (:func:`model_contract.messages.parse_model_notice`: the cloud's
        ``ModelNotice``, or a hand-written local one naming ``model`` and ``manifest``).
        """
        try:
            parsed = _queued(parse_model_notice(notice, kind="speed"))
        except ValueError as exc:
            self._reject(str(exc), dict(notice) if isinstance(notice, Mapping) else {"notice": repr(notice)})
            return False
        if parsed["name"] != self._name:
            log.info("ignoring notice for model %r (serving %r)", parsed["name"], self._name)
            return False
        self._enqueue(parsed)
        return True

    def submit_payload(self, payload: bytes | str | None, topic: str | None = None) -> bool:
        """A raw notice (JSON) from Kafka or MQTT: unparsable ones are rejected with the reason."""
        try:
            notice = json.loads(payload)
        except (ValueError, TypeError, RecursionError) as exc:
            invalid: dict[str, Any] = {"invalid": str(exc)[:200]}
            if topic is not None:
                invalid["topic"] = topic
            return self.submit(invalid)
        return self.submit(notice)

    def serve(self, loaded: LoadedModel, published_at: float = 0.0) -> None:
        """``loaded`` serves now: later notices are compared with it (version, age)."""
        self.serving_version = loaded.version
        self.serving_created_at = loaded.manifest.created_at
        if published_at > 0:
            self.serving_published_at = float(published_at)

    def roll_back(self, bad_version: str, previous: LoadedModel, published_at: float) -> None:
        """A swap was rolled back: ``previous`` serves again (``published_at``: its notice's, 0 unknown) and
        ``bad_version`` is refused from now on."""
        self.refused.add(bad_version)
        self.serving_version = previous.version
        self.serving_created_at = previous.manifest.created_at
        self.serving_published_at = published_at

    def _enqueue(self, parsed: dict[str, Any]) -> None:
        with self._lock:
            self._next_id += 1
            parsed = {**parsed, "id": self._next_id}
            self._pending[self._next_id] = parsed
            self._write_journal()
        self._queue.put(parsed)

    def _forget(self, notice_id: int | None) -> None:
        with self._lock:
            if self._pending.pop(notice_id, None) is not None:  # type: ignore[arg-type]
                self._write_journal()

    def _write_journal(self) -> None:  # under self._lock
        if self._journal is None:
            return
        try:
            atomic_write(self._journal, json.dumps(list(self._pending.values())).encode())
        except OSError as exc:
            log.warning("could not persist pending model notices: %s", exc)

    def resume(self) -> int:
        """Queue the notices a previous run accepted but did not finish; return how many."""
        if self._journal is None or not self._journal.exists():
            return 0
        try:
            saved = json.loads(self._journal.read_text())
            notices = [_queued(parse_model_notice(n, kind="speed")) for n in saved if isinstance(n, Mapping)]
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self._journal, exc)
            notices = []
        with self._lock:
            self._pending.clear()
            self._write_journal()
        for parsed in notices:
            if parsed["name"] == self._name:
                self._enqueue(parsed)
        return len(notices)

    def done(self, loaded: LoadedModel) -> None:
        """The loop swapped ``loaded`` in (and persisted the pointer): its notice is finished."""
        self._forget(loaded.origin.get("id"))

    def take(self) -> LoadedModel | None:
        """The verified model waiting to serve, once (None almost always: a plain attribute read). A version
        rolled back while its notice (a replay) was being verified is rejected here, not swapped in again."""
        if self.ready is None:
            return None
        with self._lock:
            model, self.ready = self.ready, None
        if model is not None and model.version in self.refused:
            self._reject(f"version {model.version} was rolled back after a swap", model.origin)
            self._forget(model.origin.get("id"))
            return None
        return model

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every submitted notice was handled (tests and shutdown)."""
        done = threading.Event()

        def _join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=_join, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _check_newer(self, notice: Mapping[str, Any], loaded: LoadedModel | None = None) -> None:
        """ModelRejected if the notice (or its model) is older than the serving one: a redelivered
        or late notice must never swap an older model back in."""
        published, serving_published = notice["published_at"], self.serving_published_at
        if published and serving_published and published < serving_published:
            raise ModelRejected(f"older than the serving model: published_at {published:.0f} < {serving_published:.0f}")
        if loaded is not None:
            new, serving = _created(loaded.manifest.created_at), _created(self.serving_created_at)
            if new is not None and serving is not None and new < serving:
                raise ModelRejected(
                    f"older than the serving model: created_at {loaded.manifest.created_at} < {self.serving_created_at}"
                )

    def _reject(self, reason: str, notice: Mapping[str, Any]) -> None:
        self.rejected += 1
        log.warning("speed model rejected: %s (notice %s)", reason, dict(notice))
        self._events("model_rejected", reason=reason, notice=dict(notice))

    def _run(self) -> None:
        while True:
            notice = self._queue.get()
            finished = True  # False only while a verified model waits for the loop (done() forgets it)
            try:
                if notice is None:
                    return
                if notice["version"] and notice["version"] == self.serving_version:
                    log.info("speed model %s already serving", notice["version"])
                    continue
                if notice["version"] in self.refused:
                    self._reject(f"version {notice['version']} was rolled back after a swap", notice)
                    continue
                try:
                    self._check_newer(notice)
                    loaded = load_model(
                        notice["model"],
                        notice["manifest"],
                        spec=self._spec,
                        expected_sha256=notice["sha256"],
                        num_threads=self._threads,
                        manifest_sha256=notice["manifest_sha256"],
                    )
                    if notice["version"] and loaded.version != notice["version"]:
                        raise ModelRejected(f"version mismatch: notice {notice['version']}, manifest {loaded.version}")
                    if loaded.name != self._name:
                        raise ModelRejected(f"name mismatch: notice/config {self._name}, manifest {loaded.name}")
                    if loaded.manifest.kind not in ("", "speed"):
                        raise ModelRejected(f"manifest kind is {loaded.manifest.kind}, not speed")
                    self._check_newer(notice, loaded)
                    if self._store is not None:
                        loaded.location = str(keep_local_copy(loaded, self._store))
                    loaded.origin = dict(notice)
                except ModelRejected as exc:
                    self._reject(str(exc), notice)
                    continue
                except Exception as exc:  # never let one bad notice kill the swapper
                    self._reject(f"unexpected {type(exc).__name__}: {exc}", notice)
                    continue
                with self._lock:
                    if self.ready is not None:  # a newer notice overtook one the loop had not taken yet
                        self._pending.pop(self.ready.origin.get("id"), None)
                        self._write_journal()
                    self.ready = loaded
                finished = False
                log.info("speed model %s %s verified, swapping at the next batch", loaded.name, loaded.version)
            finally:
                if finished and notice is not None:
                    self._forget(notice.get("id"))
                self._queue.task_done()


def initial_speed_model(models: Any, spec: FeatureSpec, pointer: Path) -> tuple[LoadedModel, float]:
    """The speed model a starting app serves, and the ``published_at`` of its notice (0: unknown).

    The model a previous run swapped in (``pointer``, verified again by its sha256), else the
    configured ``models.speed``, else the batch model until a notice arrives.
    """
    if pointer.exists():
        try:
            saved = json.loads(pointer.read_text())
            loaded = load_model(
                saved["model"], spec=spec, expected_sha256=saved["sha256"], num_threads=models.num_threads
            )
            log.info("resuming speed model %s from %s", loaded.version, pointer)
            published = saved.get("published_at")
            return loaded, float(published) if isinstance(published, int | float) else 0.0
        except (ModelRejected, ValueError, KeyError, OSError) as exc:
            log.warning("ignoring %s: %s", pointer, exc)
    if models.speed:
        return load_model(models.speed, models.speed_manifest, spec=spec, num_threads=models.num_threads), 0.0
    log.warning("no speed model configured: the batch model serves as speed model until a notice arrives")
    return load_model(models.batch, models.batch_manifest, num_threads=models.num_threads), 0.0


class SwapGuard:
    """Checks the first speed forecasts after a swap: a model that passed every check before it
    served (sha256, shapes, a finite probe) can still forecast absurd values on real data.

    After :meth:`arm`, each speed forecast goes to :meth:`observe` (the loop calls it only while
    ``armed``: one attribute read per record otherwise). A forecast is bad when it is not finite or
    outside ``bounds`` (the target's plausible range: the batch scaler's mean +- k * scale, as the
    input range check). More than ``max_bad`` x ``window`` bad ones among the first ``window`` set
    ``due`` and the path rolls the swap back (:meth:`edge_app.app.EdgeApp.roll_back_speed`) before the
    next reading; ``window`` forecasts with fewer bad ones disarm it.

    >>> g = SwapGuard((0.0, 100.0), window=4, max_bad=0.5)
    >>> g.arm(previous=None, previous_published_at=0.0)
    >>> for v in (50.0, float("nan"), 1e6, 7e5): g.observe(v)
    >>> g.due, g.armed, g.bad, g.checked
    (True, False, 3, 4)
    """

    def __init__(self, bounds: tuple[float, float] | None, window: int = 100, max_bad: float = 0.2) -> None:
        self.lo, self.hi = bounds if bounds is not None else (-math.inf, math.inf)
        self.window = max(1, int(window))
        self.max_bad = max_bad
        self.armed = False
        self.due = False
        self.previous: LoadedModel | None = None
        self.previous_published_at = 0.0
        self.checked = 0
        self.bad = 0

    def arm(self, previous: LoadedModel | None, previous_published_at: float) -> None:
        self.previous, self.previous_published_at = previous, previous_published_at
        self.checked = self.bad = 0
        self.due = False
        self.armed = True

    def observe(self, forecast: float) -> None:
        self.checked += 1
        if not (self.lo <= forecast <= self.hi) or not math.isfinite(forecast):
            self.bad += 1
            if self.bad > self.max_bad * self.window:
                self.due, self.armed = True, False
                return
        if self.checked >= self.window:
            self.armed = False
