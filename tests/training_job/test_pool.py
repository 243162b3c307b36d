"""N trainings at once (training_job.pool) against real local servers: ElasticMQ + radosgw.

More messages than workers, one worker SIGKILLed mid-training, one poison message: every
window is published once, the killed worker's message comes back after its lease and is
trained by another worker, the poison message ends in the dead-letter queue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
import uuid

import pytest

from training_job.pool import SharedBudget, WorkerPool, WorkerSpec, default_workers, threads_per_worker
from training_job.worker import WorkerConfig

pytestmark = pytest.mark.s3

THINGS = ["pi-a", "pi-b"]  # with the poison message: more messages than workers


def test_threads_and_workers_follow_the_vcpus(monkeypatch):
    monkeypatch.delenv("HYBRIDSTREAM_TRAINER_WORKERS", raising=False)
    assert default_workers(16) == 16 and default_workers(1) == 1
    monkeypatch.setenv("HYBRIDSTREAM_TRAINER_WORKERS", "3")
    assert default_workers(16) == 3
    monkeypatch.setenv("HYBRIDSTREAM_TRAINER_WORKERS", "0")
    with pytest.raises(ValueError, match="must be >= 1"):
        default_workers(16)
    # one worker: TensorFlow's own default; N workers: the cores shared out, never 0
    assert threads_per_worker(1, 16) is None
    assert (threads_per_worker(16, 16), threads_per_worker(4, 16), threads_per_worker(2, 2)) == (1, 4, 1)
    assert threads_per_worker(8, 2) == 1


def test_shared_budget_counts_across_takers():
    import multiprocessing as mp

    budget = SharedBudget(mp.get_context("spawn"), 2)
    assert budget.take() and budget.take() and not budget.take()
    budget.give_back()
    assert budget.take() and not budget.take()


class _Recorder:
    """Records the pool's scale-in protection calls (the AWS call itself: training_job.protection)."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def set(self, protected: bool) -> None:
        self.calls.append(protected)


def _drain(sqs, url: str) -> list[dict]:
    got = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        got += msgs
    return got


def test_pool_survives_a_killed_worker_and_a_poison_message(
    s3_server, sqs_client, sqs_queue, s3_client, store, tiny_options, turbine_rows, monkeypatch
):
    for key, value in s3_server.env().items():  # the workers' boto3 clients: radosgw's keys
        monkeypatch.setenv(key, value)
    windows = f"windows-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=windows)
    keys = {}
    for i, thing in enumerate(THINGS):
        key = f"windows/{thing}/2017/06/16/w{i}.csv"
        s3_client.put_object(Bucket=windows, Key=key, Body=turbine_rows.csv(300 * i, 300))
        keys[thing] = key
        body = {"thing": thing, "bucket": windows, "key": key, "rows": 300}
        sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody=json.dumps(body))
    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody="poison: not a window notice")

    spec = WorkerSpec(
        queue_url=sqs_queue.url,
        bucket=store.bucket,
        opts=dataclasses.replace(tiny_options, name="speed-{thing}"),
        config=WorkerConfig(queue_url=sqs_queue.url, wait_seconds=1, lease_seconds=6, bad_visibility=0),
        s3_endpoint=s3_server.endpoint,
        intra_op_threads=threads_per_worker(2),
        log_level=logging.WARNING,
    )
    protection = _Recorder()
    pool = WorkerPool(spec, workers=2, protection=protection, restart_delay=0.5)
    killed = None
    pool.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pool.pump(0.2)
            busy = pool.busy()
            if killed is None and busy:
                time.sleep(0.3)  # inside the training (the first one in a process takes seconds)
                index, pid = next(iter(busy.items()))
                os.kill(pid, signal.SIGKILL)
                killed = pid
            published = {o["name"] for o in pool.stats.outcomes if o["status"] in ("published", "exists")}
            if len(published) == len(THINGS) and pool.stats.restarts == 1:  # restarted (maybe still starting)
                break
        else:
            raise AssertionError(f"not drained: {pool.stats.counts()} {pool.stats.outcomes}")
        # the poison message: received maxReceiveCount times, then redriven (no worker deletes it)
        dead = []
        while time.monotonic() < deadline and not dead:
            pool.pump(0.5)
            dead = _drain(sqs_client, sqs_queue.dlq_url)
    finally:
        pool.close()

    assert killed is not None and pool.stats.restarts == 1
    trained = [o["window"] for o in pool.stats.outcomes if o["status"] in ("published", "rejected")]
    assert sorted(trained) == sorted(f"s3://{windows}/{k}" for k in keys.values())  # each window trained once
    for thing in THINGS:  # one version each, LATEST on it
        listed = s3_client.list_objects_v2(Bucket=store.bucket, Prefix=f"models/speed-{thing}/")
        manifests = [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("manifest.json")]
        assert len(manifests) == 1 and store.latest(f"speed-{thing}") is not None, thing
    assert [m["Body"] for m in dead] == ["poison: not a window notice"]
    assert _drain(sqs_client, sqs_queue.url) == []
    assert pool.stats.bad >= sqs_queue.max_receive_count - 1  # the killed worker's own counts are lost
    assert protection.calls and protection.calls[0] is True and protection.calls[-1] is False
