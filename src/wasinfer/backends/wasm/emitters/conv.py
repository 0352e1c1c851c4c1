"""Conv (any spatial rank, groups, dilations, auto_pad) as im2col + the shared GEMM.

For each (sample, group) the column buffer B[K, P] (K = C/g * prod(kernel), P = output
positions) is built in the kernel's scratch, then Y[Cout/g, P] = W[Cout/g, K] @ B + bias,
with the fused activation in the GEMM epilogue. Shapes are static, so for every kernel
offset the output range that reads inside the input is known at compile time: the copies
carry no bounds checks, padding becomes explicit zero runs, and unit-stride rows are one
memory.copy (or a few v128 moves). Which way a conv runs, its tiles of output rows and its
packed weights are planned in lowering/conv.py; this module renders the plan. A 1x1,
stride-1, unpadded conv needs no column buffer: B is the input itself. A conv with one output
position (squeeze-excite, classifier heads) runs as one GEMM row, col^T @ W^T. The column buffer is
built and multiplied in tiles of output rows (spatial axis 0) of about COLUMN_BUDGET bytes, so
the GEMM reads it from cache; tiles that read no padding along that axis share one copy of the
code in a run-time loop.

A 3x3 stride-1 conv with constant weights and at least 2 input and 4 output channels runs as
Winograd F(2x2, 3x3) instead (conv_winograd.py): 2.25x fewer multiplies in the same GEMM; F(4x4, 3x3),
4x fewer, where rows are at least 16 outputs wide; a 3x3 stride-2 conv with 16 or more input channels as F(4x4, 3x3)
over its even and odd inputs, 81 products per tile where im2col takes 144. Not
when the weights are stored compressed (int8 / fp16): the transformed weights (16/9 as many)
would have to be stored as float32.

A conv along one axis (a sequence, a [1, 3] or [3, 1] kernel) with a kernel of 3 or 5 there, stride 1,
one group and constant weights runs as Winograd F(4, 3) / F(4, 5) (conv_winograd.py `emit_winograd_1d`):
2 and 2.5x fewer multiplies, in one GEMM per interpolation point.

A depthwise conv (one input channel per group) has too little reuse for a GEMM (M = 1):
it runs as a weighted sliding window instead, with pool.py's window machinery: each input
plane is copied once into a zero-padded buffer, and a row's outputs are computed in blocks of
DEPTHWISE_VECTORS v128s (narrow rows several to a block), each its own accumulator, in a run-time
loop over the taps (their offsets from a table) that splats one weight per step and skips the
kernel rows reading only padding rows (planes of a few rows); at stride 2 a tap's four inputs are
picked from two overlapping v128 loads by one shuffle. Rows narrower than 4 outputs and strides
above 2 go one output per step with every tap unrolled.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.emitters.conv_dft import emit_stft
from wasinfer.backends.wasm.emitters.conv_winograd import emit_winograd, emit_winograd_1d, emit_winograd_44
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_blocked_gemm, emit_gemm
from wasinfer.backends.wasm.emitters.layout import emit_permute
from wasinfer.backends.wasm.emitters.pool import (
    Addr,
    Taps,
    Walk,
    WindowOp,
    emit_copy,
    emit_fill,
    emit_windows,
    load_lanes,
    set_addr,
)
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.lowering.conv import ConvPlan, conv_plan, conv_scratch, packed_weights
from wasinfer.lowering.layout import row_major
from wasinfer.lowering.window import Window, padding_rows, tap_offsets, window_problems
from wasinfer.lowering.winograd import Winograd44Plan

# v128 outputs per block of a depthwise conv, each its own accumulator chain, and taps per step of the loop over
# the taps, by stride along the row: as many as fit x86-64's 16 SIMD registers with the inputs of a step
# (Cranelift loads them all before the arithmetic); at stride 2 each v128 of inputs is two loads and a shuffle.
# Two taps a step halve the back-edges, each an epoch check under a deadline (a 5x5 conv on [240, 12, 80]:
# 994 -> 709us with serve's deadline, 435 -> 430us without). Measured on Cranelift's x86-64 output.
DEPTHWISE_VECTORS = {1: 4, 2: 4}
DEPTHWISE_TAPS_PER_STEP = {1: 2, 2: 1}


def _check_conv(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    x_shape, w_shape = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        return [*problems, f"input rank {len(x_shape)} / weight rank {len(w_shape)}: expected N, C and spatial axes"]
    problems += window_problems(node, len(x_shape) - 2)
    if problems:
        return problems
    groups = int(node.attr("group", 1))
    kernel_dims = node.attr("kernel_shape")
    if kernel_dims and tuple(kernel_dims) != tuple(w_shape[2:]):
        problems.append(f"kernel_shape {list(kernel_dims)} differs from the weight's {list(w_shape[2:])}")
    if groups < 1 or x_shape[1] != w_shape[1] * groups or w_shape[0] % groups:
        problems.append(f"group={groups} does not fit input channels {x_shape[1]} and weight shape {list(w_shape)}")
    if problems:
        return problems
    plan = conv_plan(node, graph)
    expected = (plan.batch, plan.out_channels, *plan.window.out_dims)
    if graph.info(node.outputs[0]).shape != expected:
        problems.append(f"output shape {graph.info(node.outputs[0]).shape} differs from the computed {expected}")
    return problems


@kernel("Conv", check=_check_conv, scratch=conv_scratch)
def emit_conv(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    plan = conv_plan(node, ctx.graph)
    if plan.stft is not None:
        emit_stft(ctx, node, plan.stft)
        return
    if plan.depthwise:
        _emit_depthwise(ctx, node, plan)
        return
    if plan.winograd:
        winograd_plan = plan.winograd_plan()
        if isinstance(winograd_plan, Winograd44Plan):
            emit_winograd_44(ctx, node, plan.window, plan.batch, winograd_plan)
        else:
            emit_winograd(ctx, node, plan.window, plan.batch, winograd_plan)
        return
    if plan.winograd_1d:
        emit_winograd_1d(ctx, node, plan.batch, plan.winograd_1d_plan())
        return
    if plan.merged_batch:
        _emit_merged_batch(ctx, node, plan)
        return
    win = plan.window
    in_size, positions = math.prod(win.in_dims), math.prod(win.out_dims)
    if positions == 1 and plan.groups == 1 and ctx.const(node.inputs[1]) is not None:
        _emit_one_position(ctx, node, plan)
        return
    group_in, group_out, k_size = plan.channels // plan.groups, plan.out_channels // plan.groups, plan.k_size
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    weights = ctx.const(node.inputs[1])
    if weights is not None:  # constant weights: packed in panels for the GEMM, once per group
        packed = packed_weights(weights, plan.groups)
        w, group_w_bytes = ctx.data(packed), packed[0].nbytes
    else:
        w, group_w_bytes = ctx.addr(node.inputs[1]), group_out * k_size * 4
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    sample, group = f.local(I32), f.local(I32)
    px, pw, py, pb, pc, tile, px_tile = (f.local(I32) for _ in range(7))

    def base(local: int, start: int, per_sample: int, per_group: int) -> None:
        f.get(sample).i32(per_sample).op("i32.mul").get(group).i32(per_group).op("i32.mul").op("i32.add")
        f.i32(start).op("i32.add").set(local)

    with f.for_range(sample, 0, plan.batch), f.for_range(group, 0, plan.groups):
        base(px, x, plan.channels * in_size * 4, group_in * in_size * 4)
        base(py, y, plan.out_channels * positions * 4, group_out * positions * 4)
        base(pw, w, 0, group_w_bytes)
        if has_bias:
            base(pb, ctx.addr(node.inputs[2]), 0, group_out * 4)
        bias = Operand(("local", pb), 1, 0) if has_bias else None
        for lo, hi, repeat in plan.tiles():
            columns = (hi - lo) * plan.row_size
            with f.for_range(tile, 0, repeat):
                # the tile's rows start (tile * (hi - lo)) rows further in both input and output
                f.get(tile).i32((hi - lo) * win.strides[0] * row_major(win.in_dims)[0] * 4).op("i32.mul")
                f.get(px).op("i32.add").set(px_tile)
                f.get(tile).i32(columns * 4).op("i32.mul").get(py).op("i32.add")
                f.i32(lo * plan.row_size * 4).op("i32.add").set(pc)
                if plan.direct:
                    b = Operand(("local", px), positions, 1)
                else:
                    _im2col(ctx, win, (lo, hi), px_tile, ctx.scratch_addr, group_in)
                    b = Operand(ctx.scratch_addr, columns, 1)
                a = Operand(("local", pw), k_size, 1, panels=weights is not None)
                c = Operand(("local", pc), positions, 1)
                emit_blocked_gemm(ctx, group_out, columns, k_size, a, b, c, bias, node)


def _emit_one_position(ctx: Ctx, node: Node, plan: ConvPlan) -> None:
    """A conv with one output position (squeeze-excite and classifier 1x1 convs, a kernel over a sequence of one
    step) is a matrix-vector product: the GEMM's Y[M, 1] = W @ col would be one column wide, a scalar tile per 4
    rows. Transposed, Y^T[1, M] = col^T @ W^T is one row of M columns: the GEMM's single-row tiles, 16 columns
    (output channels) per 4 v128 accumulators, with W^T as a constant B packed per column run at compile time and
    the bias per column. col is the input itself for a 1x1 unpadded conv, else its one im2col column."""
    f = ctx.f
    weights = ctx.const(node.inputs[1])
    assert weights is not None
    b = weights.astype(np.float32).reshape(plan.out_channels, plan.k_size).T
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    sample, px, py = f.local(I32), f.local(I32), f.local(I32)
    with f.for_range(sample, 0, plan.batch):
        f.get(sample).i32(plan.channels * math.prod(plan.window.in_dims) * 4).op("i32.mul").i32(x).op("i32.add")
        f.set(px)
        f.get(sample).i32(plan.out_channels * 4).op("i32.mul").i32(y).op("i32.add").set(py)
        a = Operand(("local", px), plan.k_size, 1)
        if not plan.direct:
            _im2col(ctx, plan.window, (0, 1), px, ctx.scratch_addr, plan.channels)
            a = Operand(ctx.scratch_addr, plan.k_size, 1)
        bias = Operand(ctx.addr(node.inputs[2]), 0, 1) if has_bias else None
        emit_gemm(ctx, 1, plan.out_channels, plan.k_size, a, b, Operand(("local", py), plan.out_channels, 1), bias,
                  node=node)


def _emit_merged_batch(ctx: Ctx, node: Node, plan: ConvPlan) -> None:
    """Every sample's columns side by side, col[K, batch * positions] (sample b's at b * positions), one GEMM
    Y'[M, batch * positions] = W @ col (bias and activation in its epilogue), then Y'[M, batch, positions] put
    in Y's [batch, M, positions] order."""
    f = ctx.f
    positions, columns = math.prod(plan.window.out_dims), plan.merged_columns
    col, product = ctx.scratch_addr, ctx.scratch_addr + plan.k_size * columns * 4
    weights = ctx.const(node.inputs[1])
    assert weights is not None
    sample, px = f.local(I32), f.local(I32)
    with f.for_range(sample, 0, plan.batch):
        f.get(sample).i32(plan.channels * math.prod(plan.window.in_dims) * 4).op("i32.mul")
        f.i32(ctx.addr(node.inputs[0])).op("i32.add").set(px)
        base = f.local(I32)
        f.get(sample).i32(positions * 4).op("i32.mul").i32(col).op("i32.add").set(base)
        _im2col(ctx, plan.window, (0, plan.window.out_dims[0]), px, ("local", base), plan.channels, columns)
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    bias = Operand(ctx.addr(node.inputs[2]), 1, 0) if has_bias else None
    emit_blocked_gemm(ctx, plan.out_channels, columns, plan.k_size,
                      Operand(ctx.data(packed_weights(weights, 1)), plan.k_size, 1, panels=True),
                      Operand(col, columns, 1), Operand(product, columns, 1), bias, node)
    emit_permute(f, ctx.addr(node.outputs[0]), product, (plan.out_channels, plan.batch, positions), [1, 0, 2], 4)


def _im2col(ctx: Ctx, win: Window, tile: tuple[int, int], px: int, col: int | tuple[str, int], channels: int,
            row_stride: int | None = None) -> None:
    """col[c, kernel offset, tile positions] = x[c, source position] or 0 outside the input; each of col's rows
    (one per c and kernel offset) `row_stride` elements after the one before (default: the tile's positions)."""
    f = ctx.f
    tile_dims = (tile[1] - tile[0], *win.out_dims[1:])
    dst_strides, src_strides = row_major(tile_dims), row_major(win.in_dims)
    tile_size = math.prod(tile_dims)
    stride = row_stride or tile_size
    offsets = list(itertools.product(*(range(k) for k in win.kernel)))
    channel, pd, ps = f.local(I32), f.local(I32), f.local(I32)
    levels = [(f.local(I32), f.local(I32), f.local(I32)) for _ in range(win.rank - 1)]

    def axis(a: int, offset: tuple[int, ...], dst: Addr, src: Addr) -> None:
        """dst/src point at output tile index 0 / input index 0 along axis a."""
        lo_bound, hi_bound = (tile if a == 0 else (0, win.out_dims[a]))
        lo, hi = win.valid(a, offset[a], lo_bound, hi_bound)
        block = dst_strides[a]
        emit_fill(f, dst, (lo - lo_bound) * block)
        emit_fill(f, (dst[0], dst[1] + (hi - lo_bound) * block * 4), (hi_bound - hi) * block)
        if hi <= lo:
            return
        dst_at = (dst[0], dst[1] + (lo - lo_bound) * block * 4)
        src_at = (src[0], src[1] + win.source(a, offset[a], lo) * src_strides[a] * 4)
        if a == win.rank - 1:
            emit_copy(f, dst_at, src_at, hi - lo, win.strides[a])
            return
        counter, dl, sl = levels[a]
        set_addr(f, dl, dst_at)
        set_addr(f, sl, src_at)
        with f.for_range(counter, 0, hi - lo):
            axis(a + 1, offset, (dl, 0), (sl, 0))
            f.inc(dl, block * 4).inc(sl, win.strides[a] * src_strides[a] * 4)

    with f.for_range(channel, 0, channels):
        f.get(channel).i32(math.prod(win.in_dims) * 4).op("i32.mul").get(px).op("i32.add").set(ps)
        f.get(channel).i32(len(offsets) * stride * 4).op("i32.mul")
        if isinstance(col, int):
            f.i32(col)
        else:
            f.get(col[1])
        f.op("i32.add").set(pd)
        for index, offset in enumerate(offsets):
            axis(0, offset, (pd, index * stride * 4), (ps, 0))


SKIP_WORTH = 0.05  # share of a depthwise conv's kernel rows reading only padding above which blocks skip them


class _Depthwise(WindowOp):
    """y = bias + sum over taps of weight * x, then the fused activation; weights are [M, 1, kernel]."""

    stride2_lanes = True

    def __init__(self, ctx: Ctx, node: Node, plan: ConvPlan, taps: Taps):
        f = self.f = ctx.f
        self.stride2 = plan.window.strides[-1] == 2
        self.vectors = DEPTHWISE_VECTORS.get(plan.window.strides[-1], 1)
        self.taps_per_step = DEPTHWISE_TAPS_PER_STEP.get(plan.window.strides[-1], 1)
        self.ctx, self.node = ctx, node
        self.out_channels, self.taps = plan.out_channels, math.prod(plan.window.kernel)
        self.weights = ctx.addr(node.inputs[1])
        self.bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        self.channel, self.pw = f.local(I32), f.local(I32)
        self.acc, self.bias_v, self.weight = f.local(V128), f.local(V128), f.local(V128)
        self.accs = [f.local(V128) for _ in range(self.vectors)]
        self.offsets = ctx.data(tap_offsets(plan.window))
        self.tap, self.tap_weight, self.at = f.local(I32), f.local(I32), f.local(I32)
        # `push` (rows of fewer than 4 outputs, strides above 2) with all taps unrolled: each weight is splatted
        # into a local once per output plane
        pushes = self.vectors == 1 or plan.window.out_dims[-1] < 4
        self.splats = [f.local(V128) for _ in range(self.taps)] if pushes and not taps.loops else []
        # 2-D and padded along the rows: blocks skip the kernel rows that read only padding rows (a plane of 2
        # rows with a 5x5 kernel: 3 of 5), where that is at least SKIP_WORTH of the taps (finding them costs a
        # few instructions per block). `row_in`, the input row of a block's first window, walks with the rows.
        win = self.win = plan.window
        self.skips_rows = win.rank == 2 and padding_rows(win) >= SKIP_WORTH * win.out_dims[0] * win.kernel[0]
        self.row_in, self.row_at = f.local(I32), f.local(I32)
        self.first_tap, self.end_tap = f.local(I32), f.local(I32)

    def walks(self) -> list[Walk]:
        return [(self.row_in, (self.win.strides[0], 0))] if self.skips_rows else []

    def start_row(self, starts: list[int]) -> None:
        if self.skips_rows:
            self.f.get(starts[1]).set(self.row_at)

    def start_plane(self, in_plane: int, out_plane: int) -> None:
        f = self.f
        # channel = out_plane mod M (planes run over samples, then output channels)
        f.get(out_plane).get(out_plane).i32(self.out_channels).op("i32.div_u").i32(self.out_channels)
        f.op("i32.mul").op("i32.sub").set(self.channel)
        f.get(self.channel).i32(self.taps * 4).op("i32.mul").i32(self.weights).op("i32.add").set(self.pw)
        if self.skips_rows:
            f.i32(-self.win.pad_begin[0]).set(self.row_in)
        if self.bias is None:
            f.f32x4_const(0.0).set(self.bias_v)
        else:
            f.get(self.channel).i32(4).op("i32.mul").mem("f32.load", offset=self.bias).op("f32x4.splat")
            f.set(self.bias_v)
        for index, local in enumerate(self.splats):
            f.get(self.pw).mem("f32.load", offset=4 * index).op("f32x4.splat").set(local)

    def push(self, taps: Taps, p: int, lanes: int) -> None:
        f = self.f
        f.get(self.bias_v).set(self.acc)

        def tap(pointer: int, offset: int, index: int, looped: int | None) -> None:
            f.get(self.acc).get(pointer)
            if lanes == 4 and self.stride2:  # inputs 0, 2, 4, 6 from inputs 0-3 and 3-6 (no read past 6)
                load_lanes(f, 4, offset)
                f.get(pointer)
                load_lanes(f, 4, offset + 12)
                f.shuffle32((0, 2, 5, 7))
            else:
                load_lanes(f, lanes, offset)
            if looped is None:
                f.get(self.splats[index])
            else:
                f.get(looped).i32(4).op("i32.mul").get(self.pw).op("i32.add")
                f.mem("f32.load", offset=4 * index).op("f32x4.splat")
            f.op("f32x4.mul").op("f32x4.add").set(self.acc)

        taps.visit(p, tap)
        f.get(self.acc)
        epilogue(self.ctx, self.node)

    def push_block(self, taps: Taps, p: int, out: int, columns: list[int], rows: int,
                   row_steps: tuple[int, int]) -> None:
        """rows x columns v128s at once, in a run-time loop over the taps (offsets from a table): each
        accumulator is its own dependency chain, so the adds of one tap overlap instead of waiting for the
        one before. At most DEPTHWISE_TAPS_PER_STEP taps a step: Cranelift issues a loop body's loads first
        and their arithmetic at its end, so a body unrolled further keeps every tap's input live at once and
        spills."""
        f = self.f
        step = 8 if self.stride2 else 4  # input bytes per output along the row
        places = [(r * row_steps[0] + c * step, r * row_steps[1] + c * 4) for r in range(rows) for c in columns]
        accs = self.accs[:len(places)]
        for acc in accs:
            f.get(self.bias_v).set(acc)
        self._tap_range(rows)
        f.get(self.first_tap).i32(4).op("i32.mul").i32(self.offsets).op("i32.add").set(self.tap)
        f.get(self.first_tap).i32(4).op("i32.mul").get(self.pw).op("i32.add").set(self.tap_weight)
        f.get(self.end_tap).i32(4).op("i32.mul").i32(self.offsets).op("i32.add").set(self.end_tap)

        def one_tap(k: int) -> None:
            """Tap `tap` + k: its weight splatted, its offset added to every place's input."""
            f.get(self.tap_weight).mem("f32.load", offset=4 * k).op("f32x4.splat").set(self.weight)
            f.get(self.tap).mem("i32.load", offset=4 * k).get(p).op("i32.add").set(self.at)
            for (source, _), acc in zip(places, accs, strict=True):
                f.get(acc).get(self.at)
                if self.stride2:  # inputs 0, 2, 4, 6 from inputs 0-3 and 3-6 (no read past 6)
                    load_lanes(f, 4, source)
                    f.get(self.at)
                    load_lanes(f, 4, source + 12)
                    f.shuffle32((0, 2, 5, 7))
                else:
                    load_lanes(f, 4, source)
                f.get(self.weight).op("f32x4.mul").op("f32x4.add").set(acc)

        # taps_per_step taps a loop step while that many are left, then one at a time
        per_step = self.taps_per_step
        f.get(self.tap).i32(4 * (per_step - 1)).op("i32.add").get(self.end_tap).op("i32.lt_u")
        with f.if_(), f.block(b"\x03"):
            for k in range(per_step):
                one_tap(k)
            f.inc(self.tap, 4 * per_step).inc(self.tap_weight, 4 * per_step)
            f.get(self.tap).i32(4 * (per_step - 1)).op("i32.add").get(self.end_tap).op("i32.lt_u").br_if(0)
        for _ in range(per_step - 1):
            f.get(self.tap).get(self.end_tap).op("i32.lt_u")
            with f.if_():
                one_tap(0)
                f.inc(self.tap, 4).inc(self.tap_weight, 4)
        for (_, target), acc in zip(places, accs, strict=True):
            f.get(out).get(acc)
            epilogue(self.ctx, self.node)
            f.mem("v128.store", offset=target)


    def _tap_range(self, rows: int) -> None:
        """first_tap, end_tap: the taps of the kernel rows that read an input row for at least one of the block's
        `rows` rows (the others read only the zero padding: skipped); every tap when the rows are not padded."""
        f, win = self.f, self.win
        if not self.skips_rows:
            f.i32(0).set(self.first_tap).i32(self.taps).set(self.end_tap)
            return
        height, kernel_rows, dilation = win.in_dims[0], win.kernel[0], win.dilations[0]
        per_row = self.taps // kernel_rows
        # first kernel row inside for the block's last row: max(0, ceil(-(row_at + (rows - 1) * stride) / d))
        f.i32(dilation - 1 - (rows - 1) * win.strides[0]).get(self.row_at).op("i32.sub")
        f.i32(dilation).op("i32.div_s").set(self.first_tap)
        f.get(self.first_tap).i32(0).get(self.first_tap).i32(0).op("i32.gt_s").op("select")
        f.i32(per_row).op("i32.mul").set(self.first_tap)
        # end for the block's first row: min(kernel rows, ceil((height - row_at) / d)), below 0 as 0
        f.i32(height + dilation - 1).get(self.row_at).op("i32.sub").i32(dilation).op("i32.div_s").set(self.end_tap)
        f.get(self.end_tap).i32(kernel_rows).get(self.end_tap).i32(kernel_rows).op("i32.lt_s").op("select")
        f.i32(per_row).op("i32.mul").set(self.end_tap)


def _emit_depthwise(ctx: Ctx, node: Node, plan: ConvPlan) -> None:
    win = plan.window
    taps = Taps(ctx.f, win, row_major(win.kernel))
    op = _Depthwise(ctx, node, plan, taps)
    emit_windows(ctx, win, ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0]), plan.batch * plan.channels, op,
                 taps, repeat=plan.out_channels // plan.channels)


__all__ = ["emit_conv"]
