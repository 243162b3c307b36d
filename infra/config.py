"""App settings from CDK context, with their defaults (plain Python, no CDK imports).

Every value can be given with ``cdk synth|deploy -c key=value`` or in ``cdk.json``'s context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from infra.topic_rules import MODES

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
      role alias, component names).
    - ``trainer_instance_type`` (``c5.4xlarge``), ``trainer_min_capacity`` (0),
      ``trainer_max_capacity`` (2): the trainer Auto Scaling group.
    - ``retain_data`` (false): keep buckets and their objects on ``cdk destroy``.
    - ``batch_model_dir`` (``build/batch-model``): folder with ``model.tflite`` + ``manifest.json``
      of the pre-trained batch model; when it is absent the batch-model component is left out
      (the edge app then waits for a model announced on MQTT).
    - ``inference_layer_dir`` (``build/lambda-layers/inference``): the cloud-mode inference
      Lambda's dependency layer (numpy + ai-edge-litert), built by ``scripts/build_inference_layer.sh``.
    - ``kafka_bootstrap`` (``127.0.0.1:9092``), ``kafka_version`` (``4.4.0``): the Pi's broker.
    - ``speed_model_name`` (``speed``) / ``batch_model_name`` (``batch``): model names in
      ``models/<name>/`` and on ``hybridstream/models/<name>/published`` (the trainer's defaults).
    - ``rmse_alarm_threshold`` (2.0): hybrid RMSE (target units) above which the alarm fires.
    """

    mode: str = "edge-cloud"
    account: str | None = None
    region: str | None = None
    name_prefix: str = "hybridstream"
    trainer_instance_type: str = "c5.4xlarge"
    trainer_min_capacity: int = 0
    trainer_max_capacity: int = 2
    retain_data: bool = False
    batch_model_dir: str = "build/batch-model"
    inference_layer_dir: str = "build/lambda-layers/inference"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_version: str = "4.4.0"
    speed_model_name: str = "speed"
    batch_model_name: str = "batch"
    rmse_alarm_threshold: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"context mode must be one of {MODES}, not {self.mode!r}")
        if not 0 <= self.trainer_min_capacity <= self.trainer_max_capacity:
            raise ValueError("need 0 <= trainer_min_capacity <= trainer_max_capacity")

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
            values[f.name] = casts.get(kind, str)(raw)
        return cls(**values)
