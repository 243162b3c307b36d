"""The cloud trainer under faults: the worker SIGKILLed mid-training, then the S3 server (radosgw's
gateway daemon) SIGKILLed and restarted while the next worker publishes. Expected: the queue message
is redelivered, the model is published once, ``LATEST`` never names a partial model, queue and DLQ
end empty."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hybridstream.chaos.harness import Context
from hybridstream.chaos.result import Result
from hybridstream.chaos.stream import guarded
from hybridstream.datasets import TURBINE
from hybridstream.devtools.edge import read_rows, wait_for
from hybridstream.servers.process import REPO_ROOT

NAME = "speed-chaos"


def window_csv(rows: list[dict[str, str]]) -> bytes:
    """A window as the edge uploads it: Date_time, device, then the feature columns."""
    from model_contract import FeatureSpec

    spec = FeatureSpec()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([spec.timestamp_column, spec.device_column, *spec.columns])
    for r in rows:
        writer.writerow([r[spec.timestamp_column], "T1", *(r[c] for c in spec.columns)])
    return out.getvalue().encode()


class LatestWatcher(threading.Thread):
    """Polls ``models/<name>/LATEST`` and records every time it names a model that is not complete."""

    def __init__(self, s3: Any, bucket: str) -> None:
        super().__init__(daemon=True)
        self.s3, self.bucket = s3, bucket
        self.checks = 0
        self.violations: list[str] = []
        self.halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            try:
                pointer = json.loads(self.s3.get_object(Bucket=self.bucket, Key=f"models/{NAME}/LATEST")["Body"].read())
            except Exception:  # none yet, or S3 down right now
                continue
            self.checks += 1
            problem = complete(self.s3, self.bucket, pointer)
            if problem:
                self.violations.append(problem)


def complete(s3: Any, bucket: str, pointer: dict[str, Any]) -> str:
    """'' if the model ``pointer`` names is complete (model + manifest, sha256 matching), else what is wrong."""
    folder = pointer["manifest_key"].rsplit("/", 1)[0]
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=pointer["manifest_key"])["Body"].read())
        model = s3.get_object(Bucket=bucket, Key=f"{folder}/model.tflite")["Body"].read()
    except Exception as exc:
        if "NoSuchKey" in str(exc) or "404" in str(exc):
            return f"LATEST -> {folder}: {exc}"[:200]
        return ""  # S3 unreachable at this instant: not a verdict
    if hashlib.sha256(model).hexdigest() != manifest.get("sha256"):
        return f"LATEST -> {folder}: model sha256 differs from the manifest"
    return ""


def _worker(env: dict[str, str], queue: str, bucket: str, log: Path, s3_endpoint: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hybridstream", "train", "worker", "--queue", queue, "--bucket", bucket,
           "--name", NAME, "--workers", "1", "--wait", "1", "--lease", "6", "--error-visibility", "2",
           "--s3-endpoint", s3_endpoint,
           "--lstm-units", "8", "--dense-units", "4", "--epochs", "30", "--patience", "30"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=open(log, "wb"))  # noqa: SIM115


def trainer_faults(ctx: Context) -> Result:
    def body(result: Result) -> None:
        work, prefix = ctx.work("trainer")
        gw, sqs_server, tox = ctx.servers.radosgw(), ctx.servers.sqs(), ctx.servers.toxiproxy()
        s3, sqs = gw.client(), sqs_server.client()
        windows, models = f"chaos-win-{prefix.strip('.')}", f"chaos-mod-{prefix.strip('.')}"
        for b in (windows, models):
            s3.create_bucket(Bucket=b)
        url, dlq = sqs_server.create_queue(f"chaos-{prefix.strip('.')}", max_receive_count=6, visibility_timeout=30)
        key = "windows/pi-chaos/2017/06/16/w1.csv"
        s3.put_object(Bucket=windows, Key=key, Body=window_csv(read_rows(TURBINE / "test.csv", 0, 1500)))
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"thing": "pi-chaos", "bucket": windows, "key": key}))
        proxy = tox.create_proxy(f"trainer-s3-{prefix.strip('.')}", upstream=f"127.0.0.1:{gw.port}")
        env = {**os.environ, **gw.env(), "PYTHONUNBUFFERED": "1", "AWS_EC2_METADATA_DISABLED": "true"}
        watcher = LatestWatcher(s3, models)
        procs: list[subprocess.Popen] = []
        try:
            # 1. killed mid-training
            log1 = work / "worker-1.log"
            procs.append(_worker(env, url, models, log1, f"http://{proxy.address}"))
            if not wait_for(lambda: "training: " in log1.read_text(errors="replace"), ctx.pick(120, 180)):
                raise RuntimeError(f"worker 1 never started training:\n{log1.read_text()[-2000:]}")
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            killed_at = time.monotonic()
            # 2. the next worker gets the message after the lease; S3 dies while it publishes
            proxy.bandwidth(16, stream="upstream")  # the 40 KB model takes ~2.5 s to upload: a window to hit
            log2 = work / "worker-2.log"
            procs.append(_worker(env, url, models, log2, f"http://{proxy.address}"))
            if not wait_for(lambda: "guardrail:" in log2.read_text(errors="replace"), ctx.pick(150, 240)):
                raise RuntimeError(f"worker 2 never reached publishing:\n{log2.read_text()[-2000:]}")
            redelivered_s = time.monotonic() - killed_at
            time.sleep(0.5)
            rgw_pid = int(gw.pid_file("rgw").read_text())
            os.kill(rgw_pid, signal.SIGKILL)
            down_at = time.monotonic()
            time.sleep(2.0)
            gw._start_rgw(time.monotonic() + 60)  # the gateway only: the OSD (memstore) keeps the objects
            up_at = time.monotonic()
            proxy.clear_toxics()
            published = lambda: bool(_versions(s3, models)) and _latest(s3, models) is not None  # noqa: E731
            ok = wait_for(lambda: published() and _queue_empty(sqs, url), ctx.pick(120, 240), 0.5)
            result.recovery_s = round(time.monotonic() - up_at, 1)
            time.sleep(1.0)
            watcher.halt.set()
            watcher.join(5)
            versions = _versions(s3, models)
            latest = _latest(s3, models)
            log2_text = log2.read_text(errors="replace")
            result.figures.update(
                {
                    "redelivered_after_s": round(redelivered_s, 1),
                    "s3_down_s": round(up_at - down_at, 1),
                    "versions_published": versions,
                    "latest": latest,
                    "latest_checks": watcher.checks,
                    "latest_violations": watcher.violations[:5],
                    "worker2_publish_errors": log2_text.count("error"),
                }
            )
            result.check("worker 1 was killed mid-training", "published s3://" not in log1.read_text(errors="replace"))
            result.check("the message was redelivered to the next worker", "training: " in log2_text)
            result.check("S3 went down after training, during publishing", "guardrail:" in log2_text)
            result.check("the model was published once (one version)", ok and len(versions) == 1)
            result.check("LATEST names that version", latest is not None and [latest.get("version")] == versions)
            result.check("LATEST never named a partial model", not watcher.violations and watcher.checks > 0)
            result.check("the queue is empty (message deleted after publishing)", _queue_empty(sqs, url))
            result.check("nothing in the DLQ", _queue_empty(sqs, dlq))
            result.figures["window_rows"] = 1500
            result.windows_sent, result.windows_delivered = 1, 1 if ok else 0
        finally:
            watcher.halt.set()
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
            proxy.delete()

    return guarded("trainer", "trainer SIGKILL mid-training + S3 restart mid-publish", body)


def _versions(s3: Any, bucket: str) -> list[str]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"models/{NAME}/").get("Contents", [])]
    return sorted({k.split("/")[2] for k in keys if k.count("/") >= 3})


def _latest(s3: Any, bucket: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=f"models/{NAME}/LATEST")["Body"].read())
    except Exception:
        return None


def _queue_empty(sqs: Any, url: str) -> bool:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) == 0 and int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


SCENARIOS = [("trainer", trainer_faults)]
