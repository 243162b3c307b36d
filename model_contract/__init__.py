"""The model contract shared by the edge app and the training job.

One implementation of feature building (lags per a :class:`FeatureSpec`), scaling
(:class:`Scaler`) and the model manifest (:class:`Manifest`), imported by both sides so
that what a model was trained on is exactly what it is served with. Depends on numpy only.
"""

from model_contract.features import FeatureBuffer, FeatureSpec, build_supervised, rows_to_matrix
from model_contract.manifest import Manifest, content_version, sha256_bytes, sha256_file
from model_contract.scaling import Scaler

__all__ = [
    "FeatureBuffer",
    "FeatureSpec",
    "Manifest",
    "Scaler",
    "build_supervised",
    "content_version",
    "rows_to_matrix",
    "sha256_bytes",
    "sha256_file",
]
