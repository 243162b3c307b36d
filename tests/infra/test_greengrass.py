"""Greengrass components: valid recipes, right artifact URIs, content-derived versions, deployments."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk import App, Stack

from infra import recipes
from infra.app_builder import cdk_json_context
from infra.greengrass import GreengrassComponents
from tests.infra.conftest import build, make_batch_model, make_kafka_libs

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


def test_four_components_with_semver_versions(default):
    comps = _components(default)
    assert set(comps) == {
        "hybridstream.Prerequisites",
        "hybridstream.EdgeApp",
        "hybridstream.BatchModel",
        "hybridstream.KafkaBroker",
    }
    for name, recipe in comps.items():
        assert recipe["RecipeFormatVersion"] == "2020-01-25"
        assert SEMVER.match(recipe["ComponentVersion"]), name
        archs = [m["Platform"]["architecture"] for m in recipe["Manifests"]]
        assert archs == ["aarch64", "amd64"], name  # the nucleus's names; no 32-bit "arm" (test_recipe_rules.py)
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
    assert (staged / "model_contract" / "online_linear_kernel.c").is_file()
    assert run["Setenv"]["HYBRIDSTREAM_KERNEL_CACHE"] == "{work:path}/kernels"  # the component's own, private
    assert "-m edge_app run --config" in run["Script"]
    install = recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]
    assert 'venv="{work:path}/venv"' in install and 'python3 -m venv "$venv"' in install
    assert f"{{artifacts:decompressedPath}}/{asset_hash}/edge_app/requirements.txt" in install


def test_edge_app_config_file_matches_the_edge_config_schema(default):
    from dataclasses import asdict, fields

    from edge_app.config import EdgeConfig, Topics

    recipe = _components(default)["hybridstream.EdgeApp"]
    script = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    body = script.split("<<'HYBRIDSTREAM_CONFIG'\n", 1)[1].split("\nHYBRIDSTREAM_CONFIG", 1)[0]
    config = json.loads(body)
    assert config["thing_name"] == "{iot:thingName}"
    assert config["models"]["batch"].startswith("{hybridstream.BatchModel:artifacts:decompressedPath}/")
    # with the recipe variables filled in, the edge app accepts the file
    filled = json.loads(re.sub(r"\{[A-Za-z.]+:[^}\"]*\}", "x", body).replace('"x"', '"pi-1"'))
    filled["bootstrap"] = "127.0.0.1:9092"
    # every topic of the edge app's schema, each from the component configuration
    topic_keys = {f.name for f in fields(Topics)}
    assert set(config["topics"]) == topic_keys
    assert config["topics"] == {k: "{configuration:/kafka/topics/" + k + "}" for k in topic_keys}
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert defaults["kafka"]["topics"] == asdict(Topics())  # the app's default names
    filled["topics"] = dict(defaults["kafka"]["topics"])  # what the nucleus interpolates
    parsed = EdgeConfig.from_dict(filled)
    assert parsed.thing_name == "pi-1"
    assert parsed.topics == Topics()
    assert defaults["kafka"]["bootstrap"] == "127.0.0.1:9092"
    assert defaults["models"]["speedName"] == "speed-{thing}"  # one speed model per device
    # the app fills in its own thing name (model_contract.layout.speed_model_name): no run-time patching
    assert "sed " not in script
    filled["models"]["speed_name"] = defaults["models"]["speedName"]  # what the nucleus interpolates
    assert EdgeConfig.from_dict(filled).models.speed_name == "speed-pi-1"
    assert defaults["mode"] == "edge-cloud"
    # edge-cloud: windows go to the windows bucket (S3 uploader), notices and models over Greengrass IPC
    assert config["windows"]["uploader"] == "s3" and parsed.windows.uploader == "s3"
    assert config["windows"]["bucket"] == "{configuration:/s3/windowsBucket}"
    assert config["mqtt"] == {"transport": "greengrass"} and parsed.mqtt.transport == "greengrass"
    assert parsed.mqtt.model_notices


def _edge_config(built_mode) -> dict:
    recipe = _components(built_mode)["hybridstream.EdgeApp"]
    script = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    return json.loads(script.split("<<'HYBRIDSTREAM_CONFIG'\n", 1)[1].split("\nHYBRIDSTREAM_CONFIG", 1)[0])


def test_edge_mode_keeps_windows_on_the_pi_for_its_trainer(built):
    from edge_app.config import EdgeConfig

    for mode, uploader in (("edge", "local"), ("edge-cloud", "s3"), ("cloud", "s3")):
        config = _edge_config(built[mode])
        assert config["windows"]["uploader"] == uploader, mode
        assert config["windows"]["local_root"] == "{work:path}/windows"  # the Trainer's --watch folder
        assert config["mqtt"] == {"transport": "greengrass"}  # model announcements arrive over MQTT in every mode
        filled = json.loads(re.sub(r"\{[A-Za-z.]+:[^}\"]*\}", "x", json.dumps(config)).replace('"x"', '"pi-1"'))
        filled.update(bootstrap="127.0.0.1:9092", topics={})
        assert EdgeConfig.from_dict(filled).windows.uploader == uploader


def test_cloud_mode_runs_the_forwarder_with_a_valid_config(built):
    """mode=cloud: the EdgeApp's Run script starts ``edge forward`` (readings to
    hybridstream/<thing>/readings, which the IPC access control allows) on a config that
    edge_app.config accepts; the other modes keep ``edge run``."""
    from edge_app.config import EdgeConfig

    for mode, command in (("cloud", "forward"), ("edge-cloud", "run"), ("edge", "run")):
        recipe = _components(built[mode])["hybridstream.EdgeApp"]
        script = recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
        assert f'-m edge_app {command} --config "{{work:path}}/config.json"' in script, mode
        other = "run" if command == "forward" else "forward"
        assert f"-m edge_app {other} " not in script, mode
    config = _edge_config(built["cloud"])
    assert config["mqtt"] == {"transport": "greengrass"}
    filled = json.loads(re.sub(r"\{[A-Za-z.]+:[^}\"]*\}", "x", json.dumps(config)).replace('"x"', '"pi-1"'))
    filled.update(bootstrap="127.0.0.1:9092", topics={})
    parsed = EdgeConfig.from_dict(filled)
    assert parsed.forward.interval_s == 1.0 and parsed.forward.max_bytes <= 128 * 1024
    # the forwarder needs no batch model (only its manifest's feature spec, when there is one)
    del filled["models"]["batch"]
    assert EdgeConfig.from_dict(filled, require_batch_model=False).models.batch == ""
    resources = _components(built["cloud"])["hybridstream.EdgeApp"]
    acl = resources["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    publish = acl["aws.greengrass.ipc.mqttproxy"]["hybridstream.EdgeApp:mqttproxy:publish"]
    assert "hybridstream/+/readings" in publish["resources"]  # the forwarder's topic


def test_token_exchange_role_and_ipc_allow_what_the_edge_app_does(default):
    """PutObject on windows/<own thing>/* (the S3 uploader), IPC publish to the device topics and
    subscribe to the model announcements (the mqtt transport)."""
    puts = [
        json.dumps(statement["Resource"])
        for policy in default.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "s3:PutObject" in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    ]
    assert any("/windows/${credentials-iot:ThingName}/*" in p for p in puts), puts
    recipe = _components(default)["hybridstream.EdgeApp"]
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    publish, subscribe = acl["hybridstream.EdgeApp:mqttproxy:publish"], acl["hybridstream.EdgeApp:mqttproxy:subscribe"]
    assert publish["operations"] == ["aws.greengrass#PublishToIoTCore"]
    assert set(publish["resources"]) == {"hybridstream/+/windows", "hybridstream/+/metrics", "hybridstream/+/readings"}
    assert subscribe["operations"] == ["aws.greengrass#SubscribeToIoTCore"]
    assert subscribe["resources"] == ["hybridstream/models/+/published"]


def test_kafka_broker_ships_its_jars_as_an_asset(default):
    recipe = _components(default)["hybridstream.KafkaBroker"]
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    assert "Bootstrap" not in lifecycle  # Java comes from the Prerequisites component
    assert recipe["ComponentDependencies"]["hybridstream.Prerequisites"]["DependencyType"] == "HARD"
    (artifact,) = recipe["Manifests"][0]["Artifacts"]
    assert artifact["Unarchive"] == "ZIP"
    stem = re.search(r"/([0-9a-f]{64})\.zip$", _artifact_uri(default, "hybridstream.KafkaBroker")).group(1)
    staged = default.outdir / f"asset.{stem}"
    assert (staged / "libs" / "kafka_2.13-4.4.0.jar").is_file()  # the content hash is the version's input
    install, run = lifecycle["Install"]["Script"], lifecycle["Run"]["Script"]
    libs = f"'{{artifacts:decompressedPath}}/{stem}/libs/*'"
    assert f"-cp {libs} kafka.Kafka server.properties" in run and run.splitlines()[-1].startswith("exec java -Xmx")
    assert "kafka.tools.StorageTool format" in install and "meta.properties" in install  # formatted once
    assert "listeners=PLAINTEXT://127.0.0.1:" in install and "0.0.0.0" not in install
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["heap"] == "384m"
    text = json.dumps(recipe)
    assert "curl" not in text and "https://" not in text and "sha512" not in text


def _artifact_uri(b, name: str) -> str:
    text = _inline_recipe_text(b, name)
    return re.search(r'"Uri":"<\{"Fn::Sub": "([^"]+)"\}>"', text).group(1)


def test_kafka_jars_missing_is_a_clear_error(tmp_path):
    from infra.greengrass import kafka_libs

    with pytest.raises(FileNotFoundError, match="make setup"):
        kafka_libs(tmp_path / "no-libs")  # taken as given: nothing is fetched during synth
    assert kafka_libs(make_kafka_libs(tmp_path / "libs")) == tmp_path / "libs"


def test_prerequisites_bootstrap_venv_and_java(default):
    manifests = {
        m["Platform"]["architecture"]: m["Lifecycle"]
        for m in _components(default)["hybridstream.Prerequisites"]["Manifests"]
    }
    for arch, lifecycle in manifests.items():
        assert lifecycle["Bootstrap"]["RequiresPrivilege"] is True, arch
        assert "python3-venv" in lifecycle["Bootstrap"]["Script"], arch
        assert "openjdk-17-jre-headless" in lifecycle["Bootstrap"]["Script"], arch
        for package in ("librdkafka-dev", "build-essential", "python3-dev"):  # every component installs wheels
            assert package not in lifecycle["Bootstrap"]["Script"], (arch, package)


def test_ipc_access_is_scoped_to_own_topics_and_announcements(default):
    recipe = _components(default)["hybridstream.EdgeApp"]
    policies = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    resources = sorted(r for p in policies.values() for r in p["resources"])
    assert resources == [
        "hybridstream/+/metrics",
        "hybridstream/+/readings",
        "hybridstream/+/windows",
        "hybridstream/models/+/published",
    ]


def test_trainer_component_only_in_edge_mode(built):
    for mode in ("edge-cloud", "cloud"):
        assert "hybridstream.Trainer" not in _components(built[mode])
    recipe = _components(built["edge"])["hybridstream.Trainer"]
    assert [m["Platform"]["architecture"] for m in recipe["Manifests"]] == ["aarch64", "amd64"]  # no TF on 32-bit
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    assert "Bootstrap" not in lifecycle and "hybridstream.Prerequisites" in recipe["ComponentDependencies"]
    install = lifecycle["Install"]["Script"]
    assert 'python3 -m venv "$venv"' in install and "training_job/requirements.txt" in install
    run = lifecycle["Run"]["Script"]
    assert lifecycle["Run"]["Setenv"]["PYTHONPATH"].startswith("{artifacts:decompressedPath}/")
    assert (
        '-m hybridstream train worker --watch "{hybridstream.EdgeApp:work:path}/windows" '
        '--name "{configuration:/speedName}" --bucket "{configuration:/s3/modelsBucket}" --batch-name "batch"' in run
    )  # the Pi's trainer fine-tunes each speed model from models/batch/LATEST (the TES role reads models/batch/*)
    assert "sed " not in run  # the watcher fills in {thing} from each window's path
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["speedName"] == "speed-{thing}"
    assert "hybridstream.EdgeApp" in recipe["ComponentDependencies"]
    stem = re.search(r"/([0-9a-f]{64})\.zip$", _artifact_uri(built["edge"], "hybridstream.Trainer")).group(1)
    staged = built["edge"].outdir / f"asset.{stem}"
    assert (staged / "training_job" / "requirements.txt").is_file() and (staged / "pyproject.toml").is_file()
    deployments = built["edge"].resources("AWS::GreengrassV2::Deployment").values()
    for d in deployments:
        trainer = d["Properties"]["Components"]["hybridstream.Trainer"]
        assert "modelsBucket" in json.dumps(trainer["ConfigurationUpdate"]["Merge"])


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
        kafka_libs_dir=make_kafka_libs(tmp_path / "libs"),
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
    # the only Bootstrap step (a nucleus restart) does not change with a release's content
    assert b["hybridstream.Prerequisites"] == a["hybridstream.Prerequisites"]


def test_missing_batch_model_is_a_synth_error(tmp_path):
    stack = Stack(App(context=cdk_json_context()), "NoBatch")
    with pytest.raises(FileNotFoundError, match="run `make batch-model`"):
        GreengrassComponents(
            stack,
            "Gg",
            fleet_group_arn="arn:f",
            canary_group_arn="arn:c",
            settings=recipes.EdgeAppSettings(),
            deployment_config={},
            batch_model_dir=tmp_path / "absent",
            kafka_libs_dir=make_kafka_libs(tmp_path / "libs"),
        )


def _deployment_versions(b) -> dict[str, dict]:
    out = {}
    for k, r in b.resources("AWS::GreengrassV2::Deployment").items():
        which = "fleet" if k.startswith("GreengrassFleetDeployment") else "canary"
        out[which] = {name: c["ComponentVersion"] for name, c in r["Properties"]["Components"].items()}
    return out


def test_promoted_fleet_gets_the_current_release(default):
    versions = _deployment_versions(default)
    assert versions["fleet"] == versions["canary"]
    assert all("Fn::GetAtt" in v for v in versions["fleet"].values())
    assert default.raw["Outputs"]["FleetRelease"]["Value"] == "current"
    for res in default.resources("AWS::GreengrassV2::ComponentVersion").values():
        # replaced versions stay for a pinned fleet; rollback/destroy delete (test_recipe_rules.py)
        assert res["DeletionPolicy"] == "Delete" and res["UpdateReplacePolicy"] == "Retain"


def test_canary_gate_pins_the_fleet_to_the_promoted_release(default, infra_assets, tmp_path):
    release = json.loads(default.raw["Outputs"]["ComponentRelease"]["Value"])
    assert set(release["fleet_component_versions"]) == set(_components(default))
    old = {name: "1.0.1" for name in release["fleet_component_versions"]}
    old_artifacts = ["0" * 64 + ".zip"]
    b = build(
        {
            "promote": False,
            "fleet_component_versions": json.dumps(old),
            "fleet_artifacts": json.dumps(old_artifacts),
            "batch_model_dir": str(infra_assets["batch_model"]),
        },
        tmp_path / "pinned",
    )
    versions = _deployment_versions(b)
    assert versions["fleet"] == old  # the fleet keeps the last promoted versions
    assert set(versions["canary"]) == set(old) and all("Fn::GetAtt" in v for v in versions["canary"].values())
    assert b.raw["Outputs"]["FleetRelease"]["Value"] == "pinned"
    # devices of the pinned fleet can still download that release's artifacts
    tes = next(
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in b.resources("AWS::IAM::Policy").items()
        if k.startswith("FleetTokenExchangeRoleDefaultPolicy")
    )
    artifacts = json.dumps(next(s for s in tes if s["Sid"] == "ReadComponentArtifacts")["Resource"])
    assert "0" * 64 + ".zip" in artifacts


def test_canary_gate_refuses_an_unknown_fleet_release(tmp_path, infra_assets):
    from infra.app_builder import build_app

    with pytest.raises(ValueError, match="promote=true"):
        build_app({"batch_model_dir": str(infra_assets["batch_model"])}, outdir=str(tmp_path))


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
