"""``hybridstream train --horizon H --calendar C``: the feature spec (and so the manifest) forecasts H
readings ahead from the columns and calendar features C (defaults: 1, ``day``, the product default)."""

from __future__ import annotations

import json

import pytest

from hybridstream.cli import main
from model_contract import Manifest
from model_contract.calendar import DEFAULT_CALENDAR

TINY = ["--epochs", "2", "--lstm-units", "8", "--dense-units", "4"]


def _head(path, n: int) -> str:
    with open(path) as fh:
        return "".join(fh.readlines()[:n])


def test_help_shows_the_horizon_and_the_calendar_with_their_defaults(capsys):
    for cmd in ("pretrain", "window", "worker"):
        with pytest.raises(SystemExit) as done:
            main(["train", cmd, "--help"])
        assert done.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "--horizon H forecast the target H readings after the newest one seen (default 1)" in text, cmd
        assert "--calendar CALENDAR calendar features from each row's timestamp (UTC): day (default:" in text, cmd


def test_a_bad_horizon_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "window", "--input", "w.csv", "--out", "x", "--horizon", "0"])
    assert done.value.code == 2 and "--horizon: must be >= 1, not 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["train", "window", "--input", "w.csv", "--out", "x", "--calendar", "hour"])
    assert done.value.code == 2 and "unknown calendar feature(s) hour" in capsys.readouterr().err


def test_pretrain_with_horizon_3_and_a_calendar_writes_them_into_the_manifest(turbine_dir, tmp_path, capsys):
    history = tmp_path / "history.csv"
    history.write_text(_head(turbine_dir / "train.csv", 401))
    out = tmp_path / "out"
    assert main(["train", "pretrain", "--csv", str(history), "--out", str(out), "--horizon", "3", *TINY]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = Manifest.load(out / "batch" / summary["version"] / "manifest.json")
    assert manifest.feature_spec.horizon == 3 and manifest.to_dict()["feature_spec"]["horizon"] == 3
    assert manifest.feature_spec.calendar == DEFAULT_CALENDAR and tuple(manifest.input_shape) == (2, 9)
    assert manifest.window["rows"] == 400 and manifest.metrics
    # the default horizon, no calendar: another model (the spec is part of the version)
    argv = ["train", "pretrain", "--csv", str(history), "--out", str(out), "--calendar", "none", *TINY]
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plain["version"] != summary["version"]
    spec = Manifest.load(out / "batch" / plain["version"] / "manifest.json").feature_spec
    assert spec.horizon == 1 and spec.calendar == () and spec.input_shape == (2, 5)
