"""Ops whose output follows a pattern of positions: Trilu, EyeLike, OneHot and ReverseSequence, for any
whole-byte dtype (elements moved or written as bits, as indexing.py moves them).

Trilu keeps a triangle of each matrix: each row is one copy of its kept run and one fill of zeros, their
lengths a clamp of the row index: no mask in memory, whatever the sequence length. Its k is usually a
compile-time constant (causal masks write one); a run-time k is read and clamped once per run, so one
module serves every k. EyeLike writes ones on a diagonal of zeros. OneHot
compares each run-time index with every position of the new axis (the two values may be computed at run
time). Its depth sets the new axis's dim: a constant, or a run-time input with its range declared
(--input-values depth=1..1000, passes/values.py), which the kernel reads, truncates as ONNX Runtime does,
and writes to that dim's symbol (a negative depth traps the run); the output is then laid out for the
range's largest. ReverseSequence copies each (batch, time) block
from its mirrored time step; a length outside [0, time steps] traps, as an out-of-range Gather does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.dims import read_count
from wasinfer.backends.wasm.emitters.layout import LOAD_STORE, copy_bytes
from wasinfer.backends.wasm.writer import I32, I64, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.layout import movable_problems, row_major

INDEX_LOAD = {np.dtype(np.int32): ("i32.load", "i64.extend_i32_s"), np.dtype(np.int64): ("i64.load", None),
              np.dtype(np.float32): ("f32.load", "i64.trunc_sat_f32_s"),
              np.dtype(np.float64): ("f64.load", "i64.trunc_sat_f64_s")}


def _constant(node: Node, graph: Graph, index: int) -> np.ndarray | None:
    name = node.inputs[index] if len(node.inputs) > index else ""
    return graph.constants.get(name) if name else None


def _push_bits(f: Func, value: np.ndarray) -> None:
    """Push one element's bits as the store for its size takes them (i32, or i64 for 8 bytes)."""
    size = value.dtype.itemsize
    bits = int(np.asarray(value).reshape(1).view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.int64}[size])[0])
    if size == 8:
        f.i64(bits)
    else:
        f.i32(bits)


def _small_elements(node: Node, graph: Graph) -> list[str]:
    """Elements of up to 8 bytes (a store writes each one)."""
    return movable_problems(node, graph) + [
        f"tensor {n!r} has dtype {graph.info(n).dtype}, elements over 8 bytes are not supported"
        for n in node.outputs if n and graph.info(n).dtype.itemsize > 8]


# ---------------------------------------------------------------- Trilu

def _check_trilu(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    if len(graph.info(node.inputs[0]).shape) < 2:
        problems.append(f"input has rank {len(graph.info(node.inputs[0]).shape)}; Trilu needs at least 2")
    if _run_time_k(node, graph) and graph.info(node.inputs[1]).dtype != np.int64:
        problems.append(f"k has dtype {graph.info(node.inputs[1]).dtype}; int64 expected")
    return problems


def _run_time_k(node: Node, graph: Graph) -> bool:
    """k is a run-time input (a graph input, or computed): read from memory by each run."""
    return len(node.inputs) > 1 and bool(node.inputs[1]) and _constant(node, graph, 1) is None


@kernel("Trilu", check=_check_trilu)
def emit_trilu(ctx: Ctx, node: Node) -> None:
    """Row i of each matrix keeps columns j <= i + k (lower) or j >= i + k (upper): the split point
    t = clamp(i + k (+ 1 when lower), 0, columns) is worked out per row, then one copy and one fill. A run-time
    k is clamped to [-rows, columns] once, in 64 bits, so any int64 k gives the constant k's rows."""
    f = ctx.f
    info = ctx.info(node.inputs[0])
    *batch, rows, columns = info.shape
    if info.size == 0:
        return
    k_value = _constant(node, ctx.graph, 1)
    k = int(np.asarray(k_value).reshape(-1)[0]) if k_value is not None else 0
    upper = bool(node.attr("upper", 1))
    shift = max(min(k + (0 if upper else 1), columns), -rows)  # clamped at compile time: any int64 k
    size, row_bytes = info.dtype.itemsize, columns * info.dtype.itemsize
    pin, pout, r, t, split, rest = (f.local(I32) for _ in range(6))
    run_time = f.local(I32) if _run_time_k(node, ctx.graph) else None
    if run_time is not None:  # the shift: clamp(k, -rows - 1, columns) (+ 1), of the k this run reads
        wide = f.local(I64)
        f.i32(ctx.addr(node.inputs[1])).mem("i64.load", align=0).set(wide)
        f.i64(-rows - 1).get(wide).get(wide).i64(-rows - 1).op("i64.lt_s").op("select").set(wide)
        f.i64(columns).get(wide).get(wide).i64(columns).op("i64.gt_s").op("select").op("i32.wrap_i64")
        f.i32(0 if upper else 1).op("i32.add").set(run_time)
    f.i32(ctx.addr(node.inputs[0])).set(pin).i32(ctx.addr(node.outputs[0])).set(pout)
    with f.for_range(r, 0, math.prod(batch) * rows):
        # t = clamp(r % rows + shift, 0, columns), in bytes
        f.get(r).i32(rows).op("i32.rem_u")
        if run_time is None:
            f.i32(shift)
        else:
            f.get(run_time)
        f.op("i32.add").set(t)
        f.i32(0).get(t).get(t).i32(0).op("i32.lt_s").op("select").set(t)
        f.i32(columns).get(t).get(t).i32(columns).op("i32.gt_s").op("select").i32(size).op("i32.mul").set(split)
        f.i32(row_bytes).get(split).op("i32.sub").set(rest)
        if upper:  # zeros before the split, the input from it on
            f.get(pout).i32(0).get(split).memory_fill()
            f.get(pout).get(split).op("i32.add").get(pin).get(split).op("i32.add").get(rest).memory_copy()
        else:  # the input before the split, zeros from it on
            f.get(pout).get(pin).get(split).memory_copy()
            f.get(pout).get(split).op("i32.add").i32(0).get(rest).memory_fill()
        f.inc(pin, row_bytes).inc(pout, row_bytes)


# ---------------------------------------------------------------- EyeLike

def _check_eye_like(node: Node, graph: Graph) -> list[str]:
    problems = _small_elements(node, graph)
    if len(graph.info(node.outputs[0]).shape) != 2:
        problems.append(f"output has rank {len(graph.info(node.outputs[0]).shape)}; EyeLike is 2-D")
    return problems


@kernel("EyeLike", check=_check_eye_like)
def emit_eye_like(ctx: Ctx, node: Node) -> None:
    """Zeros, then a one at (i, i + k) for each row i whose column is inside the matrix (the input's
    values are never read: its shape is the output's)."""
    f = ctx.f
    out = ctx.info(node.outputs[0])
    rows, columns = out.shape
    size = out.dtype.itemsize
    f.i32(ctx.addr(node.outputs[0])).i32(0).i32(out.nbytes).memory_fill()
    k = int(node.attr("k", 0))
    first, last = max(0, -k), min(rows, columns - k)  # the rows whose diagonal column exists
    if last <= first:
        return
    p, i = f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.outputs[0]) + (first * columns + first + k) * size).set(p)
    store = LOAD_STORE[size][1]
    with f.for_range(i, first, last):
        f.get(p)
        _push_bits(f, np.ones(1, out.dtype))
        f.mem(store, align=0).inc(p, (columns + 1) * size)


# ---------------------------------------------------------------- OneHot

def _one_hot_axis(node: Node, graph: Graph) -> int:
    rank = len(graph.info(node.outputs[0]).shape)
    return int(node.attr("axis", -1)) % max(rank, 1)


def _check_one_hot(node: Node, graph: Graph) -> list[str]:
    problems = _small_elements(node, graph)
    indices = graph.info(node.inputs[0])
    if indices.dtype not in INDEX_LOAD:
        problems.append(f"indices have dtype {indices.dtype}; {', '.join(str(d) for d in INDEX_LOAD)} are supported")
    if _constant(node, graph, 1) is None and node.inputs[1] not in graph.read_values:
        problems.append("depth is computed at run time; a constant depth (an initializer), or a run-time input with "
                        "its values' range declared (--input-values NAME=MIN..MAX), is supported (it sets the "
                        "output's shape)")
    elif _constant(node, graph, 1) is None and graph.info(node.inputs[1]).dtype not in INDEX_LOAD:
        problems.append(f"depth has dtype {graph.info(node.inputs[1]).dtype}; a run-time depth is one of "
                        f"{', '.join(str(d) for d in INDEX_LOAD)}")
    if graph.info(node.inputs[2]).size != 2:
        problems.append(f"values has {graph.info(node.inputs[2]).size} elements, not 2 (off, on)")
    rank = len(graph.info(node.outputs[0]).shape)
    if not -rank <= int(node.attr("axis", -1)) < rank:
        problems.append(f"axis {node.attr('axis')} is out of range for rank {rank}")
    return problems


@kernel("OneHot", check=_check_one_hot)
def emit_one_hot(ctx: Ctx, node: Node) -> None:
    """out[o, d, i] = values[1] where indices[o, i] (plus depth when negative) is d, else values[0]: the
    output is written in order, each index read once per d (an index outside [-depth, depth) matches
    none, as in ONNX Runtime)."""
    f = ctx.f
    indices, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    if out.size == 0:
        return
    axis = _one_hot_axis(node, ctx.graph)
    depth = out.shape[axis]
    outer, inner = math.prod(out.shape[:axis]), math.prod(out.shape[axis + 1:])
    constant = _constant(node, ctx.graph, 2)
    values = None if constant is None else np.asarray(constant).astype(out.dtype).reshape(-1)
    size, isize = out.dtype.itemsize, indices.dtype.itemsize
    load, widen = INDEX_LOAD[indices.dtype]
    value_load, store = LOAD_STORE[size]

    def push_value(which: int) -> None:  # values[which]: an immediate when constant, else read each time
        if values is not None:
            _push_bits(f, values[which:which + 1])
        else:
            f.i32(ctx.addr(node.inputs[2]) + which * size).mem(value_load, align=0)

    o, d, i, pout, pin, row = (f.local(I32) for _ in range(6))
    v = f.local(I64)
    if _constant(node, ctx.graph, 1) is None:  # declared: read and checked by each run
        _one_hot_run_time(ctx, node, axis, push_value)
        return
    f.i32(ctx.addr(node.outputs[0])).set(pout).i32(ctx.addr(node.inputs[0])).set(row)
    with f.for_range(o, 0, outer):
        with f.for_range(d, 0, depth):
            f.get(row).set(pin)
            with f.for_range(i, 0, inner):
                f.get(pout)
                push_value(1)
                push_value(0)
                f.get(pin).mem(load, align=0)
                if widen:
                    f.op(widen)
                f.set(v).get(v).i64(depth).i64(0).get(v).i64(0).op("i64.lt_s").op("select").op("i64.add")
                f.get(d).op("i64.extend_i32_s").op("i64.eq").op("select").mem(store, align=0)
                f.inc(pout, size).inc(pin, isize)
        f.inc(row, inner * isize)


def _one_hot_run_time(ctx: Ctx, node: Node, axis: int, push_value: Callable[[int], None]) -> None:
    """OneHot with the depth a run gives: read (truncated to an integer), checked against the largest the output
    is laid out for, written to the new axis's symbol; then as above, over the run's depth."""
    f = ctx.f
    indices, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    largest = out.shape[axis]
    outer, inner = math.prod(out.shape[:axis]), math.prod(out.shape[axis + 1:])
    size, isize = out.dtype.itemsize, indices.dtype.itemsize
    load, widen = INDEX_LOAD[indices.dtype]
    store = LOAD_STORE[size][1]
    o, d, i, pout, pin, block = (f.local(I32) for _ in range(6))
    v = f.local(I64)
    depth, count = read_count(f, ctx.addr(node.inputs[1]), *INDEX_LOAD[ctx.info(node.inputs[1]).dtype], largest,
                              ctx.graph.decided.get(node.outputs[0], out.shape)[axis], ctx.symbols)
    f.i32(ctx.addr(node.outputs[0])).set(block).i32(ctx.addr(node.inputs[0])).set(pin)
    with f.for_range(o, 0, outer):
        f.get(block).set(pout)
        with f.for_range(d, 0, ("local", count)), f.for_range(i, 0, inner):
            f.get(pout)
            push_value(1)
            push_value(0)
            f.get(pin).get(i).i32(isize).op("i32.mul").op("i32.add").mem(load, align=0)
            if widen:
                f.op(widen)
            f.set(v).get(v).get(depth).i64(0).get(v).i64(0).op("i64.lt_s").op("select").op("i64.add")
            f.get(d).op("i64.extend_i32_s").op("i64.eq").op("select").mem(store, align=0)
            f.inc(pout, size)
        f.inc(block, largest * inner * size).inc(pin, inner * isize)  # blocks laid out for the largest depth


# ---------------------------------------------------------------- ReverseSequence

def _check_reverse_sequence(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    rank = len(graph.info(node.inputs[0]).shape)
    axes = (int(node.attr("batch_axis", 1)), int(node.attr("time_axis", 0)))
    if rank < 2:
        problems.append(f"input has rank {rank}; ReverseSequence needs at least 2")
    if sorted(axes) != [0, 1]:
        problems.append(f"batch_axis {axes[0]} and time_axis {axes[1]} must be 0 and 1, one each")
    if graph.info(node.inputs[1]).dtype not in (np.int32, np.int64):
        problems.append(f"sequence_lens has dtype {graph.info(node.inputs[1]).dtype}; int32 or int64 expected")
    return problems


@kernel("ReverseSequence", check=_check_reverse_sequence)
def emit_reverse_sequence(ctx: Ctx, node: Node) -> None:
    """Block (b, t) of the output is block (b, L_b - 1 - t) of the input for t < L_b, block (b, t) after:
    a block is the `inner` elements of one batch entry at one time step."""
    f = ctx.f
    info, lens = ctx.info(node.inputs[0]), ctx.info(node.inputs[1])
    if info.size == 0:
        return
    batch_axis = int(node.attr("batch_axis", 1))
    time_axis = 1 - batch_axis
    strides = row_major(info.shape)
    size = info.dtype.itemsize
    batch_step, time_step = strides[batch_axis] * size, strides[time_axis] * size
    steps, block = info.shape[time_axis], strides[1] * size
    b, t, length, base, src, dst, pl = (f.local(I32) for _ in range(7))
    f.i32(ctx.addr(node.inputs[1])).set(pl)
    with f.for_range(b, 0, info.shape[batch_axis]):
        _push_length(f, pl, lens.dtype, steps)
        f.set(length)
        f.get(b).i32(batch_step).op("i32.mul").set(base)
        with f.for_range(t, 0, steps):
            # the source step: L - 1 - t inside the sequence, t past it
            f.get(length).i32(1).op("i32.sub").get(t).op("i32.sub").get(t).get(t).get(length).op("i32.lt_s")
            f.op("select").i32(time_step).op("i32.mul").get(base).op("i32.add")
            f.i32(ctx.addr(node.inputs[0])).op("i32.add").set(src)
            f.get(t).i32(time_step).op("i32.mul").get(base).op("i32.add").i32(ctx.addr(node.outputs[0]))
            f.op("i32.add").set(dst)
            copy_bytes(f, (dst, 0), (src, 0), block)
        f.inc(pl, lens.dtype.itemsize)


def _push_length(f: Func, ptr: int, dtype: np.dtype[np.generic], bound: int) -> None:
    """Push the length at `ptr` as an i32; trap on one outside [0, bound]."""
    if dtype == np.int64:
        v = f.local(I64)
        f.get(ptr).mem("i64.load", align=0).set(v)
        f.get(v).i64(0).op("i64.lt_s").get(v).i64(bound).op("i64.gt_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(v).op("i32.wrap_i64")
        return
    w = f.local(I32)
    f.get(ptr).mem("i32.load", align=0).set(w)
    f.get(w).i32(0).op("i32.lt_s").get(w).i32(bound).op("i32.gt_s").op("i32.or")
    with f.if_():
        f.op("unreachable")
    f.get(w)


__all__ = ["emit_eye_like", "emit_one_hot", "emit_reverse_sequence", "emit_trilu"]
