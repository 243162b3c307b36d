"""Context parsing and the nag acknowledgement module."""

from __future__ import annotations

import json

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


def test_a_name_prefix_too_long_for_any_physical_name_fails_at_synth():
    """Issue 20, item 6. ``<name_prefix>-fleet-provisioning`` may have at most 36 characters
    (templateName: Length 1-36, Pattern ^[0-9A-Za-z_-]+$,
    https://docs.aws.amazon.com/iot/latest/apireference/API_CreateProvisioningTemplate.html); aws-cdk-lib
    only warned ("TemplateName: length 47 exceeds maximum 36") and synth exited 0. Every prefixed name is
    checked with its own limit and source (infra/name_limits.py)."""
    with pytest.raises(ValueError) as caught:
        AppConfig.from_context({"name_prefix": "a-very-long-prefix-for-names"}.get)
    text = str(caught.value)
    assert "fleet provisioning template 'a-very-long-prefix-for-names-fleet-provisioning' is 47 characters" in text
    assert "at most 36 (name_prefix at most 17;" in text and "API_CreateProvisioningTemplate.html" in text
    AppConfig.from_context({"name_prefix": "p" * 17}.get)  # the longest that fits
    with pytest.raises(ValueError, match="does not match"):
        AppConfig.from_context({"name_prefix": "my prefix"}.get)


def test_every_prefixed_physical_name_in_the_template_is_covered(default):
    """The names the default stack builds from its prefix are those infra/name_limits.py checks."""
    from infra.name_limits import limits
    from infra.topic_rules import rules_for_mode

    checked = {f"hybridstream{limit.suffix}" for limit in limits(tuple(r.name for r in rules_for_mode("edge-cloud")))}
    raw = json.dumps(default.raw)
    for name in checked - {"hybridstream-", "hybridstream-claim-"}:  # completed on the device
        assert f'"{name}"' in raw or f'"{name}' in raw, name
    assert '"hybridstream-fleet-provisioning"' in raw and '"hybridstream-deployment-failed"' in raw


def test_aws_cdk_lib_template_findings_fail_the_synth(tmp_path):
    """Issue 20, item 6. aws-cdk-lib validates every synthesized template against the CloudFormation
    resource schemas (its CloudFormationValidatePlugin); the context key
    ``@aws-cdk/core:validateAgainstDefaultRules`` (set in cdk.json) makes its findings errors (the
    aws-cdk-lib README in the installed package, "CloudFormationValidatePlugin"). A 40-character
    template name, which without the key is a warning, stops the synth."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_iot as iot

    from infra.app_builder import cdk_json_context

    context = cdk_json_context()
    assert context["@aws-cdk/core:validateAgainstDefaultRules"] is True

    def synth(ctx: dict, out: str) -> None:
        app = App(context=ctx, outdir=str(tmp_path / out))
        stack = Stack(app, "Tiny")
        role = "arn:aws:iam::123456789012:role/provisioning"
        iot.CfnProvisioningTemplate(stack, "T", template_name="t" * 40, template_body="{}", provisioning_role_arn=role)
        app.synth()

    synth({**context, "@aws-cdk/core:validateAgainstDefaultRules": False}, "warn")  # a warning only
    with pytest.raises(Exception, match="TemplateName: length 40 exceeds maximum 36"):
        synth(context, "error")


def test_the_pi_broker_heap_is_a_setting():
    """Issue 20, item 9: context ``kafka_heap`` becomes the KafkaBroker component's ``heap`` (its ``-Xmx``)."""
    from infra import recipes

    assert AppConfig.from_context({"kafka_heap": "256m"}.get).kafka_heap == "256m"
    for bad in ("256", "128m", "lots"):
        with pytest.raises(ValueError, match="heap"):
            AppConfig.from_context({"kafka_heap": bad}.get)
    jars = recipes.ZipArtifact("s3://b/k.zip", "k")
    recipe = recipes.kafka_broker_recipe(name="k", version="1.0.0", jars=jars, heap="1g")
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["heap"] == "1024m"
    assert "-Xmx{configuration:/heap}" in recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
