"""Data movement: Transpose and Concat, for any dtype (moved by element size)."""

from __future__ import annotations

import math

from wasinfer.codegen.context import Ctx, kernel
from wasinfer.codegen.wasm import I32
from wasinfer.ir import Graph, Node

LOAD_STORE = {1: ("i32.load8_u", "i32.store8"), 2: ("i32.load16_u", "i32.store16"),
              4: ("i32.load", "i32.store"), 8: ("i64.load", "i64.store")}


def _check_element_size(node: Node, graph: Graph) -> list[str]:
    size = graph.info(node.outputs[0]).dtype.itemsize
    return [] if size in LOAD_STORE else [f"element size {size} bytes is not supported"]


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


@kernel("Transpose", check=_check_element_size)
def emit_transpose(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    info = ctx.info(node.inputs[0])
    perm = list(node.attr("perm") or reversed(range(len(info.shape))))
    perm = [p % len(info.shape) for p in perm]
    dims, strides = transpose_plan(info.shape, perm)
    size = info.dtype.itemsize
    src, dst = ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0])
    if len(dims) == 1 and strides[0] == 1:  # the permutation moves nothing
        f.i32(dst).i32(src).i32(info.nbytes).memory_copy()
        return
    load, store = LOAD_STORE[size]
    pin, pout = f.local(I32), f.local(I32)
    counters = [f.local(I32) for _ in dims]
    f.i32(src).set(pin).i32(dst).set(pout)

    def level(depth: int) -> None:
        saved = f.local(I32)
        f.get(pin).set(saved)
        with f.for_range(counters[depth], 0, dims[depth]):
            if depth == len(dims) - 1:
                f.get(pout).get(pin).mem(load).mem(store)
                f.inc(pout, size)
            else:
                level(depth + 1)
            f.inc(pin, strides[depth] * size)
        f.get(saved).set(pin)

    level(0)


@kernel("Concat", check=_check_element_size)
def emit_concat(ctx: Ctx, node: Node) -> None:
    f = ctx.f
    out = ctx.info(node.outputs[0])
    axis = int(node.attr("axis", 1 if ctx.graph.opset < 4 else 0)) % len(out.shape)
    size = out.dtype.itemsize
    outer = math.prod(out.shape[:axis])
    out_chunk = math.prod(out.shape[axis:]) * size
    o = f.local(I32)
    offset = 0
    for name in [n for n in node.inputs if n]:
        chunk = math.prod(ctx.info(name).shape[axis:]) * size
        src, dst = ctx.addr(name), ctx.addr(node.outputs[0]) + offset
        if chunk and outer <= 8:
            for i in range(outer):
                f.i32(dst + i * out_chunk).i32(src + i * chunk).i32(chunk).memory_copy()
        elif chunk:
            with f.for_range(o, 0, outer):
                f.addr(dst, o, out_chunk).addr(src, o, chunk).i32(chunk).memory_copy()
        offset += chunk
