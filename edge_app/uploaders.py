"""Pluggable window uploaders and the background thread that drives them.

An uploader has one method, ``upload(key, path, meta) -> uri``. The local one copies into a
folder with the S3 key layout (``edge`` mode: the on-Pi trainer watches it); :class:`S3Uploader`
puts the window into the windows bucket and then publishes the window notice on MQTT
``hybridstream/<thing>/windows`` (``edge-cloud`` mode: the IoT rule queues it for the trainer).
:class:`UploadWorker` runs uploads off the hot path, retries with backoff, and deletes a spooled
window only after its upload (and notice) succeeded; offline, windows wait on disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from edge_app.windows import WindowSpool, window_key

log = logging.getLogger("edge_app.uploaders")


class Uploader(Protocol):
    def upload(self, key: str, path: Path, meta: dict[str, Any]) -> str:
        """Store the file under ``key``; return where it went (URI). Raise on failure."""
        ...


class LocalFolderUploader:
    """Copies windows to ``<root>/<key>`` atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def upload(self, key: str, path: Path, meta: dict[str, Any]) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
        return target.resolve().as_uri()


def window_notice(thing: str, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    """The notice for one uploaded window (``infra.topic_rules.MESSAGE_SCHEMAS["windows"]``, what
    ``training_job.notices`` parses): rows, first/last timestamps and sha256 from the bytes themselves.

    >>> n = window_notice("pi-1", "b", "windows/pi-1/2017/01/14/T1_20170114T000000Z_2.csv",
    ...                   b"Date_time,device,x\\n2017-01-14T00:00:00Z,T1,1\\n2017-01-14T00:10:00Z,T1,2\\n")
    >>> n["rows"], n["first_ts"], n["last_ts"], n["window_id"]
    (2, '2017-01-14T00:00:00Z', '2017-01-14T00:10:00Z', 'T1_20170114T000000Z_2')
    """
    rows = [r for r in csv.reader(io.StringIO(data.decode("utf-8", "replace"))) if r][1:]
    return {
        "thing": thing,
        "bucket": bucket,
        "key": key,
        "rows": len(rows),
        "first_ts": rows[0][0] if rows else "",
        "last_ts": rows[-1][0] if rows else "",
        "window_id": key.rsplit("/", 1)[-1].rsplit(".", 1)[0],
        "sha256": hashlib.sha256(data).hexdigest(),
    }


class S3Uploader:
    """Puts windows to ``s3://<bucket>/<key>``, then publishes the window notice (QoS 1, waits for the
    PUBACK; a failure raises, so the worker retries the whole window: the put is idempotent).

    One boto3 client, created at the first upload (on the upload thread) and reused. Credentials
    come only from boto3's default chain (on a Pi: Greengrass's token exchange service; never keys
    in the config). Endpoint: ``endpoint_url``, else boto3's ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``, else AWS. Without a transport no notice is sent (an S3 event could feed
    the queue instead).
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
    ) -> None:
        self.bucket = bucket
        self.thing = thing
        self.transport = transport
        self.endpoint_url = endpoint_url
        self.region = region
        self.publish_timeout = publish_timeout
        self.topic = f"hybridstream/{thing}/windows"
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 (lazy: only the upload thread needs it)
            from botocore.config import Config  # noqa: PLC0415

            custom = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=30,
                s3={"addressing_style": "path"} if custom else {},  # S3-compatible servers (radosgw) on an IP
            )
            kwargs: dict[str, Any] = {"config": config}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            if self.region:
                kwargs["region_name"] = self.region
            self._client = boto3.session.Session().client("s3", **kwargs)
        return self._client

    def upload(self, key: str, path: Path, meta: dict[str, Any]) -> str:
        data = path.read_bytes()
        notice = window_notice(self.thing, self.bucket, key, data)
        self.client().put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="text/csv",
            Metadata={"sha256": notice["sha256"], "rows": str(notice["rows"])},
        )
        if self.transport is not None:
            self.transport.publish(self.topic, json.dumps(notice, separators=(",", ":")), timeout=self.publish_timeout)
        return f"s3://{self.bucket}/{key}"


def _s3(cfg: Any, transport: Any) -> Uploader:
    w = cfg.windows
    return S3Uploader(
        w.bucket,
        cfg.thing_name,
        transport=transport,
        endpoint_url=w.s3_endpoint_url,
        region=w.s3_region,
        publish_timeout=cfg.mqtt.publish_timeout_s,
    )


# name -> factory(the app's EdgeConfig, its MQTT transport or None)
UPLOADER_FACTORIES: dict[str, Callable[[Any, Any], Uploader]] = {
    "local": lambda cfg, transport: LocalFolderUploader(cfg.windows.local_root),
    "s3": _s3,
}


def make_uploader(cfg: Any, transport: Any = None) -> Uploader:
    """The uploader ``cfg.windows.uploader`` names (``cfg``: an ``EdgeConfig``)."""
    name = cfg.windows.uploader
    try:
        factory = UPLOADER_FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown uploader {name!r} (have {sorted(UPLOADER_FACTORIES)})") from None
    return factory(cfg, transport)


class UploadWorker:
    """A thread that uploads closed windows in order; ``events(kind, **fields)`` reports each result."""

    def __init__(
        self,
        uploader: Uploader,
        thing: str,
        events: Callable[..., None] | None = None,
        max_backoff: float = 60.0,
        max_tries: int = 20,  # ~15 min with the backoff capped at 60 s; then the window is quarantined
    ) -> None:
        self._uploader = uploader
        self._thing = thing
        self._events = events or (lambda kind, **fields: None)
        self._max_backoff = max_backoff
        self._max_tries = max_tries
        self.quarantined = 0
        self._queue: queue.Queue[tuple[Path, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self.uploaded = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="window-uploader", daemon=True)
        self._thread.start()

    def submit(self, path: Path, meta: dict[str, Any]) -> None:
        self._queue.put((path, meta))

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
        while True:
            try:
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
            self._events("window_uploaded", key=key, uri=uri, **meta)
            return


def open_window_pipeline(
    cfg: Any,
    state_dir: Path,
    spec: Any,
    transport: Any,
    events: Callable[..., None],
    on_closed: Callable[..., None],
) -> tuple[UploadWorker, WindowSpool]:
    """The window spool under ``state_dir/windows`` and its upload worker, as ``run`` and
    ``forward`` both use them; windows a crash left behind are queued for upload first."""
    uploads = UploadWorker(make_uploader(cfg, transport), cfg.thing_name, events=events)
    spool = WindowSpool(
        Path(state_dir) / "windows",
        spec,
        max_records=cfg.windows.max_records,
        max_seconds=cfg.windows.max_seconds,
        on_closed=on_closed,
        fsync=cfg.windows.fsync,
    )
    recovered = spool.recover()
    for path in recovered:
        uploads.submit(path, {"reason": "recovered"})
    if recovered:
        log.info("re-queued %d spooled windows from a previous run", len(recovered))
    return uploads, spool
