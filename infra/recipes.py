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

    Keys written to the edge app's config file follow ``edge_app.config.EdgeConfig``; the
    cloud-side settings it has no keys for yet (mode, bucket names, MQTT root) reach the
    process as ``HYBRIDSTREAM_*`` environment variables.
    """

    mode: str = "edge-cloud"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topics: Mapping[str, str] = field(
        default_factory=lambda: {
            "readings": "sensor.readings",
            "predictions": "predictions",
            "metrics": "metrics",
            "deadletter": "deadletter",
        }
    )
    speed_model_name: str = "speed"
    windows_bucket: str = ""
    models_bucket: str = ""


def _manifests(lifecycle: Mapping[str, Any], artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"Platform": {"os": "linux", "architecture": arch}, "Lifecycle": dict(lifecycle), "Artifacts": artifacts}
        for arch in ARCHITECTURES
    ]


def _zip(artifact: ZipArtifact) -> dict[str, Any]:
    return {"Uri": artifact.uri, "Unarchive": "ZIP", "Permission": {"Read": "OWNER", "Execute": "NONE"}}


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
    """The edge app: own venv in the work folder, ``python -m edge_app run --config <file>``."""
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
        "windows": {"uploader": "local", "local_root": "{work:path}/windows"},
        "state_dir": "{work:path}/state",
    }
    if batch_component and batch_stem:
        decompressed = "{" + batch_component + ":artifacts:decompressedPath}"
        config["models"]["batch"] = f"{decompressed}/{batch_stem}/model.tflite"
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
                "HYBRIDSTREAM_MODE": "{configuration:/mode}",
                "HYBRIDSTREAM_WINDOWS_BUCKET": "{configuration:/s3/windowsBucket}",
                "HYBRIDSTREAM_MODELS_BUCKET": "{configuration:/s3/modelsBucket}",
                "HYBRIDSTREAM_MQTT_ROOT": "hybridstream/{iot:thingName}",
                "HYBRIDSTREAM_MQTT_TRANSPORT": "greengrass-ipc",
                "PYTHONPATH": src,
            },
            "Script": "\n".join(
                [
                    "set -eu",
                    'mkdir -p "{work:path}/state" "{work:path}/windows"',
                    "cat > \"{work:path}/config.json\" <<'HYBRIDSTREAM_CONFIG'",
                    config_json,
                    "HYBRIDSTREAM_CONFIG",
                    'exec "{work:path}/venv/bin/python" -m edge_app run --config "{work:path}/config.json"',
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
                "models": {"speedName": settings.speed_model_name},
                "s3": {"windowsBucket": settings.windows_bucket, "modelsBucket": settings.models_bucket},
                "accessControl": {
                    "aws.greengrass.ipc.mqttproxy": {
                        f"{name}:mqttproxy:1": {
                            "policyDescription": "Publish own telemetry, receive model announcements",
                            "operations": ["aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"],
                            "resources": ["hybridstream/*"],
                        }
                    }
                },
            }
        },
        "Manifests": _manifests(lifecycle, [_zip(app)]),
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


KAFKA_INSTALL = r"""set -eu
V="{configuration:/kafkaVersion}"; S="{configuration:/scalaVersion}"
D="{work:path}/kafka_$S-$V"
if [ ! -x "$D/bin/kafka-server-start.sh" ]; then
  T="{work:path}/kafka_$S-$V.tgz"
  curl -fsSL --retry 3 -o "$T" "{configuration:/mirror}/$V/kafka_$S-$V.tgz"
  curl -fsSL --retry 3 -o "$T.sha512" "{configuration:/checksumMirror}/$V/kafka_$S-$V.tgz.sha512"
  python3 - "$T" "$T.sha512" "{configuration:/sha512}" <<'PY'
import hashlib, re, sys
path, sumfile, pinned = sys.argv[1:4]
text = open(sumfile).read()
text = text.split(":", 1)[1] if ":" in text.split()[0] or text.split()[0].endswith(".tgz") else text.split()[0]
want = (pinned or re.sub(r"[^0-9a-fA-F]", "", text)).lower()
have = hashlib.sha512(open(path, "rb").read()).hexdigest()
sys.exit(0 if have == want else f"Kafka download checksum mismatch: {have} != {want}")
PY
  tar -xzf "$T" -C "{work:path}"
  rm -f "$T" "$T.sha512"
fi"""

KAFKA_RUN = r"""set -eu
D="{work:path}/kafka_{configuration:/scalaVersion}-{configuration:/kafkaVersion}"
C="{work:path}/server.properties"
cat > "$C" <<'PROPS'
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{configuration:/controllerPort}
listeners=PLAINTEXT://127.0.0.1:{configuration:/port},CONTROLLER://127.0.0.1:{configuration:/controllerPort}
advertised.listeners=PLAINTEXT://127.0.0.1:{configuration:/port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={work:path}/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
auto.create.topics.enable=true
log.retention.hours={configuration:/retentionHours}
PROPS
if [ ! -f "{work:path}/data/meta.properties" ]; then
  "$D/bin/kafka-storage.sh" format -t "$("$D/bin/kafka-storage.sh" random-uuid)" -c "$C"
fi
export KAFKA_HEAP_OPTS="-Xmx{configuration:/heap} -Xms128m"
exec "$D/bin/kafka-server-start.sh" "$C"
"""


def kafka_broker_recipe(*, name: str, version: str, kafka_version: str = "4.4.0") -> dict[str, Any]:
    """A single-node KRaft Apache Kafka on 127.0.0.1: Java via apt (bootstrap, as root), Kafka
    fetched from the Apache archive at install and checked against its published SHA-512."""
    lifecycle = {
        "Bootstrap": {
            "RequiresPrivilege": True,
            "Script": "command -v java >/dev/null 2>&1 || { apt-get update -q && "
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jre-headless; }",
            "Timeout": 1800,
        },
        "Install": {"Script": KAFKA_INSTALL, "Timeout": 900},
        "Run": {"Script": KAFKA_RUN.strip()},
    }
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "Apache Kafka broker (KRaft, single node) on 127.0.0.1 for the edge app",
        "ComponentPublisher": "hybridstream",
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "kafkaVersion": kafka_version,
                "scalaVersion": "2.13",
                "mirror": "https://archive.apache.org/dist/kafka",
                "checksumMirror": "https://archive.apache.org/dist/kafka",
                "sha512": "",
                "port": "9092",
                "controllerPort": "9093",
                "retentionHours": "24",
                "heap": "384m",
            }
        },
        "Manifests": _manifests(lifecycle, []),
    }
