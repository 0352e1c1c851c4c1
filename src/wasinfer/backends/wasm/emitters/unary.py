"""Elementwise unary ops on float32, vectorised 4 lanes at a time (Neg, Abs and Clip also on
integers, and Clip with bounds computed at run time, through binary.emit_elementwise).

`apply_v128` is also the fused-activation epilogue of Conv, Gemm, MatMul and Add: it
transforms the v128 on top of the stack in place.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from wasinfer.backends.wasm.context import Ctx, kernel, only_float32
from wasinfer.backends.wasm.writer import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.ops import activation_params


def apply_v128(ctx: Ctx, op: str, params: dict[str, Any]) -> None:
    f = ctx.f
    v = f.local(V128)
    f.set(v)
    if op == "Relu":
        f.get(v).f32x4_const(0.0).op("f32x4.pmax")
    elif op == "LeakyRelu":
        f.get(v).get(v).f32x4_const(params["alpha"]).op("f32x4.mul")
        f.get(v).f32x4_const(0.0).op("f32x4.gt").op("v128.bitselect")
    elif op == "Sigmoid":
        f.f32x4_const(1.0).f32x4_const(1.0).get(v).op("f32x4.neg").call(ctx.helper("exp4"))
        f.op("f32x4.add").op("f32x4.div")
    elif op == "Tanh":
        _tanh(ctx, v)
    elif op == "Erf":
        f.get(v).call(ctx.helper("erf4"))
    elif op == "Gelu":  # x/2 * (1 + erf(x/sqrt 2)), or with tanh(sqrt(2/pi) * (x + 0.044715 x^3))
        f.get(v).f32x4_const(0.5).op("f32x4.mul").f32x4_const(1.0)
        if params["tanh"]:
            t = f.local(V128)
            f.get(v).get(v).op("f32x4.mul").get(v).op("f32x4.mul").f32x4_const(0.044715).op("f32x4.mul")
            f.get(v).op("f32x4.add").f32x4_const(math.sqrt(2.0 / math.pi)).op("f32x4.mul").set(t)
            _tanh(ctx, t)
        else:
            f.get(v).f32x4_const(math.sqrt(0.5)).op("f32x4.mul").call(ctx.helper("erf4"))
        f.op("f32x4.add").op("f32x4.mul")
    elif op == "Clip":
        f.get(v).f32x4_const(params["min"]).op("f32x4.pmax").f32x4_const(params["max"]).op("f32x4.pmin")
    elif op == "Abs":
        f.get(v).op("f32x4.abs")
    elif op == "Neg":
        f.get(v).op("f32x4.neg")
    elif op == "Sqrt":
        f.get(v).op("f32x4.sqrt")
    elif op == "Floor":
        f.get(v).op("f32x4.floor")
    elif op == "Ceil":
        f.get(v).op("f32x4.ceil")
    elif op == "Reciprocal":
        f.f32x4_const(1.0).get(v).op("f32x4.div")
    elif op == "Exp":
        f.get(v).call(ctx.helper("exp4"))
    elif op == "Log":
        f.get(v).call(ctx.helper("log4"))
    elif op == "Round":  # ONNX rounds half to even, as f32x4.nearest does
        f.get(v).op("f32x4.nearest")
    elif op == "Softsign":  # x / (1 + |x|)
        f.get(v).f32x4_const(1.0).get(v).op("f32x4.abs").op("f32x4.add").op("f32x4.div")
    elif op in ("HardSigmoid", "HardSwish"):  # clamp(alpha * x + beta, 0, 1), times x for HardSwish
        if op == "HardSwish":
            f.get(v)
        f.get(v).f32x4_const(params["alpha"]).op("f32x4.mul").f32x4_const(params["beta"]).op("f32x4.add")
        f.f32x4_const(0.0).op("f32x4.pmax").f32x4_const(1.0).op("f32x4.pmin")
        if op == "HardSwish":
            f.op("f32x4.mul")
    elif op in ("Elu", "Selu"):  # x > 0 ? x : alpha * (exp(x) - 1), times gamma for Selu
        f.get(v).get(v).call(ctx.helper("exp4")).f32x4_const(1.0).op("f32x4.sub").f32x4_const(params["alpha"])
        f.op("f32x4.mul").get(v).f32x4_const(0.0).op("f32x4.gt").op("v128.bitselect")
        if op == "Selu":
            f.f32x4_const(params["gamma"]).op("f32x4.mul")
    elif op == "Softplus":  # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)): no overflow for large x
        f.get(v).f32x4_const(0.0).op("f32x4.pmax")
        f.f32x4_const(1.0).get(v).op("f32x4.abs").op("f32x4.neg").call(ctx.helper("exp4")).op("f32x4.add")
        f.call(ctx.helper("log4")).op("f32x4.add")
    else:  # pragma: no cover - guarded by the registry
        raise KeyError(op)


def _tanh(ctx: Ctx, v: int) -> None:
    """Push tanh(v) = 1 - 2 / (exp(2v) + 1); tiny |v| keeps v itself so tanh(v) ~ v stays exact."""
    f = ctx.f
    t = f.local(V128)
    f.f32x4_const(1.0).f32x4_const(2.0).get(v).get(v).op("f32x4.add").call(ctx.helper("exp4"))
    f.f32x4_const(1.0).op("f32x4.add").op("f32x4.div").op("f32x4.sub").set(t)
    f.get(v).get(t).get(v).op("f32x4.abs").f32x4_const(1e-3).op("f32x4.lt").op("v128.bitselect")


UNARY_OPS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Abs", "Neg", "Sqrt", "Floor", "Ceil",
             "Reciprocal", "Exp", "Log", "Round", "Softsign", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
             "Erf", "Gelu")
INTEGER_UNARY = {"Neg", "Abs", "Clip"}


def epilogue(ctx: Ctx, node: Node) -> None:
    """Apply the node's fused activation (if any) to the v128 on the stack."""
    if node.activation is not None:
        apply_v128(ctx, node.activation.op_type, node.activation.params)


def epilogue_scalar(ctx: Ctx, node: Node) -> None:
    """Same as `epilogue` for one f32 on the stack."""
    if node.activation is not None:
        ctx.f.op("f32x4.splat")
        epilogue(ctx, node)
        ctx.f.lane("f32x4.extract_lane", 0)


def map_f32(ctx: Ctx, src: int, dst: int, count: int, body_v128: Any) -> None:
    """dst[i] = body(src[i]) for i < count; the body transforms a v128 on the stack.

    The tail (count % 4) runs the same body on a splatted lane, so both paths agree bit for bit.
    """
    f = ctx.f
    i = f.local(I32)
    vec_end = count // 4 * 4
    if vec_end:
        with f.for_range(i, 0, vec_end * 4, 16):
            f.addr(dst, i, 1).addr(src, i, 1).mem("v128.load")
            body_v128()
            f.mem("v128.store")
    if count > vec_end:
        with f.for_range(i, vec_end * 4, count * 4, 4):
            f.addr(dst, i, 1).addr(src, i, 1).mem("f32.load").op("f32x4.splat")
            body_v128()
            f.lane("f32x4.extract_lane", 0).mem("f32.store")


def _check_unary(node: Node, graph: Graph) -> list[str]:
    from wasinfer.backends.wasm.emitters.binary import INTEGER_TYPES  # binary imports this module

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
    """Integer Neg/Abs/Clip, and Clip with run-time bounds: max(x, min) then min(.., max), where
    either bound may be absent (NaN x stays NaN, as with the constant-bound Clip)."""
    from wasinfer.backends.wasm.emitters.binary import LANE_SHAPE, access_for, emit_elementwise, integer_op

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


__all__ = ["UNARY_OPS", "Func", "apply_v128", "epilogue", "epilogue_scalar", "map_f32"]
