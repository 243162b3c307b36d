"""Run a TFLite model without TensorFlow: ``ai_edge_litert`` first, ``tflite_runtime`` as fallback.

One code path for the edge app (forecasts) and the training job (parity check of the exported
model). :class:`TFLiteModel` preallocates its input so that :meth:`~TFLiteModel.predict_one`
allocates nothing per call but the returned float; :meth:`~TFLiteModel.predict_batch` forecasts
many windows with one invoke per chunk of :data:`CHUNK` rows (the models take a dynamic batch),
each forecast equal bit for bit to :meth:`~TFLiteModel.predict_one`'s of the same window. A change of
an interpreter's batch size costs a resize (re-plans the graph, ~4-30 µs), so batches run on interpreters of
their own: one at batch 1, one at a full chunk and one for the rest, whose size only changes when a batch
would pad more than :data:`PAD_SLACK` rows (padded to :func:`bucket`; padding rows are zeros, never read).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from model_contract.manifest import Manifest
from model_contract.scaling import Scaler

_RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
CHUNK = 256  # rows per batched invoke at most (larger batches no longer invoke faster per row; BENCHMARKS.md)
PAD_SLACK = 16  # a partial chunk reuses the interpreter's size if that pads fewer rows (~0.5 µs a row < a resize)


def bucket(rows: int) -> int:
    """The batch size a partial chunk of ``rows`` is padded to when its interpreter must resize: the next
    power of two up to 16 rows, then the next multiple of 16 (at most :data:`CHUNK`)."""
    if rows <= 16:
        return 1 << (rows - 1).bit_length()
    return min(CHUNK, -(-rows // 16) * 16)


class ModelRejected(ValueError):
    """A model file that must not serve: wrong checksum, shapes, ops or feature spec."""


def interpreter_class() -> type:
    """The first lightweight runtime that imports (never TensorFlow)."""
    errors = []
    for name in _RUNTIMES:
        try:
            return importlib.import_module(name).Interpreter
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise RuntimeError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime)\n" + "\n".join(errors))


def runtime_name() -> str:
    return interpreter_class().__module__.split(".")[0]


class TFLiteModel:
    """A float32 TFLite regressor with its scaler: raw lag window in, forecast in target units out.

    ``content`` is the model file's bytes; ``input_shape`` is (steps, columns) without the
    batch axis. The interpreter is resized to batch 1 once, at load.
    """

    def __init__(self, content: bytes, scaler: Scaler, input_shape: tuple[int, int], num_threads: int = 1) -> None:
        try:
            self._interp = interpreter_class()(model_content=content, num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelRejected(f"not a loadable TFLite model: {exc}") from None
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelRejected(f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}")
        if inputs[0]["dtype"] != np.float32 or outputs[0]["dtype"] != np.float32:
            raise ModelRejected("model must be float32 in and out")
        want = (1, *input_shape)
        have = tuple(int(d) for d in inputs[0]["shape"])
        if len(have) != 3 or tuple(have[1:]) != tuple(input_shape):
            raise ModelRejected(f"input shape {have} does not match the feature spec {want}")
        if have != want:
            self._interp.resize_tensor_input(inputs[0]["index"], list(want))
        try:
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelRejected(f"cannot allocate tensors: {exc}") from None
        out_shape = tuple(int(d) for d in self._interp.get_output_details()[0]["shape"])
        if int(np.prod(out_shape)) != 1:
            raise ModelRejected(f"output shape {out_shape} is not one value per input")
        self._in_index = inputs[0]["index"]
        self._out_index = outputs[0]["index"]
        self._input = np.zeros(want, dtype=np.float32)
        self._scaled = np.zeros(input_shape, dtype=np.float64)
        self._scaler = scaler
        self._t_scale = scaler.scale[scaler.target_index]
        self._t_mean = scaler.mean[scaler.target_index]
        self.input_shape = tuple(input_shape)
        self._content, self._num_threads = content, num_threads
        self._bscaled: np.ndarray | None = None  # predict_batch's buffers, made at its first call
        self._binput: np.ndarray | None = None
        self._full: _Sized | None = None  # predict_batch's interpreters: a full chunk, and the rest (made at need)
        self._part: _Sized | None = None
        self.resizes = 0  # interpreter (re)allocations for batches so far
        self.batched = True  # False once a batched invoke failed or disagreed with predict_one (then one by one)

    def _sized(self, rows: int) -> _Sized:
        """The interpreter a chunk of ``rows`` (2..CHUNK) invokes on, allocated to ``rows`` or a bit more."""
        if rows == CHUNK:
            if self._full is None:
                self._full = self._new_sized(CHUNK)
                self.resizes += 1
            return self._full
        part = self._part
        if part is None or not rows <= part.rows < rows + PAD_SLACK:
            if part is None:
                part = self._part = self._new_sized(bucket(rows))
            else:
                part.resize(bucket(rows))
            self.resizes += 1
        return part

    def _new_sized(self, rows: int) -> _Sized:
        return _Sized(interpreter_class()(model_content=self._content, num_threads=self._num_threads), rows)

    @classmethod
    def from_manifest(cls, content: bytes, manifest: Manifest, num_threads: int = 1) -> TFLiteModel:
        return cls(content, manifest.scaler, tuple(manifest.input_shape), num_threads)

    @classmethod
    def from_files(cls, model_path: str | Path, manifest_path: str | Path | None = None) -> TFLiteModel:
        """Load ``model.tflite`` and the ``manifest.json`` beside it (or at ``manifest_path``)."""
        model_path = Path(model_path)
        manifest = Manifest.load(manifest_path or model_path.with_name("manifest.json"))
        return cls.from_manifest(model_path.read_bytes(), manifest)

    def predict_one(self, window: np.ndarray) -> float:
        """Forecast from one raw (steps, columns) window: scale, invoke, unscale."""
        self._scaler.transform_into(window, self._scaled)
        self._input[0] = self._scaled
        self._interp.set_tensor(self._in_index, self._input)
        self._interp.invoke()
        return float(self._interp.get_tensor(self._out_index).reshape(-1)[0]) * self._t_scale + self._t_mean

    def predict_batch(self, windows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Forecasts from raw windows (n, steps, columns) into ``out[:n]`` (float64): scale, one invoke per
        chunk of at most :data:`CHUNK` rows, unscale. Each equals :meth:`predict_one` of its window bit for
        bit: the same float64 scaling, the same float32 input row, and a batched invoke computes each row
        as a batch of one does (checked once per model at its first batch; if not, or if the runtime
        refuses to resize, this model forecasts one window at a time from then on: ``batched`` False)."""
        n = windows.shape[0]
        if n == 0:
            return out
        if self._bscaled is None:
            self._bscaled = np.zeros((CHUNK, *self.input_shape), dtype=np.float64)
            self._binput = np.zeros((CHUNK, *self.input_shape), dtype=np.float32)
            self.batched = self._batch_agrees(windows)
        if not self.batched or n == 1:
            for i in range(n):
                out[i] = self.predict_one(windows[i])
            return out
        t_scale, t_mean = self._t_scale, self._t_mean
        binput = self._binput
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            rows = hi - lo
            sized = self._sized(rows)
            scaled = self._bscaled[:rows]
            self._scaler.transform_into(windows[lo:hi], scaled)
            binput[:rows] = scaled
            binput[rows : sized.rows] = 0.0  # the padding: zeros (each row's forecast is its own)
            interp = sized.interp
            interp.set_tensor(sized.in_index, binput[: sized.rows])
            interp.invoke()
            res = out[lo:hi]
            res[...] = interp.get_tensor(sized.out_index).reshape(-1)[:rows]
            res *= t_scale
            res += t_mean
        return out

    def _batch_agrees(self, windows: np.ndarray) -> bool:
        """Whether a batched invoke gives each row what a batch of one gives (a probe on these windows)."""
        probe = np.concatenate([windows[:2], windows[:1] * 0.5 + 1.0])  # at least 2 distinct rows
        one = np.asarray([self.predict_one(w) for w in probe])
        try:
            self.batched = True
            many = self.predict_batch(probe, np.empty(len(probe)))
        except (ValueError, RuntimeError):
            self._part = None
            return False
        return bool(np.array_equal(one, many, equal_nan=True))

    def predict_scaled(self, X: np.ndarray) -> np.ndarray:
        """Scaled-output forecasts for already-scaled inputs (n, steps, columns), one invoke each."""
        out = np.empty(len(X), dtype=np.float32)
        for i, x in enumerate(X):
            self._input[0] = x
            self._interp.set_tensor(self._in_index, self._input)
            self._interp.invoke()
            out[i] = self._interp.get_tensor(self._out_index).reshape(-1)[0]
        return out


class _Sized:
    """An interpreter allocated for batches of ``rows`` (its input and output tensor indices)."""

    __slots__ = ("interp", "in_index", "out_index", "rows")

    def __init__(self, interp, rows: int) -> None:
        self.interp = interp
        self.in_index = interp.get_input_details()[0]["index"]
        self.out_index = interp.get_output_details()[0]["index"]
        self.resize(rows)

    def resize(self, rows: int) -> None:
        shape = self.interp.get_input_details()[0]["shape"]
        self.interp.resize_tensor_input(self.in_index, [rows, *(int(d) for d in shape[1:])])
        self.interp.allocate_tensors()
        self.rows = rows
