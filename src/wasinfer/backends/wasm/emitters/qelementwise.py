"""The integer kernels of a quantized graph's element-wise islands (passes/int8_islands.py fuses them).

- QLookupInt8: y[i] = table[x[i] & 255], eight elements per step (one i64 load of x's bytes, eight
  byte loads from the 256-entry table, whose address is the load's offset, eight byte stores: a
  few percent faster than four per step, and than sixteen through v128 lane extracts and inserts).
- QAddInt8 / QMulInt8: a broadcasting walk over the (u)int8 operands read as float32 lanes
  (sixteen bytes widened per step): Add computes ra * a + rb * b + c with
  ra = a_scale / y_scale, rb = b_scale / y_scale and c = y_zero - ra * a_zero - rb * b_zero folded
  at compile time; Mul computes (a - a_zero) * (b - b_zero) * m + y_zero with
  m = a_scale * b_scale / y_scale. The sum is rounded with ties to even (f32x4.nearest) and
  narrowed with saturation (i32 → i16 → (u)int8) on the way to memory, then clamped to a fused
  Relu/Clip's [y_lo, y_hi] where those inputs are given. ONNX Runtime's QLinearAdd
  uses fixed-point multipliers on x86 and QLinearMul float ones: the results differ from it at
  most where a value lies within float32 rounding of a half step, by one step.
- QGlobalAveragePoolInt8: per channel, sixteen bytes a step summed pairwise into i32 lanes
  (extadd_pairwise twice), then requantised once as MLAS's QLinearGlobalAveragePool does:
  float32(sum - count * x_zero) * (x_scale / (y_scale * count)), rounded, plus y_zero, saturated.
- QMaxPoolInt8, QAveragePoolInt8: 2-D pools over a padded copy of each plane, sixteen columns a
  step over the kernel rows (i8x16.max; i16 sums), then per output over the kernel columns. Max
  commutes with quantisation, so MaxPool runs on the integers as they are; AveragePool sums in
  integers and requantises each output once, dividing as ONNX Runtime's AveragePool does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.writer import I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.elementwise import broadcast_strides, merge_axes
from wasinfer.lowering.window import Window, average_divisors, padded_dims, pool_window, window_problems
from wasinfer.ops.quantized import INT8_DOMAIN, MAX_SUMMED_ROWS

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
    px, py, i = (f.local(I32) for _ in range(3))
    word = f.local(I64)
    f.i32(ctx.addr(x)).set(px).i32(ctx.addr(node.outputs[0])).set(py)
    vector = size // 8 * 8
    if vector:
        with f.for_range(i, 0, vector, 8):
            f.get(px).mem("i64.load", align=0).set(word)
            for lane in range(8):
                f.get(py).get(word)
                if lane:
                    f.i64(8 * lane).op("i64.shr_u")
                f.op("i32.wrap_i64")
                if lane < 7:
                    f.i32(255).op("i32.and")
                f.mem("i32.load8_u", offset=table_addr).mem("i32.store8", offset=lane)
            f.inc(px, 8).inc(py, 8)
    if size > vector:
        with f.for_range(i, vector, size):
            f.get(py).get(px).mem("i32.load8_u").mem("i32.load8_u", offset=table_addr).mem("i32.store8")
            f.inc(px, 1).inc(py, 1)


# QAddInt8, QMulInt8 -----------------------------------------------------------------------------------------

def _widen(f: Func, raw: int, quarter: int, sign: str) -> None:
    """Push bytes 4q..4q+3 of the v128 in `raw` as float32 lanes."""
    f.get(raw).op(f"i16x8.extend_{'low' if quarter < 2 else 'high'}_i8x16_{sign}")
    f.op(f"i32x4.extend_{'low' if quarter % 2 == 0 else 'high'}_i16x8_{sign}").op("f32x4.convert_i32x4_s")


def _check_binary(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) not in (8, 10) or not all(node.inputs) or len(node.outputs) != 1:
        return ["expects inputs (a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero[, y_lo, y_hi]), as "
                "passes/int8_islands.py writes them"]
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = node.inputs[:8]
    dtype = graph.info(node.outputs[0]).dtype
    if dtype not in QUANTIZED or graph.info(a).dtype != dtype or graph.info(b).dtype != dtype:
        return ["A, B and Y must all be int8 or all uint8"]
    f32 = np.dtype(np.float32)
    return _constant_problems(graph, [(a_scale, f32), (b_scale, f32), (y_scale, f32), (a_zero, dtype),
                                      (b_zero, dtype), (y_zero, dtype), *((n, dtype) for n in node.inputs[8:])])


@kernel("QAddInt8", "QMulInt8", domain=INT8_DOMAIN, check=_check_binary)
def emit_binary(ctx: Ctx, node: Node) -> None:
    """Each operand becomes a term (Add: ra * a and rb * b + c; Mul: a - a_zero and (b - b_zero) * m),
    then the terms join (Add: +; Mul: *, then + y_zero). The output is walked as emitters/binary.py
    walks it (broadcast axes merged, lowering/elementwise.py); the innermost axis goes sixteen elements
    a step: one v128 load per operand widened to four float32 quarters, four rounded i32x4 narrowed
    to one v128 store. An operand that broadcasts along that axis has its term computed once per row."""
    f = ctx.f
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = node.inputs[:8]
    y = node.outputs[0]
    dtype, out_shape = ctx.info(y).dtype, ctx.info(y).shape
    sign, info = _sign(dtype), np.iinfo(dtype)
    lo, hi = (int(_scalar(ctx, n)) for n in node.inputs[8:]) if len(node.inputs) == 10 else (info.min, info.max)

    def clamp() -> None:
        """The fused Relu/Clip's range, on the sixteen narrowed bytes."""
        if lo > info.min:
            f.v128(bytes([lo & 255] * 16)).op(f"i8x16.max_{sign}")
        if hi < info.max:
            f.v128(bytes([hi & 255] * 16)).op(f"i8x16.min_{sign}")

    sa, za, sb, zb, sy, zy = (_scalar(ctx, n) for n in (a_scale, a_zero, b_scale, b_zero, y_scale, y_zero))
    terms: tuple[Callable[[], object], Callable[[], object]]
    if node.op_type == "QAddInt8":
        ra, rb = float(np.float32(sa) / np.float32(sy)), float(np.float32(sb) / np.float32(sy))
        c = float(np.float32(zy - ra * za - rb * zb))
        terms = (lambda: f.f32x4_const(ra).op("f32x4.mul"),
                 lambda: f.f32x4_const(rb).op("f32x4.mul").f32x4_const(c).op("f32x4.add"))

        def join() -> None:
            f.op("f32x4.add")
    else:
        m = float(np.float32(np.float32(sa) * np.float32(sb) / np.float32(sy)))
        terms = (lambda: f.f32x4_const(za).op("f32x4.sub"),
                 lambda: f.f32x4_const(zb).op("f32x4.sub").f32x4_const(m).op("f32x4.mul"))

        def join() -> None:
            f.op("f32x4.mul").f32x4_const(zy).op("f32x4.add")

    shapes = (ctx.info(a).shape, ctx.info(b).shape, out_shape)
    dims, strides = merge_axes(out_shape, [broadcast_strides(shape, out_shape) for shape in shapes])
    outer, inner = dims[:-1], dims[-1]
    ptrs = [f.local(I32) for _ in shapes]
    for name, ptr in zip((a, b, y), ptrs, strict=True):
        f.i32(ctx.addr(name)).set(ptr)
    streams = [strides[k][-1] == 1 for k in (0, 1)]
    raw, fixed = [f.local(V128) for _ in range(2)], [f.local(V128) for _ in range(2)]
    parts = [f.local(V128) for _ in range(4)]

    def scalar(k: int) -> None:
        f.get(ptrs[k]).mem(f"i32.load8_{sign}").op("f32.convert_i32_s").op("f32x4.splat")

    def value(k: int, quarter: int | None) -> None:
        """Operand k's term: a streamed one from the quarter of its v128 (None: its one element), a
        broadcast one as hoisted."""
        if not streams[k]:
            f.get(fixed[k])
            return
        if quarter is None:
            scalar(k)
        else:
            _widen(f, raw[k], quarter, sign)
        terms[k]()

    def inner_loop() -> None:
        i = f.local(I32)
        saved = [f.local(I32) for _ in ptrs]
        for ptr, keep in zip(ptrs, saved, strict=True):
            f.get(ptr).set(keep)
        for k in (0, 1):
            if not streams[k]:
                scalar(k)
                terms[k]()
                f.set(fixed[k])
        vector = inner // 16 * 16
        if vector:
            with f.for_range(i, 0, vector, 16):
                for k in (0, 1):
                    if streams[k]:
                        f.get(ptrs[k]).mem("v128.load", align=0).set(raw[k])
                for quarter in range(4):
                    for k in (0, 1):
                        value(k, quarter)
                    join()
                    f.op("f32x4.nearest").op("i32x4.trunc_sat_f32x4_s").set(parts[quarter])
                f.get(ptrs[2]).get(parts[0]).get(parts[1]).op("i16x8.narrow_i32x4_s")
                f.get(parts[2]).get(parts[3]).op("i16x8.narrow_i32x4_s").op(f"i8x16.narrow_i16x8_{sign}")
                clamp()
                f.mem("v128.store", align=0)
                for k, ptr in enumerate(ptrs):
                    if k == 2 or streams[k]:
                        f.inc(ptr, 16)
        if inner > vector:
            with f.for_range(i, vector, inner):
                f.get(ptrs[2])
                for k in (0, 1):
                    value(k, None)
                join()
                f.op("f32x4.nearest").op("i32x4.trunc_sat_f32x4_s").tee(parts[0]).get(parts[0])
                f.op("i16x8.narrow_i32x4_s").tee(parts[0]).get(parts[0]).op(f"i8x16.narrow_i16x8_{sign}")
                clamp()
                f.lane("i8x16.extract_lane_u", 0).mem("i32.store8")
                for k, ptr in enumerate(ptrs):
                    if k == 2 or streams[k]:
                        f.inc(ptr, 1)
        for ptr, keep in zip(ptrs, saved, strict=True):
            f.get(keep).set(ptr)

    def level(depth: int) -> None:
        if depth == len(outer):
            inner_loop()
            return
        counter = f.local(I32)
        with f.for_range(counter, 0, outer[depth]):
            saved = [f.local(I32) for _ in ptrs]
            for ptr, keep in zip(ptrs, saved, strict=True):
                f.get(ptr).set(keep)
            level(depth + 1)
            for ptr, keep, stride in zip(ptrs, saved, strides, strict=True):
                f.get(keep)
                if stride[depth]:
                    f.i32(stride[depth]).op("i32.add")
                f.set(ptr)

    level(0)


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


# QMaxPoolInt8, QAveragePoolInt8 -----------------------------------------------------------------------------

def _pool_layout(node: Node, graph: Graph) -> tuple[Window, int, int]:
    """The window, the padded plane's row stride (its columns rounded up to 16-byte steps) and its
    size in bytes; the row buffer of the kernel-row reductions follows the plane in scratch."""
    win = pool_window(node, graph)
    rows, cols = padded_dims(win) or win.in_dims
    stride = -(-cols // 16) * 16
    return win, stride, rows * stride


def _check_window(node: Node, graph: Graph) -> list[str]:
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


def _pool_scratch(node: Node, graph: Graph) -> int:
    _, stride, plane = _pool_layout(node, graph)
    return plane + 2 * stride  # the row buffer: one i16 per column at most


def _emit_pool_rows(ctx: Ctx, node: Node, fill: int, vertical: Callable[[int, int, int], None],
                    horizontal: Callable[[int, int, int], None]) -> None:
    """Each plane is copied into a scratch plane whose border holds `fill` (written once per call), so
    no window needs a bounds check. Then per output row r: `vertical(src, column, line)` reduces the
    kernel rows of sixteen columns (src: their top-left byte, column: the local counting columns,
    line: the row buffer's address), and `horizontal(r, line, y)` the kernel columns of the row buffer
    into the output row (y: the local pointing at it)."""
    f = ctx.f
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.info(x).shape
    win, stride, size = _pool_layout(node, ctx.graph)
    (height, width), out_h = win.in_dims, win.out_dims[0]
    plane, line = ctx.scratch_addr, ctx.scratch_addr + size
    px, py, p, r, i, src = (f.local(I32) for _ in range(6))
    f.i32(plane).i32(fill & 255).i32(size).memory_fill()
    f.i32(ctx.addr(x)).set(px).i32(ctx.addr(y)).set(py)
    corner = plane + win.pad_begin[0] * stride + win.pad_begin[1]
    with f.for_range(p, 0, shape[0] * shape[1]):
        with f.for_range(r, 0, height):  # the plane's rows into the padded copy
            f.get(r).i32(stride).op("i32.mul").i32(corner).op("i32.add").get(px).i32(width).memory_copy()
            f.inc(px, width)
        with f.for_range(r, 0, out_h):
            f.get(r).i32(win.strides[0] * stride).op("i32.mul").i32(plane).op("i32.add").set(src)
            with f.for_range(i, 0, stride, 16):
                vertical(src, i, line)
                f.inc(src, 16)
            horizontal(r, line, py)


@kernel("QMaxPoolInt8", domain=INT8_DOMAIN, check=_check_window, scratch=_pool_scratch)
def emit_max_pool(ctx: Ctx, node: Node) -> None:
    """The maxima over the kernel rows sixteen columns a step (i8x16.max), then over the kernel
    columns, sixteen outputs a step where the column stride is 1, else one at a time; the border
    holds the type's minimum."""
    f = ctx.f
    dtype = ctx.info(node.inputs[0]).dtype
    sign = _sign(dtype)
    win, stride, _ = _pool_layout(node, ctx.graph)
    (_, sw), (dh, dw), (kh, kw) = win.strides, win.dilations, win.kernel
    best, src = f.local(I32), f.local(I32)
    column = f.local(I32)

    def vertical(top: int, i: int, line: int) -> None:
        f.get(i).i32(line).op("i32.add")
        f.get(top).mem("v128.load", align=0)
        for tap in range(1, kh):
            f.get(top).mem("v128.load", offset=tap * dh * stride, align=0).op(f"i8x16.max_{sign}")
        f.mem("v128.store", align=0)

    out_w = win.out_dims[1]
    vector = out_w // 16 * 16 if sw == 1 else 0

    def horizontal(r: int, line: int, py: int) -> None:
        f.i32(line).set(src)
        if vector:  # a unit column stride: sixteen outputs a step
            with f.for_range(column, 0, vector, 16):
                f.get(py).get(src).mem("v128.load", align=0)
                for tap in range(1, kw):
                    f.get(src).mem("v128.load", offset=tap * dw, align=0).op(f"i8x16.max_{sign}")
                f.mem("v128.store", align=0).inc(py, 16).inc(src, 16)
        with f.for_range(column, vector, out_w):
            f.get(src).mem(f"i32.load8_{sign}").set(best)
            for tap in range(1, kw):
                f.get(src).mem(f"i32.load8_{sign}", offset=tap * dw).get(best)
                f.get(src).mem(f"i32.load8_{sign}", offset=tap * dw).get(best).op("i32.gt_s").op("select").set(best)
            f.get(py).get(best).mem("i32.store8")
            f.inc(py, 1).inc(src, sw)

    _emit_pool_rows(ctx, node, int(np.iinfo(dtype).min), vertical, horizontal)


def _check_average_pool(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) != 5 or not all(node.inputs) or len(node.outputs) != 1:
        return ["expects inputs (x, x_scale, x_zero, y_scale, y_zero), as passes/int8_islands.py writes them"]
    problems = _check_window(node, graph)
    if problems:
        return problems
    _, x_scale, x_zero, y_scale, y_zero = node.inputs
    dtype, f32 = graph.info(node.inputs[0]).dtype, np.dtype(np.float32)
    if int(node.attr("kernel_shape")[0]) > MAX_SUMMED_ROWS:
        problems.append(f"kernel of more than {MAX_SUMMED_ROWS} rows")
    return problems + _constant_problems(graph, [(x_scale, f32), (y_scale, f32), (x_zero, dtype), (y_zero, dtype)])


@kernel("QAveragePoolInt8", domain=INT8_DOMAIN, check=_check_average_pool, scratch=_pool_scratch)
def emit_average_pool(ctx: Ctx, node: Node) -> None:
    """The sums over the kernel rows sixteen columns a step, widened to i16 lanes, then per output
    the sum over the kernel columns, requantised: float32(sum - taps * x_zero) * factor, rounded, plus
    y_zero, saturated, where factor = x_scale / y_scale / divisor (a constant, or a table per output
    where the divisors differ: AveragePool's count_include_pad, lowering/window.py). The border holds
    x_zero, so padding adds nothing. With a unit column stride and sums that stay in i16 (at most
    128 taps), eight outputs a step."""
    f = ctx.f
    x, x_scale, x_zero, y_scale, y_zero = node.inputs
    dtype = ctx.info(x).dtype
    sign, info = _sign(dtype), np.iinfo(dtype)
    win, stride, _ = _pool_layout(node, ctx.graph)
    (_, out_w), (_, sw), (dh, dw), (kh, kw) = win.out_dims, win.strides, win.dilations, win.kernel
    zero_x, zero_y = int(_scalar(ctx, x_zero)), _scalar(ctx, y_zero)
    ratio = float(np.float32(_scalar(ctx, x_scale)) / np.float32(_scalar(ctx, y_scale)))
    divisors = average_divisors(win, bool(node.attr("count_include_pad", 0)))
    factors = 0
    if divisors.uniform is None:
        counts = np.multiply.outer(divisors.rows.astype(np.float64), divisors.cols.astype(np.float64))
        factors = ctx.data((ratio / counts).astype(np.float32).reshape(-1))
    low, high, raw, vec = (f.local(V128) for _ in range(4))
    src, pf, column = (f.local(I32) for _ in range(3))
    vector = out_w // 8 * 8 if sw == 1 and kh * kw <= 128 else 0

    def factor(lanes: int) -> None:
        if divisors.uniform is not None:
            f.f32(ratio / divisors.uniform)
            if lanes > 1:
                f.op("f32x4.splat")
        else:
            f.get(pf).mem("v128.load" if lanes > 1 else "f32.load", align=0)

    def vertical(top: int, i: int, line: int) -> None:
        for tap in range(kh):
            f.get(top).mem("v128.load", offset=tap * dh * stride, align=0).set(raw)
            for half, acc in (("low", low), ("high", high)):
                f.get(raw).op(f"i16x8.extend_{half}_i8x16_{sign}")
                if tap:
                    f.get(acc).op("i16x8.add")
                f.set(acc)
        for offset, acc in ((0, low), (16, high)):
            f.get(i).get(i).op("i32.add").i32(line).op("i32.add").get(acc).mem("v128.store", offset=offset, align=0)

    def horizontal(r: int, line: int, py: int) -> None:
        f.i32(line).set(src)
        if divisors.uniform is None:
            f.get(r).i32(4 * out_w).op("i32.mul").i32(factors).op("i32.add").set(pf)
        if vector:
            with f.for_range(column, 0, vector, 8):
                f.get(src).mem("v128.load", align=0)
                for tap in range(1, kw):
                    f.get(src).mem("v128.load", offset=2 * tap * dw, align=0).op("i16x8.add")
                f.set(vec)
                for half, acc in (("low", low), ("high", high)):
                    f.get(vec).op(f"i32x4.extend_{half}_i16x8_s").i32(kh * kw * zero_x).op("i32x4.splat")
                    f.op("i32x4.sub").op("f32x4.convert_i32x4_s")
                    factor(4)
                    f.op("f32x4.mul").op("f32x4.nearest").f32x4_const(zero_y).op("f32x4.add")
                    f.op("i32x4.trunc_sat_f32x4_s").set(acc)
                    if divisors.uniform is None:
                        f.inc(pf, 16)
                f.get(py).get(low).get(high).op("i16x8.narrow_i32x4_s").tee(vec).get(vec)
                f.op(f"i8x16.narrow_i16x8_{sign}").lane("i64x2.extract_lane", 0).mem("i64.store", align=0)
                f.inc(py, 8).inc(src, 16)
        if out_w > vector:
            with f.for_range(column, vector, out_w):
                f.get(py).get(src).mem("i32.load16_s")
                for tap in range(1, kw):
                    f.get(src).mem("i32.load16_s", offset=2 * tap * dw).op("i32.add")
                f.i32(kh * kw * zero_x).op("i32.sub").op("f32.convert_i32_s")
                factor(1)
                f.op("f32.mul").op("f32.nearest").f32(zero_y).op("f32.add")
                f.f32(float(info.min)).op("f32.max").f32(float(info.max)).op("f32.min").op("i32.trunc_sat_f32_s")
                f.mem("i32.store8").inc(py, 1).inc(src, 2 * sw)
                if divisors.uniform is None:
                    f.inc(pf, 4)

    _emit_pool_rows(ctx, node, zero_x, vertical, horizontal)
