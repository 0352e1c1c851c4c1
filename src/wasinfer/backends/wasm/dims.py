"""Symbolic dims in Wasm: a dim's value at run time, and copies between the two layouts of a tensor.

Each run's symbol values are int32s in linear memory (where the host wrote an input's actual dims,
ABI version 3); `push_dim` renders a dim (ir/symbolic.py) as the code that computes it from them.

A tensor with symbolic dims has two layouts: *packed*, laid out for its actual dims, as hosts read and
write it at the module's ABI; and *largest*, laid out for its largest dims with only the part inside
the actual dims meaningful, as kernels see it (every stride static). `copy_between_layouts` moves the
meaningful part from one to the other: one `memory.copy` per row of the last symbolic axis (with
the static axes after it), in nested loops over the axes before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from wasinfer.backends.wasm.writer import I32, I64, Func
from wasinfer.ir.symbolic import Dim, Expr


def push_dim(f: Func, dim: Dim, symbols: Mapping[str, int]) -> None:
    """Push the dim's value (i32); `symbols` gives the address of each symbol's value."""
    if isinstance(dim, int):
        f.i32(dim)
        return
    if dim.op == "sym":
        f.i32(symbols[str(dim.args[0])]).mem("i32.load")
        return
    args = [a for a in dim.args if not isinstance(a, str)]
    if dim.op in ("add", "mul"):
        push_dim(f, args[0], symbols)
        for arg in args[1:]:
            push_dim(f, arg, symbols)
            f.op("i32.add" if dim.op == "add" else "i32.mul")
        return
    if dim.op == "floordiv":  # floor, also for a negative numerator (i32.div_s truncates toward zero)
        numerator, divisor = f.local(I32), args[1]
        assert isinstance(divisor, int)
        push_dim(f, args[0], symbols)
        f.tee(numerator).i32(divisor).op("i32.div_s")
        f.get(numerator).i32(divisor).op("i32.rem_s").i32(0).op("i32.ne")
        f.get(numerator).i32(0).op("i32.lt_s").op("i32.and").op("i32.sub")
        return
    first, second = f.local(I32), f.local(I32)  # min / max, folded pairwise
    push_dim(f, args[0], symbols)
    for arg in args[1:]:
        f.set(first)
        push_dim(f, arg, symbols)
        f.set(second)
        f.get(first).get(second).get(first).get(second).op("i32.lt_s" if dim.op == "min" else "i32.gt_s")
        f.op("select")


def read_count(f: Func, address: int, load: str, widen: str | None, largest: int, dim: Dim,
               symbols: Mapping[str, int]) -> tuple[int, int]:
    """A count a run gives in a scalar input (a OneHot's depth, a window's size), read at `address` with `load` and
    widened to i64 by `widen` (None: it is i64): the run traps unless it lies in 0..largest (what the output is
    laid out for), and where the output's dim is a symbol (`dim`), the count is written as its value. Returns
    (i64 local, i32 local) holding it."""
    wide, count = f.local(I64), f.local(I32)
    f.i32(address).mem(load, align=0)
    if widen:
        f.op(widen)
    f.tee(wide).i64(0).op("i64.lt_s").get(wide).i64(largest).op("i64.gt_s").op("i32.or")
    with f.if_():
        f.op("unreachable")
    f.get(wide).op("i32.wrap_i64").set(count)
    if isinstance(dim, Expr):
        f.i32(symbols[str(dim)]).get(count).mem("i32.store")
    return wide, count


def dim_local(f: Func, dim: Dim, symbols: Mapping[str, int]) -> int:
    """A new local holding the dim's value."""
    local = f.local(I32)
    push_dim(f, dim, symbols)
    f.set(local)
    return local


def copy_between_layouts(f: Func, packed: int, largest: int, extent: Sequence[Dim], shape: Sequence[int],
                         itemsize: int, symbols: Mapping[str, int], to_packed: bool) -> None:
    """Copy a tensor's meaningful part between its packed layout at `packed` and its largest layout at
    `largest` (byte addresses); `extent` its dims, `shape` its largest dims."""
    last = max((axis for axis, d in enumerate(extent) if isinstance(d, Expr)), default=-1)
    if last < 0:
        f.i32(packed if to_packed else largest).i32(largest if to_packed else packed)
        f.i32(math.prod(shape) * itemsize).memory_copy()
        return
    inner = math.prod(shape[last + 1:]) * itemsize  # the static axes after the last symbolic one: whole
    row = f.local(I32)  # bytes of one row, the same in both layouts
    push_dim(f, extent[last], symbols)
    f.i32(inner).op("i32.mul").set(row)
    strides = []  # the packed layout's stride of each axis before `last`, decided by the run
    for axis in range(last):
        stride = f.local(I32)
        f.get(row)
        for d in extent[axis + 1:last]:
            push_dim(f, d, symbols)
            f.op("i32.mul")
        f.set(stride)
        strides.append(stride)

    def level(axis: int, packed_at: int, largest_at: int) -> None:
        if axis == last:
            f.get(packed_at if to_packed else largest_at).get(largest_at if to_packed else packed_at)
            f.get(row).memory_copy()
            return
        index, inner_packed, inner_largest = f.local(I32), f.local(I32), f.local(I32)
        f.get(packed_at).set(inner_packed).get(largest_at).set(inner_largest)
        count: int | tuple[str, int] = extent[axis] if isinstance(extent[axis], int) else \
            ("local", dim_local(f, extent[axis], symbols))  # type: ignore[assignment]
        with f.for_range(index, 0, count):
            level(axis + 1, inner_packed, inner_largest)
            f.inc(inner_packed, by_local=strides[axis])
            f.inc(inner_largest, math.prod(shape[axis + 1:]) * itemsize)

    packed_base, largest_base = f.local(I32), f.local(I32)
    f.i32(packed).set(packed_base).i32(largest).set(largest_base)
    level(0, packed_base, largest_base)


def fill_past(f: Func, address: int, extent: Sequence[Dim], shape: Sequence[int], axis: int, bits: int,
              symbols: Mapping[str, int], itemsize: int = 4) -> None:
    """Write the 32-bit pattern `bits` into every element of a tensor (largest layout at `address`) whose index
    on `axis` is at or past the actual dim there: for each index before the axis, the run of elements from the
    actual dim to the largest, contiguous. Elements of other sizes than 4 bytes take only `bits` 0."""
    assert itemsize == 4 or bits == 0
    outer, size, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]) * itemsize
    start, end, at, o = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    push_dim(f, extent[axis], symbols)
    f.i32(inner).op("i32.mul").set(start)  # bytes into each run where the fill starts
    with f.for_range(o, 0, outer):
        f.get(o).i32(size * inner).op("i32.mul").i32(address).op("i32.add").tee(at)
        f.i32(size * inner).op("i32.add").set(end)
        f.get(at).get(start).op("i32.add").set(at)
        if bits == 0:
            f.get(at).i32(0).get(end).get(at).op("i32.sub").memory_fill()
        else:
            with f.block(), f.block(b"\x03"):
                f.get(at).get(end).op("i32.ge_u").br_if(1)
                f.get(at).i32(bits).mem("i32.store")
                f.inc(at, 4).br(0)


def repeat_edge(f: Func, address: int, extent: Sequence[Dim], shape: Sequence[int], axis: int,
                symbols: Mapping[str, int], itemsize: int) -> None:
    """Copy the last slab inside the actual dim on `axis` (index dim - 1) over every slab past it, up to the
    largest: what an index clamped to the run's edge would read (a linear Resize's right neighbour)."""
    outer, size, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]) * itemsize
    edge, at, end, o = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    push_dim(f, extent[axis], symbols)
    f.i32(inner).op("i32.mul").set(edge)  # bytes into each run where the first slab to write starts
    with f.for_range(o, 0, outer):
        f.get(o).i32(size * inner).op("i32.mul").i32(address).op("i32.add").tee(at)
        f.i32(size * inner).op("i32.add").set(end)
        f.get(at).get(edge).op("i32.add").set(at)
        with f.block(), f.block(b"\x03"):
            f.get(at).get(end).op("i32.ge_u").br_if(1)
            f.get(at).get(at).i32(inner).op("i32.sub").i32(inner).memory_copy()
            f.inc(at, inner).br(0)


__all__ = ["copy_between_layouts", "dim_local", "fill_past", "push_dim", "repeat_edge"]
