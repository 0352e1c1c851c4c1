"""Elementwise unary ops on float32, vectorised 4 lanes at a time (Neg, Abs, Sign and Clip also on
integers, and Clip with bounds computed at run time, through binary.emit_elementwise). The
trigonometric and hyperbolic functions are mathfn.py's, inline (sinh and cosh call exp4, the
inverse hyperbolic functions log4).

The float32 math itself is activation.py's `apply_v128`, which is also the fused-activation
epilogue of Conv, Gemm, MatMul and Add.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.emitters.activation import apply_v128
from wasinfer.backends.wasm.emitters.binary import INTEGER_TYPES, LANE_SHAPE, access_for, emit_elementwise, integer_op
from wasinfer.backends.wasm.writer import I32, V128
from wasinfer.ir import Graph, Node
from wasinfer.ops import activation_params

UNARY_OPS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Abs", "Neg", "Sqrt", "Floor", "Ceil",
             "Reciprocal", "Exp", "Log", "Round", "Softsign", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
             "Erf", "Gelu", "Swish", "Sign", "Sin", "Cos", "Tan", "Atan", "Asin", "Acos", "Sinh", "Cosh", "Asinh",
             "Acosh", "Atanh")
INTEGER_UNARY = {"Neg", "Abs", "Clip", "Sign"}


UNROLL = 2  # vectors per iteration of map_f32's main loop


def map_f32(ctx: Ctx, src: int, dst: int, count: int, body_v128: Any) -> None:
    """dst[i] = body(src[i]) for i < count; the body transforms a v128 on the stack.

    The main loop does UNROLL vectors per iteration, addressed by one byte counter with src and
    dst as the memory instructions' constant offsets: one add, compare and branch per two vectors
    instead of an address computation and a back-edge per vector, and two independent chains of
    math for the core to overlap (a sigmoid is one long dependency chain). Leftover vectors run
    one at a time; the tail (count % 4) runs the same body on a splatted lane, so every path
    agrees bit for bit. No vector is done twice: dst may be src (in place)."""
    f = ctx.f
    i = f.local(I32)
    vec_bytes = count // 4 * 16
    main = vec_bytes // (16 * UNROLL) * 16 * UNROLL
    for start, stop, unroll in ((0, main, UNROLL), (main, vec_bytes, 1)):
        if stop <= start:
            continue
        with f.for_range(i, start, stop, 16 * unroll):
            for u in range(unroll):
                f.get(i).get(i).mem("v128.load", offset=src + 16 * u)
                body_v128()
                f.mem("v128.store", offset=dst + 16 * u)
    if count * 4 > vec_bytes:
        with f.for_range(i, vec_bytes, count * 4, 4):
            f.get(i).get(i).mem("f32.load", offset=src).op("f32x4.splat")
            body_v128()
            f.lane("f32x4.extract_lane", 0).mem("f32.store", offset=dst)


def _check_unary(node: Node, graph: Graph) -> list[str]:
    dtype = graph.info(node.inputs[0]).dtype
    names = [n for n in node.inputs + node.outputs if n]
    if node.op_type in INTEGER_UNARY and dtype in INTEGER_TYPES:
        problems = [f"tensor {n!r} has dtype {graph.info(n).dtype}, not {dtype} like the input"
                    for n in names if graph.info(n).dtype != dtype]
        if node.op_type == "Neg" and dtype.kind == "u":
            problems.append(f"Neg is not defined on {dtype}")
        return problems
    problems = only_float32(node, graph, names)
    if node.op_type == "Gelu" and node.attr("approximate", "none") not in ("none", "tanh"):
        problems.append(f"approximate={node.attr('approximate')!r} is not one of 'none', 'tanh'")
    return problems


@kernel(*UNARY_OPS, check=_check_unary)
def emit_unary(ctx: Ctx, node: Node) -> None:
    params = activation_params(node, ctx.graph)
    if params is None or ctx.info(node.inputs[0]).dtype != np.float32:
        _emit_integer_or_runtime_clip(ctx, node)
        return
    count = ctx.info(node.outputs[0]).size
    map_f32(ctx, ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0]), count,
            lambda: apply_v128(ctx, node.op_type, params))


def _emit_integer_or_runtime_clip(ctx: Ctx, node: Node) -> None:
    """Integer Neg/Abs/Sign/Clip, and Clip with run-time bounds: max(x, min) then min(.., max), where
    either bound may be absent (NaN x stays NaN, as with the constant-bound Clip). An integer Sign is
    (x < 0) - (x > 0) on the comparisons' all-ones masks, 0 - (x != 0) when unsigned."""
    f = ctx.f
    x, out = node.inputs[0], node.outputs[0]
    dtype = ctx.info(x).dtype
    access = access_for(dtype)
    bounds = [(name, op) for name, op in zip(node.inputs[1:3], ("Max", "Min"), strict=False) if name]
    shape = LANE_SHAPE[dtype.itemsize]

    def combine() -> None:
        if node.op_type == "Neg":
            f.op(f"{shape}.neg")
        elif node.op_type == "Abs":
            if dtype.kind == "i":
                f.op(f"{shape}.abs")
        elif node.op_type == "Sign":
            x_mask, zero = f.local(V128), bytes(16)
            f.set(x_mask)
            if dtype.kind == "u":
                f.get(x_mask).v128(zero).op(f"{shape}.ne").op(f"{shape}.neg")
            else:
                f.get(x_mask).v128(zero).op(f"{shape}.lt_s").get(x_mask).v128(zero).op(f"{shape}.gt_s")
                f.op(f"{shape}.sub")
        else:
            held = [f.local(V128) for _ in bounds]
            for local in reversed(held):
                f.set(local)
            for local, (_, op) in zip(held, bounds, strict=True):
                f.get(local)
                if dtype == np.float32:
                    f.op("f32x4.pmax" if op == "Max" else "f32x4.pmin")
                else:
                    integer_op(f, op, dtype)

    emit_elementwise(ctx, (ctx.addr(out), ctx.info(out).shape, access),
                     [(ctx.addr(name), ctx.info(name).shape, access) for name in [x] + [b for b, _ in bounds]],
                     combine)


__all__ = ["UNARY_OPS", "map_f32"]
