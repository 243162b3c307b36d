"""``hybridstream train pretrain|window`` end to end: files in, models in radosgw (and a local folder) out."""

from __future__ import annotations

import json

import pytest

from hybridstream.cli import main
from model_contract import Manifest, context_stack
from model_contract.runtime import TFLiteModel

pytestmark = pytest.mark.s3

TINY = ["--epochs", "2", "--lstm-units", "8", "--dense-units", "4"]


def _head(path, n: int) -> str:
    with open(path) as fh:
        return "".join(fh.readlines()[:n])


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_help_is_instant_and_complete(capsys):
    for argv in (["train", "--help"], ["train", "pretrain", "--help"], ["train", "window", "--help"],
                 ["train", "worker", "--help"]):  # fmt: skip
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--parity-tolerance" in text and "--margin" in text and "--queue" in text and "--csv" in text


def test_pretrain_publishes_the_batch_model(s3_env, s3_bucket, s3_client, turbine_dir, tmp_path, capsys):
    history = tmp_path / "history.csv"
    history.write_text(_head(turbine_dir / "train.csv", 401))
    rc = main(
        ["train", "pretrain", "--csv", str(history), "--bucket", s3_bucket, "--out", str(tmp_path / "out"), *TINY]
    )
    summary = _last_json(capsys)
    assert rc == 0 and summary["status"] == "published" and summary["name"] == "batch"
    assert summary["s3_uri"] == f"s3://{s3_bucket}/models/batch/{summary['version']}/model.tflite"
    raw = s3_client.get_object(Bucket=s3_bucket, Key=f"models/batch/{summary['version']}/manifest.json")["Body"].read()
    manifest = Manifest.from_json(raw)
    assert manifest.kind == "batch" and manifest.window["rows"] == 400 and "guardrail" not in manifest.extra
    local = tmp_path / "out" / "batch" / summary["version"]
    # the product default spec: the 5 columns and the 4 time-of-day calendar features at each of 2 lags
    assert manifest.feature_spec.calendar == ("day_sin1", "day_cos1", "day_sin2", "day_cos2")
    assert TFLiteModel.from_files(local / "model.tflite").input_shape == (2, 9)
    # the combiner warm start: the context stack after every truth of the history (400 rows, lags 1-2, H=1: 398 truths);
    # its state is valid for this spec, and the manifest stays small (d = 10 + 4 + 2 + 1 = 17: ~330 floats; the
    # twin d = 15: ~260 more)
    warm = manifest.extra["combiner_warm_start"]
    assert warm["method"] == "context" and warm["rows"] == 398 and warm["config"] == context_stack.DEFAULT_CONFIG
    assert warm["spec"] == manifest.feature_spec.to_dict()
    assert context_stack.parse(warm, manifest.feature_spec)[0].n == 398
    assert context_stack.parse_twin(warm, manifest.feature_spec).n == 397  # the baseline's: the last truth left out
    assert len(raw) < 64 * 1024
    # the last line names the model folder (absolute) for `make batch-model` to copy
    assert summary["model_dir"] == str(local.resolve())
    tflite = (local / "model.tflite").read_bytes()
    # again, --out only: the folder already holds that version -> nothing to do, same model_dir
    assert main(["train", "pretrain", "--csv", str(history), "--out", str(tmp_path / "out"), *TINY]) == 0
    again = _last_json(capsys)
    assert again["status"] == "exists" and again["model_dir"] == summary["model_dir"] and again["seconds"] < 2
    # again, --bucket + a fresh --out: already published -> the published files are copied there
    argv = ["train", "pretrain", "--csv", str(history), "--bucket", s3_bucket, "--out", str(tmp_path / "o2"), *TINY]
    assert main(argv) == 0
    third = _last_json(capsys)
    fresh = tmp_path / "o2" / "batch" / summary["version"]
    assert third["status"] == "exists" and third["model_dir"] == str(fresh.resolve())
    assert (fresh / "model.tflite").read_bytes() == tflite and (fresh / "manifest.json").is_file()


def test_window_from_s3_jsonl_then_again_is_a_no_op(s3_env, s3_bucket, s3_client, turbine_dir, capsys):
    lines = _head(turbine_dir / "test.csv", 151).splitlines()
    cols = lines[0].split(",")
    records = [dict(zip(cols, line.split(","), strict=True)) for line in lines[1:151]]
    key = "windows/pi-9/2017/06/16/w.jsonl"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body="\n".join(json.dumps(r) for r in records).encode())
    argv = ["train", "window", "--input", f"s3://{s3_bucket}/{key}", "--bucket", s3_bucket, *TINY]
    assert main(argv) == 0
    first = _last_json(capsys)
    assert first["status"] == "published" and first["guardrail"]["status"] == "first"
    assert main(argv) == 0
    second = _last_json(capsys)
    assert second["status"] == "exists" and second["version"] == first["version"]


def test_train_config_turns_the_options_off(turbine_dir, tmp_path, capsys):
    """``--train-config`` changes the TrainConfig after the flags (as eval run's); the manifest records it."""
    history = tmp_path / "history.csv"
    history.write_text(_head(turbine_dir / "train.csv", 301))
    old = '{"instance_norm": false, "shrink": false}'
    argv = ["train", "pretrain", "--csv", str(history), "--out", str(tmp_path / "out"), *TINY, "--train-config", old]
    assert main(argv) == 0
    folder = tmp_path / "out" / "batch" / _last_json(capsys)["version"]
    hyper = Manifest.from_json((folder / "manifest.json").read_text()).hyperparameters
    # the config before issue 17: the options left out of the record (their legacy value; a default model records
    # them true), the flags kept
    assert "instance_norm" not in hyper and "shrink" not in hyper
    assert hyper["epochs"] == 2 and hyper["lstm_units"] == 8


_REQUIRED = {"pretrain": ["--csv", "h.csv"], "window": ["--input", "w.csv"], "worker": []}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ('{"instance_nrm": false}', "unknown field 'instance_nrm'"),
        ('{"shrink": 0}', "shrink must be true or false, not 0"),
        ('{"epochs": "5"}', 'epochs must be an integer, not "5"'),
        ('{"members": 0}', "members must be >= 1"),
        ("instance_norm=false", "not JSON"),
        ("[]", "a JSON object of TrainConfig fields"),
    ],
)
def test_a_bad_train_config_is_a_usage_error(changes, says, capsys):
    for cmd in ("pretrain", "window", "worker"):
        with pytest.raises(SystemExit) as done:
            main(["train", cmd, *_REQUIRED[cmd], "--train-config", changes])
        assert done.value.code == 2
        assert f"argument --train-config: {says}" in capsys.readouterr().err


def test_bad_window_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "w.csv"
    bad.write_text("Date_time,Db1t_avg\n2017-01-01T00:00:00Z,1\n")
    assert main(["train", "window", "--input", str(bad), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing_columns: missing column(s) Db2t_avg, Gb1t_avg, Gb2t_avg, Ot_avg" in err


def test_refusal_exits_3(s3_env, s3_bucket, turbine_dir, tmp_path, capsys):
    window = tmp_path / "w.csv"
    window.write_text(_head(turbine_dir / "test.csv", 151))
    # the residual model's Keras and TFLite outputs can agree exactly (diff 0.0): a negative tolerance always refuses
    argv = ["train", "window", "--input", str(window), "--bucket", s3_bucket, "--parity-tolerance", "-1", *TINY]
    assert main(argv) == 3
    assert _last_json(capsys)["status"] == "rejected"
