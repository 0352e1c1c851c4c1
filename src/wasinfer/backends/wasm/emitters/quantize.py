"""QuantizeLinear and DequantizeLinear: per tensor, per axis (opset 13) and blocked (opset 21).

    QuantizeLinear    y = saturate(round_half_to_even(x / scale) + zero_point)
    DequantizeLinear  y = (x - zero_point) * scale

as ONNX's reference evaluator writes them: the division (not a multiply by 1/scale), rounding
with f32.nearest (ties to even), the zero point added after rounding, then clamping to the
integer type's range. Dequantize subtracts in 32-bit integers, so int32 inputs behave as in
ONNX Runtime. The integer side is (u)int8 or (u)int16 (int32 also for Dequantize's input), or
int4/uint4/int2/uint2 (one per byte, docs/abi.md); the float side float32.

The quantized side may also be a float8 type (opset 19) or float4e2m1 (opset 23): Quantize casts
x / scale to it (rounding to nearest even; `saturate`, default 1, decides what an out-of-range
value becomes for float8, float4e2m1 always saturates), Dequantize decodes it exactly, and both
ignore a float8 zero point (it must be 0) as ONNX's reference does; float4e2m1's zero point is added
before the cast (backends/wasm/minifloat.py). The float side (x, scale, y) may be float16 or
bfloat16 too: values are computed in float32 and a float16/bfloat16 x / scale is rounded to its
type before it is quantized, as numpy's arithmetic in that type does. `precision` is refused.

The tensor is walked as (outer, axis, inner): per tensor is (1, 1, N); per axis the scale
is indexed by the axis position; blocked scales have x's shape with the axis divided by
block_size, so element (o, c, i) reads scale[(o * blocks + c // block_size) * inner + i].
Unblocked float32 rows of 8- or 32-bit integers go four elements at a time (16-bit ones, the
narrow types and blocked scales one at a time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.minifloat import FLOAT8, FORMATS, emit_decode, emit_encode
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node

# Integer dtypes: load, store, and the range Quantize saturates to.
INTEGERS = {
    np.dtype(np.int8): ("i32.load8_s", "i32.store8", -128, 127),
    np.dtype(np.uint8): ("i32.load8_u", "i32.store8", 0, 255),
    np.dtype(np.int16): ("i32.load16_s", "i32.store16", -32768, 32767),
    np.dtype(np.uint16): ("i32.load16_u", "i32.store16", 0, 65535),
    np.dtype(np.int32): ("i32.load", "i32.store", -(2**31), 2**31 - 1),
}
# The 4- and 2-bit integers, one per byte: bits, and the range Quantize saturates to.
NARROW_INTS = {np.dtype(ml_dtypes.int4): (4, -8, 7), np.dtype(ml_dtypes.uint4): (4, 0, 15),
               np.dtype(ml_dtypes.int2): (2, -2, 1), np.dtype(ml_dtypes.uint2): (2, 0, 3)}
FLOAT4 = np.dtype(ml_dtypes.float4_e2m1fn)
MINIFLOATS = FLOAT8 | {FLOAT4}  # quantized types that are floats
FLOATS = {np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)}  # the float side


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
    allowed = (set(INTEGERS) - ({np.dtype(np.int32)} if quantize else set())) | set(NARROW_INTS) | MINIFLOATS
    if int_side.dtype not in allowed:
        problems.append(f"quantized type {int_side.dtype} is not supported ((u)int8, (u)int16"
                        f"{'' if quantize else ', int32'}, (u)int4, (u)int2, float8, float4e2m1)")
    for info in (float_side, scale):
        if info.dtype not in FLOATS:
            problems.append(f"tensor {info.name!r} has dtype {info.dtype}, only float32, float16 and bfloat16 are "
                            "supported")
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    if zero and graph.info(zero).dtype != int_side.dtype:
        problems.append(f"zero point dtype {graph.info(zero).dtype} differs from {int_side.dtype}")
    per_tensor = ((), (1,))  # a scalar and a [1] both hold one value for the whole tensor
    if zero and graph.info(zero).shape != scale.shape and not (graph.info(zero).shape in per_tensor
                                                               and scale.shape in per_tensor):
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
    float_names = [node.inputs[1], node.inputs[0] if node.op_type == "QuantizeLinear" else node.outputs[0]]
    return (walk is not None and not walk.block and graph.info(int_name).dtype in INTEGERS
            and graph.info(int_name).dtype.itemsize in (1, 4)
            and all(graph.info(n).dtype == np.float32 for n in float_names))


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
    s_size = graph.info(node.inputs[1]).dtype.itemsize
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
        f.get(index).i32(s_size).op("i32.mul").i32(scale_addr).op("i32.add").set(p.s)
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
                    f.inc(p.s, s_size).inc(p.z, z_size)


def _zero(ctx: Ctx, node: Node, pz: int) -> None:
    """Push the zero point (an i32) of the current element; absent means 0."""
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    if zero:
        _load_integer(ctx.f, ctx.info(zero).dtype, pz)
    else:
        ctx.f.i32(0)


def _load_integer(f: Func, dtype: np.dtype, pointer: int) -> None:  # type: ignore[type-arg]
    """Push the integer at `pointer` (a local) as an i32; a narrow one sign-extended from its bits."""
    if dtype in NARROW_INTS:
        bits, low, _ = NARROW_INTS[dtype]
        f.get(pointer).mem("i32.load8_u")
        if low < 0:
            f.i32(32 - bits).op("i32.shl").i32(32 - bits).op("i32.shr_s")
        return
    f.get(pointer).mem(INTEGERS[dtype][0])


def _load_float(f: Func, dtype: np.dtype, pointer: int) -> None:  # type: ignore[type-arg]
    """Push the float (float32, float16 or bfloat16; or a float8/float4 element) at `pointer` as an f32."""
    if dtype == np.float32:
        f.get(pointer).mem("f32.load")
        return
    f.get(pointer).mem("i32.load16_u" if dtype.itemsize == 2 else "i32.load8_u")
    emit_decode(f, FORMATS[dtype])


def _store_float(f: Func, dtype: np.dtype) -> None:  # type: ignore[type-arg]
    """Store the f32 on the stack (after an address) as `dtype`, rounding to nearest even."""
    if dtype == np.float32:
        f.mem("f32.store")
        return
    f.op("f64.promote_f32")
    emit_encode(f, FORMATS[dtype], saturate=False)
    f.mem("i32.store16")


@kernel("QuantizeLinear", check=_check)
def emit_quantize(ctx: Ctx, node: Node) -> None:
    """The vector and scalar paths do the same f32 operations, so they agree bit for bit."""
    f = ctx.f
    x_type, scale_type = ctx.info(node.inputs[0]).dtype, ctx.info(node.inputs[1]).dtype
    y_type = ctx.info(node.outputs[0]).dtype
    saturate = bool(node.attr("saturate", 1))
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    rounded = f.local(V128)

    def quotient(p: Pointers) -> None:
        """x / scale in f32, rounded to x's type when that is narrower (numpy computes in that type)."""
        _load_float(f, x_type, p.x)
        _load_float(f, scale_type, p.s)
        f.op("f32.div")
        if x_type != np.float32:
            f.op("f64.promote_f32")
            emit_encode(f, FORMATS[x_type], saturate=False)
            emit_decode(f, FORMATS[x_type])

    def element(p: Pointers, lanes: int) -> None:
        if lanes == 1 and y_type in MINIFLOATS:
            f.get(p.y)
            quotient(p)
            if y_type == FLOAT4 and zero:
                _load_float(f, FLOAT4, p.z)
                f.op("f32.add")
            f.op("f64.promote_f32")
            emit_encode(f, FORMATS[y_type], saturate and y_type in FLOAT8)
            f.mem("i32.store8")
            return
        if lanes == 1:
            lo, hi = (NARROW_INTS[y_type][1:] if y_type in NARROW_INTS else INTEGERS[y_type][2:])
            f.get(p.y)
            quotient(p)
            f.op("f32.nearest")
            _zero(ctx, node, p.z)
            f.op("f32.convert_i32_s").op("f32.add")
            f.f32(float(lo)).op("f32.max").f32(float(hi)).op("f32.min").op("i32.trunc_sat_f32_s")
            if y_type in NARROW_INTS:
                f.i32((1 << NARROW_INTS[y_type][0]) - 1).op("i32.and").mem("i32.store8")
            else:
                f.mem(INTEGERS[y_type][1])
            return
        _, store, lo, hi = INTEGERS[y_type]
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
    scale_type, y_type = ctx.info(node.inputs[1]).dtype, ctx.info(node.outputs[0]).dtype
    sign = "s" if dtype.kind == "i" else "u"

    def element(p: Pointers, lanes: int) -> None:
        f.get(p.y)
        if lanes == 1:
            if dtype in MINIFLOATS:  # its value; a float8 (or float4) zero point must be 0, and is ignored
                _load_float(f, dtype, p.x)
            else:
                _load_integer(f, dtype, p.x)
                _zero(ctx, node, p.z)
                f.op("i32.sub").op("f32.convert_i32_s")
            _load_float(f, scale_type, p.s)
            f.op("f32.mul")
            _store_float(f, y_type)
            return
        if dtype.itemsize == 4:
            f.get(p.x).mem("v128.load", align=0)
        else:  # four bytes → four i32 lanes
            f.get(p.x).mem("i32.load", align=0).op("i32x4.splat")
            f.op(f"i16x8.extend_low_i8x16_{sign}").op(f"i32x4.extend_low_i16x8_{sign}")
        f.get(p.zero).op("i32x4.sub").op("f32x4.convert_i32x4_s").get(p.scale).op("f32x4.mul")
        f.mem("v128.store", align=0)

    _emit_walk(ctx, node, element)
