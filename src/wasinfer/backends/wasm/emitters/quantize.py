"""QuantizeLinear and DequantizeLinear: per tensor, per axis (opset 13) and blocked (opset 21).

    QuantizeLinear    y = saturate(round_half_to_even(x / scale) + zero_point)
    DequantizeLinear  y = (x - zero_point) * scale

as ONNX's reference evaluator writes them: the division (not a multiply by 1/scale), rounding
with f32.nearest (ties to even), the zero point added after rounding, then clamping to the
integer type's range. Dequantize subtracts in 32-bit integers, so int32 inputs behave as in
ONNX Runtime. The integer side is (u)int8 or (u)int16 (int32 also for Dequantize's input);
the float side float32. Scale and zero point may be constants or run-time tensors.

The tensor is walked as (outer, axis, inner): per tensor is (1, 1, N); per axis the scale
is indexed by the axis position; blocked scales have x's shape with the axis divided by
block_size, so element (o, c, i) reads scale[(o * blocks + c // block_size) * inner + i].
Unblocked rows of 8- or 32-bit integers go four elements at a time (16-bit ones and blocked
scales one at a time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Graph, Node

# Integer dtypes: load, store, and the range Quantize saturates to.
INTEGERS = {
    np.dtype(np.int8): ("i32.load8_s", "i32.store8", -128, 127),
    np.dtype(np.uint8): ("i32.load8_u", "i32.store8", 0, 255),
    np.dtype(np.int16): ("i32.load16_s", "i32.store16", -32768, 32767),
    np.dtype(np.uint16): ("i32.load16_u", "i32.store16", 0, 65535),
    np.dtype(np.int32): ("i32.load", "i32.store", -(2**31), 2**31 - 1),
}


@dataclass
class Walk:
    outer: int
    axis: int
    inner: int
    block: int  # 0 unless blocked


def _walk(node: Node, graph: Graph) -> tuple[Walk | None, list[str]]:
    x_shape = graph.info(node.inputs[0]).shape
    s_shape = graph.info(node.inputs[1]).shape
    block = int(node.attr("block_size", 0))
    size = math.prod(x_shape)
    if len(s_shape) == 0 or (s_shape == (1,) and not block):
        return Walk(1, 1, size, 0), []
    rank = len(x_shape)
    axis = int(node.attr("axis", 1))
    if not -rank <= axis < rank:
        return None, [f"axis {axis} is out of range for rank {rank}"]
    axis %= rank
    walk = Walk(math.prod(x_shape[:axis]), x_shape[axis], math.prod(x_shape[axis + 1:]), block)
    if block:
        expected = tuple(-(-d // block) if a == axis else d for a, d in enumerate(x_shape))
        if s_shape != expected:
            return None, [f"blocked scale has shape {s_shape}, expected {expected} for block_size {block}"]
        return walk, []
    if len(s_shape) != 1 or s_shape[0] != x_shape[axis]:
        return None, [f"scale of shape {s_shape} is neither per tensor nor per axis {axis} of {x_shape}"]
    return walk, []


def _check(node: Node, graph: Graph) -> list[str]:
    quantize = node.op_type == "QuantizeLinear"
    x, scale, out = graph.info(node.inputs[0]), graph.info(node.inputs[1]), graph.info(node.outputs[0])
    int_side = out if quantize else x
    float_side = x if quantize else out
    problems = []
    allowed = set(INTEGERS) - ({np.dtype(np.int32)} if quantize else set())
    if int_side.dtype not in allowed:
        problems.append(f"quantized type {int_side.dtype} is not supported (int8, uint8, int16, uint16"
                        f"{'' if quantize else ', int32'})")
    for info in (float_side, scale):
        if info.dtype != np.float32:
            problems.append(f"tensor {info.name!r} has dtype {info.dtype}, only float32 is supported")
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    if zero and graph.info(zero).dtype != int_side.dtype:
        problems.append(f"zero point dtype {graph.info(zero).dtype} differs from {int_side.dtype}")
    if zero and graph.info(zero).shape != scale.shape:
        problems.append("zero point and scale have different shapes")
    if quantize and int(node.attr("precision", 0)):
        problems.append("the precision attribute is not supported")
    problems += _walk(node, graph)[1]
    return problems


@dataclass
class Pointers:
    """Locals holding the current element's x, y, scale and zero-point addresses; `scale` and
    `zero` are v128 locals holding the splatted values of a row (unused when blocked)."""

    x: int
    y: int
    s: int
    z: int
    scale: int
    zero: int


def _vector_ok(node: Node, graph: Graph) -> bool:
    """Four elements at a time: unblocked, with 8-bit or 32-bit integers (one i32 or one v128)."""
    walk, _ = _walk(node, graph)
    int_name = node.outputs[0] if node.op_type == "QuantizeLinear" else node.inputs[0]
    return walk is not None and not walk.block and graph.info(int_name).dtype.itemsize in (1, 4)


def _emit_walk(ctx: Ctx, node: Node, element: Callable[[Pointers, int], None]) -> None:
    """Loops over (o, c, i); `element(pointers, lanes)` handles 4 elements or 1. Rows of an
    unblocked walk go 4 at a time with the row's scale and zero point splatted once."""
    f, graph = ctx.f, ctx.graph
    walk, _ = _walk(node, graph)
    assert walk is not None
    x, y = node.inputs[0], node.outputs[0]
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    x_size, y_size = graph.info(x).dtype.itemsize, graph.info(y).dtype.itemsize
    z_size = graph.info(zero).dtype.itemsize if zero else 0
    scale_addr = ctx.addr(node.inputs[1])
    zero_addr = ctx.addr(zero) if zero else 0
    o, c, i, index = (f.local(I32) for _ in range(4))
    p = Pointers(f.local(I32), f.local(I32), f.local(I32), f.local(I32), f.local(V128), f.local(V128))
    f.i32(ctx.addr(x)).set(p.x).i32(ctx.addr(y)).set(p.y)
    blocks = -(-walk.axis // walk.block) if walk.block else 0
    vector = walk.inner // 4 * 4 if _vector_ok(node, graph) else 0
    with f.for_range(o, 0, walk.outer), f.for_range(c, 0, walk.axis):
        # index of the scale for (o, c, i=0); per tensor the walk has one c, so it is 0
        if walk.block:
            f.get(o).i32(blocks).op("i32.mul").get(c).i32(walk.block).op("i32.div_u").op("i32.add")
            f.i32(walk.inner).op("i32.mul").set(index)
        else:
            f.get(c).set(index)
        f.get(index).i32(4).op("i32.mul").i32(scale_addr).op("i32.add").set(p.s)
        f.get(index).i32(z_size).op("i32.mul").i32(zero_addr).op("i32.add").set(p.z)
        if vector:
            f.get(p.s).mem("f32.load").op("f32x4.splat").set(p.scale)
            _zero(ctx, node, p.z)
            f.op("i32x4.splat").set(p.zero)
            with f.for_range(i, 0, vector, 4):
                element(p, 4)
                f.inc(p.x, 4 * x_size).inc(p.y, 4 * y_size)
        if walk.inner > vector:
            with f.for_range(i, vector, walk.inner):
                element(p, 1)
                f.inc(p.x, x_size).inc(p.y, y_size)
                if walk.block:
                    f.inc(p.s, 4).inc(p.z, z_size)


def _zero(ctx: Ctx, node: Node, pz: int) -> None:
    """Push the zero point (an i32) of the current element; absent means 0."""
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    if zero:
        ctx.f.get(pz).mem(INTEGERS[ctx.info(zero).dtype][0])
    else:
        ctx.f.i32(0)


@kernel("QuantizeLinear", check=_check)
def emit_quantize(ctx: Ctx, node: Node) -> None:
    """The vector and scalar paths do the same f32 operations, so they agree bit for bit."""
    f = ctx.f
    _, store, lo, hi = INTEGERS[ctx.info(node.outputs[0]).dtype]
    rounded = f.local(V128)

    def element(p: Pointers, lanes: int) -> None:
        if lanes == 1:
            f.get(p.y)
            f.get(p.x).mem("f32.load").get(p.s).mem("f32.load").op("f32.div").op("f32.nearest")
            _zero(ctx, node, p.z)
            f.op("f32.convert_i32_s").op("f32.add")
            f.f32(float(lo)).op("f32.max").f32(float(hi)).op("f32.min").op("i32.trunc_sat_f32_s").mem(store)
            return
        f.get(p.x).mem("v128.load", align=0).get(p.scale).op("f32x4.div").op("f32x4.nearest")
        f.get(p.zero).op("f32x4.convert_i32x4_s").op("f32x4.add")
        f.f32x4_const(float(lo)).op("f32x4.max").f32x4_const(float(hi)).op("f32x4.min")
        f.op("i32x4.trunc_sat_f32x4_s").set(rounded)
        for lane in range(4):
            f.get(p.y).get(rounded).lane("i32x4.extract_lane", lane).mem(store, offset=lane)

    _emit_walk(ctx, node, element)


@kernel("DequantizeLinear", check=_check)
def emit_dequantize(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    dtype = ctx.info(node.inputs[0]).dtype
    load = INTEGERS[dtype][0]
    sign = "s" if dtype.kind == "i" else "u"

    def element(p: Pointers, lanes: int) -> None:
        f.get(p.y)
        if lanes == 1:
            f.get(p.x).mem(load)
            _zero(ctx, node, p.z)
            f.op("i32.sub").op("f32.convert_i32_s").get(p.s).mem("f32.load").op("f32.mul").mem("f32.store")
            return
        if dtype.itemsize == 4:
            f.get(p.x).mem("v128.load", align=0)
        else:  # four bytes → four i32 lanes
            f.get(p.x).mem("i32.load", align=0).op("i32x4.splat")
            f.op(f"i16x8.extend_low_i8x16_{sign}").op(f"i32x4.extend_low_i16x8_{sign}")
        f.get(p.zero).op("i32x4.sub").op("f32x4.convert_i32x4_s").get(p.scale).op("f32x4.mul")
        f.mem("v128.store", align=0)

    _emit_walk(ctx, node, element)
