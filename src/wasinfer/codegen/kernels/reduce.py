"""Reductions along one axis: Softmax, LogSoftmax, ArgMax, ArgMin.

Each views its input as (outer, n, inner) around the reduced axis. Opset < 13 Softmax
coerces the input to 2-D at `axis`, which is the same view with inner = 1. With inner = 1
a line's elements share a v128; otherwise neighbouring lines do, one per lane, so no
reduction crosses lanes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wasinfer.codegen.context import Ctx, kernel, only_float32
from wasinfer.codegen.wasm import F32, F64, I32, I64, V128, Func
from wasinfer.ir import Graph, Node

LANE0 = np.array([-1, 0, 0, 0], np.int32).tobytes()


def reduce_view(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, n, inner) of `shape` around `axis` (already non-negative)."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def softmax_view(node: Node, graph: Graph) -> tuple[int, int, int]:
    shape = graph.info(node.inputs[0]).shape
    if not shape:
        return 1, 1, 1
    if graph.opset < 13:  # coerced to 2-D [prod(shape[:axis]), prod(shape[axis:])]
        axis = int(node.attr("axis", 1)) % len(shape)
        return math.prod(shape[:axis]), math.prod(shape[axis:]), 1
    return reduce_view(shape, int(node.attr("axis", -1)) % len(shape))


# ---------------------------------------------------------------- Softmax / LogSoftmax

@dataclass(frozen=True)
class Segment:
    """`count` steps, `advance` bytes apart, each of `vectors` neighbouring v128s (width 4)
    or of one f32 splatted (width 1)."""

    count: int
    width: int
    advance: int
    vectors: int = 1


def _load(f: Func, ptr: int, width: int, offset: int = 0) -> None:
    f.get(ptr)
    if width == 4:
        f.mem("v128.load", offset=offset)
    else:
        f.mem("f32.load", offset=offset).op("f32x4.splat")


def _store(f: Func, width: int, offset: int = 0) -> None:
    """Store the v128 on the stack at the address below it."""
    if width == 4:
        f.mem("v128.store", offset=offset)
    else:
        f.lane("f32x4.extract_lane", 0).mem("f32.store", offset=offset)


def _horizontal(f: Func, regs: list[int], vector_op: str, scalar_op: str) -> None:
    """Combine the accumulators `regs` and then their 4 lanes, leaving the result splatted in regs[0]."""
    acc = f.local(F32)
    for reg in regs[1:]:
        f.get(regs[0]).get(reg).op(vector_op).set(regs[0])
    f.get(regs[0]).lane("f32x4.extract_lane", 0).set(acc)
    for lane in (1, 2, 3):
        f.get(acc).get(regs[0]).lane("f32x4.extract_lane", lane).op(scalar_op).set(acc)
    f.get(acc).op("f32x4.splat").set(regs[0])


def _softmax_lines(ctx: Ctx, log: bool, x: int, y: int, segments: list[Segment], across: bool) -> None:
    """Softmax of the lines starting at pointers `x`/`y`, in three passes (max, exp-sum, scale).

    `across`: the lanes hold neighbouring elements of ONE line (reduced axis innermost), so
    the per-vector accumulators are combined, lanes included, after each reduction.
    Otherwise every lane is its own line (or all lanes the same line, splatted) and each of
    a step's vectors keeps its own accumulators.
    """
    f = ctx.f
    px, py, j, v = f.local(I32), f.local(I32), f.local(I32), f.local(V128)
    vectors = max(seg.vectors for seg in segments)
    vmax = [f.local(V128) for _ in range(vectors)]
    vsum = [f.local(V128) for _ in range(vectors)]

    def line(regs: list[int], k: int) -> int:
        """The accumulator holding vector k's finished reduction."""
        return regs[0] if across else regs[k]

    def walk(body: Callable[[int, int], None]) -> None:
        f.get(x).set(px).get(y).set(py)
        for seg in segments:
            if seg.count:
                with f.for_range(j, 0, seg.count):
                    for k in range(seg.vectors):
                        body(seg.width, k)
                    f.inc(px, seg.advance).inc(py, seg.advance)

    def max_pass(width: int, k: int) -> None:
        _load(f, px, width, 16 * k)
        f.get(vmax[k]).op("f32x4.max").set(vmax[k])

    def exp_pass(width: int, k: int) -> None:
        _load(f, px, width, 16 * k)
        f.get(line(vmax, k)).op("f32x4.sub").call(ctx.helper("exp4")).set(v)
        if not log:
            f.get(py).get(v)
            _store(f, width, 16 * k)
        if across and width == 1:  # only lane 0 is this element; the others are copies
            f.get(v).v128(LANE0).op("v128.and").set(v)
        f.get(vsum[k]).get(v).op("f32x4.add").set(vsum[k])

    def log_pass(width: int, k: int) -> None:  # y = x - (max + log(sum))
        f.get(py)
        _load(f, px, width, 16 * k)
        f.get(line(vsum, k)).op("f32x4.sub")
        _store(f, width, 16 * k)

    def scale_pass(width: int, k: int) -> None:  # y = exp(x - max) * (1 / sum)
        f.get(py)
        _load(f, py, width, 16 * k)
        f.get(line(vsum, k)).op("f32x4.mul")
        _store(f, width, 16 * k)

    for k in range(vectors):
        f.f32x4_const(float("-inf")).set(vmax[k]).f32x4_const(0.0).set(vsum[k])
    walk(max_pass)
    if across:
        _horizontal(f, vmax, "f32x4.max", "f32.max")
    walk(exp_pass)
    if across:
        _horizontal(f, vsum, "f32x4.add", "f32.add")
    finished = vsum[:1] if across else vsum
    for k, reg in enumerate(finished):
        if log:
            f.get(reg).call(ctx.helper("log4")).get(line(vmax, k)).op("f32x4.add").set(reg)
        else:
            f.f32x4_const(1.0).get(reg).op("f32x4.div").set(reg)
    walk(log_pass if log else scale_pass)


STEP_VECTORS = 4  # v128s per step: 16 floats, a cache line


@kernel("Softmax", "LogSoftmax", check=lambda node, graph: only_float32(node, graph))
def emit_softmax(ctx: Ctx, node: Node) -> None:
    """Numerically stable: y = exp(x - max) / sum, or x - max - log(sum).

    Reduced axis innermost: each line is walked 16, then 4 elements at a time, then one.
    Otherwise neighbouring lines along the inner axes are reduced together, one per lane:
    16 at a time, then 4, then one by one.
    """
    f = ctx.f
    outer, n, inner = softmax_view(node, ctx.graph)
    log = node.op_type == "LogSoftmax"
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    line_bytes = n * inner * 4
    o, i, x, y = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    if outer * n * inner == 0:
        return
    wide = 4 * STEP_VECTORS
    if inner == 1:
        segments = [Segment(n // wide, 4, 4 * wide, STEP_VECTORS), Segment(n % wide // 4, 4, 16),
                    Segment(n % 4, 1, 4)]
        with f.for_range(o, 0, outer):
            f.addr(src, o, line_bytes).set(x).addr(dst, o, line_bytes).set(y)
            _softmax_lines(ctx, log, x, y, segments, across=True)
        return
    # (first, stop, lanes per step, step) along the inner axes
    groups = [(0, inner // wide * wide, STEP_VECTORS, 4), (inner // wide * wide, inner // 4 * 4, 1, 4),
              (inner // 4 * 4, inner, 1, 1)]
    with f.for_range(o, 0, outer):
        for first, stop, vectors, width in groups:
            if stop <= first:
                continue
            with f.for_range(i, first, stop, vectors * width):
                # x = src + o*line_bytes + i*4
                f.get(o).i32(line_bytes).op("i32.mul").get(i).i32(4).op("i32.mul").op("i32.add").set(x)
                f.get(x).i32(dst).op("i32.add").set(y).get(x).i32(src).op("i32.add").set(x)
                _softmax_lines(ctx, log, x, y, [Segment(n, width, inner * 4, vectors)], across=False)


# ---------------------------------------------------------------- ArgMax / ArgMin

@dataclass(frozen=True)
class Scalar:
    """How to load and compare one element of a dtype."""

    valtype: int
    load: str
    prefix: str  # opcode family of the comparison
    signed: bool


SCALARS = {
    np.dtype(np.float32): Scalar(F32, "f32.load", "f32", False),
    np.dtype(np.float64): Scalar(F64, "f64.load", "f64", False),
    np.dtype(np.int64): Scalar(I64, "i64.load", "i64", True),
    np.dtype(np.int32): Scalar(I32, "i32.load", "i32", True),
    np.dtype(np.int8): Scalar(I32, "i32.load8_s", "i32", True),
    np.dtype(np.uint8): Scalar(I32, "i32.load8_u", "i32", True),  # 0..255 compares right signed
}


def _check_arg(node: Node, graph: Graph) -> list[str]:
    dtype = graph.info(node.inputs[0]).dtype
    if dtype not in SCALARS:
        return [f"input dtype {dtype} is not supported (supported: {', '.join(str(d) for d in SCALARS)})"]
    return []


BETTER = {("ArgMax", False): "gt", ("ArgMax", True): "ge", ("ArgMin", False): "lt", ("ArgMin", True): "le"}


@kernel("ArgMax", "ArgMin", check=_check_arg)
def emit_argmax(ctx: Ctx, node: Node) -> None:
    """Index of the first (or, with select_last_index, last) extreme along `axis`, as int64.

    keepdims changes only the output shape, which the graph already carries. For float32
    with the reduced axis not innermost, 4 neighbouring lines are reduced at once, one per
    lane; the rest goes one line at a time.
    """
    f = ctx.f
    info = ctx.info(node.inputs[0])
    shape = info.shape or (1,)
    outer, n, inner = reduce_view(shape, int(node.attr("axis", 0)) % len(shape))
    better = BETTER[(node.op_type, bool(node.attr("select_last_index", 0)))]
    o, i = f.local(I32), f.local(I32)
    if outer * n * inner == 0:
        return
    vector_end = inner // 4 * 4 if info.dtype == np.float32 else 0
    with f.for_range(o, 0, outer):
        if vector_end:
            with f.for_range(i, 0, vector_end, 4):
                _argmax_lanes(ctx, node, o, i, n, inner, f"f32x4.{better}")
        if inner > vector_end:
            with f.for_range(i, vector_end, inner):
                _argmax_line(ctx, node, o, i, n, inner, better)


def _line_start(f: Func, base: int, o: int, i: int, n: int, inner: int, size: int) -> None:
    """Push base + (o*n*inner + i) * size: element 0 of the line (o, i)."""
    f.get(o).i32(n * inner).op("i32.mul").get(i).op("i32.add").i32(size).op("i32.mul").i32(base).op("i32.add")


def _store_index(f: Func, dst: int, o: int, i: int, inner: int) -> None:
    """Push the int64 output address of line (o, i)."""
    _line_start(f, dst, o, i, 1, inner, 8)


def _argmax_line(ctx: Ctx, node: Node, o: int, i: int, n: int, inner: int, better: str) -> None:
    """Line (o, i), any supported dtype: the best value and its index in scalar locals."""
    f = ctx.f
    info = ctx.info(node.inputs[0])
    scalar, size = SCALARS[info.dtype], info.dtype.itemsize
    compare = f"{scalar.prefix}.{better}" + ("_s" if scalar.signed else "")
    j, p, best_index = f.local(I32), f.local(I32), f.local(I32)
    best, value = f.local(scalar.valtype), f.local(scalar.valtype)
    _line_start(f, ctx.addr(node.inputs[0]), o, i, n, inner, size)
    f.tee(p).mem(scalar.load).set(best).i32(0).set(best_index)
    with f.for_range(j, 1, n):
        f.inc(p, inner * size)
        f.get(p).mem(scalar.load).tee(value).get(best).op(compare)
        with f.if_():
            f.get(value).set(best).get(j).set(best_index)
    _store_index(f, ctx.addr(node.outputs[0]), o, i, inner)
    f.get(best_index).op("i64.extend_i32_s").mem("i64.store")


def _argmax_lanes(ctx: Ctx, node: Node, o: int, i: int, n: int, inner: int, compare: str) -> None:
    """Lines (o, i..i+3) of a float32 input at once: best values and indices kept per lane."""
    f = ctx.f
    j, p = f.local(I32), f.local(I32)
    best, best_index, value, mask = f.local(V128), f.local(V128), f.local(V128), f.local(V128)
    _line_start(f, ctx.addr(node.inputs[0]), o, i, n, inner, 4)
    f.tee(p).mem("v128.load").set(best).i32(0).op("i32x4.splat").set(best_index)
    with f.for_range(j, 1, n):
        f.inc(p, inner * 4)
        f.get(p).mem("v128.load").tee(value).get(best).op(compare).set(mask)
        f.get(value).get(best).get(mask).op("v128.bitselect").set(best)
        f.get(j).op("i32x4.splat").get(best_index).get(mask).op("v128.bitselect").set(best_index)
    _store_index(f, ctx.addr(node.outputs[0]), o, i, inner)
    f.tee(p).get(best_index).op("i64x2.extend_low_i32x4_s").mem("v128.store")
    f.get(p).get(best_index).op("i64x2.extend_high_i32x4_s").mem("v128.store", offset=16)
