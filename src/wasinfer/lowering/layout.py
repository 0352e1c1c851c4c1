"""Strides of contiguous (row-major) tensors, the addressing every plan is expressed in, and
which dtypes a plan can move element by element.

Data movement (Transpose, Concat, Gather, Pad, nearest Resize, ...) never looks at values, so
one plan serves every numpy dtype whose elements are whole bytes: bool, (u)int8..64,
float16/32/64, complex64/128, and the ml_dtypes types as modules hold them (bfloat16 in 2 bytes;
float8, float4 and the 2- and 4-bit integers one element per byte, unpacked). Strings are refused.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from wasinfer.ir import Graph, Node

# numpy's missing types, one element in whole bytes each (docs/abi.md): moved as the integers of their size
NARROW = {np.dtype(t) for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz, ml_dtypes.float8_e8m0fnu,
                                ml_dtypes.float4_e2m1fn,
                                ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2)}
MOVABLE = {np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                 np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)} | NARROW


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


__all__ = ["MOVABLE", "NARROW", "movable_problems", "row_major"]
