"""MaxRoiPool: Fast R-CNN's region pooling, the maximum of each bin of each region (RoiAlign's predecessor).

Each region [batch index, x1, y1, x2, y2] is read at run time and scaled, its corners rounded half away from
zero (C's round, as ONNX Runtime rounds them); its bins cover whole pixels (floor of the start, ceil of the end,
clamped to the map), so each bin is a run-time rectangle of the input whose maximum is its output, 0 for an
empty one. A batch index outside the input traps, as RoiAlign's does.
"""

from __future__ import annotations

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import F32, I32, Func
from wasinfer.ir import Graph, Node


def _check_max_roi_pool(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    if len(graph.info(node.inputs[0]).shape) != 4:
        problems.append(f"input has rank {len(graph.info(node.inputs[0]).shape)}; MaxRoiPool's is 4 (NCHW)")
    rois = graph.info(node.inputs[1]).shape
    if len(rois) != 2 or rois[1] != 5:
        problems.append(f"rois of shape {list(rois)} are not [R, 5] (batch index, x1, y1, x2, y2)")
    return problems


def _round_away(f: Func, v: int) -> None:
    """v rounded half away from zero, in place: the truncation, one step out where the fraction is a half or more."""
    whole = f.local(F32)
    f.get(v).op("f32.trunc").set(whole)
    f.get(whole).f32(1.0).f32(-1.0).get(v).f32(0.0).op("f32.gt").op("select").op("f32.add")
    f.get(whole)
    f.get(v).get(whole).op("f32.sub").op("f32.abs").f32(0.5).op("f32.ge").op("select").set(v)


@kernel("MaxRoiPool", check=_check_max_roi_pool)
def emit_max_roi_pool(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    batch, channels, height, width = ctx.info(node.inputs[0]).shape
    regions, _, out_h, out_w = ctx.info(node.outputs[0]).shape
    if regions * channels * out_h * out_w == 0:
        return
    scale = float(node.attr("spatial_scale", 1.0))
    plane = height * width * 4
    r, c, ph, pw, h, w = (f.local(I32) for _ in range(6))
    proi, xin, pout, prow = (f.local(I32) for _ in range(4))
    corners = [f.local(F32) for _ in range(4)]  # x1, y1, x2, y2 scaled and rounded
    bin_h, bin_w, best = f.local(F32), f.local(F32), f.local(F32)
    bounds = [f.local(I32) for _ in range(4)]  # h start, h end, w start, w end
    f.i32(ctx.addr(node.inputs[1])).set(proi).i32(ctx.addr(node.outputs[0])).set(pout)
    with f.for_range(r, 0, regions):
        f.get(proi).mem("f32.load").op("i32.trunc_sat_f32_s").tee(xin).i32(batch).op("i32.ge_u")
        with f.if_():
            f.op("unreachable")
        f.get(xin).i32(channels * plane).op("i32.mul").i32(ctx.addr(node.inputs[0])).op("i32.add").set(xin)
        for k, corner in enumerate(corners):
            f.get(proi).mem("f32.load", offset=4 * (k + 1)).f32(scale).op("f32.mul").set(corner)
            _round_away(f, corner)
        x1, y1, x2, y2 = corners
        for size, start, end, bins in ((bin_h, y1, y2, out_h), (bin_w, x1, x2, out_w)):
            # at least one pixel: max(end - start + 1, 1) / bins
            f.get(end).get(start).op("f32.sub").f32(1.0).op("f32.add").f32(1.0).op("f32.max")
            f.f32(float(bins)).op("f32.div").set(size)
        with f.for_range(c, 0, channels), f.for_range(ph, 0, out_h), f.for_range(pw, 0, out_w):
            for k, (bin_size, place, rounding, start, limit) in enumerate((
                    (bin_h, ph, "f32.floor", y1, height), (bin_h, ph, "f32.ceil", y1, height),
                    (bin_w, pw, "f32.floor", x1, width), (bin_w, pw, "f32.ceil", x1, width))):
                f.get(place)
                if k % 2:
                    f.i32(1).op("i32.add")
                f.op("f32.convert_i32_s").get(bin_size).op("f32.mul").op(rounding).get(start).op("f32.add")
                f.f32(0.0).op("f32.max").f32(float(limit)).op("f32.min").op("i32.trunc_sat_f32_s").set(bounds[k])
            h_start, h_end, w_start, w_end = bounds
            f.f32(0.0).f32(-3.4028234663852886e38).get(h_end).get(h_start).op("i32.le_s").get(w_end)
            f.get(w_start).op("i32.le_s").op("i32.or").op("select").set(best)  # an empty bin is 0
            f.get(h_start).set(h)
            with f.block(), f.block(b"\x03"):  # for h in [h start, h end)
                f.get(h).get(h_end).op("i32.ge_s").br_if(1)
                f.get(h).i32(width * 4).op("i32.mul").get(xin).op("i32.add").get(c).i32(plane).op("i32.mul")
                f.op("i32.add").set(prow)
                f.get(w_start).set(w)
                with f.block(), f.block(b"\x03"):  # for w in [w start, w end)
                    f.get(w).get(w_end).op("i32.ge_s").br_if(1)
                    f.get(prow).get(w).i32(4).op("i32.mul").op("i32.add").mem("f32.load").get(best).op("f32.max")
                    f.set(best)
                    f.inc(w).br(0)
                f.inc(h).br(0)
            f.get(pout).get(best).mem("f32.store")
            f.inc(pout, 4)
        f.inc(proi, 20)


__all__ = ["emit_max_roi_pool"]
