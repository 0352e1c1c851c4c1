"""Mask: a tensor filled past its actual dim on one axis, in place (passes/symbolic.py inserts it before a
kernel that reads across a symbolic axis: 0 where that kernel adds, -inf where it takes a maximum)."""

from __future__ import annotations

import struct

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel
from wasinfer.backends.wasm.dims import fill_past
from wasinfer.ir import Graph, Node


def _check(node: Node, graph: Graph) -> list[str]:
    name = node.inputs[0]
    if graph.info(name).dtype != np.float32 and float(node.attrs["fill"]) != 0:
        return [f"tensor {name!r}: only float32 tensors are filled with {node.attrs['fill']} past a symbolic dim"]
    return []


@kernel("Mask", domain="wasinfer", check=_check)
def emit_mask(ctx: Ctx, node: Node) -> None:
    name = node.inputs[0]
    bits = struct.unpack("<I", struct.pack("<f", float(node.attrs["fill"])))[0]
    fill_past(ctx.f, ctx.addr(name), ctx.graph.extents[name], ctx.info(name).shape, int(node.attrs["axis"]), bits,
              ctx.symbols, ctx.info(name).dtype.itemsize)
