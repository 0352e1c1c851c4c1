"""ONNX → IR: fix every dynamic dimension, infer shapes, keep constants as numpy arrays.

The leading dimension of an input is the run-time batch when the model leaves it dynamic;
it is compiled as 1 and the module runs the graph once per sample (unless a node mixes samples
along it: then artifact/convert.py loads it again with `batch=False`), or `--input-shape` gives
it a size above 1 (then it is that fixed size). An input whose leading
dim is fixed carries the batch where a dim has the batch's name (a recurrent state
`[2, batch, 128]` on axis 1). Every other dynamic dimension must be given with
`--input-shape NAME=d0,d1,...`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference, version_converter

from wasinfer.frontends.lists import ListInputError, expand_list_inputs
from wasinfer.frontends.probe import probe_missing_shapes
from wasinfer.ir import Graph, ListValue, Node, TensorInfo
from wasinfer.ir.symbolic import Dim, Extent, is_static, mul, symbol

# a symbolic dim's range as --input-shape gives it: (MIN, MAX), or (MIN, MAX, STEP) for the multiples of STEP
DimRange = tuple[int, ...]

MIN_OPSET = 9


class FrontendError(ValueError):
    """The model cannot be read into the IR (bad file, unknown dims, old opset)."""


@dataclass
class Loaded:
    graph: Graph
    # inputs that carry the run-time batch, with its axis: the leading dim where the model leaves it
    # dynamic, or the axis that repeats that dim's name (a recurrent state [layers, batch, hidden])
    batch_axes: dict[str, int]
    source_sha256: str


def attr_value(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    if isinstance(value, list) and value and isinstance(value[0], onnx.TensorProto):
        return [numpy_helper.to_array(v) for v in value]
    return value


def tensor_dims(type_proto: onnx.TypeProto) -> list[int | str | None] | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _upgrade(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """An opset 1-8 model rewritten to opset MIN_OPSET by ONNX's own version converter (legacy
    `broadcast`/`axis` attributes, Upsample's scales attribute, BatchNormalization's `spatial`...),
    so the kernels see one set of semantics."""
    if opset < 1:
        raise FrontendError(f"ONNX opset {opset} is not a valid opset")
    scans = [node for node in model.graph.node if node.op_type == "Scan" and node.domain in ("", "ai.onnx")]
    for node in scans:  # set aside: the converter's Scan 8 → 9 rewrite changes the graph's inputs
        node.domain = _SCAN8
    if scans:
        model.opset_import.append(helper.make_opsetid(_SCAN8, 1))
    try:
        model = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError / its own C++ errors
        raise FrontendError(f"ONNX opset {opset} is older than {MIN_OPSET} and ONNX's version converter "
                            f"cannot upgrade this model: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    if scans:
        _expand_scan8(model)
        kept = [o for o in model.opset_import if o.domain != _SCAN8]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model


_SCAN8 = "wasinfer.scan8"  # an opset-8 Scan while the rest of the model is upgraded


def _expand_scan8(model: onnx.ModelProto) -> None:
    """Scan-8 runs its body over axis 1 of each sample of a batch (axis 0): per sample, a Gather of its states
    and sequences, an opset-9 Scan (whose directions are Scan-8's), and the results stacked back along axis 0.
    Its optional sequence_lens (a length per sample, decided by the data) is refused by name."""
    shapes: dict[str, list[int | str | None] | None] = {v.name: tensor_dims(v.type)
                                                       for v in [*model.graph.input, *model.graph.value_info]}
    shapes |= {i.name: [int(d) for d in i.dims] for i in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.domain != _SCAN8:
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        lens, *rest = node.input
        if lens:
            raise FrontendError(f"node {node.name!r}: Scan at opset 8 with sequence_lens (a length per sample) is "
                                "not supported; export the model at opset 9 or later")
        batch = (shapes.get(rest[0]) or [None])[0] if rest else None
        if not isinstance(batch, int):
            raise FrontendError(f"node {node.name!r}: Scan at opset 8 needs its batch (axis 0 of {rest[0]!r}) known "
                                "while compiling; give it with --input-shape")
        scans = int(attrs["num_scan_inputs"])
        directions = list(attrs.get("directions", [0] * scans))
        index = {b: f"{node.name}/sample{b}/index" for b in range(batch)}
        nodes += [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(b, np.int64)))
                  for b, name in index.items()]
        per_sample: list[list[str]] = []
        for b in range(batch):
            inputs = [f"{name}/sample{b}" for name in rest]
            nodes += [helper.make_node("Gather", [name, index[b]], [picked], axis=0)
                      for name, picked in zip(rest, inputs, strict=True)]
            outputs = [f"{name}/sample{b}" if name else "" for name in node.output]
            nodes.append(helper.make_node("Scan", inputs, outputs, name=f"{node.name}/sample{b}", body=attrs["body"],
                                          num_scan_inputs=scans, scan_input_directions=directions))
            per_sample.append(outputs)
        for k, name in enumerate(node.output):
            if name:
                parts = [f"{outputs[k]}/stacked" for outputs in per_sample]
                nodes += [helper.make_node("Unsqueeze", [outputs[k]], [part], axes=[0])
                          for outputs, part in zip(per_sample, parts, strict=True)]
                nodes.append(helper.make_node("Concat", parts, [name], axis=0))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


@dataclass
class ShapeOverrides:
    """What --input-shape said: each input's dims (the largest of a range), the largest batch a leading
    `1..MAX` allows, and the ranges of the other dims given as `MIN..MAX` (symbolic dims)."""

    shapes: dict[str, tuple[int, ...]]
    max_batch: int | None = None
    ranges: dict[str, dict[int, DimRange]] = field(default_factory=dict)

    def batch_limit(self, max_batch: int | None) -> int:
        """The batch limit --max-batch and a leading 1..MAX give (they must agree); 1 without either."""
        if max_batch is not None and self.max_batch is not None and max_batch != self.max_batch:
            raise FrontendError(f"--max-batch {max_batch} and the batch range 1..{self.max_batch} of --input-shape "
                                "disagree; give one of them")
        return self.max_batch or max_batch or 1


def parse_shape_overrides(specs: list[str]) -> ShapeOverrides:
    """Parse `NAME=1,3,48,32..1280` strings (as given to --input-shape). A dim `MIN..MAX` is a range: on
    the leading dim `1..MAX` is the run-time batch, up to MAX (what --max-batch says); anywhere else (or
    a leading range that does not start at 1) it is a symbolic dim, which each run gives (ABI version 3); so is a
    leading `1..MAX` when another dim has a range (the batch is then one more symbolic dim).
    `MIN..MAX:STEP` takes only the multiples of STEP (a detector's input, a multiple of 32: `320..960:32`)."""
    shapes: dict[str, tuple[int, ...]] = {}
    ranges: dict[str, dict[int, DimRange]] = {}
    batches: set[int] = set()
    for spec in specs:
        name, sep, text = spec.rpartition("=")
        if not sep or not name:
            raise FrontendError(f"--input-shape {spec!r}: expected NAME=d0,d1,...")
        dims: list[int] = []
        for axis, dim in enumerate(d.strip() for d in text.split(",") if d.strip()):
            low, dots, rest = dim.partition("..")
            high, colon, step = rest.partition(":")
            try:
                if not dots:
                    dims.append(int(dim))
                    continue
                low_value, high_value, step_value = int(low), int(high), int(step) if colon else 1
            except ValueError:
                raise FrontendError(f"--input-shape {spec!r}: dimension {dim!r} is not an integer or a range "
                                    "MIN..MAX (or MIN..MAX:STEP)") from None
            if not 1 <= low_value <= high_value:
                raise FrontendError(f"--input-shape {spec!r}: the range {dim} must be MIN..MAX with 1 <= MIN <= MAX")
            if step_value < 1 or low_value % step_value or high_value % step_value:
                raise FrontendError(f"--input-shape {spec!r}: the range {dim} must have MIN and MAX multiples of "
                                    "its STEP (>= 1)")
            if step_value > 1:
                ranges.setdefault(name, {})[axis] = (low_value, high_value, step_value)
                dims.append(high_value)
                continue
            if low_value == high_value:  # one size: static, and compiled as specialised as any other dim
                dims.append(low_value)
            elif axis == 0 and low_value == 1:
                batches.add(high_value)
                dims.append(1)
            else:
                ranges.setdefault(name, {})[axis] = (low_value, high_value)
                dims.append(high_value)
        shapes[name] = tuple(dims)
    if len(batches) > 1:
        raise FrontendError(f"--input-shape: the inputs' batch ranges end at different sizes {sorted(batches)}")
    if batches and ranges:  # with symbolic dims, a leading 1..MAX is one of them: the graph runs on the whole batch
        for name, given in shapes.items():
            spec = next(s for s in specs if s.rpartition("=")[0] == name)
            leading = spec.rpartition("=")[2].split(",")[0].strip()
            if leading.startswith("1.."):
                ranges.setdefault(name, {})[0] = (1, int(leading[3:]))
                shapes[name] = (int(leading[3:]), *given[1:])
        batches.clear()
    return ShapeOverrides(shapes, batches.pop() if batches else None, ranges)


def load_onnx(
    source: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch: bool = True,
    input_ranges: dict[str, dict[int, DimRange]] | None = None,
    sequences: dict[str, tuple[int, int]] | None = None,
) -> Loaded:
    """With `batch`, a dynamic leading dim is the run-time batch (compiled as 1, run per
    sample); without, it is an ordinary dim, given in `input_shapes`. An axis in `input_ranges`
    is a symbol (ir/symbolic.py), compiled at the range's largest (which `input_shapes` gives): named
    as the model names that dim, so that inputs sharing a dim name share the symbol, else `input.axis`.
    Sequence and optional inputs become the tensors that carry them (frontends/lists.py), a sequence's count
    declared in `sequences` ((MIN, MAX) tensors, as --sequence gives it)."""
    if isinstance(source, onnx.ModelProto):
        raw = source.SerializeToString()
        model = onnx.load_from_string(raw)  # a copy: input dims are rewritten below
    else:
        try:
            raw = Path(source).read_bytes()
            model = onnx.load_from_string(raw)
        except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:  # type: ignore[attr-defined]
            raise FrontendError(f"cannot read {source}: {exc}") from exc
        except Exception as exc:  # protobuf decode errors have no stable public type
            raise FrontendError(f"{source} is not an ONNX model: {exc}") from exc
    overrides = dict(input_shapes or {})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:  # e.g. a model of ai.onnx.ml ops only
        opset = max(MIN_OPSET, onnx.defs.onnx_opset_version())
    if opset < MIN_OPSET:
        model, opset = _upgrade(model, opset), MIN_OPSET

    try:
        list_inputs: list[ListValue] = expand_list_inputs(model, dict(sequences or {}), overrides)
    except ListInputError as exc:
        raise FrontendError(str(exc)) from None
    if input_ranges and list_inputs:  # a sequence's ranges are each element's
        input_ranges = dict(input_ranges)
        for listed in list_inputs:
            for element in listed.elements:
                if listed.name in input_ranges and element not in input_ranges:
                    input_ranges[element] = input_ranges[listed.name]
            input_ranges.pop(listed.name, None)
    graph_proto = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph_proto.initializer}
    batch_axes: dict[str, int] = {}
    symbols: dict[str, tuple[int, int]] = {}
    steps: dict[str, int] = {}
    extents: dict[str, Extent] = {}
    fed = [v for v in graph_proto.input if v.name not in initializers]
    # checked before any input's own shape, so a misspelt name is what the error names (not the real input's
    # dynamic dims that the misspelt override meant to fix)
    if unknown_names := sorted(set(overrides) - {v.name for v in fed}):
        raise FrontendError(f"--input-shape names unknown inputs: {unknown_names}; the model's inputs are "
                            f"{[v.name for v in fed]}")
    # the batch's name: the name of a dynamic leading dim (e.g. "batch"), where the model gives one
    batch_names = {d[0] for d in (tensor_dims(v.type) for v in fed) if d and isinstance(d[0], str) and d[0]}
    for value in fed:
        dims = tensor_dims(value.type)
        kind = value.type.WhichOneof("value")
        if kind not in (None, "tensor_type"):  # frontends/lists.py carried sequences and optionals by tensors
            raise FrontendError(f"input {value.name!r} is a {kind.removesuffix('_type')}: a module's inputs are "
                                "tensors, sequences and optionals")
        if dims is None:
            raise FrontendError(f"input {value.name!r} has no shape; give --input-shape {value.name}=...")
        if value.name in overrides:
            given = overrides.pop(value.name)
            if len(given) != len(dims):
                raise FrontendError(
                    f"--input-shape {value.name}: model has rank {len(dims)}, got {len(given)} dims")
            for axis, (have, want) in enumerate(zip(dims, given, strict=True)):
                if isinstance(have, int) and have != want:
                    raise FrontendError(
                        f"--input-shape {value.name}: axis {axis} is fixed at {have} in the model, got {want}")
            fixed: list[int | str | None] = list(given)
        else:
            fixed = list(dims)
        # a dynamic leading dim is the batch unless --input-shape fixes it at more than 1 (a sequence of
        # windows, say): given as 1 (or as the range 1..MAX) it stays the batch
        if batch and dims and not isinstance(dims[0], int) and fixed[0] in (1, dims[0]):
            batch_axes[value.name] = 0
        elif batch and value.name not in (input_shapes or {}):
            named = [axis for axis, d in enumerate(dims) if isinstance(d, str) and d in batch_names]
            if len(named) == 1:
                batch_axes[value.name] = named[0]
        if value.name in batch_axes:
            fixed[batch_axes[value.name]] = 1
        extent: list[Dim] = [d if isinstance(d, int) else 0 for d in fixed]
        for axis, given_range in (input_ranges or {}).get(value.name, {}).items():
            low, high, step = (*given_range, 1)[:3]
            if axis >= len(dims) or axis == batch_axes.get(value.name):
                continue  # the rank was checked above; the batch axis is not a symbol
            have = dims[axis]
            if isinstance(have, int):
                raise FrontendError(f"--input-shape {value.name}: axis {axis} is fixed at {have} in the model, "
                                    f"so it cannot take the range {low}..{high}")
            name = have if isinstance(have, str) and have else f"{value.name}.{axis}"
            # a range of multiples of STEP is STEP times a symbol: convolutions that halve it and resizes that
            # double it back then meet the same dim (ir/symbolic.py's affine form)
            if symbols.setdefault(name, (low // step, high // step)) != (low // step, high // step) or \
                    steps.setdefault(name, step) != step:
                raise FrontendError(f"--input-shape {value.name}: axis {axis} is the model's dim {name!r}, which "
                                    "another input gives a different range")
            extent[axis] = mul(symbol(name), step)
        if not is_static(extent):
            extents[value.name] = tuple(extent)
        unknown = [axis for axis, d in enumerate(fixed) if not isinstance(d, int)]
        if unknown:
            raise FrontendError(
                f"input {value.name!r} has dynamic dims at axes {unknown} ({dims}); "
                f"give --input-shape {value.name}=d0,d1,...")
        shape_proto = value.type.tensor_type.shape
        for dim, size in zip(shape_proto.dim, fixed, strict=True):
            dim.Clear()
            dim.dim_value = int(size)  # type: ignore[arg-type]

    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        inferred = probe_missing_shapes(inferred)
    except Exception as exc:
        raise FrontendError(f"shape inference failed: {exc}") from exc

    tensors: dict[str, TensorInfo] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = tensor_dims(value.type)
        elem = value.type.tensor_type.elem_type
        if dims is None or elem == 0 or not all(isinstance(d, int) for d in dims):
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
        tensors[value.name] = TensorInfo(value.name, dtype, tuple(int(d) for d in dims))  # type: ignore[arg-type]

    nodes: list[Node] = []
    for index, proto in enumerate(graph_proto.node):
        name = proto.name or f"{proto.op_type}_{index}"
        attrs = {a.name: attr_value(a) for a in proto.attribute}
        nodes.append(Node(proto.op_type, name, list(proto.input), list(proto.output), attrs,
                          proto.domain if proto.domain != "ai.onnx" else ""))

    graph = Graph(
        name=graph_proto.name or "model",
        inputs=[v.name for v in graph_proto.input if v.name not in initializers],
        outputs=[v.name for v in graph_proto.output],
        nodes=nodes,
        tensors=tensors,
        opset=opset,
    )
    for name, array in initializers.items():
        graph.add_constant(name, array)
    graph.symbols, graph.extents = symbols, extents
    graph.list_inputs = list_inputs
    # Declared output types win when inference leaves them unknown (common for ai.onnx.ml).
    for value in graph_proto.output:
        if value.name not in graph.tensors:
            dims = tensor_dims(value.type)
            if dims is not None:  # a dim named as a symbol of --input-shape's ranges is its largest
                dims = [symbols[d][1] * steps[d] if isinstance(d, str) and d in symbols else d for d in dims]
            if dims is not None and dims and not isinstance(dims[0], int):
                dims[0] = 1
                graph.guessed.add(value.name)
            if dims is not None and all(isinstance(d, int) for d in dims):
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
                graph.tensors[value.name] = TensorInfo(value.name, dtype, tuple(dims))  # type: ignore[arg-type]
    return Loaded(graph, batch_axes, hashlib.sha256(raw).hexdigest())
