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
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.ir import Graph, TensorInfo
from wasinfer.ir.symbolic import Dim, symbol

RUN_TIME_SHAPED = ("NonZero", "Compress", "NonMaxSuppression", "TopK", "Unique")


def _decide(graph: Graph, output: str, shape: tuple[int, ...], axes: tuple[int, ...], name: str) -> None:
    """The output's dims: its largest shape with the symbol `name` (0..that size) on `axes`."""
    extent: list[Dim] = list(shape)
    for axis in axes:
        graph.symbols[name] = (0, shape[axis])
        extent[axis] = symbol(name)
    graph.decided[output] = tuple(extent)


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
    return bounded
