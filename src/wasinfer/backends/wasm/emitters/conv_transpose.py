"""ConvTranspose (any spatial rank, groups, strides, dilations, pads, output_padding,
output_shape, auto_pad) as the shared GEMM followed by col2im, like ONNX's reference evaluator.

Per (sample, group): col[Mg*K, P] = W_g^T @ X_g, where W_g is [Cg, Mg*K] (K = kernel
positions, P = input positions) read with swapped strides, so a run-time weight needs no
transpose either. Then every row (m, kernel offset) of col is added into output plane m at
o = i*stride + offset*dilation - pad_begin for input position i, the output having been
filled with the bias first. Which inputs land inside the output is known per axis and
kernel offset at compile time, so the scatter carries no bounds checks; a unit stride on
the innermost axis adds four floats per v128. The column buffer is built and scattered in
tiles of input rows (spatial axis 0) of about COLUMN_BUDGET bytes, so it stays in cache and
the scratch stays small; tiles whose every row lands inside the output share one copy of
the code in a run-time loop. A fused activation (`Node.activation`, should fuse.py list
ConvTranspose as a producer) runs over the output once every tile has added its share. The
output size, pads, valid input ranges and tiles are planned in lowering/conv_transpose.py;
this module renders the plan.

Pads follow the ONNX specification (and its reference): with auto_pad SAME_* or an
output_shape, total_padding = stride*(in-1) + output_padding + (kernel-1)*dilation + 1 - out,
SAME_UPPER putting the smaller half first and SAME_LOWER the larger. With output_shape but no
auto_pad the specification puts the larger half first and ONNX Runtime the smaller, so an odd
total there is declined (the reference evaluator fails on it).
"""

from __future__ import annotations

import itertools
import math

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.activation import epilogue
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm
from wasinfer.backends.wasm.emitters.pool import Addr, set_addr
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.conv_transpose import TransposePlan, plan_problems, transpose_plan, transpose_scratch
from wasinfer.lowering.layout import row_major

UNROLL_FLOATS = 16  # innermost runs up to this long are unrolled


def _check(node: Node, graph: Graph) -> list[str]:
    return only_float32(node, graph) + plan_problems(node, graph)[0]


@kernel("ConvTranspose", check=_check, scratch=transpose_scratch)
def emit_conv_transpose(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    plan = transpose_plan(node, ctx.graph)
    cg, mg, k_size, positions = plan.channels // plan.groups, plan.out_channels // plan.groups, plan.k_size, \
        plan.positions
    out_size = math.prod(plan.out_dims)
    x, w, y = ctx.addr(node.inputs[0]), ctx.addr(node.inputs[1]), ctx.addr(node.outputs[0])
    bias = ctx.addr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sample, group, m, tile = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    px, pw, py, pcol, pout, pb, px_tile, py_tile = (f.local(I32) for _ in range(8))
    out_row_bytes = row_major(plan.out_dims)[0] * 4
    col = ctx.scratch_addr

    def base(local: int, start: int, per_sample: int, per_group: int) -> None:
        f.get(sample).i32(per_sample).op("i32.mul").get(group).i32(per_group).op("i32.mul").op("i32.add")
        f.i32(start).op("i32.add").set(local)

    with f.for_range(sample, 0, plan.batch), f.for_range(group, 0, plan.groups):
        base(px, x, plan.channels * positions * 4, cg * positions * 4)
        base(py, y, plan.out_channels * out_size * 4, mg * out_size * 4)
        base(pw, w, 0, cg * mg * k_size * 4)
        if bias is None:
            f.get(py).i32(0).i32(mg * out_size * 4).memory_fill()
        else:
            base(pb, bias, 0, mg * 4)
            _fill_bias(f, py, pb, mg, out_size)
        for lo, hi, repeat in plan.tiles():
            columns = (hi - lo) * plan.row_size
            with f.for_range(tile, 0, repeat):
                # tile t of a run reads input rows (t * rows) further and writes (t * rows * stride) further
                f.get(tile).i32(columns * 4).op("i32.mul").get(px).op("i32.add")
                f.i32(lo * plan.row_size * 4).op("i32.add").set(px_tile)
                f.get(tile).i32((hi - lo) * plan.strides[0] * out_row_bytes).op("i32.mul").get(py).op("i32.add")
                f.set(py_tile)
                # col[m*K + k, p] = sum_c W[c, m*K + k] * X[c, p]: A is W_g read transposed
                emit_gemm(ctx, mg * k_size, columns, cg, Operand(("local", pw), 1, mg * k_size),
                          Operand(("local", px_tile), positions, 1), Operand(col, columns, 1))
                f.i32(col).set(pcol).get(py_tile).set(pout)
                with f.for_range(m, 0, mg):
                    for index, offset in enumerate(itertools.product(*(range(k) for k in plan.kernel))):
                        _scatter(f, plan, offset, (pout, 0), (pcol, index * columns * 4), (lo, hi))
                    f.inc(pcol, k_size * columns * 4).inc(pout, out_size * 4)
        if node.activation is not None:
            _activate(ctx, node, py, mg * out_size)


def _activate(ctx: Ctx, node: Node, py: int, count: int) -> None:
    """The fused activation (if fuse.py lists ConvTranspose as a producer), in place once every
    tile has added its share: overlapping kernels make a value final only at the end."""
    f = ctx.f
    i, ptr = f.local(I32), f.local(I32)
    f.get(py).set(ptr)
    for steps, lanes in ((count // 4, 4), (count % 4, 1)):
        if not steps:
            continue
        with f.for_range(i, 0, steps):
            f.get(ptr).get(ptr)
            if lanes == 4:
                f.mem("v128.load", align=0)
            else:
                f.mem("f32.load").op("f32x4.splat")
            epilogue(ctx, node)
            if lanes == 4:
                f.mem("v128.store", align=0)
            else:
                f.lane("f32x4.extract_lane", 0).mem("f32.store")
            f.inc(ptr, 4 * lanes)


def _fill_bias(f: Func, py: int, pb: int, planes: int, size: int) -> None:
    """Each of `planes` output planes of `size` floats starts as its channel's bias."""
    plane, i, ptr = f.local(I32), f.local(I32), f.local(I32)
    v = f.local(V128)
    f.get(py).set(ptr)
    with f.for_range(plane, 0, planes):
        f.get(plane).i32(4).op("i32.mul").get(pb).op("i32.add").mem("f32.load").op("f32x4.splat").set(v)
        if size >= 4:
            with f.for_range(i, 0, size // 4):
                f.get(ptr).get(v).mem("v128.store", align=0)
                f.inc(ptr, 16)
        for _ in range(size % 4):
            f.get(ptr).get(v).lane("f32x4.extract_lane", 0).mem("f32.store")
            f.inc(ptr, 4)


def _scatter(f: Func, plan: TransposePlan, offset: tuple[int, ...], out: Addr, src: Addr,
             rows: tuple[int, int]) -> None:
    """out[i*stride + offset*dilation - pad] += src[i] over the inputs of the tile's `rows` (along
    axis 0; src holds just those) that land inside the output."""
    ranges = [plan.valid(a, k) for a, k in enumerate(offset)]
    ranges[0] = (max(ranges[0][0], rows[0]), min(ranges[0][1], rows[1]))
    if any(hi <= lo for lo, hi in ranges):
        return
    out_strides, in_strides = row_major(plan.out_dims), row_major((rows[1] - rows[0], *plan.in_dims[1:]))
    rank = len(plan.in_dims)

    def first(a: int) -> tuple[int, int]:
        """Byte offsets of the first valid input along axis a (from the tile's start) and of the
        output it lands on."""
        lo = ranges[a][0]
        o = lo * plan.strides[a] + offset[a] * plan.dilations[a] - plan.pad_begin[a]
        return (lo - (rows[0] if a == 0 else 0)) * in_strides[a] * 4, o * out_strides[a] * 4

    def level(a: int, dst: Addr, source: Addr) -> None:
        src_at, dst_at = first(a)
        dst, source = (dst[0], dst[1] + dst_at), (source[0], source[1] + src_at)
        count = ranges[a][1] - ranges[a][0]
        if a == rank - 1:
            _add_run(f, dst, source, count, plan.strides[a])
            return
        counter, dl, sl = f.local(I32), f.local(I32), f.local(I32)
        set_addr(f, dl, dst)
        set_addr(f, sl, source)
        with f.for_range(counter, 0, count):
            level(a + 1, (dl, 0), (sl, 0))
            f.inc(dl, plan.strides[a] * out_strides[a] * 4).inc(sl, in_strides[a] * 4)

    level(0, out, src)


def _add_run(f: Func, dst: Addr, src: Addr, count: int, step: int) -> None:
    """dst[j*step] += src[j] for j < count; unit steps add four floats per v128."""
    def add(lanes: int, d: Addr, s: Addr) -> None:
        load, store = ("v128.load", "v128.store") if lanes == 4 else ("f32.load", "f32.store")
        add_op = "f32x4.add" if lanes == 4 else "f32.add"
        f.get(d[0]).get(d[0]).mem(load, offset=d[1], align=0).get(s[0]).mem(load, offset=s[1], align=0)
        f.op(add_op).mem(store, offset=d[1], align=0)

    lanes = 4 if step == 1 else 1
    if count <= UNROLL_FLOATS:
        for j in range(count // lanes):
            add(lanes, (dst[0], dst[1] + 4 * j * lanes * step), (src[0], src[1] + 4 * j * lanes))
        for j in range(count // lanes * lanes, count):
            add(1, (dst[0], dst[1] + 4 * j * step), (src[0], src[1] + 4 * j))
        return
    counter, pd, ps = f.local(I32), f.local(I32), f.local(I32)
    set_addr(f, pd, dst)
    set_addr(f, ps, src)
    unroll = 4  # four adds per iteration
    with f.for_range(counter, 0, count // (lanes * unroll)):
        for j in range(unroll):
            add(lanes, (pd, 4 * j * lanes * step), (ps, 4 * j * lanes))
        f.inc(pd, 4 * lanes * unroll * step).inc(ps, 4 * lanes * unroll)
    for j in range(count % (lanes * unroll)):
        add(1, (pd, 4 * j * step), (ps, 4 * j))


__all__ = ["emit_conv_transpose"]
