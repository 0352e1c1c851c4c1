"""DeformConv (opset 19): a 2-D convolution whose every tap reads the input at a learned offset from its place
(deformable convolution v1, and v2 with the mask), as torchvision's deform_conv2d exports it.

Two steps per sample. The columns first: for each offset group, kernel tap and output position, the tap's
point (its place plus the offset read at run time) gives four bilinear taps (emitters/grid_sample.py's, zero
outside the input) and their weights, times the mask; every channel of the offset group then writes its sampled
value into a [C * kH * kW, oH * oW] matrix in scratch. Then each group's product with its weights, plus the bias,
through the GEMM that Conv's columns go through.
"""

from __future__ import annotations

import math

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm
from wasinfer.backends.wasm.emitters.grid_sample import Sampling, axis_taps, corners
from wasinfer.backends.wasm.writer import F32, I32, Func
from wasinfer.ir import Graph, Node

BILINEAR = Sampling("linear", "zeros", True)  # points in pixels: the coordinate is the pixel index itself


def _input(node: Node, index: int) -> str:
    return node.inputs[index] if len(node.inputs) > index else ""


def _check_deform_conv(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    x, w = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    if len(x) != 4:
        problems.append(f"input has rank {len(x)}; only 2-D DeformConv (rank 4) is supported")
        return problems
    group, offset_group = int(node.attr("group", 1)), int(node.attr("offset_group", 1))
    if group < 1 or x[1] != w[1] * group or w[0] % group:
        problems.append(f"group {group} does not divide input channels {x[1]} and weights {list(w)}")
    if offset_group < 1 or x[1] % offset_group:
        problems.append(f"offset_group {offset_group} does not divide the {x[1]} input channels")
    kernel_shape = list(node.attr("kernel_shape", w[2:]))
    if kernel_shape != list(w[2:]):
        problems.append(f"kernel_shape {kernel_shape} does not match the weights' {list(w[2:])}")
    offset = graph.info(node.inputs[2]).shape
    taps = math.prod(w[2:])
    strides, dilations = list(node.attr("strides", [1, 1])), list(node.attr("dilations", [1, 1]))
    pads = list(node.attr("pads", [0, 0, 0, 0]))
    out = [(x[2 + a] + pads[a] + pads[2 + a] - dilations[a] * (w[2 + a] - 1) - 1) // strides[a] + 1 for a in range(2)]
    if len(offset) != 4 or list(offset) != [x[0], offset_group * 2 * taps, *out]:
        problems.append(f"offset of shape {list(offset)} is not [{x[0]}, {offset_group * 2 * taps}, {out[0]}, "
                        f"{out[1]}] for this input, kernel, strides, pads and dilations")
    return problems


def _scratch(node: Node, graph: Graph) -> int:
    channels = graph.info(node.inputs[0]).shape[1]
    taps = math.prod(graph.info(node.inputs[1]).shape[2:])
    out = graph.info(node.outputs[0]).shape
    return channels * taps * out[2] * out[3] * 4


@kernel("DeformConv", check=_check_deform_conv, scratch=_scratch)
def emit_deform_conv(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    batch, channels, height, width = ctx.info(node.inputs[0]).shape
    out_channels, group_channels, kh, kw = ctx.info(node.inputs[1]).shape
    out_h, out_w = ctx.info(node.outputs[0]).shape[2:]
    positions, taps = out_h * out_w, kh * kw
    if batch * out_channels * positions == 0:
        return
    strides = list(node.attr("strides", [1, 1]))
    pads = list(node.attr("pads", [0, 0, 0, 0]))
    dilations = list(node.attr("dilations", [1, 1]))
    group, offset_group = int(node.attr("group", 1)), int(node.attr("offset_group", 1))
    cols = ctx.scratch_addr
    n = f.local(I32)
    x_n, offsets_n, mask_n, out_n = (f.local(I32) for _ in range(4))
    mask = _input(node, 4)
    f.i32(ctx.addr(node.inputs[0])).set(x_n).i32(ctx.addr(node.inputs[2])).set(offsets_n)
    f.i32(ctx.addr(mask) if mask else 0).set(mask_n).i32(ctx.addr(node.outputs[0])).set(out_n)
    with f.for_range(n, 0, batch):
        _columns(f, cols, x_n, offsets_n, mask_n if mask else None, (channels, height, width), (kh, kw),
                 (out_h, out_w), strides, pads, dilations, offset_group)
        bias = _input(node, 3)
        _product(ctx, cols, out_n, node.inputs[1], bias, out_channels, group, group_channels * taps, positions)
        f.inc(x_n, channels * height * width * 4).inc(offsets_n, offset_group * 2 * taps * positions * 4)
        if mask:
            f.inc(mask_n, offset_group * taps * positions * 4)
        f.inc(out_n, out_channels * positions * 4)


def _columns(f: Func, cols: int, x_n: int, offsets_n: int, mask_n: int | None, image: tuple[int, int, int],
             kernel_shape: tuple[int, int], out: tuple[int, int], strides: list[int], pads: list[int],
             dilations: list[int], offset_group: int) -> None:
    """cols[c, tap, position]: channel c sampled at the tap's deformed point for that output position."""
    channels, height, width = image
    kh, kw = kernel_shape
    out_h, out_w = out
    positions, taps = out_h * out_w, kh * kw
    per_group = channels // offset_group
    go, i, j, oh, ow, c = (f.local(I32) for _ in range(6))
    tap, position, offset_at, pin, pcol = (f.local(I32) for _ in range(5))
    with f.for_range(go, 0, offset_group), f.for_range(i, 0, kh), f.for_range(j, 0, kw):
        f.get(i).i32(kw).op("i32.mul").get(j).op("i32.add").set(tap)
        with f.for_range(oh, 0, out_h), f.for_range(ow, 0, out_w):
            f.get(oh).i32(out_w).op("i32.mul").get(ow).op("i32.add").set(position)
            # the offsets of this tap: channel go * 2 * taps + 2 * tap (rows), + 1 (columns)
            f.get(go).i32(2 * taps).op("i32.mul").get(tap).i32(2).op("i32.mul").op("i32.add").i32(positions)
            f.op("i32.mul").get(position).op("i32.add").i32(4).op("i32.mul").get(offsets_n).op("i32.add")
            f.set(offset_at)
            per_axis = []
            for axis, (place, size, stride) in enumerate(((oh, height, width), (ow, width, 1))):
                v = f.local(F32)
                f.get(place).i32(strides[axis]).op("i32.mul").i32(pads[axis]).op("i32.sub")
                f.get(i if axis == 0 else j).i32(dilations[axis]).op("i32.mul").op("i32.add")
                f.op("f32.convert_i32_s").get(offset_at).mem("f32.load", offset=axis * positions * 4)
                f.op("f32.add").set(v)
                per_axis.append(axis_taps(f, BILINEAR, v, size, stride))
            points = corners(f, per_axis)
            weights = [w for _, w in points]
            if mask_n is not None:  # the tap's mask scales its four weights
                m = f.local(F32)
                f.get(go).i32(taps).op("i32.mul").get(tap).op("i32.add").i32(positions).op("i32.mul")
                f.get(position).op("i32.add").i32(4).op("i32.mul").get(mask_n).op("i32.add").mem("f32.load").set(m)
                for w in weights:
                    assert w is not None
                    f.get(w).get(m).op("f32.mul").set(w)
            # channel go * per_group + c: its plane in the input, its row (channel, tap) of the columns
            f.get(go).i32(per_group * height * width * 4).op("i32.mul").get(x_n).op("i32.add").set(pin)
            f.get(go).i32(per_group).op("i32.mul").i32(taps).op("i32.mul").get(tap).op("i32.add")
            f.i32(positions).op("i32.mul").get(position).op("i32.add").i32(4).op("i32.mul").i32(cols)
            f.op("i32.add").set(pcol)
            with f.for_range(c, 0, per_group):
                f.get(pcol)
                for k, (offset, weight) in enumerate(points):
                    assert weight is not None
                    f.get(pin).get(offset).op("i32.add").mem("f32.load").get(weight).op("f32.mul")
                    if k:
                        f.op("f32.add")
                f.mem("f32.store")
                f.inc(pin, height * width * 4).inc(pcol, taps * positions * 4)


def _product(ctx: Ctx, cols: int, out_n: int, weights: str, bias: str, out_channels: int, group: int, depth: int,
             positions: int) -> None:
    """out[g] = W[g] @ cols[g] + bias[g]: each group's [out / group, depth] weights times its [depth, positions]
    columns, through the GEMM Conv's columns go through (emitters/gemm.py)."""
    f = ctx.f
    per_group = out_channels // group
    pout = f.local(I32)
    for g in range(group):
        f.get(out_n).i32(g * per_group * positions * 4).op("i32.add").set(pout)
        a = Operand(ctx.addr(weights) + g * per_group * depth * 4, depth, 1)
        b = Operand(cols + g * depth * positions * 4, positions, 1)
        row_bias = Operand(ctx.addr(bias) + g * per_group * 4, 1, 0) if bias else None
        emit_gemm(ctx, per_group, positions, depth, a, b, Operand(("local", pout), positions, 1), row_bias)


__all__ = ["emit_deform_conv"]
