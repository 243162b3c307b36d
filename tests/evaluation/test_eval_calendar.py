"""``hybridstream eval run --calendar``: the default (time of day) needs a timestamp column; the matrices
carry the calendar features computed by the contract; bad values exit 2 (no training in these tests)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from hybridstream.cli import main
from hybridstream.evaluation import csv_input
from hybridstream.evaluation.data import STEP_SIZE, STEP_SPAN, inject_step
from model_contract.calendar import DAY_FEATURES
from tests.evaluation.test_eval_run import write_hourly


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", "run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_shows_the_calendar_option(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--calendar day|none|NAMES" in text and "time of day" in text


def test_a_csv_without_timestamps_needs_calendar_none(tmp_path, capsys):
    rows = "\n".join(f"{i},{i % 7}.5,{i % 5}.25" for i in range(300))
    train = tmp_path / "train.csv"
    train.write_text("n,x,y\n" + rows + "\n")
    code, out, err = _run(capsys, "--train", str(train), "--test", str(train))
    assert code == 2 and out == "" and "Traceback" not in err
    assert "no timestamp column detected" in err and "--calendar none" in err
    t = csv_input.read_table(train)
    spec = csv_input.choose_spec(t, t, calendar=())
    assert spec.calendar == () and csv_input.to_matrix(t, spec).shape == (300, 3)


def test_an_unknown_calendar_name_exits_2(tmp_path, capsys):
    train = tmp_path / "train.csv"
    write_hourly(train, 200, 1, datetime(2024, 1, 1))
    code, _, err = _run(capsys, "--train", str(train), "--test", str(train), "--calendar", "weekday")
    assert code == 2 and "--calendar: unknown calendar feature(s) weekday; valid: day_sin1" in err


def test_the_matrix_carries_the_time_of_day_of_each_row(tmp_path):
    train = tmp_path / "train.csv"
    write_hourly(train, 48, 1, datetime(2024, 1, 1))  # naive timestamps: UTC
    t = csv_input.read_table(train)
    spec = csv_input.choose_spec(t, t, calendar=DAY_FEATURES)
    m = csv_input.to_matrix(t, spec)
    assert spec.features == ("temp", "humidity", "load", "demand", *DAY_FEATURES) and m.shape == (48, 8)
    hours = np.arange(48) % 24
    np.testing.assert_allclose(m[:, 4], np.sin(2 * np.pi * hours / 24), atol=1e-12)
    np.testing.assert_allclose(m[:, 7], np.cos(4 * np.pi * hours / 24), atol=1e-12)
    np.testing.assert_array_equal(m[:, :4], csv_input.to_matrix(t, csv_input.choose_spec(t, t)))


def test_the_step_scenario_shifts_the_readings_not_their_time():
    m = np.zeros((STEP_SPAN[1] + 1, 7))
    out = inject_step(m, *STEP_SPAN, STEP_SIZE, columns=5)
    assert (out[STEP_SPAN[0] : STEP_SPAN[1], :5] == STEP_SIZE).all() and (out[:, 5:] == 0).all()


def _weather_style(path, n: int) -> None:
    """Hourly rows stamped as a common public weather benchmark writes them: ``1/2/2010 1:00`` (month/day/year)."""
    rows = [f"1/{1 + i // 24}/2010 {i % 24}:00,{i % 7}.5,{(i * 3) % 11}.25" for i in range(n)]
    path.write_text("date,x,y\n" + "\n".join(rows) + "\n")


def test_a_non_iso_timestamp_is_refused_with_the_way_out_then_read_with_time_format(tmp_path, capsys):
    """Issue 16: ``1/1/2010 0:00`` is refused naming --time-format; with it, the calendar features are right."""
    train = tmp_path / "weather.csv"
    _weather_style(train, 72)
    code, _, err = _run(capsys, "--train", str(train), "--test", str(train))
    assert code == 2 and "--time-format" in err and "%m/%d/%Y %H:%M" in err and "Traceback" not in err
    t = csv_input.read_table(train, "%m/%d/%Y %H:%M")
    assert t.timestamp_column == "date" and t.cells["date"][25] == "2010-01-02T01:00:00" and t.numeric == ["x", "y"]
    m = csv_input.to_matrix(t, csv_input.choose_spec(t, t, calendar=DAY_FEATURES))
    np.testing.assert_allclose(m[:, 2], np.sin(2 * np.pi * (np.arange(72) % 24) / 24), atol=1e-12)
    with pytest.raises(csv_input.EvalInputError, match="no column has every value in the --time-format"):
        csv_input.read_table(train, "%Y-%m-%d")
