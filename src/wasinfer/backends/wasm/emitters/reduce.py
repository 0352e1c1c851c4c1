"""Reductions: Softmax, LogSoftmax, Hardmax, ArgMax and ArgMin along one axis; ReduceSum, ReduceMean,
ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum and
ReduceLogSumExp over any set of axes.

The one-axis ops view their input as (outer, n, inner) around the reduced axis. Opset < 13
Softmax coerces the input to 2-D at `axis`, which is the same view with inner = 1. With
inner = 1 a line's elements share a v128; otherwise neighbouring lines do, one per lane, so
no reduction crosses lanes. The Reduce* ops merge neighbouring kept and reduced axes and do
the same with the innermost one: lanes across neighbouring outputs when it is kept, along
the contiguous run (lanes combined at the end) when it is reduced.

Reduce* whose axes are a run-time input (one module for every set of axes: passes/dynamic.py gives each output
dim a symbol of its own) run one scalar kernel instead: it reads the axes into a mask (an axis out of range or
repeated traps the run, as a bad Gather index does), writes the output's dims, and folds every input element
into the output element its kept indices name (`emit_reduce_run_time_axes`). These are rare in real models,
where axes are constants and take the kernels above.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.layout import walk
from wasinfer.backends.wasm.mathfn import exp_v128
from wasinfer.backends.wasm.writer import F32, F64, I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Dim, Expr
from wasinfer.lowering.layout import row_major

LANE0 = np.array([-1, 0, 0, 0], np.int32).tobytes()
STEP_VECTORS = 4  # v128s per step: 16 floats, a cache line


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


def horizontal(f: Func, regs: list[int], vector_op: str, scalar_op: str) -> None:
    """Combine the accumulators `regs` and then their 4 lanes, leaving the result splatted in regs[0]."""
    acc = f.local(F32)
    for reg in regs[1:]:
        f.get(regs[0]).get(reg).op(vector_op).set(regs[0])
    f.get(regs[0]).lane("f32x4.extract_lane", 0).set(acc)
    for lane in (1, 2, 3):
        f.get(acc).get(regs[0]).lane("f32x4.extract_lane", lane).op(scalar_op).set(acc)
    f.get(acc).op("f32x4.splat").set(regs[0])


def walk_segments(f: Func, segments: list[Segment], pointers: list[int], step: Callable[[Segment], None]) -> None:
    """Run `step(segment)` once per step of every segment, then advance each pointer local by the step."""
    j = f.local(I32)
    for seg in segments:
        if seg.count:
            with f.for_range(j, 0, seg.count):
                step(seg)
                for pointer in pointers:
                    f.inc(pointer, seg.advance)


def line_segments(n: int) -> list[Segment]:
    """A contiguous line of n floats: 16 at a time (STEP_VECTORS v128s), then 4, then one by one."""
    wide = 4 * STEP_VECTORS
    return [Segment(n // wide, 4, 4 * wide, STEP_VECTORS), Segment(n % wide // 4, 4, 16), Segment(n % 4, 1, 4)]


def _softmax_lines(ctx: Ctx, log: bool, x: int, y: int, segments: list[Segment], across: bool) -> None:
    """Softmax of the lines starting at pointers `x`/`y`, in three passes (max, exp-sum, scale).

    `across`: the lanes hold neighbouring elements of ONE line (reduced axis innermost), so
    the per-vector accumulators are combined, lanes included, after each reduction.
    Otherwise every lane is its own line (or all lanes the same line, splatted) and each of
    a step's vectors keeps its own accumulators.
    """
    f = ctx.f
    px, py, v = f.local(I32), f.local(I32), f.local(V128)
    vectors = max(seg.vectors for seg in segments)
    vmax = [f.local(V128) for _ in range(vectors)]
    vsum = [f.local(V128) for _ in range(vectors)]

    def line(regs: list[int], k: int) -> int:
        """The accumulator holding vector k's finished reduction."""
        return regs[0] if across else regs[k]

    def walk(body: Callable[[int, int], None]) -> None:
        f.get(x).set(px).get(y).set(py)

        def step(seg: Segment) -> None:
            for k in range(seg.vectors):
                body(seg.width, k)

        walk_segments(f, segments, [px, py], step)

    def max_pass(width: int, k: int) -> None:
        _load(f, px, width, 16 * k)
        f.get(vmax[k]).op("f32x4.max").set(vmax[k])

    def exp_pass(width: int, k: int) -> None:
        _load(f, px, width, 16 * k)
        f.get(line(vmax, k)).op("f32x4.sub").set(v)
        exp_v128(f, v)  # inline: the pass is exp and a sum, a call per vector was a third of it
        f.set(v)
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
        horizontal(f, vmax, "f32x4.max", "f32.max")
    walk(exp_pass)
    if across:
        horizontal(f, vsum, "f32x4.add", "f32.add")
    finished = vsum[:1] if across else vsum
    for k, reg in enumerate(finished):
        if log:
            f.get(reg).call(ctx.helper("log4")).get(line(vmax, k)).op("f32x4.add").set(reg)
        else:
            f.f32x4_const(1.0).get(reg).op("f32x4.div").set(reg)
    walk(log_pass if log else scale_pass)


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
        segments = line_segments(n)
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


# ---------------------------------------------------------------- Hardmax

@kernel("Hardmax", check=lambda node, graph: only_float32(node, graph))
def emit_hardmax(ctx: Ctx, node: Node) -> None:
    """1.0 at the first largest element of each line, 0.0 elsewhere. Lines as Softmax's (2-D before
    opset 13): the line is zeroed, then the best index found as ArgMax does it, and marked. ONNX leaves
    NaN unspecified (ONNX Runtime's answer depends on where it sits): here a NaN after the first element
    is never the largest, and a line that starts with NaN stays all zeros (nothing compares greater)."""
    f = ctx.f
    outer, n, inner = softmax_view(node, ctx.graph)
    if outer * n * inner == 0:
        return
    o, i, j, p, q, best_index = (f.local(I32) for _ in range(6))
    best, value = f.local(F32), f.local(F32)
    with f.for_range(o, 0, outer), f.for_range(i, 0, inner):
        _line_start(f, ctx.addr(node.outputs[0]), o, i, n, inner, 4)
        f.set(q)
        with f.for_range(j, 0, n):
            f.get(q).get(j).i32(inner * 4).op("i32.mul").op("i32.add").f32(0.0).mem("f32.store")
        _line_start(f, ctx.addr(node.inputs[0]), o, i, n, inner, 4)
        f.tee(p).mem("f32.load").set(best).i32(0).set(best_index)
        with f.for_range(j, 1, n):
            f.inc(p, inner * 4)
            f.get(p).mem("f32.load").tee(value).get(best).op("f32.gt")
            with f.if_():
                f.get(value).set(best).get(j).set(best_index)
        f.get(best).get(best).op("f32.eq")
        with f.if_():
            f.get(q).get(best_index).i32(inner * 4).op("i32.mul").op("i32.add").f32(1.0).mem("f32.store")


# ---------------------------------------------------------------- ReduceSum, ReduceMean, ... over any axes

@dataclass(frozen=True)
class Combine:
    """How values are folded together: the empty fold, and the f32x4 / f32 instructions."""

    identity: float
    vector: str
    scalar: str


SUM = Combine(0.0, "f32x4.add", "f32.add")
PROD = Combine(1.0, "f32x4.mul", "f32.mul")
MAX = Combine(float("-inf"), "f32x4.max", "f32.max")
MIN = Combine(float("inf"), "f32x4.min", "f32.min")

# op → (fold, per-element transform, finish), as onnx/reference/ops/op_reduce_*.py; LogSumExp
# folds exp(x - max) after a max pass, so a large x cannot overflow.
REDUCTIONS: dict[str, tuple[Combine, str, str]] = {
    "ReduceSum": (SUM, "", ""), "ReduceMean": (SUM, "", "mean"), "ReduceMax": (MAX, "", ""),
    "ReduceMin": (MIN, "", ""), "ReduceProd": (PROD, "", ""), "ReduceL1": (SUM, "abs", ""),
    "ReduceL2": (SUM, "square", "sqrt"), "ReduceSumSquare": (SUM, "square", ""),
    "ReduceLogSum": (SUM, "", "log"), "ReduceLogSumExp": (SUM, "exp", "log_max"),
}
REDUCE_OPS = tuple(REDUCTIONS)
# The value of a reduction over no elements, as ONNX Runtime writes it (its ReduceMean gives 0).
EMPTY = {"ReduceSum": 0.0, "ReduceMean": 0.0, "ReduceMax": float("-inf"), "ReduceMin": float("inf"),
         "ReduceProd": 1.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0,
         "ReduceLogSum": float("-inf"), "ReduceLogSumExp": float("-inf")}
# Integer (and, for Max/Min from opset 20, bool) reductions go element by element.
INTEGER_REDUCE = {"ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin"}
INTEGER_TYPES = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64", np.dtype(np.bool_): "i32"}


def _axes_input_opset(op: str) -> int:
    """The opset from which `axes` is an input rather than an attribute."""
    return 13 if op == "ReduceSum" else 18


def reduced_axes(node: Node, graph: Graph) -> tuple[int, ...] | str:
    """The reduced axes, non-negative and sorted, or why they are not known at compile time.

    Empty (or absent) axes mean every axis, unless noop_with_empty_axes: then none, which
    still applies the op's per-element part (ReduceSumSquare squares), as the spec says.
    """
    shape = graph.info(node.inputs[0]).shape
    rank = len(shape)
    noop = False
    if graph.opset >= _axes_input_opset(node.op_type):
        noop = bool(node.attr("noop_with_empty_axes", 0))
        name = node.inputs[1] if len(node.inputs) > 1 else ""
        if name and name not in graph.constants:  # the output shape depends on its value
            return "axes is computed at run time; it must be a compile-time constant (an initializer)"
        values = [int(a) for a in graph.constants[name].reshape(-1)] if name else []
    else:
        values = [int(a) for a in node.attr("axes", None) or []]
    if not values:
        return () if noop else tuple(range(rank))
    if any(not -rank <= a < rank for a in values):
        return f"axes {values} are out of range for rank {rank}"
    return tuple(sorted({a % rank for a in values}))


def _check_reduce(node: Node, graph: Graph) -> list[str]:
    dtype = graph.info(node.inputs[0]).dtype
    problems = []
    if dtype != np.float32:
        allowed = dtype in INTEGER_TYPES and node.op_type in INTEGER_REDUCE
        if dtype == np.bool_ and node.op_type not in ("ReduceMax", "ReduceMin"):
            allowed = False
        if not allowed:
            problems.append(f"input dtype {dtype} is not supported (float32; int32/int64 for ReduceSum, ReduceProd, "
                            "ReduceMax and ReduceMin; bool for ReduceMax and ReduceMin)")
    if run_time_axes(node, graph):
        return problems + _check_run_time_axes(node, graph)
    axes = reduced_axes(node, graph)
    if isinstance(axes, str):
        problems.append(axes)
    return problems


def reduce_plan(shape: tuple[int, ...], axes: tuple[int, ...]) -> list[tuple[int, int, bool]]:
    """(size, input element stride, reduced) per axis, with size-1 axes dropped and neighbours
    of the same kind merged (they are contiguous in a row-major tensor)."""
    strides = row_major(shape)
    dims: list[tuple[int, int, bool]] = []
    for axis, size in enumerate(shape):
        if size == 1:
            continue
        reduced = axis in axes
        if dims and dims[-1][2] == reduced:
            dims[-1] = (dims[-1][0] * size, strides[axis], reduced)
        else:
            dims.append((size, strides[axis], reduced))
    return dims or [(1, 1, False)]


def _walk_reduced(f: Func, dims: list[tuple[int, int]], ptr: int, size: int, leaf: Callable[[], None]) -> None:
    """Run `leaf` with the local `ptr` at every element of the (size, stride) axes; `ptr` is restored after."""
    def level(depth: int) -> None:
        if depth == len(dims):
            leaf()
            return
        count, stride = dims[depth]
        saved, counter = f.local(I32), f.local(I32)
        f.get(ptr).set(saved)
        with f.for_range(counter, 0, count):
            level(depth + 1)
            f.inc(ptr, stride * size)
        f.get(saved).set(ptr)

    level(0)


@kernel(*REDUCE_OPS, check=_check_reduce, scratch=lambda node, graph: _run_time_scratch(node, graph))  # 0: static axes
def emit_reduce(ctx: Ctx, node: Node) -> None:
    """Any set of axes, walked as strides: the input is viewed as merged kept and reduced axes.

    When the innermost axis is kept, 16, 4 or 1 neighbouring outputs are computed at once,
    one per lane, walking the reduced axes for each group. When it is reduced, each output
    folds its contiguous innermost run 16 floats at a time into 4 accumulators, whose lanes
    are combined at the end. Integer and bool inputs go element by element.
    """
    if run_time_axes(node, ctx.graph):
        emit_reduce_run_time_axes(ctx, node)
        return
    f = ctx.f
    info, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    axes = reduced_axes(node, ctx.graph)
    assert not isinstance(axes, str)
    count = math.prod(info.shape[a] for a in axes)
    if out.size == 0:
        return
    if count == 0:  # nothing to fold: every output is the empty reduction's value
        empty = EMPTY[node.op_type] if info.dtype == np.float32 else integer_identity(node.op_type, info.dtype)
        filled = ctx.data(np.full(out.shape, empty, info.dtype))
        f.i32(ctx.addr(node.outputs[0])).i32(filled).i32(out.nbytes).memory_copy()
        return
    dims = reduce_plan(info.shape, axes)
    kept = [(size, stride) for size, stride, reduced in dims if not reduced]
    reduced = [(size, stride) for size, stride, is_reduced in dims if is_reduced]
    out_strides = list(row_major(tuple(size for size, _ in kept)))
    pin, pout = f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.inputs[0])).set(pin).i32(ctx.addr(node.outputs[0])).set(pout)
    if info.dtype != np.float32:
        scalar = _IntegerFold(ctx, node.op_type, info.dtype, pin, pout, reduced)
        walk(f, [s for s, _ in kept], [s for _, s in kept], out_strides, pin, pout, info.dtype.itemsize, scalar.emit)
        return
    fold = _Fold(ctx, node.op_type, count, ctx.run_time_count(node.inputs[0], axes))
    if dims[-1][2]:  # innermost axis reduced: along lines
        walk(f, [s for s, _ in kept], [s for _, s in kept], out_strides, pin, pout, 4,
              lambda: fold.along(pin, pout, reduced))
    else:  # innermost axis kept: across lanes
        walk(f, [s for s, _ in kept[:-1]], [s for _, s in kept[:-1]], out_strides[:-1], pin, pout, 4,
              lambda: fold.across(pin, pout, kept[-1][0], reduced))


class _Fold:
    """The float32 reduction of one op, emitted as passes over the reduced elements."""

    def __init__(self, ctx: Ctx, op: str, count: int, divisor: int | None = None):
        self.ctx, self.f, self.count = ctx, ctx.f, count
        self.divisor = divisor  # a v128 local with the run's count, where symbolic dims decide it
        self.combine, self.transform, self.finish = REDUCTIONS[op]
        self.acc = [self.f.local(V128) for _ in range(STEP_VECTORS)]
        self.top = [self.f.local(V128) for _ in range(STEP_VECTORS)]  # LogSumExp's maxima
        self.v = self.f.local(V128)

    def _element(self, top: int) -> None:
        """The v128 on the stack → its transformed value (LogSumExp: exp(x - max))."""
        f = self.f
        if self.transform == "abs":
            f.op("f32x4.abs")
        elif self.transform == "square":
            f.tee(self.v).get(self.v).op("f32x4.mul")
        elif self.transform == "exp":
            f.get(top).op("f32x4.sub").call(self.ctx.helper("exp4"))

    def _finish(self, reg: int, top: int) -> None:
        f = self.f
        f.get(reg)
        if self.finish == "mean":
            (f.f32x4_const(float(self.count)) if self.divisor is None else f.get(self.divisor)).op("f32x4.div")
        elif self.finish == "sqrt":
            f.op("f32x4.sqrt")
        elif self.finish == "log":
            f.call(self.ctx.helper("log4"))
        elif self.finish == "log_max":
            f.call(self.ctx.helper("log4")).get(top).op("f32x4.add")
        f.set(reg)

    def _passes(self) -> list[tuple[Combine, list[int], bool]]:
        """(fold, accumulators, transformed) per pass: LogSumExp's max pass comes first."""
        if self.transform == "exp":
            return [(MAX, self.top, False), (self.combine, self.acc, True)]
        return [(self.combine, self.acc, True)]

    def across(self, pin: int, pout: int, m: int, reduced: list[tuple[int, int]]) -> None:
        """The m contiguous outputs at `pout`: lanes are neighbouring outputs, each folding its
        own elements (input at `pin`, then the reduced axes' strides)."""
        f = self.f
        px, py, q = f.local(I32), f.local(I32), f.local(I32)
        f.get(pin).set(px).get(pout).set(py)

        def step(seg: Segment) -> None:
            for fold, regs, transformed in self._passes():
                for k in range(seg.vectors):
                    f.f32x4_const(fold.identity).set(regs[k])
                f.get(px).set(q)
                _walk_reduced(f, reduced, q, 4, partial(self._fold_step, q, seg, fold, regs, transformed, False))
            for k in range(seg.vectors):
                self._finish(self.acc[k], self.top[k])
                f.get(py).get(self.acc[k])
                _store(f, seg.width, 16 * k)

        walk_segments(f, line_segments(m), [px, py], step)

    def along(self, pin: int, pout: int, reduced: list[tuple[int, int]]) -> None:
        """One output at `pout`: the innermost reduced run is contiguous and folded 16 floats
        at a time into 4 accumulators, whose lanes are combined at the end."""
        f = self.f
        *outer, (run, _) = reduced
        q, p = f.local(I32), f.local(I32)
        for fold, regs, transformed in self._passes():
            for reg in regs:
                f.f32x4_const(fold.identity).set(reg)
            f.get(pin).set(q)

            _walk_reduced(f, outer, q, 4, partial(self._fold_line, q, p, run, fold, regs, transformed))
            horizontal(f, regs, fold.vector, fold.scalar)
        self._finish(self.acc[0], self.top[0])
        f.get(pout).get(self.acc[0]).lane("f32x4.extract_lane", 0).mem("f32.store")

    def _fold_line(self, q: int, p: int, run: int, fold: Combine, regs: list[int], transformed: bool) -> None:
        """Fold the `run` contiguous floats at `q` into regs (through the pointer local `p`)."""
        self.f.get(q).set(p)
        walk_segments(self.f, line_segments(run), [p],
                      lambda seg: self._fold_step(p, seg, fold, regs, transformed, True))

    def _fold_step(self, ptr: int, seg: Segment, fold: Combine, regs: list[int], transformed: bool,
                   lanes: bool) -> None:
        """regs[k] = fold(regs[k], element(vector k at ptr)). `lanes`: the lanes are one line's
        elements (`top` is splatted), so a single element must only touch lane 0."""
        f = self.f
        for k in range(seg.vectors):
            f.get(regs[k])
            _load(f, ptr, seg.width, 16 * k)
            if transformed:
                self._element(self.top[0] if lanes else self.top[k])
            if lanes and seg.width == 1:  # the other lanes are copies: give them the fold's identity
                f.f32x4_const(fold.identity).v128(LANE0).op("v128.bitselect")
            f.op(fold.vector).set(regs[k])


def integer_identity(op: str, dtype: np.dtype) -> int:
    """Where an integer (or bool) fold starts, which is also its value over no elements."""
    if op in ("ReduceMax", "ReduceMin"):
        if dtype == np.bool_:
            return int(op == "ReduceMin")
        limits = np.iinfo(dtype)
        return int(limits.min if op == "ReduceMax" else limits.max)
    return int(op == "ReduceProd")


class _IntegerFold:
    """Sum, Prod, Max or Min of int32, int64 or bool elements, one at a time."""

    def __init__(self, ctx: Ctx, op: str, dtype: np.dtype, pin: int, pout: int, reduced: list[tuple[int, int]]):
        self.f, self.op, self.pin, self.pout, self.reduced = ctx.f, op, pin, pout, reduced
        self.kind = INTEGER_TYPES[dtype]
        self.size = dtype.itemsize
        self.load, self.store = (("i32.load8_u", "i32.store8") if dtype == np.bool_
                                 else (f"{self.kind}.load", f"{self.kind}.store"))
        valtype = I64 if self.kind == "i64" else I32
        self.acc, self.value, self.q = self.f.local(valtype), self.f.local(valtype), self.f.local(I32)
        self.identity = integer_identity(op, dtype)

    def emit(self) -> None:
        f, kind = self.f, self.kind
        (f.i64 if kind == "i64" else f.i32)(self.identity)
        f.set(self.acc).get(self.pin).set(self.q)

        def leaf() -> None:
            f.get(self.q).mem(self.load).set(self.value)
            if self.op in ("ReduceSum", "ReduceProd"):
                f.get(self.acc).get(self.value).op(f"{kind}.add" if self.op == "ReduceSum" else f"{kind}.mul")
            else:  # select(value, acc, value beats acc)
                f.get(self.value).get(self.acc).get(self.value).get(self.acc)
                f.op(f"{kind}.gt_s" if self.op == "ReduceMax" else f"{kind}.lt_s").op("select")
            f.set(self.acc)

        _walk_reduced(f, self.reduced, self.q, self.size, leaf)
        f.get(self.pout).get(self.acc).mem(self.store)


# ---------------------------------------------------------------- Reduce* over run-time axes

def run_time_axes(node: Node, graph: Graph) -> bool:
    """The axes are an input known only at run time (passes/dynamic.py typed the output for them)."""
    name = node.inputs[1] if len(node.inputs) > 1 else ""
    return graph.opset >= _axes_input_opset(node.op_type) and bool(name) and name not in graph.constants


def _check_run_time_axes(node: Node, graph: Graph) -> list[str]:
    x, axes = graph.info(node.inputs[0]), graph.info(node.inputs[1])
    problems = []
    if node.inputs[0] in graph.extents:
        problems.append("axes computed at run time over an input with symbolic dims are not supported")
    if axes.dtype != np.int64 or len(axes.shape) != 1:
        problems.append(f"axes must be a 1-D int64 tensor, not {axes.dtype} {list(axes.shape)}")
    elif axes.shape[0] > len(x.shape):
        problems.append(f"{axes.shape[0]} axes for an input of rank {len(x.shape)}")
    if node.outputs[0] not in graph.tensors or len(x.shape) > 31:
        problems.append("its output has no bounded run-time shape (passes/dynamic.py)")
    return problems


def _run_time_scratch(node: Node, graph: Graph) -> int:
    """LogSumExp over run-time axes keeps each output's sum of exponentials beside its maximum."""
    if node.op_type != "ReduceLogSumExp" or not run_time_axes(node, graph):
        return 0
    return graph.info(node.outputs[0]).size * 4


def _read_axes(f: Func, address: int, count: int, rank: int) -> int:
    """A local with bit j set for each axis j the int64 axes at `address` name (negative ones count from the
    end); an axis outside [-rank, rank) or named twice executes `unreachable`."""
    mask, axis = f.local(I32), f.local(I64)
    position = f.local(I32)
    f.i32(0).set(mask)
    for i in range(count):
        f.i32(address + 8 * i).mem("i64.load", align=0).set(axis)
        f.get(axis).i64(-rank).op("i64.lt_s").get(axis).i64(rank).op("i64.ge_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(axis).op("i32.wrap_i64").set(position)
        f.get(position).get(position).i32(31).op("i32.shr_s").i32(rank).op("i32.and").op("i32.add").set(position)
        f.i32(1).get(position).op("i32.shl").set(position)  # now the axis's bit
        f.get(mask).get(position).op("i32.and")
        with f.if_():
            f.op("unreachable")
        f.get(mask).get(position).op("i32.or").set(mask)
    return mask


def _is_reduced(f: Func, mask: int, axis: int) -> Func:
    """Push 1 where the mask has `axis`, else 0."""
    return f.get(mask).i32(axis).op("i32.shr_u").i32(1).op("i32.and")


def _write_symbol(ctx: Ctx, dim: Dim, value: Callable[[], object]) -> None:
    """Store the i32 `value` pushes as the run's value of `dim`, where it is a symbol (a static dim is known)."""
    if isinstance(dim, Expr):
        ctx.f.i32(ctx.symbols[str(dim)])
        value()
        ctx.f.mem("i32.store")


def _pick(f: Func, when_set: int, otherwise: int, flag: int) -> None:
    """Push `when_set` where the local `flag` is nonzero, else `otherwise`."""
    f.i32(when_set).i32(otherwise).get(flag).op("select")


def _output_strides(ctx: Ctx, node: Node, mask: int) -> list[int]:
    """Per input axis, a local with the output element stride its index moves (0 where it is reduced), in the
    output's largest layout; and each output dim's symbol written on the way."""
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    out = ctx.info(node.outputs[0])
    extent = ctx.graph.decided.get(node.outputs[0], tuple(out.shape))
    largest = row_major(out.shape)
    strides = [f.local(I32) for _ in shape]
    if int(node.attr("keepdims", 1)):
        for j, d in enumerate(shape):
            _is_reduced(f, mask, j).set(strides[j])
            _write_symbol(ctx, extent[j], partial(_pick, f, 1, d, strides[j]))
            f.i32(0).i32(largest[j]).get(strides[j]).op("select").set(strides[j])
        return strides
    count = len(shape) - len(out.shape)  # how many axes each run reduces
    kept = f.local(I32)  # the kept axes before this one: its output axis
    f.i32(0).set(kept)
    for j, d in enumerate(shape):
        f.i32(0).set(strides[j])
        _is_reduced(f, mask, j).op("i32.eqz")
        with f.if_():
            for k in range(max(0, j - count), min(j, len(out.shape) - 1) + 1):
                f.get(kept).i32(k).op("i32.eq")
                with f.if_():
                    f.i32(largest[k]).set(strides[j])
                    _write_symbol(ctx, extent[k], partial(f.i32, d))
            f.inc(kept)
    return strides


def _fold_element(f: Func, op: str, kind: str, transformed: bool, top: int | None, exp: int) -> None:
    """[accumulator, element] on the stack → folded: the op's per-element part (for float32), then its fold."""
    combine, transform, _ = REDUCTIONS[op]
    if kind == "f32":
        if transformed and transform == "abs":
            f.op("f32.abs")
        elif transformed and transform == "square":
            value = f.local(F32)
            f.tee(value).get(value).op("f32.mul")
        elif transformed and transform == "exp":
            assert top is not None
            f.get(top).mem("f32.load").op("f32.sub").op("f32x4.splat").call(exp).lane("f32x4.extract_lane", 0)
        f.op({SUM: "f32.add", PROD: "f32.mul", MAX: "f32.max", MIN: "f32.min"}[combine if transformed else MAX])
        return
    if op in ("ReduceSum", "ReduceProd"):
        f.op(f"{kind}.add" if op == "ReduceSum" else f"{kind}.mul")
        return
    valtype = I64 if kind == "i64" else I32
    acc, value = f.local(valtype), f.local(valtype)  # select(value, acc, value beats acc)
    f.set(value).set(acc).get(value).get(acc).get(value).get(acc)
    f.op(f"{kind}.gt_s" if op == "ReduceMax" else f"{kind}.lt_s").op("select")


def emit_reduce_run_time_axes(ctx: Ctx, node: Node) -> None:
    """Read the axes, write the output's dims, fill the output (its largest layout) with the fold's identity,
    fold every input element into the output element at its kept indices, then finish each output (a mean
    divides by the run's count; L2 takes the root, LogSum the log; LogSumExp folds exp(x - max) after a max
    pass, into scratch)."""
    f = ctx.f
    info, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    shape, dtype = info.shape, info.dtype
    kind = "f32" if dtype == np.float32 else INTEGER_TYPES[dtype]
    size = dtype.itemsize
    load, store = ("i32.load8_u", "i32.store8") if dtype == np.bool_ else (f"{kind}.load", f"{kind}.store")
    mask = _read_axes(f, ctx.addr(node.inputs[1]), ctx.info(node.inputs[1]).shape[0], len(shape))
    strides = _output_strides(ctx, node, mask)
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    pin, pout, i = f.local(I32), f.local(I32), f.local(I32)
    exp = ctx.helper("exp4")
    log_sum_exp = node.op_type == "ReduceLogSumExp"

    def fill(address: int, value: float) -> None:
        with f.for_range(i, 0, out.size):
            f.addr(address, i, size)
            if kind == "f32":
                f.f32(value)
            elif kind == "i64":
                f.i64(int(value))
            else:
                f.i32(int(value))
            f.mem(store, align=0)

    def fold(into: int, transformed: bool) -> None:
        """Every input element into its output element at `into` (the output, or the scratch beside it)."""
        top = f.local(I32) if transformed and log_sum_exp else None
        f.i32(x).set(pin).i32(into).set(pout)

        def level(axis: int) -> None:
            if axis == len(shape):
                if top is not None:
                    f.get(pout).i32(y - into).op("i32.add").set(top)
                f.get(pout).get(pout).mem(load, align=0).get(pin).mem(load, align=0)
                _fold_element(f, node.op_type, kind, transformed, top, exp)
                f.mem(store, align=0).inc(pin, size)
                return
            saved, counter = f.local(I32), f.local(I32)
            f.get(pout).set(saved)
            with f.for_range(counter, 0, shape[axis]):
                level(axis + 1)
                f.get(pout).get(strides[axis]).i32(size).op("i32.mul").op("i32.add").set(pout)
            f.get(saved).set(pout)

        level(0)

    combine, _, finish = REDUCTIONS[node.op_type]
    if kind != "f32":
        fill(y, integer_identity(node.op_type, dtype))
        fold(y, transformed=False)
        return
    fill(y, (MAX if log_sum_exp else combine).identity)
    fold(y, transformed=not log_sum_exp)
    if log_sum_exp:  # the max pass is done: the sums of exp(x - max) into scratch
        fill(ctx.scratch_addr, 0.0)
        fold(ctx.scratch_addr, transformed=True)
    count = f.local(I32)
    if finish == "mean":  # the run's count of reduced elements (at least 1: a mean of none is 0)
        f.i32(1).set(count)
        for j, d in enumerate(shape):
            f.get(count).i32(d).i32(1)
            _is_reduced(f, mask, j)
            f.op("select").op("i32.mul").set(count)
        f.i32(1).get(count).get(count).op("i32.eqz").op("select").set(count)
    if not finish:
        return
    with f.for_range(i, 0, out.size):
        f.addr(y, i, 4)
        if log_sum_exp:
            f.addr(ctx.scratch_addr, i, 4)
        else:
            f.addr(y, i, 4)
        f.mem("f32.load")
        if finish == "mean":
            f.get(count).op("f32.convert_i32_u").op("f32.div")
        elif finish == "sqrt":
            f.op("f32.sqrt")
        else:
            f.op("f32x4.splat").call(ctx.helper("log4")).lane("f32x4.extract_lane", 0)
            if log_sum_exp:
                f.addr(y, i, 4).mem("f32.load").op("f32.add")
        f.mem("f32.store")
