"""The recipe runner: the project's KafkaBroker, BatchModel and EdgeApp components installed and run
from their real recipes as a nucleus would (manifest for this platform, artifacts unzipped, recipe
variables interpolated, IPC through the runner's server), against the component's own broker.

Greengrass rules encoded here:
- Install runs every time a component starts (a nucleus restart, a reboot), not once per version:
  https://docs.aws.amazon.com/greengrass/v2/developerguide/component-recipe-reference.html#recipe-lifecycle
  (``install``: "runs ... each time the component starts"; nucleus source: Lifecycle.java, a
  component starts in NEW and goes through INSTALLED). So the second install must be a no-op that
  works with the network down (a Pi that boots offline).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest

from hybridstream.devtools.edge import collect, produce, read_rows, reading_json
from hybridstream.greengrass.release import local_release, wheelhouse
from hybridstream.greengrass.runner import LocalCore
from hybridstream.servers.process import free_port

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="the offline reinstall needs root and ip netns"
    ),
]

REPO = Path(__file__).resolve().parents[2]
THING = "pi-runner-1"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def kafka_libs() -> Path:
    from hybridstream.servers import kafka

    return kafka.fetch()


def test_components_install_twice_offline_and_run(tmp_path, edge_models, kafka_libs):
    port, controller = free_port(), free_port()
    release = local_release(
        tmp_path / "artifacts",
        batch_model_dir=edge_models.batch.parent,
        kafka_libs_dir=kafka_libs,
        mode="edge",
        kafka_port=port,
        controller_port=controller,
    )
    pip_env = wheelhouse(REPO / "edge_app" / "requirements.txt", REPO / ".cache" / "greengrass")
    with LocalCore(tmp_path / "gg", THING, env=pip_env) as core:
        for c in release.components:
            core.deploy(c.recipe, c.artifacts, c.merge)
        names = {short: release[short].name for short in ("KafkaBroker", "BatchModel", "EdgeApp")}

        # the privileged Bootstrap (apt) is the Prerequisites component's concern, not run here
        for short in ("KafkaBroker", "BatchModel", "EdgeApp"):
            core.install(names[short], bootstrap=False)
            again = core.install(names[short], network=False, bootstrap=False)  # as after an offline reboot
            assert again[-1].returncode == 0, short
        # a no-op that never reaches for the network (pip retrying an unreachable index takes ~40 s)
        assert core.components[names["EdgeApp"]].results[-1].seconds < 10
        offline_log = core.log_path(names["EdgeApp"]).read_text().rsplit("--- Install (offline) ---", 1)[1]
        assert "Retrying" not in offline_log and "NewConnectionError" not in offline_log, offline_log[-2000:]

        core.start(names["KafkaBroker"])
        assert _wait(lambda: _port_open(port), 60), core.log_path(names["KafkaBroker"]).read_text()[-2000:]
        assert core.start(names["BatchModel"]) is None and core.components[names["BatchModel"]].state == "FINISHED"

        core.start(names["EdgeApp"])
        bootstrap = f"127.0.0.1:{port}"
        device = f"runner-{uuid.uuid4().hex[:6]}"
        readings = [reading_json(r, device) for r in read_rows(edge_models.test_csv, 0, 30)]
        produce(bootstrap, "sensor.readings", readings, [device.encode()] * len(readings))
        predictions = [p for p in collect(bootstrap, "predictions", len(readings), timeout=90) if p["device"] == device]
        log = core.log_path(names["EdgeApp"]).read_text()
        assert core.running(names["EdgeApp"]), log[-3000:]
        assert len(predictions) == len(readings), log[-3000:]
        assert all(p["forecast"] is not None for p in predictions[2:])  # lags (1, 2) filled after two readings

        # the model notice subscription for its own speed model ({thing} filled in by the app) went
        # through IPC and the component's authorization policy, as the nucleus holds it (not interpolated)
        own = f"hybridstream/models/speed-{THING}/published"
        assert _wait(lambda: own in core.cloud.subscriptions(), 10), (core.cloud.subscriptions(), core.cloud.refused)
        assert not core.cloud.refused

        assert core.stop(names["EdgeApp"]) is not None
        assert not core.running(names["EdgeApp"])
        core.stop(names["KafkaBroker"])
        assert _wait(lambda: not _port_open(port), 30)
