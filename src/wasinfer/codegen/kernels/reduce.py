"""Reductions along one axis: Softmax, LogSoftmax, ArgMax, ArgMin.

Each views its input as (outer, n, inner) around the reduced axis. Opset < 13 Softmax
coerces the input to 2-D at `axis`, which is the same view with inner = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wasinfer.codegen.context import Ctx, kernel, only_float32
from wasinfer.codegen.wasm import F32, I32, I64, V128
from wasinfer.ir import Graph, Node


def softmax_view(node: Node, graph: Graph) -> tuple[int, int, int]:
    shape = graph.info(node.inputs[0]).shape
    rank = max(len(shape), 1)
    if graph.opset < 13:
        axis = int(node.attr("axis", 1)) % rank
        return math.prod(shape[:axis]), math.prod(shape[axis:]), 1
    axis = int(node.attr("axis", -1)) % rank
    return math.prod(shape[:axis]), shape[axis] if shape else 1, math.prod(shape[axis + 1:])


@kernel("Softmax", "LogSoftmax", check=lambda node, graph: only_float32(node, graph))
def emit_softmax(ctx: Ctx, node: Node) -> None:
    """y = exp(x - max) / sum, or x - max - log(sum); one pass per (outer, inner) line."""
    f = ctx.f
    outer, n, inner = softmax_view(node, ctx.graph)
    log = node.op_type == "LogSoftmax"
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    exp4, log4 = ctx.helper("exp4"), ctx.helper("log4")
    line, j, px, py = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    vmax, vsum, v = f.local(V128), f.local(V128), f.local(V128)
    step = inner * 4
    vector = inner == 1 and n >= 4
    n4 = n // 4 * 4 if vector else 0

    def horizontal(vec: int, op: str) -> None:
        """Reduce the 4 lanes of `vec` with `op`, leaving the result splatted in `vec`."""
        acc = f.local(F32)
        f.get(vec).lane("f32x4.extract_lane", 0).set(acc)
        for lane in (1, 2, 3):
            f.get(acc).get(vec).lane("f32x4.extract_lane", lane).op(op).set(acc)
        f.get(acc).op("f32x4.splat").set(vec)

    def elements(body: Callable[[int], None]) -> None:
        """Visit the line's elements: vectors of 4 then single lanes, pointer in px/py."""
        if n4:
            with f.for_range(j, 0, n4, 4):
                body(4)
                f.inc(px, 16).inc(py, 16)
        if n > n4:
            with f.for_range(j, n4, n):
                body(1)
                f.inc(px, step).inc(py, step)

    def load(width: int) -> None:
        f.get(px)
        if width == 4:
            f.mem("v128.load")
        else:
            f.mem("f32.load").op("f32x4.splat")

    def store(width: int) -> None:
        if width == 4:
            f.mem("v128.store")
        else:
            f.lane("f32x4.extract_lane", 0).mem("f32.store")

    def reset(base_x: int, base_y: int) -> None:
        f.get(base_x).set(px).get(base_y).set(py)

    bx, by = f.local(I32), f.local(I32)
    with f.for_range(line, 0, outer * inner):
        # line -> (o, i): start = o*n*inner + i
        f.get(line).i32(inner).op("i32.div_u").i32(n * inner * 4).op("i32.mul")
        f.get(line).i32(inner).op("i32.rem_u").i32(4).op("i32.mul").op("i32.add").set(bx)
        f.get(bx).i32(dst).op("i32.add").set(by)
        f.get(bx).i32(src).op("i32.add").set(bx)
        # max
        f.f32x4_const(float("-inf")).set(vmax)
        reset(bx, by)

        def max_pass(width: int) -> None:
            load(width)
            f.get(vmax).op("f32x4.max").set(vmax)

        elements(max_pass)
        horizontal(vmax, "f32.max")
        # exp(x - max), summed; Softmax stores it, LogSoftmax only sums
        f.f32x4_const(0.0).set(vsum)
        reset(bx, by)

        def exp_pass(width: int) -> None:
            load(width)
            f.get(vmax).op("f32x4.sub").call(exp4).set(v)
            if width == 1:  # only lane 0 is real
                f.get(v).v128(np.array([-1, 0, 0, 0], np.int32).tobytes()).op("v128.and").set(v)
            f.get(vsum).get(v).op("f32x4.add").set(vsum)
            if not log:
                f.get(py).get(v)
                store(width)

        elements(exp_pass)
        horizontal(vsum, "f32.add")
        reset(bx, by)
        if log:
            f.get(vsum).call(log4).get(vmax).op("f32x4.add").set(vsum)  # max + log(sum)

            def log_pass(width: int) -> None:
                f.get(py)
                load(width)
                f.get(vsum).op("f32x4.sub")
                store(width)

            elements(log_pass)
        else:
            f.f32x4_const(1.0).get(vsum).op("f32x4.div").set(vsum)

            def scale_pass(width: int) -> None:
                f.get(py)
                f.get(py)
                if width == 4:
                    f.mem("v128.load")
                else:
                    f.mem("f32.load").op("f32x4.splat")
                f.get(vsum).op("f32x4.mul")
                store(width)

            elements(scale_pass)


def _check_arg(node: Node, graph: Graph) -> list[str]:
    dtype = graph.info(node.inputs[0]).dtype
    return [] if dtype in (np.float32, np.int64, np.int32) else [f"input dtype {dtype} is not supported"]


@kernel("ArgMax", "ArgMin", check=_check_arg)
def emit_argmax(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    info = ctx.info(node.inputs[0])
    shape = info.shape or (1,)
    axis = int(node.attr("axis", 0)) % len(shape)
    outer, n, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    last = bool(node.attr("select_last_index", 0))
    size = info.dtype.itemsize
    kind = {np.dtype(np.float32): (F32, "f32.load", "f32"), np.dtype(np.int64): (I64, "i64.load", "i64"),
            np.dtype(np.int32): (I32, "i32.load", "i32")}[info.dtype]
    valtype, load, prefix = kind
    better = {("ArgMax", False): "gt", ("ArgMax", True): "ge", ("ArgMin", False): "lt", ("ArgMin", True): "le"}
    compare = f"{prefix}.{better[(node.op_type, last)]}" + ("" if prefix == "f32" else "_s")
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    line, j, p, best_index = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    best = f.local(valtype)
    with f.for_range(line, 0, outer * inner):
        f.get(line).i32(inner).op("i32.div_u").i32(n * inner * size).op("i32.mul")
        f.get(line).i32(inner).op("i32.rem_u").i32(size).op("i32.mul").op("i32.add").i32(src).op("i32.add").set(p)
        f.get(p).mem(load).set(best).i32(0).set(best_index)
        with f.for_range(j, 1, n):
            f.inc(p, inner * size)
            f.get(p).mem(load).get(best).op(compare)
            with f.if_():
                f.get(p).mem(load).set(best).get(j).set(best_index)
        f.addr(dst, line, 8).get(best_index).op("i64.extend_i32_s").mem("i64.store")
