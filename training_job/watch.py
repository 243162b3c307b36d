"""Edge mode: train the windows that appear in a local folder (``hybridstream train worker --watch DIR``).

On a Pi in ``edge`` mode there is no queue: the edge app's local uploader writes each closed
window to ``DIR/windows/<thing>/<yyyy>/<mm>/<dd>/<window-id>.csv`` (the S3 key layout), by
copying to a hidden temporary file (``.<name>.tmp``) and renaming it into place, so a
``*.csv`` is complete when it appears. The watcher:

* finds ``*.csv`` files anywhere under ``DIR`` except ``DIR/done/`` and ``DIR/rejected/``,
  ignoring hidden files and files modified less than ``settle_seconds`` ago (a file copied
  in by other means may still be growing);
* processes them one at a time, oldest first (modification time, then path);
* trains with the same pipeline as the SQS worker (version, parity, guardrail, publish to S3
  and/or write to ``--out``), the model name from ``--name`` with ``{thing}`` taken from the
  path (``windows/<thing>/...``);
* then moves the file, keeping its path relative to ``DIR``:

  - trained (published, already published, refused by the guardrail/parity check, or
    written to ``--out``) -> ``DIR/done/<relative path>``, with ``<file>.outcome.json``;
  - a bad window (:class:`~training_job.windows.WindowError`) -> ``DIR/rejected/<relative
    path>``, with ``<file>.reason.txt`` (``reason: message``);
  - any other error (S3 unreachable, TensorFlow failure) -> left in place and tried again
    after ``error_retry_seconds``;

* trains each window on the feature spec the edge wrote beside it (``<file>.spec.json``,
  :mod:`model_contract.window_spec`; it moves with the file), else on the flags' spec;
* speed models: trains on the thing's last ``speed_windows`` windows (the earlier ones from
  ``DIR/done/windows/<thing>/``, :mod:`training_job.recent_windows`), fine-tuned from the batch
  model when it fits (:mod:`training_job.fine_tune`);
* the process dying mid-training leaves the file in place: it is trained again on restart;
* :meth:`FolderWatcher.stop` (SIGTERM/SIGINT) cancels training between batches, leaves the
  file in place and returns.

The watcher never exits because of one file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_contract.layout import speed_model_name, thing_from_window_key
from model_contract.window_spec import SIDECAR_SUFFIX, SpecMismatch, sidecar_metadata
from training_job.fine_tune import FINE_TUNE_KEY, BatchModelSource
from training_job.model import TrainingCancelled
from training_job.pipeline import Outcome, TrainOptions, train_window
from training_job.publish import ModelStore
from training_job.recent_windows import HISTORY_KEY, from_folder
from training_job.windows import DEFAULT_MIN_ROWS, WindowError, parse_window, window_spec

log = logging.getLogger(__name__)

DONE, REJECTED = "done", "rejected"


def _sidecar(path: Path) -> dict[str, str] | None:
    """The spec the edge wrote beside window ``path`` (as window metadata), None without one."""
    try:
        text = path.with_name(path.name + SIDECAR_SUFFIX).read_text()
    except FileNotFoundError:
        return None
    try:
        return sidecar_metadata(text)
    except SpecMismatch as exc:
        raise WindowError("spec_mismatch", str(exc)) from None


@dataclass
class WatchConfig:
    root: Path
    out_dir: Path | None = None
    poll_seconds: float = 5.0
    settle_seconds: float = 2.0  # only files unmodified for this long are picked up
    error_retry_seconds: float = 60.0
    min_rows: int = DEFAULT_MIN_ROWS


@dataclass
class WatchStats:
    received: int = 0  # files handled (same field name as the SQS worker's summary)
    published: int = 0
    exists: int = 0
    rejected: int = 0  # models refused by the guardrail/parity check
    trained: int = 0  # written to --out only
    bad: int = 0  # windows moved to rejected/
    errors: int = 0
    released: int = 0  # cancelled by shutdown, left in place
    outcomes: list[dict[str, Any]] = field(default_factory=list, repr=False)


class FolderWatcher:
    """Trains the window files that appear under ``config.root``; ``on_outcome(outcome, path)`` after each."""

    def __init__(
        self,
        opts: TrainOptions,
        config: WatchConfig,
        store: ModelStore | None = None,
        on_outcome: Callable[[Outcome, Path], None] | None = None,
    ) -> None:
        if store is None and config.out_dir is None:
            raise ValueError("the watcher needs somewhere to put models: a models bucket and/or an --out folder")
        self.opts, self.config, self.store, self.on_outcome = opts, config, store, on_outcome
        self.root = Path(config.root)
        self.batch = BatchModelSource(opts.batch_model, store, opts.batch_name)  # the fine-tune's start
        self.stats = WatchStats()
        self._stop = threading.Event()
        self._retry_after: dict[Path, float] = {}

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pending(self, now: float | None = None) -> list[Path]:
        """Window files ready to be trained, oldest first."""
        now = time.time() if now is None else now
        found: list[tuple[float, str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [d for d in dirnames if d not in (DONE, REJECTED)]
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") or not name.endswith(".csv"):
                    continue
                path = here / name
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # moved away meanwhile
                    continue
                if now - mtime < self.config.settle_seconds or self._retry_after.get(path, 0.0) > now:
                    continue
                found.append((mtime, str(path), path))
        return [p for _, _, p in sorted(found)]

    def run(self, max_files: int | None = None, idle_exit: bool = False) -> WatchStats:
        """Poll and train until :meth:`stop` (or ``max_files``, or nothing pending if ``idle_exit``)."""
        log.info("watching %s for windows (every %gs)", self.root, self.config.poll_seconds)
        self.root.mkdir(parents=True, exist_ok=True)
        while not self.stopping and (max_files is None or self.stats.received < max_files):
            try:
                batch = self.pending()
            except OSError as exc:
                log.error("cannot list %s: %s", self.root, exc)
                batch = []
            if not batch and idle_exit:
                break
            for path in batch:
                if self.stopping or (max_files is not None and self.stats.received >= max_files):
                    break
                self.stats.received += 1
                self.handle(path)
            if not batch:
                self._stop.wait(self.config.poll_seconds)
        log.info("watcher: stopped (%s)", dataclasses.replace(self.stats, outcomes=[]))
        return self.stats

    def handle(self, path: Path) -> str:
        """Train one window file; returns ``done``, ``bad``, ``error`` or ``released``."""
        rel = path.relative_to(self.root)
        try:
            outcome = self._train(path, rel)
        except WindowError as exc:
            self.stats.bad += 1
            log.error("window %s: bad window, moved to %s/: %s", rel, REJECTED, exc)
            self._move(path, rel, REJECTED, {".reason.txt": f"{exc}\n"})
            return "bad"
        except TrainingCancelled:
            self.stats.released += 1
            log.warning("window %s: training cancelled by shutdown; left in place for the next start", rel)
            return "released"
        except Exception as exc:
            self.stats.errors += 1
            retry = self.config.error_retry_seconds
            self._retry_after[path] = time.time() + retry
            log.exception("window %s: failed (%s); left in place, retry in %gs", rel, exc, retry)
            return "error"
        self._retry_after.pop(path, None)
        summary = outcome.summary()
        self._move(path, rel, DONE, {".outcome.json": json.dumps(summary, default=str, indent=2) + "\n"})
        setattr(self.stats, outcome.status, getattr(self.stats, outcome.status, 0) + 1)
        self.stats.outcomes.append(summary)
        log.info("window %s: %s", rel, json.dumps(summary, default=str))
        if self.on_outcome is not None:
            self.on_outcome(outcome, path)
        return "done"

    def _train(self, path: Path, rel: Path) -> Outcome:
        data = path.read_bytes()
        thing = thing_from_window_key(rel.as_posix())
        spec, spec_source = window_spec(_sidecar(path), self.opts.spec)  # the edge's own, when it wrote it
        window = parse_window(
            data, spec, fmt="auto", min_rows=self.config.min_rows, source=path.resolve().as_uri(), thing=thing
        )
        window.spec_source = spec_source
        opts = dataclasses.replace(self.opts, spec=spec, name=speed_model_name(thing or "unknown", self.opts.name))
        window, history = from_folder(self.root / DONE, rel, window, opts.speed_windows, self.config.min_rows)
        start, fine_tune = self.batch.start_for(spec, opts.cfg)
        return train_window(
            window,
            opts,
            store=self.store,
            out_dir=self.config.out_dir,
            cancel=self._stop.is_set,
            start=start,
            extra={FINE_TUNE_KEY: fine_tune, HISTORY_KEY: history.to_dict()},
        )

    def _move(self, path: Path, rel: Path, where: str, notes: dict[str, str]) -> None:
        """Move ``path`` to ``root/where/rel`` (same file system: a rename) and write notes beside it."""
        target = self.root / where / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for suffix, text in notes.items():
                note = target.with_name(target.name + suffix)
                tmp = note.with_name(f".{note.name}.tmp")
                tmp.write_text(text)
                os.replace(tmp, note)
            sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
            if sidecar.exists():  # the window's spec goes with it
                os.replace(sidecar, target.with_name(target.name + SIDECAR_SUFFIX))
            os.replace(path, target)
        except OSError as exc:  # e.g. read-only folder: do not train it again and again in this run
            self._retry_after[path] = float("inf")
            log.error("could not move %s to %s: %s (skipped until restart)", path, target, exc)
