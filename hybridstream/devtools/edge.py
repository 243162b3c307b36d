"""Edge development helpers for the tests and the benchmark: real tiny models, configs, CSV rows.

:func:`train_model` imports TensorFlow (through ``training_job``) when called; the edge app
never imports this module and it does not ship to the device.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from model_contract import FeatureSpec, Manifest, rows_to_matrix


def read_rows(path: str | Path, start: int = 0, count: int | None = None) -> list[dict[str, str]]:
    """Rows ``start .. start+count`` of a CSV as dicts (strings, as csv gives them)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[start : None if count is None else start + count]


def train_model(
    rows: list[dict[str, Any]],
    out_root: Path,
    *,
    name: str,
    kind: str,
    spec: FeatureSpec | None = None,
    seed: int = 42,
    units: int = 8,
    dense: int = 4,
    epochs: int = 3,
) -> Path:
    """Train a small real LSTM on ``rows``, write ``<out_root>/<name>/<version>/model.tflite`` + manifest."""
    from training_job.model import TrainConfig, train_matrix

    spec = spec or FeatureSpec()
    matrix = rows_to_matrix(rows, spec)
    cfg = TrainConfig(lstm_units=units, dense_units=dense, epochs=epochs, batch_size=64, patience=2, seed=seed)
    trained = train_matrix(matrix, spec, cfg, name=name, kind=kind)
    return save_model(trained.tflite, trained.manifest, out_root)


def save_model(tflite: bytes, manifest: Manifest, out_root: Path) -> Path:
    folder = Path(out_root) / manifest.name / manifest.version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(tflite)
    manifest.save(folder / "manifest.json")
    return folder / "model.tflite"


def notice_for(model_path: Path, **override: Any) -> dict[str, Any]:
    """The notice that announces a saved model (what the cloud side publishes)."""
    manifest = Manifest.load(model_path.with_name("manifest.json"))
    notice = {
        "name": manifest.name,
        "version": manifest.version,
        "model": model_path.resolve().as_uri(),
        "manifest": model_path.with_name("manifest.json").resolve().as_uri(),
        "sha256": manifest.sha256,
    }
    notice.update(override)
    return notice


def write_config(path: Path, **cfg: Any) -> Path:
    path.write_text(json.dumps(cfg, indent=2))
    return path


def reading_json(row: dict[str, Any], device: str, spec: FeatureSpec | None = None) -> bytes:
    """One input reading as the edge app expects it (numbers as floats)."""
    spec = spec or FeatureSpec()
    rec: dict[str, Any] = {spec.device_column: device, spec.timestamp_column: row[spec.timestamp_column]}
    for col in spec.columns:
        rec[col] = float(row[col])
    return json.dumps(rec).encode()


def expected_forecasts(rows: list[dict[str, Any]], model_path: Path) -> np.ndarray:
    """What one model forecasts after each row (NaN while the lag window fills): the test oracle."""
    from model_contract import FeatureBuffer
    from model_contract.calendar import parse_timestamp
    from model_contract.runtime import TFLiteModel

    manifest = Manifest.load(model_path.with_name("manifest.json"))
    model = TFLiteModel.from_files(model_path)
    spec = manifest.feature_spec
    buf = FeatureBuffer(spec)
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        buf.push(spec.parse_values(row), parse_timestamp(row[spec.timestamp_column]))
        if buf.ready:
            out[i] = model.predict_one(buf.window)
    return out
