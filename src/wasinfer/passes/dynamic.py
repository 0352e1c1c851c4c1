"""Outputs whose shape the data decides: NonZero, Compress, NonMaxSuppression, TopK with a run-time k.

ONNX's inference leaves such an output's data-dependent dim unknown, so nothing downstream can be
typed. Here each gets its largest possible shape, which memory is planned for, and the dim that varies
becomes a symbol of its own (`Graph.decided`: smallest 0, largest the bound below), as a range of
--input-shape is one (ir/symbolic.py), except that the node's kernel writes its value during the run.
Everything downstream then follows it with the extent rules (passes/symbolic.py): a Gather of the
selected boxes, a Cast, a Slice of a static axis... and a graph output with it is returned at the run's
dims (ABI version 2, or 3 with symbolic inputs).

    NonZero(x)                 [rank(x), nnz]            nnz <= x.size
    Compress(x, c, axis=a)     x's shape, dim a = count  count <= min(len(c), x.shape[a])
    Compress(x, c)             [count]                   count <= min(len(c), x.size)
    NonMaxSuppression(boxes [B, N, 4], scores [B, C, N], ...)
                               [selected, 3]             selected <= B * C * N
    TopK(x, k) with k a run-time input (opset 10 on): both outputs x's shape, dim axis = k <= x.shape[axis]
    Unique(x, axis=a)          Y x's shape, dim a = distinct <= x.shape[a] (or [distinct] without an axis);
                               indices and counts [distinct], inverse_indices [x.shape[a]] (static)

Ops whose parameter is a run-time input (a graph input or computed, where exported models hold constants) take
the same way, each output never larger than the input, so memory planned for the input's size holds every run:

    Reduce*(x, axes)           keepdims: x's rank, dim j 1 or x.shape[j]; without: rank(x) - len(axes), dim j
                               one of x.shape[j..j + len(axes)] (the axes input's length is static)
    Slice(x, starts, ends, axes, steps)
                               x's rank, each sliced dim <= x.shape[j] (every dim where the axes are run-time)
    Split(x, split, axis=a)    each output x's shape, dim a its size <= x.shape[a] (their sum checked by the run)

(A Loop whose run decides how many iterations it does cuts each scan output to that count with such a Slice:
passes/loops.py.)

A Resize's (or Upsample's) scales or sizes may make its output larger than its input, so they need a declared range
(--input-values scales=0.5..4, sizes=1..64: `Graph.read_values`, passes/values.py); the output is planned for the
largest the range allows:

    Resize(x, roi, scales)     each resized dim a: trunc(scale * x.shape[a]) <= trunc(MAX * x.shape[a])
    Resize(x, roi, '', sizes)  stretch: sizes[i] <= MAX; not_larger / not_smaller: trunc(c * x.shape[a] + 0.5) with
                               c <= max over the axes of MAX / x.shape[b]
    OneHot(indices, depth, values, axis=a)
                               indices' shape with trunc(depth) <= MAX inserted at a
    HannWindow(size), HammingWindow(size), BlackmanWindow(size)
                               [size], size <= MAX
    AffineGrid(theta, size)    [N, (D,) H, W, 2 or 3], each spatial size <= MAX
    Col2Im(x [N, C * B, L], image_shape, block_shape)
                               [N, C, *image_shape], C <= C * B, each image size <= MAX
    Range(start, limit, delta) [count], count <= the most ceil((limit - start) / delta) over the ranges
    Pad(x, pads, value, axes)  each axis the pads may apply to: d + 2 * MIN .. d + 2 * MAX
    MelWeightMatrix(num_mel_bins, dft_length, ...)
                               [dft_length // 2 + 1, num_mel_bins], each up to its range's largest
    Expand(x, shape), x with a dim other than 1
                               broadcast: such a dim stays (the value 1 or it), a dim of 1 or a new one <= MAX

Each such dim is a symbol of its own (`{node}.d{j}`, `{node}.split{i}`), written by the node's kernel once it has
read the parameter (emitters reduce.py, indexing.py); a dim that every value of the parameter leaves alone stays
static. Where a parameter is a constant none of this applies: the static kernels run as they always did.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from wasinfer.ir import Graph, Node, TensorInfo, UnsupportedModel
from wasinfer.ir.symbolic import Dim, is_static, largest, symbol

RUN_TIME_SHAPED = ("NonZero", "Compress", "NonMaxSuppression", "TopK", "Unique")
WINDOWS = ("HannWindow", "HammingWindow", "BlackmanWindow")
# Reduce* → the opset from which its axes are an input (an attribute before)
AXES_INPUT = {"ReduceSum": 13, **{op: 18 for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                                     "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")}}


def _decide(graph: Graph, output: str, shape: tuple[int, ...], axes: tuple[int, ...], name: str) -> None:
    """The output's dims: its largest shape with the symbol `name` (0..that size) on `axes`."""
    extent: list[Dim] = list(shape)
    for axis in axes:
        graph.symbols[name] = (0, shape[axis])
        extent[axis] = symbol(name)
    graph.decided[output] = tuple(extent)


def _vary(graph: Graph, name: str, values: list[int]) -> Dim:
    """A dim that each run picks from `values` (the kernel writes which): static where they are all one value."""
    low, high = min(values), max(values)
    if low == high:
        return low
    graph.symbols[name] = (low, high)
    return symbol(name)


def run_time_parameter(graph: Graph, node: Node, index: int) -> TensorInfo | None:
    """Input `index` when it is given and known only at run time (not a constant), with a static type."""
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name or name in graph.constants or name in graph.extents:
        return None
    return graph.tensors.get(name)


def _type(graph: Graph, output: str, dtype: np.dtype, extent: tuple[Dim, ...]) -> None:
    """The output's largest shape (what memory is planned for) and, where some dim varies, its dims."""
    graph.tensors[output] = TensorInfo(output, dtype, tuple(largest(d, graph.symbols) for d in extent))
    if not is_static(extent):
        graph.decided[output] = extent


def _reduce_axes(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Reduce* with run-time axes of a static length (1-D): its output's dims, each one chosen by the run."""
    axes = run_time_parameter(graph, node, 1)
    if graph.opset < AXES_INPUT[node.op_type] or axes is None or len(axes.shape) != 1:
        return False
    shape, count, keep = tuple(source.shape), axes.shape[0], int(node.attr("keepdims", 1))
    if count == 0:  # always empty: the constant path (every axis, or none with noop_with_empty_axes)
        node.inputs[1] = f"{node.name}/no_axes"
        graph.add_constant(node.inputs[1], np.zeros(0, np.int64))
        noop = bool(node.attr("noop_with_empty_axes", 0))
        dims: tuple[Dim, ...] = shape if noop else ((1,) * len(shape) if keep else ())
    elif keep:
        dims = tuple(_vary(graph, f"{node.name}.d{j}", [1, d]) for j, d in enumerate(shape))
    else:
        dims = tuple(_vary(graph, f"{node.name}.d{k}", list(shape[k:k + count + 1]))
                     for k in range(len(shape) - count))
    _type(graph, node.outputs[0], source.dtype, dims)
    return True


def _slice(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Slice with run-time starts, ends, axes or steps: each dim it may slice is chosen by the run, up to x's."""
    given = [i for i in (1, 2, 3, 4) if len(node.inputs) > i and node.inputs[i]]
    if "starts" in node.attrs or not any(run_time_parameter(graph, node, i) for i in given):
        return False
    rank = len(source.shape)
    axes = graph.constants.get(node.inputs[3]) if 3 in given else np.arange(graph.info(node.inputs[1]).shape[0])
    sliced = set(range(rank)) if axes is None else {int(a) % rank for a in np.asarray(axes).reshape(-1)
                                                    if -rank <= int(a) < rank}
    dims = tuple(_vary(graph, f"{node.name}.d{j}", [0, d] if j in sliced else [d])
                 for j, d in enumerate(source.shape))
    _type(graph, node.outputs[0], source.dtype, dims)
    return True


def type_run_time_slice(graph: Graph, node: Node) -> None:
    """Type a Slice that a later pass writes with run-time starts or ends (a DFT's run-time axis cut to the run's
    shape: passes/spectral.py) as `bound_parameters` types one in the model."""
    if not _slice(graph, node, graph.info(node.inputs[0])):
        raise ValueError(f"node {node.name!r} (Slice) has no run-time parameter")


def _split(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Split with run-time sizes (opset 13 on): each output's dim along the axis is its size, up to x's."""
    sizes = run_time_parameter(graph, node, 1)
    if graph.opset < 13 or sizes is None or not source.shape:
        return False
    axis = int(node.attr("axis", 0)) % len(source.shape)
    for i, output in enumerate(node.outputs):
        if output:
            dims = tuple(_vary(graph, f"{node.name}.split{i}", [0, d]) if j == axis else d
                         for j, d in enumerate(source.shape))
            _type(graph, output, source.dtype, dims)
    return True


def resize_parameters(graph: Graph, node: Node) -> tuple[str, str] | None:
    """("scales" or "sizes", the input's name) where a Resize's or Upsample's scales or sizes are a run-time input
    with a declared range (its kernel then reads them: emitters/resize_run_time.py), else None."""
    legacy = node.op_type == "Upsample" or graph.opset < 11
    for kind, index in ((("scales", 1),) if legacy else (("scales", 2), ("sizes", 3))):
        name = node.inputs[index] if len(node.inputs) > index else ""
        if name and name in graph.read_values and run_time_parameter(graph, node, index) is not None:
            return kind, name
    return None


def _resize(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Resize or Upsample with declared run-time scales or sizes: each resized dim chosen by the run, up to the
    largest its range allows."""
    found = resize_parameters(graph, node)
    if found is None or not source.shape or 0 in source.shape:
        return False
    kind, name = found
    shape, rank = tuple(source.shape), len(source.shape)
    axes = [int(a) % rank for a in node.attr("axes")] if node.attr("axes") is not None else list(range(rank))
    low, high = graph.read_values[name][:2]
    policy = str(node.attr("keep_aspect_ratio_policy", "stretch"))
    if kind == "scales":
        bounds = {a: (max(0, int(low * shape[a])), max(0, int(high * shape[a]))) for a in axes}
    elif policy == "stretch":
        bounds = {a: (max(0, int(low)), max(0, int(high))) for a in axes}
    else:
        common = max(high / shape[a] for a in axes)
        bounds = {a: (0, max(0, int(common * shape[a] + 0.5))) for a in axes}
    dims = tuple(_vary(graph, f"{node.name}.d{j}", list(bounds[j])) if j in bounds else d for j, d in enumerate(shape))
    _type(graph, node.outputs[0], source.dtype, dims)
    return True


def _one_hot(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """OneHot with a declared run-time depth: the new axis's dim is the run's depth, up to the range's largest."""
    depth = node.inputs[1] if len(node.inputs) > 2 else ""
    values = graph.tensors.get(node.inputs[2]) if len(node.inputs) > 2 else None
    if depth not in graph.read_values or run_time_parameter(graph, node, 1) is None or values is None:
        return False
    low, high = graph.read_values[depth][:2]
    rank = len(source.shape) + 1
    axis = int(node.attr("axis", -1))
    if not -rank <= axis < rank:
        return False  # the kernel's check names it
    dims: list[Dim] = list(source.shape)
    dims.insert(axis % rank, _vary(graph, f"{node.name}.depth", [max(0, int(low)), max(0, int(high))]))
    _type(graph, node.outputs[0], values.dtype, tuple(dims))
    return True


def _window(graph: Graph, node: Node) -> bool:
    """A Hann, Hamming or Blackman window with a declared run-time size: [size], up to the range's largest."""
    size = node.inputs[0]
    if size not in graph.read_values or run_time_parameter(graph, node, 0) is None:
        return False
    high = max(0, int(graph.read_values[size][1]))
    dtype = helper.tensor_dtype_to_np_dtype(int(node.attr("output_datatype", TensorProto.FLOAT)))
    _type(graph, node.outputs[0], dtype, (_vary(graph, f"{node.name}.size", [0, high]),))
    return True


def _affine_grid(graph: Graph, node: Node, theta: TensorInfo) -> bool:
    """AffineGrid with a declared run-time size [N, C, (D,) H, W]: [N, (D,) H, W, rank], each spatial dim up to the
    range's largest (N is theta's, which the run checks)."""
    size = node.inputs[1] if len(node.inputs) > 1 else ""
    if size not in graph.read_values or run_time_parameter(graph, node, 1) is None or len(theta.shape) != 3:
        return False
    high = max(0, int(graph.read_values[size][1]))
    rank = theta.shape[1]
    spatial = tuple(_vary(graph, f"{node.name}.d{j}", [0, high]) for j in range(rank))
    _type(graph, node.outputs[0], theta.dtype, (theta.shape[0], *spatial, rank))
    return True


def _col2im(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Col2Im with image_shape or block_shape declared run-time inputs (the other one a constant or declared too):
    [N, C, *image], C = the columns / the block's size (up to all the columns), each image dim up to the range's
    largest."""
    image, block = node.inputs[1:3] if len(node.inputs) > 2 else ("", "")
    shapes = (image, block)
    if (not any(n in graph.read_values and run_time_parameter(graph, node, i + 1) is not None
                for i, n in enumerate(shapes))
            or not all(n in graph.read_values or n in graph.constants for n in shapes) or len(source.shape) != 3):
        return False
    batch, columns, _ = source.shape
    rank = graph.info(image).size
    if image in graph.constants:
        dims: list[Dim] = [int(v) for v in np.asarray(graph.constants[image]).reshape(-1)]
    else:
        high = max(0, int(graph.read_values[image][1]))
        dims = [_vary(graph, f"{node.name}.d{j}", [0, high]) for j in range(rank)]
    if block in graph.constants:
        channels: Dim = columns // max(1, math.prod(int(v) for v in np.asarray(graph.constants[block]).reshape(-1)))
    else:
        channels = _vary(graph, f"{node.name}.channels", [min(1, columns), columns])
    _type(graph, node.outputs[0], source.dtype, (batch, channels, *dims))
    return True


MAX_RANGE_COUNT = 1 << 24  # values a Range with run-time bounds may be planned for


def _span(graph: Graph, name: str) -> tuple[float, float] | None:
    """The smallest and largest value a Range's start, limit or delta may take: a constant's, or a declared range."""
    if name in graph.read_values:
        return graph.read_values[name][:2]
    if name in graph.constants and np.asarray(graph.constants[name]).size == 1:
        value = float(np.asarray(graph.constants[name]).reshape(-1)[0])
        return value, value
    return None


def _range(graph: Graph, node: Node) -> bool:
    """Range with a declared run-time start or delta (and limit): [count], count = max(ceil((limit - start) /
    delta), 0) up to its largest over the ranges. An integer delta is at least 1 in size (0 traps the run); a
    float one must be declared away from 0, else no count bounds it."""
    if not any(n in graph.read_values and run_time_parameter(graph, node, i) is not None
               for i, n in enumerate(node.inputs[:3])):
        return False
    spans = [_span(graph, n) for n in node.inputs[:3]]
    if node.outputs[0] in graph.decided:
        return False
    undeclared = [n for n, span in zip(node.inputs[:3], spans, strict=True) if span is None]
    if undeclared:
        raise UnsupportedModel([f"node {node.name!r} (Range): {undeclared} computed at run time with no declared "
                                "range (--input-values NAME=MIN..MAX) beside the bounds that have one"])
    (s0, s1), (l0, l1), (d0, d1) = spans  # type: ignore[misc]
    integer = graph.info(node.inputs[0]).dtype.kind in "iu"
    if not integer and d0 <= 0 <= d1:
        raise UnsupportedModel([f"node {node.name!r} (Range): delta's declared range {d0:g}..{d1:g} includes 0, so "
                                "nothing bounds how many values a run makes; declare it above or below 0"])
    up = (l1 - s0) / (max(d0, 1) if integer else d0) if d1 > 0 else 0  # the most, going up then down
    down = (s1 - l0) / (max(-d1, 1) if integer else -d1) if d0 < 0 else 0
    count = max(0, math.ceil(max(up, down)))
    if count > MAX_RANGE_COUNT:
        raise UnsupportedModel([f"node {node.name!r} (Range): its declared ranges allow {count} values, more than "
                                f"{MAX_RANGE_COUNT}"])
    _type(graph, node.outputs[0], graph.info(node.inputs[0]).dtype, (_vary(graph, f"{node.name}.count", [0, count]),))
    return True


def expand_axes(source: tuple[int, ...], count: int) -> list[tuple[int | None, int | None]]:
    """Per output axis of an Expand of `source` by a shape of `count` values: (the input's dim, or None where the
    input has no such axis; the shape value's index, or None where the shape has none), right-aligned."""
    rank = max(len(source), count)
    return [(source[j - rank + len(source)] if j >= rank - len(source) else None,
             j - rank + count if j >= rank - count else None) for j in range(rank)]


def _expand(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Expand with a declared run-time shape against a dim other than 1 (passes/values.py): that dim stays (the
    value must be 1 or it, which the kernel checks), a dim of 1 or a new one is the value, up to its largest."""
    shape = node.inputs[1] if len(node.inputs) > 1 else ""
    if shape not in graph.read_values or run_time_parameter(graph, node, 1) is None:
        return False
    low, high = (max(0, int(v)) for v in graph.read_values[shape][:2])
    dims = tuple(d if index is None or (d is not None and d != 1) else _vary(graph, f"{node.name}.d{j}", [low, high])
                 for j, (d, index) in enumerate(expand_axes(tuple(source.shape), graph.info(shape).size)))
    _type(graph, node.outputs[0], source.dtype, dims)  # type: ignore[arg-type]
    return True


def _pad(graph: Graph, node: Node, source: TensorInfo) -> bool:
    """Pad with declared run-time pads and an axes input (constant, or declared too): each axis the pads may
    apply to is d + begin + end, from d + 2 * the least pad (at least 0) to d + 2 * the most."""
    pads, axes = (node.inputs[1], node.inputs[3]) if len(node.inputs) > 3 and "pads" not in node.attrs else ("", "")
    if not axes or pads not in graph.read_values or run_time_parameter(graph, node, 1) is None:
        return False
    if axes not in graph.read_values and axes not in graph.constants:
        return False
    rank = len(source.shape)
    low, high = (int(v) for v in graph.read_values[pads][:2])
    padded = (set(range(rank)) if axes not in graph.constants else
              {int(a) % rank for a in np.asarray(graph.constants[axes]).reshape(-1) if -rank <= int(a) < rank})
    dims = tuple(_vary(graph, f"{node.name}.d{j}", [max(0, d + 2 * low), max(0, d + 2 * high)]) if j in padded
                 else d for j, d in enumerate(source.shape))
    _type(graph, node.outputs[0], source.dtype, dims)
    return True


def _mel_weight_matrix(graph: Graph, node: Node) -> bool:
    """MelWeightMatrix with declared run-time parameters (the others constants): [dft_length // 2 + 1,
    num_mel_bins], each up to the largest its range allows."""
    given = node.inputs[:5]
    if len(given) < 5 or not any(n in graph.read_values and run_time_parameter(graph, node, i) is not None
                                 for i, n in enumerate(given)):
        return False
    spans = [_span(graph, n) for n in given]
    undeclared = [n for n, span in zip(given, spans, strict=True) if span is None]
    if undeclared:
        raise UnsupportedModel([f"node {node.name!r} (MelWeightMatrix): {undeclared} computed at run time with no "
                                "declared range (--input-values NAME=MIN..MAX) beside the parameters that have one"])
    (b0, b1), (d0, d1) = spans[0], spans[1]  # type: ignore[misc]
    rows = _vary(graph, f"{node.name}.rows", [max(0, int(d0)) // 2 + 1, max(0, int(d1)) // 2 + 1])
    columns = _vary(graph, f"{node.name}.bins", [max(0, int(b0)), max(0, int(b1))])
    dtype = helper.tensor_dtype_to_np_dtype(int(node.attr("output_datatype", TensorProto.FLOAT)))
    _type(graph, node.outputs[0], dtype, (rows, columns))
    return True


def bound_parameters(graph: Graph) -> int:
    """Type the outputs of the ops whose parameters are run-time inputs (above); returns how many."""
    bounded = 0
    for node in graph.nodes:
        source = graph.tensors.get(node.inputs[0]) if node.inputs and not node.domain else None
        if source is None or node.inputs[0] in graph.extents:
            continue  # a symbolic input (its dims a range) with a run-time parameter is not followed yet
        if node.op_type in AXES_INPUT:
            bounded += _reduce_axes(graph, node, source)
        elif node.op_type == "Slice":
            bounded += _slice(graph, node, source)
        elif node.op_type == "Split":
            bounded += _split(graph, node, source)
        elif node.op_type in ("Resize", "Upsample"):
            bounded += _resize(graph, node, source)
        elif node.op_type == "OneHot":
            bounded += _one_hot(graph, node, source)
        elif node.op_type in WINDOWS:
            bounded += _window(graph, node)
        elif node.op_type == "AffineGrid":
            bounded += _affine_grid(graph, node, source)
        elif node.op_type == "Col2Im":
            bounded += _col2im(graph, node, source)
        elif node.op_type == "Range":
            bounded += _range(graph, node)
        elif node.op_type == "Expand":
            bounded += _expand(graph, node, source)
        elif node.op_type == "Pad":
            bounded += _pad(graph, node, source)
        elif node.op_type == "MelWeightMatrix":
            bounded += _mel_weight_matrix(graph, node)
    return bounded


def bound_run_time_shapes(graph: Graph) -> int:
    """Type the outputs of NonZero and Compress with their largest shape; returns how many. A shape the model
    declares for one is replaced: it can only be the size of one example run (the backend suite declares
    [2, 3] for NonZero's example), not a bound on every run's."""
    bounded = 0
    for node in graph.nodes:
        if node.op_type not in RUN_TIME_SHAPED or node.domain or not node.outputs:
            continue
        output = node.outputs[0]
        source = graph.tensors.get(node.inputs[0]) if node.inputs else None
        if source is None:
            continue
        if node.op_type == "NonZero":
            shape: tuple[int, ...] = (len(source.shape), math.prod(source.shape))
            axes: tuple[int, ...] = (1,)
            dtype = "int64"
        elif node.op_type == "TopK":
            k = node.inputs[1] if len(node.inputs) > 1 else ""
            if not k or k in graph.constants:
                continue  # k fixed at compile time (an attribute before opset 10, or a constant): a static shape
            axis = int(node.attr("axis", -1)) % max(len(source.shape), 1)
            for output, element in zip(node.outputs[:2], (source.dtype, np.dtype(np.int64)), strict=False):
                if output:
                    graph.tensors[output] = TensorInfo(output, element, tuple(source.shape))
                    _decide(graph, output, tuple(source.shape), (axis,), f"{node.name}.k")
            bounded += 1
            continue
        elif node.op_type == "Unique":
            axis = node.attr("axis")
            n = math.prod(source.shape) if axis is None else source.shape[int(axis) % len(source.shape)]
            y_shape = (n,) if axis is None else tuple(source.shape)
            name = f"{node.name}.count"
            shapes = (y_shape, (n,), (n,), (n,))
            for position, (out, dims) in enumerate(zip(node.outputs, shapes, strict=False)):
                if not out:
                    continue
                graph.tensors[out] = TensorInfo(out, source.dtype if position == 0 else np.dtype(np.int64), dims)
                if position == 2:  # inverse_indices: one per slice, a static shape
                    continue
                varying = (0,) if position or axis is None else (int(axis) % len(source.shape),)
                _decide(graph, out, dims, varying, name)
            bounded += 1
            continue
        elif node.op_type == "NonMaxSuppression":
            scores = graph.tensors.get(node.inputs[1]) if len(node.inputs) > 1 else None
            if scores is None or len(scores.shape) != 3:
                continue
            shape, axes, dtype = (math.prod(scores.shape), 3), (0,), "int64"
        else:
            condition = graph.tensors.get(node.inputs[1]) if len(node.inputs) > 1 else None
            if condition is None or len(condition.shape) != 1:
                continue
            axis = node.attr("axis")
            if axis is None:
                shape, axes = (min(condition.shape[0], math.prod(source.shape)),), (0,)
            else:
                axis = int(axis) % len(source.shape)
                shape = tuple(min(condition.shape[0], d) if i == axis else d for i, d in enumerate(source.shape))
                axes = (axis,)
            dtype = source.dtype.name
        graph.tensors[output] = TensorInfo(output, np.dtype(dtype), shape)
        _decide(graph, output, shape, axes, f"{node.name}.count")
        bounded += 1
    bounded += bound_parameters(graph)
    _guess_downstream(graph)
    return bounded


def _guess_downstream(graph: Graph) -> None:
    """Mark the types of what follows a decided output as guesses (`Graph.guessed`), for infer_types to replace
    from that output's largest shape. A graph output after it may carry the shape the model declares, one example
    run's (the backend suite's ReduceL2 body declares [3, 2, 1] after a ReduceSum of run-time axes), which the
    frontend kept because ONNX's inference could not type it; kept, it would disagree with the extent rules."""
    after = set(graph.decided)
    for node in graph.nodes:
        if any(name in after for name in node.inputs) and not any(o in graph.decided for o in node.outputs):
            for output in node.outputs:
                if output:
                    after.add(output)
                    if output in graph.tensors:
                        graph.guessed.add(output)
