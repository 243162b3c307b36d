"""Each mode synthesizes (cdk-nag clean) and has exactly its own pieces."""

from __future__ import annotations

import pytest

from tests.infra.conftest import MODES


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_synthesizes_with_core_resources(built, mode):
    b = built[mode]
    assert len(b.resources("AWS::S3::Bucket")) == 5  # windows, models, results, Athena query results, access logs
    # Prerequisites, EdgeApp, BatchModel, KafkaBroker (+ Trainer on the Pi in edge mode)
    assert len(b.resources("AWS::GreengrassV2::ComponentVersion")) == (5 if mode == "edge" else 4)
    assert len(b.resources("AWS::GreengrassV2::Deployment")) == 2
    assert len(b.resources("AWS::IoT::ThingGroup")) == 2
    assert b.raw["Description"].endswith(f"(mode {mode})")


def test_edge_mode_has_no_trainer_fleet(built):
    edge = built["edge"]
    for type_name in ("AWS::AutoScaling::AutoScalingGroup", "AWS::EC2::VPC", "AWS::EC2::LaunchTemplate"):
        assert edge.resources(type_name) == {}, type_name
    rule_names = {r["Properties"]["RuleName"] for r in edge.resources("AWS::IoT::TopicRule").values()}
    assert "hybridstream_window_notices" not in rule_names
    assert "TrainingQueueUrl" not in edge.raw["Outputs"]


def test_edge_cloud_mode_has_trainer_and_no_cloud_inference(built):
    b = built["edge-cloud"]
    assert len(b.resources("AWS::AutoScaling::AutoScalingGroup")) == 1
    handlers = [f["Properties"].get("Description", "") for f in b.resources("AWS::Lambda::Function").values()]
    assert not any("cloud mode" in (d or "") for d in handlers)


def test_cloud_mode_adds_inference_lambda_and_readings_rule(built):
    b = built["cloud"]
    fns = [
        f for f in b.resources("AWS::Lambda::Function").values() if f["Properties"].get("Handler") == "handler.handler"
    ]
    runtimes = {f["Properties"]["Description"]: f["Properties"]["Runtime"] for f in fns}
    inference = [d for d in runtimes if d.startswith("cloud mode:")]
    assert [runtimes[d] for d in inference] == ["python3.13"]  # ai-edge-litert: no 3.14 wheels
    assert {runtimes[d] for d in runtimes if d not in inference} == {"python3.14"}
    rules = {r["Properties"]["RuleName"]: r for r in b.resources("AWS::IoT::TopicRule").values()}
    readings = rules["hybridstream_cloud_readings"]["Properties"]["TopicRulePayload"]
    assert "FROM 'hybridstream/+/readings'" in readings["Sql"]
    assert "Lambda" in readings["Actions"][0]
    assert len(b.resources("AWS::Lambda::LayerVersion")) == 1


def test_cloud_mode_without_layer_fails_clearly(tmp_path):
    from infra.app_builder import build_app

    with pytest.raises(Exception, match="build_inference_layer.sh"):
        build_app(
            {"mode": "cloud", "promote": True, "inference_layer_dir": str(tmp_path / "missing")},
            outdir=str(tmp_path / "out"),
        )


def test_unknown_mode_is_rejected(tmp_path):
    from infra.app_builder import build_app

    with pytest.raises(ValueError, match="mode must be one of"):
        build_app({"mode": "hybrid"}, outdir=str(tmp_path))
