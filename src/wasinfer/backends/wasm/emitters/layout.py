"""Data movement: Transpose and Concat, for any plain dtype (moved by element size).

Neither op looks at values, so one code path serves every numpy dtype whose elements are
whole bytes: bool, (u)int8..64, float16/32/64, complex64/128, and the ml_dtypes types as
modules hold them (bfloat16; float8, float4, 2- and 4-bit integers one per byte). Strings are
refused (lowering/layout.py's `MOVABLE`). ConstantOfShape has no
kernel: it is evaluated at compile time whenever its shape input is known then
(passes/shapes.py, passes/fold.py), and a hint explains the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from wasinfer.backends.wasm.context import UNSUPPORTED_HINTS, Ctx, kernel
from wasinfer.backends.wasm.dims import push_dim
from wasinfer.backends.wasm.emitters.pool import Addr, push_addr
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.ir.symbolic import Expr
from wasinfer.lowering.layout import movable_problems, row_major

# Element size → (load, store) moving one element bit for bit.
LOAD_STORE = {1: ("i32.load8_u", "i32.store8"), 2: ("i32.load16_u", "i32.store16"),
              4: ("i32.load", "i32.store"), 8: ("i64.load", "i64.store"), 16: ("v128.load", "v128.store")}
UNROLL_BYTES = 128  # contiguous runs up to this size are unrolled loads/stores, longer ones use memory.copy
GATHER_UNROLL = 4  # strided element copies per loop iteration

UNSUPPORTED_HINTS[("", "ConstantOfShape")] = (
    "it is evaluated at compile time when its shape input is known then; here the shape depends on "
    "run-time values, which static shapes cannot express")


def copy_bytes(f: Func, dst: Addr, src: Addr, nbytes: int) -> None:
    """dst[0:nbytes] = src[0:nbytes]; short runs become unrolled moves with memarg offsets."""
    if nbytes <= 0:
        return
    if nbytes > UNROLL_BYTES:
        push_addr(f, dst)
        push_addr(f, src)
        f.i32(nbytes).memory_copy()
        return
    done = 0
    for width in (16, 8, 4, 2, 1):
        load, store = LOAD_STORE[width]
        while nbytes - done >= width:
            f.get(dst[0]).get(src[0]).mem(load, offset=src[1] + done, align=0).mem(store, offset=dst[1] + done, align=0)
            done += width


# ---------------------------------------------------------------- Transpose

def transpose_plan(shape: tuple[int, ...], perm: list[int]) -> tuple[list[int], list[int]]:
    """Output dims and the matching input element strides, with axes that stay neighbours
    in both layouts merged and size-1 axes dropped."""
    in_strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    dims: list[int] = []
    strides: list[int] = []
    for axis in perm:
        size, stride = shape[axis], in_strides[axis]
        if size == 1:
            continue
        if dims and strides[-1] == stride * size:
            dims[-1] *= size
            strides[-1] = stride
            continue
        dims.append(size)
        strides.append(stride)
    return (dims, strides) if dims else ([1], [1])


def transpose_perm(node: Node, rank: int) -> list[int]:
    perm = node.attr("perm")
    return list(reversed(range(rank))) if perm is None else [int(p) for p in perm]


def _check_transpose(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    rank = len(graph.info(node.inputs[0]).shape)
    if sorted(transpose_perm(node, rank)) != list(range(rank)):
        problems.append(f"perm {node.attr('perm')} is not a permutation of {rank} axes")
    return problems


def gather_run(f: Func, dst: int, src: int, count: int, size: int, src_step: int) -> None:
    """dst[j] = src[j * src_step] for j < count (elements of `size` bytes); advances both pointers."""
    load, store = LOAD_STORE[size]
    counter = f.local(I32)

    def moves(n: int) -> None:
        for k in range(n):
            f.get(dst).get(src).mem(load, offset=k * src_step * size, align=0).mem(store, offset=k * size, align=0)
        f.inc(dst, n * size).inc(src, n * src_step * size)

    if count >= GATHER_UNROLL:
        with f.for_range(counter, 0, count // GATHER_UNROLL):
            moves(GATHER_UNROLL)
    if count % GATHER_UNROLL:
        moves(count % GATHER_UNROLL)


def walk(f: Func, dims: list[int], in_strides: list[int], out_strides: list[int], pin: int, pout: int,
          size: int, leaf: Callable[[], None]) -> None:
    """Run `leaf` at every index of `dims`, with `pin`/`pout` pointing at its input/output."""
    def level(depth: int) -> None:
        if depth == len(dims):
            leaf()
            return
        saved_in, saved_out, counter = f.local(I32), f.local(I32), f.local(I32)
        f.get(pin).set(saved_in).get(pout).set(saved_out)
        with f.for_range(counter, 0, dims[depth]):
            level(depth + 1)
            f.inc(pin, in_strides[depth] * size).inc(pout, out_strides[depth] * size)
        f.get(saved_in).set(pin).get(saved_out).set(pout)

    level(0)


def _tile_axis(dims: list[int], strides: list[int], size: int) -> int | None:
    """The output axis read contiguously from the input, when 4x4 tiles of f32-sized elements
    can be transposed in registers against a strided innermost output axis."""
    if size != 4 or strides[-1] == 1 or dims[-1] < 4:
        return None
    axis = next((a for a, stride in enumerate(strides[:-1]) if stride == 1), None)
    return axis if axis is not None and dims[axis] >= 4 else None


def _transpose_2d(f: Func, pin: int, pout: int, rows: int, cols: int, col_stride: int, row_stride: int) -> None:
    """out[r*row_stride + c] = in[r + c*col_stride] for r < rows, c < cols (4-byte elements):
    4x4 tiles through registers, then the ragged column and row edges element by element."""
    rows4, cols4 = rows // 4 * 4, cols // 4 * 4
    r, c, qin, qout, rin, rout = (f.local(I32) for _ in range(6))
    vec = [f.local(V128) for _ in range(4)]
    tmp = [f.local(V128) for _ in range(4)]
    f.get(pin).set(rin).get(pout).set(rout)
    with f.for_range(r, 0, rows4, 4):
        f.get(rin).set(qin).get(rout).set(qout)
        with f.for_range(c, 0, cols4, 4):
            for k in range(4):  # vec[k] = in[r..r+3, column c+k] = out[r..r+3, c+k]
                f.get(qin).mem("v128.load", offset=4 * k * col_stride, align=0).set(vec[k])
            for k, (a, b, lanes) in enumerate(((0, 1, (0, 4, 1, 5)), (0, 1, (2, 6, 3, 7)),
                                               (2, 3, (0, 4, 1, 5)), (2, 3, (2, 6, 3, 7)))):
                f.get(vec[a]).get(vec[b]).shuffle32(lanes).set(tmp[k])
            for k, (a, b, lanes) in enumerate(((0, 2, (0, 1, 4, 5)), (0, 2, (2, 3, 6, 7)),
                                               (1, 3, (0, 1, 4, 5)), (1, 3, (2, 3, 6, 7)))):
                f.get(qout).get(tmp[a]).get(tmp[b]).shuffle32(lanes)
                f.mem("v128.store", offset=4 * k * row_stride, align=0)
            f.inc(qin, 16 * col_stride).inc(qout, 16)
        for _ in range(cols4, cols):  # one column of 4 rows: a load and 4 lane stores
            f.get(qin).mem("v128.load", align=0).set(vec[0])
            for k in range(4):
                f.get(qout).get(vec[0]).lane("f32x4.extract_lane", k).mem("f32.store", offset=4 * k * row_stride)
            f.inc(qin, 4 * col_stride).inc(qout, 4)
        f.inc(rin, 16).inc(rout, 16 * row_stride)
    with f.for_range(r, rows4, rows):
        f.get(rin).set(qin).get(rout).set(qout)
        gather_run(f, qout, qin, cols, 4, col_stride)
        f.inc(rin, 4).inc(rout, 4 * row_stride)


@kernel("Transpose", check=_check_transpose)
def emit_transpose(ctx: Ctx, node: Node) -> None:
    """Walk the output axes but the innermost, whose row is a block copy when the input is
    contiguous along it and a strided gather otherwise; f32-sized elements whose input-
    contiguous axis is another output axis go as 2-D transposes of 4x4 register tiles."""
    info = ctx.info(node.inputs[0])
    emit_permute(ctx.f, ctx.addr(node.outputs[0]), ctx.addr(node.inputs[0]), info.shape,
                 transpose_perm(node, len(info.shape)), info.dtype.itemsize)


def emit_permute(f: Func, dst: int, src: int, shape: tuple[int, ...], perm: list[int], size: int) -> None:
    """dst = src.transpose(perm) for a row-major tensor of `shape` with `size`-byte elements."""
    dims, strides = transpose_plan(shape, perm)
    out_strides = list(row_major(tuple(dims)))
    pin, pout = f.local(I32), f.local(I32)
    f.i32(src).set(pin).i32(dst).set(pout)
    if math.prod(shape) == 0:
        return
    tile = _tile_axis(dims, strides, size)
    if tile is not None:
        rest = [a for a in range(len(dims) - 1) if a != tile]
        walk(f, [dims[a] for a in rest], [strides[a] for a in rest], [out_strides[a] for a in rest], pin, pout,
              size, lambda: _transpose_2d(f, pin, pout, dims[tile], dims[-1], strides[-1], out_strides[tile]))
        return

    def row() -> None:
        if strides[-1] == 1:
            copy_bytes(f, (pout, 0), (pin, 0), dims[-1] * size)
            return
        src, dst = f.local(I32), f.local(I32)
        f.get(pin).set(src).get(pout).set(dst)
        gather_run(f, dst, src, dims[-1], size, strides[-1])

    walk(f, dims[:-1], strides[:-1], out_strides[:-1], pin, pout, size, row)


# ---------------------------------------------------------------- Concat

def _check_concat(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    if "axis" not in node.attrs:
        problems.append("the axis attribute is required")
    return problems


def _concat_run_time(ctx: Ctx, node: Node, names: list[str], axis: int) -> None:
    """Along a symbolic axis (ops/extent.py): each input's part starts where the run's sizes of the inputs before
    it end, so its offset and length are computed at run time; per outer index, one memory.copy per input."""
    f, out = ctx.f, ctx.info(node.outputs[0])
    size = out.dtype.itemsize
    outer, inner = math.prod(out.shape[:axis]), math.prod(out.shape[axis + 1:]) * size
    out_block = out.shape[axis] * inner
    offset, length, o, pd, ps = f.local(I32), f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    f.i32(0).set(offset)
    for name in names:
        shape = ctx.info(name).shape
        dim = ctx.graph.extents.get(name, tuple(shape))[axis]
        push_dim(f, dim, ctx.symbols)
        f.i32(inner).op("i32.mul").set(length)
        f.i32(ctx.addr(node.outputs[0])).get(offset).op("i32.add").set(pd).i32(ctx.addr(name)).set(ps)
        with f.for_range(o, 0, outer):
            f.get(pd).get(ps).get(length).memory_copy()
            f.inc(pd, out_block).inc(ps, shape[axis] * inner)
        f.get(offset).get(length).op("i32.add").set(offset)


@kernel("Concat", check=_check_concat)
def emit_concat(ctx: Ctx, node: Node) -> None:
    """Viewed as (outer, axis..): each input contributes one contiguous block per outer index."""
    f = ctx.f
    out = ctx.info(node.outputs[0])
    axis = int(node.attrs["axis"]) % len(out.shape)
    size = out.dtype.itemsize
    outer = math.prod(out.shape[:axis])
    out_block = math.prod(out.shape[axis:]) * size
    names = [n for n in node.inputs if n]
    if any(isinstance(ctx.graph.extents.get(n, (0,) * len(out.shape))[axis], Expr) for n in names):
        _concat_run_time(ctx, node, names, axis)
        return
    zero, pd, ps, counter = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    offset = 0
    for name in names:
        block = math.prod(ctx.info(name).shape[axis:]) * size
        src, dst = ctx.addr(name), ctx.addr(node.outputs[0]) + offset
        offset += block
        if block == 0 or outer == 0:
            continue
        if outer <= 4:
            for o in range(outer):  # absolute addresses as memarg offsets from a zero local
                copy_bytes(f, (zero, dst + o * out_block), (zero, src + o * block), block)
            continue
        f.i32(dst).set(pd).i32(src).set(ps)
        with f.for_range(counter, 0, outer):
            copy_bytes(f, (pd, 0), (ps, 0), block)
            f.inc(pd, out_block).inc(ps, block)
