"""Edge mode (``hybridstream train worker --watch DIR``): a folder of window CSVs -> models in radosgw."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridstream.cli import main
from training_job.watch import FolderWatcher, WatchConfig

pytestmark = pytest.mark.s3

REPO = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "2", "--lstm-units", "8", "--dense-units", "4"]
DAY = "windows/{thing}/2017/06/16"


def _put(root: Path, rel: str, data: bytes, age: float = 600.0) -> Path:
    """Write a window the way the edge's local uploader does (hidden temp file, rename), ``age`` s old."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_watch_publishes_good_windows_and_rejects_bad_ones(s3_env, s3_bucket, s3_client, turbine_rows, tmp_path,
                                                           capsys):  # fmt: skip
    root = tmp_path / "edge-out"
    day = DAY.format(thing="pi-7")
    good = _put(root, f"{day}/T1_good.csv", turbine_rows.csv(0, 150))
    text = turbine_rows.csv(150, 150).decode().splitlines()
    _put(root, f"{day}/T1_bad.csv", "\n".join(",".join(r.split(",")[:6]) for r in text).encode())
    growing = _put(root, f"{day}/T1_still_being_written.csv", turbine_rows.csv(300, 150), age=0)  # < --settle
    partial = root / day / ".T1_next.csv.tmp"
    partial.write_bytes(b"Date_time,device\n")  # the uploader's temp file: never picked
    old = _put(root, "done/windows/pi-7/2017/06/15/T1_old.csv", turbine_rows.csv(0, 150))  # already done
    argv = ["train", "worker", "--watch", str(root), "--name", "speed-{thing}", "--bucket", s3_bucket,
            "--idle-exit", "--poll", "0.1", "--settle", "120", *TINY]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["received"], summary["published"], summary["bad"], summary["errors"]) == (2, 1, 1, 0)
    # the good window: published as speed-pi-7 and moved to done/ with its outcome
    done = root / "done" / day / "T1_good.csv"
    assert not good.exists() and done.read_bytes() == turbine_rows.csv(0, 150)
    outcome = json.loads((root / "done" / day / "T1_good.csv.outcome.json").read_text())
    assert outcome["status"] == "published" and outcome["name"] == "speed-pi-7"
    manifest = json.loads(
        s3_client.get_object(Bucket=s3_bucket, Key=f"models/speed-pi-7/{outcome['version']}/manifest.json")[
            "Body"
        ].read()
    )
    assert manifest["window"]["thing"] == "pi-7"
    assert manifest["window"]["source"] == (root / day / "T1_good.csv").resolve().as_uri()
    latest = json.loads(s3_client.get_object(Bucket=s3_bucket, Key="models/speed-pi-7/LATEST")["Body"].read())
    assert latest["version"] == outcome["version"]
    # the bad one: rejected/ with the reason beside it
    assert (root / "rejected" / day / "T1_bad.csv").is_file() and not (root / day / "T1_bad.csv").exists()
    reason = (root / "rejected" / day / "T1_bad.csv.reason.txt").read_text()
    assert reason.startswith("missing_columns: missing column(s) Ot_avg"), reason
    # untouched: the file still being written, the temp file, what was done before
    assert growing.is_file() and partial.is_file() and old.is_file()


def test_a_crash_mid_training_leaves_the_file_and_a_restart_trains_it(store, tiny_options, turbine_rows, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    tiny_options = dataclasses.replace(tiny_options, guardrail=False)  # tiny models: the order is the point
    root = tmp_path / "edge-out"
    day = DAY.format(thing="pi-8")
    newer = _put(root, f"{day}/T1_b.csv", turbine_rows.csv(200, 150), age=10)
    older = _put(root, f"{day}/T1_a.csv", turbine_rows.csv(0, 150), age=20)
    config = WatchConfig(root=root, poll_seconds=0.1, settle_seconds=2)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash inside training")

    with monkeypatch.context() as m:
        m.setattr("training_job.watch.train_window", boom)
        stats = FolderWatcher(tiny_options, config, store=store).run(max_files=1)
    assert (stats.errors, stats.published) == (1, 0)
    assert older.is_file() and newer.is_file() and not (root / "done").exists()  # left in place

    seen: list[str] = []  # "restart": a new watcher picks up the leftovers, oldest first
    watcher = FolderWatcher(tiny_options, config, store=store, on_outcome=lambda o, p: seen.append(p.name))
    stats = watcher.run(idle_exit=True)
    assert seen == ["T1_a.csv", "T1_b.csv"] and stats.published == 2 and stats.errors == 0
    assert not older.exists() and not newer.exists()
    assert sorted(p.name for p in (root / "done" / day).glob("*.csv")) == ["T1_a.csv", "T1_b.csv"]
    assert store.latest("speed").version == stats.outcomes[-1]["version"]


def test_watch_needs_exactly_one_source_and_somewhere_to_publish(tmp_path, capsys):
    base = ["train", "worker", "--idle-exit"]
    assert main([*base, "--watch", str(tmp_path), "--queue", "http://127.0.0.1:9/q", "--out", str(tmp_path)]) == 1
    assert "either --queue URL or --watch DIR, not both" in capsys.readouterr().err
    assert main([*base, "--watch", str(tmp_path)]) == 1
    assert "--watch needs --bucket" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_cancels_training_and_leaves_the_file(s3_server, s3_bucket, turbine_rows, tmp_path):
    root = tmp_path / "edge-out"
    window = _put(root, f"{DAY.format(thing='pi-9')}/T1_w.csv", turbine_rows.csv(0, 2000))
    log_path = tmp_path / "watch.log"
    env = {**os.environ, **s3_server.env(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hybridstream", "train", "worker", "--watch", str(root), "--bucket", s3_bucket,
           "--poll", "0.2", "--epochs", "200", "--patience", "200"]  # fmt: skip
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log_file)
    try:
        deadline = time.monotonic() + 60
        while "training: " not in log_path.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
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
    assert window.is_file() and not (root / "done").exists()  # trained again on the next start
