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

from model_contract.kafka_broker import (
    KAFKA_VERSION,
    LOG4J2_PROPERTIES,
    MIN_JAVA,
    PI_HEAP,
    PI_INITIAL_HEAP,
    heap_mb,
    kraft_properties,
)
from model_contract.layout import BATCH_MODEL_NAME, SPEED_MODEL_TEMPLATE, THING_VARIABLE
from model_contract.topics import KAFKA_TOPICS, METRICS, MODEL_NOTICES_FILTER, READINGS, WINDOWS, device_filter

RECIPE_FORMAT = "2020-01-25"
# The nucleus's own architecture names (PlatformResolver: amd64, x86, arm, aarch64; "armv7l" is only
# ``architecture.detail``). "arm" is any 32-bit ARM JVM, also a 32-bit OS on a 64-bit kernel.
# No "arm" manifest: a 32-bit Pi OS cannot run the edge (Python >= 3.11 needed, tflite-runtime's only armv7l wheel is
# cp39; `fleet enroll` and install.sh refuse it), and a deployment with no matching manifest fails before installing.
ARCHITECTURES = ("aarch64", "amd64")  # Pi 4/5 64-bit OS, x86 test boxes
# pyproject.toml's requires-python; the components' venvs use the OS's python3 (tests/fleet/test_pi_python.py)
MIN_PYTHON = (3, 11)
TES = "aws.greengrass.TokenExchangeService"
DEFAULT_INSTALL_TIMEOUT = 120  # s, when a step sets none (Greengrass recipe reference)
DEFAULT_BOOTSTRAP_TIMEOUT = 120


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
    batch_model_name: str = BATCH_MODEL_NAME  # edge mode: the Pi's trainer fine-tunes speed models from it
    windows_bucket: str = ""
    models_bucket: str = ""


def _manifests(
    lifecycle: Mapping[str, Any],
    artifacts: list[dict[str, Any]],
    *,
    architectures: tuple[str, ...] = ARCHITECTURES,
) -> list[dict[str, Any]]:
    """One manifest per architecture, all alike."""
    return [
        {
            "Platform": {"os": "linux", "architecture": arch},
            "Lifecycle": dict(lifecycle),
            "Artifacts": artifacts,
        }
        for arch in architectures
    ]


PREREQ_PACKAGES = ("python3-venv",)
# A Java >= 17 that each supported release has (Debian's Packages indices, main and -security, arm64
# and armhf alike, read with apt-cache on 2026-12-06): bullseye openjdk-11 and -17, bookworm openjdk-17
# only, trixie (the current Raspberry Pi OS) openjdk-21 and -25 only. The first one with an apt
# candidate is installed (tests/fleet/test_java_per_release.py).
JAVA_PACKAGES = ("openjdk-17-jre-headless", "openjdk-21-jre-headless")
JAVA_PACKAGE = " or ".join(JAVA_PACKAGES)  # for messages
# apt-get install waits this long for another apt or dpkg (unattended-upgrades) to free the dpkg lock.
# apt-get update ignores DPkg::Lock::Timeout for its lists lock (apt 2.6, measured in
# tests/infra/test_recipe_rules.py), so it is retried instead: APT_UPDATE_TRIES times, 10 s apart.
APT_LOCK_TIMEOUT = 600
APT_UPDATE_TRIES = 60


def apt_install_lines(packages_var: str = "missing", need_java_var: str = "need_java") -> list[str]:
    """Shell lines: ``apt-get update`` (retried while another apt holds its lock), then, when
    ``$need_java_var`` is 1, add the first of :data:`JAVA_PACKAGES` with an apt candidate to
    ``$packages_var``, then install them (waiting up to :data:`APT_LOCK_TIMEOUT` s for the dpkg lock)."""
    candidates = " ".join(JAVA_PACKAGES)
    return [
        "n=0",
        "until apt-get update -q; do",
        f'  n=$((n + 1)); if [ "$n" -ge {APT_UPDATE_TRIES} ]; then',
        '    echo "hybridstream: apt-get update kept failing (another apt holds its lock, or no network)" >&2',
        "    exit 1",
        "  fi",
        "  sleep 10",
        "done",
        f'if [ "${need_java_var}" = 1 ]; then',
        '  java_pkg=""',
        f"  for p in {candidates}; do",
        '    if LC_ALL=C apt-cache policy "$p" 2>/dev/null | grep -q "Candidate: [0-9]"; then java_pkg="$p"; break; fi',
        "  done",
        '  if [ -z "$java_pkg" ]; then',
        f'    echo "hybridstream: no Java >= 17 package in the apt sources (tried {candidates})" >&2',
        "    exit 1",
        "  fi",
        f'  {packages_var}="${packages_var} $java_pkg"',
        "fi",
        f"DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout={APT_LOCK_TIMEOUT} install -y"
        f" --no-install-recommends ${packages_var}",
    ]


def _java_major(var: str = "java_major") -> list[str]:
    """Shell lines setting ``$var`` to the major Java version on PATH (0 when none; 1 for 1.8)."""
    return [
        f"{var}=0",
        'v="$(java -version 2>&1 | sed -n \'s/.*version "\\([0-9]*\\).*/\\1/p\' | head -n 1)" || v=""',
        f'[ -n "$v" ] && {var}="$v"',
    ]


def _prerequisites_bootstrap(packages: tuple[str, ...]) -> dict[str, Any]:
    """Root, once per Prerequisites version: the Debian packages that are missing, and Java >= 17
    (Kafka 4; Debian 11's default-jre is 11) when the ``java`` on PATH is older or absent: whichever
    of :data:`JAVA_PACKAGES` the release has (bookworm 17, trixie 21)."""
    names = " ".join(packages)
    return {
        "RequiresPrivilege": True,
        "Script": "\n".join(
            [
                "set -eu",
                f'missing=""; for p in {names}; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done',
                *_java_major(),
                f'need_java=0; [ "$java_major" -ge {MIN_JAVA} ] || need_java=1',
                'if [ -n "$missing" ] || [ "$need_java" = 1 ]; then',
                *("  " + line for line in apt_install_lines()),
                "fi",
            ]
        ),
        "Timeout": 1800,
    }


def prerequisites_recipe(*, name: str, version: str) -> dict[str, Any]:
    """The device's apt prerequisites in their own, rarely changing component: the only Bootstrap
    step of the release. A Bootstrap step makes the nucleus stop every component and restart itself
    (KernelUpdateActivator), and it runs again whenever its component's version changes; kept here,
    a new edge app release is a plain component update."""
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "hybridstream device prerequisites: python3-venv, Java >= 17",
        "ComponentPublisher": "hybridstream",
        "Manifests": _manifests({"Bootstrap": _prerequisites_bootstrap(PREREQ_PACKAGES)}, []),
    }


def _hard(component: str | None) -> dict[str, Any]:
    return {component: {"VersionRequirement": ">=1.0.0", "DependencyType": "HARD"}} if component else {}


STAMP = ".hybridstream-installed"


def venv_install_script(src: str, requirements: str, venv: str = "{work:path}/venv") -> str:
    """Install a venv once per content: idempotent and offline after the first success.

    The nucleus runs Install at every start of the component (each boot). The OS's ``python3`` must be
    64-bit (a 32-bit Raspberry Pi OS on a 64-bit kernel reports ``aarch64`` as its machine, so the
    interpreter's pointer size decides) and at least :data:`MIN_PYTHON`; anything else is refused with
    a clear message before pip runs. A stamp in the venv, keyed by the requirements and the
    interpreter, makes a later start a no-op without network; pip never upgrades itself.
    """
    major, minor = MIN_PYTHON
    lines = [
        "set -eu",
        f'venv="{venv}"',
        'set -- $(python3 -c \'import platform, struct, sys; print(struct.calcsize("P") * 8, platform.machine(), '
        '"%d.%d" % sys.version_info[:2])\')',
        'bits="$1"; machine="$2"; py="$3"',
        'if [ "$bits" != 64 ]; then',
        '  echo "hybridstream: 32-bit Raspberry Pi OS is not supported (this Python is $bits-bit $machine):'
        f" the edge needs Python >= {major}.{minor} and tflite-runtime has no 32-bit wheel for it;"
        ' install 64-bit Raspberry Pi OS (bookworm or trixie)" >&2',
        "  exit 1",
        "fi",
        'py_major="${py%%.*}"; py_minor="${py#*.}"',
        f'if [ "$py_major" -lt {major} ] || {{ [ "$py_major" -eq {major} ] && [ "$py_minor" -lt {minor} ]; }}; then',
        f'  echo "hybridstream: needs Python >= {major}.{minor}, this is Python $py: install 64-bit Raspberry Pi OS'
        ' (bookworm or trixie)" >&2',
        "  exit 1",
        "fi",
        f'req="{src}/{requirements}"',
    ]
    lines += [
        'key="$( (cat "$req"; python3 -c \'import sys; print(sys.version)\') | sha256sum | cut -d " " -f 1)"',
        f'if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/{STAMP}" 2>/dev/null || true)" = "$key" ]; then',
        '  echo "hybridstream: $venv is up to date ($key)"',
        "  exit 0",
        "fi",
        f'rm -f "$venv/{STAMP}"',
        'python3 -m venv "$venv"',
        '"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req"',
        f'echo "$key" > "$venv/{STAMP}"',
    ]
    return "\n".join(lines)


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


DEVICE_PUBLISHES = (WINDOWS, METRICS, READINGS)  # the edge app's window notices, metrics, forwarded readings


def ipc_access_control(name: str) -> dict[str, Any]:
    """The edge app's IPC authorization: publish its device topics, subscribe to model notices.

    No recipe variables: the nucleus interpolates a component's configuration (``accessControl``
    included) only with ``interpolateComponentConfiguration`` on, which no deployment of ours sets,
    so ``{iot:thingName}`` would stay text and refuse every publish. ``+`` stands for the thing; the
    device's IoT policy (``${iot:Connection.Thing.ThingName}``) is what limits it to its own topics.
    """
    return {
        "aws.greengrass.ipc.mqttproxy": {
            f"{name}:mqttproxy:publish": {
                "policyDescription": "Publish window notices, metrics and forwarded readings",
                "operations": ["aws.greengrass#PublishToIoTCore"],
                "resources": [device_filter(kind) for kind in DEVICE_PUBLISHES],
            },
            f"{name}:mqttproxy:subscribe": {
                "policyDescription": "Receive model notices (the IoT policy narrows them to its own speed model)",
                "operations": ["aws.greengrass#SubscribeToIoTCore"],
                "resources": [MODEL_NOTICES_FILTER],
            },
        }
    }


def edge_app_recipe(
    *,
    name: str,
    version: str,
    app: ZipArtifact,
    settings: EdgeAppSettings,
    kafka_component: str | None = None,
    batch_component: str | None = None,
    batch_stem: str | None = None,
    prerequisites_component: str | None = None,
) -> dict[str, Any]:
    """The edge app: own venv in the work folder, ``python -m edge_app run --config <file>``
    (``forward`` instead of ``run`` in ``cloud`` mode: readings to the cloud over MQTT)."""
    deps: dict[str, Any] = {TES: {"VersionRequirement": ">=2.0.0 <3.0.0", "DependencyType": "HARD"}}
    deps.update(_hard(prerequisites_component))
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
            "Script": venv_install_script(src, "edge_app/requirements.txt"),
            "Timeout": 1800,
        },
        "Run": {
            "Setenv": {
                "PYTHONPATH": src,
                # the online linear model's compiled kernel is built here on the first start (with a C compiler)
                "HYBRIDSTREAM_KERNEL_CACHE": "{work:path}/kernels",
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
                "accessControl": ipc_access_control(name),
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


KAFKA_LOG4J = LOG4J2_PROPERTIES.rstrip("\n")
KAFKA_PROPERTIES = kraft_properties(
    port="{configuration:/port}",
    controller_port="{configuration:/controllerPort}",
    data_dir="{work:path}/data",
    retention_hours="{configuration:/retentionHours}",
).rstrip("\n")


def _kafka_java(libs: str) -> str:
    return (
        f"java -Xmx{{configuration:/heap}} -Xms{PI_INITIAL_HEAP} -XX:+UseSerialGC "
        '-Dlog4j2.configurationFile="{work:path}/log4j2.properties" '
        f"-cp '{libs}/*'"
    )


def kafka_broker_recipe(
    *,
    name: str,
    version: str,
    jars: ZipArtifact,
    kafka_version: str = KAFKA_VERSION,
    prerequisites_component: str | None = None,
    heap: str = PI_HEAP,
) -> dict[str, Any]:
    """A single-node KRaft Apache Kafka on 127.0.0.1 only, ``-Xmx{heap}`` (component configuration
    ``heap``: context ``kafka_heap``, or a deployment's configuration merge on one group). Java >= 17
    comes from the Prerequisites component (Install refuses an older one with a clear message); the
    broker's jars are the component's own artifact (a CDK asset of the Maven-fetched ``libs/``), so nothing is
    downloaded from anywhere else. Install writes the KRaft config and formats the storage once
    (offline, idempotent); Run is ``java -cp 'libs/*' kafka.Kafka server.properties``."""
    libs = f"{jars.decompressed()}/libs"
    java = _kafka_java(libs)
    install = "\n".join(
        [
            "set -eu",
            *_java_major(),
            f'if [ "$java_major" -lt {MIN_JAVA} ]; then',
            f"  echo \"hybridstream: Kafka {kafka_version} needs Java >= {MIN_JAVA}, found '$v' on PATH"
            f' (the Prerequisites component installs {JAVA_PACKAGE})" >&2',
            "  exit 1",
            "fi",
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
        "Install": {"Script": install, "Timeout": 300},
        "Run": {"Script": run},
    }
    return {
        "RecipeFormatVersion": RECIPE_FORMAT,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": f"Apache Kafka {kafka_version} (KRaft, single node) on 127.0.0.1 for the edge app",
        "ComponentPublisher": "hybridstream",
        **({"ComponentDependencies": _hard(prerequisites_component)} if prerequisites_component else {}),
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "kafkaVersion": kafka_version,
                "port": "9092",
                "controllerPort": "9093",
                "retentionHours": "24",
                "heap": f"{heap_mb(heap)}m",
            }
        },
        "Manifests": _manifests(lifecycle, [_zip(jars)]),
    }


def trainer_recipe(
    *,
    name: str,
    version: str,
    source: ZipArtifact,
    edge_app_component: str,
    speed_model_name: str = SPEED_MODEL_TEMPLATE,
    batch_model_name: str = BATCH_MODEL_NAME,
    models_bucket: str = "",
    prerequisites_component: str | None = None,
) -> dict[str, Any]:
    """``edge`` mode: the training job on the Pi, in its own venv, watching the edge app's local
    window folder; each window is trained once (then moved to ``done/`` or ``rejected/``) and the
    model published to S3 as in the cloud, so the model_published Lambda announces it.
    No 32-bit ARM manifest, as every component (no TensorFlow wheels for it either)."""
    src = source.decompressed()
    windows = "{" + edge_app_component + ":work:path}/windows"
    lifecycle = {
        # the project runs from the artifact (PYTHONPATH): the venv holds only the requirements
        "Install": {"Script": venv_install_script(src, "training_job/requirements.txt"), "Timeout": 3600},
        "Run": {
            "Setenv": {"PYTHONUNBUFFERED": "1", "PYTHONPATH": src},
            "Script": "\n".join(
                [
                    "set -eu",
                    f'mkdir -p "{windows}"',
                    # --name keeps "{thing}": the watcher fills in the thing of each window's path
                    f'exec "{{work:path}}/venv/bin/python" -m hybridstream train worker --watch "{windows}" '
                    '--name "{configuration:/speedName}" --bucket "{configuration:/s3/modelsBucket}" '
                    # each speed model is fine-tuned from the batch model (models/<name>/LATEST in that bucket)
                    f'--batch-name "{batch_model_name}"',
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
            **_hard(prerequisites_component),
            # for {<edge app>:work:path}: the windows folder it writes
            edge_app_component: {"VersionRequirement": ">=1.0.0", "DependencyType": "SOFT"},
        },
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "speedName": _name_template(speed_model_name),
                "s3": {"modelsBucket": models_bucket},
            }
        },
        "Manifests": _manifests(lifecycle, [_zip(source)]),
    }


def install_budget_seconds(recipe: Mapping[str, Any]) -> int:
    """The longest a device may spend in a component's Bootstrap + Install steps: their timeouts
    (Greengrass's defaults, 120 s each, for a step without one), worst case over the manifests."""
    worst = 0
    for manifest in recipe.get("Manifests", []):
        lifecycle = manifest.get("Lifecycle") or {}
        total = 0
        for key, default in (("Bootstrap", DEFAULT_BOOTSTRAP_TIMEOUT), ("Install", DEFAULT_INSTALL_TIMEOUT)):
            step = lifecycle.get(key)
            if step is not None:
                total += int(step.get("Timeout", default)) if isinstance(step, dict) else default
        worst = max(worst, total)
    return worst
