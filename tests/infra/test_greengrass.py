"""Greengrass components: valid recipes, right artifact URIs, content-derived versions, deployments."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk import App, Stack

from infra import recipes
from infra.app_builder import cdk_json_context
from infra.greengrass import GreengrassComponents
from tests.infra.conftest import make_batch_model

SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def _components(b) -> dict[str, dict]:
    return dict(b.stack.greengrass.recipes)


def _inline_recipe_text(b, name: str) -> str:
    """The synthesized InlineRecipe (Fn::Join of literal parts and asset bucket tokens)."""
    for res in b.resources("AWS::GreengrassV2::ComponentVersion").values():
        recipe = res["Properties"]["InlineRecipe"]
        parts = recipe["Fn::Join"][1] if isinstance(recipe, dict) else [recipe]
        text = "".join(p if isinstance(p, str) else "<" + json.dumps(p) + ">" for p in parts)
        if f'"ComponentName":"{name}"' in text:
            return text
    raise AssertionError(name)


def test_three_components_with_semver_versions(default):
    comps = _components(default)
    assert set(comps) == {"hybridstream.EdgeApp", "hybridstream.BatchModel", "hybridstream.KafkaBroker"}
    for name, recipe in comps.items():
        assert recipe["RecipeFormatVersion"] == "2020-01-25"
        assert SEMVER.match(recipe["ComponentVersion"]), name
        archs = [m["Platform"]["architecture"] for m in recipe["Manifests"]]
        assert archs == ["aarch64", "armv7l", "amd64"], name
        assert json.loads(json.dumps(recipe)) == recipe  # plain JSON (YAML is a superset)


def test_inline_recipes_are_valid_json_once_tokens_resolve(default):
    for name in _components(default):
        text = _inline_recipe_text(default, name)
        # replace the <token> placeholders by a bucket name, then the recipe must parse
        parsed = json.loads(re.sub(r"<\{.*?\}>", "cdk-assets-bucket", text))
        assert parsed["ComponentName"] == name


def test_edge_app_artifact_points_at_its_asset(default):
    recipe = _components(default)["hybridstream.EdgeApp"]
    artifacts = recipe["Manifests"][0]["Artifacts"]
    assert len(artifacts) == 1 and artifacts[0]["Unarchive"] == "ZIP"
    text = _inline_recipe_text(default, "hybridstream.EdgeApp")
    bucket = r"s3://cdk-hnb659fds-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}"
    uri = re.search(r'"Uri":"<\{"Fn::Sub": "' + bucket + r'/([0-9a-f]{64})\.zip"\}>"', text)
    assert uri, text[:400]
    asset_hash = uri.group(1)
    staged = default.outdir / f"asset.{asset_hash}"
    assert (staged / "edge_app" / "requirements.txt").is_file()
    assert (staged / "model_contract" / "__init__.py").is_file()
    assert not list(staged.rglob("__pycache__"))
    run = recipe["Manifests"][0]["Lifecycle"]["Run"]
    assert f"{{artifacts:decompressedPath}}/{asset_hash}" == run["Setenv"]["PYTHONPATH"]
    assert "-m edge_app run --config" in run["Script"]
    install = recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]
    assert 'python3 -m venv "{work:path}/venv"' in install
    assert f"{{artifacts:decompressedPath}}/{asset_hash}/edge_app/requirements.txt" in install


def test_edge_app_config_file_matches_the_edge_config_schema(default):
    from edge_app.config import EdgeConfig

    recipe = _components(default)["hybridstream.EdgeApp"]
    script = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    body = script.split("<<'HYBRIDSTREAM_CONFIG'\n", 1)[1].split("\nHYBRIDSTREAM_CONFIG", 1)[0]
    config = json.loads(body)
    assert config["thing_name"] == "{iot:thingName}"
    assert config["models"]["batch"].startswith("{hybridstream.BatchModel:artifacts:decompressedPath}/")
    # with the recipe variables filled in, the edge app accepts the file
    filled = json.loads(re.sub(r"\{[A-Za-z.]+:[^}\"]*\}", "x", body).replace('"x"', '"pi-1"'))
    filled["bootstrap"] = "127.0.0.1:9092"
    filled["topics"] = {"readings": "r", "predictions": "p", "metrics": "m", "deadletter": "d"}
    assert EdgeConfig.from_dict(filled).thing_name == "pi-1"
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert defaults["kafka"]["bootstrap"] == "127.0.0.1:9092"
    assert defaults["kafka"]["topics"]["readings"] == "sensor.readings"
    assert defaults["models"]["speedName"] == "speed"
    assert defaults["mode"] == "edge-cloud"


def test_kafka_broker_component_installs_java_and_kafka(default):
    recipe = _components(default)["hybridstream.KafkaBroker"]
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    assert lifecycle["Bootstrap"]["RequiresPrivilege"] is True
    assert "default-jre-headless" in lifecycle["Bootstrap"]["Script"]
    assert "sha512" in lifecycle["Install"]["Script"]
    assert "kafka-server-start.sh" in lifecycle["Run"]["Script"]
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["kafkaVersion"] == "4.4.0"


def test_batch_model_component_verifies_its_checksum(default):
    recipe = _components(default)["hybridstream.BatchModel"]
    assert "hashlib.sha256" in recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]


def _versions(tmp_path, payload: bytes) -> dict[str, str]:
    stack = Stack(App(context=cdk_json_context()), "VersionTest")
    comps = GreengrassComponents(
        stack,
        "Gg",
        fleet_group_arn="arn:aws:iot:eu-west-1:123456789012:thinggroup/f",
        canary_group_arn="arn:aws:iot:eu-west-1:123456789012:thinggroup/c",
        settings=recipes.EdgeAppSettings(),
        deployment_config={},
        batch_model_dir=make_batch_model(tmp_path / payload.hex()[:8], payload),
    )
    return comps.versions


def test_versions_derive_from_content(tmp_path):
    a = _versions(tmp_path, b"model A")
    assert _versions(tmp_path, b"model A") == a  # same content, same versions
    b = _versions(tmp_path, b"model B")
    assert b["hybridstream.BatchModel"] != a["hybridstream.BatchModel"]
    # the edge app's config names the batch model's folder: it changes with it
    assert b["hybridstream.EdgeApp"] != a["hybridstream.EdgeApp"]
    assert b["hybridstream.KafkaBroker"] == a["hybridstream.KafkaBroker"]


def test_missing_batch_model_leaves_the_component_out(tmp_path):
    stack = Stack(App(context=cdk_json_context()), "NoBatch")
    comps = GreengrassComponents(
        stack,
        "Gg",
        fleet_group_arn="arn:f",
        canary_group_arn="arn:c",
        settings=recipes.EdgeAppSettings(),
        deployment_config={},
        batch_model_dir=tmp_path / "absent",
    )
    assert set(comps.versions) == {"hybridstream.EdgeApp", "hybridstream.KafkaBroker"}
    assert "batch" not in json.dumps(comps.recipes["hybridstream.EdgeApp"]["Manifests"][0]["Lifecycle"]["Run"])


@pytest.mark.parametrize("which", ["Fleet", "Canary"])
def test_deployments_target_groups_with_job_rollout(default, which):
    deployments = {k: r["Properties"] for k, r in default.resources("AWS::GreengrassV2::Deployment").items()}
    props = next(v for k, v in deployments.items() if k.startswith(f"Greengrass{which}Deployment"))
    target = json.dumps(props["TargetArn"])
    assert f"thinggroup/hybridstream-{which.lower()}" in target
    assert set(props["Components"]) == set(_components(default))
    edge = props["Components"]["hybridstream.EdgeApp"]
    assert "windowsBucket" in json.dumps(edge["ConfigurationUpdate"]["Merge"])
    job = props["IotJobConfiguration"]
    rate = job["JobExecutionsRolloutConfig"]["ExponentialRate"]
    assert rate["IncrementFactor"] > 1 and "NumberOfSucceededThings" in rate["RateIncreaseCriteria"]
    abort = job["AbortConfig"]["CriteriaList"][0]
    assert abort["Action"] == "CANCEL" and 0 < abort["ThresholdPercentage"] <= 10
    assert job["TimeoutConfig"]["InProgressTimeoutInMinutes"] > 0
    assert props["DeploymentPolicies"]["FailureHandlingPolicy"] == "ROLLBACK"


def test_fleet_rollout_is_exponential_with_ten_percent_abort(default):
    deployments = {k: r["Properties"] for k, r in default.resources("AWS::GreengrassV2::Deployment").items()}
    fleet = next(v for k, v in deployments.items() if k.startswith("GreengrassFleetDeployment"))
    job = fleet["IotJobConfiguration"]
    assert job["JobExecutionsRolloutConfig"]["ExponentialRate"] == {
        "BaseRatePerMinute": 2,
        "IncrementFactor": 2,
        "RateIncreaseCriteria": {"NumberOfSucceededThings": 5},
    }
    assert job["AbortConfig"]["CriteriaList"][0]["ThresholdPercentage"] == 10
