"""The EC2 trainer's systemd unit: stable path, the worker command, hardening, no credentials."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "training_job" / "deploy"


def test_unit_runs_the_worker_hardened():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "hybridstream-trainer.service")
    svc = unit["Service"]
    assert svc["ExecStart"].endswith("hybridstream train worker --queue ${QUEUE_URL}")
    assert svc["Restart"] == "on-failure" and svc["DynamicUser"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc["EnvironmentFile"] == "/etc/hybridstream/trainer.env"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_env_example_has_settings_but_no_credentials():
    text = (DEPLOY / "trainer.env.example").read_text()
    assert re.search(r"^QUEUE_URL=", text, re.M) and re.search(r"^HYBRIDSTREAM_MODELS_BUCKET=", text, re.M)
    assert not re.search(r"^\s*AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)\s*=", text, re.M)
