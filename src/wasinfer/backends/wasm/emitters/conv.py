"""Conv (any spatial rank, groups, dilations, auto_pad) as im2col + the shared GEMM.

For each (sample, group) the column buffer B[K, P] (K = C/g * prod(kernel), P = output
positions) is built in the kernel's scratch, then Y[Cout/g, P] = W[Cout/g, K] @ B + bias,
with the fused activation in the GEMM epilogue. Shapes are static, so for every kernel
offset the output range that reads inside the input is known at compile time: the copies
carry no bounds checks, padding becomes explicit zero runs, and unit-stride rows are one
memory.copy (or a few v128 moves). Constant weights are packed in the GEMM's 4-row panels
(gemm.pack_panels) at compile time. A 1x1, stride-1, unpadded conv needs no column buffer:
B is the input itself. The column buffer is built and multiplied in tiles of output rows
(spatial axis 0) of about COLUMN_BUDGET bytes, so the GEMM reads it from cache; tiles that
read no padding along that axis share one copy of the code in a run-time loop.

A 3x3 stride-1 conv with constant weights and at least 16 input and output channels runs as
Winograd F(2x2, 3x3) instead (conv_winograd.py): 2.25x fewer multiplies in the same GEMM. Not
when the weights are stored compressed (int8 / fp16): the transformed weights (16/9 as many)
would have to be stored as float32.

A depthwise conv (one input channel per group) has too little reuse for a GEMM (M = 1):
it runs as a weighted sliding window instead, with pool.py's window machinery: each input
plane is copied once into a zero-padded buffer, each tap's weight is splatted once per
output plane, and four outputs are computed per v128 along a row of stride 1 or 2 (at stride 2
a tap's four inputs are picked from two overlapping v128 loads by one shuffle).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters import conv_winograd as winograd
from wasinfer.backends.wasm.emitters import gemm
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm, pack_panels
from wasinfer.backends.wasm.emitters.pool import (
    Addr,
    Taps,
    Window,
    WindowOp,
    emit_copy,
    emit_fill,
    emit_windows,
    load_lanes,
    make_window,
    push_addr,
    row_major,
    window_problems,
    window_scratch,
)
from wasinfer.backends.wasm.emitters.unary import epilogue
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Graph, Node

COLUMN_BUDGET = 2**20  # column-buffer bytes per tile: about the size of L2
GEMM_B_BUDGET = 256 * 1024  # bytes of B per GEMM column block: stays in L2 across all row blocks of A
GEMM_MIN_COLUMNS = 64


# ---------------------------------------------------------------- Conv

@dataclass(frozen=True)
class ConvPlan:
    batch: int
    channels: int
    out_channels: int
    groups: int
    window: Window
    tile_rows: int  # output rows (spatial axis 0) per column-buffer tile
    winograd: bool = False  # 3x3 stride 1 with constant weights: conv_winograd.py

    @property
    def k_size(self) -> int:
        return self.channels // self.groups * math.prod(self.window.kernel)

    @property
    def depthwise(self) -> bool:
        """One input channel per group (any channel multiplier): a weighted sliding window."""
        return self.groups == self.channels > 1

    @property
    def direct(self) -> bool:
        """1x1, stride 1, no padding: the input already is the column buffer."""
        w = self.window
        return all(k == 1 for k in w.kernel) and all(s == 1 for s in w.strides) \
            and not any(w.pad_begin) and not any(w.pad_end)

    @property
    def row_size(self) -> int:
        """Output positions per step of spatial axis 0."""
        return math.prod(self.window.out_dims[1:])

    def tiles(self) -> list[tuple[int, int, int]]:
        """(lo, hi, repeat): output rows [lo, hi) of a tile, and how many such tiles follow each
        other. Tiles whose every kernel row reads inside the input differ only by where they read,
        so a run of them shares one copy of the code in a run-time loop."""
        rows, size, win = self.window.out_dims[0], self.tile_rows, self.window
        runs: list[tuple[int, int, int, bool]] = []
        for lo in range(0, rows, size):
            hi = min(rows, lo + size)
            inside = hi - lo == size and all(win.valid(0, k, lo, hi) == (lo, hi) for k in range(win.kernel[0]))
            if inside and runs and runs[-1][3]:
                runs[-1] = (*runs[-1][:2], runs[-1][2] + 1, True)
            else:
                runs.append((lo, hi, 1, inside))
        return [(lo, hi, repeat) for lo, hi, repeat, _ in runs]

    @property
    def scratch_bytes(self) -> int:
        if self.winograd:
            return winograd.scratch_bytes(self.window, self.channels, self.out_channels)
        if self.depthwise:
            return window_scratch(self.window)
        return 0 if self.direct else self.k_size * self.tile_rows * self.row_size * 4


def conv_plan(node: Node, graph: Graph) -> ConvPlan:
    x_shape, w_shape = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    kernel_dims = tuple(int(k) for k in node.attr("kernel_shape") or w_shape[2:])
    win = make_window(node, tuple(x_shape[2:]), kernel_dims)
    groups = int(node.attr("group", 1))
    k_size = x_shape[1] // groups * math.prod(kernel_dims)
    row_bytes = k_size * math.prod(win.out_dims[1:]) * 4
    plan = ConvPlan(x_shape[0], x_shape[1], w_shape[0], groups, win, win.out_dims[0],
                    node.inputs[1] not in graph.compressed
                    and winograd.fits(win, x_shape[1], w_shape[0], groups, node.inputs[1] in graph.constants))
    if plan.direct:
        return plan
    return replace(plan, tile_rows=max(1, min(win.out_dims[0], COLUMN_BUDGET // max(row_bytes, 1))))


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


def _conv_scratch(node: Node, graph: Graph) -> int:
    return conv_plan(node, graph).scratch_bytes


@kernel("Conv", check=_check_conv, scratch=_conv_scratch)
def emit_conv(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    plan = conv_plan(node, ctx.graph)
    if plan.depthwise:
        _emit_depthwise(ctx, node, plan)
        return
    if plan.winograd:
        winograd.emit_winograd(ctx, node, plan.window, plan.batch, plan.channels, plan.out_channels)
        return
    win = plan.window
    in_size, positions = math.prod(win.in_dims), math.prod(win.out_dims)
    group_in, group_out, k_size = plan.channels // plan.groups, plan.out_channels // plan.groups, plan.k_size
    x, y = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    weights = ctx.const(node.inputs[1])
    if weights is not None:  # constant weights: packed in panels for the GEMM, once per group
        packed = np.stack([pack_panels(g) for g in weights.astype(np.float32).reshape(plan.groups, group_out, -1)])
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
                _blocked_gemm(ctx, group_out, columns, k_size, a, b, Operand(("local", pc), positions, 1), bias, node)


def _blocked_gemm(ctx: Ctx, m_size: int, n_size: int, k_size: int, a: Operand, b: Operand, c: Operand,
                  bias: Operand | None, node: Node | None) -> None:
    """emit_gemm over blocks of columns small enough that B's block stays in cache while
    every row block of A passes over it (the GEMM walks rows outermost)."""
    f = ctx.f
    block = max(GEMM_MIN_COLUMNS, GEMM_B_BUDGET // (min(k_size, gemm.K_BLOCK) * 4) // 8 * 8)
    if n_size <= block:
        emit_gemm(ctx, m_size, n_size, k_size, a, b, c, bias, node=node)
        return
    full, rest = divmod(n_size, block)
    counter, pb, pc = f.local(I32), f.local(I32), f.local(I32)
    b_start, c_start = f.local(I32), f.local(I32)
    for start, local in ((b.base, b_start), (c.base, c_start)):
        if isinstance(start, int):
            f.i32(start)
        else:
            f.get(start[1])
        f.set(local)
    with f.for_range(counter, 0, full):
        f.get(counter).i32(block * 4).op("i32.mul").set(pb)
        f.get(pb).get(c_start).op("i32.add").set(pc)
        f.get(pb).get(b_start).op("i32.add").set(pb)
        emit_gemm(ctx, m_size, block, k_size, a, Operand(("local", pb), b.row, 1), Operand(("local", pc), c.row, 1),
                  bias, node=node)
    if rest:
        f.get(b_start).i32(full * block * 4).op("i32.add").set(pb)
        f.get(c_start).i32(full * block * 4).op("i32.add").set(pc)
        emit_gemm(ctx, m_size, rest, k_size, a, Operand(("local", pb), b.row, 1), Operand(("local", pc), c.row, 1),
                  bias, node=node)


def _im2col(ctx: Ctx, win: Window, tile: tuple[int, int], px: int, col: int, channels: int) -> None:
    """col[c, kernel offset, tile positions] = x[c, source position] or 0 outside the input."""
    f = ctx.f
    tile_dims = (tile[1] - tile[0], *win.out_dims[1:])
    dst_strides, src_strides = row_major(tile_dims), row_major(win.in_dims)
    tile_size = math.prod(tile_dims)
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
        push_addr(f, dst_at)
        f.set(dl)
        push_addr(f, src_at)
        f.set(sl)
        with f.for_range(counter, 0, hi - lo):
            axis(a + 1, offset, (dl, 0), (sl, 0))
            f.inc(dl, block * 4).inc(sl, win.strides[a] * src_strides[a] * 4)

    with f.for_range(channel, 0, channels):
        f.get(channel).i32(math.prod(win.in_dims) * 4).op("i32.mul").get(px).op("i32.add").set(ps)
        f.get(channel).i32(len(offsets) * tile_size * 4).op("i32.mul").i32(col).op("i32.add").set(pd)
        for index, offset in enumerate(offsets):
            axis(0, offset, (pd, index * tile_size * 4), (ps, 0))


class _Depthwise(WindowOp):
    """y = bias + sum over taps of weight * x, then the fused activation; weights are [M, 1, kernel]."""

    stride2_lanes = True

    def __init__(self, ctx: Ctx, node: Node, plan: ConvPlan, taps: Taps):
        f = self.f = ctx.f
        self.stride2 = plan.window.strides[-1] == 2
        self.ctx, self.node = ctx, node
        self.out_channels, self.taps = plan.out_channels, math.prod(plan.window.kernel)
        self.weights = ctx.addr(node.inputs[1])
        self.bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        self.channel, self.pw = f.local(I32), f.local(I32)
        self.acc, self.bias_v = f.local(V128), f.local(V128)
        # all taps unrolled: each weight is splatted into a local once per output plane
        self.splats = [f.local(V128) for _ in range(self.taps)] if not taps.loops else []

    def start_plane(self, in_plane: int, out_plane: int) -> None:
        f = self.f
        # channel = out_plane mod M (planes run over samples, then output channels)
        f.get(out_plane).get(out_plane).i32(self.out_channels).op("i32.div_u").i32(self.out_channels)
        f.op("i32.mul").op("i32.sub").set(self.channel)
        f.get(self.channel).i32(self.taps * 4).op("i32.mul").i32(self.weights).op("i32.add").set(self.pw)
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


def _emit_depthwise(ctx: Ctx, node: Node, plan: ConvPlan) -> None:
    win = plan.window
    taps = Taps(ctx.f, win, row_major(win.kernel))
    op = _Depthwise(ctx, node, plan, taps)
    emit_windows(ctx, win, ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0]), plan.batch * plan.channels, op,
                 taps, repeat=plan.out_channels // plan.channels)


__all__ = ["ConvPlan", "conv_plan"]
