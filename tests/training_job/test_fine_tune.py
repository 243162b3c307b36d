"""The speed model fine-tuned from the batch model on the thing's last K windows (issue 17), against the real
radosgw and ElasticMQ: the batch model's weights published beside it, the worker (queue and folder) starting
from them and joining the earlier windows, and every fallback (no/unfit batch model, bad or missing windows)."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest

from model_contract import FeatureSpec, sha256_bytes
from training_job.fine_tune import WEIGHTS_FILE, BatchModelSource, mismatch, weights_from_bytes
from training_job.model import model_version
from training_job.pipeline import TrainOptions, train_window
from training_job.recent_windows import History, gather
from training_job.windows import parse_window
from training_job.worker import Worker, WorkerConfig

from .conftest import SPEC, TINY

pytestmark = pytest.mark.s3

DAY = "windows/pi-1/2017/06/16"


def _name(i: int, device: str = "T1") -> str:
    return f"{device}_20170616T{i:02d}0000Z_200.csv"


def _batch(turbine_rows, store=None, out_dir=None, spec: FeatureSpec = SPEC):
    m, ts = turbine_rows.window(0, 600)
    from training_job.windows import window_to_csv

    window = parse_window(window_to_csv(m, ts, spec), spec, source="history.csv")
    opts = TrainOptions(name="batch", kind="batch", spec=spec, cfg=TINY, guardrail=False)
    return train_window(window, opts, store=store, out_dir=out_dir)


def test_pretrain_publishes_the_weights_and_the_worker_fine_tunes_on_the_last_windows(
    sqs_client, sqs_queue, s3_client, s3_bucket, store, turbine_rows
):
    batch = _batch(turbine_rows, store=store)
    meta = batch.manifest["extra"]["weights"]
    key = f"models/batch/{batch.version}/{WEIGHTS_FILE}"
    data = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert (meta["file"], meta["bytes"], meta["arrays"]) == (WEIGHTS_FILE, len(data), len(weights_from_bytes(data)))
    # the thing's windows: two good earlier ones, a bad one between them, another device's, then the announced one
    windows = "windows-" + s3_bucket
    s3_client.create_bucket(Bucket=windows)
    bad = turbine_rows.csv(800, 200).replace(b",", b",x", 3)
    for i, body in [(1, turbine_rows.csv(600, 200)), (2, bad), (3, turbine_rows.csv(1000, 200))]:
        s3_client.put_object(Bucket=windows, Key=f"{DAY}/{_name(i)}", Body=body)
    s3_client.put_object(Bucket=windows, Key=f"{DAY}/{_name(2, 'T2')}", Body=turbine_rows.csv(800, 200, "T2"))
    key = f"{DAY}/{_name(4)}"
    s3_client.put_object(Bucket=windows, Key=key, Body=turbine_rows.csv(1200, 200))
    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody=json.dumps({"bucket": windows, "key": key}))
    opts = TrainOptions(spec=SPEC, cfg=TINY, speed_windows=4, batch_model="latest")
    config = WorkerConfig(queue_url=sqs_queue.url, wait_seconds=1, lease_seconds=30)
    stats = Worker(sqs_client, s3_client, store, opts, config).run(idle_exit=True)
    assert (stats.published, stats.bad, stats.errors) == (1, 0, 0)
    version = stats.outcomes[0]["version"]
    manifest = store.published_manifest("speed", version)
    assert manifest.extra["fine_tune"] == {
        "from": "batch",
        "version": batch.version,
        "source": f"s3://{s3_bucket}/models/batch/{batch.version}",
    }
    history = manifest.extra["speed_windows"]
    assert (history["asked"], history["used"], history["rows"], history["skipped"]) == (4, 3, 600, {"bad": 1})
    assert history["sources"] == [f"s3://{windows}/{DAY}/{_name(1)}", f"s3://{windows}/{DAY}/{_name(3)}"]
    assert manifest.window["rows"] == 600 and manifest.window["source"] == f"s3://{windows}/{key}"
    assert manifest.scaler.to_dict() == batch.manifest["scaler"]  # the batch model's units
    # the same notice again: the same windows and start give the same version (idempotent)
    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody=json.dumps({"bucket": windows, "key": key}))
    again = Worker(sqs_client, s3_client, store, opts, config).run(idle_exit=True)
    assert (again.exists, again.outcomes[0]["version"]) == (1, version)


def test_from_scratch_when_the_batch_model_does_not_fit_and_k1_is_the_old_behaviour(
    s3_client, s3_bucket, store, turbine_rows, tmp_path
):
    other = dataclasses.replace(SPEC, lags=(1,))
    _batch(turbine_rows, store=store, spec=other)
    source = BatchModelSource("latest", store)
    start, why = source.start_for(SPEC, TINY)
    assert start is None and why["from"] == "scratch" and "feature spec" in why["reason"]
    assert BatchModelSource("latest", None).start_for(SPEC, TINY)[1]["reason"].startswith("no models bucket")
    assert "no manifest.json" in BatchModelSource(str(tmp_path), None).start_for(SPEC, TINY)[1]["reason"]
    assert BatchModelSource("none", store).start_for(SPEC, TINY)[0] is None
    # LATEST names a version whose manifest.json parses but is not a manifest: from scratch, not an error
    version = store.latest("batch").version
    s3_client.put_object(Bucket=s3_bucket, Key=f"models/batch/{version}/manifest.json", Body=b"{}")
    start, why = BatchModelSource("latest", store).start_for(SPEC, TINY)
    assert start is None and "is not a model manifest: KeyError" in why["reason"]
    # K = 1, no batch model: the model (and version) the trainer made before the fine-tune existed
    window = parse_window(turbine_rows.csv(600, 200), SPEC, source="w.csv")
    outcome = train_window(window, TrainOptions(spec=SPEC, cfg=TINY), store=store)
    assert outcome.version == model_version(window.matrix, SPEC, TINY, "speed")
    assert "fine_tune" not in outcome.manifest["extra"]


@pytest.mark.parametrize("body", ["{}", '{"name": "batch"}', "[]", "not json", '{"extra": []}'])
def test_a_batch_manifest_that_is_not_a_manifest_means_from_scratch(tmp_path, body):
    (tmp_path / "manifest.json").write_text(body)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"x")
    start, why = BatchModelSource(str(tmp_path)).start_for(SPEC, TINY)
    assert start is None and why["from"] == "scratch" and "is not a model manifest" in why["reason"]


def test_mismatch_names_what_differs(turbine_rows, tmp_path):
    batch = _batch(turbine_rows, out_dir=tmp_path)
    folder = tmp_path / "batch" / batch.version
    assert (folder / WEIGHTS_FILE).is_file()
    from model_contract import Manifest

    manifest = Manifest.load(folder / "manifest.json")
    assert mismatch(manifest, SPEC, TINY) == ""
    assert "lstm_units 16" in mismatch(manifest, SPEC, TINY.replace(lstm_units=16))
    assert "instance_norm False" in mismatch(manifest, SPEC, TINY.replace(instance_norm=False))
    assert "ol_residual True" in mismatch(manifest, SPEC, TINY.replace(ol_residual=True))
    weights = manifest.extra.pop("weights")
    assert "without its weights" in mismatch(manifest, SPEC, TINY)
    (folder / WEIGHTS_FILE).write_bytes(b"not npz")
    start, why = BatchModelSource(str(folder)).start_for(SPEC, TINY)
    assert start is None and "does not match its manifest's sha256" in why["reason"]
    # a file whose sha256 the manifest records but that is not npz, or holds an object array (no pickle)
    buf = io.BytesIO()
    np.savez(buf, np.array([{"a": 1}], dtype=object))
    for data in (b"not npz", buf.getvalue()):
        (folder / WEIGHTS_FILE).write_bytes(data)
        manifest.extra["weights"] = weights | {"sha256": sha256_bytes(data)}
        manifest.save(folder / "manifest.json")
        start, why = BatchModelSource(str(folder)).start_for(SPEC, TINY)
        assert start is None and f"{WEIGHTS_FILE} is not readable" in why["reason"]
    # no sha256 recorded: not verified, so not used
    manifest.extra["weights"] = {k: v for k, v in weights.items() if k != "sha256"}
    manifest.save(folder / "manifest.json")
    start, why = BatchModelSource(str(folder)).start_for(SPEC, TINY)
    assert start is None and "has no sha256" in why["reason"]


def test_gather_skips_missing_other_spec_and_overlapping_windows(turbine_rows):
    current = parse_window(turbine_rows.csv(800, 200), SPEC, source="now")
    from model_contract.window_spec import window_metadata

    loaded = {
        "a": (turbine_rows.csv(700, 200), None),  # overlaps the current window
        "b": (turbine_rows.csv(400, 200), window_metadata(dataclasses.replace(SPEC, lags=(1,)))),
        "d": (turbine_rows.csv(550, 200), None),  # ends 50 rows before "now" begins: joined
    }
    joined, history = gather(current, ["a", "b", "c", "d"], loaded.get, 5, 100, History(5))
    assert history.skipped == {"overlap": 1, "other_spec": 1, "missing": 1}
    assert (history.used, history.rows, history.sources) == (2, 400, ["d"])
    assert np.array_equal(joined.matrix[:200], parse_window(loaded["d"][0], SPEC).matrix)
    assert joined.epochs == sorted(joined.epochs) and joined.source == "now"


def test_the_folder_worker_fine_tunes_from_a_pretrain_folder_on_the_done_windows(turbine_rows, tmp_path, capsys):
    from hybridstream.cli import main
    from training_job.windows import window_to_csv

    tiny = ["--epochs", "2", "--lstm-units", "8", "--dense-units", "4", "--batch-size", "64", "--patience", "2"]
    m, ts = turbine_rows.window(0, 600)
    (tmp_path / "history.csv").write_bytes(window_to_csv(m, ts, SPEC))
    assert main(["train", "pretrain", "--csv", str(tmp_path / "history.csv"), "--out", str(tmp_path / "m"), *tiny]) == 0
    batch_dir = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["model_dir"]
    root = tmp_path / "edge-out"
    for i, start in [(1, 600), (2, 800)]:  # trained before: the watcher moved them to done/
        path = root / "done" / DAY / _name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(turbine_rows.csv(start, 200))
    (root / DAY).mkdir(parents=True)
    (root / DAY / _name(3)).write_bytes(turbine_rows.csv(1000, 200))
    argv = ["train", "worker", "--watch", str(root), "--out", str(tmp_path / "m"), "--name", "speed-{thing}",
            "--batch-model", batch_dir, "--speed-windows", "3", "--idle-exit", "--settle", "0", *tiny]  # fmt: skip
    assert main(argv) == 0
    outcome = json.loads((root / "done" / DAY / f"{_name(3)}.outcome.json").read_text())
    manifest = json.loads((tmp_path / "m" / "speed-pi-1" / outcome["version"] / "manifest.json").read_text())
    assert manifest["extra"]["fine_tune"]["source"] == batch_dir
    assert (manifest["extra"]["speed_windows"]["used"], manifest["window"]["rows"]) == (3, 600)


def test_gather_stops_at_a_gap_longer_than_about_a_window(turbine_rows):
    current = parse_window(turbine_rows.csv(800, 200), SPEC, source="now")
    loaded = {
        "lost": (b"not a window", None),  # a bad window between: the one gap of a window that is bridged
        "d": (turbine_rows.csv(400, 200), None),  # ends 200 rows (one window) before "now" begins: joined
        "old": (turbine_rows.csv(0, 100), None),  # ends 300 rows (1.5 windows + a step) before "d": the history ends
        "older": (turbine_rows.csv(0, 50), None),  # never read
    }
    joined, history = gather(current, list(loaded), loaded.get, 5, 10, History(5))
    assert history.skipped == {"bad": 1, "gap": 1} and "long before the next window begins" in history.problems[1]
    assert (history.used, history.rows, history.sources) == (2, 400, ["d"])


def test_s3_errors_other_than_missing_or_forbidden_propagate(s3_server, s3_client, s3_bucket, turbine_rows):
    import socket
    import uuid

    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from training_job.recent_windows import from_s3

    for i in (1, 2):
        s3_client.put_object(Bucket=s3_bucket, Key=f"{DAY}/{_name(i)}", Body=turbine_rows.csv(i * 200, 200))
    key = f"{DAY}/{_name(3)}"
    current = parse_window(turbine_rows.csv(600, 200), SPEC, source=key)
    joined, history = from_s3(s3_client, s3_bucket, key, current, 3, 100)
    assert (history.used, joined.rows) == (3, 600)
    # another user, not allowed to list the bucket: the earlier windows are skipped, the model trains on this one
    outsider = s3_server.client(s3_server.add_user(f"ft-outsider-{uuid.uuid4().hex[:8]}"))
    joined, history = from_s3(outsider, s3_bucket, key, current, 3, 100)
    assert (history.used, joined.rows, history.skipped) == (1, 200, {"unlisted": 1})
    # the endpoint is down: the error reaches the worker, which retries the window (not a smaller model)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    creds = s3_server.credentials()
    down = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(BotoCoreError):
        from_s3(down, s3_bucket, key, current, 3, 100)


def test_a_window_outside_windows_thing_joins_only_its_own_folder(turbine_rows, tmp_path):
    from training_job.recent_windows import from_folder

    done = tmp_path / "done"
    for rel in [f"{DAY}/{_name(1)}", f"windows/pi-2/2017/06/16/{_name(2)}", _name(1)]:
        (done / rel).parent.mkdir(parents=True, exist_ok=True)
        (done / rel).write_bytes(turbine_rows.csv(600, 200))
    current = parse_window(turbine_rows.csv(800, 200), SPEC, source=_name(3))
    joined, history = from_folder(done, tmp_path.joinpath(_name(3)).relative_to(tmp_path), current, 4, 100)
    assert history.sources == [str(done / _name(1))]  # not pi-2's T1 window, nor pi-1's
    joined, history = from_folder(done, tmp_path.joinpath("elsewhere", _name(3)).relative_to(tmp_path), current, 4, 100)
    assert history.used == 1 and history.sources == []


def test_the_earlier_windows_are_found_by_day_folders_newest_first(s3_client, s3_bucket, tmp_path):
    from training_job.recent_windows import s3_earlier, walk_back

    days = ["2016/12/30", "2016/12/31", "2017/01/01", "2017/01/02", "2017/01/03"]
    keys = [f"windows/pi-1/{d}/T1_{d.replace('/', '')}T{h:02d}0000Z_9.csv" for d in days for h in (0, 12)]
    for key in keys:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"")
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"")
    current = keys[6]  # 2017-01-02 00:00: three earlier ones are on 2017-01-01 and 2016-12-31
    calls = []
    s3_client.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(params["Prefix"])
    )
    assert s3_earlier(s3_client, s3_bucket, current, 3) == [keys[5], keys[4], keys[3]]
    assert calls == [
        "windows/pi-1/", "windows/pi-1/2017/", "windows/pi-1/2017/01/", "windows/pi-1/2017/01/02/",
        "windows/pi-1/2017/01/01/", "windows/pi-1/2016/", "windows/pi-1/2016/12/", "windows/pi-1/2016/12/31/",
    ]  # fmt: skip  # never 2017/01/03 (after it) nor 2016/12/30 (enough found)
    assert s3_earlier(s3_client, s3_bucket, "windows/pi-1/T1_20170102T000000Z_9.csv", 2) == [keys[5], keys[4]]
    from training_job.recent_windows import _folder_children, _folder_files

    names = walk_back(_folder_children, _folder_files, f"{tmp_path}/windows/pi-1/", f"{tmp_path}/{current}", 3)
    assert names == [str(tmp_path / k) for k in (keys[5], keys[4], keys[3])]
