"""HannWindow, HammingWindow and BlackmanWindow whose size each run gives.

Exported models hold the size as a constant, and the window folds while compiling (ops/linalg.py). Where it is a
run-time input with its range declared (--input-values size=1..4096, passes/values.py), the output is laid out
for the range's largest and its dim is a symbol this kernel writes once it has read the size (a negative size,
or one past the largest, traps the run). Each element n < size is a0 + a1 cos(2 pi n / N) + a2 cos(4 pi n / N),
N the size (periodic, the default) or the size - 1 (symmetric), with the coefficients ONNX's reference uses;
the cosines are the Cos kernel's (mathfn.py: within 1e-7 of float64's over a window's range).
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.dims import read_count
from wasinfer.backends.wasm.mathfn import sin_cos_v128
from wasinfer.backends.wasm.writer import F64, I32, V128
from wasinfer.ir import Graph, Node

# a0, a1, a2 of a0 + a1 cos(2 pi n / N) + a2 cos(4 pi n / N)
COEFFICIENTS = {"HannWindow": (0.5, -0.5, 0.0), "HammingWindow": (25 / 46, -(21 / 46), 0.0),
                "BlackmanWindow": (0.42, -0.5, 0.08)}
SIZE_LOAD = {np.dtype(np.int32): ("i32.load", "i64.extend_i32_s"), np.dtype(np.int64): ("i64.load", "")}


def _check_window(node: Node, graph: Graph) -> list[str]:
    size = node.inputs[0]
    if size not in graph.read_values:  # a constant size folds while compiling; this is the run-time one
        return ["size is computed at run time; a constant size (folded while compiling), or a run-time input with "
                "its values' range declared (--input-values NAME=MIN..MAX), is supported (it sets the output's "
                "shape)"]
    problems = []
    if graph.info(size).dtype not in SIZE_LOAD:
        problems.append(f"size has dtype {graph.info(size).dtype}; int32 or int64 is supported")
    if graph.info(node.outputs[0]).dtype != np.float32:
        problems.append(f"output_datatype {graph.info(node.outputs[0]).dtype} with a run-time size: float32 only")
    return problems


@kernel("HannWindow", "HammingWindow", "BlackmanWindow", check=_check_window)
def emit_window(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    out = ctx.info(node.outputs[0])
    largest = out.shape[0]
    a0, a1, a2 = COEFFICIENTS[node.op_type]
    n = f.local(I32)
    _, count = read_count(f, ctx.addr(node.inputs[0]), *SIZE_LOAD[ctx.info(node.inputs[0]).dtype], largest,
                          ctx.graph.decided.get(node.outputs[0], out.shape)[0], ctx.symbols)
    step = f.local(F64)  # 2 pi / N, in float64 before the float32 cosines
    f.f64(2 * math.pi).get(count).i32(0 if int(node.attr("periodic", 1)) else 1).op("i32.sub")
    f.op("f64.convert_i32_s").op("f64.div").set(step)
    angle, value = f.local(V128), f.local(V128)
    with f.for_range(n, 0, ("local", count)):
        f.get(n).op("f64.convert_i32_s").get(step).op("f64.mul").op("f32.demote_f64").op("f32x4.splat").set(angle)
        f.f32x4_const(a0)
        sin_cos_v128(f, angle, cos=True)
        f.f32x4_const(a1).op("f32x4.mul").op("f32x4.add").set(value)
        if a2:
            f.get(n).op("f64.convert_i32_s").get(step).op("f64.mul").f64(2.0).op("f64.mul").op("f32.demote_f64")
            f.op("f32x4.splat").set(angle)
            f.get(value)
            sin_cos_v128(f, angle, cos=True)
            f.f32x4_const(a2).op("f32x4.mul").op("f32x4.add").set(value)
        f.get(n).i32(4).op("i32.mul").i32(ctx.addr(node.outputs[0])).op("i32.add")
        f.get(value).lane("f32x4.extract_lane", 0).mem("f32.store")


__all__ = ["emit_window"]
