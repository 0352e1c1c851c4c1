"""MaxPool (with Indices), AveragePool, LpPool and their Global forms (float32, any spatial rank),
and the sliding-window machinery they share with Conv.

The geometry is planned in lowering/window.py (`Window`: strides, dilations, pads, auto_pad,
ceil_mode → output sizes and explicit pads; which taps unroll; AveragePool's divisors); this
module renders it. `emit_windows` runs a `WindowOp` over every output: a padded op first copies
each input plane into a scratch buffer whose border holds the padding value (-inf for max,
NaN when Indices are wanted, 0 otherwise; written once per call), so every window reads
without bounds checks; unpadded ops read the input in place. Tap offsets are compile-time
constants (memarg offsets), unrolled up to MAX_UNROLL taps. With a unit stride on the last
axis four outputs are computed per v128. An op may compute blocks of several v128s at once
(`WindowOp.vectors`, depthwise Conv): a row's outputs in blocks, or several narrow rows per block.

AveragePool divides by the per-axis product of counts computed at compile time, exactly
as ONNX Runtime does: taps inside the input (count_include_pad=0), or inside the input
plus its explicit pads (count_include_pad=1). MaxPool's Indices follow ONNX Runtime too
(see `_Argmax`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.layout import row_major
from wasinfer.lowering.window import (
    Window,
    average_divisors,
    padded_dims,
    pool_scratch,
    pool_window,
    tap_nest,
    window_problems,
)

UNROLL_FLOATS = 16  # copies and fills up to this many floats are unrolled v128/f32 moves
COPY_LOOP_FLOATS = 256  # unit-stride copies up to this many floats are a v128 loop: memory.copy calls the runtime
NEG_INF_BITS = 0xFF800000
NAN_BITS = 0x7FC00000


# ---------------------------------------------------------------- copy / fill emitters

# An address known as a run-time pointer local plus a compile-time byte offset (>= 0).
Addr = tuple[int, int]


def push_addr(f: Func, addr: Addr) -> None:
    f.get(addr[0])
    if addr[1]:
        f.i32(addr[1]).op("i32.add")


def set_addr(f: Func, local: int, addr: Addr) -> None:
    """local = the address `addr` stands for (a base local plus a constant)."""
    push_addr(f, addr)
    f.set(local)


def emit_fill(f: Func, dst: Addr, count: int, bits: int = 0) -> None:
    """dst[0:count] = the f32 with these bits; short runs are unrolled, zero runs use memory.fill."""
    if count <= 0:
        return
    if count > UNROLL_FLOATS and bits == 0:
        push_addr(f, dst)
        f.i32(0).i32(count * 4).memory_fill()
        return
    if count > UNROLL_FLOATS:
        counter, ptr = f.local(I32), f.local(I32)
        set_addr(f, ptr, dst)
        with f.for_range(counter, 0, count // 4):
            f.get(ptr).v128(bits.to_bytes(4, "little") * 4).mem("v128.store")
            f.inc(ptr, 16)
        emit_fill(f, (ptr, 0), count % 4, bits)
        return
    for index in range(count // 4):
        f.get(dst[0]).v128(bits.to_bytes(4, "little") * 4).mem("v128.store", offset=dst[1] + 16 * index)
    for index in range(count // 4 * 4, count):
        f.get(dst[0]).i32(bits).mem("i32.store", offset=dst[1] + 4 * index)


def emit_copy(f: Func, dst: Addr, src: Addr, count: int, src_step: int = 1) -> None:
    """dst[j] = src[j * src_step] for j < count (the two do not overlap): a v128 loop for unit-stride runs up to
    COPY_LOOP_FLOATS, memory.copy (a call into the runtime, ~10 ns) for longer ones."""
    if count <= 0:
        return
    if src_step == 1 and UNROLL_FLOATS < count <= COPY_LOOP_FLOATS:  # 8 floats per step, then the rest
        counter, pd, ps = f.local(I32), f.local(I32), f.local(I32)
        set_addr(f, pd, dst)
        set_addr(f, ps, src)
        with f.for_range(counter, 0, count // 8):
            for index in range(2):
                f.get(pd).get(ps).mem("v128.load", offset=16 * index).mem("v128.store", offset=16 * index)
            f.inc(pd, 32).inc(ps, 32)
        emit_copy(f, (pd, 0), (ps, 0), count % 8)
        return
    if src_step == 1 and count > UNROLL_FLOATS:
        push_addr(f, dst)
        push_addr(f, src)
        f.i32(count * 4).memory_copy()
        return
    if src_step == 1:
        for index in range(count // 4):
            f.get(dst[0]).get(src[0]).mem("v128.load", offset=src[1] + 16 * index)
            f.mem("v128.store", offset=dst[1] + 16 * index)
        for index in range(count // 4 * 4, count):
            f.get(dst[0]).get(src[0]).mem("f32.load", offset=src[1] + 4 * index)
            f.mem("f32.store", offset=dst[1] + 4 * index)
        return
    if src_step == 2 and count >= 4:
        _copy_stride2(f, dst, src, count)
        return
    unroll = 4
    if count > UNROLL_FLOATS:
        counter, pd, ps = f.local(I32), f.local(I32), f.local(I32)
        set_addr(f, pd, dst)
        set_addr(f, ps, src)
        with f.for_range(counter, 0, count // unroll):
            _gather(f, (pd, 0), (ps, 0), unroll, src_step)
            f.inc(pd, 4 * unroll).inc(ps, 4 * unroll * src_step)
        _gather(f, (pd, 0), (ps, 0), count % unroll, src_step)
        return
    _gather(f, dst, src, count, src_step)


def _copy_stride2(f: Func, dst: Addr, src: Addr, count: int) -> None:
    """dst[j] = src[2j] for j < count (>= 4), 4 at a time: inputs 0-3 and 3-6 loaded, 0, 2, 4, 6 picked by one
    shuffle (nothing past input 2 * count - 2 is read). A count that is not a multiple of 4 ends with 4 outputs
    overlapping the ones before (the same values stored again)."""
    def four(at_dst: Addr, at_src: Addr) -> None:
        f.get(at_dst[0]).get(at_src[0]).mem("v128.load", offset=at_src[1])
        f.get(at_src[0]).mem("v128.load", offset=at_src[1] + 12).shuffle32((0, 2, 5, 7))
        f.mem("v128.store", offset=at_dst[1])

    groups, rest = divmod(count, 4)
    if count <= UNROLL_FLOATS:
        for index in range(groups):
            four((dst[0], dst[1] + 16 * index), (src[0], src[1] + 32 * index))
        if rest:  # the last 4 outputs, ending at the last one
            four((dst[0], dst[1] + 4 * (count - 4)), (src[0], src[1] + 8 * (count - 4)))
        return
    counter, pd, ps = f.local(I32), f.local(I32), f.local(I32)
    set_addr(f, pd, dst)
    set_addr(f, ps, src)
    with f.for_range(counter, 0, groups):
        four((pd, 0), (ps, 0))
        f.inc(pd, 16).inc(ps, 32)
    if rest:  # back from where the loop stopped to 4 outputs before the end
        f.inc(pd, 4 * (rest - 4)).inc(ps, 8 * (rest - 4))
        four((pd, 0), (ps, 0))


def for_lanes(f: Func, count: int, body: Callable[[int], None]) -> None:
    """Run `body(lanes)` over `count` floats: lanes=4 per v128, then lanes=1 for the tail.

    Tail elements are splatted and go through the same v128 body, so both paths agree bit
    for bit (as in `map_f32`).
    """
    counter = f.local(I32)
    for steps, lanes in ((count // 4, 4), (count % 4, 1)):
        if steps:
            with f.for_range(counter, 0, steps):
                body(lanes)


def load_lanes(f: Func, lanes: int, offset: int = 0) -> None:
    """Load 4 floats, or 1 splatted, from the address on the stack."""
    if lanes == 4:
        f.mem("v128.load", offset=offset)
    else:
        f.mem("f32.load", offset=offset).op("f32x4.splat")


def store_lanes(f: Func, lanes: int, offset: int = 0) -> None:
    """Store the v128 on the stack (or its lane 0) at the address below it."""
    if lanes == 4:
        f.mem("v128.store", offset=offset)
    else:
        f.lane("f32x4.extract_lane", 0).mem("f32.store", offset=offset)


def _gather(f: Func, dst: Addr, src: Addr, count: int, src_step: int) -> None:
    for index in range(count):
        f.get(dst[0]).get(src[0]).mem("f32.load", offset=src[1] + 4 * index * src_step)
        f.mem("f32.store", offset=dst[1] + 4 * index)


# ---------------------------------------------------------------- sliding windows

# A run-time i32 (a pointer, an input index) and what it advances by per output along each axis.
Walk = tuple[int, tuple[int, ...]]

# One tap: the pointer local, its constant byte offset, the tap's constant index offset, and a
# local adding the index offset of looped kernel axes (None when all taps are unrolled).
Tap = Callable[[int, int, int, int | None], None]


class Taps:
    """Visits every tap of a window as its `TapNest` (lowering/window.py) says: unrolled up to
    MAX_UNROLL, looping over leading kernel axes beyond; each tap also carries an index."""

    def __init__(self, f: Func, win: Window, index_steps: tuple[int, ...] | None = None):
        self.f = f
        nest = tap_nest(win, index_steps)
        self.loops, self.unrolled = nest.loops, nest.unrolled
        self.pointers = [f.local(I32) for _ in self.loops]
        self.indices = [f.local(I32) for _ in self.loops]
        self.counters = [f.local(I32) for _ in self.loops]

    def visit(self, p: int, tap: Tap) -> None:
        f = self.f
        if not self.loops:
            for offset, index in self.unrolled:
                tap(p, offset, index, None)
            return
        f.get(p).set(self.pointers[0]).i32(0).set(self.indices[0])
        self._loop(0, tap)

    def _loop(self, a: int, tap: Tap) -> None:
        f = self.f
        _, byte_step, index_step = self.loops[a]
        with f.for_range(self.counters[a], 0, self.loops[a][0]):
            if a + 1 < len(self.loops):
                f.get(self.pointers[a]).set(self.pointers[a + 1]).get(self.indices[a]).set(self.indices[a + 1])
                self._loop(a + 1, tap)
            else:
                for offset, index in self.unrolled:
                    tap(self.pointers[a], offset, index, self.indices[a])
            f.inc(self.pointers[a], byte_step).inc(self.indices[a], index_step)


class WindowOp:
    """What a sliding-window kernel computes per window; `push` leaves the result (v128) on the stack."""

    pad_bits = 0  # the f32 bit pattern of padding
    stride2_lanes = False  # push can load 4 outputs' inputs at stride 2 along the last axis (lanes=4)
    # v128 outputs per block (`push_block`), each its own accumulator; a block covers part of a row, or whole
    # narrow rows (`block_rows`). More than 1 only for an op whose outputs depend on their windows alone (no
    # state in `finish`): a row's last v128 then ends at the row's end and recomputes, bit for bit, outputs
    # the one before it stored.
    vectors = 1

    def walks(self) -> list[Walk]:
        """Extra run-time values that advance with the outputs (their starts are set by start_plane)."""
        return []

    def start_plane(self, in_plane: int, out_plane: int) -> None:
        return None

    def start_row(self, starts: list[int]) -> None:
        """`starts` holds the window pointer, then each extra walk, at the row's first output."""
        return None

    def push(self, taps: Taps, p: int, lanes: int) -> None:
        raise NotImplementedError

    def finish(self, lanes: int) -> None:
        """After the output is stored: advance per-output state by `lanes` outputs."""
        return None

    def push_block(self, taps: Taps, p: int, out: int, columns: list[int], rows: int,
                   row_steps: tuple[int, int]) -> None:
        """Compute and store rows x columns (at most `vectors`) v128s of outputs: the 4 outputs from each of
        `columns` (output offsets along the row) in each of `rows` consecutive rows, the first row's first
        window starting at `p` and its first output at `out`; `row_steps` are the bytes between consecutive
        rows' windows and outputs."""
        raise NotImplementedError


def emit_windows(ctx: Ctx, win: Window, x: int, y: int, planes: int, op: WindowOp, taps: Taps,
                 repeat: int = 1) -> None:
    """y's planes, in order: `repeat` output planes per input plane of x, each output = op(its window)."""
    f = ctx.f
    padded = padded_dims(win)
    reads = padded or win.in_dims
    plane_bytes = math.prod(win.in_dims) * 4
    in_plane, out_plane, copy, src, out = (f.local(I32) for _ in range(5))
    if padded is not None:
        f.i32(ctx.scratch_addr).set(src)
        emit_fill(f, (src, 0), math.prod(padded), op.pad_bits)
    pointer_steps = tuple(s * r * 4 for s, r in zip(win.strides, row_major(reads), strict=True))
    walks = [(src, pointer_steps), *op.walks()]
    f.i32(y).set(out).i32(0).set(out_plane)
    with f.for_range(in_plane, 0, planes):
        f.get(in_plane).i32(plane_bytes).op("i32.mul").i32(x).op("i32.add").set(src)
        if padded is not None:
            _copy_in(f, win, padded, src, ctx.scratch_addr)
            f.i32(ctx.scratch_addr).set(src)
        rows = block_rows(win, op)
        in_row = pointer_steps[-2] if win.rank > 1 else 0
        with f.for_range(copy, 0, repeat):
            op.start_plane(in_plane, out_plane)
            _rows(f, win, walks, lambda starts, n: _outputs(f, win, starts, out, taps, op, n, in_row), rows)
            f.inc(out_plane)


def _copy_in(f: Func, win: Window, reads: tuple[int, ...], src: int, buffer: int) -> None:
    """Copy one plane into the interior of the padded buffer, a row at a time."""
    dst_strides, src_strides = row_major(reads), row_major(win.in_dims)
    start = buffer + sum(p * s for p, s in zip(win.pad_begin, dst_strides, strict=True)) * 4
    dst, walk = f.local(I32), f.local(I32)
    f.i32(start).set(dst).get(src).set(walk)
    counters = [f.local(I32) for _ in range(win.rank - 1)]
    saved = [(f.local(I32), f.local(I32)) for _ in range(win.rank - 1)]

    def level(a: int) -> None:
        if a == win.rank - 1:
            emit_copy(f, (dst, 0), (walk, 0), win.in_dims[a])
            return
        keep_dst, keep_src = saved[a]
        f.get(dst).set(keep_dst).get(walk).set(keep_src)
        with f.for_range(counters[a], 0, win.in_dims[a]):
            level(a + 1)
            f.inc(dst, dst_strides[a] * 4).inc(walk, src_strides[a] * 4)
        f.get(keep_dst).set(dst).get(keep_src).set(walk)

    level(0)


def _rows(f: Func, win: Window, walks: list[Walk], body: Callable[[list[int], int], None], rows: int = 1) -> None:
    """Loop over the outputs' leading axes; `body` gets locals holding each walk at a row's first output, and how
    many consecutive rows (along the last leading axis) it computes: `rows` at a time, then the rows left."""
    levels = [[f.local(I32) for _ in walks] for _ in range(win.rank - 1)]
    counters = [f.local(I32) for _ in range(win.rank - 1)]

    def level(a: int, current: list[int]) -> None:
        if a == win.rank - 1:
            body(current, 1)
            return
        mine = levels[a]
        for src, dst in zip(current, mine, strict=True):
            f.get(src).set(dst)
        if a == win.rank - 2 and rows > 1:
            full, rest = divmod(win.out_dims[a], rows)
            with f.for_range(counters[a], 0, full):
                body(mine, rows)
                for local, (_, steps) in zip(mine, walks, strict=True):
                    f.inc(local, steps[a] * rows)
            if rest:
                body(mine, rest)
            return
        with f.for_range(counters[a], 0, win.out_dims[a]):
            level(a + 1, mine)
            for local, (_, steps) in zip(mine, walks, strict=True):
                f.inc(local, steps[a])

    level(0, [start for start, _ in walks])


def _vectorised(win: Window, op: WindowOp) -> bool:
    stride = win.strides[-1]
    return stride == 1 or (stride == 2 and op.stride2_lanes)


def _columns(size: int) -> list[int]:
    """First output of each v128 covering `size` (>= 4) outputs: every 4th, and one ending at the last output
    when `size` is not a multiple of 4 (overlapping the one before)."""
    return list(range(0, size - 3, 4)) + ([size - 4] if size % 4 else [])


def block_rows(win: Window, op: WindowOp) -> int:
    """Rows per block of a blocked op (`WindowOp.vectors` > 1): a row whose v128s fill at most half of the
    accumulators shares its block with the rows after it, so each pass over the taps does more work."""
    size = win.out_dims[-1]
    if op.vectors == 1 or win.rank < 2 or size < 4 or not _vectorised(win, op):
        return 1
    per_row = len(_columns(size))
    return min(win.out_dims[-2], op.vectors // per_row) if 2 * per_row <= op.vectors else 1


def _outputs(f: Func, win: Window, starts: list[int], out: int, taps: Taps, op: WindowOp, rows: int,
             in_row: int) -> None:
    """`rows` rows of outputs along the last axis (more than 1 only for blocks): v128 at a time when the stride is
    1; `in_row` is the bytes between the windows of consecutive rows."""
    size, stride = win.out_dims[-1], win.strides[-1]
    p, counter = f.local(I32), f.local(I32)
    f.get(starts[0]).set(p)
    op.start_row(starts)

    def body(lanes: int) -> None:
        f.get(out)
        op.push(taps, p, lanes)
        store_lanes(f, lanes)
        op.finish(lanes)
        f.inc(out, 4 * lanes).inc(p, 4 * lanes * stride)

    if _vectorised(win, op) and op.vectors > 1 and size >= 4:
        def block(columns: list[int], block_rows: int) -> None:
            op.push_block(taps, p, out, columns, block_rows, (in_row, 4 * size))

        _blocks(f, size, stride, p, out, block, op.vectors, rows)
        if rows > 1:
            f.inc(out, 4 * size * (rows - 1))
    elif _vectorised(win, op):
        for_lanes(f, size, body)
    else:
        with f.for_range(counter, 0, size):
            body(1)


def _blocks(f: Func, size: int, stride: int, p: int, out: int, block: Callable[[list[int], int], None],
            widest: int, rows: int) -> None:
    """A row of `size` (>= 4) outputs in blocks of `widest` v128s, then one block of the v128s left, the last of
    which ends at the row's end when `size` is not a multiple of 4: it overlaps the outputs before it and stores
    them again, bit for bit (they depend on their windows alone). No scalar tail, at most one short block per
    row. With `rows` > 1 the rows' every v128 is one block."""
    counter = f.local(I32)

    def step(columns: list[int], outputs: int) -> None:
        block(columns, rows)
        f.inc(out, 4 * outputs).inc(p, 4 * outputs * stride)

    if rows > 1:
        step(_columns(size), size)
        return
    full, rest = divmod(size, 4 * widest)
    if full:
        with f.for_range(counter, 0, full):
            step(list(range(0, 4 * widest, 4)), 4 * widest)
    if rest:
        back = max(0, 4 - rest)  # fewer than 4 left: back up to 4 outputs before the row's end
        if back:
            f.inc(out, -4 * back).inc(p, -4 * back * stride)
        step(_columns(rest + back), rest + back)


# ---------------------------------------------------------------- pools

def _check_pool(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph, [node.inputs[0], node.outputs[0]])
    shape = graph.info(node.inputs[0]).shape
    if len(shape) < 3:
        return [*problems, f"input rank {len(shape)}: expected N, C and spatial axes"]
    if not node.attr("kernel_shape"):
        return [*problems, "kernel_shape is required"]
    if len(node.outputs) > 1 and node.outputs[1] and graph.info(node.outputs[1]).dtype != np.int64:
        problems.append("the Indices output must be int64")
    if node.op_type == "LpPool" and int(node.attr("p", 2)) < 1:
        problems.append(f"p={node.attr('p')} must be at least 1")
    problems += window_problems(node, len(shape) - 2)
    if problems:
        return problems
    expected = (*shape[:2], *pool_window(node, graph).out_dims)
    if graph.info(node.outputs[0]).shape != expected:
        problems.append(f"output shape {graph.info(node.outputs[0]).shape} differs from the computed {expected}")
    return problems


@kernel("MaxPool", "AveragePool", "LpPool", check=_check_pool, scratch=pool_scratch)
def emit_pool(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    win = pool_window(node, ctx.graph)
    shape = ctx.info(node.inputs[0]).shape
    op: WindowOp
    taps = Taps(f, win)
    if node.op_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
        op = _Argmax(f, win, int(node.attr("storage_order", 0)), ctx.addr(node.outputs[1]))
        taps = Taps(f, win, tuple(d * s for d, s in zip(win.dilations, op.strides, strict=True)))
    elif node.op_type == "MaxPool":
        op = _Reduce(f, "f32x4.pmax", NEG_INF_BITS)
    elif node.op_type == "LpPool":
        op = _Lp(ctx, int(node.attr("p", 2)))
    else:
        op = _Average(ctx, win, bool(node.attr("count_include_pad", 0)))
    emit_windows(ctx, win, ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0]), shape[0] * shape[1], op, taps)


class _Reduce(WindowOp):
    """acc = combine(acc, transform(tap)) from a seed, which is also the padding."""

    def __init__(self, f: Func, combine: str, seed_bits: int, transform: Callable[[], None] | None = None):
        self.f, self.combine, self.acc, self.transform = f, combine, f.local(V128), transform
        self.pad_bits = seed_bits

    def push(self, taps: Taps, p: int, lanes: int) -> None:
        f = self.f
        f.v128(self.pad_bits.to_bytes(4, "little") * 4).set(self.acc)

        def tap(pointer: int, offset: int, index: int, looped: int | None) -> None:
            f.get(self.acc).get(pointer)
            load_lanes(f, lanes, offset)
            if self.transform is not None:
                self.transform()
            f.op(self.combine).set(self.acc)

        taps.visit(p, tap)
        f.get(self.acc)


def lp_power(ctx: Ctx, p: int) -> None:
    """|x|^p for the v128 on the stack (exp(p*log|x|) beyond p = 2)."""
    f = ctx.f
    f.op("f32x4.abs")
    if p == 2:
        v = f.local(V128)
        f.tee(v).get(v).op("f32x4.mul")
    elif p != 1:
        f.call(ctx.helper("log4")).f32x4_const(float(p)).op("f32x4.mul").call(ctx.helper("exp4"))


def lp_root(ctx: Ctx, p: int) -> None:
    """s^(1/p) for the (non-negative) v128 on the stack."""
    f = ctx.f
    if p == 2:
        f.op("f32x4.sqrt")
    elif p != 1:
        f.call(ctx.helper("log4")).f32x4_const(1.0 / p).op("f32x4.mul").call(ctx.helper("exp4"))


class _Lp(_Reduce):
    """(sum of |x|^p)^(1/p); padding is 0 and adds nothing."""

    def __init__(self, ctx: Ctx, p: int):
        super().__init__(ctx.f, "f32x4.add", 0, lambda: lp_power(ctx, p))
        self.ctx, self.p = ctx, p

    def push(self, taps: Taps, p: int, lanes: int) -> None:
        super().push(taps, p, lanes)
        lp_root(self.ctx, self.p)


class _Average(_Reduce):
    """Sum, then divide by a constant, or by row count x column count from tables."""

    def __init__(self, ctx: Ctx, win: Window, include_pad: bool):
        super().__init__(ctx.f, "f32x4.add", 0)
        f = self.f
        divisors = average_divisors(win, include_pad)
        self.uniform = divisors.uniform
        if self.uniform is None:
            self.rows, self.cols = ctx.data(divisors.rows), ctx.data(divisors.cols)
            self.prow, self.pcol = f.local(I32), f.local(I32)

    def start_plane(self, in_plane: int, out_plane: int) -> None:
        if self.uniform is None:
            self.f.i32(self.rows - 4).set(self.prow)

    def start_row(self, starts: list[int]) -> None:
        if self.uniform is None:
            self.f.inc(self.prow, 4).i32(self.cols).set(self.pcol)

    def push(self, taps: Taps, p: int, lanes: int) -> None:
        f = self.f
        super().push(taps, p, lanes)
        if self.uniform is not None:
            f.f32x4_const(self.uniform).op("f32x4.div")
            return
        f.get(self.prow).mem("f32.load").op("f32x4.splat").get(self.pcol)
        load_lanes(f, lanes)
        f.op("f32x4.mul").op("f32x4.div")

    def finish(self, lanes: int) -> None:
        if self.uniform is None:
            self.f.inc(self.pcol, 4 * lanes)


class _Argmax(WindowOp):
    """Max with ONNX Runtime's Indices: the flat input index (row-major for storage_order=0,
    else column-major within the plane) of the first real tap, replaced by any strictly greater
    later one. Padding is NaN here, so "no real tap yet" is "best is NaN" even for -inf inputs."""

    pad_bits = NAN_BITS

    def __init__(self, f: Func, win: Window, storage_order: int, indices: int):
        self.f, self.win = f, win
        dims = win.in_dims
        self.strides = row_major(dims) if storage_order == 0 else tuple(math.prod(dims[:a]) for a in range(len(dims)))
        self.start, self.index, self.out = f.local(I32), f.local(I32), f.local(I32)
        self.best, self.best_index, self.lane_base, self.value, self.mask = (f.local(V128) for _ in range(5))
        self.no_winner = f.local(I32)
        f.i32(indices).set(self.out)

    def walks(self) -> list[Walk]:
        return [(self.start, tuple(s * i for s, i in zip(self.win.strides, self.strides, strict=True)))]

    def start_plane(self, in_plane: int, out_plane: int) -> None:
        f, win = self.f, self.win
        # the index of tap 0 of output 0; with no winner ONNX Runtime reports every coordinate as -1
        f.get(in_plane).i32(math.prod(win.in_dims)).op("i32.mul").set(self.no_winner)
        f.get(self.no_winner).i32(-sum(p * s for p, s in zip(win.pad_begin, self.strides, strict=True)))
        f.op("i32.add").set(self.start)
        f.get(self.no_winner).i32(-sum(self.strides)).op("i32.add").set(self.no_winner)

    def start_row(self, starts: list[int]) -> None:
        self.f.get(starts[1]).set(self.index)

    def push(self, taps: Taps, p: int, lanes: int) -> None:
        f = self.f
        step = self.win.strides[-1] * self.strides[-1]
        f.get(self.index).op("i32x4.splat")
        if lanes == 4:
            f.v128((np.arange(4, dtype="<i4") * step).tobytes()).op("i32x4.add")
        f.set(self.lane_base)
        f.v128(NAN_BITS.to_bytes(4, "little") * 4).set(self.best)
        f.get(self.no_winner).op("i32x4.splat").set(self.best_index)

        def tap(pointer: int, offset: int, index: int, looped: int | None) -> None:
            f.get(pointer)
            load_lanes(f, lanes, offset)
            f.set(self.value)
            f.get(self.value).get(self.best).op("f32x4.gt")
            f.get(self.best).get(self.best).op("f32x4.ne").get(self.value).get(self.value).op("f32x4.eq")
            f.op("v128.and").op("v128.or").set(self.mask)
            f.get(self.value).get(self.best).get(self.mask).op("v128.bitselect").set(self.best)
            f.i32(index)
            if looped is not None:
                f.get(looped).op("i32.add")
            f.op("i32x4.splat").get(self.lane_base).op("i32x4.add")
            f.get(self.best_index).get(self.mask).op("v128.bitselect").set(self.best_index)

        taps.visit(p, tap)
        for lane in range(lanes):
            f.get(self.out).get(self.best_index).lane("i32x4.extract_lane", lane).op("i64.extend_i32_s")
            f.mem("i64.store", offset=8 * lane)
        f.get(self.best)

    def finish(self, lanes: int) -> None:
        self.f.inc(self.out, 8 * lanes).inc(self.index, lanes * self.win.strides[-1] * self.strides[-1])


# ---------------------------------------------------------------- global pools

def _check_global(node: Node, graph: Graph) -> list[str]:
    problems = only_float32(node, graph)
    if len(graph.info(node.inputs[0]).shape) < 3:
        problems.append("input must have N, C and spatial axes")
    if node.op_type == "GlobalLpPool" and int(node.attr("p", 2)) < 1:
        problems.append(f"p={node.attr('p')} must be at least 1")
    return problems


@kernel("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool", check=_check_global)
def emit_global_pool(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    shape = ctx.info(node.inputs[0]).shape
    channels, size = shape[0] * shape[1], math.prod(shape[2:])
    is_max = node.op_type == "GlobalMaxPool"
    p_norm = int(node.attr("p", 2)) if node.op_type == "GlobalLpPool" else None
    combine = "f32x4.pmax" if is_max else "f32x4.add"
    seed = float("-inf") if is_max else 0.0
    channel, p, out = f.local(I32), f.local(I32), f.local(I32)
    acc, tail = f.local(V128), f.local(V128)
    divisor = ctx.run_time_count(node.inputs[0], range(2, len(shape)))  # symbolic dims: the run's count
    f.i32(ctx.addr(node.inputs[0])).set(p).i32(ctx.addr(node.outputs[0])).set(out)
    with f.for_range(channel, 0, channels):
        f.f32x4_const(seed).set(acc)
        f.f32x4_const(seed).set(tail)

        def body(lanes: int) -> None:
            into = acc if lanes == 4 else tail
            f.get(into).get(p)
            load_lanes(f, lanes)
            if p_norm is not None:
                lp_power(ctx, p_norm)
            f.op(combine).set(into)
            f.inc(p, 4 * lanes)

        for_lanes(f, size, body)
        f.get(out).get(tail)
        for lane in range(4):
            f.get(acc).lane("f32x4.extract_lane", lane).op("f32x4.splat").op(combine)
        if p_norm is not None:
            lp_root(ctx, p_norm)
        elif not is_max:
            (f.f32x4_const(float(size)) if divisor is None else f.get(divisor)).op("f32x4.div")
        f.lane("f32x4.extract_lane", 0).mem("f32.store")
        f.inc(out, 4)


__all__ = ["Addr", "Taps", "Walk", "WindowOp", "block_rows", "emit_copy", "emit_fill", "emit_windows", "for_lanes",
           "load_lanes", "push_addr", "store_lanes"]
