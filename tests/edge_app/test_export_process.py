"""ExportProcess: a window's forecasts object made by a child process, byte for byte the upload thread's
(ForecastExport.encode); a vanished window still raises FileNotFoundError; a child that dies is started afresh;
one that cannot answer leaves the window to the thread (and, after MAX_FAILURES in a row, every window)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app import export_process
from edge_app.export_process import MAX_FAILURES, ExportProcess, serve
from edge_app.forecasts import BASE_COLUMNS, ForecastExport
from tests.edge_app.test_forecast_text import _window


@pytest.fixture
def export():
    proc = ExportProcess("Ot_avg", horizon=3)
    yield proc
    proc.close()


def test_the_child_makes_the_threads_bytes_and_says_what_is_missing(tmp_path: Path, export: ExportProcess) -> None:
    local = ForecastExport("Ot_avg", horizon=3)
    windows = [_window(tmp_path / f"w{seed}.csv", 300, seed) for seed in range(3)]
    windows.append(_window(tmp_path / "old.csv", 50, 9, BASE_COLUMNS))
    for window in windows:
        assert export.encode(window) == local.encode(window)
    plain = tmp_path / "plain.csv"
    plain.write_text("Date_time,device,Ot_avg\r\n2017-01-14T00:00:00,T1,1.5\r\n")
    assert export.encode(plain) is None  # no forecast columns
    with pytest.raises(FileNotFoundError):
        export.encode(tmp_path / "gone.csv")
    assert export.started == 1 and export.failures == 0 and export.errors == 0


def test_a_child_that_died_is_started_afresh(tmp_path: Path, export: ExportProcess) -> None:
    window = _window(tmp_path / "w.csv", 200, 1)
    expected = ForecastExport("Ot_avg", horizon=3).encode(window)
    assert export.encode(window) == expected
    export._proc.kill()  # noqa: SLF001
    export._proc.wait()  # noqa: SLF001
    assert export.encode(window) == expected
    assert export.started == 2 and export.failures == 0


def test_a_child_that_cannot_answer_leaves_the_window_to_the_thread(
    tmp_path: Path, export: ExportProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def garbage(target: str, horizon: int) -> subprocess.Popen:
        code = "import sys; sys.stdin.readline(); print('not json', flush=True)"
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(export_process, "_start", garbage)
    window = _window(tmp_path / "w.csv", 100, 2)
    expected = ForecastExport("Ot_avg", horizon=3).encode(window)
    for _ in range(MAX_FAILURES + 2):
        assert export.encode(window) == expected
    assert export.failures == MAX_FAILURES and export.started == MAX_FAILURES  # then the thread keeps the work


def test_the_childs_protocol(tmp_path: Path) -> None:
    window = _window(tmp_path / "w.csv", 50, 4)
    requests = b"".join(json.dumps({"path": str(p)}).encode() + b"\n" for p in (window, tmp_path / "gone.csv"))
    out = io.BytesIO()
    serve(["Ot_avg", "1"], io.BytesIO(requests), out)
    reply = io.BytesIO(out.getvalue())
    head = json.loads(reply.readline())
    assert head["status"] == "ok" and reply.read(head["size"]) == ForecastExport("Ot_avg").encode(window)
    assert json.loads(reply.readline()) == {"status": "missing", "size": 0, "errors": 0}


def test_a_hung_child_or_no_interpreter_leaves_the_window_to_the_thread(
    tmp_path: Path, export: ExportProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that never answers is timed out and killed; an interpreter that is gone is a failure of the
    child (counted, the thread exports), not a vanished window (from the review of 7a0d811)."""
    window = _window(tmp_path / "w.csv", 100, 3)
    expected = ForecastExport("Ot_avg", horizon=3).encode(window)

    def hung(target: str, horizon: int) -> subprocess.Popen:
        code = "import sys, time; sys.stdin.readline(); time.sleep(60)"
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(export_process, "REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(export_process, "_start", hung)
    assert export.encode(window) == expected and export.failures == 1 and export._proc is None  # noqa: SLF001

    def gone(target: str, horizon: int) -> subprocess.Popen:
        return subprocess.Popen([str(tmp_path / "no-python")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(export_process, "_start", gone)
    assert export.encode(window) == expected and export.failures == 2
