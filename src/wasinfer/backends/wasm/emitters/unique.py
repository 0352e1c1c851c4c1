"""Unique: the distinct slices of a tensor along an axis (its elements without one), ONNX's four outputs.

The slices are taken in order; each is compared with the distinct ones found so far (O(n * m) slice
comparisons, m distinct, which suits the few thousand elements a model asks this of), so the first
occurrence of each, its count and every slice's distinct index come out of one pass. With `sorted` (the
default) the distinct slices are then put in ascending order, compared element by element as numpy's
`unique` orders rows, by an insertion sort on their indices. How many are distinct is decided by the data:
it is the outputs' symbol (passes/dynamic.py), and Y is laid out for the largest count.

    Y        x's shape with the axis's size (the element count without one) cut to m
    indices  [m] int64: where each distinct slice first occurs
    inverse  [n] int64: each slice's position in Y
    counts   [m] int64: how often each occurs
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.indexing import write_run_time_dims
from wasinfer.backends.wasm.emitters.reduce import reduce_view
from wasinfer.backends.wasm.writer import I32, Func
from wasinfer.ir import Graph, Node

# dtype → (load, equal, less than); bfloat16 is compared as the float32 its bits are the upper half of
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
ELEMENTS = {np.dtype(np.float32): ("f32.load", "f32.eq", "f32.lt"),
            np.dtype(np.float64): ("f64.load", "f64.eq", "f64.lt"),
            np.dtype(np.int32): ("i32.load", "i32.eq", "i32.lt_s"),
            np.dtype(np.int64): ("i64.load", "i64.eq", "i64.lt_s"),
            BFLOAT16: ("i32.load16_u", "f32.eq", "f32.lt")}


def _element(f: Func, pointer: int, dtype: np.dtype) -> Func:  # type: ignore[type-arg]
    """Push the element at `pointer` (a local) as the value it is compared as."""
    f.get(pointer).mem(ELEMENTS[dtype][0], align=0)
    return f.i32(16).op("i32.shl").op("f32.reinterpret_i32") if dtype == BFLOAT16 else f


def _view(node: Node, graph: Graph) -> tuple[int, int, int]:
    """(outer, n, inner) elements around the axis; the flattened tensor without one."""
    shape = graph.info(node.inputs[0]).shape
    axis = node.attr("axis")
    if axis is None:
        return 1, int(np.prod(shape, dtype=np.int64)), 1
    return reduce_view(shape, int(axis) % len(shape))


def _check(node: Node, graph: Graph) -> list[str]:
    problems = []
    if graph.info(node.inputs[0]).dtype not in ELEMENTS:
        problems.append(f"input dtype {graph.info(node.inputs[0]).dtype} is not supported "
                        f"({', '.join(map(str, ELEMENTS))})")
    if node.outputs[0] not in graph.decided:
        problems.append(f"its output {node.outputs[0]!r} has no bounded run-time shape (passes/dynamic.py)")
    return problems


def _scratch(node: Node, graph: Graph) -> int:
    return 5 * 4 * _view(node, graph)[1] + 16  # first occurrence, count, distinct index, order, rank: i32 per slice


def _comparison(ctx: Ctx, node: Node, less: bool) -> int:
    """A function (a, b) -> i32 over slices a and b: 1 when they are equal (or, with `less`, when a comes first)."""
    x = ctx.info(node.inputs[0])
    outer, n, inner = _view(node, ctx.graph)
    _, equal, lower = ELEMENTS[x.dtype]
    size, base = x.dtype.itemsize, ctx.addr(node.inputs[0])
    index, f = ctx.module.reserve([I32, I32], [I32], name=f"unique_{'less' if less else 'equal'}:{node.name}"[:120])
    o, i, pa, pb = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
    with f.for_range(o, 0, outer), f.for_range(i, 0, inner):
        for slice_, pointer in ((0, pa), (1, pb)):  # x[o, slice, i]
            f.get(o).i32(n).op("i32.mul").get(slice_).op("i32.add").i32(inner).op("i32.mul").get(i).op("i32.add")
            f.i32(size).op("i32.mul").i32(base).op("i32.add").set(pointer)
        if less:
            _element(_element(f, pa, x.dtype), pb, x.dtype).op(lower)
            with f.if_():
                f.i32(1).op("return")
            _element(_element(f, pb, x.dtype), pa, x.dtype).op(lower)
            with f.if_():
                f.i32(0).op("return")
        else:
            _element(_element(f, pa, x.dtype), pb, x.dtype).op(equal).op("i32.eqz")
            with f.if_():
                f.i32(0).op("return")
    f.i32(0 if less else 1)
    return index


def _at(f: Func, array: int, index: int) -> Func:
    """Push the address of i32 element `index` (a local) of a scratch array."""
    return f.get(index).i32(4).op("i32.mul").i32(array).op("i32.add")


@kernel("Unique", check=_check, scratch=_scratch)
def emit_unique(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    x = ctx.info(node.inputs[0])
    outer, n, inner = _view(node, ctx.graph)
    largest = ctx.info(node.outputs[0]).shape[int(node.attr("axis")) % len(x.shape)] if node.attr("axis") is not None \
        else n
    first, count, distinct, order, rank = (ctx.scratch_addr + 4 * n * k for k in range(5))
    equal, less = _comparison(ctx, node, less=False), _comparison(ctx, node, less=True)
    j, u, m, r, k, moving = (f.local(I32) for _ in range(6))
    f.i32(0).set(m)
    with f.for_range(j, 0, n):  # each slice: one of the distinct ones so far, or a new one
        f.i32(-1).set(k)
        with f.for_range(u, 0, ("local", m)):
            f.get(j)
            _at(f, first, u).mem("i32.load")
            f.call(equal)
            with f.if_():
                f.get(u).set(k).br(2)  # out of the search
        f.get(k).i32(0).op("i32.lt_s")
        with f.if_():
            _at(f, first, m).get(j).mem("i32.store")
            _at(f, count, m).i32(0).mem("i32.store")
            f.get(m).set(k).inc(m)
        _at(f, count, k)
        _at(f, count, k).mem("i32.load").i32(1).op("i32.add").mem("i32.store")
        _at(f, distinct, j).get(k).mem("i32.store")
    with f.for_range(r, 0, ("local", m)):  # order[r] = r, then (sorted) by insertion
        _at(f, order, r).get(r).mem("i32.store")
    if int(node.attr("sorted", 1)):
        with f.for_range(r, 1, ("local", m)):
            _at(f, order, r).mem("i32.load").set(moving)
            f.get(r).set(k)
            with f.block(), f.block(b"\x03"):  # while k > 0 and slice(moving) < slice(order[k - 1])
                f.get(k).op("i32.eqz").br_if(1)
                _at(f, first, moving).mem("i32.load")
                f.get(k).i32(4).op("i32.mul").i32(order - 4).op("i32.add").mem("i32.load")
                f.i32(4).op("i32.mul").i32(first).op("i32.add").mem("i32.load")
                f.call(less).op("i32.eqz").br_if(1)
                _at(f, order, k)
                f.get(k).i32(4).op("i32.mul").i32(order - 4).op("i32.add").mem("i32.load").mem("i32.store")
                f.get(k).i32(1).op("i32.sub").set(k).br(0)
            _at(f, order, k).get(moving).mem("i32.store")
    size, y = x.dtype.itemsize, ctx.addr(node.outputs[0])
    outputs = [node.outputs[position] if len(node.outputs) > position else "" for position in range(4)]
    o = f.local(I32)
    with f.for_range(r, 0, ("local", m)):  # Y[:, r, :], indices[r], counts[r] from the r-th distinct slice
        _at(f, order, r).mem("i32.load").set(u)
        _at(f, first, u).mem("i32.load").set(k)
        with f.for_range(o, 0, outer):
            f.get(o).i32(largest).op("i32.mul").get(r).op("i32.add").i32(inner * size).op("i32.mul")
            f.i32(y).op("i32.add")
            f.get(o).i32(n).op("i32.mul").get(k).op("i32.add").i32(inner * size).op("i32.mul")
            f.i32(ctx.addr(node.inputs[0])).op("i32.add")
            f.i32(inner * size).memory_copy()
        for position, value in ((1, k), (3, -1)):
            if outputs[position]:
                f.get(r).i32(8).op("i32.mul").i32(ctx.addr(outputs[position])).op("i32.add")
                if value >= 0:
                    f.get(value)
                else:
                    _at(f, count, u).mem("i32.load")
                f.op("i64.extend_i32_u").mem("i64.store", align=0)
        _at(f, rank, u).get(r).mem("i32.store")  # distinct slice u is Y's r-th
    if outputs[2]:
        with f.for_range(j, 0, n):  # inverse[j] = the position in Y of slice j's distinct one
            f.get(j).i32(8).op("i32.mul").i32(ctx.addr(outputs[2])).op("i32.add")
            _at(f, distinct, j).mem("i32.load").i32(4).op("i32.mul").i32(rank).op("i32.add").mem("i32.load")
            f.op("i64.extend_i32_u").mem("i64.store", align=0)
    write_run_time_dims(ctx, node, m)


__all__ = ["emit_unique"]
