"""App settings from CDK context, with their defaults (plain Python, no CDK imports).

Every value can be given with ``cdk synth|deploy -c key=value`` or in ``cdk.json``'s context.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from infra.name_limits import check_name_prefix
from infra.topic_rules import MODES, rules_for_mode
from model_contract.kafka_broker import KAFKA_VERSION, PI_HEAP, heap_mb
from model_contract.layout import BATCH_MODEL_NAME, SPEED_MODEL_TEMPLATE

REPO = Path(__file__).resolve().parents[1]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class AppConfig:
    """Context values (name: default).

    - ``mode`` (``edge-cloud``): ``edge-cloud`` | ``edge`` (training on the Pi, no trainer fleet)
      | ``cloud`` (readings forwarded, inference in a Lambda).
    - ``account`` / ``region`` (unset): target environment; unset gives an environment-agnostic
      stack (what offline ``make synth`` builds).
    - ``name_prefix`` (``hybridstream``): prefix of physical names (thing groups, IoT policies,
      role alias, component names); at most 17 characters of ``[A-Za-z0-9_-]`` (the provisioning
      template ``<prefix>-fleet-provisioning`` may have 36: infra/name_limits.py checks every name).
    - ``trainer_instance_type`` (``c5.4xlarge``), ``trainer_min_capacity`` (0),
      ``trainer_max_capacity`` (2): the trainer Auto Scaling group.
    - ``trainer_workers`` (0 = the instance type's vCPUs): trainings at once per instance;
      ``trainer_window_seconds`` (``infra.training.WINDOW_SECONDS``, measured) and
      ``trainer_max_delay_seconds`` (600): seconds one worker takes per window and the acceptable
      wait of a window, which set the scaling target (backlog per instance; docs/deploy.md).
    - ``retain_data`` (false): keep buckets and their objects on ``cdk destroy``.
    - ``batch_model_dir`` (``build/batch-model``): folder with ``model.tflite`` + ``manifest.json``
      of the pre-trained batch model (``make batch-model``); synth fails without it.
    - ``inference_layer_dir`` (``build/lambda-layers/inference``): the cloud-mode inference
      Lambda's dependency layer (numpy + ai-edge-litert), built by ``scripts/build_inference_layer.sh``.
    - ``kafka_bootstrap`` (``127.0.0.1:9092``), ``kafka_version``
      (``model_contract.kafka_broker.KAFKA_VERSION``): the Pi's broker.
    - ``kafka_heap`` (``384m``): the Pi broker's JVM heap (``-Xmx``, ``<n>m`` or ``<n>g``, at least
      256m); docs/deploy.md "Which Pi" has the broker's measured memory at each size.
    - ``kafka_libs_dir`` (``.cache/kafka-<kafka_version>/libs``): the broker's jars (``make setup``
      fetches them with Maven), shipped as the KafkaBroker component's artifact.
    - ``speed_model_name`` (``speed-{thing}``) / ``batch_model_name`` (``batch``): model names in
      ``models/<name>/`` and on ``hybridstream/models/<name>/published``. ``{thing}`` is the
      device's thing name (``model_contract.layout.speed_model_name`` fills it in): one speed
      model per device, one shared batch model.
    - ``promote`` (false) / ``fleet_component_versions`` (unset): the canary gate. Without
      ``promote`` the fleet deployment keeps the component versions in
      ``fleet_component_versions`` (JSON ``{"<component>": "<version>"}``, the last promoted
      release) while the canary deployment gets the current ones; ``promote=true`` gives the
      fleet the current versions. ``fleet_artifacts`` (JSON list of asset object keys): the
      pinned release's artifacts, which devices must still be able to download.
    - ``rmse_alarm_threshold`` (2.0): hybrid RMSE (target units) above which the alarm fires.
    - ``forecasts_scan_limit_mb`` (1000): the Athena workgroup's per-query scan limit
      (``BytesScannedCutoffPerQuery``, at least 10 MB) for ``hybridstream results``.
    """

    mode: str = "edge-cloud"
    account: str | None = None
    region: str | None = None
    name_prefix: str = "hybridstream"
    trainer_instance_type: str = "c5.4xlarge"
    trainer_min_capacity: int = 0
    trainer_max_capacity: int = 2
    trainer_workers: int = 0
    trainer_window_seconds: float = 7.0  # infra.training.WINDOW_SECONDS (no CDK import here)
    trainer_max_delay_seconds: int = 600
    retain_data: bool = False
    batch_model_dir: str = "build/batch-model"
    inference_layer_dir: str = "build/lambda-layers/inference"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_version: str = KAFKA_VERSION  # the one place: model_contract.kafka_broker
    kafka_libs_dir: str = ""
    kafka_heap: str = PI_HEAP
    speed_model_name: str = SPEED_MODEL_TEMPLATE
    batch_model_name: str = BATCH_MODEL_NAME
    rmse_alarm_threshold: float = 2.0
    forecasts_scan_limit_mb: int = 1000
    promote: bool = False
    fleet_component_versions: str = ""
    fleet_artifacts: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"context mode must be one of {MODES}, not {self.mode!r}")
        if not 0 <= self.trainer_min_capacity <= self.trainer_max_capacity:
            raise ValueError("need 0 <= trainer_min_capacity <= trainer_max_capacity")
        if self.trainer_workers < 0 or self.trainer_window_seconds <= 0 or self.trainer_max_delay_seconds <= 0:
            raise ValueError("need trainer_workers >= 0, trainer_window_seconds > 0, trainer_max_delay_seconds > 0")
        if self.forecasts_scan_limit_mb < 10:
            raise ValueError("forecasts_scan_limit_mb must be >= 10 (Athena's minimum per-query scan limit)")
        heap_mb(self.kafka_heap)  # a clear error for a heap the JVM or the broker would refuse
        # every physical name built from the prefix, against its service's limit (infra/name_limits.py)
        check_name_prefix(self.name_prefix, tuple(rule.name for rule in rules_for_mode(self.mode)))

    @property
    def kafka_libs(self) -> Path:
        """The broker's jars folder (default: where ``make setup`` / ``kafka.fetch()`` puts them)."""
        return self.resolve(self.kafka_libs_dir or f".cache/kafka-{self.kafka_version}/libs")

    def pinned_fleet_versions(self) -> dict[str, str] | None:
        """The fleet's pinned component versions, or None when the fleet gets the current ones."""
        if self.promote:
            return None
        raw: Any = self.fleet_component_versions
        if isinstance(raw, str):
            raw = json.loads(raw) if raw.strip() else None
        if not raw:
            raise ValueError(
                "canary gate: the fleet's release is unknown. Deploy with -c promote=true to roll the current "
                "component versions out to the fleet (first deploy, or after the canaries passed), or pin the "
                'fleet with -c fleet_component_versions=\'{"<component>": "<version>", ...}\' (see docs/deploy.md)'
            )
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError("fleet_component_versions must be a JSON object of component name -> version")
        return dict(raw)

    def pinned_fleet_artifacts(self) -> list[str]:
        raw: Any = self.fleet_artifacts
        if isinstance(raw, str):
            raw = json.loads(raw) if raw.strip() else []
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise ValueError("fleet_artifacts must be a JSON list of asset object keys")
        return list(raw)

    @property
    def has_trainer(self) -> bool:
        """Whether the cloud trainer fleet (queue, VPC, ASG) exists: not in ``edge`` mode."""
        return self.mode != "edge"

    def resolve(self, path: str) -> Path:
        """A context path, relative to the repository root unless absolute."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else REPO / candidate

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> AppConfig:
        """Build from a context getter (``node.try_get_context``); unset keys keep their default."""
        casts: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "bool": _bool}
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = get(f.name)
            if raw is None:
                continue
            kind = str(f.type).split(" ")[0]
            if isinstance(raw, dict | list):  # JSON context values given in cdk.json
                raw = json.dumps(raw)
            values[f.name] = casts.get(kind, str)(raw)
        return cls(**values)
