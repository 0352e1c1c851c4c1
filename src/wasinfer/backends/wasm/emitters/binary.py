"""Elementwise ops with numpy broadcasting: Add, Sub, Mul, Div, Max, Min, Sum, Mean, PRelu.

The output is walked in its own order; each operand has a stride per output axis (0 where it
broadcasts). Axes that are contiguous for every tensor are merged first (the loop nest is
lowering/elementwise.py's), so the common cases (same shape, scalar, per-channel) become one
or two loops, the innermost vectorised. Each
tensor's `Access` says how its elements travel between memory and v128 lanes, so one walker
serves float32, the integer types and the bool/mask conversions of kernels/logic.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.writer import I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.elementwise import broadcast_strides, merge_axes

VECTOR_OP = {"Add": "f32x4.add", "Sum": "f32x4.add", "Mean": "f32x4.add", "Sub": "f32x4.sub", "Mul": "f32x4.mul",
             "Div": "f32x4.div", "Max": "f32x4.max", "Min": "f32x4.min"}

Emit = Callable[[Func], object]  # emits code; any return value (a chained Func) is ignored


@dataclass(frozen=True)
class Access:
    """How one tensor's elements reach and leave v128 values in an elementwise loop.

    A vector step moves `lanes` consecutive elements ([ptr] → v128, [ptr, v128] → []); a single
    element is loaded into every lane, so broadcast operands and the loop tail run the same
    combine code, and stored from lane 0.
    """

    size: int
    lanes: int
    load_vector: Emit
    load_scalar: Emit
    store_vector: Emit
    store_scalar: Emit


def plain_access(size: int, load: str, splat: str, extract: str, store: str) -> Access:
    """Elements kept as they are in memory: `16 // size` lanes of their own width."""
    return Access(size, 16 // size,
                  lambda f: f.mem("v128.load"), lambda f: f.mem(load).op(splat),
                  lambda f: f.mem("v128.store"), lambda f: f.lane(extract, 0).mem(store))


F32 = plain_access(4, "f32.load", "f32x4.splat", "f32x4.extract_lane", "f32.store")
LANE_SHAPE = {1: "i8x16", 2: "i16x8", 4: "i32x4", 8: "i64x2"}
INT_ACCESS = {size: plain_access(size, load, f"{LANE_SHAPE[size]}.splat",
                                 f"{LANE_SHAPE[size]}.extract_lane" + ("_u" if size < 4 else ""), store)
              for size, load, store in ((1, "i32.load8_u", "i32.store8"), (2, "i32.load16_u", "i32.store16"),
                                        (4, "i32.load", "i32.store"), (8, "i64.load", "i64.store"))}


def access_for(dtype: np.dtype) -> Access:  # type: ignore[type-arg]
    """The plain access of a whole-byte dtype (float32 as floats, anything else as bits)."""
    return F32 if dtype == np.float32 else INT_ACCESS[dtype.itemsize]


Operand = tuple[int, tuple[int, ...], Access]  # address, shape, access


def emit_elementwise(ctx: Ctx, out: Operand, operands: list[Operand], combine: Callable[[], None],
                     node: Node | None = None) -> None:
    """out = combine(*operands) elementwise with broadcasting; `combine` maps one v128 per operand
    (pushed in order) to the output's v128, and the node's fused activation follows it.

    The innermost loop goes a vector at a time when every access has the output's lane count and
    walks that axis contiguously or not at all; otherwise, and for the tail, one element at a time.
    """
    f = ctx.f
    tensors = [*operands, out]
    out_shape = out[1]
    dims, strides = merge_axes(out_shape, [broadcast_strides(shape, out_shape) for _, shape, _ in tensors])
    outer, inner = dims[:-1], dims[-1]
    ptrs = [f.local(I32) for _ in tensors]
    counters = [f.local(I32) for _ in outer]
    for (addr, _, _), ptr in zip(tensors, ptrs, strict=True):
        f.i32(addr).set(ptr)
    lanes = out[2].lanes
    vectorise = all(acc.lanes == lanes for _, _, acc in operands) and all(s[-1] in (0, 1) for s in strides) \
        and strides[-1][-1] == 1

    def inner_loop() -> None:
        i = f.local(I32)
        saved = [f.local(I32) for _ in ptrs]
        for ptr, keep in zip(ptrs, saved, strict=True):
            f.get(ptr).set(keep)
        vec = inner // lanes * lanes if vectorise else 0
        for start, stop, width in ((0, vec, lanes), (vec, inner, 1)):
            if stop <= start:
                continue
            vector = width > 1
            with f.for_range(i, start, stop, width):
                f.get(ptrs[-1])
                for (_, _, acc), ptr, s in zip(operands, ptrs[:-1], strides[:-1], strict=True):
                    f.get(ptr)
                    (acc.load_vector if vector and s[-1] else acc.load_scalar)(f)
                combine()
                if node is not None:
                    epilogue(ctx, node)
                (out[2].store_vector if vector else out[2].store_scalar)(f)
                for (_, _, acc), ptr, s in zip(tensors, ptrs, strides, strict=True):
                    if s[-1]:
                        f.inc(ptr, s[-1] * acc.size * width)
        for ptr, keep in zip(ptrs, saved, strict=True):
            f.get(keep).set(ptr)

    def level(depth: int) -> None:
        if depth == len(outer):
            inner_loop()
            return
        with f.for_range(counters[depth], 0, outer[depth]):
            saved = [f.local(I32) for _ in ptrs]
            for ptr, keep in zip(ptrs, saved, strict=True):
                f.get(ptr).set(keep)
            level(depth + 1)
            for (_, _, acc), ptr, keep, s in zip(tensors, ptrs, saved, strides, strict=True):
                f.get(keep)
                if s[depth]:
                    f.i32(s[depth] * acc.size).op("i32.add")
                f.set(ptr)

    level(0)


def emit_broadcast(ctx: Ctx, out: int, out_shape: tuple[int, ...], a: int, a_shape: tuple[int, ...],
                   b: int, b_shape: tuple[int, ...], combine: Callable[[], None], node: Node | None) -> None:
    """out = combine(a, b) elementwise on float32; `combine` maps two v128 on the stack to one."""
    emit_elementwise(ctx, (out, out_shape, F32), [(a, a_shape, F32), (b, b_shape, F32)], combine, node)


INTEGER_TYPES = {np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                       np.uint64)}


def check_same_dtype(node: Node, graph: Graph, allowed: set[np.dtype]) -> list[str]:  # type: ignore[type-arg]
    """Every input and output has one dtype, and it is one of `allowed`."""
    names = [n for n in node.inputs + node.outputs if n]
    dtypes = {graph.info(n).dtype for n in names}
    if len(dtypes) > 1:
        return [f"inputs and outputs mix dtypes {sorted(d.name for d in dtypes)}"]
    dtype = dtypes.pop()
    if dtype not in allowed:
        return [f"tensor {names[0]!r} has dtype {dtype}, only {', '.join(sorted(d.name for d in allowed))} "
                "are supported"]
    return []


def _check_binary(node: Node, graph: Graph) -> list[str]:
    float_only = node.op_type == "Mean"  # ONNX defines Mean on floats alone
    problems = check_same_dtype(node, graph, {np.dtype(np.float32)} | (set() if float_only else INTEGER_TYPES))
    fused = node.activation
    if not problems and fused is not None and graph.info(node.outputs[0]).dtype != np.float32:
        problems.append(f"the fused {fused.op_type} applies to float32 only")
    return problems


def _apply(ctx: Ctx, opcode: str) -> None:
    ctx.f.op(opcode)


def lanewise(f: Func, dtype: np.dtype, scalar: Callable[[int, int], object]) -> None:  # type: ignore[type-arg]
    """Two integer v128 → one, lane by lane through `scalar`, which maps the locals a, b (i32, or
    i64 for 8-byte lanes; narrow lanes sign- or zero-extended as the dtype says) to one value."""
    size = dtype.itemsize
    shape = LANE_SHAPE[size]
    extract = f"{shape}.extract_lane" + ("" if size >= 4 else "_u" if dtype.kind == "u" else "_s")
    va, vb = f.local(V128), f.local(V128)
    a, b = f.local(I64 if size == 8 else I32), f.local(I64 if size == 8 else I32)
    f.set(vb).set(va).get(va)
    for lane in range(16 // size):
        f.get(va).lane(extract, lane).set(a).get(vb).lane(extract, lane).set(b)
        scalar(a, b)
        f.lane(f"{shape}.replace_lane", lane)


def integer_op(f: Func, op: str, dtype: np.dtype) -> None:  # type: ignore[type-arg]
    """The integer form of a binary op on two v128 of `dtype`: a SIMD instruction where Wasm has
    one, else lane by lane. Division truncates toward zero as in C; a zero divisor gives 0 and
    MIN / -1 wraps to MIN instead of trapping (both are undefined in ONNX Runtime)."""
    size, signed = dtype.itemsize, dtype.kind == "i"
    shape, reg = LANE_SHAPE[size], "i64" if size == 8 else "i32"
    sign = "s" if signed else "u"
    if op in ("Add", "Sum", "Sub"):
        f.op(f"{shape}.{'sub' if op == 'Sub' else 'add'}")
    elif op == "Mul" and size > 1:
        f.op(f"{shape}.mul")
    elif op in ("Max", "Min") and size < 8:
        f.op(f"{shape}.{op.lower()}_{sign}")
    elif op == "Mul":
        lanewise(f, dtype, lambda a, b: f.get(a).get(b).op(f"{reg}.mul"))
    elif op in ("Max", "Min"):
        cmp = f"{reg}.{'gt' if op == 'Max' else 'lt'}_{sign}"
        lanewise(f, dtype, lambda a, b: f.get(a).get(b).get(a).get(b).op(cmp).op("select"))
    elif op == "Div":
        lanewise(f, dtype, lambda a, b: _guarded_div(f, reg, signed, a, b))
    else:  # pragma: no cover - guarded by the registry
        raise KeyError(op)


def _guarded_div(f: Func, reg: str, signed: bool, a: int, b: int) -> None:
    const = f.i64 if reg == "i64" else f.i32
    const(0)  # the result when b == 0
    if signed:  # b == -1: 0 - a (wrapping) rather than the trapping MIN / -1
        const(0).get(a).op(f"{reg}.sub")
    f.get(a)
    const(1).get(b).get(b).op(f"{reg}.eqz")  # divide by b, or by 1 where b is 0 or -1
    if signed:
        f.get(b)
        const(-1)
        f.op(f"{reg}.eq").op("i32.or")
    f.op("select").op(f"{reg}.div_{'s' if signed else 'u'}")
    if signed:
        f.get(b)
        const(-1)
        f.op(f"{reg}.eq").op("select")
    f.get(b).op(f"{reg}.eqz").op("select")


@kernel("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", check=_check_binary)
def emit_binary(ctx: Ctx, node: Node) -> None:
    """Two inputs in one pass; Sum, Max, Min and Mean of more fold into the output one input at a
    time. Mean divides the sum by the count in the last pass (a division, as ONNX Runtime does, rather
    than a multiplication by the reciprocal, which differs by an ulp)."""
    out = node.outputs[0]
    out_shape = ctx.info(out).shape
    dtype = ctx.info(out).dtype
    inputs = [n for n in node.inputs if n]
    if len(inputs) == 1:  # Sum/Max/Min of one tensor is a copy
        size = ctx.info(out).nbytes
        ctx.f.i32(ctx.addr(out)).i32(ctx.addr(inputs[0])).i32(size).memory_copy()
        return
    access = access_for(dtype)
    if dtype == np.float32:
        op = VECTOR_OP[node.op_type]
        combine: Callable[[], None] = lambda: _apply(ctx, op)  # noqa: E731
    else:
        combine = lambda: integer_op(ctx.f, node.op_type, dtype)  # noqa: E731

    def mean() -> None:
        ctx.f.op("f32x4.add").f32x4_const(float(len(inputs))).op("f32x4.div")

    acc, acc_shape = inputs[0], ctx.info(inputs[0]).shape
    for index, other in enumerate(inputs[1:], start=1):
        last = index == len(inputs) - 1
        emit_elementwise(ctx, (ctx.addr(out), out_shape, access),
                         [(ctx.addr(acc), acc_shape, access), (ctx.addr(other), ctx.info(other).shape, access)],
                         mean if last and node.op_type == "Mean" else combine, node if last else None)
        acc, acc_shape = out, out_shape


def _check_prelu(node: Node, graph: Graph) -> list[str]:
    return only_float32(node, graph)


@kernel("PRelu", check=_check_prelu)
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


__all__ = ["F32", "INTEGER_TYPES", "Access", "Operand", "access_for", "check_same_dtype", "emit_broadcast",
           "emit_elementwise", "integer_op", "lanewise", "plain_access"]
