"""No process survives the demo: its children (and their children) stop on exit, on a signal, and
after the demo itself was killed (the next run reaps them from the PID file)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hybridstream.demo.supervisor import Supervisor, group_alive, reap_pid_file
from hybridstream.servers.process import pid_alive

REPO = Path(__file__).resolve().parents[2]
# a child that forks a grandchild, both sleeping; the grandchild's PID goes to a file
FORKER = "import os, sys, time\nif os.fork() == 0:\n    open(sys.argv[1], 'w').write(str(os.getpid()))\n" \
         "    time.sleep(600)\nelse:\n    time.sleep(600)\n"  # fmt: skip


def _wait_file(path: Path, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} not written")


def test_stop_all_stops_children_and_grandchildren(tmp_path):
    with Supervisor(tmp_path / "pids.json") as sup:
        procs = [
            sup.spawn(f"c{i}", [sys.executable, "-c", FORKER, str(tmp_path / f"g{i}")], tmp_path / "log")
            for i in range(2)
        ]  # noqa: E501
        grandchildren = [_wait_file(tmp_path / f"g{i}") for i in range(2)]
        assert json.loads((tmp_path / "pids.json").read_text()).keys() == {"c0", "c1"}
    for pid in [p.pid for p in procs] + grandchildren:
        assert not pid_alive(pid), pid
    assert not (tmp_path / "pids.json").exists()


def test_ctrl_c_in_the_parent_stops_everything(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from hybridstream.demo.supervisor import Supervisor, Interrupted
        tmp = Path({str(tmp_path)!r})
        try:
            with Supervisor(tmp / "pids.json") as sup:
                sup.spawn("child", [sys.executable, "-c", {FORKER!r}, str(tmp / "g")], tmp / "log")
                (tmp / "ready").write_text("1")
                time.sleep(60)
        except Interrupted:
            print("interrupted")
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = _wait_file(tmp_path / "g")
    _wait_file(tmp_path / "ready")
    child = json.loads((tmp_path / "pids.json").read_text())["child"]["pid"]
    parent.send_signal(signal.SIGINT)
    out, _ = parent.communicate(timeout=30)
    assert "interrupted" in out
    assert not pid_alive(child) and not pid_alive(grandchild)


def test_a_killed_demo_is_reaped_by_the_next_run(tmp_path):
    pid_file = tmp_path / "pids.json"
    proc = subprocess.Popen([sys.executable, "-c", FORKER, str(tmp_path / "g")], start_new_session=True)
    grandchild = _wait_file(tmp_path / "g")
    pid_file.write_text(json.dumps({"edge": {"pid": proc.pid, "pgid": proc.pid}}))
    assert reap_pid_file(pid_file) == [proc.pid]
    proc.wait(10)
    assert not group_alive(proc.pid) and not pid_alive(grandchild)
