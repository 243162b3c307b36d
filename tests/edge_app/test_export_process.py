"""ExportProcess: a window's forecasts object made by a child process, byte for byte the upload thread's
(ForecastExport.encode); a vanished window still raises FileNotFoundError; a child that dies is started afresh;
one that cannot answer leaves the window to the thread (and, after MAX_FAILURES in a row, every window); the child
starts with the app and ends with it on every exit path (closed, the uploader closed, the app exiting or killed)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from edge_app import export_process
from edge_app.config import EdgeConfig
from edge_app.export_process import MAX_FAILURES, ExportProcess, serve
from edge_app.forecasts import BASE_COLUMNS, ForecastExport
from edge_app.uploaders import LocalFolderUploader, UploadWorker, open_window_pipeline
from model_contract import FeatureSpec
from tests.edge_app.test_forecast_text import _window

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_export():
    """ExportProcess("Ot_avg", horizon=3) made when the test says (after its monkeypatching), closed after it."""
    made: list[ExportProcess] = []
    yield lambda: made.append(ExportProcess("Ot_avg", horizon=3)) or made[-1]
    for proc in made:
        proc.close()


@pytest.fixture
def export(make_export):
    return make_export()


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
    tmp_path: Path, make_export, monkeypatch: pytest.MonkeyPatch
) -> None:
    def garbage(target: str, horizon: int) -> subprocess.Popen:
        code = "import sys; sys.stdin.readline(); print('not json', flush=True)"
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(export_process, "_start", garbage)
    export = make_export()
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
    tmp_path: Path, make_export, monkeypatch: pytest.MonkeyPatch
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
    export = make_export()
    assert export.encode(window) == expected and export.failures == 1 and export._proc is None  # noqa: SLF001

    def gone(target: str, horizon: int) -> subprocess.Popen:
        return subprocess.Popen([str(tmp_path / "no-python")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(export_process, "_start", gone)
    assert export.encode(window) == expected and export.failures == 2


def _gone(pid: int, within: float = 10.0) -> bool:
    """The process ended (a zombie whose parent is gone counts: it runs nothing) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_the_child_runs_from_the_start_and_ends_with_close(export: ExportProcess) -> None:
    """Started with the app (its interpreter start and imports before the first reading, not on the stream)."""
    pid = export._proc.pid  # noqa: SLF001
    assert export.started == 1 and psutil.Process(pid).is_running()
    export.close()
    assert _gone(pid)


def test_the_uploader_ends_its_child(tmp_path: Path) -> None:
    """The app's shutdown, normal or not (EdgeApp._shutdown closes the uploader in a finally), ends the child."""
    export = ExportProcess("Ot_avg", horizon=3)
    worker = UploadWorker(LocalFolderUploader(tmp_path / "out"), "pi-1", forecasts=export)
    pid = export._proc.pid  # noqa: SLF001
    assert worker.close(timeout=10)
    assert _gone(pid)


@pytest.mark.parametrize("death", ["os._exit(3)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_the_child_ends_when_the_app_dies(death: str) -> None:
    """An app that exits without closing or is killed leaves no child behind: its stdin ends with the app."""
    code = (
        f"import os, signal, sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from edge_app.export_process import ExportProcess\n"
        "export = ExportProcess('Ot_avg')\n"
        "print(export._proc.pid, flush=True)\n"
        f"{death}\n"
    )
    app = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert app.returncode != 0, app.stderr
    assert _gone(int(app.stdout.split()[0]))


@pytest.mark.parametrize("setting", [{}, {"forecasts_process": False}])
def test_the_default_exports_in_the_child_and_false_on_the_thread(tmp_path: Path, setting: dict) -> None:
    """``windows.forecasts_process`` is on by default (issue 18); false keeps the export on the upload thread."""
    cfg = EdgeConfig.from_dict(
        {"windows": {"local_root": str(tmp_path / "out"), **setting}, "state_dir": str(tmp_path / "state")},
        require_batch_model=False,
    )
    uploads, _spool = open_window_pipeline(cfg, tmp_path / "state", FeatureSpec(), None, lambda *a, **k: None,
                                           lambda *a: None, forecasts=True)  # fmt: skip
    export = uploads._forecasts  # noqa: SLF001
    try:
        if setting:
            assert type(export) is ForecastExport
        else:
            assert isinstance(export, ExportProcess) and export.pid is not None  # running before any window
            pid = export.pid
    finally:
        uploads.close(timeout=5)
    if not setting:
        assert _gone(pid)


def test_the_child_outlives_a_stop_signal_to_the_group_until_the_app_is_done(
    tmp_path: Path, export: ExportProcess
) -> None:
    """Ctrl-C or a supervisor's SIGTERM reach the whole process group: the child keeps serving the app's shutdown
    (the last windows), and ends with its stdin."""
    window = _window(tmp_path / "w.csv", 100, 5)
    expected = ForecastExport("Ot_avg", horizon=3).encode(window)
    assert export.encode(window) == expected  # the child is up (its handlers are set before anything else)
    pid = export.pid
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(pid, sig)
    time.sleep(0.2)
    assert export.encode(window) == expected
    assert export.pid == pid and export.failures == 0
    export.close()
    assert _gone(pid)
