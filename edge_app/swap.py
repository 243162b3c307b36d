"""Speed-model hot swap: notices in, verified models out, off the hot path.

A notice (from the ``models.notices`` topic, or :meth:`SpeedModelSwapper.submit` which the
MQTT listener calls) names a model; a background thread fetches and verifies it
(:func:`edge_app.models.load_model`) and parks it in ``ready``. The loop calls
:meth:`SpeedModelSwapper.take` once per batch (an attribute read when nothing is waiting)
and swaps between two records, so no record is dropped or served by half a model.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge_app.models import LoadedModel, keep_local_copy, load_model
from model_contract import FeatureSpec
from model_contract.runtime import ModelRejected

log = logging.getLogger("edge_app.swap")

EventSink = Callable[..., None]  # (kind, **fields)


def parse_notice(notice: Mapping[str, Any]) -> dict[str, str]:
    """Normalise a model notice: ``model`` (path/URL, aliases ``location``/``uri``), ``sha256``, optional
    ``name``, ``version``, ``manifest``. Raises ValueError if unusable.

    >>> parse_notice({"location": "file:///m/model.tflite", "sha256": "AB" * 32, "version": "v1"})["model"]
    'file:///m/model.tflite'
    """
    if not isinstance(notice, Mapping):
        raise ValueError(f"notice must be an object, got {type(notice).__name__}")
    location = notice.get("model") or notice.get("location") or notice.get("uri")
    if not isinstance(location, str) or not location:
        raise ValueError("notice has no model location (model/location/uri)")
    sha = notice.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise ValueError("notice needs the model's sha256 (64 hex digits)")
    return {
        "model": location,
        "sha256": sha.lower(),
        "name": str(notice.get("name", "")),
        "version": str(notice.get("version", "")),
        "manifest": str(notice.get("manifest", "") or ""),
    }


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
        self.rejected = 0
        self._thread = threading.Thread(target=self._run, name="speed-model-swapper", daemon=True)
        self._thread.start()

    def submit(self, notice: Mapping[str, Any]) -> bool:
        """Queue a notice (thread-safe). False (and a ``model_rejected`` event) if the notice itself is bad."""
        try:
            parsed = parse_notice(notice)
        except ValueError as exc:
            self._reject(str(exc), dict(notice) if isinstance(notice, Mapping) else {"notice": repr(notice)})
            return False
        if parsed["name"] and parsed["name"] != self._name:
            log.info("ignoring notice for model %r (serving %r)", parsed["name"], self._name)
            return False
        self._queue.put(parsed)
        return True

    def take(self) -> LoadedModel | None:
        """The verified model waiting to serve, once (None almost always: a plain attribute read)."""
        if self.ready is None:
            return None
        with self._lock:
            model, self.ready = self.ready, None
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

    def _reject(self, reason: str, notice: Mapping[str, Any]) -> None:
        self.rejected += 1
        log.warning("speed model rejected: %s (notice %s)", reason, dict(notice))
        self._events("model_rejected", reason=reason, notice=dict(notice))

    def _run(self) -> None:
        while True:
            notice = self._queue.get()
            try:
                if notice is None:
                    return
                if notice["version"] and notice["version"] == self.serving_version:
                    log.info("speed model %s already serving", notice["version"])
                    continue
                try:
                    loaded = load_model(
                        notice["model"],
                        notice["manifest"],
                        spec=self._spec,
                        expected_sha256=notice["sha256"],
                        num_threads=self._threads,
                    )
                    if notice["version"] and loaded.version != notice["version"]:
                        raise ModelRejected(f"version mismatch: notice {notice['version']}, manifest {loaded.version}")
                    if self._store is not None:
                        loaded.location = str(keep_local_copy(loaded, self._store))
                except ModelRejected as exc:
                    self._reject(str(exc), notice)
                    continue
                except Exception as exc:  # never let one bad notice kill the swapper
                    self._reject(f"unexpected {type(exc).__name__}: {exc}", notice)
                    continue
                with self._lock:
                    self.ready = loaded
                log.info("speed model %s %s verified, swapping at the next batch", loaded.name, loaded.version)
            finally:
                self._queue.task_done()
