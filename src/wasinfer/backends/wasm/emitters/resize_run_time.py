"""Resize and Upsample whose roi, scales or sizes each run gives (lowering/resize.py `RunTimeResize`).

The static kernel (emitters/resize.py) reads tables of taps built while compiling; here the values are known
only once the run has read them, so the kernel computes what lowering/resize.py computes in numpy, in f64 as
numpy does: first each resized axis's scale and output dim (trunc(scale * n) from scales; from sizes the
size, or trunc(c * n + 0.5) with the aspect-ratio policy's common scale c), written to the dim's symbol (the
output is laid out for the largest, passes/dynamic.py); then, one axis at a time, outermost first, for each
output position its source coordinate (every coordinate_transformation_mode), and its taps: the nearest
index (every nearest_mode), or the linear or cubic filter's taps around it (widened by 1/scale when
antialiasing a downscale), as `axis_matrix` derives them: the taps are the input indices nearest x (found as
ONNX's reference finds them, in float64, so that a coordinate a rounding away from a whole number picks the
same ones), tap i from the left neighbour weighted by the filter at (i - ratio), ratio = x - floor(x) (1 where
x is whole), times the scale where antialiasing, zeroed outside the input with exclude_outside, normalised
where antialias or exclude_outside asks.

Passing outermost first keeps every row a pass moves static: the axes after the one it resizes are not resized
yet. The outer axes before it loop over the run's dims. Nearest moves rows bit for bit (any dtype); linear and
cubic sum weighted float32 rows, four lanes per v128. A scale that is not positive, a negative size, or an
output dim past the largest planned for traps the run, as ONNX Runtime fails it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from wasinfer.backends.wasm.context import Ctx
from wasinfer.backends.wasm.writer import F64, I32, V128, Func
from wasinfer.ir import Node
from wasinfer.ir.symbolic import Expr
from wasinfer.lowering.layout import row_major
from wasinfer.lowering.resize import Parameter, RunTimeResize, run_time_resize

LOADS = {"float32": ("f32.load", "f64.promote_f32"), "float64": ("f64.load", ""),
         "int32": ("i32.load", "f64.convert_i32_s"), "int64": ("i64.load", "f64.convert_i64_s")}
SUPPORT = {"linear": 1, "cubic": 2}  # half the filter's width, in input elements at scale 1
# one loop level over the axes before the resized one: its count (static, or ("local", i) for a run's dim) and the
# byte strides of the source and destination layouts
Level = tuple[int | tuple[str, int], int, int]


def emit_resize_run_time(ctx: Ctx, node: Node) -> None:
    plan = run_time_resize(node, ctx.graph)
    f = ctx.f
    scale = {a: f.local(F64) for a in plan.axes}
    count = {a: f.local(I32) for a in plan.axes}
    _read_parameters(ctx, plan, scale, count)
    layouts, order = plan.layouts(), plan.order()
    even, _ = plan.buffers()
    scratch = (ctx.scratch_addr, ctx.scratch_addr + even)
    src = ctx.addr(node.inputs[0])
    for step, axis in enumerate(order):
        dst = ctx.addr(node.outputs[0]) if step == len(order) - 1 else scratch[step % 2]
        _emit_axis(ctx, plan, axis, (src, layouts[step]), (dst, layouts[step + 1]), scale, count)
        src = dst


def _push(ctx: Ctx, parameter: Parameter, index: int) -> None:
    """Push value `index` of a parameter as an f64."""
    if parameter.name is None:
        ctx.f.f64(parameter.values[index])
        return
    assert parameter.dtype is not None
    load, widen = LOADS[parameter.dtype.name]
    ctx.f.i32(ctx.addr(parameter.name) + index * parameter.dtype.itemsize).mem(load, align=0)
    if widen:
        ctx.f.op(widen)


def _trap_if(f: Func) -> None:
    with f.if_():
        f.op("unreachable")


def _read_parameters(ctx: Ctx, plan: RunTimeResize, scale: dict[int, int], count: dict[int, int]) -> None:
    """Each resized axis's scale (f64) and output dim (i32), as lowering/resize.py's plan_problems computes them;
    the dims a run decides are written to their symbols."""
    f = ctx.f
    for i, a in enumerate(plan.axes):
        n_in = plan.in_shape[a]
        if plan.scales is not None:
            _push(ctx, plan.scales, i)
            f.tee(scale[a]).f64(0.0).op("f64.gt").op("i32.eqz")  # not positive, or NaN
            _trap_if(f)
            f.get(scale[a]).f64(n_in).op("f64.mul").op("i32.trunc_sat_f64_s").set(count[a])
        else:
            assert plan.sizes is not None
            _push(ctx, plan.sizes, i)
            f.op("i32.trunc_sat_f64_s").tee(count[a]).i32(0).op("i32.lt_s")
            _trap_if(f)
            f.get(count[a]).op("f64.convert_i32_s").f64(n_in).op("f64.div").set(scale[a])
    if plan.sizes is not None and plan.policy != "stretch":  # one scale for every axis, the dims rounded from it
        common = f.local(F64)
        f.get(scale[plan.axes[0]]).set(common)
        for a in plan.axes[1:]:
            f.get(common).get(scale[a]).op("f64.min" if plan.policy == "not_larger" else "f64.max").set(common)
        for a in plan.axes:
            f.get(common).tee(scale[a]).f64(plan.in_shape[a]).op("f64.mul").f64(0.5).op("f64.add")
            f.op("i32.trunc_sat_f64_s").set(count[a])
    for a in plan.axes:
        dim = plan.out_extent[a]
        f.get(count[a]).i32(plan.out_shape[a]).op("i32.gt_s" if isinstance(dim, Expr) else "i32.ne")
        _trap_if(f)
        if isinstance(dim, Expr):
            f.i32(ctx.symbols[str(dim)]).get(count[a]).mem("i32.store")


def _blocks(f: Func, levels: list[Level], src: int, dst: int, body: Callable[[int, int], None]) -> None:
    """body(source row, destination row) for every index of the outer axes (locals holding byte addresses)."""
    if not levels:
        body(src, dst)
        return
    (n, src_stride, dst_stride), rest = levels[0], levels[1:]
    if n == 1:
        _blocks(f, rest, src, dst, body)
        return
    index, s, d = f.local(I32), f.local(I32), f.local(I32)
    f.get(src).set(s).get(dst).set(d)
    with f.for_range(index, 0, n):
        _blocks(f, rest, s, d, body)
        f.inc(s, src_stride).inc(d, dst_stride)


def _fill_row(f: Func, dst: int, value: int, inner: int) -> None:
    """dst[0:inner] = the f32 in every lane of the v128 local `value`."""
    j, vec = f.local(I32), inner // 4 * 16
    if vec:
        with f.for_range(j, 0, vec, 16):
            f.get(dst).get(j).op("i32.add").get(value).mem("v128.store", align=0)
    for k in range(inner % 4):
        f.get(dst).get(value).lane("f32x4.extract_lane", 0).mem("f32.store", offset=vec + 4 * k, align=0)


def _copy_row(f: Func, dst: int, src: int, row: int) -> None:
    f.get(dst).get(src).i32(row).memory_copy()


def _zero_row(f: Func, dst: int, row: int) -> None:
    f.get(dst).i32(0).i32(row).memory_fill()


def _axpy_row(f: Func, dst: int, src: int, weight: int, inner: int) -> None:
    """dst[0:inner] += weight * src[0:inner] (float32; `weight` a v128 local, splatted)."""
    j, vec = f.local(I32), inner // 4 * 16
    if vec:
        with f.for_range(j, 0, vec, 16):
            f.get(dst).get(j).op("i32.add")
            f.get(dst).get(j).op("i32.add").mem("v128.load", align=0)
            f.get(src).get(j).op("i32.add").mem("v128.load", align=0).get(weight).op("f32x4.mul")
            f.op("f32x4.add").mem("v128.store", align=0)
    for k in range(inner % 4):
        f.get(dst).get(dst).mem("f32.load", offset=vec + 4 * k, align=0)
        f.get(src).mem("f32.load", offset=vec + 4 * k, align=0).get(weight).lane("f32x4.extract_lane", 0)
        f.op("f32.mul").op("f32.add").mem("f32.store", offset=vec + 4 * k, align=0)


def _emit_coordinate(ctx: Ctx, plan: RunTimeResize, a: int, o: int, x: int, scale: int, n_out: int) -> None:
    """x = where output position `o` samples the input along axis `a` (lowering/resize.py `source_coords`)."""
    f = ctx.f
    n_in, mode = plan.in_shape[a], plan.interp.coordinate
    y, width = f.local(F64), f.local(F64)
    f.get(o).op("f64.convert_i32_s").set(y)
    f.get(scale).f64(n_in).op("f64.mul").set(width)
    if mode == "asymmetric":
        f.get(y).get(scale).op("f64.div")
    elif mode == "tf_half_pixel_for_nn":
        f.get(y).f64(0.5).op("f64.add").get(scale).op("f64.div")
    elif mode in ("align_corners", "tf_crop_and_resize"):
        length = f.local(F64)  # the roi's length times n_in - 1 (align_corners: its whole axis)
        start = f.local(F64)
        if mode == "tf_crop_and_resize":
            assert plan.roi is not None
            i = plan.axes.index(a)
            _push(ctx, plan.roi, i)
            f.set(start)
            _push(ctx, plan.roi, i + len(plan.axes))
            f.get(start).op("f64.sub").set(length)
        f.get(width).f64(1.0).op("f64.eq")
        with f.if_(blocktype=F64):
            if mode == "align_corners":
                f.f64(0.0)
            else:
                f.get(length).f64(n_in - 1).op("f64.mul").f64(2.0).op("f64.div")
            f.else_()
            if mode == "align_corners":
                f.get(y).f64(n_in - 1).op("f64.mul")
            else:
                f.get(y).get(length).op("f64.mul").f64(n_in - 1).op("f64.mul")
            f.get(width).f64(1.0).op("f64.sub").op("f64.div")
        if mode == "tf_crop_and_resize":
            f.get(start).f64(n_in - 1).op("f64.mul").op("f64.add")
    elif mode == "pytorch_half_pixel":
        f.get(width).f64(1.0).op("f64.eq")
        with f.if_(blocktype=F64):
            f.f64(-0.5)
            f.else_()
            f.get(y).f64(0.5).op("f64.add").get(scale).op("f64.div").f64(0.5).op("f64.sub")
    elif mode == "half_pixel_symmetric":  # n_in / 2 * (1 - n_out / width) + (y + 0.5) / scale - 0.5
        f.f64(n_in / 2).f64(1.0).get(n_out).op("f64.convert_i32_s").get(width).op("f64.div").op("f64.sub")
        f.op("f64.mul").get(y).f64(0.5).op("f64.add").get(scale).op("f64.div").op("f64.add").f64(0.5).op("f64.sub")
    else:  # half_pixel
        f.get(y).f64(0.5).op("f64.add").get(scale).op("f64.div").f64(0.5).op("f64.sub")
    f.set(x)


def _emit_ratio(f: Func, x: int, ratio: int) -> None:
    """ratio = x - floor(x), or 1 where x is whole: the left neighbour is preferred (axis_matrix)."""
    f.get(x).get(x).op("f64.floor").op("f64.sub").set(ratio)
    f.f64(1.0).get(ratio).get(ratio).f64(0.0).op("f64.eq").op("select").set(ratio)


def _emit_neighbours(f: Func, x: int, taps: int, first: int) -> None:
    """first = the first of the `taps` (even) input indices nearest x, ties to the smaller, exactly as ONNX's
    reference rounds them (_get_neighbor_idxes: x + taps / 2 in float64, which may round a tiny fraction away)."""
    half, padded, p = f.local(I32), f.local(F64), f.local(F64)
    f.get(taps).i32(1).op("i32.shr_s").set(half)
    f.get(x).get(half).op("f64.convert_i32_s").op("f64.add").tee(padded).op("f64.floor").set(p)
    # p - taps / 2 when padded is whole, else one more; then less the pad (taps / 2)
    f.get(p).op("i32.trunc_sat_f64_s").get(half).op("i32.sub")
    f.get(padded).get(p).op("f64.ne").op("i32.add").get(half).op("i32.sub").set(first)


def _emit_nearest_index(f: Func, plan: RunTimeResize, x: int, scale: int, index: int) -> None:
    """index = the input element nearest x as the node's nearest_mode rounds (not clamped yet): of the two
    neighbours, the second where the ratio is whole or the mode rounds it up (axis_matrix's nearest coefficients)."""
    mode = plan.interp.nearest
    if mode == "simple":  # Resize-10, Upsample: ceil when downsampling, else truncate
        f.get(x).op("f64.ceil").get(x).op("f64.trunc").get(scale).f64(1.0).op("f64.lt").op("select")
        f.op("i32.trunc_sat_f64_s").set(index)
        return
    ratio, taps = f.local(F64), f.local(I32)
    _emit_ratio(f, x, ratio)
    f.i32(2).set(taps)
    _emit_neighbours(f, x, taps, index)
    f.get(index).get(ratio).f64(1.0).op("f64.eq")
    if mode == "round_prefer_floor":
        f.get(ratio).f64(0.5).op("f64.gt").op("i32.or")
    elif mode == "round_prefer_ceil":
        f.get(ratio).f64(0.5).op("f64.ge").op("i32.or")
    elif mode == "ceil":
        f.i32(1).op("i32.or")
    f.op("i32.add").set(index)


def _clamp(f: Func, index: int, n_in: int) -> None:
    f.i32(0).get(index).get(index).i32(0).op("i32.lt_s").op("select").set(index)
    f.i32(n_in - 1).get(index).get(index).i32(n_in - 1).op("i32.gt_s").op("select").set(index)


def _outside(f: Func, index: int, n_in: int) -> None:
    """Push whether `index` lies outside [0, n_in)."""
    f.get(index).i32(0).op("i32.lt_s").get(index).i32(n_in).op("i32.ge_s").op("i32.or")


def _emit_weight(f: Func, plan: RunTimeResize, offset: int, ratio: int, narrow: int, index: int, n_in: int) -> None:
    """Push the filter's weight (f64) of the tap at `offset` i from the coordinate's left neighbour, input element
    `index`: kernel(narrow * (i - ratio)), 0 outside the input with exclude_outside."""
    d = f.local(F64)
    f.get(offset).op("f64.convert_i32_s").get(ratio).op("f64.sub").get(narrow).op("f64.mul").op("f64.abs").set(d)
    if plan.interp.mode == "linear":  # clip(1 - |d|, 0, 1)
        f.f64(1.0).get(d).op("f64.sub").f64(0.0).op("f64.max").f64(1.0).op("f64.min")
    else:
        a = plan.interp.cubic_a
        f.get(d).f64(1.0).op("f64.le")
        with f.if_(blocktype=F64):  # (a + 2) d^3 - (a + 3) d^2 + 1
            f.f64(a + 2).get(d).op("f64.mul").get(d).op("f64.mul").get(d).op("f64.mul")
            f.f64(a + 3).get(d).op("f64.mul").get(d).op("f64.mul").op("f64.sub").f64(1.0).op("f64.add")
            f.else_()
            f.get(d).f64(2.0).op("f64.lt")
            with f.if_(blocktype=F64):  # a d^3 - 5a d^2 + 8a d - 4a
                f.f64(a).get(d).op("f64.mul").get(d).op("f64.mul").get(d).op("f64.mul")
                f.f64(5 * a).get(d).op("f64.mul").get(d).op("f64.mul").op("f64.sub")
                f.f64(8 * a).get(d).op("f64.mul").op("f64.add").f64(4 * a).op("f64.sub")
                f.else_()
                f.f64(0.0)
    if plan.interp.exclude_outside:  # inside ? weight : 0
        f.f64(0.0)
        _outside(f, index, n_in)
        f.op("i32.eqz").op("select")


def _emit_axis(ctx: Ctx, plan: RunTimeResize, a: int, source: tuple[int, tuple[int, ...]],
               target: tuple[int, tuple[int, ...]], scale: dict[int, int], count: dict[int, int]) -> None:
    """Resize axis `a` of the tensor at `source` (its largest layout) into `target`."""
    f = ctx.f
    (src, src_shape), (dst, dst_shape) = source, target
    size, n_in, interp = plan.itemsize, plan.in_shape[a], plan.interp
    inner = math.prod(src_shape[a + 1:])
    row = inner * size
    if row == 0:
        return
    src_strides, dst_strides = row_major(src_shape), row_major(dst_shape)
    levels: list[Level] = [(("local", count[b]) if b in count else src_shape[b], src_strides[b] * size,
                            dst_strides[b] * size) for b in range(a)]
    o, x, index = f.local(I32), f.local(F64), f.local(I32)
    src_row, dst_row = f.local(I32), f.local(I32)
    outside = f.local(I32)
    crop = interp.coordinate == "tf_crop_and_resize"
    with f.for_range(o, 0, ("local", count[a])):
        _emit_coordinate(ctx, plan, a, o, x, scale[a], count[a])
        f.get(o).i32(row).op("i32.mul").i32(dst).op("i32.add").set(dst_row)
        if crop:  # outside the input: the extrapolation value
            f.get(x).f64(0.0).op("f64.lt").get(x).f64(n_in - 1).op("f64.gt").op("i32.or").set(outside)
        else:
            f.i32(0).set(outside)
        if interp.mode == "nearest":
            _nearest_rows(ctx, plan, levels, x, scale[a], index, (src, src_row, dst_row), outside, n_in, row)
        else:
            _filter_rows(ctx, plan, levels, x, scale[a], index, (src, src_row, dst_row), outside, n_in, inner)


def _nearest_rows(ctx: Ctx, plan: RunTimeResize, levels: list[Level], x: int, scale: int, index: int,
                  rows: tuple[int, int, int], outside: int, n_in: int, row: int) -> None:
    """Every outer block's output row = the nearest source row, moved bit for bit; the extrapolation value outside
    a tf_crop_and_resize's input, 0 where exclude_outside drops the nearest element."""
    f = ctx.f
    src, src_row, dst_row = rows
    _emit_nearest_index(f, plan, x, scale, index)
    if plan.interp.exclude_outside and plan.interp.nearest != "simple":
        _outside(f, index, n_in)
        f.get(outside).op("i32.or").set(outside)

    def copy() -> None:
        _clamp(f, index, n_in)
        f.get(index).i32(row).op("i32.mul").i32(src).op("i32.add").set(src_row)
        _blocks(f, levels, src_row, dst_row, lambda s, d: _copy_row(f, d, s, row))

    if plan.interp.coordinate != "tf_crop_and_resize" and not plan.interp.exclude_outside:
        copy()
        return
    f.get(outside)
    with f.if_():
        if plan.interp.coordinate == "tf_crop_and_resize":  # float32 (run_time_problems)
            value = f.local(V128)
            f.f32(plan.interp.extrapolation).op("f32x4.splat").set(value)
            _blocks(f, levels, dst_row, dst_row, lambda _, d: _fill_row(f, d, value, row // 4))
        else:
            _blocks(f, levels, dst_row, dst_row, lambda _, d: _zero_row(f, d, row))
        f.else_()
        copy()


def _filter_rows(ctx: Ctx, plan: RunTimeResize, levels: list[Level], x: int, scale: int, index: int,
                 rows: tuple[int, int, int], outside: int, n_in: int, inner: int) -> None:
    """Every outer block's output row = the sum of the filter's taps around x, each a weighted source row."""
    f = ctx.f
    interp = plan.interp
    src, src_row, dst_row = rows
    bias = f.local(F64)  # the rows start at the extrapolation value outside the input, else at 0
    f.f64(interp.extrapolation).f64(0.0).get(outside).op("select").set(bias)
    value = f.local(V128)
    f.get(bias).op("f32.demote_f64").op("f32x4.splat").set(value)
    _blocks(f, levels, dst_row, dst_row, lambda _, d: _fill_row(f, d, value, inner))
    f.get(outside).op("i32.eqz")
    with f.if_():
        narrow, start, first, taps, tap = f.local(F64), f.local(I32), f.local(I32), f.local(I32), f.local(I32)
        ratio, offset = f.local(F64), f.local(I32)
        support = SUPPORT[interp.mode]
        if interp.antialias:  # the filter widened by 1 / scale when downsampling: taps from floor(-support / s) + 1
            f.get(scale).f64(1.0).op("f64.min").set(narrow)
            f.f64(-support).get(narrow).op("f64.div").op("f64.floor").op("i32.trunc_sat_f64_s").i32(1).op("i32.add")
        else:
            f.f64(1.0).set(narrow)
            f.i32(1 - support)
        f.set(start)  # the first tap's offset i from the left neighbour (the taps run to 1 - i: 2 - 2i of them)
        f.i32(2).get(start).i32(2).op("i32.mul").op("i32.sub").set(taps)
        _emit_ratio(f, x, ratio)
        _emit_neighbours(f, x, taps, first)
        total = f.local(F64)
        f.f64(1.0).set(total)
        if interp.antialias or interp.exclude_outside:  # normalised by the sum of the weights
            f.f64(0.0).set(total)
            with f.for_range(tap, 0, ("local", taps)):
                f.get(first).get(tap).op("i32.add").set(index)
                f.get(start).get(tap).op("i32.add").set(offset)
                f.get(total)
                _emit_weight(f, plan, offset, ratio, narrow, index, n_in)
                f.op("f64.add").set(total)
            f.f64(1.0).get(total).get(total).f64(0.0).op("f64.eq").op("select").set(total)
        weight, splat = f.local(F64), f.local(V128)
        with f.for_range(tap, 0, ("local", taps)):
            f.get(first).get(tap).op("i32.add").set(index)
            f.get(start).get(tap).op("i32.add").set(offset)
            _emit_weight(f, plan, offset, ratio, narrow, index, n_in)
            f.get(total).op("f64.div").tee(weight).f64(0.0).op("f64.ne")
            with f.if_():
                f.get(weight).op("f32.demote_f64").op("f32x4.splat").set(splat)
                _clamp(f, index, n_in)
                f.get(index).i32(inner * 4).op("i32.mul").i32(src).op("i32.add").set(src_row)
                _blocks(f, levels, src_row, dst_row, lambda s, d: _axpy_row(f, d, s, splat, inner))


__all__ = ["emit_resize_run_time"]
