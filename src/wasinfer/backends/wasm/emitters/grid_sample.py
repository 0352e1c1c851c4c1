"""GridSample and AffineGrid: the two halves of a spatial transformer (and of optical-flow warps).

AffineGrid writes, for every output point, theta times the point's normalised coordinates (x first: the last
axis), the coordinates a constant table per axis; where a run gives the size (declared with --input-values,
passes/values.py), the kernel reads it, writes each spatial dim to its symbol (the output laid out for the
range's largest) and computes each coordinate as the table would hold it. GridSample reads, for every output
point, its normalised coordinates from the grid and samples every channel of the input there. The coordinates,
taps and weights of a point are worked out once, then one pass over the channels sums weight x element: per
axis, the taps' element offsets and weights with the padding applied to each tap (zeros: a weight of 0 at
offset 0, so no read leaves the tensor; border: clamped; reflection: mirrored, then clamped), and their
products over the axes (2 corners per axis for linear, 4 for cubic, 1 for nearest).

The arithmetic is PyTorch's, as ONNX Runtime and ONNX's reference implement it: for nearest and linear the
coordinate is clamped or reflected first when it lies outside the borders (-0.5 and d - 0.5, or 0 and d - 1
with align_corners); nearest rounds half to even; cubic is Keys' with A = -0.75 and pads each of its taps
only, as PyTorch and ONNX Runtime do (ONNX's reference also clamps a cubic coordinate with border padding,
which moves the point itself; no backend-suite case has that combination). Any rank of spatial axes for
nearest and linear (opset 20's N-D form; opset 16's names bilinear/bicubic are the same modes); cubic is
2-D, as in ONNX Runtime.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import F32, F64, I32, I64, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr

MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}
PADDINGS = ("zeros", "border", "reflection")
CUBIC_A = -0.75  # Keys' cubic convolution, as PyTorch and ONNX take it


@dataclass(frozen=True)
class Sampling:
    mode: str  # linear, nearest or cubic
    padding: str
    align_corners: bool


def _sampling(node: Node) -> Sampling:
    return Sampling(MODES.get(str(node.attr("mode", "linear")), ""), str(node.attr("padding_mode", "zeros")),
                    bool(node.attr("align_corners", 0)))


def _check_grid_sample(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    mode = str(node.attr("mode", "linear"))
    padding = str(node.attr("padding_mode", "zeros"))
    x_rank, grid_shape = len(graph.info(node.inputs[0]).shape), graph.info(node.inputs[1]).shape
    if mode not in MODES:
        problems.append(f"mode {mode!r} is not one of {sorted(MODES)}")
    if padding not in PADDINGS:
        problems.append(f"padding_mode {padding!r} is not one of {list(PADDINGS)}")
    if x_rank < 3 or grid_shape[-1] != x_rank - 2 or len(grid_shape) != x_rank:
        problems.append(f"grid of shape {list(grid_shape)} does not match an input of rank {x_rank} "
                        f"([N, *out, {x_rank - 2}] expected)")
    if MODES.get(mode) == "cubic" and x_rank != 4:
        problems.append(f"mode {mode!r} is 2-D only (an input of rank 4); this input has rank {x_rank}")
    return problems


def _borders(size: int, align_corners: bool) -> tuple[float, float]:
    """Where the coordinate stops being inside the axis: pixel centres or pixel edges."""
    return (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)


def _reflect(f: Func, v: int, low: float, high: float) -> None:
    """v mirrored at `low` and `high` until it lies between them (local v, in place), as ONNX's reference
    folds it: the number of whole spans past the border decides which border the rest counts from."""
    span = high - low
    if span <= 0:  # a one-element axis with align_corners: every coordinate is its one centre
        f.f32(low).set(v)
        return
    dx, folds = f.local(F32), f.local(I32)
    for past, (near, far), outside in ((low, (low, high), "f32.lt"), (high, (high, low), "f32.gt")):
        f.get(v).f32(past).op(outside)
        with f.if_():
            # dx: how far past the border; folds: whole spans in it; the rest counts from the near
            # border after an even number of folds, from the far one after an odd number
            f.get(v).f32(past).op("f32.sub").op("f32.abs").set(dx)
            f.get(dx).f32(span).op("f32.div").op("i32.trunc_sat_f32_s").set(folds)
            f.get(dx).get(folds).op("f32.convert_i32_s").f32(span).op("f32.mul").op("f32.sub").set(dx)
            sign = 1.0 if near < far else -1.0
            f.f32(near).get(dx).f32(sign).op("f32.mul").op("f32.add")
            f.f32(far).get(dx).f32(sign).op("f32.mul").op("f32.sub")
            f.get(folds).i32(1).op("i32.and").op("i32.eqz").op("select").set(v)


def _cubic_weights(f: Func, t: int) -> list[int]:
    """Keys' four weights for the taps at -1, 0, 1, 2 of a point t past tap 0 (0 <= t < 1)."""
    a = CUBIC_A
    weights = []
    # |position - tap| = start + sign * t: under 1 for the two nearest taps, in [1, 2) for the outer two
    for start, sign, near in ((1.0, 1.0, False), (0.0, 1.0, True), (1.0, -1.0, True), (2.0, -1.0, False)):
        w, s = f.local(F32), f.local(F32)
        f.f32(start).get(t).f32(sign).op("f32.mul").op("f32.add").set(s)
        if near:  # ((a + 2) s - (a + 3)) s^2 + 1
            f.f32(a + 2).get(s).op("f32.mul").f32(a + 3).op("f32.sub").get(s).op("f32.mul").get(s).op("f32.mul")
            f.f32(1.0).op("f32.add").set(w)
        else:  # ((a s - 5a) s + 8a) s - 4a
            f.f32(a).get(s).op("f32.mul").f32(5 * a).op("f32.sub").get(s).op("f32.mul").f32(8 * a).op("f32.add")
            f.get(s).op("f32.mul").f32(4 * a).op("f32.sub").set(w)
        weights.append(w)
    return weights


def axis_taps(f: Func, s: Sampling, v: int, size: int, stride: int) -> list[tuple[int, int | None]]:
    """The taps of one axis at coordinate v: (byte offset local, weight local or None for 1)."""
    low, high = _borders(size, s.align_corners)
    first = f.local(I32)
    weights: list[int | None]
    if s.mode == "nearest":
        f.get(v).op("f32.nearest").set(v)
    if s.mode != "cubic":
        _pad_coordinate(f, s, v, size, low, high)
    if s.mode == "nearest":
        f.get(v).op("i32.trunc_sat_f32_s").set(first)
        weights = [None]
    else:
        base, t = f.local(F32), f.local(F32)
        f.get(v).op("f32.floor").tee(base).op("i32.trunc_sat_f32_s").set(first)
        f.get(v).get(base).op("f32.sub").set(t)
        if s.mode == "linear":
            w0 = f.local(F32)
            f.f32(1.0).get(t).op("f32.sub").set(w0)
            weights = [w0, t]
        else:
            f.get(first).i32(1).op("i32.sub").set(first)
            weights = list(_cubic_weights(f, t))
    taps: list[tuple[int, int | None]] = []
    for k, weight in enumerate(weights):
        index, offset = f.local(I32), f.local(I32)
        f.get(first).i32(k).op("i32.add").set(index)
        if s.padding == "zeros":  # outside: weight 0 at offset 0 (unsigned compare: negatives too)
            inside = f.local(I32)
            f.get(index).i32(size).op("i32.lt_u").set(inside)
            f.get(index).i32(stride * 4).op("i32.mul").i32(0).get(inside).op("select").set(offset)
            if weight is None:
                weight = f.local(F32)
                f.f32(1.0).set(weight)
            f.get(weight).f32(0.0).get(inside).op("select").set(weight)
        else:
            if s.padding == "reflection":
                mirrored = f.local(F32)
                f.get(index).op("f32.convert_i32_s").set(mirrored)
                _reflect(f, mirrored, low, high)
                f.get(mirrored).op("i32.trunc_sat_f32_s").set(index)
            _clamp_index(f, index, size)  # reflection's too: a NaN or huge coordinate still reads inside
            f.get(index).i32(stride * 4).op("i32.mul").set(offset)
        taps.append((offset, weight))
    return taps


def _pad_coordinate(f: Func, s: Sampling, v: int, size: int, low: float, high: float) -> None:
    """Outside the borders, border padding clamps the coordinate to the axis and reflection mirrors it."""
    if s.padding == "reflection":
        _reflect(f, v, low, high)
    elif s.padding == "border":
        f.get(v).f32(low).op("f32.lt").get(v).f32(high).op("f32.gt").op("i32.or")
        with f.if_():
            f.f32(0.0).get(v).op("f32.max").f32(size - 1.0).op("f32.min").set(v)


def _clamp_index(f: Func, index: int, size: int) -> None:
    f.i32(0).get(index).get(index).i32(0).op("i32.lt_s").op("select").set(index)
    f.i32(size - 1).get(index).get(index).i32(size - 1).op("i32.gt_s").op("select").set(index)


@kernel("GridSample", check=_check_grid_sample)
def emit_grid_sample(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    s = _sampling(node)
    batch, channels, *dims = ctx.info(node.inputs[0]).shape
    grid_shape = ctx.info(node.inputs[1]).shape
    points, rank = math.prod(grid_shape[1:-1]), len(dims)
    if batch * channels * points == 0:
        return
    plane = math.prod(dims)
    strides = [math.prod(dims[a + 1:]) for a in range(rank)]
    n, p, c = f.local(I32), f.local(I32), f.local(I32)
    x_n, y_n, grid, pin, pout = (f.local(I32) for _ in range(5))
    f.i32(ctx.addr(node.inputs[0])).set(x_n).i32(ctx.addr(node.outputs[0])).set(y_n)
    f.i32(ctx.addr(node.inputs[1])).set(grid)
    with f.for_range(n, 0, batch):
        with f.for_range(p, 0, points):
            taps = []
            for a, size in enumerate(dims):
                v = f.local(F32)
                g = rank - 1 - a  # the grid lists x (the last axis) first
                f.get(grid).mem("f32.load", offset=4 * g).f32(1.0).op("f32.add")
                if s.align_corners:  # x = (g + 1) / 2 * (d - 1)
                    f.f32(0.5).op("f32.mul").f32(size - 1.0).op("f32.mul").set(v)
                else:  # x = ((g + 1) * d - 1) / 2
                    f.f32(float(size)).op("f32.mul").f32(1.0).op("f32.sub").f32(0.5).op("f32.mul").set(v)
                taps.append(axis_taps(f, s, v, size, strides[a]))
            weighted = corners(f, taps)
            f.get(x_n).set(pin)
            f.get(y_n).get(p).i32(4).op("i32.mul").op("i32.add").set(pout)
            with f.for_range(c, 0, channels):
                f.get(pout)
                for k, (offset, weight) in enumerate(weighted):
                    f.get(pin).get(offset).op("i32.add").mem("f32.load")
                    if weight is not None:
                        f.get(weight).op("f32.mul")
                    if k:
                        f.op("f32.add")
                f.mem("f32.store")
                f.inc(pin, plane * 4).inc(pout, points * 4)
            f.inc(grid, rank * 4)
        f.inc(x_n, channels * plane * 4).inc(y_n, channels * points * 4)


def corners(f: Func, taps: list[list[tuple[int, int | None]]]) -> list[tuple[int, int | None]]:
    """Every combination of one tap per axis: its offset (the sum) and weight (the product)."""
    if len(taps) == 1:
        return taps[0]
    corners: list[tuple[int, int | None]] = []
    for combination in itertools.product(*taps):
        offset = f.local(I32)
        f.get(combination[0][0])
        for tap_offset, _ in combination[1:]:
            f.get(tap_offset).op("i32.add")
        f.set(offset)
        weights = [w for _, w in combination if w is not None]
        weight: int | None = None
        if weights:
            weight = f.local(F32)
            f.get(weights[0])
            for w in weights[1:]:
                f.get(w).op("f32.mul")
            f.set(weight)
        corners.append((offset, weight))
    return corners


# ---------------------------------------------------------------- AffineGrid

def _check_affine_grid(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph, [node.inputs[0], node.outputs[0]])
    theta = graph.info(node.inputs[0]).shape
    if graph.constants.get(node.inputs[1]) is None and node.inputs[1] not in graph.read_values:
        # the output's type alone would be trusted, whatever size runs
        problems.append(f"size {node.inputs[1]!r} is computed at run time; it sets the output's shape, so it must be "
                        "a constant, or a run-time input with its values' range declared (--input-values "
                        "NAME=MIN..MAX)")
    elif node.inputs[1] in graph.read_values and graph.info(node.inputs[1]).dtype != np.int64:
        problems.append(f"size has dtype {graph.info(node.inputs[1]).dtype}, not int64")
    if len(theta) != 3 or theta[1] not in (2, 3) or theta[2] != theta[1] + 1:
        problems.append(f"theta has shape {list(theta)}; [N, 2, 3] or [N, 3, 4] expected")
    return problems


def base_coordinates(size: int, align_corners: bool) -> np.ndarray:
    """The normalised coordinate of each position of an axis: its pixel centres spread over (-1, 1), or from
    -1 to 1 with align_corners (where a one-position axis is at 1, as ONNX Runtime puts it: PyTorch puts it
    at 0, and ONNX's reference divides by zero)."""
    if align_corners:
        return np.linspace(-1.0, 1.0, size, dtype=np.float64).astype(np.float32) if size > 1 \
            else np.ones(size, np.float32)
    return ((2.0 * np.arange(size) + 1.0) / size - 1.0).astype(np.float32)


@kernel("AffineGrid", check=_check_affine_grid)
def emit_affine_grid(ctx: Ctx, node: Node) -> None:
    """grid[n, *point, j] = theta[n, j, :rank] . (x, y[, z]) + theta[n, j, rank], coordinates from tables."""
    f = ctx.f
    theta_shape = ctx.info(node.inputs[0]).shape
    out_shape = ctx.info(node.outputs[0]).shape
    batch, rank = theta_shape[0], theta_shape[1]
    dims = list(out_shape[1:-1])
    if math.prod(out_shape) == 0:
        return
    align = bool(node.attr("align_corners", 0))
    if ctx.graph.constants.get(node.inputs[1]) is None:  # declared: read by each run
        _emit_affine_grid_run_time(ctx, node, align)
        return
    tables = [ctx.data(base_coordinates(d, align)) for d in dims]
    n = f.local(I32)
    ptheta, pout = f.local(I32), f.local(I32)
    thetas = [[f.local(F32) for _ in range(rank + 1)] for _ in range(rank)]
    coords = [f.local(F32) for _ in range(rank)]  # by data axis
    counters = [f.local(I32) for _ in range(rank)]
    f.i32(ctx.addr(node.inputs[0])).set(ptheta).i32(ctx.addr(node.outputs[0])).set(pout)
    with f.for_range(n, 0, batch):
        for j, row in enumerate(thetas):
            for i, local in enumerate(row):
                f.get(ptheta).mem("f32.load", offset=4 * (j * (rank + 1) + i)).set(local)
        _affine_points(f, thetas, coords, counters, tables, dims, pout, 0)
        f.inc(ptheta, 4 * rank * (rank + 1))


def _emit_affine_grid_run_time(ctx: Ctx, node: Node, align: bool) -> None:
    """AffineGrid with the size a run gives: size[0] must be theta's batch and each spatial size at most the
    largest the output is laid out for (else the run traps); each coordinate computed as `base_coordinates` does,
    in float64, from the run's size."""
    f = ctx.f
    theta_shape, out_shape = ctx.info(node.inputs[0]).shape, ctx.info(node.outputs[0]).shape
    batch, rank = theta_shape[0], theta_shape[1]
    largest = list(out_shape[1:-1])
    extent = ctx.graph.decided.get(node.outputs[0], out_shape)
    size_at = ctx.addr(node.inputs[1])
    f.i32(size_at).mem("i64.load").i64(batch).op("i64.ne")
    with f.if_():
        f.op("unreachable")
    dims, wide = [f.local(I32) for _ in largest], f.local(I64)
    for axis, (dim, bound) in enumerate(zip(dims, largest, strict=True)):
        f.i32(size_at + 8 * (2 + axis)).mem("i64.load").tee(wide).i64(0).op("i64.lt_s")
        f.get(wide).i64(bound).op("i64.gt_s").op("i32.or")
        with f.if_():
            f.op("unreachable")
        f.get(wide).op("i32.wrap_i64").set(dim)
        if isinstance(extent[1 + axis], Expr):
            f.i32(ctx.symbols[str(extent[1 + axis])]).get(dim).mem("i32.store")
    n, ptheta = f.local(I32), f.local(I32)
    thetas = [[f.local(F32) for _ in range(rank + 1)] for _ in range(rank)]
    coords = [f.local(F32) for _ in range(rank)]
    counters = [f.local(I32) for _ in range(rank)]
    f.i32(ctx.addr(node.inputs[0])).set(ptheta)
    with f.for_range(n, 0, batch):
        for j, row in enumerate(thetas):
            for i, local in enumerate(row):
                f.get(ptheta).mem("f32.load", offset=4 * (j * (rank + 1) + i)).set(local)
        _affine_points_run_time(f, (thetas, coords, counters), dims, largest, (ctx.addr(node.outputs[0]), n), align)
        f.inc(ptheta, 4 * rank * (rank + 1))


def _push_coordinate(f: Func, index: int, dim: int, align: bool) -> None:
    """Push position `index`'s normalised coordinate on an axis of `dim` positions (f32), as `base_coordinates`:
    (2 i + 1) / d - 1, or -1 + i * 2 / (d - 1) with align_corners (1 on a one-position axis)."""
    if not align:
        f.get(index).op("f64.convert_i32_s").f64(2.0).op("f64.mul").f64(1.0).op("f64.add")
        f.get(dim).op("f64.convert_i32_s").op("f64.div").f64(1.0).op("f64.sub").op("f32.demote_f64")
        return
    f.get(dim).i32(1).op("i32.gt_s")
    with f.if_(blocktype=F32):
        f.get(index).get(dim).i32(1).op("i32.sub").op("i32.eq")
        with f.if_(blocktype=F64):  # linspace ends exactly at 1
            f.f64(1.0)
            f.else_()
            f.get(index).op("f64.convert_i32_s").f64(2.0).get(dim).i32(1).op("i32.sub").op("f64.convert_i32_s")
            f.op("f64.div").op("f64.mul").f64(-1.0).op("f64.add")
        f.op("f32.demote_f64")
        f.else_()
        f.f32(1.0)


def _affine_points_run_time(f: Func, state: tuple[list[list[int]], list[int], list[int]], dims: list[int],
                            largest: list[int], output: tuple[int, int], align: bool, axis: int = 0) -> None:
    """Nested loops over the run's spatial dims; each point written where the largest layout puts it."""
    thetas, coords, counters = state
    rank = len(dims)
    if axis == rank:
        address, n = output
        pout = f.local(I32)
        f.get(n)
        for a in range(rank):
            f.i32(largest[a]).op("i32.mul").get(counters[a]).op("i32.add")
        f.i32(4 * rank).op("i32.mul").i32(address).op("i32.add").set(pout)
        for j, row in enumerate(thetas):
            f.get(pout).get(row[rank])
            for i in range(rank):  # component i of the point is data axis rank - 1 - i
                f.get(row[i]).get(coords[rank - 1 - i]).op("f32.mul").op("f32.add")
            f.mem("f32.store", offset=4 * j)
        return
    with f.for_range(counters[axis], 0, ("local", dims[axis])):
        _push_coordinate(f, counters[axis], dims[axis], align)
        f.set(coords[axis])
        _affine_points_run_time(f, state, dims, largest, output, align, axis + 1)


def _affine_points(f: Func, thetas: list[list[int]], coords: list[int], counters: list[int], tables: list[int],
                   dims: list[int], pout: int, axis: int) -> None:
    """Nested loops over the data axes; the innermost writes one point's components."""
    rank = len(dims)
    if axis == rank:
        for j, row in enumerate(thetas):
            f.get(pout).get(row[rank])
            for i in range(rank):  # component i of the point is data axis rank - 1 - i
                f.get(row[i]).get(coords[rank - 1 - i]).op("f32.mul").op("f32.add")
            f.mem("f32.store", offset=4 * j)
        f.inc(pout, 4 * rank)
        return
    with f.for_range(counters[axis], 0, dims[axis]):
        f.i32(tables[axis]).get(counters[axis]).i32(4).op("i32.mul").op("i32.add").mem("f32.load").set(coords[axis])
        _affine_points(f, thetas, coords, counters, tables, dims, pout, axis + 1)


__all__ = ["Sampling", "axis_taps", "base_coordinates", "corners", "emit_affine_grid", "emit_grid_sample"]
