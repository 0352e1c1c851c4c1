"""TensorScatter (opset 24): a KV cache's update, written into the cache at each sample's write index.

The present cache is the past one with the update's rows along `axis` copied in, row after row from the
sample's write index (read at run time; 0 without write_indices), each row one contiguous run of the axes after
`axis`; "circular" wraps the index around the cache's length. A linear write past the cache's end, or a negative
index, traps: ONNX leaves it undefined, and an out-of-range Gather traps too. Any whole-byte dtype moves as bits.
"""

from __future__ import annotations

import math

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.emitters.layout import copy_bytes
from wasinfer.backends.wasm.writer import I32, I64
from wasinfer.ir import Graph, Node
from wasinfer.lowering.layout import movable_problems

MODES = ("linear", "circular")


def _axis(node: Node, graph: Graph) -> int:
    rank = len(graph.info(node.inputs[0]).shape)
    return int(node.attr("axis", -2)) % max(rank, 1)


def _check_tensor_scatter(node: Node, graph: Graph) -> list[str]:
    problems = movable_problems(node, graph)
    mode = str(node.attr("mode", "linear"))
    if mode not in MODES:
        problems.append(f"mode {mode!r} is not one of {list(MODES)}")
    cache, update = graph.info(node.inputs[0]).shape, graph.info(node.inputs[1]).shape
    axis = _axis(node, graph)  # never 0, the batch's: ONNX's shape inference refuses that
    if len(update) != len(cache) or any(u != c for a, (u, c) in enumerate(zip(update, cache, strict=True))
                                          if a != axis) or update[axis] > cache[axis]:
        problems.append(f"update of shape {list(update)} does not fit a cache of shape {list(cache)} along axis {axis}")
    if len(node.inputs) > 2 and node.inputs[2] and graph.info(node.inputs[2]).dtype != np.int64:
        problems.append(f"write_indices have dtype {graph.info(node.inputs[2]).dtype}; int64 expected")
    return problems


@kernel("TensorScatter", check=_check_tensor_scatter)
def emit_tensor_scatter(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    info = ctx.info(node.inputs[0])
    cache, update = info.shape, ctx.info(node.inputs[1]).shape
    axis, size = _axis(node, ctx.graph), info.dtype.itemsize
    present = ctx.addr(node.outputs[0])
    if present != ctx.addr(node.inputs[0]):
        f.i32(present).i32(ctx.addr(node.inputs[0])).i32(info.size * size).memory_copy()
    outer, per_sample = math.prod(cache[:axis]), math.prod(cache[1:axis])
    length, steps, row = cache[axis], update[axis], math.prod(cache[axis + 1:]) * size
    if outer * steps * row == 0:
        return
    circular = str(node.attr("mode", "linear")) == "circular"
    indices = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else ""
    prefix, step, start, at, source, target = (f.local(I32) for _ in range(6))
    wide = f.local(I64)
    f.i32(ctx.addr(node.inputs[1])).set(source)
    with f.for_range(prefix, 0, outer):
        if indices:  # the write index of this prefix's sample
            f.get(prefix).i32(per_sample).op("i32.div_u").i32(8).op("i32.mul").i32(ctx.addr(indices)).op("i32.add")
            f.mem("i64.load").set(wide)
            if circular:  # Python's modulo: never negative
                f.get(wide).i64(length).op("i64.rem_s").i64(length).op("i64.add").i64(length).op("i64.rem_s")
                f.set(wide)
            else:  # every row it writes inside the cache, or a trap
                f.get(wide).i64(0).op("i64.lt_s").get(wide).i64(length - steps).op("i64.gt_s").op("i32.or")
                with f.if_():
                    f.op("unreachable")
            f.get(wide).op("i32.wrap_i64").set(start)
        else:
            f.i32(0).set(start)
        with f.for_range(step, 0, steps):
            f.get(start).get(step).op("i32.add").set(at)
            if circular:
                f.get(at).i32(length).op("i32.rem_u").set(at)
            f.get(prefix).i32(length).op("i32.mul").get(at).op("i32.add").i32(row).op("i32.mul").i32(present)
            f.op("i32.add").set(target)
            copy_bytes(f, (target, 0), (source, 0), row)
            f.inc(source, row)


__all__ = ["emit_tensor_scatter"]
