"""Run `.onnx` models with ONNX Runtime behind the same interface as `WasmModel`.

The server serves `model.onnx` files with it (a model wasinfer cannot compile yet still gets
the protocol, the metrics and the repository), and `info` describes the tensors as every
backend does (runtime/base.py `TensorSpec`): numpy dtype names, -1 for dims only known at run
time, and `batch_axis` 0 when the leading dim is dynamic.

One session is safe to call from several threads at once (ONNX Runtime's `run` is
thread-safe and releases the GIL), so a server shares one per model; each run uses one
intra-op thread, so concurrency comes from concurrent requests, as with wasm instances.

Where the installed onnxruntime has the CUDA execution provider (the onnxruntime-gpu wheel),
sessions ask for it first, with CPU behind it for the nodes CUDA does not take; the plain
wheel has only CPU. ONNX Runtime drops a provider it cannot start (no driver, missing CUDA
libraries) with a warning and no error, so what a session really runs on is read back from
it (`info.providers`) and logged, rather than assumed from what was asked.
`WASINFER_ORT_PROVIDERS` (comma-separated, e.g. `CPUExecutionProvider`; `cpu` and `cuda` are
short for the two) or the `providers` argument overrides the choice, e.g. to keep a GPU for
something else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wasinfer.runtime.base import InputError, ModelInfo, TensorSpec

log = logging.getLogger("wasinfer.runtime")

PROVIDERS_ENV = "WASINFER_ORT_PROVIDERS"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
_SHORT_NAMES = {"cpu": CPU, "cuda": CUDA}

# ONNX Runtime's type strings → numpy dtype names (BYTES tensors are numpy object arrays).
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "object",
}


def choose_providers(requested: Sequence[str] | str | None = None) -> list[str]:
    """The execution providers to ask for: `requested`, else $WASINFER_ORT_PROVIDERS, else CUDA if present, then CPU.

    An explicit request for a provider this onnxruntime does not have is an error, not a
    silent fall-back: someone who asked for CUDA wants to hear that the wheel is CPU-only.
    """
    available = ort.get_available_providers()
    if requested is None:
        requested = os.environ.get(PROVIDERS_ENV, "").strip() or None
    if requested is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    names = requested.split(",") if isinstance(requested, str) else list(requested)
    chosen = [_SHORT_NAMES.get(n.strip().lower(), n.strip()) for n in names if n.strip()]
    missing = [n for n in chosen if n not in available]
    if not chosen:
        raise ValueError(f"no ONNX Runtime execution provider named in {requested!r}; this onnxruntime has "
                         f"{', '.join(available)}")
    if missing:
        raise ValueError(f"ONNX Runtime execution providers {missing} are not available here; "
                         f"this onnxruntime has {', '.join(available)} (set {PROVIDERS_ENV} or the providers "
                         "argument to a comma-separated subset, or cpu / cuda)")
    return chosen


def _spec(arg: ort.NodeArg) -> TensorSpec:
    if arg.type not in ORT_DTYPES:
        raise ValueError(f"tensor {arg.name!r} has type {arg.type}: only tensors of numeric, bool or string "
                         "elements can be served (export classifiers without ZipMap)")
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or [])]
    return TensorSpec(arg.name, ORT_DTYPES[arg.type], shape, 0 if shape and shape[0] == -1 else None)


class OnnxRuntimeModel:
    """An ONNX Runtime session; `run` takes and returns numpy arrays by name."""

    name = "onnxruntime"

    def __init__(self, model: str | Path | bytes, threads: int = 1, name: str | None = None,
                 providers: Sequence[str] | str | None = None):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        wanted = choose_providers(providers)
        self.session = ort.InferenceSession(source, options, providers=wanted)
        label = name or (Path(model).stem if not isinstance(model, bytes) else "model")
        self.info = ModelInfo(label, [_spec(a) for a in self.session.get_inputs()],
                              [_spec(a) for a in self.session.get_outputs()],
                              providers=tuple(self.session.get_providers()))
        if wanted[0] not in self.info.providers:
            log.warning("model %s: ONNX Runtime could not start %s; it runs on %s", label, wanted[0],
                        ", ".join(self.info.providers))
        else:
            log.info("model %s runs on ONNX Runtime with %s", label, ", ".join(self.info.providers))

    def input_names(self) -> list[str]:
        return [t.name for t in self.info.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.info.outputs]

    def _check(self, spec: TensorSpec, array: np.ndarray) -> None:
        """Say what is wrong in our words, before ONNX Runtime says it in its own."""
        if array.dtype != np.dtype(spec.dtype) and not (spec.dtype == "object" and array.dtype.kind in "OUS"):
            raise InputError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {array.dtype}")
        if array.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)):
            raise InputError(f"input {spec.name!r}: expected shape {spec.shown()}, got {list(array.shape)}")

    def run(self, inputs: dict[str, np.ndarray], run_options: ort.RunOptions | None = None) -> dict[str, np.ndarray]:
        """`run_options` lets a caller stop a run from another thread (`terminate`), e.g. at a deadline."""
        missing = [t.name for t in self.info.inputs if t.name not in inputs]
        extra = sorted(set(inputs) - {t.name for t in self.info.inputs})
        if missing or extra:
            raise InputError(f"inputs: missing {missing}, unexpected {extra}")
        feeds = {}
        for spec in self.info.inputs:
            array = np.asarray(inputs[spec.name])
            self._check(spec, array)
            feeds[spec.name] = _as_text(spec.name, array) if spec.dtype == "object" else array
        results = self.session.run(None, feeds, run_options)
        return {spec.name: np.asarray(value) for spec, value in zip(self.info.outputs, results, strict=True)}


def _as_text(name: str, array: np.ndarray) -> np.ndarray:
    """A string tensor as ONNX Runtime takes it: Python str elements. It turns a bytes element into the text of
    its repr (b"hello" became "b'hello'"), and the protocols hand BYTES tensors over as bytes; ONNX strings are
    UTF-8, so bytes that are not are refused naming the input."""
    if array.dtype.kind == "U":
        return array.astype(object)
    if array.dtype.kind == "S" or any(isinstance(item, bytes) for item in array.flat):
        try:
            return np.array([item.decode("utf-8") if isinstance(item, bytes) else item for item in array.flat],
                            dtype=object).reshape(array.shape)
        except UnicodeDecodeError as exc:
            raise InputError(f"input {name!r}: a string tensor holds UTF-8 text; element bytes are not UTF-8 "
                             f"({exc.reason} at byte {exc.start})") from None
    return array
