"""The contract shared by the edge app, the training job, the Lambdas and the CDK app.

- the model contract: feature building (lags per a :class:`FeatureSpec`, calendar features
  and the one timestamp parser in :mod:`model_contract.calendar`, stdlib only), scaling
  (:class:`Scaler`) and the model manifest (:class:`Manifest`), imported by both sides so
  that what a model was trained on is exactly what it is served with (numpy);
- the wire contract (stdlib only): :mod:`model_contract.topics` (every MQTT and Kafka topic),
  :mod:`model_contract.layout` (S3 keys, the ``LATEST`` pointer, model names) and
  :mod:`model_contract.messages` (the window notice and the model notice).

The names below load lazily, so ``import model_contract.topics`` does not import numpy (the
Lambdas without a numpy layer import the wire contract only).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BadRecord": "model_contract.bad_record",
    "parse_timestamp": "model_contract.calendar",
    "DEFAULT_CALENDAR": "model_contract.calendar",
    "FeatureBuffer": "model_contract.features",
    "calendar_matrix": "model_contract.features",
    "default_spec": "model_contract.features",
    "with_calendar": "model_contract.features",
    "FeatureSpec": "model_contract.features",
    "build_supervised": "model_contract.features",
    "rows_to_matrix": "model_contract.features",
    "Manifest": "model_contract.manifest",
    "content_version": "model_contract.manifest",
    "sha256_bytes": "model_contract.manifest",
    "sha256_file": "model_contract.manifest",
    "Scaler": "model_contract.scaling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model_contract' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
