"""Writes and reads at indices known only at run time: ScatterND, ScatterElements (Scatter before
opset 11) and GatherND.

ScatterND is how exported decoders update a KV cache (the new step's keys written at its position);
ScatterElements writes single elements. Both start from a copy of the data and then apply each update
in order, so with duplicate indices the last one wins (reduction none) or all of them combine (add,
mul, max, min), as ONNX Runtime does. GatherND is ScatterND's reading twin. Every index is read as
Gather reads it (indexing.py's `push_index`): a negative index wraps once, and one outside [-n, n)
traps the run rather than touch memory outside the tensor.
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.indexing import INDEX_TYPES, push_index
from wasinfer.backends.wasm.emitters.layout import LOAD_STORE, copy_bytes, walk
from wasinfer.backends.wasm.writer import F32, F64, I32, I64, Func
from wasinfer.ir import Graph, Node
from wasinfer.lowering.layout import movable_problems, row_major

# dtype → (value type, load, store, instruction prefix, signedness suffix of its comparisons)
REDUCIBLE = {np.dtype(np.float32): (F32, "f32.load", "f32.store", "f32", ""),
             np.dtype(np.float64): (F64, "f64.load", "f64.store", "f64", ""),
             np.dtype(np.int32): (I32, "i32.load", "i32.store", "i32", "_s"),
             np.dtype(np.int64): (I64, "i64.load", "i64.store", "i64", "_s")}
REDUCTIONS = ("none", "add", "mul", "max", "min")


def _index_problems(node: Node, graph: Graph, index: int) -> list[str]:
    dtype = graph.info(node.inputs[index]).dtype
    return [] if dtype in INDEX_TYPES else [f"indices have dtype {dtype}; int32 or int64 expected"]


def _reduction_problems(node: Node, graph: Graph) -> list[str]:
    reduction = node.attr("reduction", "none")
    dtype = graph.info(node.inputs[0]).dtype
    if reduction not in REDUCTIONS:
        return [f"reduction={reduction!r} is not one of {', '.join(REDUCTIONS)}"]
    if reduction != "none" and dtype not in REDUCIBLE:
        return [f"reduction={reduction!r} on {dtype} is not supported ({', '.join(str(d) for d in REDUCIBLE)} are)"]
    return []


def apply_update(f: Func, dtype: np.dtype[np.generic], reduction: str, target: int, update: int) -> None:
    """[target] = [update] (none), or [target] combined with [update]: target and update are locals holding
    byte addresses. max and min keep the stored value unless the update compares greater (less), which is
    std::max / std::min, ONNX Runtime's."""
    if reduction == "none":
        load, store = LOAD_STORE[dtype.itemsize]
        f.get(target).get(update).mem(load, align=0).mem(store, align=0)
        return
    valtype, load, store, prefix, sign = REDUCIBLE[np.dtype(dtype)]
    if reduction in ("add", "mul"):
        f.get(target).get(target).mem(load, align=0).get(update).mem(load, align=0)
        f.op(f"{prefix}.{reduction}").mem(store, align=0)
        return
    old, new = f.local(valtype), f.local(valtype)
    f.get(target).mem(load, align=0).set(old).get(update).mem(load, align=0).set(new)
    f.get(target).get(new).get(old).get(old).get(new).op(f"{prefix}.{'lt' if reduction == 'max' else 'gt'}{sign}")
    f.op("select").mem(store, align=0)


def _push_offset(f: Func, pi: int, dtype: np.dtype[np.generic], bounds: tuple[int, ...],
                 strides: list[int]) -> None:
    """Push the byte offset that the index tuple at `pi` names: the sum of each (checked) index times its
    axis's byte stride."""
    f.i32(0)
    for j, (bound, stride) in enumerate(zip(bounds, strides, strict=True)):
        ptr = f.local(I32)
        f.get(pi).i32(j * dtype.itemsize).op("i32.add").set(ptr)
        push_index(f, ptr, dtype, bound)
        f.i32(stride).op("i32.mul").op("i32.add")


# ---------------------------------------------------------------- ScatterND

def _check_scatter_nd(node: Node, graph: Graph) -> list[str]:
    data, indices, updates = (graph.info(n) for n in node.inputs[:3])
    problems = movable_problems(node, graph) + _index_problems(node, graph, 1) + _reduction_problems(node, graph)
    k = indices.shape[-1] if indices.shape else 0
    if not indices.shape or not 1 <= k <= len(data.shape):
        problems.append(f"indices of shape {indices.shape} do not index data of rank {len(data.shape)}")
    elif updates.shape != indices.shape[:-1] + data.shape[k:]:
        problems.append(f"updates have shape {updates.shape}, expected {indices.shape[:-1] + data.shape[k:]}")
    return problems


@kernel("ScatterND", check=_check_scatter_nd)
def emit_scatter_nd(ctx: Ctx, node: Node) -> None:
    """out = data; then for each index tuple n (the last axis of indices), the block out[indices[n]]
    (the data's axes past the tuple) takes updates[n], or is combined with it."""
    f = ctx.f
    data, indices = ctx.info(node.inputs[0]), ctx.info(node.inputs[1])
    size = data.dtype.itemsize
    _copy_data(ctx, node)
    k = indices.shape[-1]
    tuples, block = math.prod(indices.shape[:-1]), math.prod(data.shape[k:])
    if tuples == 0 or block == 0:
        return
    strides = [s * size for s in row_major(data.shape)[:k]]
    reduction = str(node.attr("reduction", "none"))
    n, e, pi, pu, target, update = (f.local(I32) for _ in range(6))
    f.i32(ctx.addr(node.inputs[1])).set(pi).i32(ctx.addr(node.inputs[2])).set(pu)
    with f.for_range(n, 0, tuples):
        _push_offset(f, pi, indices.dtype, data.shape[:k], strides)
        f.i32(ctx.addr(node.outputs[0])).op("i32.add").set(target)
        if reduction == "none":
            copy_bytes(f, (target, 0), (pu, 0), block * size)
            f.inc(pu, block * size)
        else:
            with f.for_range(e, 0, block):
                f.get(pu).set(update)
                apply_update(f, data.dtype, reduction, target, update)
                f.inc(target, size).inc(pu, size)
        f.inc(pi, k * indices.dtype.itemsize)


def _copy_data(ctx: Ctx, node: Node) -> None:
    """out = data: the updates then go into the output."""
    nbytes = ctx.info(node.inputs[0]).nbytes
    if nbytes:
        ctx.f.i32(ctx.addr(node.outputs[0])).i32(ctx.addr(node.inputs[0])).i32(nbytes).memory_copy()


# ---------------------------------------------------------------- ScatterElements

def _check_scatter_elements(node: Node, graph: Graph) -> list[str]:
    data, indices, updates = (graph.info(n) for n in node.inputs[:3])
    problems = movable_problems(node, graph) + _index_problems(node, graph, 1) + _reduction_problems(node, graph)
    rank = len(data.shape)
    axis = int(node.attr("axis", 0))
    if not rank or not -rank <= axis < rank:
        problems.append(f"axis {axis} is out of range for rank {rank}")
    if indices.shape != updates.shape:
        problems.append(f"indices of shape {indices.shape} and updates of shape {updates.shape} differ")
    elif len(indices.shape) != rank or any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape,
                                                                                  strict=True)) if a != axis % rank):
        problems.append(f"indices of shape {indices.shape} exceed data of shape {data.shape} off the axis")
    return problems


@kernel("ScatterElements", "Scatter", check=_check_scatter_elements)
def emit_scatter_elements(ctx: Ctx, node: Node) -> None:
    """out = data; then out[i with i[axis] replaced by indices[i]] takes (or combines with) updates[i] for
    every i of the indices, in order: the walk follows every axis of the output but `axis` (as
    GatherElements walks its data), and the indices and updates one element at a time."""
    f = ctx.f
    data, indices = ctx.info(node.inputs[0]), ctx.info(node.inputs[1])
    size, isize = data.dtype.itemsize, indices.dtype.itemsize
    _copy_data(ctx, node)
    shape = indices.shape
    if indices.size == 0:
        return
    axis = int(node.attr("axis", 0)) % len(data.shape)
    reduction = str(node.attr("reduction", "none"))
    out_strides = [s * size for s in row_major(data.shape)]
    walk_strides = [0 if a == axis else s for a, s in enumerate(out_strides)]
    update_strides = [s * size for s in row_major(shape)]
    pbase, pu, pi = f.local(I32), f.local(I32), f.local(I32)
    f.i32(ctx.addr(node.outputs[0])).set(pbase).i32(ctx.addr(node.inputs[2])).set(pu)
    f.i32(ctx.addr(node.inputs[1])).set(pi)

    def row() -> None:
        q, u, target, counter = f.local(I32), f.local(I32), f.local(I32), f.local(I32)
        f.get(pbase).set(q).get(pu).set(u)
        with f.for_range(counter, 0, shape[-1]):
            push_index(f, pi, indices.dtype, data.shape[axis])
            f.i32(out_strides[axis]).op("i32.mul").get(q).op("i32.add").set(target)
            apply_update(f, data.dtype, reduction, target, u)
            f.inc(u, size).inc(pi, isize)
            if walk_strides[-1]:
                f.inc(q, walk_strides[-1])

    walk(f, list(shape[:-1]), walk_strides[:-1], update_strides[:-1], pbase, pu, 1, row)


# ---------------------------------------------------------------- GatherND

def _check_gather_nd(node: Node, graph: Graph) -> list[str]:
    data, indices = graph.info(node.inputs[0]), graph.info(node.inputs[1])
    problems = movable_problems(node, graph) + _index_problems(node, graph, 1)
    b = int(node.attr("batch_dims", 0))
    k = indices.shape[-1] if indices.shape else 0
    if not indices.shape or b < 0 or not 1 <= k <= len(data.shape) - b:
        problems.append(f"indices of shape {indices.shape} do not index data of shape {data.shape} "
                        f"past batch_dims={b}")
    elif indices.shape[:b] != data.shape[:b]:
        problems.append(f"the batch dims of indices {indices.shape[:b]} and data {data.shape[:b]} differ")
    return problems


@kernel("GatherND", check=_check_gather_nd)
def emit_gather_nd(ctx: Ctx, node: Node) -> None:
    """For each of the batch_dims' entries and each index tuple in it, the block data[batch][tuple] (the
    data's axes past the tuple) is copied to the next place of the output."""
    f = ctx.f
    data, indices, out = ctx.info(node.inputs[0]), ctx.info(node.inputs[1]), ctx.info(node.outputs[0])
    if out.size == 0:
        return
    size = data.dtype.itemsize
    b, k = int(node.attr("batch_dims", 0)), indices.shape[-1]
    batches = math.prod(data.shape[:b])
    tuples, block = math.prod(indices.shape[b:-1]), math.prod(data.shape[b + k:]) * size
    batch_bytes = math.prod(data.shape[b:]) * size
    strides = [s * size for s in row_major(data.shape[b:])[:k]]
    o, n, pd, pi, po, src = (f.local(I32) for _ in range(6))
    f.i32(ctx.addr(node.inputs[0])).set(pd).i32(ctx.addr(node.inputs[1])).set(pi)
    f.i32(ctx.addr(node.outputs[0])).set(po)
    with f.for_range(o, 0, batches):
        with f.for_range(n, 0, tuples):
            _push_offset(f, pi, indices.dtype, data.shape[b:b + k], strides)
            f.get(pd).op("i32.add").set(src)
            copy_bytes(f, (po, 0), (src, 0), block)
            f.inc(po, block).inc(pi, k * indices.dtype.itemsize)
        f.inc(pd, batch_bytes)


__all__ = ["apply_update", "emit_gather_nd", "emit_scatter_elements", "emit_scatter_nd"]
