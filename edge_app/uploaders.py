"""Pluggable window uploaders and the background thread that drives them.

An uploader has one method, ``upload(key, path, meta) -> uri``. The local one copies into a
folder with the S3 key layout (``edge`` mode: the on-Pi trainer watches it); :class:`S3Uploader`
puts the window into the windows bucket and then publishes the window notice
(:class:`model_contract.messages.WindowNotice`) on MQTT ``hybridstream/<thing>/windows``
(``edge-cloud`` mode: the IoT rule queues it for the trainer).
:class:`UploadWorker` runs uploads off the hot path, retries with backoff, and deletes a spooled
window only after its upload (and notice) succeeded; offline, windows wait on disk. With a
:class:`~edge_app.forecasts.ForecastExport` it first puts the window's forecasts
(``forecasts/<thing>/.../<window-id>.jsonl.gz``, :meth:`put`), derived from the spooled window.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge_app.export_process import ExportProcess
from edge_app.forecasts import CONTENT_TYPE as FORECASTS_CONTENT_TYPE
from edge_app.forecasts import ForecastExport
from edge_app.models import atomic_write
from edge_app.s3 import LazyS3Client
from edge_app.windows import WindowSpool, window_key
from model_contract.layout import forecasts_key
from model_contract.messages import WindowNotice
from model_contract.topics import WINDOWS, device_topic
from model_contract.window_spec import SIDECAR_SUFFIX, spec_json, window_metadata

log = logging.getLogger("edge_app.uploaders")


class Uploader(Protocol):
    def upload(self, key: str, path: Path, meta: dict[str, Any]) -> str:
        """Store the file under ``key``; return where it went (URI). Raise on failure."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` (a window's forecasts); return the URI. Raise on failure."""
        ...


class LocalFolderUploader:
    """Copies windows to ``<root>/<key>`` atomically (temp file + rename); with ``spec`` (the feature spec
    the edge serves) its JSON goes first to ``<root>/<key>.spec.json`` (:mod:`model_contract.window_spec`)."""

    def __init__(self, root: str | Path, spec: Any = None) -> None:
        self.root = Path(root)
        self.spec_text = spec_json(spec) if spec is not None else None

    def upload(self, key: str, path: Path, meta: dict[str, Any]) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.spec_text is not None:  # before the window: the watcher picks the window up once it appears
            atomic_write(target.with_name(target.name + SIDECAR_SUFFIX), self.spec_text.encode())
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
        return target.resolve().as_uri()

    def put(self, key: str, data: bytes, content_type: str) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target.resolve().as_uri()


class S3Uploader:
    """Puts windows to ``s3://<bucket>/<key>``, then publishes the
    :class:`~model_contract.messages.WindowNotice` on ``hybridstream/<thing>/windows`` (QoS 1, waits
    for the PUBACK; a failure raises, so the worker retries the whole window: the put is idempotent).

    One boto3 client (:class:`edge_app.s3.LazyS3Client`), created at the first upload on the upload
    thread and reused. Without a transport no notice is sent (an S3 event could feed the queue instead).
    ``spec`` (the feature spec the edge serves) goes with every window as its object metadata
    (:func:`model_contract.window_spec.window_metadata`): the trainer trains the speed model on it.
    """

    def __init__(
        self,
        bucket: str,
        thing: str,
        *,
        transport: Any = None,
        endpoint_url: str = "",
        region: str = "",
        publish_timeout: float = 10.0,
        spec: Any = None,
    ) -> None:
        self.spec_metadata = window_metadata(spec) if spec is not None else {}
        self.bucket = bucket
        self.thing = thing
        self.transport = transport
        self.endpoint_url = endpoint_url
        self.region = region
        self.publish_timeout = publish_timeout
        self.topic = device_topic(thing, WINDOWS)
        self.client = LazyS3Client(endpoint_url, region)

    def upload(self, key: str, path: Path, meta: dict[str, Any]) -> str:
        data = path.read_bytes()
        notice = WindowNotice.for_window(self.thing, self.bucket, key, data)
        self.client().put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="text/csv",
            Metadata={"sha256": notice.sha256, "rows": str(notice.rows), **self.spec_metadata},
        )
        if self.transport is not None:
            self.transport.publish(self.topic, notice.to_json(), timeout=self.publish_timeout)
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, data: bytes, content_type: str) -> str:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return f"s3://{self.bucket}/{key}"


def _s3(cfg: Any, transport: Any, spec: Any) -> Uploader:
    w = cfg.windows
    return S3Uploader(
        w.bucket,
        cfg.thing_name,
        transport=transport,
        endpoint_url=w.s3_endpoint_url,
        region=w.s3_region,
        publish_timeout=cfg.mqtt.publish_timeout_s,
        spec=spec,
    )


# name -> factory(the app's EdgeConfig, its MQTT transport or None, the feature spec it serves or None)
UPLOADER_FACTORIES: dict[str, Callable[[Any, Any, Any], Uploader]] = {
    "local": lambda cfg, transport, spec: LocalFolderUploader(cfg.windows.local_root, spec=spec),
    "s3": _s3,
}


def make_uploader(cfg: Any, transport: Any = None, spec: Any = None) -> Uploader:
    """The uploader ``cfg.windows.uploader`` names (``cfg``: an ``EdgeConfig``; ``spec``: the feature spec the
    edge serves, sent with every window so the speed model is trained on it)."""
    name = cfg.windows.uploader
    try:
        factory = UPLOADER_FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown uploader {name!r} (have {sorted(UPLOADER_FACTORIES)})") from None
    return factory(cfg, transport, spec)


class UploadWorker:
    """A thread that uploads closed windows in order; ``events(kind, **fields)`` reports each result."""

    def __init__(
        self,
        uploader: Uploader,
        thing: str,
        events: Callable[..., None] | None = None,
        max_backoff: float = 60.0,
        max_tries: int = 20,  # ~15 min with the backoff capped at 60 s; then the window is quarantined
        max_spool_bytes: int | None = None,  # ready/ beyond this: the oldest windows are dropped
        forecasts: ForecastExport | ExportProcess | None = None,  # put each window's forecasts first (with put())
    ) -> None:
        self._uploader = uploader
        self._forecasts = forecasts if callable(getattr(uploader, "put", None)) else None
        self._thing = thing
        self._events = events or (lambda kind, **fields: None)
        self._max_backoff = max_backoff
        self._max_tries = max_tries
        self._max_spool = max_spool_bytes
        self.dropped = 0
        self.quarantined = 0
        self._queue: queue.Queue[tuple[Path, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self.uploaded = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="window-uploader", daemon=True)
        self._thread.start()

    def submit(self, path: Path, meta: dict[str, Any]) -> None:
        self._queue.put((path, meta))
        if self._max_spool is not None:
            self.enforce_bound(path.parent)

    def enforce_bound(self, ready: Path) -> int:
        """The spool's policy when full: while the windows waiting in ``ready`` take more than
        ``max_spool_bytes``, delete the OLDEST (the newest data matters most for re-training), each
        with a ``window_dropped`` event; the newest window is always kept. Returns how many went."""
        entries = []
        for entry in os.scandir(ready):
            if entry.name.endswith(".csv"):
                try:
                    st = entry.stat()
                except FileNotFoundError:  # uploaded meanwhile
                    continue
                entries.append((st.st_mtime, entry.name, st.st_size))
        total = sum(e[2] for e in entries)
        if total <= self._max_spool:
            return 0
        entries.sort()
        gone = 0
        for _mtime, name, size in entries[:-1]:
            if total <= self._max_spool:
                break
            (ready / name).unlink(missing_ok=True)  # a queued upload of it finds it gone and skips it
            total -= size
            gone += 1
            self.dropped += 1
            log.warning(
                "spool over %.2f MB: dropped the oldest window %s (%d bytes)", self._max_spool / 1e6, name, size
            )
            self._events("window_dropped", file=name, bytes=size, reason="spool full (windows.max_spool_mb)")
        return gone

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def close(self, timeout: float = 30.0) -> bool:
        """Upload what is queued (up to ``timeout``), then stop. False if windows stay spooled for next start."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        drained = self._queue.unfinished_tasks == 0
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=5)
        close = getattr(self._forecasts, "close", None)  # an export process ends with its uploader
        if close is not None and not self._thread.is_alive():
            close()
        return drained

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._upload(*item)
            except Exception:  # never let one window kill the thread (the rest would never upload)
                log.exception("window upload of %s failed unexpectedly", item[0] if item else None)
            finally:
                self._queue.task_done()

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move a window that can never upload to ``../quarantine/`` (kept for a human, not retried)."""
        target = path.parent.parent / "quarantine" / path.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)
        self.quarantined += 1
        log.error("window %s quarantined: %s", path.name, reason)
        self._events("window_quarantined", file=path.name, reason=reason)

    def _upload(self, path: Path, meta: dict[str, Any]) -> None:
        try:
            key = window_key(self._thing, path.stem)
        except ValueError as exc:  # e.g. a stray file dropped into ready/
            self._quarantine(path, str(exc))
            return
        backoff = 0.5
        tries = 0
        extra: dict[str, str] = {}
        while True:
            try:
                if self._forecasts is not None and not extra:
                    body = self._forecasts.encode(path)
                    fkey = forecasts_key(self._thing, path.stem)
                    if body is not None:
                        self._uploader.put(fkey, body, FORECASTS_CONTENT_TYPE)
                    extra = {"forecasts_key": fkey if body is not None else ""}
                uri = self._uploader.upload(key, path, meta)
            except FileNotFoundError:
                log.warning("window %s vanished before upload", path)
                return
            except Exception as exc:
                self.failures += 1
                tries += 1
                if tries >= self._max_tries:
                    self._quarantine(path, f"{tries} failed uploads, last: {exc}")
                    return
                log.warning("window upload %s failed (%s), retry in %.1fs", key, exc, backoff)
                if self._stop.wait(backoff):
                    return  # shutting down: the file stays in ready/ for the next start
                backoff = min(backoff * 2, self._max_backoff)
                continue
            path.unlink(missing_ok=True)
            self.uploaded += 1
            self._events("window_uploaded", key=key, uri=uri, **meta, **extra)
            return


def open_window_pipeline(
    cfg: Any,
    state_dir: Path,
    spec: Any,
    transport: Any,
    events: Callable[..., None],
    on_closed: Callable[..., None],
    forecasts: bool = False,
) -> tuple[UploadWorker, WindowSpool]:
    """The window spool under ``state_dir/windows`` and its upload worker, as ``run`` and
    ``forward`` both use them; windows a crash left behind are queued for upload first.
    ``forecasts``: rows carry the forecasts made for them, uploaded beside each window (``run``), exported in a
    child process with ``windows.forecasts_process`` (the default; :mod:`edge_app.export_process`), else on the
    upload thread."""
    mb = cfg.windows.max_spool_mb
    export: ForecastExport | ExportProcess | None = None
    if forecasts:
        export = (ExportProcess if cfg.windows.forecasts_process else ForecastExport)(spec.target, spec.horizon)
    uploads = UploadWorker(
        make_uploader(cfg, transport, spec),
        cfg.thing_name,
        events=events,
        max_spool_bytes=int(mb * 1e6) if mb is not None else None,
        forecasts=export,
    )
    spool = WindowSpool(
        Path(state_dir) / "windows",
        spec,
        max_records=cfg.windows.max_records,
        max_seconds=cfg.windows.max_seconds,
        on_closed=on_closed,
        fsync=cfg.windows.fsync,
        forecasts=forecasts,
    )
    recovered = spool.recover()
    for path in recovered:
        uploads.submit(path, {"reason": "recovered"})
    if recovered:
        log.info("re-queued %d spooled windows from a previous run", len(recovered))
    return uploads, spool
