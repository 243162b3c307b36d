"""Context parsing and the nag acknowledgement module."""

from __future__ import annotations

import pytest

from infra.config import AppConfig


def test_defaults():
    cfg = AppConfig.from_context(lambda key: None)
    assert (cfg.mode, cfg.trainer_instance_type, cfg.retain_data) == ("edge-cloud", "c5.4xlarge", False)
    assert cfg.has_trainer


def test_cli_strings_are_cast():
    values = {"retain_data": "true", "trainer_max_capacity": "4", "rmse_alarm_threshold": "1.5", "mode": "edge"}
    cfg = AppConfig.from_context(values.get)
    assert cfg.retain_data is True and cfg.trainer_max_capacity == 4 and cfg.rmse_alarm_threshold == 1.5
    assert not cfg.has_trainer


def test_bad_values_are_rejected():
    with pytest.raises(ValueError):
        AppConfig.from_context({"retain_data": "maybe"}.get)
    with pytest.raises(ValueError):
        AppConfig(trainer_min_capacity=3, trainer_max_capacity=1)


def test_every_acknowledgement_has_a_reason(default):
    from infra.nag_acknowledgements import acknowledgements

    acks = acknowledgements(default.stack)
    assert acks
    for path, finding, reason in acks:
        assert finding.startswith("AwsSolutions-"), finding
        assert len(reason) > 40, (path, finding)


def test_packaging_doctests_and_staging(tmp_path):
    import doctest

    import infra.packaging as packaging

    assert doctest.testmod(packaging).failed == 0
    src = tmp_path / "pkg"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__pycache__" / "x.pyc").write_bytes(b"")
    (src / "mod.py").write_text("X = 1\n")
    out = packaging.stage("unit", {"pkg": src})
    assert (out / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert not (out / "pkg" / "__pycache__").exists()
    with pytest.raises(FileNotFoundError):
        packaging.stage("unit", {"missing": tmp_path / "nope"})
