"""Elementwise binary ops with numpy broadcasting: Add, Sub, Mul, Div, Max, Min, Sum, PRelu.

The output is walked in its own order; each input has a stride per output axis (0 where it
broadcasts). Axes that are contiguous for all three tensors are merged first, so the common
cases (same shape, scalar, per-channel) become one or two loops, the innermost vectorised.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wasinfer.codegen.context import Ctx, kernel, only_float32
from wasinfer.codegen.kernels.unary import epilogue
from wasinfer.codegen.wasm import I32, V128
from wasinfer.ir import Graph, Node

VECTOR_OP = {"Add": "f32x4.add", "Sum": "f32x4.add", "Sub": "f32x4.sub", "Mul": "f32x4.mul",
             "Div": "f32x4.div", "Max": "f32x4.max", "Min": "f32x4.min"}


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of `shape` walked as `out_shape` (0 on broadcast axes)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [0] * len(out_shape), 1
    for axis in reversed(range(len(out_shape))):
        strides[axis] = step if padded[axis] != 1 else 0
        step *= padded[axis]
    return strides


def merge_axes(out_shape: tuple[int, ...], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge neighbouring axes that every operand walks contiguously; drop size-1 axes."""
    dims: list[int] = []
    merged: list[list[int]] = [[] for _ in strides]
    for axis, size in enumerate(out_shape):
        if size == 1:
            continue
        if dims and all(s[axis] * size == m[-1] or (s[axis] == 0 and m[-1] == 0)
                        for s, m in zip(strides, merged, strict=True)):
            dims[-1] *= size
            for s, m in zip(strides, merged, strict=True):
                m[-1] = s[axis]
            continue
        dims.append(size)
        for s, m in zip(strides, merged, strict=True):
            m.append(s[axis])
    if not dims:
        return [1], [[0] for _ in strides]
    return dims, merged


def emit_broadcast(ctx: Ctx, out: int, out_shape: tuple[int, ...], a: int, a_shape: tuple[int, ...],
                   b: int, b_shape: tuple[int, ...], combine: Callable[[], None], node: Node | None) -> None:
    """out = combine(a, b) elementwise; `combine` maps two v128 on the stack to one."""
    f = ctx.f
    dims, (sa, sb, so) = merge_axes(out_shape, [broadcast_strides(a_shape, out_shape),
                                                broadcast_strides(b_shape, out_shape),
                                                broadcast_strides(out_shape, out_shape)])
    outer, inner = dims[:-1], dims[-1]
    pa, pb, po = f.local(I32), f.local(I32), f.local(I32)
    counters = [f.local(I32) for _ in outer]
    f.i32(a).set(pa).i32(b).set(pb).i32(out).set(po)

    def operand(ptr: int, stride: int, vector: bool) -> None:
        f.get(ptr)
        if stride == 0:
            f.mem("f32.load").op("f32x4.splat")
        elif vector:
            f.mem("v128.load")
        else:
            f.mem("f32.load").op("f32x4.splat")

    def inner_loop() -> None:
        i = f.local(I32)
        saved = f.local(I32), f.local(I32), f.local(I32)
        for ptr, keep in zip((pa, pb, po), saved, strict=True):
            f.get(ptr).set(keep)
        vec = inner // 4 * 4 if so[-1] == 1 and sa[-1] in (0, 1) and sb[-1] in (0, 1) else 0
        for start, stop, width in ((0, vec, 4), (vec, inner, 1)):
            if stop <= start:
                continue
            with f.for_range(i, start, stop, width):
                f.get(po)
                operand(pa, sa[-1], width == 4)
                operand(pb, sb[-1], width == 4)
                combine()
                if node is not None:
                    epilogue(ctx, node)
                if width == 4:
                    f.mem("v128.store")
                else:
                    f.lane("f32x4.extract_lane", 0).mem("f32.store")
                for ptr, stride in ((pa, sa[-1]), (pb, sb[-1]), (po, so[-1])):
                    if stride:
                        f.inc(ptr, stride * 4 * width)
        for ptr, keep in zip((pa, pb, po), saved, strict=True):
            f.get(keep).set(ptr)

    def level(depth: int) -> None:
        if depth == len(outer):
            inner_loop()
            return
        with f.for_range(counters[depth], 0, outer[depth]):
            saved = f.local(I32), f.local(I32), f.local(I32)
            for ptr, keep in zip((pa, pb, po), saved, strict=True):
                f.get(ptr).set(keep)
            level(depth + 1)
            for ptr, keep, strides in zip((pa, pb, po), saved, (sa, sb, so), strict=True):
                f.get(keep)
                if strides[depth]:
                    f.i32(strides[depth] * 4).op("i32.add")
                f.set(ptr)

    level(0)


def _check_binary(node: Node, graph: Graph) -> list[str]:
    return only_float32(node, graph)


def _apply(ctx: Ctx, opcode: str) -> None:
    ctx.f.op(opcode)


@kernel("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", check=_check_binary)
def emit_binary(ctx: Ctx, node: Node) -> None:
    out = node.outputs[0]
    out_shape = ctx.info(out).shape
    inputs = [n for n in node.inputs if n]
    op = VECTOR_OP[node.op_type]
    if len(inputs) == 1:  # Sum/Max/Min of one tensor is a copy
        size = ctx.info(out).nbytes
        ctx.f.i32(ctx.addr(out)).i32(ctx.addr(inputs[0])).i32(size).memory_copy()
        return
    acc, acc_shape = inputs[0], ctx.info(inputs[0]).shape
    for index, other in enumerate(inputs[1:], start=1):
        last = index == len(inputs) - 1
        emit_broadcast(ctx, ctx.addr(out), out_shape, ctx.addr(acc), acc_shape, ctx.addr(other),
                       ctx.info(other).shape, lambda: _apply(ctx, op), node if last else None)
        acc, acc_shape = out, out_shape


@kernel("PRelu", check=_check_binary)
def emit_prelu(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    x, slope, out = node.inputs[0], node.inputs[1], node.outputs[0]
    slope_shape = ctx.info(slope).shape
    value = ctx.const(slope)
    x_rank = len(ctx.info(x).shape)
    # Opset < 7 allowed a slope of shape [C] for NCHW input: unidirectional broadcast on axis 1.
    if value is not None and len(slope_shape) == 1 and slope_shape[0] != 1 and x_rank > 2 \
            and ctx.info(x).shape[-1] != slope_shape[0]:
        slope_shape = (slope_shape[0],) + (1,) * (x_rank - 2)
    a, b = f.local(V128), f.local(V128)

    def combine() -> None:
        f.set(b).set(a)
        f.get(a).get(b).op("f32x4.mul").get(a).get(a).f32x4_const(0.0).op("f32x4.lt").op("v128.bitselect")

    emit_broadcast(ctx, ctx.addr(out), ctx.info(out).shape, ctx.addr(x), ctx.info(x).shape,
                   ctx.addr(slope), slope_shape, combine, None)


__all__ = ["broadcast_strides", "emit_broadcast", "merge_axes", "np"]
