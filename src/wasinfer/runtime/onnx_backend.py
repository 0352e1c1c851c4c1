"""The `onnx.backend.base.Backend` API over the compiler, so ONNX's own test suite can judge it.

A model whose inputs are fully static is compiled once, in `prepare`, so an unsupported op
fails there. A model with dynamic input dims cannot be compiled before its inputs are seen,
so `BackendRep.run` pins every input dim to the shapes it is given (in a copy of the model)
and compiles then, keeping one module per input-shape signature. Pinning in the model rather
than passing `input_shapes` keeps a dynamic leading dim a real dim: the frontend would make it
the per-sample batch, which is wrong for ops that mix samples (reductions over axis 0, ...).

Parameter inputs: ONNX's node cases often feed an op's parameters (Slice starts, Pad pads, Resize scales,
Reshape's shape...) as graph inputs, where exported models hold constants or shape subgraphs that fold. Some
compile as they are, one module for every value (Reduce axes, Slice, Split sizes, Trilu's k, TopK's k:
passes/dynamic.py; a DFT's axis, an STFT's frame_step: passes/spectral.py). Where a model is declined with such
inputs, the backend declares their values' range, one fixed range whatever the case's values (`VALUE_RANGE`, as
`wasinfer convert --input-values` does: a ConstantOfShape's shape, a Pad's pads, a Tile's repeats, a CenterCropPad's
shape, a Loop's trip count; and the values kernels read: an STFT's frame_length and frame_step, a Resize's
scales, sizes and roi, a OneHot's depth, a window's or an AffineGrid's size, a Col2Im's shapes, a Range's bounds, a
MelWeightMatrix's parameters: `value_range`; none for a bool, a Loop's first condition, which runs as it is:
`declared_ranges`), and compiles it once; a run with a value outside it, or a model declined that way too, binds the
inputs to the values `run` is given, as initializers, and keeps one module per value — what `wasinfer convert` does
for any constant.
docs/conformance.md counts those cases. Every compile declares at most `MAX_ITERATIONS` iterations for a Loop whose
trip count has no bound (ONNX's Range as its function body), as `wasinfer convert --max-iterations` does.

Sequence and optional inputs (a list of arrays, an array or None) are passed through: a model with one is compiled
per signature, as dynamic dims are, each sequence declared with the count it is given (`sequences`, as `wasinfer
convert --sequence x=N..N` does) and each element's shape pinned (`input_shapes` of `x.0`, `x.1`...); the module
returns sequences as lists and absent optionals as None (runtime/lists.py).

Compile errors (`UnsupportedModel`, `FrontendError`) propagate unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from wasinfer.artifact import convert_onnx
from wasinfer.frontends.onnx import FrontendError, tensor_dims
from wasinfer.ir import UnsupportedModel
from wasinfer.runtime.base import InputError
from wasinfer.runtime.wasm import WasmModel

Signature = tuple[tuple[str, tuple[int, ...], str], ...]
# a Loop whose trip count has no bound the compiler can find (ONNX's Range as its function body) is unrolled to this
# many iterations, as `wasinfer convert --max-iterations 64` does; a run with more is refused naming the Loop
MAX_ITERATIONS = 64
VALUE_RANGE = (0, 16)  # each element of a parameter input compiled as a declared value (a rank-4 Tile: 30 MiB;
# a Resize's float scales too: 16x on every axis)

# op → positions of inputs that are parameters: they decide output shapes, index tables or loop counts.
PARAMETER_INPUTS: dict[str, tuple[int, ...]] = {
    "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Resize": (1, 2, 3), "Upsample": (1,), "Expand": (1,), "Tile": (1,),
    "Reshape": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "TopK": (1,), "CumSum": (1,), "Split": (1,),
    "Squeeze": (1,), "Unsqueeze": (1,), "OneHot": (1,), "Trilu": (1,), "CenterCropPad": (1,),
    "LSTM": (4,), "GRU": (4,), "RNN": (4,),  # sequence_lens: each run's must be seq_length (emitters/recurrent.py)
    "Loop": (0, 1),  # trip count and first condition: passes/loops.py unrolls to the count
    "DFT": (1, 2), "STFT": (1, 3),  # dft_length and axis; frame_step and frame_length
    **{op: (0,) for op in ("HannWindow", "HammingWindow", "BlackmanWindow")},  # the window's size
    "MelWeightMatrix": (0, 1, 2, 3, 4),
    "AffineGrid": (1,), "Col2Im": (1, 2),  # the grid's size; the image and block shapes
    # which tensors of a sequence, and how it is split: compiled into the lists (passes/sequences.py)
    "SequenceAt": (1,), "SequenceInsert": (2,), "SequenceErase": (1,), "SplitToSequence": (1,),
    **{op: (1,) for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                           "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")},
}


# where VALUE_RANGE does not fit what reads the input: a Range's bounds and a Pad's axes may be negative (an
# integer delta of 0 traps the run), and a float delta is declared away from 0 so that the count has a bound
RANGE_BOUNDS = (-16, 16)
FLOAT_DELTA = (1 / 16, 16.0)
# MelWeightMatrix: bins, DFT length, sample rate, lower and upper edge (hertz): what audio front ends use
MEL_RANGES: tuple[tuple[int, int] | tuple[float, float], ...] = ((1, 128), (1, 1024), (1, 96000), (0.0, 48000.0),
                                                                (0.0, 48000.0))


def value_range(model: onnx.ModelProto, name: str) -> tuple[int, int] | tuple[float, float]:
    """The fixed range the backend declares for parameter input `name`, by what reads it (never by a case's
    values)."""
    floats = {v.name for v in model.graph.input
              if v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                                  onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)}
    for node in model.graph.node:
        if node.op_type == "Range" and node.domain in ("", "ai.onnx") and name in node.input[:3]:
            return FLOAT_DELTA if name == node.input[2] and name in floats else RANGE_BOUNDS
        if node.op_type == "Pad" and node.domain in ("", "ai.onnx") and name in node.input[3:4]:
            return RANGE_BOUNDS  # axes, counted from the end when negative
        if node.op_type == "MelWeightMatrix" and node.domain in ("", "ai.onnx") and name in node.input[:5]:
            return MEL_RANGES[list(node.input).index(name)]
    return VALUE_RANGE


def declared_ranges(model: onnx.ModelProto, params: set[str]) -> dict[str, tuple[int, int] | tuple[float, float]]:
    """The ranges the backend declares for parameter inputs, as `wasinfer convert --input-values` would: none for a
    bool (a Loop's first condition is read at run time as it is; a bool has no range to declare)."""
    bools = {v.name for v in model.graph.input if v.type.tensor_type.elem_type == onnx.TensorProto.BOOL}
    return {name: value_range(model, name) for name in sorted(params - bools)}


def parameter_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs read only at parameter positions."""
    fed = {v.name for v in _graph_inputs(model)}
    params: set[str] = set()
    other: set[str] = set()
    for node in model.graph.node:
        positions = PARAMETER_INPUTS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ()
        for index, name in enumerate(node.input):
            if name in fed:
                (params if index in positions else other).add(name)
    return params - other


def _bind(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` with the given inputs turned into initializers."""
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    kept = [v for v in bound.graph.input if v.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    bound.graph.initializer.extend(numpy_helper.from_array(np.asarray(a), n) for n, a in values.items())
    return bound


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: old models also list their initializers as inputs."""
    initializers = {init.name for init in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _is_dynamic(value: onnx.ValueInfoProto) -> bool:
    """A tensor input whose shape is known only at run time."""
    tensor = value.type.tensor_type
    return not tensor.HasField("shape") or any(not d.HasField("dim_value") for d in tensor.shape.dim)


def _pin_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    for value in pinned.graph.input:
        if value.name not in shapes:
            continue
        shape = value.type.tensor_type.shape
        shape.Clear()
        for size in shapes[value.name]:
            shape.dim.add().dim_value = size
    return pinned


def _list_options(types: dict[str, onnx.TypeProto], feeds: dict[str, Any]
                  ) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, ...]]]:
    """The counts (`sequences`) and element shapes (`input_shapes`) to compile the sequence and optional inputs
    `types` at, for the values `feeds` gives them: each sequence exactly as long as given, each element (and an
    absent optional's, whose slot nothing reads) at its given shape."""
    counts: dict[str, tuple[int, int]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name, type_proto in types.items():
        value = feeds.get(name)
        inner = type_proto.optional_type.elem_type if type_proto.HasField("optional_type") else type_proto
        if inner.HasField("sequence_type"):
            items = list(value) if value is not None else []
            counts[name] = (len(items), len(items))
            shapes |= {f"{name}.{i}": tuple(np.asarray(a).shape) for i, a in enumerate(items)}
        elif value is not None:
            shapes[f"{name}.value"] = tuple(np.asarray(value).shape)
        else:  # absent: its declared shape, unknown dims 1
            dims = tensor_dims(inner) or []
            shapes[f"{name}.value"] = tuple(d if isinstance(d, int) else 1 for d in dims)
    return counts, shapes


class WasinferRep(BackendRep):
    """A prepared model: one compiled module per input-shape signature (one when static)."""

    def __init__(self, model: onnx.ModelProto):
        inputs = _graph_inputs(model)
        self.model = model
        self.input_names = [v.name for v in inputs]
        self.output_names = [v.name for v in model.graph.output]
        # sequences and optionals: compiled for the counts and shapes each run gives (a map: the frontend says no)
        self.lists = {v.name: v.type for v in inputs if v.type.WhichOneof("value") in ("sequence_type",
                                                                                      "optional_type")}
        tensors_only = all(v.type.HasField("tensor_type") for v in inputs)
        self.static = not self.lists and (not tensors_only or not any(_is_dynamic(v) for v in inputs))
        self.modules: dict[Signature | None, WasmModel] = {}
        # Of the latest compile, for reports: wasinfer convert, wasmtime compile, module size.
        self.stats: dict[str, float] = {}
        self.bound: set[str] = set()  # parameter inputs bound to their values at run time
        self.valued: set[str] = set()  # parameter inputs compiled with their values in VALUE_RANGE
        self.by_value: dict[Signature, WasmModel] = {}  # runs with values outside it: bound, one module per value
        if self.static:
            try:
                self.modules[None] = self._compile(model)
            except (UnsupportedModel, FrontendError):
                params = parameter_inputs(model) if tensors_only else set()
                if not params:
                    raise
                try:
                    self.modules[None] = self._compile(model, declared_ranges(model, params))
                    self.valued = params
                except (UnsupportedModel, FrontendError, ValueError):
                    self.bound = params
                    self.static = False

    def _compile(self, model: onnx.ModelProto,
                 values: dict[str, tuple[int, int] | tuple[float, float]] | None = None,
                 feeds: dict[str, Any] | None = None) -> WasmModel:
        started = time.perf_counter()
        sequences, shapes = _list_options(self.lists, feeds or {})
        wasm = convert_onnx(model, max_batch=1, input_values=values or None, max_iterations=MAX_ITERATIONS,
                            sequences=sequences or None,
                            input_shapes=shapes or None).wasm
        converted = time.perf_counter()
        module = WasmModel(wasm)
        self.stats = {"convert_s": converted - started, "jit_s": time.perf_counter() - converted,
                      "wasm_bytes": len(wasm)}
        return module

    def _feeds(self, inputs: Any) -> dict[str, Any]:
        def value(name: str, given: Any) -> Any:
            if name in self.lists:  # a list of arrays, an array or None
                return given if given is None or isinstance(given, (list, tuple)) else np.asarray(given)
            return np.asarray(given)

        if isinstance(inputs, dict):
            return {name: value(name, given) for name, given in inputs.items()}
        values = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        if len(values) != len(self.input_names):
            raise InputError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(values)}")
        return {name: value(name, given) for name, given in zip(self.input_names, values, strict=True)}

    def _signature(self, feeds: dict[str, Any]) -> Signature:
        """Input shapes and dtypes (a sequence's count and its elements', an optional's presence), and the values
        of the bound parameter inputs."""
        def shape(value: Any) -> tuple[int, ...]:
            if value is None:
                return (-1,)
            if isinstance(value, (list, tuple)):
                return (len(value), *(d for a in value for d in (-2, *np.asarray(a).shape)))
            return tuple(int(d) for d in value.shape)

        def dtype(value: Any) -> str:
            if isinstance(value, (list, tuple)):
                return "list:" + ",".join(np.asarray(a).dtype.str for a in value)
            return "none" if value is None else str(value.dtype.str)

        shapes = tuple((n, shape(a), dtype(a)) for n, a in sorted(feeds.items()))
        return shapes + tuple((n, tuple(feeds[n].reshape(-1).tolist()), "value") for n in sorted(self.bound))

    def _outside_range(self, feeds: dict[str, np.ndarray]) -> bool:
        ranges = {n: value_range(self.model, n) for n in self.valued}
        return any(feeds[n].size and (feeds[n].min() < ranges[n][0] or feeds[n].max() > ranges[n][1])
                   for n in self.valued)

    def module_for(self, feeds: dict[str, np.ndarray]) -> WasmModel:
        if self.static and self._outside_range(feeds):  # bound to this run's values instead
            signature = tuple((n, tuple(feeds[n].reshape(-1).tolist()), "value") for n in sorted(self.valued))
            if signature not in self.by_value:
                self.by_value[signature] = self._compile(_bind(self.model, {n: feeds[n] for n in self.valued}))
            return self.by_value[signature]
        if self.static:
            return self.modules[None]
        signature = self._signature(feeds)
        if signature not in self.modules:
            shapes = {name: tuple(int(d) for d in array.shape) for name, array in feeds.items()
                      if name not in self.lists}
            model = _pin_shapes(self.model, shapes)
            try:
                module = self._compile(model, feeds=feeds)
            except (UnsupportedModel, FrontendError):
                self.bound = self.bound or parameter_inputs(model)
                if not self.bound:
                    raise
                module = self._compile(_bind(model, {n: feeds[n] for n in self.bound}), feeds=feeds)
                signature = self._signature(feeds)  # now with the bound values in it
            self.modules[signature] = module
        return self.modules[signature]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        feeds = self._feeds(inputs)
        module = self.module_for(feeds)
        taken = {spec.name for spec in module.info.inputs}  # a bound input is no longer the module's
        taken |= {slot.name for slot in module.metadata.list_inputs}
        outputs = module.run({n: v for n, v in feeds.items() if n in taken})
        return namedtupledict("Outputs", self.output_names)(*[outputs[name] for name in self.output_names])


class WasinferBackend(Backend):
    """CPU only: the module runs in wasmtime on the host."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> WasinferRep:
        if not cls.supports_device(device):
            raise ValueError(f"wasinfer runs on CPU only, not {device}")
        return WasinferRep(model)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return bool(Device(device).type == DeviceType.CPU)
        except AttributeError:  # an unknown device name
            return False

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[Any, ...]:
        """Run one node by compiling the one-node model around it."""
        values = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
        names = [name for name in node.input if name]
        if len(names) != len(values):
            raise InputError(f"node {node.op_type} has {len(names)} inputs, got {len(values)} values")
        arrays = [np.asarray(v) for v in values]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, arrays, strict=True)]
        outputs = [name for name in node.output if name]
        if outputs_info is not None:
            graph_outputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape)
                             for n, (dt, shape) in zip(outputs, outputs_info, strict=True)]
        else:
            graph_outputs = [helper.make_empty_tensor_value_info(n) for n in outputs]
        opsets = [helper.make_opsetid("", int(kwargs.get("opset_version", onnx.defs.onnx_opset_version())))]
        if node.domain not in ("", "ai.onnx"):
            ml = node.domain == "ai.onnx.ml"
            opsets.append(helper.make_opsetid(node.domain, onnx.defs.onnx_ml_opset_version() if ml else 1))
        model = helper.make_model(helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs),
                                  opset_imports=opsets)
        return cls.prepare(model, device).run(arrays)


prepare = WasinferBackend.prepare
run_model = WasinferBackend.run_model
run_node = WasinferBackend.run_node
supports_device = WasinferBackend.supports_device
