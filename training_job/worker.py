"""The training worker: long-polls the SQS training queue and turns window notices into models.

Message handling (one message at a time):

* published, already published (same version) or refused by the guardrail/parity check
  (kept under ``rejected/``) -> the message is **deleted**: the work is done;
* a bad notice or a bad window (missing columns, non-numeric, NaN/inf, too few rows,
  duplicated timestamps, missing object (404, or 403 to a role that may not list the bucket),
  rows/sha256 not as the notice says) -> **not deleted**:
  its visibility is set to ``bad_visibility`` seconds so it is received again, and after
  the queue's ``maxReceiveCount`` the redrive policy moves it to the dead-letter queue;
* any other error (S3 down, TensorFlow failure) -> not deleted, visible again after
  ``error_visibility`` seconds (the same redrive applies if it keeps failing);
* the worker process dies mid-training -> the message stays in flight until its lease
  (visibility timeout) expires, then another worker gets it. While a message is being
  worked on, a heartbeat thread extends its visibility every ``lease_seconds / 3``;
* SIGTERM/SIGINT (:meth:`Worker.stop`) -> training is cancelled between batches, the message
  is made visible again at once, and the loop exits. SQS counts that receive towards the
  redrive's ``maxReceiveCount`` (docs/training.md recommends 6 for this reason).

Each window's speed model is trained on the thing's last ``opts.speed_windows`` windows (the earlier
ones listed under ``windows/<thing>/`` in the windows bucket: :mod:`training_job.recent_windows`),
fine-tuned from the batch model when it fits (:mod:`training_job.fine_tune`); an earlier window that
is missing or bad, or a batch model that does not fit, is logged and recorded, never the message's failure.

The worker never exits because of one message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from model_contract.layout import speed_model_name, thing_from_window_key
from training_job.fine_tune import FINE_TUNE_KEY, BatchModelSource
from training_job.model import TrainingCancelled
from training_job.notices import NoticeError, WindowNotice, parse_queue_message
from training_job.pipeline import Outcome, TrainOptions, train_window
from training_job.publish import ModelStore
from training_job.recent_windows import HISTORY_KEY, from_s3
from training_job.windows import DEFAULT_MIN_ROWS, WindowError, parse_window, window_spec

log = logging.getLogger(__name__)

# S3 answers a GET of a missing key with 403 AccessDenied, not 404, to a caller without
# s3:ListBucket on the bucket ("If you don't have the s3:ListBucket permission, Amazon S3 returns
# an HTTP status code 403", https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html).
# The trainer role may list the windows bucket (infra/training.py), but a role without it (or
# with a prefix condition, which S3 does not apply to a GET) must not retry a missing window as
# transient for minutes: it is a bad window, off to the dead-letter queue at once.
MISSING_WHEN_UNLISTABLE = ("AccessDenied", "403")


def window_thing(ref: WindowNotice) -> str:
    """The device a window belongs to: the one in its key (``windows/<thing>/...``, which the IoT
    rule checked against the publisher's topic), never a notice's own claim; a disagreeing
    ``thing`` or a key outside ``windows/<thing>/`` is refused (issue 10, defect 13)."""
    thing = thing_from_window_key(ref.key)
    if not thing:
        raise WindowError("notice_mismatch", f"{ref.uri} is not under windows/<thing>/")
    if ref.thing and ref.thing != thing:
        raise WindowError("notice_mismatch", f"notice says thing {ref.thing!r}, the key says {thing!r}")
    return thing


@dataclass
class WorkerConfig:
    """Queue behaviour (seconds)."""

    queue_url: str
    windows_bucket: str = ""
    wait_seconds: int = 20  # long poll
    lease_seconds: int = 300  # visibility while working; renewed by the heartbeat
    bad_visibility: int = 0  # bad window: visible again at once, so it reaches the DLQ quickly
    error_visibility: int = 60  # unexpected error: retry after a minute
    min_rows: int = DEFAULT_MIN_ROWS
    receive_backoff_max: float = 30.0


class Budget(Protocol):
    """Messages several workers may still receive in total (:mod:`training_job.pool`)."""

    def take(self) -> bool: ...  # claim one receive; False: the budget is spent

    def give_back(self) -> None: ...  # the claimed receive got no message


@dataclass
class Stats:
    received: int = 0
    published: int = 0
    exists: int = 0
    rejected: int = 0
    bad: int = 0
    errors: int = 0
    released: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list, repr=False)


class _Heartbeat:
    """Extends a message's visibility every ``lease / 3`` seconds while it is being worked on.

    Leaving the ``with`` block stops it *deterministically*: ``__exit__`` returns only once no
    extension is in flight and none can start (a lock around each call plus a stopped flag,
    then a join without timeout). Otherwise a late extension (the SQS call can take up to the
    client's read timeout x retries) could land after the worker's final visibility change and
    re-lease a message that was just released (visibility 0) or handed to the redrive.
    """

    def __init__(self, sqs: Any, queue_url: str, receipt: str, lease: int) -> None:
        self._args = (sqs, queue_url, receipt, lease)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sqs-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        with self._lock:  # waits for an extension in flight; none starts after this
            self._stopped = True
        self._thread.join()

    def _run(self) -> None:
        sqs, url, receipt, lease = self._args
        while not self._done.wait(max(1.0, lease / 3)):
            with self._lock:
                if self._stopped:
                    return
                try:
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=lease)
                except (ClientError, BotoCoreError) as exc:
                    log.warning("could not extend the message's visibility: %s", exc)


class Worker:
    """One queue consumer. ``on_outcome(outcome, ref)`` (optional) is called after each window."""

    def __init__(
        self,
        sqs: Any,
        s3: Any,
        store: ModelStore,
        opts: TrainOptions,
        config: WorkerConfig,
        on_outcome: Callable[[Outcome, WindowNotice], None] | None = None,
    ) -> None:
        self.sqs, self.s3, self.store, self.opts, self.config = sqs, s3, store, opts, config
        self.on_outcome = on_outcome
        self.batch = BatchModelSource(opts.batch_model, store, opts.batch_name)  # the fine-tune's start
        self.stats = Stats()
        self.budget: Budget | None = None  # shared by a pool's workers (``max_messages`` in total)
        self._stop = threading.Event()

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish (or cancel) the current message and leave the loop."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def check_queue(self) -> None:
        """Warn when the queue has no redrive policy (bad windows would then be retried forever)."""
        try:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.config.queue_url, AttributeNames=["RedrivePolicy"])
        except (ClientError, BotoCoreError) as exc:
            log.warning("cannot read the queue's attributes: %s", exc)
            return
        if "RedrivePolicy" not in attrs.get("Attributes", {}):
            log.warning("queue %s has no redrive policy: bad windows will be retried forever", self.config.queue_url)

    # -- loop ------------------------------------------------------------------------------

    def run(self, max_messages: int | None = None, idle_exit: bool = False) -> Stats:
        """Receive and handle messages until :meth:`stop` (or ``max_messages``, or an empty poll if ``idle_exit``)."""
        backoff = 1.0
        log.info("worker: polling %s", self.config.queue_url)
        while not self.stopping and (max_messages is None or self.stats.received < max_messages):
            if self.budget is not None and not self.budget.take():
                break
            try:
                resp = self.sqs.receive_message(
                    QueueUrl=self.config.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self.config.wait_seconds,
                    VisibilityTimeout=self.config.lease_seconds,
                    AttributeNames=["ApproximateReceiveCount"],
                )
            except (ClientError, BotoCoreError) as exc:
                if self.budget is not None:
                    self.budget.give_back()
                log.error("receive failed (%s); retrying in %.0fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.receive_backoff_max)
                continue
            backoff = 1.0
            messages = resp.get("Messages") or []
            if not messages and self.budget is not None:
                self.budget.give_back()
            if not messages and idle_exit:
                break
            for message in messages:
                if self.stopping:
                    self._set_visibility(message, 0)
                    self.stats.released += 1
                    continue
                self.stats.received += 1
                self.handle(message)
        log.info("worker: stopped (%s)", dataclasses.replace(self.stats, outcomes=[]))
        return self.stats

    def handle(self, message: dict[str, Any]) -> str:
        """Process one message; returns ``deleted``, ``bad``, ``error`` or ``released``."""
        mid = message.get("MessageId", "?")
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        try:
            with _Heartbeat(self.sqs, self.config.queue_url, message["ReceiptHandle"], self.config.lease_seconds):
                refs = parse_queue_message(message.get("Body", ""), self.config.windows_bucket)
                for ref in refs:
                    self.train(ref)
        except (NoticeError, WindowError) as exc:
            self.stats.bad += 1
            log.error("message %s (receive #%s): bad window, left for the dead-letter queue: %s", mid, receives, exc)
            self._set_visibility(message, self.config.bad_visibility)
            return "bad"
        except TrainingCancelled:
            self.stats.released += 1
            log.warning("message %s: training cancelled by shutdown; message released for another worker", mid)
            self._set_visibility(message, 0)
            return "released"
        except Exception as exc:
            self.stats.errors += 1
            retry = self.config.error_visibility
            log.exception("message %s (receive #%s): failed (%s); retry in %ss", mid, receives, exc, retry)
            self._set_visibility(message, self.config.error_visibility)
            return "error"
        try:
            self.sqs.delete_message(QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except (ClientError, BotoCoreError) as exc:  # the work is done and idempotent: a redelivery is a no-op
            log.warning("message %s: delete failed (%s); a redelivery will find the version published", mid, exc)
        return "deleted"

    def train(self, ref: WindowNotice) -> Outcome:
        """Train (or find published) the speed model of one announced window; its outcome is counted and returned.

        Raises :class:`WindowError` for a bad or missing window, :class:`TrainingCancelled` on :meth:`stop`."""
        try:
            obj = self.s3.get_object(Bucket=ref.bucket, Key=ref.key)
            data = obj["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NoSuchBucket"):
                raise WindowError("missing_object", f"{ref.uri} does not exist") from None
            if code in MISSING_WHEN_UNLISTABLE:
                raise WindowError(
                    "missing_object", f"{ref.uri}: {code} (missing, or the trainer may not read it)"
                ) from None
            raise
        fmt = "jsonl" if ref.key.lower().endswith((".jsonl", ".ndjson", ".json")) else "auto"
        spec, spec_source = window_spec(obj.get("Metadata"), self.opts.spec)  # the edge's own, when it sent it
        thing = window_thing(ref)
        window = parse_window(data, spec, fmt=fmt, min_rows=self.config.min_rows, source=ref.uri, thing=thing)
        window.spec_source = spec_source
        if ref.rows is not None and ref.rows != window.rows:
            raise WindowError("notice_mismatch", f"notice says {ref.rows} rows, {ref.uri} has {window.rows}")
        if ref.sha256 and ref.sha256.lower() != window.sha256:
            raise WindowError(
                "notice_mismatch", f"notice sha256 {ref.sha256[:12]}... != {ref.uri} {window.sha256[:12]}..."
            )
        opts = dataclasses.replace(self.opts, spec=spec, name=speed_model_name(thing, self.opts.name))
        window, history = from_s3(self.s3, ref.bucket, ref.key, window, opts.speed_windows, self.config.min_rows)
        start, fine_tune = self.batch.start_for(spec, opts.cfg)
        extra = {FINE_TUNE_KEY: fine_tune, HISTORY_KEY: history.to_dict()}
        outcome = train_window(window, opts, store=self.store, cancel=self._stop.is_set, start=start, extra=extra)
        setattr(self.stats, outcome.status, getattr(self.stats, outcome.status, 0) + 1)
        summary = outcome.summary()
        self.stats.outcomes.append(summary)
        log.info("window %s: %s", ref.uri, json.dumps(summary, default=str))
        if self.on_outcome is not None:
            self.on_outcome(outcome, ref)
        return outcome

    def _set_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.config.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not change the message's visibility: %s", exc)
