"""RoiAlign: the pooled features of each region a two-stage detector proposes (Mask R-CNN's box and mask heads).

Each region's box is read at run time, and so is its sampling grid when sampling_ratio is 0 (adaptive:
ceil(region size / output size) samples per bin and axis), so the grid loops have run-time bounds. Each
sample's four bilinear taps and weights are worked out once and applied to every channel, the output
itself the accumulator: avg adds the weighted taps and divides by the sample count at the end; max keeps
the largest of each sample's four weighted taps (ONNX Runtime's and ONNX's reference's definition: the
weights multiply before the maximum). Samples more than a pixel outside the map weigh nothing but still
count. A batch index outside the input traps, as an out-of-range Gather does.
"""

from __future__ import annotations

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import F32, I32, Func
from wasinfer.ir import Graph, Node
from wasinfer.ops.definition import attr

MODES = ("avg", "max")
COORDINATES = ("half_pixel", "output_half_pixel")


def _coordinates(node: Node, graph: Graph) -> str:
    """Opset 10 had no attribute and behaved as output_half_pixel; opset 16's default is half_pixel."""
    found = attr(node, "coordinate_transformation_mode", graph.opset)
    return "output_half_pixel" if found is None else str(found)


def _check_roi_align(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph, [node.inputs[0], node.inputs[1], node.outputs[0]])
    mode, coordinates = str(attr(node, "mode", graph.opset)), _coordinates(node, graph)
    if mode not in MODES:
        problems.append(f"mode {mode!r} is not one of {list(MODES)}")
    if coordinates not in COORDINATES:
        problems.append(f"coordinate_transformation_mode {coordinates!r} is not one of {list(COORDINATES)}")
    if len(graph.info(node.inputs[0]).shape) != 4:
        problems.append(f"input has rank {len(graph.info(node.inputs[0]).shape)}; RoiAlign's is 4 (NCHW)")
    regions, index_shape = graph.info(node.inputs[1]).shape, graph.info(node.inputs[2]).shape
    if len(regions) != 2 or regions[1] != 4 or tuple(index_shape) != (regions[0],):
        problems.append(f"rois of shape {list(regions)} and batch_indices of shape {list(index_shape)} are not "
                        "[R, 4] and [R]")
    indices = graph.info(node.inputs[2]).dtype
    if indices not in (np.int64, np.int32):
        problems.append(f"batch_indices has dtype {indices}; int64 expected")
    if int(attr(node, "sampling_ratio", graph.opset)) < 0:
        problems.append(f"sampling_ratio {attr(node, 'sampling_ratio', graph.opset)} is negative")
    return problems


@kernel("RoiAlign", check=_check_roi_align)
def emit_roi_align(ctx: Ctx, node: Node) -> None:
    f, graph = ctx.f, ctx.graph
    batch, channels, height, width = ctx.info(node.inputs[0]).shape
    regions, _, out_h, out_w = ctx.info(node.outputs[0]).shape
    if regions * channels * out_h * out_w == 0:
        return
    scale = float(attr(node, "spatial_scale", graph.opset))
    ratio = int(attr(node, "sampling_ratio", graph.opset))
    is_max = str(attr(node, "mode", graph.opset)) == "max"
    half_pixel = _coordinates(node, graph) == "half_pixel"
    index_bytes = ctx.info(node.inputs[2]).dtype.itemsize
    plane, out_plane = height * width * 4, out_h * out_w * 4
    r, ph, pw, iy, ix, c = (f.local(I32) for _ in range(6))
    pbox, pindex, xin, yout, grid_h, grid_w, count = (f.local(I32) for _ in range(7))
    start_h, start_w, bin_h, bin_w, y, x = (f.local(F32) for _ in range(6))
    f.i32(ctx.addr(node.inputs[1])).set(pbox).i32(ctx.addr(node.inputs[2])).set(pindex)
    f.i32(ctx.addr(node.outputs[0])).set(yout)
    with f.for_range(r, 0, regions):
        # the batch index, checked, and the region's corner, bin sizes and grid
        f.get(pindex).mem("i64.load" if index_bytes == 8 else "i32.load")
        if index_bytes == 8:
            f.op("i32.wrap_i64")
        f.tee(xin).i32(batch).op("i32.ge_u")
        with f.if_():
            f.op("unreachable")
        f.get(xin).i32(channels * plane).op("i32.mul").i32(ctx.addr(node.inputs[0])).op("i32.add").set(xin)
        extents = []
        for start, low, high, bins in ((start_w, 0, 8, out_w), (start_h, 4, 12, out_h)):
            size = f.local(F32)
            f.get(pbox).mem("f32.load", offset=low).f32(scale).op("f32.mul")
            if half_pixel:
                f.f32(0.5).op("f32.sub")
            f.set(start)
            f.get(pbox).mem("f32.load", offset=high).f32(scale).op("f32.mul")
            if half_pixel:
                f.f32(0.5).op("f32.sub")
            f.get(start).op("f32.sub")
            if not half_pixel:  # output_half_pixel: a region is at least one pixel
                f.f32(1.0).op("f32.max")
            f.set(size)
            extents.append((size, bins))
        (size_w, _), (size_h, _) = extents
        f.get(size_h).f32(float(out_h)).op("f32.div").set(bin_h)
        f.get(size_w).f32(float(out_w)).op("f32.div").set(bin_w)
        for grid, size, bins in ((grid_h, size_h, out_h), (grid_w, size_w, out_w)):
            if ratio > 0:
                f.i32(ratio).set(grid)
            else:  # adaptive: ceil(size / bins), none for an empty or inverted region
                f.get(size).f32(float(bins)).op("f32.div").op("f32.ceil").op("i32.trunc_sat_f32_s").set(grid)
                f.i32(0).get(grid).get(grid).i32(0).op("i32.lt_s").op("select").set(grid)
        f.get(grid_h).get(grid_w).op("i32.mul").set(count)
        f.i32(1).get(count).get(count).i32(1).op("i32.lt_s").op("select").set(count)
        f.get(yout).i32(0).i32(channels * out_plane).memory_fill()  # a bin without samples stays 0
        with f.for_range(ph, 0, out_h), f.for_range(pw, 0, out_w):
            with f.for_range(iy, 0, ("local", grid_h)):
                _sample_coordinate(f, y, start_h, ph, bin_h, iy, grid_h)
                with f.for_range(ix, 0, ("local", grid_w)):
                    _sample_coordinate(f, x, start_w, pw, bin_w, ix, grid_w)
                    taps = _bilinear_taps(f, y, x, height, width)
                    first = f.local(I32)
                    f.get(iy).get(ix).op("i32.or").op("i32.eqz").set(first)
                    _accumulate(f, c, channels, xin, yout, ph, pw, out_w, plane, out_plane, taps, is_max, first)
            if not is_max:
                _divide(f, c, channels, yout, ph, pw, out_w, out_plane, count)
        f.inc(pbox, 16).inc(pindex, index_bytes).inc(yout, channels * out_plane)


def _sample_coordinate(f: Func, v: int, start: int, p: int, bin_size: int, i: int, grid: int) -> None:
    """v = start + p * bin + (i + 0.5) * bin / grid: the centre of sample i of bin p."""
    f.get(start).get(p).op("f32.convert_i32_s").get(bin_size).op("f32.mul").op("f32.add")
    f.get(i).op("f32.convert_i32_s").f32(0.5).op("f32.add").get(bin_size).op("f32.mul")
    f.get(grid).op("f32.convert_i32_s").op("f32.div").op("f32.add").set(v)


def _bilinear_taps(f: Func, y: int, x: int, height: int, width: int) -> list[tuple[int, int]]:
    """The four (byte offset, weight) taps at (y, x): zero weights at offset 0 more than a pixel outside the
    map; the coordinate clamped to [0, last] where it is inside."""
    taps = [(f.local(I32), f.local(F32)) for _ in range(4)]
    f.get(y).f32(-1.0).op("f32.lt").get(y).f32(float(height)).op("f32.gt").op("i32.or")
    f.get(x).f32(-1.0).op("f32.lt").op("i32.or").get(x).f32(float(width)).op("f32.gt").op("i32.or")
    with f.if_():
        for offset, weight in taps:
            f.i32(0).set(offset).f32(0.0).set(weight)
        f.else_()
        lows, highs, fractions = [], [], []
        for v, size in ((y, height), (x, width)):
            low, high, fraction = f.local(I32), f.local(I32), f.local(F32)
            f.get(v).f32(0.0).op("f32.max").set(v)
            f.get(v).op("i32.trunc_sat_f32_s").set(low)
            f.get(low).i32(size - 1).op("i32.ge_s")
            with f.if_():  # at the last row or column: both taps there, no fraction
                f.i32(size - 1).tee(low).set(high)
                f.get(low).op("f32.convert_i32_s").set(v)
                f.else_()
                f.get(low).i32(1).op("i32.add").set(high)
            f.get(v).get(low).op("f32.convert_i32_s").op("f32.sub").set(fraction)
            lows.append(low)
            highs.append(high)
            fractions.append(fraction)
        ly, lx = fractions
        for k, (offset, weight) in enumerate(taps):
            row = highs[0] if k >= 2 else lows[0]
            column = highs[1] if k % 2 else lows[1]
            f.get(row).i32(width).op("i32.mul").get(column).op("i32.add").i32(4).op("i32.mul").set(offset)
            for fraction, near in ((ly, k >= 2), (lx, k % 2 == 1)):
                if near:
                    f.get(fraction)
                else:
                    f.f32(1.0).get(fraction).op("f32.sub")
            f.op("f32.mul").set(weight)
    return taps


def _accumulate(f: Func, c: int, channels: int, xin: int, yout: int, ph: int, pw: int, out_w: int, plane: int,
                out_plane: int, taps: list[tuple[int, int]], is_max: bool, first: int) -> None:
    """Every channel's bin (ph, pw) takes this sample: the sum of its weighted taps (avg) or their largest,
    which the bin's first sample writes and every later one raises (max)."""
    pin, pout = f.local(I32), f.local(I32)
    f.get(xin).set(pin)
    _bin_address(f, yout, ph, pw, out_w, pout)
    with f.for_range(c, 0, channels):
        f.get(pout)
        if not is_max:
            f.get(pout).mem("f32.load")
        for k, (offset, weight) in enumerate(taps):
            f.get(pin).get(offset).op("i32.add").mem("f32.load").get(weight).op("f32.mul")
            if k:
                f.op("f32.max" if is_max else "f32.add")
        if is_max:
            value = f.local(F32)
            f.tee(value).get(pout).mem("f32.load").get(value).op("f32.max").get(first).op("select")
        else:
            f.op("f32.add")
        f.mem("f32.store")
        f.inc(pin, plane).inc(pout, out_plane)


def _divide(f: Func, c: int, channels: int, yout: int, ph: int, pw: int, out_w: int, out_plane: int,
            count: int) -> None:
    pout = f.local(I32)
    _bin_address(f, yout, ph, pw, out_w, pout)
    with f.for_range(c, 0, channels):
        f.get(pout).get(pout).mem("f32.load").get(count).op("f32.convert_i32_s").op("f32.div").mem("f32.store")
        f.inc(pout, out_plane)


def _bin_address(f: Func, yout: int, ph: int, pw: int, out_w: int, into: int) -> None:
    f.get(ph).i32(out_w).op("i32.mul").get(pw).op("i32.add").i32(4).op("i32.mul").get(yout).op("i32.add").set(into)


__all__ = ["emit_roi_align"]
