"""Strides of contiguous (row-major) tensors, the addressing every plan is expressed in, and
which dtypes a plan can move element by element.

Data movement (Transpose, Concat, Gather, Pad, nearest Resize, ...) never looks at values, so
one plan serves every numpy dtype whose elements are whole bytes: bool, (u)int8..64,
float16/32/64, complex64/128. Strings, and the ml_dtypes types (bfloat16, float8, packed 2-
and 4-bit integers), are refused.
"""

from __future__ import annotations

import numpy as np

from wasinfer.ir import Graph, Node

MOVABLE = {np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                 np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)}


def row_major(dims: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a contiguous tensor with these dims."""
    strides, step = [], 1
    for size in reversed(dims):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def movable_problems(node: Node, graph: Graph) -> list[str]:
    """Every tensor of a data-movement node must have whole-byte elements."""
    names = [n for n in node.inputs + node.outputs if n]
    return [f"tensor {n!r} has dtype {graph.info(n).dtype}, which cannot be moved element by element"
            for n in names if graph.info(n).dtype not in MOVABLE]


__all__ = ["MOVABLE", "movable_problems", "row_major"]
