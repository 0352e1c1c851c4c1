"""Ops that walk a line in order: CumSum, CumProd and TopK; and why Range has no kernel.

All view their input as (outer, n, inner) around `axis`, as reduce.py does. CumSum (CumProd)
keeps a running sum (product), four neighbouring lines at once (one per lane) for float32/int32
when the axis is not innermost, adding (multiplying) in order as ONNX Runtime does, so results
match bit for bit. Their axis may be computed at run time: one scan per possible axis is written,
and the run takes the one its axis names.

TopK keeps the best k values seen so far sorted in scratch and inserts each new element
after the ones it does not beat: ties keep the lower index first, as the spec asks and
ONNX Runtime does. k must be a compile-time constant: it sets the output's static size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.indexing import INDEX_TYPES, push_index, write_run_time_dims
from wasinfer.backends.wasm.emitters.reduce import reduce_view
from wasinfer.backends.wasm.writer import F32, F64, I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.scan import topk_axis, topk_scratch


def _axis_value(node: Node, graph: Graph, index: int, default: int) -> int | None:
    """An axis given as a constant input (or absent: `default`); None when computed at run time."""
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name:
        return default
    value = graph.constants.get(name)
    return None if value is None else int(np.asarray(value).reshape(-1)[0])


# ---------------------------------------------------------------- CumSum, CumProd

# dtype → (scalar add, v128 add or "" when lanes are not vectorised); CumProd multiplies
CUMSUM_TYPES = {np.dtype(np.float32): ("f32.add", "f32x4.add"), np.dtype(np.int32): ("i32.add", "i32x4.add"),
                np.dtype(np.int64): ("i64.add", ""), np.dtype(np.float64): ("f64.add", "")}
CUMPROD_TYPES = {np.dtype(np.float32): ("f32.mul", "f32x4.mul"), np.dtype(np.int32): ("i32.mul", "i32x4.mul"),
                 np.dtype(np.int64): ("i64.mul", ""), np.dtype(np.float64): ("f64.mul", "")}


def _cumsum_axis(node: Node, graph: Graph) -> int | None:
    """The axis (non-negative); None when it is read at run time (a vector's is its one axis)."""
    rank = len(graph.info(node.inputs[0]).shape)
    axis = _axis_value(node, graph, 1, 0)
    if axis is None:
        return 0 if rank == 1 else None
    return axis % rank if -rank <= axis < rank else axis


def _check_cumsum(node: Node, graph: Graph) -> list[str]:
    problems = []
    dtype = graph.info(node.inputs[0]).dtype
    rank = len(graph.info(node.inputs[0]).shape)
    if dtype not in CUMSUM_TYPES:
        problems.append(f"input dtype {dtype} is not supported (float32, float64, int32, int64)")
    axis = _cumsum_axis(node, graph)
    if not rank:
        problems.append("input must have at least one axis")
    elif axis is None and graph.info(node.inputs[1]).dtype not in INDEX_TYPES:
        problems.append(f"axis has dtype {graph.info(node.inputs[1]).dtype}; int32 or int64 expected")
    elif axis is not None and not 0 <= axis < rank:
        problems.append(f"axis {axis} is out of range for rank {rank}")
    return problems


@kernel("CumSum", "CumProd", check=_check_cumsum)
def emit_cumsum(ctx: Ctx, node: Node) -> None:
    """y[j] = sum (product) of x[i] for i <= j (i < j when exclusive; from the end when reverse).

    An axis computed at run time is read first (negative counts from the end, outside [-rank, rank)
    traps, as a Gather index does); the scan is written once per axis and the run takes its own."""
    axis = _cumsum_axis(node, ctx.graph)
    if axis is not None:
        _emit_scan(ctx, node, axis)
        return
    f = ctx.f
    rank = len(ctx.info(node.inputs[0]).shape)
    ptr, chosen = f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.inputs[1])).set(ptr)
    push_index(f, ptr, ctx.info(node.inputs[1]).dtype, rank)
    f.set(chosen)
    for candidate in range(rank):
        f.get(chosen).i32(candidate).op("i32.eq")
        with f.if_():
            _emit_scan(ctx, node, candidate)


def _emit_scan(ctx: Ctx, node: Node, axis: int) -> None:
    f = ctx.f
    info = ctx.info(node.inputs[0])
    outer, n, inner = reduce_view(info.shape, axis)
    if outer * n * inner == 0:
        return
    size = info.dtype.itemsize
    product = node.op_type == "CumProd"
    scalar_add, vector_add = (CUMPROD_TYPES if product else CUMSUM_TYPES)[info.dtype]
    exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))
    step = -inner * size if reverse else inner * size
    first = (n - 1) * inner * size if reverse else 0  # byte offset of the first element walked
    o, i, j, px, py = (f.local(I32) for _ in range(5))
    kind = scalar_add.split(".")[0]

    def line(lanes: int) -> None:
        """The lines (o, i..i+lanes-1); the running sum starts at zero, the product at one."""
        valtype = V128 if lanes == 4 else {"f32": F32, "f64": F64, "i32": I32, "i64": I64}[kind]
        acc, value = f.local(valtype), f.local(valtype)
        if lanes == 4:
            f.v128(bytes(16) if not product else np.ones(4, info.dtype).tobytes())
        else:
            {"f32": f.f32, "f64": f.f64, "i32": f.i32, "i64": f.i64}[kind](int(product))
        f.set(acc)
        f.get(o).i32(n * inner).op("i32.mul").get(i).op("i32.add").i32(size).op("i32.mul").i32(first).op("i32.add")
        f.tee(px).i32(ctx.addr(node.outputs[0])).op("i32.add").set(py)
        f.get(px).i32(ctx.addr(node.inputs[0])).op("i32.add").set(px)
        load, store = ("v128.load", "v128.store") if lanes == 4 else (f"{kind}.load", f"{kind}.store")
        add = vector_add if lanes == 4 else scalar_add
        with f.for_range(j, 0, n):
            f.get(px).mem(load).set(value)
            if exclusive:
                f.get(py).get(acc).mem(store)
            f.get(acc).get(value).op(add).set(acc)
            if not exclusive:
                f.get(py).get(acc).mem(store)
            f.inc(px, step).inc(py, step)

    vector_end = inner // 4 * 4 if vector_add else 0
    with f.for_range(o, 0, outer):
        if vector_end:
            with f.for_range(i, 0, vector_end, 4):
                line(4)
        if inner > vector_end:
            with f.for_range(i, vector_end, inner):
                line(1)


# ---------------------------------------------------------------- TopK

# dtype → (wasm value type, instruction prefix, comparison suffix)
TOPK_TYPES = {np.dtype(np.float32): (F32, "f32", ""), np.dtype(np.float64): (F64, "f64", ""),
              np.dtype(np.int32): (I32, "i32", "_s"), np.dtype(np.int64): (I64, "i64", "_s"),
              np.dtype(np.uint32): (I32, "i32", "_u"), np.dtype(np.uint64): (I64, "i64", "_u")}


def _check_topk(node: Node, graph: Graph) -> list[str]:
    problems = []
    info = graph.info(node.inputs[0])
    if info.dtype not in TOPK_TYPES:
        problems.append(f"input dtype {info.dtype} is not supported ({', '.join(str(t) for t in TOPK_TYPES)})")
    rank = len(info.shape)
    axis = int(node.attr("axis", -1))
    if not rank or not -rank <= axis < rank:
        problems.append(f"axis {axis} is out of range for rank {rank}")
        return problems
    k = graph.info(node.outputs[0]).shape[axis % rank]
    given = _axis_value(node, graph, 1, k) if graph.opset >= 10 else int(node.attr("k", k))
    if given is None:  # read at run time: the outputs' size along the axis is the run's (passes/dynamic.py)
        if node.outputs[0] not in graph.decided:
            problems.append("k is computed at run time and its outputs have no bounded run-time shape")
    elif given != k:
        problems.append(f"k={given} disagrees with the output's static size {k}")
    if k > info.shape[axis % rank]:
        problems.append(f"k={k} is larger than the axis ({info.shape[axis % rank]})")
    return problems


@kernel("TopK", check=_check_topk, scratch=topk_scratch)
def emit_topk(ctx: Ctx, node: Node) -> None:
    """Per line: insertion into a sorted list of the k best (values, then int32 indices, in
    scratch), then a copy out along `axis` with the indices widened to int64. `sorted=0`
    leaves the order to the implementation; this one is sorted too."""
    f = ctx.f
    info = ctx.info(node.inputs[0])
    axis = topk_axis(node, ctx.graph)
    outer, n, inner = reduce_view(info.shape, axis)
    k = ctx.info(node.outputs[0]).shape[axis]  # the largest k when it is read at run time
    run_time = node.outputs[0] in ctx.graph.decided
    kk = f.local(I32)  # this run's k
    if run_time:  # an int64 of at most the axis's size, else this run traps (ONNX Runtime fails it too)
        wide = f.local(I64)
        f.i32(ctx.addr(node.inputs[1])).mem("i64.load", align=0).tee(wide).i64(0).op("i64.lt_s")
        f.get(wide).i64(n).op("i64.gt_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(wide).op("i32.wrap_i64").set(kk)
        write_run_time_dims(ctx, Node("TopK", node.name, [], [node.outputs[0]]), kk)  # both outputs' symbol
    else:
        f.i32(k).set(kk)
    if outer * inner * k == 0:
        return
    valtype, prefix, suffix = TOPK_TYPES[info.dtype]
    size = info.dtype.itemsize
    load, store = f"{prefix}.load", f"{prefix}.store"
    values, indices = ctx.scratch_addr, ctx.scratch_addr + k * size
    o, i, j, px, count, pos, last = (f.local(I32) for _ in range(7))
    f.get(kk).i32(1).op("i32.sub").i32(size).op("i32.mul").i32(values).op("i32.add").set(last)
    value, other = f.local(valtype), f.local(valtype)
    largest = bool(int(node.attr("largest", 1)))

    def beats() -> None:
        """Push whether `value` ranks before `other`: NaN above every number, as ONNX Runtime orders."""
        f.get(value).get(other).op(f"{prefix}.{'gt' if largest else 'lt'}{suffix}")
        if prefix[0] == "f":
            nan, number = (value, other) if largest else (other, value)
            f.get(nan).get(nan).op(f"{prefix}.ne").get(number).get(number).op(f"{prefix}.eq").op("i32.and")
            f.op("i32.or")
    with f.for_range(o, 0, outer), f.for_range(i, 0, inner):
        f.get(o).i32(n * inner).op("i32.mul").get(i).op("i32.add").i32(size).op("i32.mul")
        f.i32(ctx.addr(node.inputs[0])).op("i32.add").set(px)
        f.i32(0).set(count)
        with f.for_range(j, 0, n), f.block():  # br 0 here: on to the next element
            f.get(px).mem(load).set(value)
            f.inc(px, inner * size)
            f.get(count).get(kk).op("i32.lt_s")
            with f.if_():
                f.get(count).set(pos).inc(count)
                f.else_()
                f.get(kk).op("i32.eqz").br_if(1)  # k = 0: nothing is kept
                f.get(last).mem(load).set(other)  # the last of the k best
                beats()
                f.op("i32.eqz").br_if(1)
                f.get(kk).i32(1).op("i32.sub").set(pos)
            _shift(f, values, indices, pos, other, size, load, store, beats)
            f.get(pos).i32(size).op("i32.mul").get(value).mem(store, offset=values)
            f.get(pos).i32(4).op("i32.mul").get(j).mem("i32.store", offset=indices)
        _copy_out(ctx, node, o, i, k, kk, inner, size, load, store, run_time)


def _shift(f: Func, values: int, indices: int, pos: int, other: int, size: int, load: str, store: str,
           beats: Callable[[], None]) -> None:
    """Move the entries that `value` beats one slot down, leaving `pos` at its place."""
    with f.block(), f.block(b"\x03"):
        f.get(pos).op("i32.eqz").br_if(1)
        f.get(pos).i32(size).op("i32.mul").mem(load, offset=values - size).set(other)
        beats()
        f.op("i32.eqz").br_if(1)
        f.get(pos).i32(size).op("i32.mul").get(other).mem(store, offset=values)
        f.get(pos).i32(4).op("i32.mul").get(pos).i32(4).op("i32.mul").mem("i32.load", offset=indices - 4)
        f.mem("i32.store", offset=indices)
        f.get(pos).i32(1).op("i32.sub").set(pos).br(0)


def _copy_out(ctx: Ctx, node: Node, o: int, i: int, k: int, kk: int, inner: int, size: int, load: str,
              store: str, run_time: bool) -> None:
    """values[t] → Values[o, t, i] and int64(indices[t]) → Indices[o, t, i] for t < this run's k (the local `kk`;
    the outputs are laid out for the largest k, `k`, when k is read at run time)."""
    f = ctx.f
    values, indices = ctx.scratch_addr, ctx.scratch_addr + k * size
    t, pv, pi = f.local(I32), f.local(I32), f.local(I32)
    f.get(o)
    (f.i32(k) if run_time else f.get(kk)).op("i32.mul")
    f.i32(inner).op("i32.mul").get(i).op("i32.add").tee(pi).i32(size).op("i32.mul")
    f.set(pv)
    f.get(pi).i32(8).op("i32.mul").set(pi)
    with f.for_range(t, 0, ("local", kk)):
        f.get(pv).get(t).i32(size).op("i32.mul").mem(load, offset=values).mem(store, offset=ctx.addr(node.outputs[0]))
        if len(node.outputs) > 1 and node.outputs[1]:
            f.get(pi).get(t).i32(4).op("i32.mul").mem("i32.load", offset=indices)
            f.op("i64.extend_i32_s").mem("i64.store", offset=ctx.addr(node.outputs[1]))
        f.inc(pv, inner * size).inc(pi, inner * 8)
