"""Run `.onnx` models with ONNX Runtime behind the same interface as `WasmModel`.

The server serves `model.onnx` files with it (a model wasinfer cannot compile yet still gets
the protocol, the metrics and the repository), and `metadata` describes the tensors the
way `WasmModel.metadata` does: numpy dtype names, and `batch_axis` 0 when the leading dim
is dynamic. Dims only known at run time are -1.

One session is safe to call from several threads at once (ONNX Runtime's `run` is
thread-safe and releases the GIL), so a server shares one per model; each run uses one
intra-op thread, so concurrency comes from concurrent requests, as with wasm instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wasinfer.runtime.base import InputError

# ONNX Runtime's type strings → numpy dtype names (BYTES tensors are numpy object arrays).
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "object",
}


@dataclass(frozen=True)
class OrtTensorSpec:
    name: str
    dtype: str  # numpy name; "object" for strings
    shape: list[int]  # -1 where the model leaves the dim to run time
    batch_axis: int | None  # 0 when the leading dim is dynamic


@dataclass(frozen=True)
class OrtMetadata:
    name: str
    inputs: list[OrtTensorSpec]
    outputs: list[OrtTensorSpec]
    max_batch: int | None = None  # no compiled limit


def _spec(arg: ort.NodeArg) -> OrtTensorSpec:
    if arg.type not in ORT_DTYPES:
        raise ValueError(f"tensor {arg.name!r} has type {arg.type}: only tensors of numeric, bool or string "
                         "elements can be served (export classifiers without ZipMap)")
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return OrtTensorSpec(arg.name, ORT_DTYPES[arg.type], shape, 0 if shape and shape[0] == -1 else None)


class OnnxRuntimeModel:
    """An ONNX Runtime session; `run` takes and returns numpy arrays by name."""

    name = "onnxruntime"

    def __init__(self, model: str | Path | bytes, threads: int = 1, name: str | None = None):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        label = name or (Path(model).stem if not isinstance(model, bytes) else "model")
        self.metadata = OrtMetadata(label, [_spec(a) for a in self.session.get_inputs()],
                                    [_spec(a) for a in self.session.get_outputs()])

    def input_names(self) -> list[str]:
        return [t.name for t in self.metadata.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.metadata.outputs]

    def _check(self, spec: OrtTensorSpec, array: np.ndarray) -> None:
        """Say what is wrong in our words, before ONNX Runtime says it in its own."""
        if array.dtype != np.dtype(spec.dtype) and not (spec.dtype == "object" and array.dtype.kind in "OUS"):
            raise InputError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {array.dtype}")
        wanted = "[" + ", ".join("N" if d == -1 else str(d) for d in spec.shape) + "]"
        if array.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)):
            raise InputError(f"input {spec.name!r}: expected shape {wanted}, got {list(array.shape)}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [t.name for t in self.metadata.inputs if t.name not in inputs]
        extra = sorted(set(inputs) - {t.name for t in self.metadata.inputs})
        if missing or extra:
            raise InputError(f"inputs: missing {missing}, unexpected {extra}")
        feeds = {}
        for spec in self.metadata.inputs:
            array = np.asarray(inputs[spec.name])
            self._check(spec, array)
            feeds[spec.name] = array
        results = self.session.run(None, feeds)
        return {spec.name: np.asarray(value) for spec, value in zip(self.metadata.outputs, results, strict=True)}
