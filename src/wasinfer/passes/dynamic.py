"""Outputs whose shape the data decides: NonZero, Compress (ABI version 2's run-time output shapes).

ONNX's inference leaves such an output's data-dependent dim unknown, so nothing downstream can be
typed. Here each gets its largest possible shape, which memory is planned for, and the axes that
vary are recorded (`Graph.run_time_axes`); its kernel writes the values compactly (as for the actual
shape) and the actual dims beside them, and the runtime returns the tensor at those dims.

So far such a value must be a graph output: the kernels that would read it take static shapes (see
docs/abi.md, "Run-time output shapes"), so a node that consumes one is refused by name.

    NonZero(x)                 [rank(x), nnz]            nnz <= x.size
    Compress(x, c, axis=a)     x's shape, dim a = count  count <= min(len(c), x.shape[a])
    Compress(x, c)             [count]                   count <= min(len(c), x.size)
    NonMaxSuppression(boxes [B, N, 4], scores [B, C, N], ...)
                               [selected, 3]             selected <= B * C * N
    TopK(x, k) with k a run-time input (opset 10 on): both outputs x's shape, dim axis = k <= x.shape[axis]
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.ir import Graph, TensorInfo

RUN_TIME_SHAPED = ("NonZero", "Compress", "NonMaxSuppression", "TopK")


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
                    graph.run_time_axes[output] = (axis,)
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
        graph.run_time_axes[output] = axes
        bounded += 1
    return bounded


def run_time_shape_problems(graph: Graph) -> list[str]:
    """Where a value with a run-time shape is used by a node (only graph outputs may have one so far)."""
    problems = []
    for node in graph.nodes:
        for name in node.inputs:
            if name in graph.run_time_axes:
                problems.append(f"node {node.name!r} ({node.op_type}) reads {name!r}, whose shape is decided at run "
                                f"time by the data (axes {list(graph.run_time_axes[name])}); so far only a graph "
                                "output may have a run-time shape")
    return problems
