"""Run `.tflite` models with LiteRT (formerly TensorFlow Lite) behind the same interface as `WasmModel`.

The server serves `model.tflite` files with it, so a model exported for phones and
microcontrollers gets the protocol, the metrics and the repository without a conversion
step. `info` describes the tensors as every backend does (runtime/base.py): numpy dtype
names, -1 for dims the model leaves to run time (`shape_signature`), and `batch_axis` 0 when
the leading dim is one of them. A model whose leading dim is fixed (often at 1) takes exactly
that many samples: LiteRT could be asked to resize it, but the converter wrote a graph for
that shape (reshapes with constant targets and the like), so such a resize can be wrong
silently rather than fail.

Tensor names are the model's signature names (`x`, `probabilities`) when its one signature
runs the main subgraph, as every converter since TF 2.7 writes it; otherwise the tensors'
own names (`serving_default_x:0`). Clients should not have to know the converter's mangling.

A LiteRT interpreter is not thread-safe and holds its tensors' memory for one set of input
shapes. So, unlike an ONNX Runtime session, one `LiteRtModel` is one instance for one request
at a time (the server's instance pool creates one per concurrent request with `spawn`, which
shares the model bytes, so only the arenas multiply), each interpreter uses one thread (the
pool is the parallelism), and an instance keeps a few interpreters, each allocated for one
set of input shapes (in practice: one batch size), so a steady mix of batch sizes does not
reallocate on every request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from wasinfer.runtime.base import InputError, ModelInfo, TensorSpec

# Element types that reach a client unchanged. Strings (and resource/variant handles) are refused
# at load rather than served wrong: LiteRT's string tensors are a packed buffer, not an array.
SERVABLE_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                   "float16", "float32", "float64"}
# How many interpreters (sets of input shapes) one instance keeps allocated at most.
DEFAULT_SHAPE_CACHE = 4

Shapes = tuple[tuple[int, ...], ...]


def _spec(name: str, details: dict[str, Any]) -> TensorSpec:
    dtype = np.dtype(details["dtype"]).name
    if dtype not in SERVABLE_DTYPES:
        raise ValueError(f"tensor {name!r} has type {dtype}: only tensors of numeric or bool elements can be "
                         "served from a .tflite model")
    signature = details.get("shape_signature")
    dims = signature if signature is not None and len(signature) else details["shape"]
    shape = [int(d) if d >= 0 else -1 for d in dims]
    return TensorSpec(name, dtype, shape, 0 if shape and shape[0] == -1 else None)


def _names(interpreter: Interpreter) -> tuple[dict[int, str], dict[int, str]]:
    """Tensor index → the name clients use, for inputs and outputs (see the module docstring)."""
    inputs = {int(d["index"]): str(d["name"]) for d in interpreter.get_input_details()}
    outputs = {int(d["index"]): str(d["name"]) for d in interpreter.get_output_details()}
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        sig_in = {int(d["index"]): n for n, d in runner.get_input_details().items()}
        sig_out = {int(d["index"]): n for n, d in runner.get_output_details().items()}
        # Only if the signature is the main subgraph's inputs and outputs: that is what invoke() runs.
        if sig_in.keys() == inputs.keys() and sig_out.keys() == outputs.keys():
            return sig_in, sig_out
    return inputs, outputs


class LiteRtModel:
    """A LiteRT model for one caller at a time; `run` takes and returns numpy arrays by name."""

    name = "litert"

    def __init__(self, model: str | Path | bytes, name: str | None = None, threads: int = 1,
                 shape_cache: int = DEFAULT_SHAPE_CACHE):
        self._content = model if isinstance(model, bytes) else Path(model).read_bytes()
        self._threads, self._shape_cache = threads, max(1, shape_cache)
        first = self._interpreter()  # fails the load for a file that is not a model or has unknown ops
        in_names, out_names = _names(first)
        in_details = {int(d["index"]): d for d in first.get_input_details()}
        out_details = {int(d["index"]): d for d in first.get_output_details()}
        label = name or (Path(model).stem if not isinstance(model, bytes) else "model")
        self.info = ModelInfo(label, [_spec(in_names[i], in_details[i]) for i in in_names],
                              [_spec(out_names[i], out_details[i]) for i in out_names])
        # a tensor's index in the interpreter's main subgraph, by the name clients use
        self._index = {**{n: i for i, n in in_names.items()}, **{n: i for i, n in out_names.items()}}
        self._prepared: OrderedDict[Shapes, Interpreter] = OrderedDict()
        self._prepared[self._shapes_of(first)] = first
        self._lock = threading.Lock()  # a shared instance serialises rather than corrupting an interpreter

    def spawn(self) -> LiteRtModel:
        """Another instance of the same model for another thread: shares the bytes, not the interpreters."""
        other = object.__new__(LiteRtModel)
        other._content, other._threads, other._shape_cache = self._content, self._threads, self._shape_cache
        other.info, other._index = self.info, self._index
        first = other._interpreter()
        other._prepared = OrderedDict([(other._shapes_of(first), first)])
        other._lock = threading.Lock()
        return other

    def op_names(self) -> set[str]:
        """The builtin operators the model uses (e.g. to refuse loops a caller cannot interrupt)."""
        with self._lock:
            interpreter = next(iter(self._prepared.values()))
            return {str(op["op_name"]) for op in interpreter._get_ops_details()}

    def input_names(self) -> list[str]:
        return [t.name for t in self.info.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.info.outputs]

    def _interpreter(self) -> Interpreter:
        interpreter = Interpreter(model_content=self._content, num_threads=self._threads)
        interpreter.allocate_tensors()
        return interpreter

    def _shapes_of(self, interpreter: Interpreter) -> Shapes:
        current = {int(d["index"]): tuple(int(n) for n in d["shape"]) for d in interpreter.get_input_details()}
        return tuple(current[self._index[spec.name]] for spec in self.info.inputs)

    def _check(self, spec: TensorSpec, array: np.ndarray) -> None:
        """Say what is wrong in our words, before LiteRT says it in its own (or, for shapes, not at all)."""
        if array.dtype != np.dtype(spec.dtype):
            raise InputError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {array.dtype}")
        if array.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)):
            fixed = " (this model's batch size is fixed)" if spec.batch_axis is None and array.ndim == len(
                spec.shape) and array.shape[1:] == tuple(spec.shape[1:]) else ""
            raise InputError(f"input {spec.name!r}: expected shape {spec.shown()}, got {list(array.shape)}{fixed}")

    def _for_shapes(self, shapes: Shapes) -> Interpreter:
        """An interpreter allocated for these shapes: a kept one, a new one, or the least recently used resized."""
        interpreter = self._prepared.pop(shapes, None)
        if interpreter is None:
            if len(self._prepared) >= self._shape_cache:
                _, interpreter = self._prepared.popitem(last=False)
            else:
                interpreter = self._interpreter()
            try:
                for spec, shape in zip(self.info.inputs, shapes, strict=True):
                    interpreter.resize_tensor_input(self._index[spec.name], list(shape), strict=True)
                interpreter.allocate_tensors()
            except (RuntimeError, ValueError) as exc:  # the interpreter is dropped: it may be half-resized
                raise InputError(f"the model cannot run inputs of shapes {[list(s) for s in shapes]}: {exc}") from None
        self._prepared[shapes] = interpreter
        return interpreter

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [t.name for t in self.info.inputs if t.name not in inputs]
        extra = sorted(set(inputs) - {t.name for t in self.info.inputs})
        if missing or extra:
            raise InputError(f"inputs: missing {missing}, unexpected {extra}")
        arrays = []
        for spec in self.info.inputs:
            array = np.asarray(inputs[spec.name])
            self._check(spec, array)
            arrays.append(np.ascontiguousarray(array))
        batches = {spec.name: a.shape[0] for spec, a in zip(self.info.inputs, arrays, strict=True)
                   if spec.batch_axis == 0}
        if len(set(batches.values())) > 1:
            raise InputError(f"inputs have different batch sizes: {batches}")
        with self._lock:
            interpreter = self._for_shapes(tuple(a.shape for a in arrays))
            for spec, array in zip(self.info.inputs, arrays, strict=True):
                interpreter.set_tensor(self._index[spec.name], array)
            interpreter.invoke()
            return {spec.name: interpreter.get_tensor(self._index[spec.name]) for spec in self.info.outputs}
