"""Per-column standard scaling, fitted on training data and recorded in the manifest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scaler:
    """Standardises each input column and the target: ``(x - mean) / scale``.

    >>> import numpy as np
    >>> s = Scaler.fit(np.array([[1.0, 10.0], [3.0, 30.0]]), target_index=1)
    >>> s.transform(np.array([2.0, 20.0])).tolist()
    [0.0, 0.0]
    >>> s.inverse_target(1.0)
    30.0
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    target_index: int

    @classmethod
    def fit(cls, matrix: np.ndarray, target_index: int) -> Scaler:
        """Fit on a (rows, columns) matrix; a constant column gets scale 1."""
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise ValueError("Scaler.fit needs a non-empty 2-D matrix")
        mean = matrix.mean(axis=0)
        scale = matrix.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in scale), int(target_index))

    @classmethod
    def identity(cls, n_columns: int, target_index: int) -> Scaler:
        """A scaler that changes nothing (models trained without scaling)."""
        return cls((0.0,) * n_columns, (1.0,) * n_columns, target_index)

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.scale):
            raise ValueError("Scaler mean and scale must have the same length")
        object.__setattr__(self, "_mean_arr", np.asarray(self.mean, dtype=np.float64))
        object.__setattr__(self, "_scale_arr", np.asarray(self.scale, dtype=np.float64))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale one row or a matrix of rows (last axis = columns)."""
        return (values - self._mean_arr) / self._scale_arr

    def transform_into(self, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Scale ``values`` into the preallocated ``out`` (any shape whose last axis is columns)."""
        np.subtract(values, self._mean_arr, out=out, casting="unsafe")
        np.divide(out, self._scale_arr, out=out)
        return out

    def transform_target(self, y: np.ndarray | float) -> np.ndarray | float:
        """Scale target values."""
        return (y - self.mean[self.target_index]) / self.scale[self.target_index]

    def inverse_target(self, y_scaled: np.ndarray | float) -> np.ndarray | float:
        """Back from the model's scaled output to the target's units."""
        return y_scaled * self.scale[self.target_index] + self.mean[self.target_index]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "scale": list(self.scale), "target_index": self.target_index}

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        return cls(tuple(map(float, data["mean"])), tuple(map(float, data["scale"])), int(data["target_index"]))
