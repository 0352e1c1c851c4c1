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
the code in a run-time loop. A fused activation (`_activation`, should fuse.py list
ConvTranspose as a producer) runs over the output once every tile has added its share.

Pads follow the ONNX specification (and its reference): with auto_pad SAME_* or an
output_shape, total_padding = stride*(in-1) + output_padding + (kernel-1)*dilation + 1 - out,
SAME_UPPER putting the smaller half first and SAME_LOWER the larger. With output_shape but no
auto_pad the specification puts the larger half first and ONNX Runtime the smaller, so an odd
total there is declined (the reference evaluator fails on it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.gemm import Operand, emit_gemm
from wasinfer.backends.wasm.emitters.pool import Addr, push_addr, row_major
from wasinfer.backends.wasm.emitters.unary import epilogue
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node

UNROLL_FLOATS = 16  # innermost runs up to this long are unrolled
COLUMN_BUDGET = 2**20  # column-buffer bytes per tile of input rows: about the size of L2


@dataclass(frozen=True)
class TransposePlan:
    batch: int
    channels: int  # C
    out_channels: int  # M
    groups: int
    in_dims: tuple[int, ...]
    out_dims: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pad_begin: tuple[int, ...]
    tile_rows: int = 1  # input rows (spatial axis 0) per column-buffer tile

    @property
    def k_size(self) -> int:
        return math.prod(self.kernel)

    @property
    def positions(self) -> int:
        return math.prod(self.in_dims)

    @property
    def row_size(self) -> int:
        """Input positions per step of spatial axis 0."""
        return math.prod(self.in_dims[1:])

    @property
    def scratch_bytes(self) -> int:
        return self.out_channels // self.groups * self.k_size * self.tile_rows * self.row_size * 4

    def tiles(self) -> list[tuple[int, int, int]]:
        """(lo, hi, repeat): input rows [lo, hi) of a tile, and how many such tiles follow each other.
        Tiles whose rows all land inside the output for every kernel row differ only in where they
        read and write, so a run of them shares one copy of the code in a run-time loop."""
        rows, size = self.in_dims[0], self.tile_rows
        runs: list[tuple[int, int, int, bool]] = []
        for lo in range(0, rows, size):
            hi = min(rows, lo + size)
            inside = hi - lo == size and all(self.valid(0, k)[0] <= lo and hi <= self.valid(0, k)[1]
                                             for k in range(self.kernel[0]))
            if inside and runs and runs[-1][3]:
                runs[-1] = (*runs[-1][:2], runs[-1][2] + 1, True)
            else:
                runs.append((lo, hi, 1, inside))
        return [(lo, hi, repeat) for lo, hi, repeat, _ in runs]

    def valid(self, axis: int, offset: int) -> tuple[int, int]:
        """Input indices [lo, hi) whose output o = i*stride + offset*dilation - pad lies inside the output."""
        stride, shift = self.strides[axis], offset * self.dilations[axis] - self.pad_begin[axis]
        lo = max(0, -(shift // stride))  # ceil(-shift / stride)
        hi = min(self.in_dims[axis], (self.out_dims[axis] - 1 - shift) // stride + 1)
        return lo, max(lo, hi)


def _ints(node: Node, key: str, count: int, default: int) -> tuple[int, ...]:
    value = node.attr(key)
    return tuple(int(v) for v in value) if value else (default,) * count


def _plan(node: Node, graph: Graph) -> tuple[list[str], TransposePlan | None]:
    x_shape, w_shape = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    rank = len(x_shape) - 2
    if rank < 1 or len(w_shape) != len(x_shape):
        return [f"input rank {len(x_shape)} / weight rank {len(w_shape)}: expected N, C and spatial axes"], None
    problems = []
    for key, length in (("strides", rank), ("dilations", rank), ("pads", 2 * rank), ("kernel_shape", rank),
                        ("output_padding", rank)):
        value = node.attr(key)
        if value and len(value) != length:
            problems.append(f"{key} has {len(value)} values, expected {length}")
    groups = int(node.attr("group", 1))
    if groups < 1 or x_shape[1] != w_shape[0] or x_shape[1] % groups:
        problems.append(f"group={groups} does not fit input channels {x_shape[1]} and weight shape {list(w_shape)}")
    kernel_dims = tuple(int(k) for k in node.attr("kernel_shape") or w_shape[2:])
    if kernel_dims != tuple(w_shape[2:]):
        problems.append(f"kernel_shape {list(kernel_dims)} differs from the weight's {list(w_shape[2:])}")
    auto_pad = str(node.attr("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        problems.append(f"auto_pad={auto_pad!r} is not a valid value")
    if problems:
        return problems, None
    in_dims = tuple(x_shape[2:])
    strides, dilations = _ints(node, "strides", rank, 1), _ints(node, "dilations", rank, 1)
    extra = _ints(node, "output_padding", rank, 0)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_dims, dilations, strict=True)]
    full = [s * (n - 1) + p + span for s, n, p, span in zip(strides, in_dims, extra, spans, strict=True)]
    target = node.attr("output_shape")
    if target is not None:
        target = [int(v) for v in target][-rank:]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") or target is not None:
        out_dims = tuple(target if target is not None else [n * s for n, s in zip(in_dims, strides, strict=True)])
        totals = [f - o for f, o in zip(full, out_dims, strict=True)]
        if auto_pad in ("NOTSET", "VALID") and any(t > 0 and t % 2 for t in totals):
            return [f"output_shape {list(out_dims)} with auto_pad={auto_pad} needs odd padding {totals}, whose extra "
                    "element the ONNX spec and ONNX Runtime put on opposite sides; give auto_pad or pads"], None
        if auto_pad == "SAME_LOWER":
            begin = tuple(max(t, 0) - max(t, 0) // 2 for t in totals)
        else:
            begin = tuple(max(t, 0) // 2 for t in totals)
    else:
        pads = _ints(node, "pads", 2 * rank, 0) if auto_pad == "NOTSET" else (0,) * (2 * rank)
        begin = pads[:rank]
        out_dims = tuple(f - pads[a] - pads[a + rank] for a, f in enumerate(full))
    if any(o <= 0 for o in out_dims):
        return [f"output spatial dims {list(out_dims)} are not positive"], None
    plan = TransposePlan(x_shape[0], x_shape[1], w_shape[1] * groups, groups, in_dims, out_dims, kernel_dims,
                         strides, dilations, begin)
    row_bytes = w_shape[1] * math.prod(kernel_dims) * plan.row_size * 4
    plan = replace(plan, tile_rows=max(1, min(in_dims[0], COLUMN_BUDGET // row_bytes)))
    expected = (plan.batch, plan.out_channels, *out_dims)
    if graph.info(node.outputs[0]).shape != expected:
        return [f"output shape {graph.info(node.outputs[0]).shape} differs from the computed {expected}"], None
    return [], plan


def transpose_plan(node: Node, graph: Graph) -> TransposePlan:
    problems, plan = _plan(node, graph)
    assert plan is not None, problems
    return plan


def _check(node: Node, graph: Graph) -> list[str]:
    return only_float32(node, graph) + _plan(node, graph)[0]


def _scratch(node: Node, graph: Graph) -> int:
    plan = _plan(node, graph)[1]
    return plan.scratch_bytes if plan is not None else 0


@kernel("ConvTranspose", check=_check, scratch=_scratch)
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
        push_addr(f, dst)
        f.set(dl)
        push_addr(f, source)
        f.set(sl)
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
    push_addr(f, dst)
    f.set(pd)
    push_addr(f, src)
    f.set(ps)
    unroll = 4  # four adds per iteration
    with f.for_range(counter, 0, count // (lanes * unroll)):
        for j in range(unroll):
            add(lanes, (pd, 4 * j * lanes * step), (ps, 4 * j * lanes))
        f.inc(pd, 4 * lanes * unroll * step).inc(ps, 4 * lanes * unroll)
    for j in range(count % (lanes * unroll)):
        add(1, (pd, 4 * j * step), (ps, 4 * j))


__all__ = ["TransposePlan", "transpose_plan"]
