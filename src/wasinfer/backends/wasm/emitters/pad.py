"""Pad (constant, reflect, edge and wrap modes) for any whole-byte dtype.

The input is copied into the middle of the output (a strided copy; negative pads crop it, in
constant mode). Then the border is written one axis at a time, innermost first: for axis k
the region is the output's pad positions on k, the input's extent on the axes before k and
the whole output on the axes after k — a contiguous block per position on k, so each block is
either filled (constant mode) or copied from a block of the output that is already complete
(the other modes; which one comes from `np.pad` on an index vector, as ONNX's reference does).
Neighbouring positions that copy neighbouring sources go as one run.

Pads whose values each run gives (declared with --input-values: passes/values.py) take one scalar kernel
instead (`emit_pad_run_time`; with an axes input, constant or declared too, the kernel reads the pads and the
axes they apply to, `read_pads`): every output element inside the run's dims reads the input at its index less
the begin pad, mapped into the axis as the mode says (the pad value outside it, clamped, reflected or wrapped,
as np.pad does), so any pads, negative ones (a crop) included, in any mode, come from one module.
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.dims import push_dim
from wasinfer.backends.wasm.emitters.indexing import emit_copy
from wasinfer.backends.wasm.emitters.layout import LOAD_STORE, copy_bytes, walk
from wasinfer.backends.wasm.emitters.pool import Addr, push_addr
from wasinfer.backends.wasm.writer import I32, I64, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Dim, Expr, Extent, is_static
from wasinfer.lowering.elementwise import merge_axes
from wasinfer.lowering.layout import movable_problems, row_major

MODES = ("constant", "reflect", "edge", "wrap")
UNROLL_FILL = 8  # fills up to this many elements are unrolled stores; longer ones double by memory.copy
UNROLL_RUN = 4  # single-block copies unrolled before a loop is used


def _const_input(node: Node, graph: Graph, position: int) -> tuple[bool, np.ndarray | None]:
    """(present, value): value is None for a present input known only at run time."""
    name = node.inputs[position] if len(node.inputs) > position else ""
    if not name:
        return False, None
    return True, graph.constants.get(name)


def pad_plan(node: Node, graph: Graph) -> tuple[list[int], list[int]] | str:
    """Begin and end pads for every axis, or why they are unknown."""
    rank = len(graph.info(node.inputs[0]).shape)
    if "pads" in node.attrs or "paddings" in node.attrs:  # Pad-1 / Pad-2
        raw = [int(p) for p in node.attrs.get("pads", node.attrs.get("paddings", []))]
        axes = list(range(rank))
    else:
        present, pads = _const_input(node, graph, 1)
        if pads is None:
            return "pads must be a compile-time constant"
        raw = [int(p) for p in pads.reshape(-1)]
        present, axes_value = _const_input(node, graph, 3)
        if present and axes_value is None:
            return "axes must be a compile-time constant"
        axes = [int(a) for a in axes_value.reshape(-1)] if axes_value is not None else list(range(rank))
    if len(raw) != 2 * len(axes):
        return f"{len(raw)} pads for {len(axes)} axes"
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        return f"axes {axes} are out of range or repeated for rank {rank}"
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis % rank], end[axis % rank] = raw[i], raw[len(axes) + i]
    return begin, end


def declared_pads(node: Node, graph: Graph) -> Extent | None:
    """The pads' symbolic values where each run gives them (--input-values), else None."""
    name = node.inputs[1] if len(node.inputs) > 1 and "pads" not in node.attrs else ""
    values = graph.shape_values.get(name) if name else None
    return values if values is not None and not is_static(values) else None


def _check_pad(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    mode = node.attr("mode", "constant")
    if mode not in MODES:
        problems.append(f"mode={mode!r} is not one of {', '.join(MODES)}")
    if reads_pads(node, graph):
        problems += [f"{name!r} has dtype {graph.info(name).dtype}, not int64" for name in node.inputs[1:4:2]
                     if graph.info(name).dtype != np.int64]
        if graph.info(node.inputs[0]).dtype.itemsize not in (1, 2, 4, 8) or node.inputs[0] in graph.extents:
            problems.append("run-time pads need a static input of 1, 2, 4 or 8-byte elements")
        if graph.info(node.inputs[1]).size != 2 * graph.info(node.inputs[3]).size:
            problems.append(f"{graph.info(node.inputs[1]).size} pads for {graph.info(node.inputs[3]).size} axes")
        return problems
    if declared_pads(node, graph) is not None:
        if len(node.inputs) > 3 and node.inputs[3]:
            problems.append("declared pads with an axes input are not supported")
        if graph.info(node.inputs[0]).dtype.itemsize not in (1, 2, 4, 8) or node.inputs[0] in graph.extents:
            problems.append("declared pads need a static input of 1, 2, 4 or 8-byte elements")
        return problems
    plan = pad_plan(node, graph)
    if isinstance(plan, str):
        return [*problems, plan]
    shape = graph.info(node.inputs[0]).shape
    begin, end = plan
    out = tuple(d + b + e for d, b, e in zip(shape, begin, end, strict=True))
    if out != graph.info(node.outputs[0]).shape:
        problems.append(f"output shape {graph.info(node.outputs[0]).shape} does not match the pads ({out})")
    if mode != "constant" and min(begin + end) < 0:
        problems.append(f"negative pads are only supported in constant mode, not {mode!r}")
    padded = [d for d, b, e in zip(shape, begin, end, strict=True) if b or e]
    if mode in ("edge", "wrap", "reflect") and 0 in padded:
        problems.append(f"mode {mode!r} cannot pad an empty axis")
    if mode == "reflect" and any((b or e) and max(b, e) >= d for d, b, e in zip(shape, begin, end, strict=True)):
        problems.append("reflect pads must be smaller than the axis they pad")
    return problems


def _value_local(ctx: Ctx, node: Node, size: int, dtype: np.dtype[np.generic]) -> tuple[int, bytes | None]:
    """The pad value: its bytes when known now, and a local holding it for stores."""
    f = ctx.f
    name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    value = ctx.const(name) if name else np.asarray(node.attr("value", 0.0))
    local = f.local({8: I64, 16: V128}.get(size, I32))
    if value is None:  # a run-time scalar
        f.i32(ctx.addr(name)).mem(LOAD_STORE[size][0], align=0).set(local)
        return local, None
    raw = np.asarray(value).reshape(-1)[:1].astype(dtype).tobytes() or bytes(size)
    if size == 16:
        f.v128(raw)
    elif size == 8:
        f.i64(int.from_bytes(raw, "little", signed=True))
    else:
        f.i32(int.from_bytes(raw, "little", signed=True))
    f.set(local)
    return local, raw


def _fill(f: Func, dst: Addr, count: int, size: int, value: int, raw: bytes | None) -> None:
    """dst[0:count] = value: a few stores, then memory.fill when every byte of the value is equal,
    else copies of what is already written, doubling each time."""
    if count <= 0:
        return
    if count > UNROLL_FILL and raw is not None and len(set(raw)) == 1:
        push_addr(f, dst)
        f.i32(raw[0]).i32(count * size).memory_fill()
        return
    store = LOAD_STORE[size][1]
    first = min(count, UNROLL_FILL)
    for k in range(first):
        f.get(dst[0]).get(value).mem(store, offset=dst[1] + k * size, align=0)
    done = first
    while done < count:
        step = min(done, count - done)
        copy_bytes(f, (dst[0], dst[1] + done * size), dst, step * size)
        done += step


def _runs(sources: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """(dst, src) position pairs → runs (dst, src, count, src_step) with dst stepping by 1."""
    runs: list[tuple[int, int, int, int]] = []
    for dst, src in sources:
        if runs:
            d, s, count, step = runs[-1]
            if d + count == dst and ((count == 1 and src - s in (-1, 0, 1)) or s + count * step == src):
                runs[-1] = (d, s, count + 1, src - s if count == 1 else step)
                continue
        runs.append((dst, src, 1, 1))
    return runs


def _copy_runs(f: Func, ptr: int, runs: list[tuple[int, int, int, int]], block: int) -> None:
    """Copy blocks of `block` bytes within the output at `ptr`, run by run."""
    for dst, src, count, step in runs:
        if step == 1:
            copy_bytes(f, (ptr, dst * block), (ptr, src * block), count * block)
        elif count <= UNROLL_RUN:
            for k in range(count):
                copy_bytes(f, (ptr, (dst + k) * block), (ptr, (src + k * step) * block), block)
        else:
            d, s, counter = f.local(I32), f.local(I32), f.local(I32)
            f.get(ptr).i32(dst * block).op("i32.add").set(d).get(ptr).i32(src * block).op("i32.add").set(s)
            with f.for_range(counter, 0, count):
                copy_bytes(f, (d, 0), (s, 0), block)
                f.inc(d, block).inc(s, step * block)


@kernel("Pad", check=_check_pad)
def emit_pad(ctx: Ctx, node: Node) -> None:
    if declared_pads(node, ctx.graph) is not None or reads_pads(node, ctx.graph):
        emit_pad_run_time(ctx, node)
        return
    f = ctx.f
    info, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    if out.size == 0:
        return
    plan = pad_plan(node, ctx.graph)
    assert not isinstance(plan, str)
    mode = node.attr("mode", "constant")
    size, rank = info.dtype.itemsize, len(info.shape)
    crop = [max(-b, 0) for b in plan[0]], [max(-e, 0) for e in plan[1]]
    begin, end = [max(b, 0) for b in plan[0]], [max(e, 0) for e in plan[1]]
    inner = [d - cb - ce for d, cb, ce in zip(info.shape, *crop, strict=True)]
    in_strides, out_strides = row_major(info.shape), row_major(out.shape)
    dst = ctx.addr(node.outputs[0])
    emit_copy(f, dst + sum(b * s for b, s in zip(begin, out_strides, strict=True)) * size, list(out_strides),
              ctx.addr(node.inputs[0]) + sum(c * s for c, s in zip(crop[0], in_strides, strict=True)) * size,
              list(in_strides), tuple(inner), size)
    value, raw = _value_local(ctx, node, size, info.dtype) if mode == "constant" else (0, None)
    ptr = f.local(I32)
    extent = ctx.graph.extents.get(node.inputs[0]) or tuple(info.shape)
    for axis in reversed(range(rank)):
        b, e, d = begin[axis], end[axis], inner[axis]
        if not (b or e) or math.prod(inner[:axis]) == 0:
            continue
        block = out_strides[axis] * size
        f.i32(dst + sum(begin[j] * out_strides[j] for j in range(axis)) * size).set(ptr)
        dims, (strides,) = merge_axes(tuple(inner[:axis]), [list(out_strides[:axis])])
        if not axis:
            dims, strides = [], []

        run_time = isinstance(extent[axis], Expr)

        def leaf(b: int = b, e: int = e, d: int = d, block: int = block, axis: int = axis,
                 run_time: bool = run_time) -> None:
            if mode == "constant":
                _fill(f, (ptr, 0), b * block // size, size, value, raw)
                _fill(f, (ptr, (b + d) * block), e * block // size, size, value, raw)
                return
            sources = np.pad(np.arange(d) + b, (b, e), mode=mode)
            ends = [] if run_time else [*range(b + d, b + d + e)]  # a symbolic axis's end: below
            pairs = [(q, int(sources[q])) for q in [*range(b), *ends]]
            _copy_runs(f, ptr, _runs(pairs), block)
            if run_time and e:
                _run_time_end(ctx, extent[axis], ptr, b, e, block, mode)

        # one pointer walks the outer axes: `walk` gets it as both of its pointers, stepping once
        walk(f, dims, [0] * len(dims), [s * size for s in strides], ptr, ptr, 1, leaf)


def _run_time_end(ctx: Ctx, dim: Dim, ptr: int, begin: int, end: int, block: int, mode: str) -> None:
    """Reflect or edge padding after a symbolic axis whose run's dim is `dim`: position begin + dim + j copies
    begin + dim - 2 - j (reflect) or begin + dim - 1 (edge). From base = begin + dim - 1 - end (>= 0: the extent
    rule asks every run for more than `end` elements) both are fixed offsets."""
    f = ctx.f
    base, dst, src, counter = (f.local(I32) for _ in range(4))
    f.get(ptr)
    push_dim(f, dim, ctx.symbols)
    f.i32(begin - 1 - end).op("i32.add").i32(block).op("i32.mul").op("i32.add").set(base)
    source = (lambda j: end - 1 - j) if mode == "reflect" else (lambda j: end)
    if end <= UNROLL_RUN:
        for j in range(end):
            copy_bytes(f, (base, (end + 1 + j) * block), (base, source(j) * block), block)
        return
    f.get(base).i32((end + 1) * block).op("i32.add").set(dst)
    f.get(base).i32(source(0) * block).op("i32.add").set(src)
    with f.for_range(counter, 0, end):
        copy_bytes(f, (dst, 0), (src, 0), block)
        f.inc(dst, block)
        if mode == "reflect":
            f.inc(src, -block)


def _source_index(f: Func, index: int, d: int, mode: str) -> None:
    """Map the i32 local `index` (output position less the begin pad) into [0, d) as the mode says, in place;
    constant mode leaves it (the caller writes the value where it is outside)."""
    if mode == "edge":  # clamp
        f.i32(0).get(index).get(index).i32(0).op("i32.lt_s").op("select").set(index)
        f.i32(d - 1).get(index).get(index).i32(d - 1).op("i32.gt_s").op("select").set(index)
    elif mode == "wrap":  # index mod d, never negative
        f.get(index).i32(d).op("i32.rem_s").i32(d).op("i32.add").i32(d).op("i32.rem_s").set(index)
    elif mode == "reflect":  # np.pad's reflection: period 2 (d - 1), the second half mirrored
        if d == 1:
            f.i32(0).set(index)
            return
        period = 2 * (d - 1)
        f.get(index).i32(period).op("i32.rem_s").i32(period).op("i32.add").i32(period).op("i32.rem_s").set(index)
        f.i32(period).get(index).op("i32.sub").get(index).get(index).i32(d).op("i32.ge_s").op("select").set(index)


def emit_pad_run_time(ctx: Ctx, node: Node) -> None:
    """Each output element inside the run's dims (input dim + begin + end, from the pads' symbols) from the input
    at its index less the begin pad, mapped into the axis by the mode; a negative output dim traps the run, as
    ONNX Runtime fails it, and so does padding an empty axis in a mode other than constant."""
    f = ctx.f
    info, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    shape, rank, size = info.shape, len(info.shape), info.dtype.itemsize
    pads = declared_pads(node, ctx.graph)
    mode = node.attr("mode", "constant")
    in_strides, out_strides = row_major(shape), row_major(out.shape)
    begins, counts = [f.local(I32) for _ in shape], [f.local(I32) for _ in shape]
    if pads is None:  # read with the axes they apply to (`read_pads`)
        read_pads(ctx, node, begins, counts)
    for j, d in enumerate(shape):
        if pads is not None:
            push_dim(f, pads[j], ctx.symbols)
            f.tee(begins[j]).i32(d).op("i32.add")
            push_dim(f, pads[rank + j], ctx.symbols)
            f.op("i32.add").tee(counts[j])
        else:
            f.get(counts[j])
        f.i32(0).op("i32.lt_s")
        if mode != "constant" and d == 0:  # nothing to copy an edge, a reflection or a wrap from
            f.get(counts[j]).op("i32.or")
        with f.if_():
            f.op("unreachable")
    value = _value_local(ctx, node, size, info.dtype)[0] if mode == "constant" else -1
    load, store = LOAD_STORE[size]
    pout = f.local(I32)
    f.i32(ctx.addr(node.outputs[0])).set(pout)

    def level(j: int, src: int, outside: int | None) -> None:
        if j == rank:
            f.get(pout)
            if outside is None:
                f.get(src).mem(load, align=0)
            else:
                f.get(outside)
                with f.if_(blocktype={8: I64}.get(size, I32)):
                    f.get(value)
                    f.else_()
                    f.get(src).mem(load, align=0)
            f.mem(store, align=0)
            return
        counter, index, here, saved = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
        flag = f.local(I32) if mode == "constant" else None
        f.get(pout).set(saved)
        with f.for_range(counter, 0, ("local", counts[j])):
            f.get(counter).get(begins[j]).op("i32.sub").set(index)
            _source_index(f, index, shape[j], mode)
            f.get(src).get(index).i32(in_strides[j] * size).op("i32.mul").op("i32.add").set(here)
            if flag is not None:  # outside the input on this axis or an earlier one
                f.get(index).i32(0).op("i32.lt_s").get(index).i32(shape[j]).op("i32.ge_s").op("i32.or")
                if outside is not None:
                    f.get(outside).op("i32.or")
                f.set(flag)
            level(j + 1, here, flag)
            f.inc(pout, out_strides[j] * size)
        f.get(saved).set(pout)

    base = f.local(I32)
    f.i32(ctx.addr(node.inputs[0])).set(base)
    level(0, base, None)


def read_pads(ctx: Ctx, node: Node, begins: list[int], counts: list[int]) -> None:
    """Pads read by each run with the axes they apply to (a constant or a run-time axes input, declared with
    --input-values: passes/values.py): begins[j] and counts[j] (the output's dim) of every input axis j, each
    dim checked against the largest the output is laid out for and written to its symbol. An axis out of range
    or named twice traps the run, as ONNX Runtime fails it."""
    f = ctx.f
    info, out = ctx.info(node.inputs[0]), ctx.info(node.outputs[0])
    shape, rank = info.shape, len(info.shape)
    axes_name = node.inputs[3]
    constant = ctx.graph.constants.get(axes_name)
    n = ctx.info(axes_name).size
    ends, hits, axis = [f.local(I32) for _ in shape], [f.local(I32) for _ in shape], f.local(I32)
    for j in range(rank):
        f.i32(0).set(begins[j]).i32(0).set(ends[j]).i32(0).set(hits[j])
    pads_at = ctx.addr(node.inputs[1])
    for i in range(n):
        if constant is not None:
            f.i32(int(np.asarray(constant).reshape(-1)[i]))
        else:
            f.i32(ctx.addr(axes_name) + 8 * i).mem("i64.load").op("i32.wrap_i64")
        f.set(axis)  # counted from the end when negative
        f.get(axis).i32(rank).op("i32.add").get(axis).get(axis).i32(0).op("i32.lt_s").op("select").set(axis)
        f.get(axis).i32(0).op("i32.lt_s").get(axis).i32(rank).op("i32.ge_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        for j in range(rank):  # the pads go to axis j where axes[i] is j
            for target, position in ((begins[j], i), (ends[j], n + i)):
                f.get(target).i32(pads_at + 8 * position).mem("i64.load").op("i32.wrap_i64").i32(0)
                f.get(axis).i32(j).op("i32.eq").op("select").op("i32.add").set(target)
            f.get(hits[j]).get(axis).i32(j).op("i32.eq").op("i32.add").set(hits[j])
    extent = ctx.graph.decided.get(node.outputs[0], out.shape)
    for j, d in enumerate(shape):
        f.get(begins[j]).i32(d).op("i32.add").get(ends[j]).op("i32.add").set(counts[j])
        f.get(hits[j]).i32(1).op("i32.gt_s").get(counts[j]).i32(out.shape[j]).op("i32.gt_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        if isinstance(extent[j], Expr):
            f.i32(ctx.symbols[str(extent[j])]).get(counts[j]).mem("i32.store")


def reads_pads(node: Node, graph: Graph) -> bool:
    """Pads and axes that each run gives (declared), rather than pads' symbols: the axes input is present."""
    pads = node.inputs[1] if len(node.inputs) > 1 and "pads" not in node.attrs else ""
    axes = node.inputs[3] if len(node.inputs) > 3 else ""
    return bool(pads) and pads in graph.read_values and bool(axes) and (axes in graph.read_values
                                                                      or axes in graph.constants)


__all__ = ["pad_plan", "reads_pads"]
