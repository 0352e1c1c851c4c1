"""Indexing and data movement: Slice, Gather, GatherElements, Expand, Tile, Split, DepthToSpace,
SpaceToDepth, for any whole-byte dtype (moved by element size, as Transpose and Concat are).

Most of these are one strided copy (`emit_copy`): every output element reads the input at a
fixed per-axis element stride from a fixed base, both known at compile time — Slice's stride
is step times the input stride (negative for negative steps), Expand's and Tile's are 0 on the
repeated axes, Split's outputs and a Gather by an evenly spaced constant index list are
slices. Axes that stay contiguous are merged, so a row is one memory.copy whenever it can be.
DepthToSpace and SpaceToDepth are a 6-D transpose between reshapes (`emit_permute`).

NonZero and Compress write as many elements as the data decides, laid out for their largest count (the
largest layout every kernel reads, passes/symbolic.py), and that count as their output's symbol's value
(passes/dynamic.py).

Slice with run-time starts, ends, axes or steps, and Split with run-time sizes, read them each run (one
module for every value): they clamp as ONNX says, write each output dim that varies as its symbol's value
(passes/dynamic.py), and copy into the output's largest layout, x's own shape; an axis out of range or
named twice, a step of 0, or split sizes that are negative or do not add up to the axis trap the run.

Gather and GatherElements with indices that are not evenly spaced constants read the indices
at run time (from the placed constant when they are one): a negative index wraps once, and an
index outside [-n, n) executes `unreachable` rather than read outside the tensor.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.dims import push_dim
from wasinfer.backends.wasm.emitters.layout import (
    LOAD_STORE,
    copy_bytes,
    emit_permute,
    gather_run,
    walk,
)
from wasinfer.backends.wasm.writer import I32, I64, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr
from wasinfer.lowering.elementwise import broadcast_strides, merge_axes
from wasinfer.lowering.layout import movable_problems, row_major
from wasinfer.passes.dynamic import expand_axes

INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


# ---------------------------------------------------------------- strided copy

def emit_copy(f: Func, dst: int, dst_strides: list[int], src: int, src_strides: list[int],
              shape: tuple[int, ...], size: int, src_shift: int | None = None) -> None:
    """dst[i·dst_strides] = src[i·src_strides] for every index i of `shape` (element strides, any
    sign; `size`-byte elements); `src_shift`: a local holding bytes added to `src` at run time."""
    if math.prod(shape) == 0:
        return
    dims, (ds, ss) = merge_axes(tuple(shape), [list(dst_strides), list(src_strides)])
    pin, pout = f.local(I32), f.local(I32)
    f.i32(src)
    if src_shift is not None:
        f.get(src_shift).op("i32.add")
    f.set(pin).i32(dst).set(pout)

    def row() -> None:
        count, dstep, sstep = dims[-1], ds[-1], ss[-1]
        if count == 1 or (dstep == 1 and sstep == 1):
            copy_bytes(f, (pout, 0), (pin, 0), count * size)
            return
        d, s = f.local(I32), f.local(I32)
        f.get(pout).set(d).get(pin).set(s)
        if dstep == 1 and sstep >= 0:
            gather_run(f, d, s, count, size, sstep)
            return
        load, store = LOAD_STORE[size]
        counter = f.local(I32)
        with f.for_range(counter, 0, count):
            f.get(d).get(s).mem(load, align=0).mem(store, align=0)
            f.inc(d, dstep * size).inc(s, sstep * size)

    walk(f, dims[:-1], [s * size for s in ss[:-1]], [s * size for s in ds[:-1]], pin, pout, 1, row)


def emit_gather_copy(f: Func, dst: int, src: int, shape: tuple[int, ...], src_strides: list[int],
                     size: int, src_shift: int | None = None) -> None:
    """emit_copy into a contiguous output of `shape`."""
    emit_copy(f, dst, list(row_major(shape)), src, src_strides, shape, size, src_shift)


def push_index(f: Func, ptr: int, dtype: np.dtype[np.generic], bound: int) -> None:
    """Push the index at `ptr` as an i32 in [0, bound), wrapping a negative one once; trap on
    anything outside [-bound, bound)."""
    if dtype == np.int64:
        v = f.local(I64)
        f.get(ptr).mem("i64.load", align=0).set(v)
        f.get(v).i64(-bound).op("i64.lt_s").get(v).i64(bound).op("i64.ge_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(v).op("i32.wrap_i64")
    else:
        v = f.local(I32)
        f.get(ptr).mem("i32.load", align=0).set(v)
        f.get(v).i32(-bound).op("i32.lt_s").get(v).i32(bound).op("i32.ge_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(v)
    t = f.local(I32)
    f.set(t).get(t).get(t).i32(31).op("i32.shr_s").i32(bound).op("i32.and").op("i32.add")


def _axis(node: Node, rank: int, default: int = 0) -> int:
    return int(node.attr("axis", default)) % max(rank, 1)


def _axis_problems(node: Node, rank: int, default: int = 0) -> list[str]:
    axis = int(node.attr("axis", default))
    return [] if -rank <= axis < max(rank, 1) else [f"axis {axis} is out of range for rank {rank}"]


# ---------------------------------------------------------------- Slice

def slice_plan(node: Node, graph: Graph) -> list[range] | str:
    """Per input axis, the input indices the output takes; or why they are unknown.

    Python's `slice.indices` clamps as ONNX specifies (negative starts/ends count from the end;
    out-of-range values clamp to [0, d] for positive steps and [-1, d-1] for negative), except a
    start still below 0 with a negative step, which ONNX clamps to 0 (one element) and Python to -1.
    """
    shape = graph.info(node.inputs[0]).shape
    rank = len(shape)
    if "starts" in node.attrs:  # Slice-1
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes = list(node.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        values: list[list[int] | None] = []
        for position, label in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
            name = node.inputs[position] if len(node.inputs) > position else ""
            if not name:
                values.append(None)
                continue
            value = graph.constants.get(name)
            if value is None:
                return f"{label} must be a compile-time constant"
            values.append([int(v) for v in np.asarray(value).reshape(-1)])
        starts, ends = values[0] or [], values[1] or []
        axes = values[2] if values[2] is not None else list(range(len(starts)))
        steps = values[3] if values[3] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        return "starts, ends, axes and steps must have the same length"
    plan = [range(d) for d in shape]
    seen: set[int] = set()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if not -rank <= axis < rank or axis % rank in seen:
            return f"axes {axes} are out of range or repeated for rank {rank}"
        if step == 0:
            return "a step of 0 is not allowed"
        axis %= rank
        seen.add(axis)
        if step < 0 and start < -shape[axis]:  # ONNX clamps it to 0, where Python's slice would go to -1 (none)
            start = -shape[axis]
        plan[axis] = range(*slice(start, end, step).indices(shape[axis]))
    return plan


def _check_slice(node: Node, graph: Graph) -> list[str]:
    if run_time_slice(node, graph):
        return movable_problems(node, graph) + _check_run_time_slice(node, graph)
    plan = slice_plan(node, graph)
    problems = movable_problems(node, graph)
    if isinstance(plan, str):
        return [*problems, plan]
    if tuple(len(r) for r in plan) != graph.info(node.outputs[0]).shape:
        problems.append(f"output shape {graph.info(node.outputs[0]).shape} does not match the slice")
    return problems


@kernel("Slice", check=_check_slice, scratch=lambda node, graph: _slice_scratch(node, graph))  # 0: constants
def emit_slice(ctx: Ctx, node: Node) -> None:
    """Output index o on each axis reads input index start + o·step. Along a symbolic axis sliced from a start
    counted from its end (ops/extent.py), the start moves with the run's dim: by (dim - largest dim) elements."""
    if run_time_slice(node, ctx.graph):
        emit_run_time_slice(ctx, node)
        return
    f, info = ctx.f, ctx.info(node.inputs[0])
    plan = slice_plan(node, ctx.graph)
    assert not isinstance(plan, str)
    strides = row_major(info.shape)
    base = sum(r.start * s for r, s in zip(plan, strides, strict=True) if len(r))
    size = info.dtype.itemsize
    shift = None
    extent = ctx.graph.extents.get(node.inputs[0]) or ()
    from_end = [a for a in _starts_from_end(node, ctx.graph) if a < len(extent) and isinstance(extent[a], Expr)]
    if from_end:
        shift = f.local(I32)
        f.i32(0)
        for axis in from_end:
            push_dim(f, extent[axis], ctx.symbols)
            f.i32(info.shape[axis]).op("i32.sub").i32(strides[axis] * size).op("i32.mul").op("i32.add")
        f.set(shift)
    emit_gather_copy(f, ctx.addr(node.outputs[0]), ctx.addr(node.inputs[0]) + base * size,
                     tuple(len(r) for r in plan), [r.step * s for r, s in zip(plan, strides, strict=True)], size,
                     shift)


def _starts_from_end(node: Node, graph: Graph) -> list[int]:
    """The axes a Slice starts on counting from the end (a negative start)."""
    rank = len(graph.info(node.inputs[0]).shape)
    if "starts" in node.attrs:
        starts, axes = list(node.attrs["starts"]), node.attrs.get("axes")
    else:
        starts = [int(v) for v in np.asarray(graph.constants[node.inputs[1]]).reshape(-1)]
        given = graph.constants.get(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
        axes = None if given is None else [int(v) for v in np.asarray(given).reshape(-1)]
    return [int(a) % rank for a, start in zip(axes if axes is not None else range(len(starts)), starts, strict=True)
            if start < 0]


# ---------------------------------------------------------------- Gather

def _check_gather(node: Node, graph: Graph) -> list[str]:
    data, indices = graph.info(node.inputs[0]), graph.info(node.inputs[1])
    problems = movable_problems(node, graph) + _axis_problems(node, len(data.shape))
    if indices.dtype not in INDEX_TYPES:
        problems.append(f"indices have dtype {indices.dtype}; int32 or int64 expected")
    value = graph.constants.get(node.inputs[1])
    if not problems and value is not None and value.size:
        bound = data.shape[_axis(node, len(data.shape))]
        if value.min() < -bound or value.max() >= bound:
            problems.append(f"constant indices {value.min()}..{value.max()} are outside [-{bound}, {bound})")
    return problems


@kernel("Gather", check=_check_gather)
def emit_gather(ctx: Ctx, node: Node) -> None:
    """Viewed as data (outer, n, inner) → out (outer, indices, inner): one block of `inner`
    elements per (outer, index). Evenly spaced constant indices make it a slice."""
    f = ctx.f
    data, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    if out.size == 0:
        return
    axis = _axis(node, len(data.shape))
    outer, n, inner = math.prod(data.shape[:axis]), data.shape[axis], math.prod(data.shape[axis + 1:])
    size, block = data.dtype.itemsize, inner * data.dtype.itemsize
    value = ctx.const(node.inputs[1])
    if value is not None:
        flat = [int(v) % n for v in value.reshape(-1)]
        steps = {b - a for a, b in itertools.pairwise(flat)}
        if len(steps) <= 1:
            step = steps.pop() if steps else 0
            emit_gather_copy(f, ctx.addr(node.outputs[0]), ctx.addr(node.inputs[0]) + flat[0] * block,
                             (outer, len(flat), inner), [n * inner, step * inner, 1], size)
            return
    indices = ctx.info(node.inputs[1])
    pd, pi, po, src, o, j = (f.local(I32) for _ in range(6))
    f.i32(ctx.addr(node.inputs[0])).set(pd).i32(ctx.addr(node.outputs[0])).set(po)
    with f.for_range(o, 0, outer):
        f.i32(ctx.addr(node.inputs[1])).set(pi)
        with f.for_range(j, 0, indices.size):
            push_index(f, pi, indices.dtype, n)
            f.i32(block).op("i32.mul").get(pd).op("i32.add").set(src)
            copy_bytes(f, (po, 0), (src, 0), block)
            f.inc(po, block).inc(pi, indices.dtype.itemsize)
        f.inc(pd, n * block)


# ---------------------------------------------------------------- GatherElements

def _check_gather_elements(node: Node, graph: Graph) -> list[str]:
    data, indices = graph.info(node.inputs[0]), graph.info(node.inputs[1])
    problems = movable_problems(node, graph) + _axis_problems(node, len(data.shape))
    if indices.dtype not in INDEX_TYPES:
        problems.append(f"indices have dtype {indices.dtype}; int32 or int64 expected")
    if len(indices.shape) != len(data.shape) or not data.shape:
        problems.append(f"indices of shape {indices.shape} do not match data of shape {data.shape}")
    elif not problems:
        axis = _axis(node, len(data.shape))
        if any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape, strict=True)) if a != axis):
            problems.append(f"indices of shape {indices.shape} exceed data of shape {data.shape} off the axis")
    return problems


@kernel("GatherElements", check=_check_gather_elements)
def emit_gather_elements(ctx: Ctx, node: Node) -> None:
    """out[i] = data[i with i[axis] replaced by indices[i]]: walk the output (and the indices,
    in step), with the data pointer following every axis but `axis`."""
    f = ctx.f
    data, indices = ctx.info(node.inputs[0]), ctx.info(node.inputs[1])
    shape = indices.shape
    if indices.size == 0:
        return
    axis = _axis(node, len(data.shape))
    size = data.dtype.itemsize
    data_strides = [s * size for s in row_major(data.shape)]
    walk_strides = [0 if a == axis else s for a, s in enumerate(data_strides)]
    out_strides = [s * size for s in row_major(shape)]
    pin, pout, pi = f.local(I32), f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.inputs[0])).set(pin).i32(ctx.addr(node.outputs[0])).set(pout)
    f.i32(ctx.addr(node.inputs[1])).set(pi)
    load, store = LOAD_STORE[size]

    def row() -> None:
        q, o, counter = f.local(I32), f.local(I32), f.local(I32)
        f.get(pin).set(q).get(pout).set(o)
        with f.for_range(counter, 0, shape[-1]):
            f.get(o)
            push_index(f, pi, indices.dtype, data.shape[axis])
            f.i32(data_strides[axis]).op("i32.mul").get(q).op("i32.add").mem(load, align=0).mem(store, align=0)
            f.inc(o, size).inc(pi, indices.dtype.itemsize)
            if walk_strides[-1]:
                f.inc(q, walk_strides[-1])

    walk(f, list(shape[:-1]), walk_strides[:-1], out_strides[:-1], pin, pout, 1, row)


# ---------------------------------------------------------------- Expand, Tile

def _runtime_parameter(node: Node, graph: Graph, index: int, label: str) -> list[str]:
    """A parameter that decides the output shape must be known when the shape is fixed."""
    name = node.inputs[index] if len(node.inputs) > index else ""
    if name and name not in graph.constants:
        return [f"{label} is computed at run time; it must be a compile-time constant (it sets the output shape)"]
    return []


def _check_shaped(node: Node, graph: Graph) -> list[str]:
    """Expand and Tile: the output shape (known statically) says everything the kernel needs; an Expand whose
    declared shape each run reads (passes/dynamic.py) takes `emit_expand_run_time`."""
    problems = movable_problems(node, graph)
    if node.op_type == "Expand" and node.inputs[1] in graph.read_values:
        if graph.info(node.inputs[1]).dtype != np.int64:
            problems.append(f"shape has dtype {graph.info(node.inputs[1]).dtype}, not int64")
        return problems
    problems += _runtime_parameter(node, graph, 1, "shape" if node.op_type == "Expand" else "repeats")
    data, out = graph.info(node.inputs[0]).shape, graph.info(node.outputs[0]).shape
    if node.op_type == "Tile" and (len(data) != len(out) or any(
            (d == 0 and o != 0) or (d and o % d) for d, o in zip(data, out, strict=True))):
        problems.append(f"output shape {out} is not a tiling of {data}")
    return problems


@kernel("Expand", check=_check_shaped)
def emit_expand(ctx: Ctx, node: Node) -> None:
    """Broadcast: stride 0 on the axes the input repeats."""
    if node.inputs[1] in ctx.graph.read_values:
        emit_expand_run_time(ctx, node)
        return
    data, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    emit_gather_copy(ctx.f, ctx.addr(node.outputs[0]), ctx.addr(node.inputs[0]), out.shape,
                     broadcast_strides(data.shape, out.shape), data.dtype.itemsize)


def emit_expand_run_time(ctx: Ctx, node: Node) -> None:
    """Expand by the shape a run gives: each value read; against a dim other than 1 it must be 1 or that dim (the
    run traps otherwise, as ONNX Runtime fails it), elsewhere it is the output's dim, written to its symbol; then
    every element inside the run's dims from the input (stride 0 where it broadcasts), into the largest layout."""
    f = ctx.f
    data, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    extent = ctx.graph.decided.get(node.outputs[0], out.shape)
    size = data.dtype.itemsize
    in_strides, out_strides = row_major(data.shape), row_major(out.shape)
    counts: list[int | tuple[str, int]] = []
    steps: list[int] = []
    value = f.local(I64)
    for j, (d, index) in enumerate(expand_axes(tuple(data.shape), ctx.info(node.inputs[1]).size)):
        axis = j - len(out.shape) + len(data.shape)
        steps.append(in_strides[axis] * size if d is not None and d != 1 else 0)
        if index is None:
            counts.append(out.shape[j])
            continue
        f.i32(ctx.addr(node.inputs[1]) + 8 * index).mem("i64.load").set(value)
        if d is not None and d != 1:  # 1 or d
            f.get(value).i64(1).op("i64.ne").get(value).i64(d).op("i64.ne").op("i32.and")
            counts.append(d)
        else:
            f.get(value).i64(0).op("i64.lt_s").get(value).i64(out.shape[j]).op("i64.gt_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        if d is None or d == 1:
            local = f.local(I32)
            f.get(value).op("i32.wrap_i64").set(local)
            counts.append(("local", local))
            if isinstance(extent[j], Expr):
                f.i32(ctx.symbols[str(extent[j])]).get(local).mem("i32.store")
    load, store = LOAD_STORE[size]

    def level(j: int, src: int, dst: int) -> None:
        if j == len(counts):
            f.get(dst).get(src).mem(load, align=0).mem(store, align=0)
            return
        counter, s, d = f.local(I32), f.local(I32), f.local(I32)
        f.get(src).set(s).get(dst).set(d)
        with f.for_range(counter, 0, counts[j]):
            level(j + 1, s, d)
            if steps[j]:
                f.inc(s, steps[j])
            f.inc(d, out_strides[j] * size)

    src, dst = f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.inputs[0])).set(src).i32(ctx.addr(node.outputs[0])).set(dst)
    level(0, src, dst)


@kernel("Tile", check=_check_shaped)
def emit_tile(ctx: Ctx, node: Node) -> None:
    """Output axis k of size r·d is the pair (repeat r, index d): row-major over the pairs,
    with input stride 0 on each repeat."""
    data, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    if out.size == 0:
        return
    shape: list[int] = []
    strides: list[int] = []
    for d, o, s in zip(data.shape, out.shape, row_major(data.shape), strict=True):
        shape += [o // d, d]
        strides += [0, s]
    emit_gather_copy(ctx.f, ctx.addr(node.outputs[0]), ctx.addr(node.inputs[0]), tuple(shape), strides,
                     data.dtype.itemsize)


# ---------------------------------------------------------------- Split

def _check_split(node: Node, graph: Graph) -> list[str]:
    shape = graph.info(node.inputs[0]).shape
    problems = movable_problems(node, graph) + _axis_problems(node, len(shape))
    if not run_time_split(node, graph):
        problems += _runtime_parameter(node, graph, 1, "split")
    if problems:
        return problems
    axis = _axis(node, len(shape))
    if run_time_split(node, graph):
        return _check_run_time_split(node, graph)
    sizes = [graph.info(o).shape[axis] for o in node.outputs if o]
    if len(node.outputs) != len([o for o in node.outputs if o]) or sum(sizes) != shape[axis]:
        problems.append(f"output sizes {sizes} along axis {axis} do not add up to {shape[axis]}")
    return problems


@kernel("Split", check=_check_split)
def emit_split(ctx: Ctx, node: Node) -> None:
    """Each output is a slice along `axis`; its size there comes from its (static) shape, so
    the split attribute or input, num_outputs and an equal split all read the same."""
    if run_time_split(node, ctx.graph):
        emit_run_time_split(ctx, node)
        return
    data = ctx.info(node.inputs[0])
    axis = _axis(node, len(data.shape))
    strides = row_major(data.shape)
    offset = 0
    for name in node.outputs:
        shape = ctx.info(name).shape
        emit_gather_copy(ctx.f, ctx.addr(name), ctx.addr(node.inputs[0]) + offset * strides[axis] * data.dtype.itemsize,
                         shape, list(strides), data.dtype.itemsize)
        offset += shape[axis]


# ---------------------------------------------------------------- Slice and Split with run-time parameters

PARAMETER_LOADS = {np.dtype(np.int64): ("i64.load", ""), np.dtype(np.int32): ("i32.load", "i64.extend_i32_s")}
STEP_LIMIT = 1 << 30  # a run-time step is clamped to this: a longer one takes one element of any axis anyway


def _given(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def run_time_slice(node: Node, graph: Graph) -> bool:
    """Some of Slice's starts, ends, axes or steps are known only at run time (passes/dynamic.py typed its
    output for them)."""
    return "starts" not in node.attrs and any(
        _given(node, i) and _given(node, i) not in graph.constants for i in (1, 2, 3, 4))


def _check_run_time_slice(node: Node, graph: Graph) -> list[str]:
    problems = []
    if node.inputs[0] in graph.extents:
        problems.append("run-time starts, ends, axes or steps over an input with symbolic dims are not supported")
    lengths = {graph.info(_given(node, i)).shape for i in (1, 2, 3, 4) if _given(node, i)}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        problems.append(f"starts, ends, axes and steps must be 1-D of one length, not {sorted(lengths)}")
    elif not _given(node, 3) and next(iter(lengths))[0] > len(graph.info(node.inputs[0]).shape):
        problems.append(f"{next(iter(lengths))[0]} starts for an input of rank {len(graph.info(node.inputs[0]).shape)}")
    for i in (1, 2, 3, 4):
        if _given(node, i) and graph.info(_given(node, i)).dtype not in PARAMETER_LOADS:
            problems.append(f"input {i} has dtype {graph.info(_given(node, i)).dtype}; int32 or int64 expected")
    if graph.info(node.inputs[0]).dtype.itemsize not in (1, 2, 4, 8):
        problems.append(f"input dtype {graph.info(node.inputs[0]).dtype} is not supported")
    return problems


def _load_parameter(ctx: Ctx, node: Node, index: int, position: int, into: int) -> None:
    """Element `position` of input `index` (int32 or int64) into the i64 local `into`."""
    name = node.inputs[index]
    dtype = ctx.info(name).dtype
    load, widen = PARAMETER_LOADS[dtype]
    ctx.f.i32(ctx.addr(name) + position * dtype.itemsize).mem(load, align=0)
    if widen:
        ctx.f.op(widen)
    ctx.f.set(into)


def _clamp64(f: Func, value: int, low: int | tuple[str, int], high: int | tuple[str, int]) -> None:
    """value = min(max(value, low), high), all i64; a bound is a constant or ("local", index)."""
    for bound, compare in ((low, "i64.lt_s"), (high, "i64.gt_s")):
        def push(bound: int | tuple[str, int] = bound) -> None:
            if isinstance(bound, int):
                f.i64(bound)
            else:
                f.get(bound[1])
        push()
        f.get(value).get(value)
        push()
        f.op(compare).op("select").set(value)


def _trap_if(f: Func) -> None:
    """Execute `unreachable` where the i32 on the stack is nonzero."""
    with f.if_():
        f.op("unreachable")


def emit_run_time_slice(ctx: Ctx, node: Node) -> None:
    """Per axis: the start, step and count this run's values give (defaults 0, 1, the dim), kept in scratch as
    i32s (the axes may be run-time too), then the output's dims, then one strided element copy over them."""
    f = ctx.f
    info = ctx.info(node.inputs[0])
    shape, rank = info.shape, len(info.shape)
    count = ctx.info(node.inputs[1]).shape[0]
    table = ctx.scratch_addr  # [start, step, count] per axis
    dims = ctx.data(np.array(shape or (1,), np.int32))
    for axis, d in enumerate(shape):
        for slot, value in enumerate((0, 1, d)):
            f.i32(table + 12 * axis + 4 * slot).i32(value).mem("i32.store")
    seen, axis, d = f.local(I32), f.local(I32), f.local(I64)
    start, end, step, length, wide = (f.local(I64) for _ in range(5))
    f.i32(0).set(seen)
    for i in range(count):
        if _given(node, 3):  # the axis, in range and not seen before
            _load_parameter(ctx, node, 3, i, wide)
            f.get(wide).i64(-rank).op("i64.lt_s").get(wide).i64(rank).op("i64.ge_s").op("i32.or")
            _trap_if(f)
            f.get(wide).op("i32.wrap_i64").set(axis)
            f.get(axis).get(axis).i32(31).op("i32.shr_s").i32(rank).op("i32.and").op("i32.add").set(axis)
        else:
            f.i32(i).set(axis)
        f.get(seen).i32(1).get(axis).op("i32.shl").op("i32.and")
        _trap_if(f)
        f.get(seen).i32(1).get(axis).op("i32.shl").op("i32.or").set(seen)
        f.get(axis).i32(4).op("i32.mul").i32(dims).op("i32.add").mem("i32.load").op("i64.extend_i32_s").set(d)
        if _given(node, 4):
            _load_parameter(ctx, node, 4, i, step)
            f.get(step).op("i64.eqz")
            _trap_if(f)
        else:
            f.i64(1).set(step)
        _load_parameter(ctx, node, 1, i, start)
        _load_parameter(ctx, node, 2, i, end)
        for value in (start, end):  # counted from the end when negative, then clamped as the step's sign says
            f.get(value).get(d).op("i64.add").get(value).get(value).i64(0).op("i64.lt_s").op("select").set(value)
        f.get(d).i64(1).op("i64.sub").set(wide)  # d - 1
        f.get(step).i64(0).op("i64.gt_s")
        with f.if_():
            _clamp64(f, start, 0, ("local", d))
            _clamp64(f, end, 0, ("local", d))
            # count = (end - start - 1) / step + 1 where end > start (no overflow for any step)
            f.get(end).get(start).op("i64.sub").i64(1).op("i64.sub").get(step).op("i64.div_s").i64(1).op("i64.add")
            f.i64(0).get(end).get(start).op("i64.gt_s").op("select").set(length)
            f.else_()  # a negative step: start in [0, d - 1], end in [-1, d - 1], count = (start - end - 1) / -step + 1
            _clamp64(f, start, 0, ("local", wide))
            _clamp64(f, end, -1, ("local", wide))
            f.get(start).get(end).op("i64.sub").i64(1).op("i64.sub").i64(0).get(step).op("i64.sub").op("i64.div_s")
            f.i64(1).op("i64.add").i64(0).get(start).get(end).op("i64.gt_s").op("select").set(length)
        _clamp64(f, step, -STEP_LIMIT, STEP_LIMIT)
        for slot, value in enumerate((start, step, length)):
            f.get(axis).i32(12).op("i32.mul").i32(table + 4 * slot).op("i32.add").get(value).op("i32.wrap_i64")
            f.mem("i32.store")
    extent = ctx.graph.decided.get(node.outputs[0], tuple(shape))
    for j, dim in enumerate(extent):
        if isinstance(dim, Expr):
            f.i32(ctx.symbols[str(dim)]).i32(table + 12 * j + 8).mem("i32.load").mem("i32.store")
    _strided_copy(ctx, node, table)


def _strided_copy(ctx: Ctx, node: Node, table: int) -> None:
    """out[o] = x[start + o * step] on every axis, for o below the axis's count: the output in x's layout."""
    f = ctx.f
    info = ctx.info(node.inputs[0])
    shape, size = info.shape, info.dtype.itemsize
    strides = row_major(shape)
    pin, pout = f.local(I32), f.local(I32)
    counts = [f.local(I32) for _ in shape]
    moves = [f.local(I32) for _ in shape]
    f.i32(ctx.addr(node.inputs[0])).set(pin).i32(ctx.addr(node.outputs[0])).set(pout)
    for j in range(len(shape)):
        f.i32(table + 12 * j + 8).mem("i32.load").set(counts[j])
        f.i32(table + 12 * j + 4).mem("i32.load").i32(strides[j] * size).op("i32.mul").set(moves[j])
        f.get(pin).i32(table + 12 * j).mem("i32.load").i32(strides[j] * size).op("i32.mul").op("i32.add").set(pin)
    load, store = LOAD_STORE[size]

    def level(j: int) -> None:
        if j == len(shape):
            f.get(pout).get(pin).mem(load, align=0).mem(store, align=0)
            return
        saved_in, saved_out, counter = f.local(I32), f.local(I32), f.local(I32)
        f.get(pin).set(saved_in).get(pout).set(saved_out)
        with f.for_range(counter, 0, ("local", counts[j])):
            level(j + 1)
            f.inc(pin, by_local=moves[j]).inc(pout, strides[j] * size)
        f.get(saved_in).set(pin).get(saved_out).set(pout)

    level(0)


def _slice_scratch(node: Node, graph: Graph) -> int:
    return 12 * len(graph.info(node.inputs[0]).shape) if run_time_slice(node, graph) else 0


def run_time_split(node: Node, graph: Graph) -> bool:
    """Split's sizes are an input known only at run time (opset 13 on)."""
    name = _given(node, 1)
    return graph.opset >= 13 and bool(name) and name not in graph.constants


def _check_run_time_split(node: Node, graph: Graph) -> list[str]:
    sizes = graph.info(node.inputs[1])
    problems = []
    if node.inputs[0] in graph.extents:
        problems.append("run-time split sizes over an input with symbolic dims are not supported")
    if sizes.dtype != np.int64 or sizes.shape != (len(node.outputs),):
        problems.append(f"split must be int64 [{len(node.outputs)}] (one size per output), not "
                        f"{sizes.dtype} {list(sizes.shape)}")
    return problems


def emit_run_time_split(ctx: Ctx, node: Node) -> None:
    """Each output's size along the axis from this run's split (negative ones, or a sum other than the axis's,
    trap), written as its dim; then each outer slice's run copied into the output's largest layout (x's)."""
    f = ctx.f
    info = ctx.info(node.inputs[0])
    axis = _axis(node, len(info.shape))
    outer, n = math.prod(info.shape[:axis]), info.shape[axis]
    inner = math.prod(info.shape[axis + 1:]) * info.dtype.itemsize
    wide, total = f.local(I64), f.local(I64)
    sizes = [f.local(I32) for _ in node.outputs]
    f.i64(0).set(total)
    for i, local in enumerate(sizes):
        f.i32(ctx.addr(node.inputs[1]) + 8 * i).mem("i64.load", align=0).tee(wide).i64(0).op("i64.lt_s")
        f.get(wide).i64(n).op("i64.gt_s").op("i32.or")
        _trap_if(f)
        f.get(wide).op("i32.wrap_i64").set(local)
        f.get(total).get(wide).op("i64.add").set(total)
    f.get(total).i64(n).op("i64.ne")
    _trap_if(f)
    offset, o = f.local(I32), f.local(I32)
    f.i32(0).set(offset)
    for name, local in zip(node.outputs, sizes, strict=True):
        dim = ctx.graph.decided[name][axis] if name in ctx.graph.decided else 0
        if isinstance(dim, Expr):
            f.i32(ctx.symbols[str(dim)]).get(local).mem("i32.store")
        if name and outer and inner:
            with f.for_range(o, 0, outer):  # out[o, :size] = x[o, offset:offset + size]
                f.get(o).i32(n * inner).op("i32.mul").i32(ctx.addr(name)).op("i32.add")
                f.get(o).i32(n).op("i32.mul").get(offset).op("i32.add").i32(inner).op("i32.mul")
                f.i32(ctx.addr(node.inputs[0])).op("i32.add")
                f.get(local).i32(inner).op("i32.mul").memory_copy()
        f.get(offset).get(local).op("i32.add").set(offset)


# ---------------------------------------------------------------- DepthToSpace, SpaceToDepth

def space_depth_plan(node: Node, shape: tuple[int, ...]) -> tuple[tuple[int, ...], list[int]]:
    """The 6-D view of the input and the permutation the reference evaluator applies to it."""
    b, c, h, w = shape
    bs = int(node.attr("blocksize"))
    crd = node.attr("mode", "DCR") == "CRD"
    if node.op_type == "DepthToSpace":
        if crd:
            return (b, c // (bs * bs), bs, bs, h, w), [0, 1, 4, 2, 5, 3]
        return (b, bs, bs, c // (bs * bs), h, w), [0, 3, 4, 1, 5, 2]
    return (b, c, h // bs, bs, w // bs, bs), [0, 1, 3, 5, 2, 4] if crd else [0, 3, 5, 1, 2, 4]


def _check_space_depth(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    shape = graph.info(node.inputs[0]).shape
    bs = node.attr("blocksize")
    mode = node.attr("mode", "DCR")
    if len(shape) != 4:
        problems.append(f"input has rank {len(shape)}, 4 expected")
    elif not isinstance(bs, int) or bs < 1:
        problems.append("blocksize must be a positive integer")
    elif mode not in ("DCR", "CRD"):
        problems.append(f"mode={mode!r} is not DCR or CRD")
    elif node.op_type == "DepthToSpace" and shape[1] % (bs * bs):
        problems.append(f"channels {shape[1]} are not divisible by blocksize² {bs * bs}")
    elif node.op_type == "SpaceToDepth" and (shape[2] % bs or shape[3] % bs):
        problems.append(f"spatial size {shape[2:]} is not divisible by blocksize {bs}")
    return problems


@kernel("DepthToSpace", "SpaceToDepth", check=_check_space_depth)
def emit_space_depth(ctx: Ctx, node: Node) -> None:
    info = ctx.info(node.inputs[0])
    shape, perm = space_depth_plan(node, info.shape)
    emit_permute(ctx.f, ctx.addr(node.outputs[0]), ctx.addr(node.inputs[0]), shape, perm, info.dtype.itemsize)


__all__ = ["emit_copy", "emit_gather_copy", "push_index", "slice_plan", "space_depth_plan"]


def _nonzero_test(f: Func, dtype: np.dtype) -> None:
    """Replace the address on the stack by 1 if the element there is nonzero (NaN is), else 0."""
    if dtype == np.float32:
        f.mem("f32.load", align=0).f32(0.0).op("f32.ne")
    elif dtype == np.float64:
        f.mem("f64.load", align=0).f64(0.0).op("f64.ne")
    elif dtype.itemsize == 8:
        f.mem("i64.load", align=0).op("i64.eqz").op("i32.eqz")
    else:
        f.mem(LOAD_STORE[dtype.itemsize][0], align=0).op("i32.eqz").op("i32.eqz")


def check_run_time_shaped(node: Node, graph: Graph) -> list[str]:
    problems = []
    if node.outputs[0] not in graph.decided:
        problems.append(f"its output {node.outputs[0]!r} has no bounded run-time shape (passes/dynamic.py)")
    if graph.info(node.inputs[0]).dtype.itemsize not in (1, 2, 4, 8):
        problems.append(f"input dtype {graph.info(node.inputs[0]).dtype} is not supported")
    if node.op_type == "Compress" and graph.info(node.inputs[1]).dtype != np.bool_:
        problems.append("its condition must be bool")
    return problems


def write_run_time_dims(ctx: Ctx, node: Node, count: int) -> None:
    """The run's value of the output's symbol (passes/dynamic.py), where the kernels after it and the copy of a
    graph output read it; `count` the local holding it. Shared by every kernel whose output shape a run decides
    (NonZero, Compress here; NonMaxSuppression, TopK)."""
    name, = {str(d) for d in ctx.graph.decided[node.outputs[0]] if isinstance(d, Expr)}
    ctx.f.i32(ctx.symbols[name]).get(count).mem("i32.store")


@kernel("NonZero", check=check_run_time_shaped)
def nonzero(ctx: Ctx, node: Node) -> None:
    """Count the nonzero elements, then write each one's coordinates as int64, [rank, count] row by row."""
    f = ctx.f
    x = ctx.info(node.inputs[0])
    size, esize, rank = math.prod(x.shape), x.dtype.itemsize, len(x.shape)
    strides = [math.prod(x.shape[d + 1:]) for d in range(rank)]
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    i, count, k, rest = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    f.i32(0).set(count)
    with f.for_range(i, 0, size):
        f.get(count).addr(src, i, esize)
        _nonzero_test(f, x.dtype)
        f.op("i32.add").set(count)
    f.i32(0).set(k)
    with f.for_range(i, 0, size):
        f.addr(src, i, esize)
        _nonzero_test(f, x.dtype)
        with f.if_():
            f.get(i).set(rest)
            for d, stride in enumerate(strides):
                # out[d, k] = rest // stride; rest %= stride (rows as long as the largest count: its largest layout)
                f.get(k).i32(8).op("i32.mul").i32(dst + d * size * 8).op("i32.add")
                f.get(rest).i32(stride).op("i32.div_u").op("i64.extend_i32_u").mem("i64.store", align=0)
                f.get(rest).i32(stride).op("i32.rem_u").set(rest)
            f.inc(k)
    write_run_time_dims(ctx, node, count)


@kernel("Compress", check=check_run_time_shaped)
def compress(ctx: Ctx, node: Node) -> None:
    """Copy the slices along the axis (the flattened elements without one) whose condition holds, in order."""
    f = ctx.f
    x, condition = ctx.info(node.inputs[0]), ctx.info(node.inputs[1])
    esize = x.dtype.itemsize
    if node.attr("axis") is None:
        outer, n, inner = 1, math.prod(x.shape), esize
    else:
        axis = int(node.attr("axis")) % len(x.shape)
        outer, n = math.prod(x.shape[:axis]), x.shape[axis]
        inner = math.prod(x.shape[axis + 1:]) * esize
    taken = min(condition.shape[0], n)
    src, cond, out = ctx.addr(node.inputs[0]), ctx.addr(node.inputs[1]), ctx.addr(node.outputs[0])
    o, j, count, dst = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    f.i32(0).set(count)
    if taken:
        with f.for_range(j, 0, taken):
            f.get(count).addr(cond, j, 1).mem("i32.load8_u", align=0).op("i32.add").set(count)
    largest = ctx.info(node.outputs[0]).shape[axis] if node.attr("axis") is not None else taken
    f.i32(out).set(dst)
    if taken and inner:
        with f.for_range(o, 0, outer):
            if outer > 1:  # each outer slice starts where the largest count would put it
                f.get(o).i32(largest * inner).op("i32.mul").i32(out).op("i32.add").set(dst)
            with f.for_range(j, 0, taken):
                f.addr(cond, j, 1).mem("i32.load8_u", align=0)
                with f.if_():
                    f.get(dst)
                    f.get(o).i32(n * inner).op("i32.mul").get(j).i32(inner).op("i32.mul").op("i32.add")
                    f.i32(src).op("i32.add")
                    f.i32(inner).memory_copy()
                    f.get(dst).i32(inner).op("i32.add").set(dst)
    write_run_time_dims(ctx, node, count)
