"""Greengrass v2 component recipes, generated in code (plain Python, no CDK imports).

Each function returns a recipe dict (RecipeFormatVersion 2020-01-25). Artifact URIs are
passed in (the CDK stack passes ``s3://<asset bucket>/<asset hash>.zip``); a zip artifact
with ``Unarchive: ZIP`` lands in ``{artifacts:decompressedPath}/<zip name without .zip>/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybridstream.localstack.kafka import LOG4J2_PROPERTIES, kraft_properties
from model_contract.layout import SPEED_MODEL_TEMPLATE, THING_VARIABLE
from model_contract.topics import KAFKA_TOPICS, MODEL_NOTICES_FILTER, TOPIC_ROOT

RECIPE_FORMAT = "2020-01-25"
ARCHITECTURES = ("aarch64", "armv7l", "amd64")  # Pi 4/5 64-bit, Pi 32-bit OS, x86 test boxes
TES = "aws.greengrass.TokenExchangeService"


@dataclass(frozen=True)
class ZipArtifact:
    """A zipped folder in S3 (a CDK asset): ``uri`` and the folder it unpacks to."""

    uri: str
    stem: str  # file name without .zip

    def decompressed(self) -> str:
        return "{artifacts:decompressedPath}/" + self.stem


@dataclass(frozen=True)
class EdgeAppSettings:
    """What the edge app's component configuration holds (all overridable per deployment).

    Keys written to the edge app's config file follow ``edge_app.config.EdgeConfig``
    (``kafka_topics``: every key of ``edge_app.config.Topics``, with its default names;
    ``windows``: the S3 uploader into ``s3/windowsBucket`` except in ``edge`` mode; ``mqtt``:
    Greengrass IPC). The config file is the process's only input.
    """

    mode: str = "edge-cloud"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topics: Mapping[str, str] = field(default_factory=lambda: dict(KAFKA_TOPICS))
    speed_model_name: str = SPEED_MODEL_TEMPLATE  # one speed model per device: "{thing}" is its thing name
    windows_bucket: str = ""
    models_bucket: str = ""


def _manifests(
    lifecycle: Mapping[str, Any],
    artifacts: list[dict[str, Any]],
    *,
    per_arch: Mapping[str, Mapping[str, Any]] | None = None,
    architectures: tuple[str, ...] = ARCHITECTURES,
) -> list[dict[str, Any]]:
    """One manifest per architecture; ``per_arch`` overrides lifecycle steps on one architecture."""
    return [
        {
            "Platform": {"os": "linux", "architecture": arch},
            "Lifecycle": {**lifecycle, **(per_arch or {}).get(arch, {})},
            "Artifacts": artifacts,
        }
        for arch in architectures
    ]


def _apt_bootstrap(packages: tuple[str, ...]) -> dict[str, Any]:
    """A privileged Bootstrap step (root, once per component version) installing Debian packages
    that are missing; Raspberry Pi OS and Debian 12+ lack ``python3-venv`` by default."""
    names = " ".join(packages)
    return {
        "RequiresPrivilege": True,
        "Script": "\n".join(
            [
                "set -eu",
                f'missing=""; for p in {names}; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done',
                'if [ -n "$missing" ]; then',
                "  apt-get update -q",
                "  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing",
                "fi",
            ]
        ),
        "Timeout": 1800,
    }


VENV_PACKAGES = ("python3-venv",)
# armv7l (32-bit Pi OS): confluent-kafka has no armv7l wheels, pip builds it against librdkafka;
# numpy<2 + tflite-runtime are the armv7l runtime (markers in edge_app/requirements.txt)
ARMV7L_BUILD_PACKAGES = ("python3-venv", "python3-dev", "build-essential", "librdkafka-dev")


def _name_template(template: str) -> str:
    """A model-name template as the apps read it: ``{thing}`` stays text and the app fills in its own
    thing name (``model_contract.layout.speed_model_name``), so no nucleus interpolation and no
    run-time patching is needed. The Greengrass spelling ``{iot:thingName}`` (what infra/stack.py
    passed before the contract module) is mapped to ``{thing}``."""
    return template.replace("{iot:thingName}", THING_VARIABLE)


def _zip(artifact: ZipArtifact) -> dict[str, Any]:
    return {"Uri": artifact.uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER", "Execute": "NONE"}}


def _windows_config(mode: str) -> dict[str, str]:
    """Where closed windows go: ``edge`` mode keeps them in the work folder the on-Pi Trainer watches;
    otherwise the S3 uploader puts them into the windows bucket (token exchange credentials may write
    ``windows/<thing>/*`` only) and publishes the notice the IoT rule queues for the cloud trainer."""
    if mode == "edge":
        return {"uploader": "local", "local_root": "{work:path}/windows"}
    return {"uploader": "s3", "bucket": "{configuration:/s3/windowsBucket}", "local_root": "{work:path}/windows"}


def edge_app_recipe(
    *,
    name: str,
    version: str,
    app: ZipArtifact,
    settings: EdgeAppSettings,
    kafka_component: str | None = None,
    batch_component: str | None = None,
    batch_stem: str | None = None,
) -> dict[str, Any]:
    """The edge app: own venv in the work folder, ``python -m edge_app run --config <file>``
    (``forward`` instead of ``run`` in ``cloud`` mode: readings to the cloud over MQTT)."""
    deps: dict[str, Any] = {TES: {"VersionRequirement": ">=2.0.0 <3.0.0", "DependencyType": "HARD"}}
    if kafka_component:
        deps[kafka_component] = {"VersionRequirement": ">=1.0.0", "DependencyType": "SOFT"}
    if batch_component:
        deps[batch_component] = {"VersionRequirement": ">=1.0.0", "DependencyType": "SOFT"}
    src = app.decompressed()
    config: dict[str, Any] = {
        "thing_name": "{iot:thingName}",
        "bootstrap": "{configuration:/kafka/bootstrap}",
        "topics": {k: "{configuration:/kafka/topics/" + k + "}" for k in settings.kafka_topics},
        "models": {"speed_name": "{configuration:/models/speedName}"},
        "windows": _windows_config(settings.mode),
        # model announcements in (every mode: in edge mode the Pi's trainer publishes to S3 and the
        # model_published Lambda announces it), window notices and metrics out: the nucleus's own
        # IoT Core connection through IPC (accessControl below), credentials from nobody's config
        "mqtt": {"transport": "greengrass"},
        "state_dir": "{work:path}/state",
    }
    if batch_component and batch_stem:
        decompressed = "{" + batch_component + ":artifacts:decompressedPath}"
        config["models"]["batch"] = f"{decompressed}/{batch_stem}/model.tflite"
    # cloud mode: the Pi only forwards validated readings to hybridstream/<thing>/readings (the
    # cloud_inference Lambda predicts); the batch model's manifest still gives the feature spec and the
    # range check, the model itself is not loaded (``edge forward`` needs no models.batch at all)
    command = "forward" if settings.mode == "cloud" else "run"
    config_json = json.dumps(config, indent=1)
    lifecycle = {
        "Install": {
            "Script": "\n".join(
                [
                    "set -eu",
                    'python3 -m venv "{work:path}/venv"',
                    '"{work:path}/venv/bin/python" -m pip install -q --upgrade pip',
                    f'"{{work:path}}/venv/bin/python" -m pip install -q -r "{src}/edge_app/requirements.txt"',
                ]
            ),
            "Timeout": 1800,
        },
        "Run": {
            "Setenv": {
                "PYTHONPATH": src,
            },
            "Script": "\n".join(
                [
                    "set -eu",
                    'mkdir -p "{work:path}/state" "{work:path}/windows"',
                    "cat > \"{work:path}/config.json\" <<'HYBRIDSTREAM_CONFIG'",
                    config_json,
                    "HYBRIDSTREAM_CONFIG",
                    f'exec "{{work:path}}/venv/bin/python" -m edge_app {command} --config "{{work:path}}/config.json"',
                ]
            ),
        },
    }
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "hybridstream edge app: Kafka in, batch + speed TFLite models, dynamic blend",
        "ComponentPublisher": "hybridstream",
        "ComponentDependencies": deps,
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "mode": settings.mode,
                "kafka": {"bootstrap": settings.kafka_bootstrap, "topics": dict(settings.kafka_topics)},
                "models": {"speedName": _name_template(settings.speed_model_name)},
                "s3": {"windowsBucket": settings.windows_bucket, "modelsBucket": settings.models_bucket},
                "accessControl": {
                    "aws.greengrass.ipc.mqttproxy": {
                        f"{name}:mqttproxy:1": {
                            "policyDescription": "Publish own telemetry, receive model announcements",
                            "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
                            # own topics, and the model announcements (the IoT policy narrows
                            # these to the device's own speed model and the shared batch model)
                            "resources": [TOPIC_ROOT + "/{iot:thingName}/*", MODEL_NOTICES_FILTER],
                        }
                    }
                },
            }
        },
        "Manifests": _manifests(
            {"Bootstrap": _apt_bootstrap(VENV_PACKAGES), **lifecycle},
            [_zip(app)],
            per_arch={"armv7l": {"Bootstrap": _apt_bootstrap(ARMV7L_BUILD_PACKAGES)}},
        ),
    }


def batch_model_recipe(*, name: str, version: str, model: ZipArtifact) -> dict[str, Any]:
    """The batch model as data: ``model.tflite`` + ``manifest.json``, nothing to run."""
    check = (
        f'cd "{model.decompressed()}" && python3 -c "import hashlib,json;'
        "m=json.load(open('manifest.json'));"
        "h=hashlib.sha256(open('model.tflite','rb').read()).hexdigest();"
        "assert h==m['sha256'], 'model.tflite does not match manifest sha256'\""
    )
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "hybridstream batch model (pre-trained on history): model.tflite + manifest.json",
        "ComponentPublisher": "hybridstream",
        "Manifests": _manifests({"Install": {"Script": check, "Timeout": 120}}, [_zip(model)]),
    }


KAFKA_LOG4J = LOG4J2_PROPERTIES.rstrip("\n")
KAFKA_PROPERTIES = kraft_properties(
    port="{configuration:/port}",
    controller_port="{configuration:/controllerPort}",
    data_dir="{work:path}/data",
    retention_hours="{configuration:/retentionHours}",
).rstrip("\n")


def _kafka_java(libs: str) -> str:
    return (
        "java -Xmx{configuration:/heap} -Xms64m -XX:+UseSerialGC "
        '-Dlog4j2.configurationFile="{work:path}/log4j2.properties" '
        f"-cp '{libs}/*'"
    )


def kafka_broker_recipe(*, name: str, version: str, jars: ZipArtifact, kafka_version: str = "4.4.0") -> dict[str, Any]:
    """A single-node KRaft Apache Kafka on 127.0.0.1 only. Java via apt (Bootstrap, as root); the
    broker's jars are the component's own artifact (a CDK asset of the Maven-fetched ``libs/``),
    so nothing is downloaded from anywhere else. Install writes the KRaft config and formats the
    storage once; Run is ``java -cp 'libs/*' kafka.Kafka server.properties`` with a small heap."""
    libs = f"{jars.decompressed()}/libs"
    java = _kafka_java(libs)
    install = "\n".join(
        [
            "set -eu",
            'cd "{work:path}"',
            "cat > server.properties <<'PROPS'",
            KAFKA_PROPERTIES,
            "PROPS",
            "cat > log4j2.properties <<'LOG4J'",
            KAFKA_LOG4J,
            "LOG4J",
            'if [ ! -f "{work:path}/data/meta.properties" ]; then',
            f'  id="$({java} kafka.tools.StorageTool random-uuid)"',
            f'  {java} kafka.tools.StorageTool format -t "$id" -c server.properties',
            "fi",
        ]
    )
    run = "\n".join(["set -eu", 'cd "{work:path}"', f"exec {java} kafka.Kafka server.properties"])
    lifecycle = {
        "Bootstrap": {
            "RequiresPrivilege": True,
            "Script": "command -v java >/dev/null 2>&1 || { apt-get update -q && "
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jre-headless; }",
            "Timeout": 1800,
        },
        "Install": {"Script": install, "Timeout": 300},
        "Run": {"Script": run},
    }
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": f"Apache Kafka {kafka_version} (KRaft, single node) on 127.0.0.1 for the edge app",
        "ComponentPublisher": "hybridstream",
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "kafkaVersion": kafka_version,
                "port": "9092",
                "controllerPort": "9093",
                "retentionHours": "24",
                "heap": "384m",
            }
        },
        "Manifests": _manifests(lifecycle, [_zip(jars)]),
    }


TRAINER_ARCHITECTURES = ("aarch64", "amd64")  # TensorFlow has no armv7l wheels


def trainer_recipe(
    *,
    name: str,
    version: str,
    source: ZipArtifact,
    edge_app_component: str,
    speed_model_name: str = SPEED_MODEL_TEMPLATE,
    models_bucket: str = "",
) -> dict[str, Any]:
    """``edge`` mode: the training job on the Pi, in its own venv, watching the edge app's local
    window folder; each window is trained once (then moved to ``done/`` or ``rejected/``) and the
    model published to S3 as in the cloud, so the model_published Lambda announces it.
    No armv7l manifest (no TensorFlow wheels): 32-bit Pis cannot run this component."""
    src = source.decompressed()
    windows = "{" + edge_app_component + ":work:path}/windows"
    lifecycle = {
        "Bootstrap": _apt_bootstrap(VENV_PACKAGES),
        "Install": {
            "Script": "\n".join(
                [
                    "set -eu",
                    # pip builds the project in its folder: copy it out of the read-only artifacts
                    'rm -rf "{work:path}/src" && cp -r "' + src + '" "{work:path}/src"',
                    'python3 -m venv "{work:path}/venv"',
                    '"{work:path}/venv/bin/python" -m pip install -q --upgrade pip',
                    '"{work:path}/venv/bin/python" -m pip install -q -r '
                    '"{work:path}/src/training_job/requirements.txt"',
                    '"{work:path}/venv/bin/python" -m pip install -q --no-deps "{work:path}/src"',
                ]
            ),
            "Timeout": 3600,
        },
        "Run": {
            "Setenv": {"PYTHONUNBUFFERED": "1"},
            "Script": "\n".join(
                [
                    "set -eu",
                    f'mkdir -p "{windows}"',
                    # --name keeps "{thing}": the watcher fills in the thing of each window's path
                    f'exec "{{work:path}}/venv/bin/hybridstream" train worker --watch "{windows}" '
                    '--name "{configuration:/speedName}" --bucket "{configuration:/s3/modelsBucket}"',
                ]
            ),
        },
    }
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "hybridstream trainer on the Pi (edge mode): window CSVs -> speed model -> S3",
        "ComponentPublisher": "hybridstream",
        "ComponentDependencies": {
            TES: {"VersionRequirement": ">=2.0.0 <3.0.0", "DependencyType": "HARD"},
            # for {<edge app>:work:path}: the windows folder it writes
            edge_app_component: {"VersionRequirement": ">=1.0.0", "DependencyType": "SOFT"},
        },
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "speedName": _name_template(speed_model_name),
                "s3": {"modelsBucket": models_bucket},
            }
        },
        "Manifests": _manifests(lifecycle, [_zip(source)], architectures=TRAINER_ARCHITECTURES),
    }
