"""Kernels of symbolic dims (passes/symbolic.py inserts both).

Mask: a tensor filled past its actual dim on one axis, in place, before a kernel that reads across a symbolic
axis (0 where that kernel adds, -inf where it takes a maximum, or its last slab repeated, fill "edge", where the
kernel would clamp an index to the edge: a Resize).
Dims: a tensor of dims that depend on the symbols (a Shape's values, arithmetic on them), written by each run
for a node that computes with them.
"""

from __future__ import annotations

import struct

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.dims import fill_past, push_dim, repeat_edge
from wasinfer.ir import Graph, Node
from wasinfer.ops.definition import EDGE


def _check(node: Node, graph: Graph) -> list[str]:
    name = node.inputs[0]
    if node.attrs["fill"] == EDGE:
        return []
    if graph.info(name).dtype != np.float32 and float(node.attrs["fill"]) != 0:
        return [f"tensor {name!r}: only float32 tensors are filled with {node.attrs['fill']} past a symbolic dim"]
    return []


@kernel("Mask", domain="wasinfer", check=_check)
def emit_mask(ctx: Ctx, node: Node) -> None:
    name = node.inputs[0]
    if node.attrs["fill"] == EDGE:
        repeat_edge(ctx.f, ctx.addr(name), ctx.graph.extents[name], ctx.info(name).shape, int(node.attrs["axis"]),
                    ctx.symbols, ctx.info(name).dtype.itemsize)
        return
    bits = struct.unpack("<I", struct.pack("<f", float(node.attrs["fill"])))[0]
    fill_past(ctx.f, ctx.addr(name), ctx.graph.extents[name], ctx.info(name).shape, int(node.attrs["axis"]), bits,
              ctx.symbols, ctx.info(name).dtype.itemsize)


# dtype → what turns the i32 dim on the stack into it, and its store
DIM_STORES = {np.dtype(np.int64): ("i64.extend_i32_s", "i64.store"), np.dtype(np.int32): ("", "i32.store"),
              np.dtype(np.float32): ("f32.convert_i32_s", "f32.store"),
              np.dtype(np.float64): ("f64.convert_i32_s", "f64.store")}


def _check_dims(node: Node, graph: Graph) -> list[str]:
    out = graph.info(node.outputs[0])
    if out.dtype not in DIM_STORES:
        return [f"dims as {out.dtype} are not supported ({', '.join(map(str, DIM_STORES))})"]
    return []


@kernel("Dims", domain="wasinfer", check=_check_dims)
def emit_dims(ctx: Ctx, node: Node) -> None:
    out = ctx.info(node.outputs[0])
    convert, store = DIM_STORES[out.dtype]
    for k, dim in enumerate(node.attrs["dims"]):
        ctx.f.i32(ctx.addr(node.outputs[0]) + k * out.dtype.itemsize)
        push_dim(ctx.f, dim, ctx.symbols)
        if convert:
            ctx.f.op(convert)
        ctx.f.mem(store, align=0)
