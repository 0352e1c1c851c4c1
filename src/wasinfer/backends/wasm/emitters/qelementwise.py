"""The integer kernels of a quantized graph's element-wise islands (passes/int8_islands.py fuses them).

- QLookupInt8: y[i] = table[x[i] & 255], four elements per step (one i32 load of x's bytes, four
  byte loads from the 256-entry table, whose address is the load's offset, four byte stores).
- QAddInt8 / QMulInt8: the broadcasting walker of emitters/binary.py over the (u)int8 operands
  read as float32 lanes (four bytes widened per step): Add computes ra * a + rb * b + c with
  ra = a_scale / y_scale, rb = b_scale / y_scale and c = y_zero - ra * a_zero - rb * b_zero folded
  at compile time; Mul computes (a - a_zero) * (b - b_zero) * m + y_zero with
  m = a_scale * b_scale / y_scale. The sum is rounded with ties to even (f32x4.nearest) and
  narrowed with saturation (i32 → i16 → (u)int8) on the way to memory. ONNX Runtime's QLinearAdd
  uses fixed-point multipliers on x86 and QLinearMul float ones: the results differ from it at
  most where a value lies within float32 rounding of a half step, by one step.
- QGlobalAveragePoolInt8: per channel, sixteen bytes a step summed pairwise into i32 lanes
  (extadd_pairwise twice), then requantised once as MLAS's QLinearGlobalAveragePool does:
  float32(sum - count * x_zero) * (x_scale / (y_scale * count)), rounded, plus y_zero, saturated.
- QMaxPoolInt8: 2-D MaxPool of the integers (max commutes with quantisation), sixteen columns at a
  time over the kernel rows, then per output over the kernel columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.binary import Access, emit_elementwise
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.window import Window, padded_dims, pool_window, window_problems
from wasinfer.ops.quantized import INT8_DOMAIN

QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8))


def _sign(dtype: np.dtype) -> str:  # type: ignore[type-arg]
    return "s" if dtype == np.int8 else "u"


def _constant_problems(graph: Graph, names: list[tuple[str, np.dtype]]) -> list[str]:  # type: ignore[type-arg]
    """Each name must be a constant of one element of its dtype."""
    return [f"{name!r} must be one {dtype.name} constant" for name, dtype in names
            if name not in graph.constants or graph.constants[name].size != 1 or graph.constants[name].dtype != dtype]


def _scalar(ctx: Ctx, name: str) -> float:
    return float(ctx.graph.constants[name].reshape(()))


# QLookupInt8 ------------------------------------------------------------------------------------------------

def _check_lookup(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) != 2 or len(node.outputs) != 1:
        return ["expects inputs (x, table) and one output, as passes/int8_islands.py writes it"]
    x, table = node.inputs
    y = node.outputs[0]
    problems = []
    if graph.info(x).dtype not in QUANTIZED or graph.info(y).dtype not in QUANTIZED:
        problems.append("X and Y must be int8 or uint8")
    value = graph.constants.get(table)
    if value is None or value.shape != (256,) or value.dtype != graph.info(y).dtype:
        problems.append(f"the table {table!r} must be a constant of 256 entries of Y's dtype")
    if graph.info(x).shape != graph.info(y).shape:
        problems.append(f"X's shape {graph.info(x).shape} is not Y's {graph.info(y).shape}")
    return problems


@kernel("QLookupInt8", domain=INT8_DOMAIN, check=_check_lookup)
def emit_lookup(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    x, table = node.inputs
    size, table_addr = math.prod(ctx.info(x).shape), ctx.addr(table)
    px, py, i, word = (f.local(I32) for _ in range(4))
    f.i32(ctx.addr(x)).set(px).i32(ctx.addr(node.outputs[0])).set(py)
    vector = size // 4 * 4
    if vector:
        with f.for_range(i, 0, vector, 4):
            f.get(px).mem("i32.load", align=0).set(word)
            for lane in range(4):
                f.get(py).get(word)
                if lane:
                    f.i32(8 * lane).op("i32.shr_u")
                if lane < 3:
                    f.i32(255).op("i32.and")
                f.mem("i32.load8_u", offset=table_addr).mem("i32.store8", offset=lane)
            f.inc(px, 4).inc(py, 4)
    if size > vector:
        with f.for_range(i, vector, size):
            f.get(py).get(px).mem("i32.load8_u").mem("i32.load8_u", offset=table_addr).mem("i32.store8")
            f.inc(px, 1).inc(py, 1)


# QAddInt8, QMulInt8 -----------------------------------------------------------------------------------------

def _as_float(dtype: np.dtype) -> Access:  # type: ignore[type-arg]
    """(u)int8 elements as float32 lanes: four bytes widened per vector step."""
    sign = _sign(dtype)
    return Access(1, 4,
                  lambda f: f.mem("i32.load", align=0).op("i32x4.splat").op(f"i16x8.extend_low_i8x16_{sign}")
                  .op(f"i32x4.extend_low_i16x8_{sign}").op("f32x4.convert_i32x4_s"),
                  lambda f: f.mem(f"i32.load8_{sign}").op("f32.convert_i32_s").op("f32x4.splat"),
                  lambda f: f, lambda f: f)


def _requantized(f: Func, dtype: np.dtype) -> Access:  # type: ignore[type-arg]
    """Float32 lanes stored as (u)int8: rounded with ties to even, narrowed with saturation."""
    narrow = f.local(V128)

    def to_bytes(g: Func) -> Func:
        g.op("f32x4.nearest").op("i32x4.trunc_sat_f32x4_s").tee(narrow).get(narrow).op("i16x8.narrow_i32x4_s")
        return g.tee(narrow).get(narrow).op(f"i8x16.narrow_i16x8_{_sign(dtype)}")

    return Access(1, 4, lambda g: g, lambda g: g,
                  lambda g: to_bytes(g).lane("i32x4.extract_lane", 0).mem("i32.store", align=0),
                  lambda g: to_bytes(g).lane("i8x16.extract_lane_u", 0).mem("i32.store8"))


def _check_binary(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) != 8 or not all(node.inputs) or len(node.outputs) != 1:
        return ["expects inputs (a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero), as passes/int8_islands.py "
                "writes them"]
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = node.inputs
    dtype = graph.info(node.outputs[0]).dtype
    if dtype not in QUANTIZED or graph.info(a).dtype != dtype or graph.info(b).dtype != dtype:
        return ["A, B and Y must all be int8 or all uint8"]
    f32 = np.dtype(np.float32)
    return _constant_problems(graph, [(a_scale, f32), (b_scale, f32), (y_scale, f32), (a_zero, dtype),
                                      (b_zero, dtype), (y_zero, dtype)])


@kernel("QAddInt8", "QMulInt8", domain=INT8_DOMAIN, check=_check_binary)
def emit_binary(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = node.inputs
    y = node.outputs[0]
    dtype = ctx.info(y).dtype
    sa, za, sb, zb, sy, zy = (_scalar(ctx, n) for n in (a_scale, a_zero, b_scale, b_zero, y_scale, y_zero))
    other = f.local(V128)
    combine: Callable[[], None]
    if node.op_type == "QAddInt8":
        ra, rb = float(np.float32(sa) / np.float32(sy)), float(np.float32(sb) / np.float32(sy))
        c = float(np.float32(zy - ra * za - rb * zb))

        def combine() -> None:
            f.f32x4_const(rb).op("f32x4.mul").set(other).f32x4_const(ra).op("f32x4.mul").get(other).op("f32x4.add")
            f.f32x4_const(c).op("f32x4.add")
    else:
        m = float(np.float32(np.float32(sa) * np.float32(sb) / np.float32(sy)))

        def combine() -> None:
            f.f32x4_const(zb).op("f32x4.sub").set(other).f32x4_const(za).op("f32x4.sub").get(other).op("f32x4.mul")
            f.f32x4_const(m).op("f32x4.mul").f32x4_const(zy).op("f32x4.add")

    emit_elementwise(ctx, (ctx.addr(y), ctx.info(y).shape, _requantized(f, dtype)),
                     [(ctx.addr(a), ctx.info(a).shape, _as_float(dtype)),
                      (ctx.addr(b), ctx.info(b).shape, _as_float(dtype))], combine)


# QGlobalAveragePoolInt8 -------------------------------------------------------------------------------------

def _check_pool(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) != 5 or not all(node.inputs) or len(node.outputs) != 1:
        return ["expects inputs (x, x_scale, x_zero, y_scale, y_zero), as passes/int8_islands.py writes them"]
    x, x_scale, x_zero, y_scale, y_zero = node.inputs
    dtype = graph.info(x).dtype
    if dtype not in QUANTIZED or graph.info(node.outputs[0]).dtype != dtype:
        return ["X and Y must both be int8 or both uint8"]
    if len(graph.info(x).shape) < 3:
        return ["X must have N, C and spatial axes"]
    f32 = np.dtype(np.float32)
    return _constant_problems(graph, [(x_scale, f32), (y_scale, f32), (x_zero, dtype), (y_zero, dtype)])


@kernel("QGlobalAveragePoolInt8", domain=INT8_DOMAIN, check=_check_pool)
def emit_global_pool(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    x, x_scale, x_zero, y_scale, y_zero = node.inputs
    shape, dtype = ctx.info(x).shape, ctx.info(x).dtype
    sign, info = _sign(dtype), np.iinfo(dtype)
    channels, count = shape[0] * shape[1], math.prod(shape[2:])
    scale = np.float32(_scalar(ctx, x_scale)) / (np.float32(_scalar(ctx, y_scale)) * np.float32(count))
    px, py, c, i, total = (f.local(I32) for _ in range(5))
    acc = f.local(V128)
    f.i32(ctx.addr(x)).set(px).i32(ctx.addr(node.outputs[0])).set(py)
    vector = count // 16 * 16
    with f.for_range(c, 0, channels):
        f.i32(0).op("i32x4.splat").set(acc)
        if vector:
            with f.for_range(i, 0, vector, 16):
                f.get(acc).get(px).mem("v128.load", align=0).op(f"i16x8.extadd_pairwise_i8x16_{sign}")
                f.op("i32x4.extadd_pairwise_i16x8_s").op("i32x4.add").set(acc)
                f.inc(px, 16)
        f.get(acc).lane("i32x4.extract_lane", 0)
        for lane in (1, 2, 3):
            f.get(acc).lane("i32x4.extract_lane", lane).op("i32.add")
        f.set(total)
        if count > vector:
            with f.for_range(i, vector, count):
                f.get(total).get(px).mem(f"i32.load8_{sign}").op("i32.add").set(total)
                f.inc(px, 1)
        f.get(py)
        f.get(total).i32(count * int(_scalar(ctx, x_zero))).op("i32.sub").op("f32.convert_i32_s")
        f.f32(float(scale)).op("f32.mul").op("f32.nearest").f32(_scalar(ctx, y_zero)).op("f32.add")
        f.f32(float(info.min)).op("f32.max").f32(float(info.max)).op("f32.min").op("i32.trunc_sat_f32_s")
        f.mem("i32.store8").inc(py, 1)


# QMaxPoolInt8 -----------------------------------------------------------------------------------------------

def _pool_layout(node: Node, graph: Graph) -> tuple[Window, int, int, int]:
    """The window, the padded plane's rows, its row stride (room for 16-byte reads past the last
    column), and where the row of vertical maxima starts in scratch (after the padded plane)."""
    win = pool_window(node, graph)
    rows, cols = padded_dims(win) or win.in_dims
    stride = -(-cols // 16) * 16 + 16
    return win, rows, stride, rows * stride


def _check_max_pool(node: Node, graph: Graph) -> list[str]:
    shape = graph.info(node.inputs[0]).shape
    if graph.info(node.inputs[0]).dtype not in QUANTIZED or graph.info(node.outputs[0]).dtype != \
            graph.info(node.inputs[0]).dtype:
        return ["X and Y must both be int8 or both uint8"]
    if len(shape) != 4 or not node.attr("kernel_shape"):
        return ["X must be [N, C, H, W] and kernel_shape given"]
    problems = window_problems(node, 2)
    if not problems and graph.info(node.outputs[0]).shape != (*shape[:2], *pool_window(node, graph).out_dims):
        problems.append(f"output shape {graph.info(node.outputs[0]).shape} differs from the computed one")
    return problems


def _max_pool_scratch(node: Node, graph: Graph) -> int:
    _, _, stride, row = _pool_layout(node, graph)
    return row + stride


@kernel("QMaxPoolInt8", domain=INT8_DOMAIN, check=_check_max_pool, scratch=_max_pool_scratch)
def emit_max_pool(ctx: Ctx, node: Node) -> None:
    """Each plane is copied into a scratch plane whose border holds the type's minimum (filled once
    per call), so no window needs a bounds check. Then per output row: the maxima over the kernel
    rows, sixteen columns per step (i8x16.max), into a row buffer; and per output the maximum over
    the kernel columns of that row."""
    f = ctx.f
    x, y = node.inputs[0], node.outputs[0]
    shape, dtype = ctx.info(x).shape, ctx.info(x).dtype
    sign = _sign(dtype)
    win, _, stride, row_at = _pool_layout(node, ctx.graph)
    (height, width), (out_h, out_w) = win.in_dims, win.out_dims
    (sh, sw), (dh, dw), (kh, kw) = win.strides, win.dilations, win.kernel
    plane, line, best = ctx.scratch_addr, ctx.scratch_addr + row_at, f.local(I32)
    px, py, p, r, i, src = (f.local(I32) for _ in range(6))
    f.i32(plane).i32(int(np.iinfo(dtype).min) & 255).i32(row_at).memory_fill()
    f.i32(ctx.addr(x)).set(px).i32(ctx.addr(y)).set(py)
    corner = plane + win.pad_begin[0] * stride + win.pad_begin[1]
    with f.for_range(p, 0, shape[0] * shape[1]):
        with f.for_range(r, 0, height):  # the plane's rows into the padded copy
            f.get(r).i32(stride).op("i32.mul").i32(corner).op("i32.add").get(px).i32(width).memory_copy()
            f.inc(px, width)
        with f.for_range(r, 0, out_h):
            f.get(r).i32(sh * stride).op("i32.mul").i32(plane).op("i32.add").set(src)
            with f.for_range(i, 0, stride, 16):  # maxima over the kernel rows
                f.i32(line).get(i).op("i32.add")
                f.get(src).mem("v128.load", align=0)
                for tap in range(1, kh):
                    f.get(src).mem("v128.load", offset=tap * dh * stride, align=0).op(f"i8x16.max_{sign}")
                f.mem("v128.store", align=0)
                f.inc(src, 16)
            f.i32(line).set(src)
            with f.for_range(i, 0, out_w):  # then over the kernel columns
                f.get(src).mem(f"i32.load8_{sign}").set(best)
                for tap in range(1, kw):
                    f.get(src).mem(f"i32.load8_{sign}", offset=tap * dw).get(best)
                    f.get(src).mem(f"i32.load8_{sign}", offset=tap * dw).get(best).op("i32.gt_s").op("select").set(best)
                f.get(py).get(best).mem("i32.store8")
                f.inc(py, 1).inc(src, sw)
