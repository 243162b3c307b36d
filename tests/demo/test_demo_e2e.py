"""`make demo` in small: the whole edge-cloud loop on real local servers, end to end.

Kafka -> the edge app (its CLI, a subprocess) -> windows to radosgw + a notice over mosquitto (mTLS)
-> the IoT router (the stack's own rules) -> ElasticMQ -> the trainer worker -> S3 -> LATEST ->
model_published -> MQTT -> the edge verifies and hot-swaps. Then the report, and no process left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridstream.servers.process import pid_alive

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.slow]


@pytest.mark.timeout(400)
def test_short_demo_predicts_every_reading_trains_and_swaps_a_model(tmp_path):
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "hybridstream.demo", "--scenarios", "none", "--rows", "450", "--rate", "60",
           "--window", "150", "--epochs", "10", "--tail", "150", "--until-swaps", "1", "--out", str(out)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("QUICK", "MODE", "SCENARIOS", "ROWS", "RATE")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out / "latest"
    assert report.is_symlink() and report.resolve().parent == out.resolve()
    for name in ("report.md", "results.json", "rmse-none.png", "weights-none.png", "latency.png"):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    assert results["mode"] == "edge-cloud" and results["status"] == "ok"
    s = results["scenarios"]["none"]
    assert s["readings"] == 450 and s["predicted"] == 450 and s["unpredicted"] == 0
    assert s["deadletter"] == 0
    assert s["models_published"] >= 1 and s["model_swaps"] >= 1, s
    assert set(s["approaches"]) >= {"batch", "speed", "static", "dynamic", "persistence", "online_linear"}
    for approach in s["approaches"].values():
        assert approach["rmse"] > 0 and approach["mae"] > 0
    assert s["latency_ms"]["p50"] > 0 and s["model_freshness_s"]["max"] > 0
    assert "| none |" in proc.stdout  # the summary table is printed at the end
    # the forecasts that reached radosgw beside the windows, as `hybridstream results --local` reads them
    history = results["forecast_history"]
    assert history["equal_to_report"] is True, history
    assert history["checks"]["none"]["readings"] == 450 and (report / "forecast-none.png").stat().st_size > 0
    assert "hybridstream results --local:" in proc.stdout
    # no process left behind: servers, edge app, trainer, pre-training
    names = {p["name"] for p in results["processes"]}
    assert {"kafka", "sqs", "mosquitto", "trainer", "edge-none"} <= names, names
    assert [p for p in results["processes"] if pid_alive(p["pid"])] == []
