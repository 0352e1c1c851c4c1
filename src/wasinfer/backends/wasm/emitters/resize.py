"""Resize (opsets 10-19) and Upsample (opset 9): rendering lowering/resize.py's separable plan.

The plan (lowering/resize.py) holds, for every resized axis, a table of source indices and
weights per output position, built in numpy exactly as ONNX's reference evaluator derives
them, and the order of the passes (shrinking axes first). This module resizes one axis at a
time, with scratch buffers between passes.

A pass over an axis with a contiguous run of `inner` elements after it mixes whole rows:
each output row is a weighted sum of source rows, four floats per v128. The innermost axis
(inner == 1) is a scalar weighted gather; a nearest-neighbour integer upscale there (the
common 2x of detectors and segmenters) repeats each element k times, and along outer axes
it is row copies. Nearest copies move elements bit for bit, so they serve any dtype.

Where a run gives the roi, scales or sizes, emitters/resize_run_time.py computes the taps during the run.
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.layout import LOAD_STORE, copy_bytes
from wasinfer.backends.wasm.emitters.resize_run_time import emit_resize_run_time
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.resize import (
    AxisPass,
    ResizePlan,
    plan_problems,
    resize_plan,
    resize_scratch,
    takes_run_time_path,
    tap_table,
)

# ---------------------------------------------------------------- code

def _check_resize(node: Node, graph: Graph) -> list[str]:
    return plan_problems(node, graph)[0]


@kernel("Resize", "Upsample", check=_check_resize, scratch=resize_scratch)
def emit_resize(ctx: Ctx, node: Node) -> None:
    if takes_run_time_path(node, ctx.graph):  # roi, scales or sizes read by each run
        emit_resize_run_time(ctx, node)
        return
    plan = resize_plan(node, ctx.graph)
    _check_run_time_sizes(ctx, node, plan)
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    if math.prod(plan.out_shape) == 0:
        return
    if not plan.passes:
        ctx.f.i32(y).i32(x).i32(math.prod(plan.out_shape) * plan.itemsize).memory_copy()
        return
    even, _ = plan.buffers()
    scratch = (ctx.scratch_addr, ctx.scratch_addr + even)
    shapes = plan.shapes()
    src = x
    for step, p in enumerate(plan.passes):
        dst = y if step == len(plan.passes) - 1 else scratch[step % 2]
        shape = shapes[step]
        outer, inner = math.prod(shape[:p.axis]), math.prod(shape[p.axis + 1:])
        _emit_pass(ctx, p, src, dst, outer, inner, plan.itemsize)
        src = dst


def _check_run_time_sizes(ctx: Ctx, node: Node, plan: ResizePlan) -> None:
    """Run-time sizes without a declared range were read from the static output shape (lowering/resize.py): trap
    a run whose sizes differ, which would otherwise get that shape's output silently."""
    sizes = node.inputs[3] if len(node.inputs) > 3 and node.op_type == "Resize" and ctx.graph.opset >= 11 else ""
    if not sizes or sizes in ctx.graph.constants:
        return
    rank = len(plan.in_shape)
    axes = [int(a) % rank for a in node.attr("axes")] if node.attr("axes") is not None else list(range(rank))
    f = ctx.f
    wide = ctx.info(sizes).dtype == np.int64
    f.i32(0)
    for i, a in enumerate(axes):
        f.i32(ctx.addr(sizes) + (8 if wide else 4) * i).mem("i64.load" if wide else "i32.load")
        if not wide:
            f.op("i64.extend_i32_s")
        f.i64(plan.out_shape[a]).op("i64.ne").op("i32.or")
    with f.if_():
        f.op("unreachable")


def _emit_pass(ctx: Ctx, p: AxisPass, src: int, dst: int, outer: int, inner: int, size: int) -> None:
    f = ctx.f
    if outer == 0 or inner == 0:
        return
    if inner == 1 and p.repeat is not None:
        _emit_repeat(f, src, dst, outer * p.n_in, p.repeat, size)
        return
    taps = p.index.shape[1]
    row_bytes = inner * size
    table = tap_table(p, row_bytes)
    entry = table.shape[1] * 4
    table_addr = ctx.data(table)
    ps, pd, pt, block, position = (f.local(I32) for _ in range(5))
    f.i32(src).set(ps).i32(dst).set(pd)
    with f.for_range(block, 0, outer):
        f.i32(table_addr).set(pt)
        with f.for_range(position, 0, p.n_out):
            if p.copies:
                row = f.local(I32)
                f.get(ps).get(pt).mem("i32.load").op("i32.add").set(row)
                if inner == 1:
                    load, store = LOAD_STORE[size]
                    f.get(pd).get(row).mem(load, align=0).mem(store, align=0)
                else:
                    copy_bytes(f, (pd, 0), (row, 0), row_bytes)
            elif inner == 1:
                _emit_point(f, p, ps, pd, pt, taps)
            else:
                _emit_rows(f, p, ps, pd, pt, taps, inner)
            f.inc(pd, row_bytes).inc(pt, entry)
        f.inc(ps, p.n_in * row_bytes)


def _emit_point(f: Func, p: AxisPass, ps: int, pd: int, pt: int, taps: int) -> None:
    """One output of the innermost axis: a weighted gather of `taps` scalars."""
    f.get(pd)
    for t in range(taps):
        f.get(ps).get(pt).mem("i32.load", offset=8 * t).op("i32.add").mem("f32.load")
        f.get(pt).mem("f32.load", offset=8 * t + 4).op("f32.mul")
        if t:
            f.op("f32.add")
    if p.bias is not None:
        f.get(pt).mem("f32.load", offset=8 * taps).op("f32.add")
    f.mem("f32.store")


def _emit_rows(f: Func, p: AxisPass, ps: int, pd: int, pt: int, taps: int, inner: int) -> None:
    """One output row: bias + sum of weighted source rows, four floats per v128, then the tail."""
    rows = [f.local(I32) for _ in range(taps)]
    weights = [f.local(V128) for _ in range(taps)]
    bias, j = f.local(V128), f.local(I32)
    for t in range(taps):
        f.get(ps).get(pt).mem("i32.load", offset=8 * t).op("i32.add").set(rows[t])
        f.get(pt).mem("f32.load", offset=8 * t + 4).op("f32x4.splat").set(weights[t])
    if p.bias is not None:
        f.get(pt).mem("f32.load", offset=8 * taps).op("f32x4.splat").set(bias)
    vec_end = inner // 4 * 4 * 4
    for start, stop, lanes in ((0, vec_end, 4), (vec_end, inner * 4, 1)):
        if stop <= start:
            continue
        load, store = ("v128.load", "v128.store") if lanes == 4 else ("f32.load", "f32.store")
        with f.for_range(j, start, stop, 4 * lanes):
            f.get(pd).get(j).op("i32.add")
            for t in range(taps):
                f.get(rows[t]).get(j).op("i32.add").mem(load)
                if lanes == 1:
                    f.op("f32x4.splat")
                f.get(weights[t]).op("f32x4.mul")
                if t:
                    f.op("f32x4.add")
            if p.bias is not None:
                f.get(bias).op("f32x4.add")
            if lanes == 1:
                f.lane("f32x4.extract_lane", 0)
            f.mem(store)


def _emit_repeat(f: Func, src: int, dst: int, count: int, k: int, size: int) -> None:
    """dst[i*k + r] = src[i] for i < count, r < k: a nearest integer upscale of the innermost axis."""
    ps, pd, i = f.local(I32), f.local(I32), f.local(I32)
    f.i32(src).set(ps).i32(dst).set(pd)
    if size == 4 and k == 2:  # four inputs become eight outputs through two shuffles
        v = f.local(V128)
        if count >= 4:
            with f.for_range(i, 0, count // 4):
                f.get(ps).mem("v128.load", align=0).set(v)
                f.get(pd).get(v).get(v).shuffle32((0, 0, 1, 1)).mem("v128.store", align=0)
                f.get(pd).get(v).get(v).shuffle32((2, 2, 3, 3)).mem("v128.store", offset=16, align=0)
                f.inc(ps, 16).inc(pd, 32)
        count %= 4
    if count == 0:
        return
    load, store = LOAD_STORE[size]
    with f.for_range(i, 0, count):
        if size == 4:
            v = f.local(V128)
            f.get(ps).mem("f32.load").op("f32x4.splat").set(v)
            for r in range(k // 4):
                f.get(pd).get(v).mem("v128.store", offset=16 * r, align=0)
            for r in range(k // 4 * 4, k):
                f.get(pd).get(v).lane("f32x4.extract_lane", 0).mem("f32.store", offset=4 * r, align=0)
        else:
            for r in range(k):
                f.get(pd).get(ps).mem(load, align=0).mem(store, offset=size * r, align=0)
        f.inc(ps, size).inc(pd, size * k)


__all__ = ["emit_resize"]
