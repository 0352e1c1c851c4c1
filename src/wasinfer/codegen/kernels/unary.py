"""Elementwise unary ops on float32, vectorised 4 lanes at a time.

`apply_v128` is also the fused-activation epilogue of Conv, Gemm, MatMul and Add: it
transforms the v128 on top of the stack in place.
"""

from __future__ import annotations

from typing import Any

from wasinfer.codegen.context import Ctx, kernel, only_float32
from wasinfer.codegen.wasm import I32, V128, Func
from wasinfer.ir import Graph, Node
from wasinfer.passes.fuse import activation_params


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
        # 1 - 2 / (exp(2x) + 1); tiny |x| keeps x itself so tanh(x) ~ x stays exact
        t = f.local(V128)
        f.f32x4_const(1.0).f32x4_const(2.0).get(v).get(v).op("f32x4.add").call(ctx.helper("exp4"))
        f.f32x4_const(1.0).op("f32x4.add").op("f32x4.div").op("f32x4.sub").set(t)
        f.get(v).get(t).get(v).op("f32x4.abs").f32x4_const(1e-3).op("f32x4.lt").op("v128.bitselect")
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


UNARY_OPS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Abs", "Neg", "Sqrt", "Floor", "Ceil",
             "Reciprocal", "Exp", "Log", "Round", "Softsign", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus")


def epilogue(ctx: Ctx, node: Node) -> None:
    """Apply the node's fused activation (if any) to the v128 on the stack."""
    fused = node.attr("_activation")
    if fused is not None:
        apply_v128(ctx, fused[0], fused[1])


def epilogue_scalar(ctx: Ctx, node: Node) -> None:
    """Same as `epilogue` for one f32 on the stack."""
    if node.attr("_activation") is not None:
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
    problems = only_float32(node, graph, [node.inputs[0], node.outputs[0]])
    if node.op_type == "Clip" and activation_params(graph, node) is None:
        problems.append("Clip with min/max computed at run time is not supported")
    return problems


@kernel(*UNARY_OPS, check=_check_unary)
def emit_unary(ctx: Ctx, node: Node) -> None:
    params = activation_params(ctx.graph, node) or {}
    count = ctx.info(node.outputs[0]).size
    map_f32(ctx, ctx.addr(node.inputs[0]), ctx.addr(node.outputs[0]), count,
            lambda: apply_v128(ctx, node.op_type, params))


__all__ = ["UNARY_OPS", "Func", "apply_v128", "epilogue", "epilogue_scalar", "map_f32"]
