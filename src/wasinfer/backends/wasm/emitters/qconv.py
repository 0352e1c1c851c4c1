"""QConvInt8: the int8 convolution with requantisation (passes/int8.py fuses it; lowering/qconv.py plans it).

    acc[m, p] = sum_k w[m, k] * x_col[k, p] + bias[m] - x_zero * sum_k w[m, k]   (exact, i32)
    y[m, p]   = saturate(nearest(float32(acc) * scale[m]) + y_zero)                (MLAS's requantisation)

saturating to [y_lo, y_hi] where those inputs are given (a Relu or Clip the fusion took in).

Per (sample, group): the column buffer of raw activation bytes is built in scratch (`_columns`:
one row per input channel and tap, bulk copies of the rows a tap reads inside the input, x_zero
where it reads padding), unless the conv is 1x1 unpadded with stride 1 and the input itself is
the buffer; its rows are interleaved per position tile into k-pair blocks (`_interleave`); then
each register tile of output channels x positions runs the k pairs (`_tile`), the channel panels
innermost. The requantisation is the GEMM's (emitters/qgemm.py), with one bias and multiplier per
output channel: a row of the tile. Depthwise convs take the sliding kernel instead (`_sliding`).

The micro-kernel, per k pair of a PANEL x 8 tile: 2 `v128.load8x8` (the block's sixteen bytes:
eight positions' (x[k, p], x[k+1, p]) pairs widened to i16 in the load), 4 `v128.load32_splat`
of the channels' weight pairs, 8 `i32x4.dot_i16x8_s` + 8 `i32x4.add`: 64 multiply-adds (the k
loop unrolled twice: unrolling a short K whole measured slower, 1.5x on a 32-channel pointwise conv).

The relaxed code variant runs the column-buffer convs on relaxed SIMD's 8-bit dot where it pays
(lowering/qconv.py): the weights become byte quads in scratch once per call (`_weight_quads`),
then
- 7-bit weights (`narrow_weights`, e.g. ONNX Runtime's reduce_range): the blocks hold each k
  quad's activations as int8 plus each position's sum (`_interleave_narrow`), and per k quad of a
  PANEL x 8 tile: 2 loads, 4 `v128.load32_splat` of the channels' shifted quads and 8
  `i32x4.relaxed_dot_i8x16_i7x16_add_s`, 128 multiply-adds (`_tile_narrow`); 1.06-1.56x the
  plain kernel per conv on x86-64;
- any other weights only with RELAXED_DOT: the activations split into l and h bytes
  (`_interleave_split`, `_tile_relaxed`), two dots per four products, slower than the plain
  kernel on x86-64 (see RELAXED_DOT).
The sliding depthwise kernel has no relaxed form.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.qconv import (
    QConvPlan,
    SlidingPlan,
    fits,
    folded_bias,
    narrow_weights,
    pack_sliding_weights,
    pack_weights,
    qconv_plan,
)
from wasinfer.lowering.window import window_problems
from wasinfer.ops.quantized import INT8_DOMAIN

QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8))
BYTE_PAIRS = tuple(i // 2 + 16 * (i % 2) for i in range(16))  # two rows' eight bytes, interleaved
EVEN_BYTES = tuple(2 * i % 16 for i in range(16))  # bytes 0, 2, .. 14 (twice)
ODD_BYTES = tuple(2 * i % 16 + 1 for i in range(16))  # bytes 1, 3, .. 15 (twice)
# two byte-pair vectors (rows 4q, 4q+1 and 4q+2, 4q+3 of eight positions) → each position's quad
QUADS_LOW = tuple(2 * (i // 4) + i % 2 + 16 * (i % 4 // 2) for i in range(16))  # positions 0-3
QUADS_HIGH = tuple(lane + 8 for lane in QUADS_LOW)  # positions 4-7
# a panel's i16 weight pairs for k pairs 2q (first operand) and 2q+1 (second) → each channel's
# four weights (w[4q] .. w[4q+3]) as bytes, channel after channel: the low byte of each i16
PANEL_QUADS = tuple(4 * (i // 4) + 2 * (i % 2) + 16 * (i % 4 // 2) for i in range(16))
# The relaxed code variant's convolutions of 8-bit weights on `i32x4.relaxed_dot_i8x16_i7x16_add_s`
# (`_tile_relaxed`; 7-bit weights take `_tile_narrow` regardless).
# Off: exact 8-bit activations need two of those dots per four products (l and h), and wasmtime
# 51 lowers each to pmaddubsw + pmaddwd + paddd on x86-64 (no VNNI, even where the CPU has it),
# two multiplies where `i32x4.dot_i16x8_s` needs one: measured 0.73-0.86x the plain kernel's speed
# (docs/compiler.md "int8 on relaxed SIMD"). Meant for engines whose relaxed dot is one
# instruction (aarch64's sdot, VNNI's vpdpbusd); the tests run it with this on.
RELAXED_DOT = False
ROUNDER = 12582912.0  # 1.5 * 2^23
ROUNDER_BITS = 0x4B400000  # its float32 bits


def _check(node: Node, graph: Graph) -> list[str]:
    if len(node.inputs) not in (6, 8) or not all(node.inputs) or len(node.outputs) != 1:
        return ["expects inputs (x, w, bias, scale, x_zero, y_zero[, y_lo, y_hi]) and one output, as passes/int8.py "
                "writes it"]
    x, w, bias, scale, x_zero, y_zero = node.inputs[:6]
    y = node.outputs[0]
    problems = []
    for bound in node.inputs[6:]:
        value = graph.constants.get(bound)
        if value is None or value.size != 1 or value.dtype != graph.info(y).dtype:
            problems.append(f"output bound {bound!r} must be one constant of {y!r}'s dtype")
    if graph.info(x).dtype not in QUANTIZED or graph.info(y).dtype not in QUANTIZED:
        problems.append("X and Y must be int8 or uint8")
    for name, dtype in ((w, np.int8), (bias, np.int32), (scale, np.float32)):
        if name not in graph.constants or graph.constants[name].dtype != dtype:
            problems.append(f"{name!r} must be a {np.dtype(dtype).name} constant")
    for zero, of in ((x_zero, x), (y_zero, y)):
        value = graph.constants.get(zero)
        if value is None or value.size != 1 or value.dtype != graph.info(of).dtype:
            problems.append(f"zero point {zero!r} must be one constant of {of!r}'s dtype")
    if problems:
        return problems
    x_shape, w_shape = graph.info(x).shape, graph.constants[w].shape
    if len(x_shape) not in (3, 4) or len(w_shape) != len(x_shape):
        return [f"input rank {len(x_shape)} / weight rank {len(w_shape)}: expected N, C and one or two spatial axes"]
    problems += window_problems(node, len(x_shape) - 2)
    groups = int(node.attr("group", 1))
    if groups < 1 or x_shape[1] != w_shape[1] * groups or w_shape[0] % groups:
        problems.append(f"group={groups} does not fit input channels {x_shape[1]} and weight shape {list(w_shape)}")
    for name in (bias, scale):
        if graph.constants[name].shape != (w_shape[0],):
            problems.append(f"{name!r} must have one value per output channel ({w_shape[0]})")
    if problems:
        return problems
    plan = qconv_plan(node, graph)
    if not fits(plan):
        return [f"{plan.taps} kernel taps and K = {plan.k_size} exceed the kernel's limits"]
    expected = (plan.batch, plan.out_channels, *plan.window.out_dims[4 - len(x_shape):])
    if graph.info(y).shape != expected:
        problems.append(f"output shape {graph.info(y).shape} differs from the computed {expected}")
    return problems


def _scratch(node: Node, graph: Graph) -> int:
    return qconv_plan(node, graph).scratch_bytes


@kernel("QConvInt8", domain=INT8_DOMAIN, check=_check, scratch=_scratch)
def emit_qconv(ctx: Ctx, node: Node) -> None:
    f, graph = ctx.f, ctx.graph
    plan = qconv_plan(node, graph)
    x_name, w_name, bias_name, scale_name, x_zero_name, y_zero_name = node.inputs[:6]
    x_dtype, y_dtype = ctx.info(x_name).dtype, ctx.info(node.outputs[0]).dtype
    x_zero = int(graph.constants[x_zero_name].reshape(()))
    y_zero = int(graph.constants[y_zero_name].reshape(()))
    w = graph.constants[w_name]
    folded = folded_bias(w, graph.constants[bias_name], x_zero)
    biases = ctx.data(folded)
    scales = ctx.data(graph.constants[scale_name].astype(np.float32))
    info = np.iinfo(y_dtype)
    lo, hi = (int(graph.constants[b].reshape(())) for b in node.inputs[6:]) if len(node.inputs) == 8 else (
        info.min, info.max)
    requant = _Requant(float(lo - y_zero), float(hi - y_zero), y_zero, y_dtype.kind == "i", biases, scales)
    sign = "s" if x_dtype.kind == "i" else "u"
    x, y = ctx.addr(x_name), ctx.addr(node.outputs[0])
    if plan.sliding:
        _sliding(f, plan, ctx.data(pack_sliding_weights(w, plan)), x, y, ctx.scratch_addr, x_zero, sign, requant)
        return
    weights = ctx.data(pack_weights(w, plan))
    blocks = ctx.scratch_addr + plan.rows_bytes
    quads = blocks + len(plan.starts) * plan.block_bytes
    shift = narrow_weights(w, folded, sign == "s", plan)
    narrow: _Narrow | None = None
    if shift is not None:  # placed in both builds, which must have the same data
        narrow = _Narrow(ctx.data(shift.offsets), ctx.data(shift.biases), ctx.data(shift.quad_offsets))
    kernel = "plain"
    if ctx.relaxed_simd:
        kernel = "narrow" if narrow is not None else "split" if RELAXED_DOT else "plain"
    relaxed = kernel != "plain"
    if relaxed:
        _weight_quads(f, plan, weights, quads, narrow.quad_offsets if kernel == "narrow" and narrow else None)

    sample, group, xg, yg, wg, tg, cols = (f.local(I32) for _ in range(7))
    with f.for_range(sample, 0, plan.batch), f.for_range(group, 0, plan.groups):
        f.get(sample).i32(plan.groups).op("i32.mul").get(group).op("i32.add").set(tg)  # (sample, group) index
        f.get(tg).i32(plan.group_in * plan.in_positions).op("i32.mul").i32(x).op("i32.add").set(xg)
        f.get(tg).i32(plan.group_out * plan.positions).op("i32.mul").i32(y).op("i32.add").set(yg)
        if relaxed:
            f.get(group).i32(plan.panels * plan.k_quads * plan.panel * 4).op("i32.mul").i32(quads).op("i32.add")
        else:
            f.get(group).i32(plan.group_weight_bytes).op("i32.mul").i32(weights).op("i32.add")
        f.set(wg)
        f.get(group).i32(plan.group_out * 4).op("i32.mul").set(tg)  # the group's first channel in the tables
        if plan.direct:
            f.get(xg).set(cols)
        else:
            _columns(f, plan, xg, ctx.scratch_addr, x_zero)
            f.i32(ctx.scratch_addr).set(cols)
        if kernel == "narrow":
            _interleave_narrow(f, plan, cols, blocks, sign)
        elif kernel == "split":
            _interleave_split(f, plan, cols, blocks)
        else:
            _interleave(f, plan, cols, blocks)
        _product(f, plan, blocks, wg, yg, tg, sign, requant, kernel, narrow)


def _sliding(f: Func, plan: QConvPlan, weights: int, x: int, y: int, plane: int, x_zero: int, sign: str,
             rq: _Requant) -> None:
    """A depthwise conv by its sliding kernel (lowering/qconv.py `SlidingPlan`)."""
    win, sp = plan.window, plan.sliding_plan
    (out_h, out_w), (in_h, in_w) = win.out_dims, win.in_dims
    (kh, _), (sh, sw) = win.kernel, win.strides
    top, left = win.pad_begin
    multiplier = plan.group_out
    narrow = "i8x16.narrow_i16x8_s" if rq.signed else "i8x16.narrow_i16x8_u"
    plane_in, out_c, flat, src, dst, row, column, pw, pt, po, pr, pc = (f.local(I32) for _ in range(12))
    first, second, bias, scale = (f.local(V128) for _ in range(4))
    f.i32(plane).i32(x_zero & 0xFF).i32(sp.height * sp.width).memory_fill()  # the padding, for every plane
    with f.for_range(plane_in, 0, plan.batch * plan.channels):  # (sample, channel) planes
        f.get(plane_in).i32(plan.in_positions).op("i32.mul").i32(x).op("i32.add").set(src)
        f.i32(plane + top * sp.width + left).set(dst)
        with f.for_range(row, 0, in_h):  # the input plane into the padded one
            _copy_run(f, dst, 0, src, in_w, 1)
            f.inc(src, in_w).inc(dst, sp.width)
        with f.for_range(out_c, 0, multiplier):
            # flat: the output plane; pt: its channel's table entry (bytes); pw: its weights
            f.get(plane_in).i32(multiplier).op("i32.mul").get(out_c).op("i32.add").set(flat)
            f.get(flat).i32(plan.positions).op("i32.mul").i32(y).op("i32.add").set(po)
            f.get(flat).i32(plan.out_channels).op("i32.rem_u").i32(4).op("i32.mul").set(pt)
            f.get(pt).i32(kh * sp.pairs).op("i32.mul").i32(weights).op("i32.add").set(pw)
            f.get(pt).mem("v128.load32_splat", offset=rq.scales, align=0).set(scale)
            f.get(pt).mem("v128.load32_splat", offset=rq.biases, align=0).set(bias)
            f.i32(plane).set(pr)
            with f.for_range(row, 0, out_h):
                def eight(at: int | None) -> None:
                    """Outputs `at` (None: column x 8) .. + 7 of this row, stored from po."""
                    if at is None:
                        f.get(column).i32(8 * sw).op("i32.mul").get(pr).op("i32.add").set(pc)
                        f.get(column).i32(8).op("i32.mul").get(po).op("i32.add").set(dst)
                    else:
                        f.get(pr).i32(at * sw).op("i32.add").set(pc)
                        f.get(po).i32(at).op("i32.add").set(dst)
                    _eight(f, sp, kh, sw, pc, pw, sign, bias, first, second)
                    _requantize(f, [first, second], scale, rq)
                    f.get(first).get(second).op("i16x8.narrow_i32x4_s").set(first)
                    f.get(dst).get(first).get(first).op(narrow).lane("i64x2.extract_lane", 0).mem("i64.store", align=0)

                with f.for_range(column, 0, out_w // 8):
                    eight(None)
                if out_w % 8:
                    eight(out_w - 8)
                f.inc(pr, sh * sp.width).inc(po, out_w)


def _eight(f: Func, sp: SlidingPlan, kh: int, sw: int, pc: int, pw: int, sign: str, bias: int, first: int,
           second: int) -> None:
    """first, second = bias + the sums of eight outputs from the window at pc: outputs 0-3 and 4-7
    (stride 2), or the even and the odd ones, then interleaved (stride 1)."""
    load = f"v128.load8x8_{sign}"
    pair = f.local(V128)
    f.get(bias).set(first).get(bias).set(second)
    for i in range(kh):
        for q in range(sp.pairs):
            at = i * sp.width + 2 * q
            weight = (i * sp.pairs + q) * 4
            f.get(pw).mem("v128.load32_splat", offset=weight, align=0).set(pair)
            for acc, offset in ((first, at), (second, at + (1 if sw == 1 else 8))):
                f.get(acc).get(pc).mem(load, offset=offset, align=0).get(pair)
                f.op("i32x4.dot_i16x8_s").op("i32x4.add").set(acc)
    if sw == 1:  # even and odd outputs → 0-3, 4-7
        f.get(first).get(second).shuffle32((0, 4, 1, 5)).get(first).get(second).shuffle32((2, 6, 3, 7))
        f.set(second).set(first)


def _requantize(f: Func, vectors: list[int], scale: int, rq: _Requant) -> None:
    """Each i32x4 (its bias in) to the output's integers, in i32 lanes: MLAS's requantisation."""
    for v in vectors:
        f.get(v).op("f32x4.convert_i32x4_s").get(scale).op("f32x4.mul")
        f.f32x4_const(rq.lo).op("f32x4.max").f32x4_const(rq.hi).op("f32x4.min")
        # round half to even by adding 1.5 * 2^23 (|value| <= 255: the sum's unit is 1), whose
        # bits minus those of 1.5 * 2^23 are then the integer; y_zero added in the same subtraction
        f.f32x4_const(ROUNDER).op("f32x4.add").v128(_i32x4(ROUNDER_BITS - rq.y_zero)).op("i32x4.sub").set(v)


def _columns(f: Func, plan: QConvPlan, xg: int, scratch: int, x_zero: int) -> None:
    """The group's column buffer in scratch: row (ci, tap) holds, for every output position,
    the input byte that tap reads, or x_zero where it reads padding."""
    win = plan.window
    (out_h, out_w), in_w = win.out_dims, win.in_dims[1]
    zero = x_zero & 0xFF
    channel, src_c, dst_c, src, dst, row = (f.local(I32) for _ in range(6))
    with f.for_range(channel, 0, plan.group_in):
        f.get(channel).i32(plan.in_positions).op("i32.mul").get(xg).op("i32.add").set(src_c)
        f.get(channel).i32(plan.taps * plan.row_bytes).op("i32.mul").i32(scratch).op("i32.add").set(dst_c)
        for tap in range(plan.taps):
            i, j = divmod(tap, win.kernel[1])
            base = tap * plan.row_bytes
            oh0, oh1 = win.valid(0, i, 0, out_h)
            ow0, ow1 = win.valid(1, j, 0, out_w)
            if oh1 <= oh0 or ow1 <= ow0:  # this tap reads only padding
                f.get(dst_c).i32(base).op("i32.add").i32(zero).i32(plan.row_bytes).memory_fill()
                continue
            _fill(f, dst_c, base, zero, oh0 * out_w)  # rows above the input
            _fill(f, dst_c, base + oh1 * out_w, zero, plan.row_bytes - oh1 * out_w)  # below, and the tile padding
            first = win.source(0, i, oh0) * in_w + win.source(1, j, ow0)
            f.get(src_c).i32(first).op("i32.add").set(src)
            f.get(dst_c).i32(base + oh0 * out_w).op("i32.add").set(dst)
            with f.for_range(row, oh0, oh1):
                _fill(f, dst, 0, zero, ow0)
                _copy_run(f, dst, ow0, src, ow1 - ow0, win.strides[1])
                _fill(f, dst, ow1, zero, out_w - ow1)
                f.inc(src, win.strides[0] * in_w).inc(dst, out_w)


def _fill(f: Func, at: int, offset: int, byte: int, count: int) -> None:
    """count bytes of `byte` from local `at` + offset."""
    if count <= 0:
        return
    if count <= 8:
        for index in range(count):
            f.get(at).i32(byte).mem("i32.store8", offset=offset + index)
        return
    f.get(at).i32(offset).op("i32.add").i32(byte).i32(count).memory_fill()


def _copy_run(f: Func, dst: int, offset: int, src: int, count: int, step: int) -> None:
    """dst[offset + j] = src[j * step] for j < count (locals dst, src unchanged)."""
    if step == 1 and count >= 16:  # 16-byte chunks, the last one overlapping the one before
        for start in [*range(0, count - 15, 16), *([count - 16] if count % 16 else [])]:
            f.get(dst).get(src).mem("v128.load", offset=start, align=0).mem("v128.store", offset=offset + start,
                                                                          align=0)
        return
    if step == 1 and count >= 8:
        for start in (0, count - 8):
            f.get(dst).get(src).mem("i64.load", offset=start, align=0).mem("i64.store", offset=offset + start,
                                                                         align=0)
        return
    if step == 2 and count > 8:
        # eight outputs from 16 bytes: the even ones of a load at 2 * start, except the last eight
        # (overlapping), the odd ones of a load one byte earlier: no load reads past the run's last
        # byte, nor before its first
        for start in [*range(0, count - 8, 8), count - 8]:
            back = 1 if start == count - 8 else 0
            f.get(dst).get(src).mem("v128.load", offset=2 * start - back, align=0).v128(bytes(16))
            f.shuffle8(ODD_BYTES if back else EVEN_BYTES)
            f.lane("i64x2.extract_lane", 0).mem("i64.store", offset=offset + start, align=0)
        return
    for index in range(count):
        f.get(dst).get(src).mem("i32.load8_u", offset=index * step).mem("i32.store8", offset=offset + index)


def _each_tile(f: Func, plan: QConvPlan, rows: int, blocks: int, src: int, dst: int, block: Callable[[], None]) -> None:
    """`block()` for each tile of positions, with `src` at its first position's row bytes and `dst` at its block:
    the regular tiles in a loop, the others (an overlapping last tile) one by one."""
    tile = f.local(I32)
    with f.for_range(tile, 0, plan.regular):
        f.get(tile).i32(plan.width).op("i32.mul").get(rows).op("i32.add").set(src)
        f.get(tile).i32(plan.block_bytes).op("i32.mul").i32(blocks).op("i32.add").set(dst)
        block()
    for index in range(plan.regular, len(plan.starts)):
        f.get(rows).i32(plan.starts[index]).op("i32.add").set(src)
        f.i32(blocks + index * plan.block_bytes).set(dst)
        block()


def _interleave(f: Func, plan: QConvPlan, rows: int, blocks: int) -> None:
    """Each position tile's block: per k pair, rows k and k+1 of its positions, byte by byte."""
    src, dst, end = (f.local(I32) for _ in range(3))
    low, high = f.local(V128), f.local(V128)
    whole = plan.k_size // 2

    def pair(second: int) -> None:
        for half in range(plan.width // 8):
            f.get(src).mem("v128.load64_zero", offset=8 * half, align=0).set(low)
            f.get(src).mem("v128.load64_zero", offset=second + 8 * half, align=0).set(high)
            f.get(dst).get(low).get(high).shuffle8(BYTE_PAIRS).mem("v128.store", offset=16 * half, align=0)

    def block() -> None:
        """The block at dst of the positions from src."""
        if whole:
            f.get(dst).i32(whole * plan.width * 2).op("i32.add").set(end)
            with f.block(b"\x03"):
                pair(plan.row_bytes)
                f.inc(src, 2 * plan.row_bytes).inc(dst, plan.width * 2)
                f.get(dst).get(end).op("i32.lt_u").br_if(0)
        if plan.k_size % 2:
            pair(0)

    _each_tile(f, plan, rows, blocks, src, dst, block)


def _weight_quads(f: Func, plan: QConvPlan, weights: int, quads: int, offsets: int | None) -> None:
    """The packed i16 weight pairs ([groups][panels][KP][PANEL][2]) as bytes in k quads
    ([groups][panels][KQ][PANEL][4], `quad_weight_bytes`); a lone last pair's quad ends in zeros.
    With `offsets` (NarrowWeights.quad_offsets), each channel's offset subtracted: b = w - offset."""
    flat, src, dst, end, at = (f.local(I32) for _ in range(5))
    pair_bytes = plan.panel * 4  # one k pair of a panel
    whole, single = divmod(plan.k_pairs, 2)

    def shifted() -> None:
        if offsets is not None:
            f.get(at).mem("v128.load32_splat" if plan.panel == 1 else "v128.load", offset=offsets, align=0)
            f.op("i8x16.sub")

    def quad(lone: bool) -> None:
        if plan.panel == 1:  # one channel: its pairs are consecutive i16
            f.get(dst).get(src).mem("v128.load32_zero" if lone else "v128.load64_zero", align=0).v128(bytes(16))
            f.shuffle8((0, 2, 4, 6) * 4)
            shifted()
            f.lane("i32x4.extract_lane", 0).mem("i32.store", align=0)
            return
        f.get(dst).get(src).mem("v128.load", align=0)  # k pair 2q, then 2q + 1: each i16's low byte
        if lone:
            f.v128(bytes(16))
        else:
            f.get(src).mem("v128.load", offset=pair_bytes, align=0)
        f.shuffle8(PANEL_QUADS)
        shifted()
        f.mem("v128.store", align=0)

    f.i32(weights).set(src)
    f.i32(quads).set(dst)
    with f.for_range(flat, 0, plan.groups * plan.panels):
        f.get(flat).i32(plan.panel * 4).op("i32.mul").set(at)  # the panel's quad offsets
        if whole:
            f.get(src).i32(whole * 2 * pair_bytes).op("i32.add").set(end)
            with f.block(b"\x03"):
                quad(False)
                f.inc(src, 2 * pair_bytes).inc(dst, pair_bytes)
                f.get(src).get(end).op("i32.lt_u").br_if(0)
        if single:
            quad(True)
            f.inc(src, pair_bytes).inc(dst, pair_bytes)


def _interleave_quads(f: Func, plan: QConvPlan, rows: int, blocks: int, dst: int, quad_bytes: int,
                      store: Callable[[int, int], None], begin: Callable[[], None] = lambda: None,
                      finish: Callable[[], None] = lambda: None) -> None:
    """The relaxed kernels' blocks, per tile of positions: per k quad (rows 4q .. 4q+3; rows past K repeat row K-1,
    against zero weights) the tile's positions' four bytes each, in v128s of four positions, which `store(quad,
    vector)` writes relative to the local `dst` (the local `quad` holds them, `vector` is their index in the
    quad's row of the tile); `quad_bytes` is how far dst moves per quad. `begin` and `finish` run before and after
    each block (dst then past its last quad)."""
    src, end = f.local(I32), f.local(I32)
    ab, cd, quad = f.local(V128), f.local(V128), f.local(V128)
    whole, last = plan.k_size // 4, plan.k_size % 4

    def quad_rows(rows_read: tuple[int, int, int, int]) -> None:
        """One k quad from the rows at src + r * row_bytes for r in rows_read."""
        for half in range(plan.width // 8):
            for target, (first, second) in ((ab, rows_read[:2]), (cd, rows_read[2:])):
                f.get(src).mem("v128.load64_zero", offset=first * plan.row_bytes + 8 * half, align=0)
                f.get(src).mem("v128.load64_zero", offset=second * plan.row_bytes + 8 * half, align=0)
                f.shuffle8(BYTE_PAIRS).set(target)
            for part, lanes in enumerate((QUADS_LOW, QUADS_HIGH)):  # positions 8 half + 0-3, 4-7
                f.get(ab).get(cd).shuffle8(lanes).set(quad)
                store(quad, 2 * half + part)

    def block() -> None:
        begin()
        if whole:
            f.get(dst).i32(whole * quad_bytes).op("i32.add").set(end)
            with f.block(b"\x03"):
                quad_rows((0, 1, 2, 3))
                f.inc(src, 4 * plan.row_bytes).inc(dst, quad_bytes)
                f.get(dst).get(end).op("i32.lt_u").br_if(0)
        if last:
            quad_rows((0, min(1, last - 1), min(2, last - 1), last - 1))
            f.inc(dst, quad_bytes)
        finish()

    _each_tile(f, plan, rows, blocks, src, dst, block)


def _interleave_split(f: Func, plan: QConvPlan, rows: int, blocks: int) -> None:
    """The relaxed kernel's blocks: per k quad, the tile's positions' four bytes as their low seven bits, then
    their top bits."""
    half_bytes = plan.width * 4  # a quad's l bytes, then as many h bytes
    dst = f.local(I32)

    def store(quad: int, vector: int) -> None:
        f.get(dst).get(quad).v128(bytes([0x7F] * 16)).op("v128.and").mem("v128.store", offset=16 * vector, align=0)
        f.get(dst).get(quad).i32(7).op("i8x16.shr_u").mem("v128.store", offset=half_bytes + 16 * vector, align=0)

    _interleave_quads(f, plan, rows, blocks, dst, plan.width * 8, store)


def _interleave_narrow(f: Func, plan: QConvPlan, rows: int, blocks: int, sign: str) -> None:
    """The narrow kernel's blocks: per k quad, the tile's positions' four bytes as int8 (uint8
    shifted by x ^ 0x80), [KQ][width][4]; then each position's sum of them over every quad, i32,
    which the kernel multiplies by the channel's weight offset. Rows past K repeat row K-1 (their
    weights are 0, b = -offset: the sum counts them as the dots do)."""
    dst, ones = f.local(I32), f.local(V128)
    sums = [f.local(V128) for _ in range(plan.width // 4)]
    f.v128(bytes([1] * 16)).set(ones)

    def store(quad: int, vector: int) -> None:
        if sign == "u":
            f.get(quad).v128(bytes([0x80] * 16)).op("v128.xor").set(quad)
        f.get(dst).get(quad).mem("v128.store", offset=16 * vector, align=0)
        f.get(quad).get(ones).get(sums[vector]).op("i32x4.relaxed_dot_i8x16_i7x16_add_s").set(sums[vector])

    def begin() -> None:
        for total in sums:
            f.v128(bytes(16)).set(total)

    def finish() -> None:
        for v, total in enumerate(sums):
            f.get(dst).get(total).mem("v128.store", offset=16 * v, align=0)

    _interleave_quads(f, plan, rows, blocks, dst, plan.width * 4, store, begin, finish)


class _Narrow:
    """The narrow kernel's tables (lowering/qconv.py NarrowWeights): addresses of the per-channel
    offsets and biases (i32, indexed as the requantisation's tables) and of the panels' quad offsets."""

    def __init__(self, offsets: int, biases: int, quad_offsets: int):
        self.offsets, self.biases, self.quad_offsets = offsets, biases, quad_offsets


class _Requant:
    """The requantisation's constants: the clamp (shifted by y_zero), y_zero, the narrowing's
    signedness, and the per-channel tables' addresses."""

    def __init__(self, lo: float, hi: float, y_zero: int, signed: bool, biases: int, scales: int):
        self.lo, self.hi, self.y_zero, self.signed = lo, hi, y_zero, signed
        self.biases, self.scales = biases, scales


def _product(f: Func, plan: QConvPlan, blocks: int, wg: int, yg: int, tg: int, sign: str, rq: _Requant,
             kernel: str, narrow: _Narrow | None) -> None:
    """Y[M/g, P] of one group: every register tile of output channels x positions, the channels
    innermost, so that a position tile's block serves every panel of weights from L1."""
    panel, tile, block, first, pw, pc, po, pt, end = (f.local(I32) for _ in range(9))
    full_panels, rest_rows = divmod(plan.group_out, plan.panel)
    panel_bytes = (plan.k_pairs if kernel == "plain" else plan.k_quads) * plan.panel * 4  # a panel's weights

    def one(rows: int) -> None:
        """The tile of panel `panel` at position `first`, whose block is at `block`."""
        f.get(block).set(pc)
        f.get(panel).i32(plan.panel * plan.positions).op("i32.mul").get(yg).op("i32.add").get(first)
        f.op("i32.add").set(po)
        f.get(panel).i32(panel_bytes).op("i32.mul").get(wg).op("i32.add").set(pw)
        f.get(panel).i32(plan.panel * 4).op("i32.mul").get(tg).op("i32.add").set(pt)
        if kernel == "narrow" and narrow is not None:
            _tile_narrow(f, plan, rows, pw, pc, po, pt, end, rq, narrow)
        elif kernel == "split":
            _tile_relaxed(f, plan, rows, pw, pc, po, pt, end, sign, rq)
        else:
            _tile(f, plan, rows, pw, pc, po, pt, end, sign, rq)

    def column() -> None:
        """Every panel of channels at the positions from `first`."""
        if full_panels:
            with f.for_range(panel, 0, full_panels):
                one(plan.panel)
        if rest_rows:
            f.i32(full_panels).set(panel)
            one(rest_rows)

    with f.for_range(tile, 0, plan.regular):
        f.get(tile).i32(plan.width).op("i32.mul").set(first)
        f.get(tile).i32(plan.block_bytes).op("i32.mul").i32(blocks).op("i32.add").set(block)
        column()
    for index in range(plan.regular, len(plan.starts)):
        f.i32(plan.starts[index]).set(first)
        f.i32(blocks + index * plan.block_bytes).set(block)
        column()


def _tile(f: Func, plan: QConvPlan, rows: int, pw: int, pc: int, po: int, pt: int, end: int, sign: str,
          rq: _Requant) -> None:
    """One register tile: `rows` output channels (weights at pw) x `width` positions (block at pc)."""
    vectors = plan.width // 4
    acc = [[f.local(V128) for _ in range(vectors)] for _ in range(rows)]
    xv = [f.local(V128) for _ in range(vectors if rows > 1 else 0)]
    splat = f.local(V128)
    load = f"v128.load8x8_{sign}"
    step_w, step_x = plan.panel * 4, plan.width * 2

    def k_pair(index: int) -> None:
        """acc += the products of k pair `index` from pw / pc."""
        if rows == 1:  # each position vector is used once: loaded as it is multiplied
            f.get(pw).mem("v128.load32_splat", offset=index * step_w, align=0).set(splat)
            for v in range(vectors):
                f.get(acc[0][v]).get(pc).mem(load, offset=index * step_x + 8 * v, align=0).get(splat)
                f.op("i32x4.dot_i16x8_s").op("i32x4.add").set(acc[0][v])
            return
        for v in range(vectors):
            f.get(pc).mem(load, offset=index * step_x + 8 * v, align=0).set(xv[v])
        for r in range(rows):
            f.get(pw).mem("v128.load32_splat", offset=index * step_w + 4 * r, align=0).set(splat)
            for v in range(vectors):
                f.get(acc[r][v]).get(xv[v]).get(splat).op("i32x4.dot_i16x8_s").op("i32x4.add").set(acc[r][v])

    for r, row in enumerate(acc):  # the accumulators start at the channel's (folded) bias
        f.get(pt).mem("v128.load32_splat", offset=rq.biases + 4 * r, align=0).set(row[0])
        for v in row[1:]:
            f.get(row[0]).set(v)
    unroll = 2
    loops, rest = divmod(plan.k_pairs, unroll)
    if loops:
        f.get(pw).i32(loops * unroll * step_w).op("i32.add").set(end)
        with f.block(b"\x03"):
            for index in range(unroll):
                k_pair(index)
            f.inc(pw, unroll * step_w).inc(pc, unroll * step_x)
            f.get(pw).get(end).op("i32.lt_u").br_if(0)
    for index in range(rest):
        k_pair(index)
    _store(f, plan, acc, po, pt, splat, rq)


def _tile_relaxed(f: Func, plan: QConvPlan, rows: int, pw: int, pc: int, po: int, pt: int, end: int, sign: str,
                  rq: _Requant) -> None:
    """`_tile` on relaxed SIMD's 8-bit dot: per k quad, each channel's four weights (`_weight_quads`,
    at pw) splatted in the load, times the block's l and h bytes into two accumulators per
    (channel, four positions); joined, then stored.
    The positions go in passes of `chunk` vectors, so that the 2 x rows x chunk accumulators, the
    chunk's l and h vectors and the weights fit the 16 SIMD registers of x86-64."""
    vectors = plan.width // 4
    chunk = 2 if rows <= 2 else 1
    final = [[f.local(V128) for _ in range(vectors)] for _ in range(rows)]
    low = [[f.local(V128) for _ in range(chunk)] for _ in range(rows)]
    high = [[f.local(V128) for _ in range(chunk)] for _ in range(rows)]
    xl, xh = [f.local(V128) for _ in range(chunk)], [f.local(V128) for _ in range(chunk)]
    splat = f.local(V128)
    qw, qc = f.local(I32), f.local(I32)
    step_w, step_x, half = plan.panel * 4, plan.width * 8, plan.width * 4
    join = "i32x4.add" if sign == "u" else "i32x4.sub"  # x = l + 128 h (uint8), l - 128 h (int8)

    def k_quad(first: int) -> None:
        for v in range(chunk):
            f.get(qc).mem("v128.load", offset=16 * (first + v), align=0).set(xl[v])
            f.get(qc).mem("v128.load", offset=half + 16 * (first + v), align=0).set(xh[v])
        for r in range(rows):
            f.get(qw).mem("v128.load32_splat", offset=4 * r, align=0).set(splat)
            for v in range(chunk):
                for acc, x in ((low[r][v], xl[v]), (high[r][v], xh[v])):
                    f.get(splat).get(x).get(acc).op("i32x4.relaxed_dot_i8x16_i7x16_add_s").set(acc)

    for first in range(0, vectors, chunk):
        for r in range(rows):  # l starts at the channel's (folded) bias, h at 0
            f.get(pt).mem("v128.load32_splat", offset=rq.biases + 4 * r, align=0).set(low[r][0])
            for v in range(chunk):
                if v:
                    f.get(low[r][0]).set(low[r][v])
                f.v128(bytes(16)).set(high[r][v])
        f.get(pw).set(qw)
        f.get(pc).set(qc)
        f.get(pw).i32(plan.k_quads * step_w).op("i32.add").set(end)
        with f.block(b"\x03"):
            k_quad(first)
            f.inc(qw, step_w).inc(qc, step_x)
            f.get(qw).get(end).op("i32.lt_u").br_if(0)
        for r in range(rows):
            for v in range(chunk):
                f.get(low[r][v]).get(high[r][v]).i32(7).op("i32x4.shl").op(join).set(final[r][first + v])
    _store(f, plan, final, po, pt, splat, rq)


def _tile_narrow(f: Func, plan: QConvPlan, rows: int, pw: int, pc: int, po: int, pt: int, end: int, rq: _Requant,
                 nw: _Narrow) -> None:
    """`_tile` for 7-bit weights: per k quad, each channel's shifted weight quad (b, at pw) splatted
    in the load, and the block's int8 activations (a, `_interleave_narrow`): one relaxed dot per
    (channel, four positions), 16 products; then + offset x the positions' sums, and stored.
    Passes of `chunk` position vectors keep the accumulators within x86-64's 16 SIMD registers."""
    vectors = plan.width // 4
    chunk = min(vectors, max(1, 8 // rows))
    final = [[f.local(V128) for _ in range(vectors)] for _ in range(rows)]
    xv = [f.local(V128) for _ in range(chunk if rows > 1 else 0)]
    splat = f.local(V128)
    qw, qc = f.local(I32), f.local(I32)
    step_w, step_x = plan.panel * 4, plan.width * 4
    dot = "i32x4.relaxed_dot_i8x16_i7x16_add_s"
    for first in range(0, vectors, chunk):
        acc = [row[first:first + chunk] for row in final]
        for r, row in enumerate(acc):
            f.get(pt).mem("v128.load32_splat", offset=nw.biases + 4 * r, align=0).set(row[0])
            for v in row[1:]:
                f.get(row[0]).set(v)
        f.get(pw).set(qw)
        f.get(pc).set(qc)
        f.get(pw).i32(plan.k_quads * step_w).op("i32.add").set(end)
        with f.block(b"\x03"):
            if rows == 1:  # each position vector is used once: loaded as it is multiplied
                f.get(qw).mem("v128.load32_splat", align=0).set(splat)
                for v in range(chunk):
                    f.get(qc).mem("v128.load", offset=16 * (first + v), align=0).get(splat).get(acc[0][v])
                    f.op(dot).set(acc[0][v])
            else:
                for v in range(chunk):
                    f.get(qc).mem("v128.load", offset=16 * (first + v), align=0).set(xv[v])
                for r in range(rows):
                    f.get(qw).mem("v128.load32_splat", offset=4 * r, align=0).set(splat)
                    for v in range(chunk):
                        f.get(xv[v]).get(splat).get(acc[r][v]).op(dot).set(acc[r][v])
            f.inc(qw, step_w).inc(qc, step_x)
            f.get(qw).get(end).op("i32.lt_u").br_if(0)
        # qc is now the block's position sums
        for r, row in enumerate(acc):
            f.get(pt).mem("v128.load32_splat", offset=nw.offsets + 4 * r, align=0).set(splat)
            for v, a in enumerate(row):
                f.get(a).get(qc).mem("v128.load", offset=16 * (first + v), align=0).get(splat).op("i32x4.mul")
                f.op("i32x4.add").set(a)
    _store(f, plan, final, po, pt, splat, rq)


def _store(f: Func, plan: QConvPlan, acc: list[list[int]], po: int, pt: int, spare: int, rq: _Requant) -> None:
    """Requantise each row (channel) of the tile (its bias already in) with its multiplier, narrow, store."""
    narrow = "i8x16.narrow_i16x8_s" if rq.signed else "i8x16.narrow_i16x8_u"
    for r, row in enumerate(acc):
        f.get(pt).mem("v128.load32_splat", offset=rq.scales + 4 * r, align=0).set(spare)
        _requantize(f, row, spare, rq)
        for v in range(0, len(row), 2):  # i32 → i16 (in range: no saturation)
            f.get(row[v]).get(row[v + 1]).op("i16x8.narrow_i32x4_s").set(row[v])
        offset = r * plan.positions
        for chunk in range(0, plan.width, 16):  # 16 positions: two i16 vectors narrowed to one of bytes
            low = row[chunk // 4]
            high = row[chunk // 4 + 2] if chunk + 8 < plan.width else low
            f.get(low).get(high).op(narrow).set(spare)
            stored = min(plan.stored - chunk, 16)
            if stored == 16:
                f.get(po).get(spare).mem("v128.store", offset=offset + chunk, align=0)
                continue
            done = 0
            if stored >= 8:
                f.get(po).get(spare).lane("i64x2.extract_lane", 0).mem("i64.store", offset=offset + chunk, align=0)
                done = 8
            for column in range(done, max(stored, 0)):  # fewer positions than one tile
                f.get(po).get(spare).lane("i8x16.extract_lane_u", column)
                f.mem("i32.store8", offset=offset + chunk + column)


def _i32x4(value: int) -> bytes:
    return struct.pack("<4i", value, value, value, value)
