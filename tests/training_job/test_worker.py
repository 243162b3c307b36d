"""The SQS worker against real local servers: ElasticMQ (queue + redrive DLQ) and radosgw (S3)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training_job.worker import Worker, WorkerConfig

pytestmark = pytest.mark.s3

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def windows_bucket(s3_client):
    import uuid

    name = f"windows-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=name)
    return name


def _upload(s3, bucket: str, key: str, data: bytes) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return key


def _notice(sqs, queue_url: str, bucket: str, key: str, **extra) -> None:
    thing = key.split("/")[1]
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"thing": thing, "bucket": bucket, "key": key, **extra})
    )


def _drain(sqs, url: str, wait: int = 1) -> list[dict]:
    got = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages") or []
        if not msgs:
            return got
        got += msgs


def _worker(sqs_client, s3_client, store, opts, queue, **cfg) -> Worker:
    config = WorkerConfig(queue_url=queue.url, wait_seconds=1, lease_seconds=30, bad_visibility=0, **cfg)
    return Worker(sqs_client, s3_client, store, opts, config)


def test_worker_publishes_and_deletes(sqs_client, sqs_queue, s3_client, windows_bucket, store, tiny_options,
                                      turbine_rows):  # fmt: skip
    data = turbine_rows.csv(0, 200)
    key = _upload(s3_client, windows_bucket, "windows/pi-1/2017/06/16/T1_20170616T192000Z_200.csv", data)
    _notice(sqs_client, sqs_queue.url, windows_bucket, key, rows=200)
    seen = []
    worker = _worker(sqs_client, s3_client, store, tiny_options, sqs_queue)
    worker.on_outcome = lambda outcome, ref: seen.append((outcome.status, ref.thing))
    stats = worker.run(idle_exit=True)
    assert (stats.received, stats.published, stats.bad, stats.errors) == (1, 1, 0, 0)
    assert seen == [("published", "pi-1")]
    version = stats.outcomes[0]["version"]
    manifest = json.loads(
        s3_client.get_object(Bucket=store.bucket, Key=f"models/speed/{version}/manifest.json")["Body"].read()
    )
    assert (manifest["window"]["device"], manifest["window"]["thing"]) == ("T1", "pi-1")
    assert manifest["window"]["source"] == f"s3://{windows_bucket}/{key}"
    assert _drain(sqs_client, sqs_queue.url) == [] and _drain(sqs_client, sqs_queue.dlq_url) == []


def test_bad_windows_go_to_the_dlq_and_the_worker_carries_on(
    sqs_client, sqs_queue, s3_client, windows_bucket, store, tiny_options, turbine_rows, caplog
):
    good = turbine_rows.csv(200, 150)
    text = good.decode().splitlines()
    bad = {
        "missing_columns": "\n".join(",".join(r.split(",")[:4] + r.split(",")[5:]) for r in text),
        "non_numeric": "\n".join(text[:10] + [text[10].rsplit(",", 1)[0] + ",warm"] + text[11:]),
        "not_finite": "\n".join(text[:10] + [text[10].rsplit(",", 1)[0] + ",NaN"] + text[11:]),
        "too_few_rows": "\n".join(text[:30]),
        "duplicate_timestamps": "\n".join(text[:10] + [text[9]] + text[11:]),
    }
    for reason, body in bad.items():
        key = _upload(s3_client, windows_bucket, f"windows/pi-2/2017/06/16/{reason}.csv", body.encode())
        _notice(sqs_client, sqs_queue.url, windows_bucket, key)
    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody="this is not json")
    _notice(sqs_client, sqs_queue.url, windows_bucket, "windows/pi-2/2017/06/16/never-uploaded.csv")
    key = _upload(s3_client, windows_bucket, "windows/pi-2/2017/06/16/good.csv", good)
    _notice(sqs_client, sqs_queue.url, windows_bucket, key)

    caplog.set_level(logging.ERROR, logger="training_job.worker")
    stats = _worker(sqs_client, s3_client, store, tiny_options, sqs_queue).run(idle_exit=True)

    n_bad = len(bad) + 2
    assert stats.published == 1 and stats.errors == 0
    assert stats.bad == n_bad * sqs_queue.max_receive_count  # each bad one retried, never deleted
    dead = _drain(sqs_client, sqs_queue.dlq_url)
    bodies = sorted(m["Body"] for m in dead)
    assert len(dead) == n_bad and "this is not json" in bodies
    assert sorted(json.loads(b)["key"].rsplit("/", 1)[-1] for b in bodies if b.startswith("{")) == sorted(
        [f"{r}.csv" for r in bad] + ["never-uploaded.csv"]
    )
    assert _drain(sqs_client, sqs_queue.url) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for reason in [*bad, "missing_object"]:
        assert f"bad window, left for the dead-letter queue: {reason}:" in logged, reason
    assert "message body is not JSON" in logged


def _trainer_policy(bucket: str, *, list_bucket: dict | None) -> str:
    """The EC2 trainer role's window statements (infra/training.py) as a bucket policy for a radosgw user."""

    def allow(action: str, resource: str, **extra) -> dict:
        principal = {"AWS": ["arn:aws:iam:::user/trainer"]}
        return {"Effect": "Allow", "Principal": principal, "Action": [action], "Resource": [resource], **extra}

    stmts = [allow("s3:GetObject", f"arn:aws:s3:::{bucket}/windows/*")]
    if list_bucket is not None:
        stmts.append(allow("s3:ListBucket", f"arn:aws:s3:::{bucket}", **list_bucket))
    return json.dumps({"Version": "2012-10-17", "Statement": stmts})


@pytest.fixture(scope="module")
def trainer_credentials(s3_server) -> dict[str, str]:
    return s3_server.add_user("trainer")


def test_a_missing_window_is_bad_whether_s3_answers_403_or_404(sqs_client, sqs_queue, s3_server, s3_client,
                                                              windows_bucket, store, tiny_options,
                                                              trainer_credentials):  # fmt: skip
    """S3 answers a GET of a missing key with 403 to a caller without s3:ListBucket, 404 with it
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html); an s3:prefix condition on
    ListBucket does not count for a GET. radosgw does the same. Either way the notice is a bad
    window (dead-letter queue within seconds), never an error retried every minute (issue 20, item 5)."""
    trainer_s3 = s3_server.client(trainer_credentials)
    key = "windows/pi-9/2017/06/16/never-uploaded.csv"
    cases = (
        ("get only", None, "AccessDenied"),
        ("list with a prefix condition", {"Condition": {"StringLike": {"s3:prefix": ["windows/*"]}}}, "AccessDenied"),
        ("list, as infra/training.py grants", {}, "NoSuchKey"),
    )
    for label, list_bucket, code in cases:
        s3_client.put_bucket_policy(
            Bucket=windows_bucket, Policy=_trainer_policy(windows_bucket, list_bucket=list_bucket)
        )
        with pytest.raises(Exception) as caught:
            trainer_s3.get_object(Bucket=windows_bucket, Key=key)
        assert caught.value.response["Error"]["Code"] == code, label
        _notice(sqs_client, sqs_queue.url, windows_bucket, key)
        worker = _worker(sqs_client, trainer_s3, store, tiny_options, sqs_queue, error_visibility=60)
        stats = worker.run(max_messages=1)
        assert (stats.bad, stats.errors) == (1, 0), label
        (msg,) = _drain(sqs_client, sqs_queue.url)  # bad_visibility 0: visible again at once, on its way to the DLQ
        sqs_client.delete_message(QueueUrl=sqs_queue.url, ReceiptHandle=msg["ReceiptHandle"])


def test_a_failure_mid_training_leaves_the_message(sqs_client, sqs_queue, s3_client, windows_bucket, store,
                                                   tiny_options, turbine_rows, monkeypatch):  # fmt: skip
    key = _upload(s3_client, windows_bucket, "windows/pi-3/2017/06/16/w.csv", turbine_rows.csv(0, 150))
    _notice(sqs_client, sqs_queue.url, windows_bucket, key)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash inside training")

    monkeypatch.setattr("training_job.worker.train_window", boom)
    worker = _worker(sqs_client, s3_client, store, tiny_options, sqs_queue, error_visibility=0)
    stats = worker.run(max_messages=1)
    assert (stats.errors, stats.published) == (1, 0)
    (msg,) = _drain(sqs_client, sqs_queue.url)  # still there, visible again for a retry
    assert json.loads(msg["Body"])["key"] == key


def _spawn_worker(s3_server, store, queue_url: str, log_path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, **s3_server.env(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hybridstream", "train", "worker", "--queue", queue_url, "--bucket", store.bucket]
    cmd += ["--wait", "1", "--lease", "6", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=open(log_path, "wb"))


def _wait_for(log_path: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_path.read_text(errors="replace"):
            return
        assert proc.poll() is None, log_path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged:\n{log_path.read_text()}")


@pytest.mark.slow
def test_worker_process_killed_mid_training_leaves_the_message_for_retry(
    s3_server, sqs_client, sqs_queue, s3_client, windows_bucket, store, turbine_rows, tmp_path
):
    key = _upload(s3_client, windows_bucket, "windows/pi-4/2017/06/16/w.csv", turbine_rows.csv(0, 2000))
    _notice(sqs_client, sqs_queue.url, windows_bucket, key)
    log_path = tmp_path / "worker.log"
    # a pool (training_job.pool): its worker processes die with the supervisor, none keeps the lease
    proc = _spawn_worker(s3_server, store, sqs_queue.url, log_path, "--workers", "2")
    try:
        _wait_for(log_path, "training: ", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _drain(sqs_client, sqs_queue.url, wait=0) == []  # still leased by the dead worker...
    msgs = sqs_client.receive_message(QueueUrl=sqs_queue.url, WaitTimeSeconds=12, AttributeNames=["All"])["Messages"]
    assert json.loads(msgs[0]["Body"])["key"] == key  # ...and back for a retry once the lease expires
    assert msgs[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert not store.latest("speed")


@pytest.mark.slow
def test_sigterm_cancels_training_and_releases_the_message(
    s3_server, sqs_client, sqs_queue, s3_client, windows_bucket, store, turbine_rows, tmp_path
):
    key = _upload(s3_client, windows_bucket, "windows/pi-5/2017/06/16/w.csv", turbine_rows.csv(0, 2000))
    _notice(sqs_client, sqs_queue.url, windows_bucket, key)
    log_path = tmp_path / "worker.log"
    proc = _spawn_worker(
        s3_server, store, sqs_queue.url, log_path, "--epochs", "200", "--patience", "200", "--workers", "2"
    )
    try:
        _wait_for(log_path, "training: ", proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log_path.read_text()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["worker"] == "stopped" and summary["released"] == 1 and summary["published"] == 0
    assert "training cancelled by shutdown" in log_path.read_text()
    (msg,) = _drain(sqs_client, sqs_queue.url, wait=0)  # visible again at once, not deleted
    assert json.loads(msg["Body"])["key"] == key
    assert not store.latest("speed")


def test_heartbeat_stops_before_the_final_visibility_change(sqs_client, sqs_queue):
    """An extension in flight when the work ends completes *before* the worker's last word (visibility 0)."""
    from training_job.worker import _Heartbeat

    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody="w")
    (msg,) = sqs_client.receive_message(QueueUrl=sqs_queue.url, VisibilityTimeout=30)["Messages"]
    calls: list[tuple[str, float]] = []

    class SlowNetwork:  # the real ElasticMQ behind a slow link
        def change_message_visibility(self, **kw):
            calls.append(("start", time.monotonic()))
            time.sleep(1.5)
            sqs_client.change_message_visibility(**kw)
            calls.append(("end", time.monotonic()))

    with _Heartbeat(SlowNetwork(), sqs_queue.url, msg["ReceiptHandle"], lease=3):  # extends every 1 s
        time.sleep(1.2)  # the work ends while the first extension is in flight
    left = time.monotonic()
    assert [c for c, _ in calls] == ["start", "end"] and calls[-1][1] <= left
    sqs_client.change_message_visibility(QueueUrl=sqs_queue.url, ReceiptHandle=msg["ReceiptHandle"],
                                         VisibilityTimeout=0)  # fmt: skip
    time.sleep(2.0)  # longer than the heartbeat's interval: nothing re-extends the lease
    assert len(calls) == 2
    again = sqs_client.receive_message(QueueUrl=sqs_queue.url, WaitTimeSeconds=1)["Messages"]
    assert again[0]["Body"] == "w"
